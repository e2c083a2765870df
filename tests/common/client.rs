//! Client helpers: raw HTTP/1.1 requests (plain and TLS), WebSocket (ws:// and wss://),
//! and a self-signed certificate generator (openssl CLI).
#![allow(dead_code, clippy::result_large_err)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, http::HeaderValue, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type Wss = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
pub type WsResponse = tungstenite::handshake::client::Response;
pub type Headers = Vec<(String, String)>;

/// First value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    super::backends::header_value(headers, name)
}

// ---------------------------------------------------------------- HTTP

/// Sends `raw` verbatim and reads one response: returns (status, headers with
/// lowercased names, body). Returns as soon as the response is complete (by
/// Content-Length / chunked / 101 / 204 / 304), otherwise reads until EOF.
/// Interim 100 responses are skipped. Panics after 10 s.
pub async fn http_request(addr: SocketAddr, raw: &str) -> (u16, Headers, String) {
    let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    request_on(stream, raw).await
}

/// `GET path` with `Host: host` and `Connection: close`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, Headers, String) {
    http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await
}

/// Like `http_request`, over TLS trusting only `ca_cert`; `server_name` is the SNI /
/// verified name (`localhost` or `127.0.0.1`).
pub async fn https_request(addr: SocketAddr, server_name: &str, ca_cert: &Path, raw: &str) -> (u16, Headers, String) {
    let stream = tls_connect(addr, server_name, ca_cert).await.unwrap_or_else(|e| panic!("tls connect {addr}: {e}"));
    request_on(stream, raw).await
}

/// Sends `raw` on an existing stream and reads one response (see `http_request`).
pub async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, raw: &str) -> (u16, Headers, String) {
    let fut = async move {
        stream.write_all(raw.as_bytes()).await?;
        stream.flush().await?;
        read_response(&mut stream).await
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("http request failed: {e}\nrequest:\n{raw}"),
        Err(_) => panic!("http request timed out after {CLIENT_TIMEOUT:?}\nrequest:\n{raw}"),
    }
}

async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u16, Headers, String)> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut eof = false;
    loop {
        // Parse the head.
        let parsed = {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut hs);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => Some((
                    n,
                    resp.code.unwrap_or(0),
                    resp.headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect::<Headers>(),
                )),
                Ok(httparse::Status::Partial) => None,
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad response ({e}): {:?}", String::from_utf8_lossy(&buf)),
                    ))
                }
            }
        };
        let Some((head_len, status, headers)) = parsed else {
            if eof {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("EOF before complete response head: {:?}", String::from_utf8_lossy(&buf)),
                ));
            }
            buf.reserve(4096);
            eof = s.read_buf(&mut buf).await? == 0;
            continue;
        };
        if status == 100 {
            buf.drain(..head_len);
            continue;
        }
        buf.drain(..head_len);
        if status == 101 || status == 204 || status == 304 {
            return Ok((status, headers, String::new()));
        }
        let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let clen = header(&headers, "content-length").and_then(|v| v.trim().parse::<usize>().ok());
        loop {
            if chunked {
                if let Some(body) = decode_chunked(&buf) {
                    return Ok((status, headers, String::from_utf8_lossy(&body).into_owned()));
                }
            } else if let Some(n) = clen {
                if buf.len() >= n {
                    return Ok((status, headers, String::from_utf8_lossy(&buf[..n]).into_owned()));
                }
            }
            if eof {
                if chunked || clen.is_some() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("EOF in body (status {status}): {:?}", String::from_utf8_lossy(&buf)),
                    ));
                }
                return Ok((status, headers, String::from_utf8_lossy(&buf).into_owned()));
            }
            buf.reserve(8192);
            eof = s.read_buf(&mut buf).await? == 0;
        }
    }
}

/// Decodes a complete chunked body, or None if `buf` does not hold all of it yet.
fn decode_chunked(buf: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let line_end = i + buf[i..].windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&buf[i..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        i = line_end + 2;
        if size == 0 {
            // trailers, terminated by an empty line
            loop {
                let end = i + buf[i..].windows(2).position(|w| w == b"\r\n")?;
                if end == i {
                    return Some(out);
                }
                i = end + 2;
            }
        }
        if buf.len() < i + size + 2 {
            return None;
        }
        out.extend_from_slice(&buf[i..i + size]);
        i += size + 2;
    }
}

