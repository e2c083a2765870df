//! Test backends: a hand-written HTTP/1.1 server and a WebSocket echo server.
//!
//! Each backend owns a private multi-thread tokio runtime, so it keeps serving
//! while the test thread blocks (e.g. in `Wsgate::wait_port`) and works from both
//! sync tests and `#[tokio::test]` tests of any flavour.
#![allow(dead_code, clippy::result_large_err)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header::SEC_WEBSOCKET_PROTOCOL, HeaderValue};
use tokio_tungstenite::tungstenite::Message;

const MAX_HEAD: usize = 64 * 1024;

/// A request as seen by a backend. Header names are lowercased, values verbatim.
#[derive(Clone, Debug, Default)]
pub struct RecordedRequest {
    pub method: String,
    /// Request target exactly as received (path + query).
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[derive(Default)]
struct Shared {
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    connections: AtomicUsize,
    sessions: AtomicUsize,
    messages: AtomicUsize,
    /// Pongs received (answers to Pings nobody but the backend should see).
    pongs: AtomicUsize,
    /// Codes of the Close frames received (None: a Close without a code).
    close_codes: Mutex<Vec<Option<u16>>>,
    last: Mutex<Option<RecordedRequest>>,
    /// Plain-HTTP requests (health checks) get 503 while set; sessions go on.
    failing_checks: std::sync::atomic::AtomicBool,
}

/// Listener + runtime plumbing shared by both backend kinds.
struct Server {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    shutdown: Option<oneshot::Sender<()>>,
    done: Option<mpsc::Receiver<()>>,
}

impl Server {
    fn start<F, Fut>(port: u16, handler: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Self::start_at("127.0.0.1", port, handler)
    }

    /// Like `start`, on another loopback address (127.0.0.2, ...): several backends can
    /// then share one port, as DNS-discovered ones do.
    fn start_at<F, Fut>(ip: &str, port: u16, handler: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let std_listener = bind_with_retry(ip, port);
        std_listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = std_listener.local_addr().expect("local_addr");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("backend runtime");
        let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("from_std");
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown_rx => break,
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    res = listener.accept() => {
                        if let Ok((stream, _)) = res {
                            let _ = stream.set_nodelay(true);
                            conns.spawn(handler(stream));
                        }
                    }
                }
            }
            drop(listener); // stop accepting
            conns.shutdown().await; // abort and wait: every open connection is closed
            let _ = done_tx.send(());
        });
        Server { addr, rt: Some(rt), shutdown: Some(shutdown_tx), done: Some(done_rx) }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
        if let Some(rt) = self.rt.take() {
            // Safe inside an async context, unlike dropping the runtime.
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind_with_retry(ip: &str, port: u16) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..250 {
        match std::net::TcpListener::bind((ip, port)) {
            Ok(l) => return l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("bind {ip}:{port}: {e}"),
        }
    }
    panic!("bind {ip}:{port}: still in use after 5s")
}

// ---------------------------------------------------------------- HTTP parsing

pub(crate) struct Head {
    pub method: String,
    pub path: String,
    /// 0 = HTTP/1.0, 1 = HTTP/1.1
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub len: usize,
}

fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("").to_string(),
            version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
    }
}

/// Reads until `buf` holds a complete request head (not consumed from `buf`).
/// `Ok(None)` on a clean EOF between requests.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<Option<Head>> {
    loop {
        if !buf.is_empty() {
            if let Some(h) = parse_head(buf)? {
                return Ok(Some(h));
            }
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        buf.reserve(4096);
        if s.read_buf(buf).await? == 0 {
            return if buf.is_empty() { Ok(None) } else { Err(io::ErrorKind::UnexpectedEof.into()) };
        }
    }
}

async fn take_exact<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, n: usize) -> io::Result<Vec<u8>> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        if s.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(buf.drain(..n).collect())
}

async fn take_line<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> io::Result<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        buf.reserve(1024);
        if s.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Reads a request body (Content-Length or chunked) that follows an already drained head.
