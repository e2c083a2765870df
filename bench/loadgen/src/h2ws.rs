//! WebSocket over HTTP/2 (RFC 8441) from the client's side, for the load subcommands'
//! `--h2`: TLS with ALPN `h2`, the `h2` crate's client, one extended CONNECT
//! (`:protocol websocket`) per session, and the stream as a byte stream (`H2Io`) under
//! tokio-tungstenite, so the workloads are the same code as over HTTP/1.1.
//!
//! Windows: the client advertises a 4 MiB stream window and a 16 MiB connection window
//! (SETTINGS_INITIAL_WINDOW_SIZE and a WINDOW_UPDATE on stream 0), the order of what
//! browsers use (Chrome: 6 MiB / 15 MiB), so the client's receive side is not what limits
//! a transfer. Max frame size stays at the default 16 KiB, as
//! browsers leave it. What the client may send is wsgate's window, whatever it is.

use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::http::{Method, Request};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::transport::tls_connect;
use crate::{Header, STEP_TIMEOUT};

/// The client's stream receive window (SETTINGS_INITIAL_WINDOW_SIZE).
pub const STREAM_WINDOW: u32 = 4 << 20;
/// The client's connection receive window.
pub const CONN_WINDOW: u32 = 16 << 20;
/// The most send capacity one write asks for.
const WRITE_CHUNK: usize = 256 << 10;

pub type H2Ws = WebSocketStream<H2Io>;

/// DATA sends and waits for send capacity (writes that found no window), over all streams
/// of the process: how often the server's window held the writer back.
static SENDS: AtomicU64 = AtomicU64::new(0);
static CAPACITY_WAITS: AtomicU64 = AtomicU64::new(0);

/// `"h2_sends":N,"h2_capacity_waits":M` for a JSON report.
pub fn send_stats() -> String {
    format!(r#""h2_sends":{},"h2_capacity_waits":{}"#, SENDS.load(Ordering::Relaxed), CAPACITY_WAITS.load(Ordering::Relaxed))
}

/// One HTTP/2 client stream as a byte stream. Reads hand out the response's DATA and give
/// its flow-control credit back as the bytes are consumed; writes reserve send capacity,
/// wait for the server's window, and send what it allows; shutdown is END_STREAM. A clean
/// END_STREAM from the server reads as EOF; a reset or GOAWAY as an error.
pub struct H2Io {
    send: h2::SendStream<Bytes>,
    recv: h2::RecvStream,
    /// Received but not yet read (its credit not yet released).
    pending: Bytes,
    ended: bool,
}

fn io_error(e: h2::Error) -> io::Error {
    let kind = if e.is_reset() { io::ErrorKind::ConnectionReset } else { io::ErrorKind::Other };
    io::Error::new(kind, e)
}

impl AsyncRead for H2Io {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.pending.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Ok(())), // END_STREAM: EOF
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        // h2 batches the WINDOW_UPDATEs (one once half a window is released).
        this.recv.flow_control().release_capacity(n).map_err(io_error)?;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Io {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        loop {
            let capacity = this.send.capacity();
            if capacity > 0 {
                let n = capacity.min(buf.len());
                this.send.send_data(Bytes::copy_from_slice(&buf[..n]), false).map_err(io_error)?;
                SENDS.fetch_add(1, Ordering::Relaxed);
                return Poll::Ready(Ok(n));
            }
            // Capacity requested beyond what is already buffered; poll_capacity wakes us
            // when the connection assigns some (the server's window allowing).
            this.send.reserve_capacity(buf.len().min(WRITE_CHUNK));
            let polled = this.send.poll_capacity(cx);
            if polled.is_pending() {
                CAPACITY_WAITS.fetch_add(1, Ordering::Relaxed);
            }
            match ready!(polled) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection task writes queued DATA as soon as it can; nothing to flush here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.ended = true;
            self.send.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}

/// Opens a WebSocket on a new HTTP/2 connection to the `wss://` URL: TLS with ALPN `h2`,
/// the client's windows above, one GET so the server's SETTINGS have been read, a check
/// that it allows extended CONNECT, then `CONNECT :protocol websocket` (with `headers`)
/// and its 200.
pub async fn connect_h2(url: &str, headers: &[Header]) -> Result<H2Ws, String> {
    let (tls, uri) = tls_connect(url, b"h2").await?;
    let authority = uri.authority().ok_or("no authority in the URL")?.clone();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let step = async {
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
        // The server's SETTINGS come before its first response: once a GET is answered
        // (any status; `/` has no route in the bench's config) they have been applied.
        let get = Request::builder().method(Method::GET).uri(format!("https://{authority}/")).body(()).expect("GET request");
        let (response, _) = client.send_request(get, true).map_err(|e| format!("h2 GET: {e}"))?;
        let _ = response.await.map_err(|e| format!("h2 GET: {e}"))?;
        if !client.is_extended_connect_protocol_enabled() {
            return Err("the server does not allow extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)".to_string());
        }
        let mut client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
        let mut connect = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://{authority}{path}"))
            .header("sec-websocket-version", "13")
            .extension(h2::ext::Protocol::from("websocket"))
            .body(())
            .expect("CONNECT request");
        connect.headers_mut().extend(headers.iter().cloned());
        let (response, send) = client.send_request(connect, false).map_err(|e| format!("CONNECT: {e}"))?;
        let response = response.await.map_err(|e| format!("CONNECT: {e}"))?;
        if response.status() != 200 {
            return Err(format!("CONNECT answered {}", response.status()));
        }
        Ok(H2Io { send, recv: response.into_body(), pending: Bytes::new(), ended: false })
    };
    let io = tokio::time::timeout(STEP_TIMEOUT, step).await.map_err(|_| "h2 connect timed out".to_string())??;
    Ok(WebSocketStream::from_raw_socket(io, Role::Client, None).await)
}