// ---------------------------------------------------------------- WebSocket

fn build_request(
    url: &str,
    extra_headers: &[(&str, &str)],
) -> Result<tungstenite::handshake::client::Request, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in extra_headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).map_err(tungstenite::http::Error::from)?;
        let value = HeaderValue::from_str(v).map_err(tungstenite::http::Error::from)?;
        req.headers_mut().append(name, value);
    }
    Ok(req)
}

fn timed_out() -> tungstenite::Error {
    tungstenite::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "websocket connect timed out"))
}

/// Connects to a `ws://` URL with extra handshake headers (appended, so
/// `Sec-WebSocket-Protocol` etc. can be offered). Bounded by 10 s. A non-101 answer
/// is `Err(tungstenite::Error::Http(response))`.
pub async fn ws_connect(url: &str, extra_headers: &[(&str, &str)]) -> Result<(Ws, WsResponse), tungstenite::Error> {
    let req = build_request(url, extra_headers)?;
    tokio::time::timeout(CLIENT_TIMEOUT, tokio_tungstenite::connect_async(req)).await.map_err(|_| timed_out())?
}

/// Connects to a `wss://` URL, trusting only `ca_cert`. `localhost` is dialed as
/// 127.0.0.1; the URL host is used as the TLS server name. Bounded by 10 s.
pub async fn wss_connect(
    url: &str,
    extra_headers: &[(&str, &str)],
    ca_cert: &Path,
) -> Result<(Wss, WsResponse), tungstenite::Error> {
    let req = build_request(url, extra_headers)?;
    let host = req.uri().host().unwrap_or("127.0.0.1").trim_matches(|c| c == '[' || c == ']').to_string();
    let port = req.uri().port_u16().unwrap_or(443);
    let ip = if host == "localhost" { "127.0.0.1".to_string() } else { host.clone() };
    let addr: SocketAddr = format!("{ip}:{port}")
        .parse()
        .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::UnableToConnect(url.to_string())))?;
    let fut = async {
        let tls = tls_connect(addr, &host, ca_cert).await.map_err(tungstenite::Error::Io)?;
        tokio_tungstenite::client_async(req, tls).await
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut).await.map_err(|_| timed_out())?
}

/// rustls client config (ring provider, as Pingora uses) trusting only the certs in `ca_cert`.
pub fn tls_client_config(ca_cert: &Path) -> Arc<rustls::ClientConfig> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert).unwrap_or_else(|e| panic!("read {}: {e:?}", ca_cert.display())) {
        roots.add(cert.expect("parse cert PEM")).expect("add root cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// TCP + TLS handshake to `addr` with SNI/verification name `server_name`.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca_cert: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = TlsConnector::from(tls_client_config(ca_cert));
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector.connect(name, tcp).await
}

/// Next data/close message (pings/pongs skipped), bounded by 10 s; panics on timeout.
/// `None` when the stream ended.
pub async fn ws_recv<S>(ws: &mut WebSocketStream<S>) -> Option<Result<Message, tungstenite::Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                other => return other,
            }
        }
    };
    tokio::time::timeout(CLIENT_TIMEOUT, fut).await.expect("websocket receive timed out after 10s")
}

/// Sends a text message and returns the next text reply (panics otherwise).
pub async fn ws_echo_text<S>(ws: &mut WebSocketStream<S>, text: &str) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("websocket send");
    match ws_recv(ws).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text echo of {text:?}, got {other:?}"),
    }
}

/// Sends `text` and waits (bounded: `within`) for the same text back, skipping pings and
/// pongs. For load tests, where a failure is counted rather than fatal: an error says what
/// came instead.
pub async fn ws_echo_once<S>(ws: &mut WebSocketStream<S>, text: &str, within: Duration) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.map_err(|e| format!("send {text:?}: {e}"))?;
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => continue,
                other => return other,
            }
        }
    };
    match tokio::time::timeout(within, next).await {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => Ok(()),
        Ok(other) => Err(format!("expected the echo of {text:?}, got {other:?}")),
        Err(_) => Err(format!("no echo of {text:?} within {within:?}")),
    }
}

