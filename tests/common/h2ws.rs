//! WebSocket over HTTP/2 (RFC 8441) from the client's side: an h2 client stream as a byte
//! stream (`H2WsStream`), the extended CONNECT that opens one (`h2_ws_connect`, or
//! `h2_ws_connect_on` for many streams on one connection), and the raw-stream helpers for
//! tests that look at DATA frames themselves (`h2_ws_open_raw`, `h2_read_exactly`).
#![allow(dead_code, clippy::result_large_err)]

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::client::CLIENT_TIMEOUT;
use super::config::{Config, Listener, Route, Tls, Upstream};
use super::https::h2_tls_connect;

/// A WebSocket over one HTTP/2 stream.
pub type H2Ws = WebSocketStream<H2WsStream>;

/// The largest share of the server's window asked for at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// One HTTP/2 client stream as a byte stream: reads are the response's DATA (flow-control
/// credit goes back as bytes are handed out), writes are the request's DATA (sent as the
/// server's window allows), shutdown is END_STREAM. A clean END_STREAM from the server is
/// EOF (a read of 0 bytes); an RST_STREAM from it is an error of kind `ConnectionReset`
/// whose text names the reason (`stream reset by the server: CANCEL`), a GOAWAY one of
/// kind `ConnectionAborted` (see `is_stream_reset`).
pub struct H2WsStream {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    /// Received, not yet handed out (its credit not yet released).
    pending: Bytes,
    /// END_STREAM sent.
    ended: bool,
}

impl H2WsStream {
    pub fn new(send: h2::SendStream<Bytes>, recv: h2::RecvStream) -> H2WsStream {
        H2WsStream { send, recv, pending: Bytes::new(), ended: false }
    }

    /// Resets the stream from the client's side (RST_STREAM with `reason`).
    pub fn send_reset(&mut self, reason: h2::Reason) {
        self.send.send_reset(reason);
    }

    /// Whether the server ended its side with END_STREAM (all its DATA received).
    pub fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.recv.is_end_stream()
    }

    /// The stream's id on its connection.
    pub fn stream_id(&self) -> h2::StreamId {
        self.send.stream_id()
    }
}

impl std::fmt::Debug for H2WsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2WsStream")
            .field("stream_id", &self.send.stream_id())
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish()
    }
}

/// An h2 error as the io error a test can tell apart: a reset (RST_STREAM) is
/// `ConnectionReset`, a GOAWAY `ConnectionAborted`, the rest as they are.
pub fn h2_io_error(e: h2::Error) -> io::Error {
    if e.is_reset() {
        let who = if e.is_remote() { "by the server" } else { "locally" };
        let reason = e.reason().map(|r| format!("{r:?}")).unwrap_or_default();
        io::Error::new(io::ErrorKind::ConnectionReset, format!("stream reset {who}: {reason}"))
    } else if e.is_go_away() {
        io::Error::new(io::ErrorKind::ConnectionAborted, format!("connection GOAWAY: {e}"))
    } else if e.is_io() {
        e.into_io().unwrap_or_else(|| io::Error::other("h2 io error"))
    } else {
        io::Error::other(e)
    }
}

/// Whether `e` (an io error from an `H2WsStream`, possibly wrapped by tungstenite) says the
/// server reset the stream.
pub fn is_stream_reset(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::ConnectionReset && e.to_string().contains("stream reset")
}

impl AsyncRead for H2WsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Empty DATA frames (END_STREAM alone) are skipped.
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())), // END_STREAM: EOF
                Some(Err(e)) => return Poll::Ready(Err(h2_io_error(e))),
                Some(Ok(bytes)) => this.pending = bytes,
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        let _ = this.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl H2WsStream {
    /// Why writing is over: the server's reset if it sent one, else a broken pipe.
    fn write_closed(&mut self, cx: &mut Context<'_>) -> io::Error {
        match self.send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => {
                io::Error::new(io::ErrorKind::ConnectionReset, format!("stream reset by the server: {reason:?}"))
            }
            Poll::Ready(Err(e)) => h2_io_error(e),
            Poll::Pending => io::Error::new(io::ErrorKind::BrokenPipe, "stream closed for sending"),
        }
    }
}

