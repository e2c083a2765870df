//! Raw-socket helpers for hostile-input tests: send exact bytes and observe exactly what
//! comes back (status line, headers, body, whether the connection was closed), plus
//! backends that record every request or misbehave on purpose, and a few RFC 6455 bits
//! for hand-made WebSocket handshakes and frames.
#![allow(dead_code, clippy::result_large_err)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::backends::{header_value, read_body, read_head, RecordedRequest};
use super::client::Headers;

/// The sample key of RFC 6455 §1.3 and its accept value.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// ---------------------------------------------------------------- raw client

/// What came back for a raw request.
#[derive(Debug, Default, Clone)]
pub struct RawResponse {
    /// Status of the first response, `None` if no complete response head arrived.
    pub status: Option<u16>,
    pub status_line: String,
    /// Lowercased names, values verbatim.
    pub headers: Headers,
    /// Body of the first response (by Content-Length, chunked, or up to EOF).
    pub body: Vec<u8>,
    /// The connection reached EOF (or was reset) before the deadline.
    pub closed: bool,
    /// It ended with a reset rather than a FIN.
    pub reset: bool,
    /// Every byte received.
    pub raw: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
    /// Number of response status lines in everything received (pipelining check).
    pub fn status_lines(&self) -> usize {
        count(&self.raw, b"HTTP/1.")
    }
    /// Status and closed-ness in one short string, for tables and messages.
    pub fn summary(&self) -> String {
        match self.status {
            Some(s) => format!("{s}{}", if self.closed { " + closed" } else { " (open)" }),
            None if self.closed => format!(
                "closed without a response{}{}",
                if self.reset { " (reset)" } else { "" },
                if self.raw.is_empty() {
                    String::new()
                } else {
                    format!(", got {:?}", String::from_utf8_lossy(&self.raw))
                }
            ),
            None => "no response, connection left open".to_string(),
        }
    }
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

#[derive(Debug, Clone, Copy)]
pub struct RawOpts {
    /// Half-close (shutdown(Write)) after sending.
    pub half_close: bool,
    /// Overall bound on the exchange.
    pub timeout: Duration,
    /// Once a complete response is in, how long to keep reading to see whether the
    /// connection gets closed.
    pub linger: Duration,
}

impl Default for RawOpts {
    fn default() -> Self {
        RawOpts { half_close: false, timeout: Duration::from_secs(5), linger: Duration::from_millis(500) }
    }
}

/// Connects, sends `bytes` verbatim (write errors are ignored: the peer may have closed
/// already) and reads: until EOF, or until a complete response has been followed by
/// `opts.linger` of silence, or `opts.timeout`.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], opts: RawOpts) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_nodelay(true);
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    if opts.half_close {
        let _ = s.shutdown().await;
    }
    read_raw_response(&mut s, opts).await
}

/// `raw_exchange` with default options.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    raw_exchange(addr, bytes, RawOpts::default()).await
}

/// Reads a response from an already-written stream (see `raw_exchange`).
pub async fn read_raw_response(s: &mut TcpStream, opts: RawOpts) -> RawResponse {
    let deadline = Instant::now() + opts.timeout;
    let mut out = RawResponse::default();
    let mut complete_at: Option<Instant> = None;
    loop {
        if out.status.is_none() || complete_at.is_none() {
            parse_into(&mut out, &mut complete_at);
        }
        let until = match complete_at {
            Some(t) => (t + opts.linger).min(deadline),
            None => deadline,
        };
        let now = Instant::now();
        if now >= until {
            break;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(until - now, s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                out.closed = true;
                break;
            }
            Ok(Ok(n)) => out.raw.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => {
                out.closed = true;
                out.reset = matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe);
                break;
            }
        }
    }
    parse_into(&mut out, &mut complete_at);
    out
}

/// Parses `out.raw` into status/headers/body; sets `complete_at` once the first
/// response is complete.
fn parse_into(out: &mut RawResponse, complete_at: &mut Option<Instant>) {
    let mut hs = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut hs);
    let Ok(httparse::Status::Complete(head_len)) = resp.parse(&out.raw) else { return };
    let status = resp.code.unwrap_or(0);
    out.status = Some(status);
    out.status_line =
        String::from_utf8_lossy(&out.raw[..out.raw.windows(2).position(|w| w == b"\r\n").unwrap_or(0)]).into_owned();
    out.headers = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let rest = &out.raw[head_len..];
    let chunked =
        header_value(&out.headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let clen = header_value(&out.headers, "content-length").and_then(|v| v.trim().parse::<usize>().ok());
    let done = if (100..200).contains(&status) || status == 204 || status == 304 {
        out.body.clear();
        true
    } else if chunked {
        match dechunk(rest) {
            Some(b) => {
                out.body = b;
                true
            }
            None => false,
        }
    } else if let Some(n) = clen {
        out.body = rest[..n.min(rest.len())].to_vec();
        rest.len() >= n
    } else {
        out.body = rest.to_vec(); // delimited by EOF
        false
    };
    if done && complete_at.is_none() {
        *complete_at = Some(Instant::now());
    }
}

