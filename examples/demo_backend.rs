//! Demo backends for the wsgate quick start, plus a probe client.
//!
//! Serve:
//!   cargo run --example demo_backend -- --http 127.0.0.1:3003 --ws 127.0.0.1:3001 --ws 127.0.0.1:3002
//!     --http ADDR  HTTP server: `hello from demo backend ADDR` (`/healthz` -> `ok`)
//!     --ws ADDR    WebSocket echo server (plain HTTP requests, e.g. `/healthz`, get 200 `ok`)
//!
//! Probe (through wsgate):
//!   cargo run --example demo_backend -- --probe-http http://127.0.0.1:8080/ --probe-ws ws://127.0.0.1:8080/websocket
//!     sends one HTTP GET and/or one WebSocket text message, prints the replies,
//!     exits 0 on success, 1 on failure (each probe bounded by 10 s).
//!
//! Flags may be repeated and combined; with servers and probes both given, the
//! probes run after the servers start and the process exits with their result.

#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header::SEC_WEBSOCKET_PROTOCOL, HeaderValue};
use tokio_tungstenite::tungstenite::Message;

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Args {
    http: Vec<String>,
    ws: Vec<String>,
    probe_http: Vec<String>,
    probe_ws: Vec<String>,
}

fn usage() -> &'static str {
    "usage: demo_backend [--http ADDR]... [--ws ADDR]... [--probe-http URL]... [--probe-ws URL]...\n\
     example: demo_backend --ws 127.0.0.1:3001 --ws 127.0.0.1:3002 --http 127.0.0.1:3003"
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let list = match flag.as_str() {
            "--http" => &mut args.http,
            "--ws" => &mut args.ws,
            "--probe-http" => &mut args.probe_http,
            "--probe-ws" => &mut args.probe_ws,
            other => return Err(format!("unknown argument {other:?}")),
        };
        list.push(it.next().ok_or_else(|| format!("{flag} needs a value"))?);
    }
    if args.http.is_empty() && args.ws.is_empty() && args.probe_http.is_empty() && args.probe_ws.is_empty() {
        return Err("nothing to do".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo_backend: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    for (addrs, ws) in [(&args.http, false), (&args.ws, true)] {
        for a in addrs {
            let listener = match TcpListener::bind(a.as_str()).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("demo_backend: cannot listen on {a}: {e}");
                    return ExitCode::from(1);
                }
            };
            let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| a.clone());
            println!("demo backend: {} server on {local}", if ws { "WebSocket echo" } else { "HTTP" });
            tokio::spawn(serve(listener, local, ws));
        }
    }
    if args.probe_http.is_empty() && args.probe_ws.is_empty() {
        // Serve until killed.
        std::future::pending::<()>().await;
    }
    let mut ok = true;
    for url in &args.probe_http {
        ok &= report(url, tokio::time::timeout(PROBE_TIMEOUT, probe_http(url)).await);
    }
    for url in &args.probe_ws {
        ok &= report(url, tokio::time::timeout(PROBE_TIMEOUT, probe_ws(url)).await);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn report(url: &str, r: Result<Result<String, String>, tokio::time::error::Elapsed>) -> bool {
    match r {
        Ok(Ok(msg)) => {
            println!("OK   {url}\n{msg}");
            true
        }
        Ok(Err(e)) => {
            println!("FAIL {url}: {e}");
            false
        }
        Err(_) => {
            println!("FAIL {url}: timed out after {PROBE_TIMEOUT:?}");
            false
        }
    }
}

// ---------------------------------------------------------------- servers

async fn serve(listener: TcpListener, name: String, ws: bool) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(conn(stream, name.clone(), ws));
        }
    }
}

struct Head {
    method: String,
    path: String,
    len: usize,
    upgrade: bool,
    close: bool,
    content_length: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let get = |n: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(n))
                    .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                    .unwrap_or_default()
            };
            let conn = get("connection");
            Ok(Some(Head {
                method: req.method.unwrap_or("").to_string(),
                path: req.path.unwrap_or("").to_string(),
                len,
                upgrade: get("upgrade").contains("websocket"),
                close: conn.contains("close") || (req.version == Some(0) && !conn.contains("keep-alive")),
                content_length: get("content-length").trim().parse().unwrap_or(0),
            }))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

async fn conn(mut s: TcpStream, name: String, ws: bool) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // Read one request head.
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(h)) => break h,
                Ok(None) if buf.len() < 64 * 1024 => {}
                _ => return,
            }
            buf.reserve(4096);
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        if ws && head.upgrade {
            let stream = Prefixed { prefix: buf, pos: 0, inner: s };
            ws_echo(stream, &name).await;
            return;
        }
        // Skip a Content-Length body.
        while buf.len() < head.len + head.content_length {
            buf.reserve(4096);
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        buf.drain(..head.len + head.content_length);
        let route = head.path.split('?').next().unwrap_or("");
        let body =
            if route == "/healthz" || ws { "ok\n".to_string() } else { format!("hello from demo backend {name}\n") };
        if route != "/healthz" {
            println!("[{name}] {} {}", head.method, head.path);
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
            body.len(),
            if head.close { "Connection: close\r\n" } else { "" },
            if head.method == "HEAD" { "" } else { body.as_str() }
        );
        if s.write_all(resp.as_bytes()).await.is_err() || head.close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, name: &str) {
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        println!("[{name}] WebSocket upgrade {}", req.uri());
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
        Err(e) => {
            eprintln!("[{name}] handshake failed: {e}");
            return;
        }
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Replays already-read bytes before reading from the socket.
struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
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
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------- probes

async fn probe_http(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let addr: SocketAddr = match target.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&target)
            .await
            .map_err(|e| format!("resolve {target}: {e}"))?
            .next()
            .ok_or(format!("resolve {target}: no address"))?,
    };
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: demo_backend-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    loop {
        buf.reserve(8192);
        let n = s.read_buf(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        let mut hs = [httparse::EMPTY_HEADER; 100];
        let mut resp = httparse::Response::new(&mut hs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let clen = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok());
                let complete = match clen {
                    Some(c) => buf.len() >= len + c,
                    None => n == 0,
                };
                if complete {
                    let code = resp.code.unwrap_or(0);
                    let body_end = clen.map_or(buf.len(), |c| len + c);
                    let body = String::from_utf8_lossy(&buf[len..body_end]).into_owned();
                    let mut out = format!("HTTP {code} {}\n", resp.reason.unwrap_or(""));
                    for h in resp.headers.iter() {
                        out.push_str(&format!("{}: {}\n", h.name, String::from_utf8_lossy(h.value)));
                    }
                    out.push('\n');
                    out.push_str(&body);
                    return if (200..300).contains(&code) { Ok(out) } else { Err(format!("status {code}\n{out}")) };
                }
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("bad response: {e}")),
        }
        if n == 0 {
            return Err(format!("connection closed early: {:?}", String::from_utf8_lossy(&buf)));
        }
    }
}

async fn probe_ws(url: &str) -> Result<String, String> {
    let (mut ws, resp) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect: {e}"))?;
    let sent = "hello from demo_backend probe";
    ws.send(Message::text(sent)).await.map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let _ = ws.close(None).await;
                let out = format!("handshake: HTTP {}\nsent:     {sent}\nreceived: {t}", resp.status());
                return if t == sent { Ok(out) } else { Err(format!("echo mismatch\n{out}")) };
            }
            Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
            Some(Ok(other)) => return Err(format!("unexpected message: {other:?}")),
            Some(Err(e)) => return Err(format!("receive: {e}")),
            None => return Err("connection closed before the echo".into()),
        }
    }
}