impl AsyncWrite for H2WsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.ended {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "END_STREAM already sent")));
        }
        if this.send.capacity() == 0 {
            this.send.reserve_capacity(buf.len().min(WRITE_CHUNK));
        }
        // h2 reports capacity only when it changes: look before waiting.
        while this.send.capacity() == 0 {
            match ready!(this.send.poll_capacity(cx)) {
                None => return Poll::Ready(Err(this.write_closed(cx))),
                Some(Err(e)) => return Poll::Ready(Err(h2_io_error(e))),
                Some(Ok(_)) => {}
            }
        }
        let n = this.send.capacity().min(buf.len());
        match this.send.send_data(Bytes::copy_from_slice(&buf[..n]), false) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(e) if e.is_reset() => Poll::Ready(Err(h2_io_error(e))),
            Err(_) => Poll::Ready(Err(this.write_closed(cx))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// END_STREAM (once).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.ended, true) {
            if let Err(e) = this.send.send_data(Bytes::new(), true) {
                return Poll::Ready(Err(if e.is_reset() { h2_io_error(e) } else { this.write_closed(cx) }));
            }
        }
        Poll::Ready(Ok(()))
    }
}

// ---------------------------------------------------------------- connecting

/// Why an extended CONNECT did not give a WebSocket.
#[derive(Debug)]
pub enum H2WsError {
    /// The server answered with another status than 200: its head and body.
    Status(http::Response<Bytes>),
    /// The server's SETTINGS did not offer extended CONNECT.
    NoExtendedConnect,
    /// The request failed at the HTTP/2 level (a reset, a GOAWAY, a broken connection).
    H2(h2::Error),
    /// No answer within `CLIENT_TIMEOUT`.
    TimedOut,
}

impl H2WsError {
    /// The status of a non-200 answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            H2WsError::Status(r) => Some(r.status().as_u16()),
            _ => None,
        }
    }
    /// The non-200 answer.
    pub fn response(&self) -> Option<&http::Response<Bytes>> {
        match self {
            H2WsError::Status(r) => Some(r),
            _ => None,
        }
    }
}

impl std::fmt::Display for H2WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H2WsError::Status(r) => {
                write!(f, "answered {} {:?}: {:?}", r.status(), r.headers(), String::from_utf8_lossy(r.body()))
            }
            H2WsError::NoExtendedConnect => write!(f, "the server does not offer extended CONNECT"),
            H2WsError::H2(e) => write!(f, "h2: {e}"),
            H2WsError::TimedOut => write!(f, "no answer within {CLIENT_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for H2WsError {}

/// The client settings `h2_ws_client` uses: a 16 MiB connection window (room for many
/// streams at once: 200 streams × the default 64 KiB stream window), the rest h2's defaults.
pub fn h2_ws_builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder.initial_connection_window_size(16 * 1024 * 1024);
    builder
}

/// An HTTP/2 connection to wsgate on 127.0.0.1:`port` (TLS as `localhost`, trusting `cert`)
/// with `h2_ws_builder`'s settings, driven by a task of its own; returned once the server's
/// SETTINGS are in (a PING answered: the server sends its SETTINGS first), so whether it
/// offers extended CONNECT is known. Bounded by `CLIENT_TIMEOUT`.
pub async fn h2_ws_client(port: u16, cert: &Path) -> h2::client::SendRequest<Bytes> {
    h2_ws_client_with(&h2_ws_builder(), port, cert).await
}

/// `h2_ws_client` with the client settings of `builder`.
pub async fn h2_ws_client_with(
    builder: &h2::client::Builder,
    port: u16,
    cert: &Path,
) -> h2::client::SendRequest<Bytes> {
    let connect = async {
        let tls = h2_tls_connect(port, cert).await;
        let (client, mut connection) = builder.handshake(tls).await.expect("HTTP/2 handshake");
        let mut ping_pong = connection.ping_pong().expect("the connection's PingPong");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        ping_pong.ping(h2::Ping::opaque()).await.expect("PING answered");
        client
    };
    tokio::time::timeout(CLIENT_TIMEOUT, connect).await.expect("an HTTP/2 connection with SETTINGS in time")
}