/// A whole short session: connect to `url`, echo `text` once (bounded: `within`), close.
pub async fn connect_echo_close(url: &str, text: &str, within: Duration) -> Result<(), String> {
    let (mut ws, _) = ws_connect(url, &[]).await.map_err(|e| format!("connect: {e}"))?;
    ws_echo_once(&mut ws, text, within).await?;
    ws.close(None).await.map_err(|e| format!("close: {e}"))
}

/// A whole short session on `addr` for `path` with `Host: host` (not the address), over TLS
/// trusting `ca` (SNI `localhost`) when given: connect, echo `text` once, close. For configs
/// whose routes match names that do not resolve.
pub async fn connect_echo_close_as(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca: Option<&Path>,
    text: &str,
) -> Result<(), String> {
    let mut req = format!("ws://{addr}{path}").into_client_request().map_err(|e| format!("request: {e}"))?;
    let value = HeaderValue::from_str(host).map_err(|e| format!("Host {host:?}: {e}"))?;
    req.headers_mut().insert(tungstenite::http::header::HOST, value);
    match ca {
        None => {
            let tcp = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
            echo_close_on(tcp, req, text).await
        }
        Some(ca) => {
            let tls = tls_connect(addr, "localhost", ca).await.map_err(|e| format!("tls connect {addr}: {e}"))?;
            echo_close_on(tls, req, text).await
        }
    }
}

async fn echo_close_on<S>(stream: S, req: tungstenite::handshake::client::Request, text: &str) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = tokio::time::timeout(CLIENT_TIMEOUT, tokio_tungstenite::client_async(req, stream));
    let (mut ws, _) =
        handshake.await.map_err(|_| "handshake timed out".to_string())?.map_err(|e| format!("handshake: {e}"))?;
    ws_echo_once(&mut ws, text, CLIENT_TIMEOUT).await?;
    ws.close(None).await.map_err(|e| format!("close: {e}"))
}

// ---------------------------------------------------------------- which backend answered

/// Which backend answered `GET path` (`Host: x`): the status and its `X-Backend` (`-`
/// without one).
pub async fn backend_of(addr: SocketAddr, path: &str) -> (u16, String) {
    backend_of_with(addr, path, "").await
}

/// Like `backend_of`, with `extra` header lines (each ending in `\r\n`) in the request.
pub async fn backend_of_with(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let (status, headers, _) =
        http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")).await;
    (status, header(&headers, "x-backend").unwrap_or("-").to_string())
}

// ---------------------------------------------------------------- TLS material

/// Writes `cert.pem` / `key.pem` (PKCS#8) into `dir`: self-signed, CN=localhost,
/// SAN DNS:localhost + IP:127.0.0.1, CA:FALSE (so rustls/webpki accepts it as a
/// trusted end-entity certificate), valid 2 days. Uses the `openssl` CLI.
pub fn write_self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    write_cert(dir, "", "localhost", "DNS:localhost,IP:127.0.0.1")
}

/// Copies the certificate and key shipped in `conf/tls/` to `dir/tls/`, where the shipped
/// example config (`conf/example.yaml`) expects them relative to itself.
pub fn copy_shipped_certs(dir: &Path) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap_or_else(|e| panic!("create {}: {e}", tls.display()));
    for f in ["cert.pem", "key.pem"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tls").join(f);
        std::fs::copy(&from, tls.join(f)).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// Writes `<stem>cert.pem` / `<stem>key.pem` like [`write_self_signed_cert`], for the
/// given common name and subjectAltName list (e.g. `DNS:a.test,DNS:*.a.test`).
pub fn write_cert(dir: &Path, stem: &str, common_name: &str, san: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}cert.pem"));
    let key = dir.join(format!("{stem}key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={common_name}"))
        .arg("-addext")
        .arg(format!("subjectAltName={san}"))
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl (is the openssl CLI installed? scripts/ensure-deps.sh installs it)");
    assert!(
        out.status.success() && cert.exists() && key.exists(),
        "openssl failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Reads `ws` until a Close frame (other messages skipped; 5 s at most for each): its code.
pub async fn ws_close_code<W>(ws: &mut W) -> Option<u16>
where
    W: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a Close in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("a Close, got {other:?}"),
        }
    }
}