fn dechunk(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let end = i + buf.get(i..)?.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[i..end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        i = end + 2;
        if size == 0 {
            return Some(out);
        }
        if buf.len() < i + size + 2 {
            return None;
        }
        out.extend_from_slice(&buf[i..i + size]);
        i += size + 2;
    }
}

// ---------------------------------------------------------------- WebSocket bits

/// A WebSocket upgrade request for `path` (valid per RFC 6455, key `WS_KEY`).
pub fn ws_upgrade_request(path: &str, host: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
pub fn ws_accept(key: &str) -> String {
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// One final frame; masked (as a client must) when `mask` is set.
pub fn ws_frame(opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(m | n as u8),
        n if n < 65536 => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if mask {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

// ---------------------------------------------------------------- raw backends

/// A TCP server on 127.0.0.1:0 running `handler` for every accepted connection, on a
/// private tokio runtime. Dropping it stops it and closes every connection.
pub struct RawBackend {
    pub addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl RawBackend {
    pub fn start<F, Fut>(handler: F) -> RawBackend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("from_std");
            loop {
                if let Ok((s, _)) = listener.accept().await {
                    let _ = s.set_nodelay(true);
                    tokio::spawn(handler(s));
                }
            }
        });
        RawBackend { addr, rt: Some(rt) }
    }

    /// A backend that reads one request head and answers `response` verbatim, then
    /// (if `close`) closes; otherwise keeps the connection open until the peer closes.
    pub fn canned(response: &'static [u8], close: bool) -> RawBackend {
        Self::start(move |mut s| async move {
            let mut buf = Vec::new();
            if read_head(&mut s, &mut buf).await.ok().flatten().is_none() {
                return; // health check or garbage
            }
            let _ = s.write_all(response).await;
            let _ = s.flush().await;
            if close {
                let _ = s.shutdown().await;
            } else {
                let mut sink = [0u8; 4096];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            }
        })
    }

    /// A WebSocket echo backend that answers each handshake with the `interim` heads (e.g.
    /// `100 Continue`), each in a write of its own, before its 101. Returns it with the
    /// headers of every handshake request it read.
    pub fn ws_echo_after(interim: &'static [&'static [u8]]) -> (RawBackend, Arc<Mutex<Vec<Headers>>>) {
        let seen: Arc<Mutex<Vec<Headers>>> = Arc::default();
        let record = seen.clone();
        let backend = Self::start(move |mut s| {
            let record = record.clone();
            async move {
                use futures_util::{SinkExt, StreamExt};
                let mut buf = Vec::new();
                let Ok(Some(head)) = read_head(&mut s, &mut buf).await else { return };
                let key = header_value(&head.headers, "sec-websocket-key").unwrap_or_default().to_string();
                record.lock().unwrap().push(head.headers);
                for interim in interim {
                    if s.write_all(interim).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
                let accept = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", ws_accept(&key));
                if s.write_all(accept.as_bytes()).await.is_err() {
                    return;
                }
                let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(s, role, None).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        });
        (backend, seen)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// HTTP/1.1 backend that records every request it parses (in order, across
/// connections) and every byte it receives. Answers 200 `ok <target>`, keep-alive.
pub struct RecordingBackend {
    pub server: RawBackend,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl RecordingBackend {
    pub fn start() -> RecordingBackend {
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::default();
        let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (r, b) = (requests.clone(), bytes.clone());
        let server = RawBackend::start(move |s| record_conn(s, r.clone(), b.clone()));
        RecordingBackend { server, requests, bytes }
    }
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
    /// Request targets received so far.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }
    /// Requests whose target contains `needle`.
    pub fn requests_to(&self, needle: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.path.contains(needle)).collect()
    }
    /// Every byte received so far, all connections concatenated.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }
}

/// Tees every byte read into a shared buffer.
struct Tee<'a> {
    s: &'a mut TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl tokio::io::AsyncRead for Tee<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut *self.s).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = r {
            self.log.lock().unwrap().extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

async fn record_conn(mut s: TcpStream, requests: Arc<Mutex<Vec<RecordedRequest>>>, bytes: Arc<Mutex<Vec<u8>>>) {
    let mut buf = Vec::new();
    loop {
        let mut tee = Tee { s: &mut s, log: bytes.clone() };
        let head = match read_head(&mut tee, &mut buf).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(_) => {
                let _ =
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                return;
            }
        };
        buf.drain(..head.len);
        let body = match read_body(&mut tee, &mut buf, &head.headers).await {
            Ok(b) => b,
            Err(_) => {
                let _ =
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                return;
            }
        };
        let close = header_value(&head.headers, "connection").is_some_and(|v| v.to_ascii_lowercase().contains("close"));
        let text = format!("ok {}", head.path);
        requests.lock().unwrap().push(RecordedRequest {
            method: head.method,
            path: head.path,
            headers: head.headers,
            body,
        });
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).await.is_err() || close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

// ---------------------------------------------------------------- process checks

/// Resident set size of process `pid` in KiB (Linux `/proc/<pid>/status` VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- shared fixtures

/// One fixture (e.g. a wsgate and its backends) shared by the tests of a file that run at
/// the same time: the first caller starts it, the last one to drop its `Arc` stops it (a
/// plain `static` would never be dropped, leaking the wsgate process).
pub struct SharedFixture<T>(Mutex<std::sync::Weak<T>>);

impl<T> SharedFixture<T> {
    pub const fn new() -> Self {
        SharedFixture(Mutex::new(std::sync::Weak::new()))
    }

    pub fn get(&self, start: impl FnOnce() -> T) -> Arc<T> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = slot.upgrade() {
            return live;
        }
        let fresh = Arc::new(start());
        *slot = Arc::downgrade(&fresh);
        fresh
    }
}

impl<T> Default for SharedFixture<T> {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------- after each hostile case

/// A WebSocket session to `ws://<addr>/ws/healthy`, opened before hostile cases so that
/// `assert_unharmed` can check it still echoes after each.
pub async fn healthy_session(gw: &super::proxy::Wsgate, addr: SocketAddr) -> super::client::Ws {
    let (ws, _) = super::client::ws_connect(&format!("ws://{addr}/ws/healthy"), &[])
        .await
        .unwrap_or_else(|e| panic!("healthy session: {e}\n{}", gw.logs()));
    ws
}

/// The verdicts on a table of cases: each case's answer is printed (marked when wrong) and
/// its problems kept, so that one run names every wrong case, not only the first.
#[derive(Default)]
pub struct Verdicts {
    failures: Vec<String>,
}

impl Verdicts {
    pub fn new() -> Verdicts {
        Verdicts::default()
    }

    /// Case `label` got `answer`; `problems` is what is wrong with it (empty: nothing).
    pub fn record(&mut self, label: &str, answer: &str, problems: Vec<String>) {
        println!("{label:48} -> {answer}{}", if problems.is_empty() { "" } else { "  <-- WRONG" });
        if !problems.is_empty() {
            self.failures.push(format!("[{label}] {}", problems.join("; ")));
        }
    }

    /// Fails the test, listing every wrong case and wsgate's logs, unless there is none.
    pub fn assert_none_wrong(self, gw: &super::proxy::Wsgate) {
        assert!(
            self.failures.is_empty(),
            "{} case(s) answered wrongly:\n{}\n{}",
            self.failures.len(),
            self.failures.join("\n"),
            gw.logs()
        );
    }
}

/// After a hostile case: wsgate is still running, nothing panicked, the WebSocket session
/// `healthy` (opened before the case) still echoes, and a new HTTP request to `path` gets 200.
pub async fn assert_unharmed(
    gw: &super::proxy::Wsgate,
    addr: SocketAddr,
    healthy: &mut super::client::Ws,
    path: &str,
    case: &str,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    assert!(gw.is_running(), "[{case}] wsgate exited\n{}", gw.logs());
    assert!(!gw.log().contains("panicked"), "[{case}] wsgate panicked\n{}", gw.logs());
    let text = format!("still alive after {case}");
    let echo = tokio::time::timeout(Duration::from_secs(5), async {
        healthy.send(Message::text(text.clone())).await.map_err(|e| e.to_string())?;
        loop {
            match healthy.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await;
    match echo {
        Ok(Ok(t)) => assert_eq!(t, text, "[{case}] healthy session echoed something else"),
        Ok(Err(e)) => panic!("[{case}] healthy WebSocket session broke: {e}\n{}", gw.logs()),
        Err(_) => panic!("[{case}] healthy WebSocket session did not echo within 5 s\n{}", gw.logs()),
    }
    let r =
        raw_request(addr, format!("GET {path} HTTP/1.1\r\nHost: healthy.test\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
    assert_eq!(r.status, Some(200), "[{case}] HTTP request after the case: {}\n{}", r.summary(), gw.logs());
}

/// Reads one unmasked (server-to-client) frame: (first byte, payload). 5 s bound.
pub async fn read_ws_frame(s: &mut TcpStream) -> io::Result<(u8, Vec<u8>)> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).await?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        if h[1] & 0x80 != 0 {
            let mut m = [0u8; 4];
            s.read_exact(&mut m).await?;
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await?;
        Ok((h[0], payload))
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no frame within 5 s"))?
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