/// The extended CONNECT for a WebSocket on `path` (`:authority` `localhost:<port>`), with
/// `Sec-WebSocket-Version: 13` unless `extra_headers` has a version of its own, and
/// `extra_headers` appended.
fn connect_request(port: u16, path: &str, extra_headers: &[(&str, &str)]) -> http::Request<()> {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{port}{path}"))
        .extension(h2::ext::Protocol::from("websocket"));
    if !extra_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-version")) {
        req = req.header("sec-websocket-version", "13");
    }
    for (k, v) in extra_headers {
        req = req.header(*k, *v);
    }
    req.body(()).expect("a valid extended CONNECT")
}

/// A WebSocket over a new HTTP/2 connection (`h2_ws_client`) to wsgate on `port`: see
/// `h2_ws_connect_on`.
pub async fn h2_ws_connect(
    port: u16,
    cert: &Path,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> Result<(http::Response<()>, H2Ws), H2WsError> {
    let mut client = h2_ws_client(port, cert).await;
    h2_ws_connect_on(&mut client, port, path, extra_headers).await
}

/// A WebSocket on a new stream of `client` (whose server's SETTINGS are in, as
/// `h2_ws_client` leaves it): the extended CONNECT of `connect_request`; on 200 its head and
/// the stream as a client-role WebSocket, else `H2WsError::Status` with the answer (body
/// included). Waits for a stream slot if the server's stream limit is reached. Bounded by
/// `CLIENT_TIMEOUT`.
pub async fn h2_ws_connect_on(
    client: &mut h2::client::SendRequest<Bytes>,
    port: u16,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> Result<(http::Response<()>, H2Ws), H2WsError> {
    let open = async {
        std::future::poll_fn(|cx| client.poll_ready(cx)).await.map_err(H2WsError::H2)?;
        if !client.is_extended_connect_protocol_enabled() {
            return Err(H2WsError::NoExtendedConnect);
        }
        let (response, send) =
            client.send_request(connect_request(port, path, extra_headers), false).map_err(H2WsError::H2)?;
        let (head, mut body) = response.await.map_err(H2WsError::H2)?.into_parts();
        if head.status != http::StatusCode::OK {
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(H2WsError::H2)?;
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            return Err(H2WsError::Status(http::Response::from_parts(head, bytes.into())));
        }
        let io = H2WsStream::new(send, body);
        let ws = WebSocketStream::from_raw_socket(io, Role::Client, None).await;
        Ok((http::Response::from_parts(head, ()), ws))
    };
    tokio::time::timeout(CLIENT_TIMEOUT, open).await.map_err(|_| H2WsError::TimedOut)?
}

// ---------------------------------------------------------------- raw streams

/// An extended CONNECT for a WebSocket on `path` over a new connection (`h2_ws_client`),
/// `early` DATA sent before its answer; the answer (bounded: 10 s) and the request's stream,
/// for tests that read and write frames byte by byte.
pub async fn h2_ws_open_raw(
    port: u16,
    cert: &Path,
    path: &str,
    early: &[Bytes],
) -> (http::Response<h2::RecvStream>, h2::SendStream<Bytes>) {
    let mut client = h2_ws_client(port, cert).await;
    let (response, mut send) = client.send_request(connect_request(port, path, &[]), false).unwrap();
    // DATA before the 200 waits in the stream, in order.
    for frame in early {
        send.send_data(frame.clone(), false).unwrap();
    }
    let response = tokio::time::timeout(CLIENT_TIMEOUT, response).await.expect("an answer").unwrap();
    (response, send)
}

/// `n` bytes of the stream's DATA (credit released as read), bounded by 10 s.
pub async fn h2_read_exactly(body: &mut h2::RecvStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.data()).await.expect("data in time");
        let chunk = chunk.expect("stream open").unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

/// A TLS listener on 127.0.0.1:`port` with WebSocket over HTTP/2, every request to the pool
/// `ws` of the one `backend`.
pub fn h2_ws_gateway(port: u16, cert: &Path, key: &Path, backend: std::net::SocketAddr) -> Config {
    Config::new()
        .listener(Listener::on(port).tls(Tls::new(cert, key).websocket_over_http2(true)))
        .upstream("ws", Upstream::one(backend))
        .route(Route::to("ws"))
}