pub(crate) async fn read_body<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    headers: &[(String, String)],
) -> io::Result<Vec<u8>> {
    let chunked =
        header_value(headers, "transfer-encoding").map(|v| v.to_ascii_lowercase().contains("chunked")).unwrap_or(false);
    if chunked {
        let mut body = Vec::new();
        loop {
            let line = take_line(s, buf).await?;
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // trailers until an empty line
                while !take_line(s, buf).await?.is_empty() {}
                return Ok(body);
            }
            body.extend(take_exact(s, buf, size).await?);
            take_exact(s, buf, 2).await?;
        }
    }
    match header_value(headers, "content-length") {
        Some(v) => {
            let n: usize =
                v.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
            take_exact(s, buf, n).await
        }
        None => Ok(Vec::new()),
    }
}

fn keep_alive(h: &Head) -> bool {
    let conn = header_value(&h.headers, "connection").unwrap_or("").to_ascii_lowercase();
    if conn.split(',').any(|t| t.trim() == "close") {
        return false;
    }
    h.version >= 1 || conn.split(',').any(|t| t.trim() == "keep-alive")
}

fn expects_continue(h: &Head) -> bool {
    header_value(&h.headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

fn response_bytes(status: u16, name: &str, body: &[u8], keep: bool, head_only: bool) -> Vec<u8> {
    let reason = tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nX-Backend: {name}\r\n");
    let bodyless = status == 204 || status == 304;
    if !bodyless {
        out.push_str(&format!("Content-Type: text/plain\r\nContent-Length: {}\r\n", body.len()));
    }
    if !keep {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !bodyless && !head_only {
        out.extend_from_slice(body);
    }
    out
}

// ---------------------------------------------------------------- HttpBackend

/// HTTP/1.1 echo-ish backend. Every response carries `X-Backend: <name>`; the body is
/// `<METHOD> <target>\n` + one `name: value\n` line per received header (names
/// lowercased, values verbatim, in received order), then — only if the request had
/// a body — an empty line and the body.
///
/// Special paths (query ignored): `/healthz` → 200 `ok` (counted in `health_hits`,
/// not `hits`); `/status/NNN` → status NNN (2xx..5xx) with the usual listing body;
/// `/slow/MS` → sleep MS ms, then answer normally.
pub struct HttpBackend {
    pub name: String,
    server: Server,
    shared: Arc<Shared>,
}

impl HttpBackend {
    pub fn start(name: &str) -> HttpBackend {
        Self::start_on(name, 0)
    }

    pub fn start_on(name: &str, port: u16) -> HttpBackend {
        Self::start_with(name, port, None)
    }

    /// Like `start`, but a keep-alive connection idle for `idle` between requests is closed
    /// by the backend (as Node, gunicorn and uvicorn do after their keep-alive timeout).
    pub fn start_closing_idle(name: &str, idle: Duration) -> HttpBackend {
        Self::start_with(name, 0, Some(idle))
    }

    fn start_with(name: &str, port: u16, idle: Option<Duration>) -> HttpBackend {
        let shared = Arc::new(Shared::default());
        let (n, sh) = (name.to_string(), shared.clone());
        let server = Server::start(port, move |stream| http_conn(stream, n.clone(), sh.clone(), idle));
        HttpBackend { name: name.to_string(), server, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }
    /// Requests served, excluding `/healthz`.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
    /// `/healthz` requests served.
    pub fn health_hits(&self) -> usize {
        self.shared.health_hits.load(Ordering::SeqCst)
    }
    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
    /// Latest non-`/healthz` request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.last.lock().unwrap().clone()
    }
    /// Stops accepting and closes every open connection; the port refuses afterwards.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

async fn http_conn(mut s: TcpStream, name: String, shared: Arc<Shared>, idle: Option<Duration>) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = Vec::with_capacity(8192);
    loop {
        let next = match idle {
            Some(idle) if buf.is_empty() => match tokio::time::timeout(idle, read_head(&mut s, &mut buf)).await {
                Ok(read) => read,
                Err(_) => return, // idle too long: dropping the socket closes it
            },
            _ => read_head(&mut s, &mut buf).await,
        };
        let head = match next {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(_) => {
                let _ = s.write_all(&response_bytes(400, &name, b"bad request\n", false, false)).await;
                return;
            }
        };
        buf.drain(..head.len);
        if expects_continue(&head) && s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            return;
        }
        let body = match read_body(&mut s, &mut buf, &head.headers).await {
            Ok(b) => b,
            Err(_) => {
                let _ = s.write_all(&response_bytes(400, &name, b"bad body\n", false, false)).await;
                return;
            }
        };
        let keep = keep_alive(&head);
        let route = head.path.split('?').next().unwrap_or("").to_string();
        let (status, text) = if route == "/healthz" {
            shared.health_hits.fetch_add(1, Ordering::SeqCst);
            (200, b"ok".to_vec())
        } else {
            let mut text = format!("{} {}\n", head.method, head.path);
            for (k, v) in &head.headers {
                text.push_str(&format!("{k}: {v}\n"));
            }
            let mut text = text.into_bytes();
            if !body.is_empty() {
                text.push(b'\n');
                text.extend_from_slice(&body);
            }
            let mut status = 200;
            if let Some(ms) = route.strip_prefix("/slow/").and_then(|m| m.parse::<u64>().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(code) = route.strip_prefix("/status/").and_then(|c| c.parse::<u16>().ok()) {
                if (200..600).contains(&code) {
                    status = code;
                }
            }
            *shared.last.lock().unwrap() = Some(RecordedRequest {
                method: head.method.clone(),
                path: head.path.clone(),
                headers: head.headers.clone(),
                body,
            });
            shared.hits.fetch_add(1, Ordering::SeqCst);
            (status, text)
        };
        let resp = response_bytes(status, &name, &text, keep, head.method == "HEAD");
        if s.write_all(&resp).await.is_err() || !keep {
            let _ = s.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------- WsBackend

/// WebSocket echo backend. Plain (non-upgrade) HTTP requests get 200 `ok`
/// (so HTTP health checks work; counted in `health_hits`). Upgrades are handed to
/// tungstenite with the already-read bytes replayed. Echoes Text/Binary unchanged,
/// answers Close, selects the first offered `Sec-WebSocket-Protocol`.
pub struct WsBackend {
    pub name: String,
    server: Server,
    shared: Arc<Shared>,
}

impl WsBackend {
    pub fn start(name: &str) -> WsBackend {
        Self::start_inner(name, 0, false)
    }
    pub fn start_on(name: &str, port: u16) -> WsBackend {
        Self::start_inner(name, port, false)
    }
    /// Echo with a single read-then-write loop per session, no extra buffering
    /// (the backend stops reading while its write is blocked).
    pub fn start_raw_echo(name: &str) -> WsBackend {
        Self::start_inner(name, 0, true)
    }

    /// A WebSocket (and plain `GET`) backend on `ip:port`, e.g. 127.0.0.2.
    pub fn start_at(name: &str, ip: &str, port: u16) -> WsBackend {
        Self::start_inner_at(name, ip, port, false)
    }

    fn start_inner(name: &str, port: u16, raw: bool) -> WsBackend {
        Self::start_inner_at(name, "127.0.0.1", port, raw)
    }

    fn start_inner_at(name: &str, ip: &str, port: u16, raw: bool) -> WsBackend {
        let shared = Arc::new(Shared::default());
        let (n, sh) = (name.to_string(), shared.clone());
        let server = Server::start_at(ip, port, move |stream| ws_conn(stream, n.clone(), sh.clone(), raw));
        WsBackend { name: name.to_string(), server, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }
    /// `ws://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.server.addr, path)
    }
    /// Accepted WebSocket sessions.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::SeqCst)
    }
    /// Same as `sessions()`.
    pub fn hits(&self) -> usize {
        self.sessions()
    }
    /// Data messages (text/binary) echoed so far.
    pub fn messages(&self) -> usize {
        self.shared.messages.load(Ordering::SeqCst)
    }
    /// Plain-HTTP requests answered (health checks).
    pub fn health_hits(&self) -> usize {
        self.shared.health_hits.load(Ordering::SeqCst)
    }
    /// Handshake request headers of the latest WebSocket connection (lowercased names).
    /// Codes of the Close frames this backend received, in arrival order.
    pub fn pongs(&self) -> usize {
        self.shared.pongs.load(Ordering::SeqCst)
    }
    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.shared.close_codes.lock().unwrap().clone()
    }

    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.shared.last.lock().unwrap().as_ref().map(|r| r.headers.clone()).unwrap_or_default()
    }
    /// Handshake request target of the latest WebSocket connection.
    pub fn last_path(&self) -> Option<String> {
        self.shared.last.lock().unwrap().as_ref().map(|r| r.path.clone())
    }
    pub fn stop(&mut self) {
        self.server.stop();
    }
    /// Answers health checks with 503 (`true`) or 200, while its sessions go on.
    pub fn fail_checks(&self, failing: bool) {
        self.shared.failing_checks.store(failing, Ordering::SeqCst);
    }
}

fn is_upgrade(h: &Head) -> bool {
    header_value(&h.headers, "upgrade").is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

async fn ws_conn(mut s: TcpStream, name: String, shared: Arc<Shared>, _raw: bool) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let head = match read_head(&mut s, &mut buf).await {
            Ok(Some(h)) => h,
            _ => return,
        };
        if is_upgrade(&head) {
            // Replay everything read so far (head + anything after it) to tungstenite.
            let stream = Prefixed { prefix: buf, pos: 0, inner: s };
            ws_session(stream, shared).await;
            return;
        }
        buf.drain(..head.len);
        if read_body(&mut s, &mut buf, &head.headers).await.is_err() {
            return;
        }
        shared.health_hits.fetch_add(1, Ordering::SeqCst);
        let keep = keep_alive(&head);
        let status = if shared.failing_checks.load(Ordering::SeqCst) { 503 } else { 200 };
        let resp = response_bytes(status, &name, b"ok", keep, head.method == "HEAD");
        if s.write_all(&resp).await.is_err() || !keep {
            let _ = s.shutdown().await;
            return;
        }
    }
}

async fn ws_session<S: AsyncRead + AsyncWrite + Unpin>(stream: S, shared: Arc<Shared>) {
    let sh = shared.clone();
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        *sh.last.lock().unwrap() = Some(RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().to_string(),
            headers,
            body: Vec::new(),
        });
        let offered = req.headers().get(SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
        if let Some(first) = offered.and_then(|v| v.split(',').map(str::trim).find(|p| !p.is_empty())) {
            if let Ok(v) = HeaderValue::from_str(first) {
                resp.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
        Ok(resp)
    };
    let mut ws = match tokio_tungstenite::accept_hdr_async(stream, callback).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    shared.sessions.fetch_add(1, Ordering::SeqCst);
    // One loop: read a message, write it back. Pings are answered and the Close reply is
    // flushed by tungstenite itself on the next read; the loop ends once the close
    // handshake completes or the connection drops.
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                shared.messages.fetch_add(1, Ordering::SeqCst);
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
            Message::Close(frame) => {
                shared.close_codes.lock().unwrap().push(frame.map(|f| u16::from(f.code)));
            }
            Message::Pong(_) => {
                shared.pongs.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// A stream that first replays `prefix`, then reads from `inner`.
pub struct Prefixed<S> {
    pub prefix: Vec<u8>,
    pub pos: usize,
    pub inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(out.remaining());
            let start = self.pos;
            out.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
