//! WebSocket over HTTP/2 (RFC 8441): the HTTP/1.1 WebSocket matrix (tests/websocket.rs,
//! tests/access_log.rs) over an HTTP/2 stream, against the real binary and real backends:
//! echo, large messages under flow control, the backend's subprotocol, Close codes both
//! ways, the message size limit, the handshake checks (Origin, version), and how a backend's
//! end of connection reaches the stream (FIN: END_STREAM, reset: RST_STREAM, RFC 8441 §5).
#![allow(clippy::result_large_err)] // tungstenite's handshake callback returns its ErrorResponse
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::{self, Message};

// ---------------------------------------------------------------- the backend

/// What the `Peer` backend saw.
#[derive(Default, Debug)]
struct Seen {
    /// Connections that sent at least one byte (TCP health checks send none).
    contacts: usize,
    /// Each accepted handshake: its target and headers (lowercased names).
    handshakes: Vec<(String, Headers)>,
    /// Data messages received (each echoed).
    messages: usize,
    /// The Close frames received: code (None: no code) and reason.
    closes: Vec<(Option<u16>, String)>,
}

/// A WebSocket backend (tungstenite) that echoes Text and Binary, records what it sees,
/// picks the *last* subprotocol offered (so the choice is visibly its own), and on command
/// (a text message): `close CODE REASON` closes with that code; `fin` closes its TCP
/// connection without a Close frame; `rst` resets it (SO_LINGER 0).
struct Peer {
    backend: RawBackend,
    seen: Arc<Mutex<Seen>>,
}

impl Peer {
    fn start() -> Peer {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let all = seen.clone();
        let backend = RawBackend::start(move |tcp| peer_session(tcp, all.clone()));
        Peer { backend, seen }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.backend.addr
    }

    fn contacts(&self) -> usize {
        self.seen.lock().unwrap().contacts
    }

    fn handshakes(&self) -> Vec<(String, Headers)> {
        self.seen.lock().unwrap().handshakes.clone()
    }

    fn messages(&self) -> usize {
        self.seen.lock().unwrap().messages
    }

    /// The Close frames received, once there are `n` (bounded: 5 s).
    async fn closes(&self, n: usize) -> Vec<(Option<u16>, String)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let closes = self.seen.lock().unwrap().closes.clone();
            if closes.len() >= n {
                return closes;
            }
            assert!(Instant::now() < deadline, "the backend got {closes:?}, not {n} Close frame(s)");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn peer_session(tcp: tokio::net::TcpStream, seen: Arc<Mutex<Seen>>) {
    let mut first = [0u8; 1];
    if !matches!(tcp.peek(&mut first).await, Ok(1)) {
        return; // a TCP health check
    }
    seen.lock().unwrap().contacts += 1;
    let record = seen.clone();
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        record.lock().unwrap().handshakes.push((req.uri().to_string(), headers));
        let offered = req.headers().get_all("sec-websocket-protocol");
        let last = offered.iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim).next_back();
        if let Some(chosen) = last.filter(|p| !p.is_empty()) {
            resp.headers_mut().insert("sec-websocket-protocol", chosen.parse().unwrap());
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) if t.starts_with("close ") => {
                let (code, reason) = t["close ".len()..].split_once(' ').unwrap_or((&t["close ".len()..], ""));
                let code = CloseCode::from(code.parse::<u16>().unwrap());
                let _ = ws.close(Some(CloseFrame { code, reason: reason.to_string().into() })).await;
            }
            // Dropping the connection: a FIN, no Close frame.
            Message::Text(t) if t.as_str() == "fin" => return,
            Message::Text(t) if t.as_str() == "rst" => {
                ws.get_ref().set_zero_linger().unwrap();
                return; // dropped with SO_LINGER 0: a TCP RST
            }
            Message::Text(_) | Message::Binary(_) => {
                seen.lock().unwrap().messages += 1;
                if ws.send(msg).await.is_err() {
                    return;
                }
            }
            Message::Close(frame) => {
                let close = frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                seen.lock().unwrap().closes.push(close);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- wsgate in front of it

struct Gate {
    gw: Wsgate,
    peer: Peer,
    port: u16,
    cert: std::path::PathBuf,
    _certs: tempfile::TempDir,
}

/// wsgate with a TLS listener offering WebSocket over HTTP/2, in front of a `Peer`, on the
/// route `/ws` with `policy` (`None`: no `websocket:` key), access log in `access.jsonl`.
fn gate(policy: Option<WebSocket>) -> Gate {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(certs.path());
    let peer = Peer::start();
    let port = free_port();
    let mut route = Route::to("chat").name("chat").path_prefix("/ws");
    if let Some(policy) = policy {
        route = route.websocket(policy);
    }
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new(&cert, &key).websocket_over_http2(true)))
        .access_log(AccessLog::path("access.jsonl"))
        .upstream("chat", Upstream::one(peer.addr()))
        .route(route);
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    Gate { gw, peer, port, cert, _certs: certs }
}

impl Gate {
    /// A WebSocket over a new HTTP/2 connection, on `path`; panics unless answered 200.
    async fn connect(&self, path: &str, headers: &[(&str, &str)]) -> (http::Response<()>, H2Ws) {
        h2_ws_connect(self.port, &self.cert, path, headers).await.unwrap_or_else(|e| panic!("{e}\n{}", self.gw.logs()))
    }

    /// The answer to an extended CONNECT that must not become a WebSocket.
    async fn refused(&self, headers: &[(&str, &str)]) -> http::Response<bytes::Bytes> {
        match h2_ws_connect(self.port, &self.cert, "/ws", headers).await {
            Err(H2WsError::Status(answer)) => answer,
            Err(e) => panic!("{headers:?}: {e}\n{}", self.gw.logs()),
            Ok((head, _)) => panic!("{headers:?}: accepted ({head:?})"),
        }
    }

    /// The access log's WebSocket session lines, once there are `n` (bounded: 10 s).
    async fn session_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let path = self.gw.dir.path().join("access.jsonl");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<_> = access_log_lines(&path, 0).into_iter().filter(|l| l["status"] == 101).collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(Instant::now() < deadline, "{n} session line(s) expected, got {lines:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------- helpers

/// How the stream under `ws` ends, read past the WebSocket (bounded: 10 s): the bytes that
/// came before its end, and `Ok` for a clean END_STREAM or the read's error (a reset).
async fn stream_end(ws: &mut H2Ws) -> (Vec<u8>, std::io::Result<()>) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(CLIENT_TIMEOUT, ws.get_mut().read_to_end(&mut rest));
    let end = read.await.expect("the stream ends in time").map(drop);
    (rest, end)
}

/// The stream under `ws` ends with END_STREAM, nothing left after what tungstenite read.
async fn assert_end_stream(ws: &mut H2Ws, g: &Gate) {
    let (rest, end) = stream_end(ws).await;
    assert!(end.is_ok() && rest.is_empty(), "END_STREAM expected: {end:?} after {rest:?}\n{}", g.gw.logs());
    assert!(ws.get_ref().is_end_stream());
}

/// `fut`, bounded by `CLIENT_TIMEOUT` (sends wait for flow-control credit: they can hang).
async fn in_time<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CLIENT_TIMEOUT, fut).await.unwrap_or_else(|_| panic!("{what}: not done in {CLIENT_TIMEOUT:?}"))
}

/// Sends `msg` on `ws` (bounded).
async fn send(ws: &mut H2Ws, msg: Message) {
    in_time("send", ws.send(msg)).await.expect("send")
}

/// `text` sent and its echo (bounded).
async fn echo(ws: &mut H2Ws, text: &str) -> String {
    in_time("echo", ws_echo_text(ws, text)).await
}

/// The code and reason of `msg`, which must be a Close with a code.
fn close_of(msg: Option<Result<Message, tungstenite::Error>>) -> (u16, String) {
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => (u16::from(frame.code), frame.reason.to_string()),
        other => panic!("a Close with a code, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the matrix

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_binary_and_70_kb_messages_echo_both_ways() {
    let g = gate(None);
    let (head, mut ws) = g.connect("/ws/room?id=7", &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(echo(&mut ws, "hello").await, "hello");
    send(&mut ws, Message::binary(vec![0u8, 1, 2, 255])).await;
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(b, [0u8, 1, 2, 255]),
        other => panic!("{other:?}"),
    }
    // More than a stream window (64 KiB) each way: both directions wait for credit.
    let big: Vec<u8> = (0..70_000).map(|i| (i * 7 % 251) as u8).collect();
    send(&mut ws, Message::binary(big.clone())).await;
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(b))) => assert!(b == big, "70 KB binary message corrupted"),
        other => panic!("{other:?}"),
    }
    let text: String = "wsgate ".repeat(10_000);
    assert_eq!(echo(&mut ws, &text).await, text);
    in_time("close", ws.close(None)).await.unwrap();
    assert!(matches!(ws_recv(&mut ws).await, Some(Ok(Message::Close(None)))));
    assert_end_stream(&mut ws, &g).await;

    // The backend got the HTTP/1.1 handshake the stream stands for.
    let handshakes = g.peer.handshakes();
    assert_eq!(handshakes.len(), 1);
    let (target, h) = &handshakes[0];
    assert_eq!(target, "/ws/room?id=7");
    assert_eq!(header(h, "host"), Some(format!("localhost:{}", g.port).as_str()));
    assert_eq!(header(h, "sec-websocket-version"), Some("13"));
    assert_eq!(header(h, "upgrade").map(str::to_ascii_lowercase).as_deref(), Some("websocket"));
    assert_eq!(g.peer.messages(), 4);

    let lines = g.session_lines(1).await;
    let line = &lines[0];
    assert_eq!((line["path"].as_str(), line["route"].as_str()), (Some("/ws/room"), Some("chat")), "{line}");
    let session = &line["websocket"];
    assert_eq!(session["protocol"], "h2", "{line}");
    assert_eq!((session["messages_in"].as_u64(), session["messages_out"].as_u64()), (Some(4), Some(4)), "{line}");
    assert_eq!(session["close_initiator"], "client", "{line}");
    assert!(line["bytes_in"].as_u64().unwrap() > 140_000, "{line}");
    assert!(line["bytes_out"].as_u64().unwrap() > 140_000, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backends_subprotocol_reaches_the_client_in_its_200() {
    let g = gate(None);
    let offer = [
        ("sec-websocket-protocol", "chat.v1, chat.v2"),
        ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
    ];
    let (head, mut ws) = g.connect("/ws", &offer).await;
    assert_eq!(head.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap()), Some("chat.v2"));
    // The backend negotiated no extension: none is claimed on its behalf.
    assert_eq!(head.headers().get("sec-websocket-extensions"), None);
    let (_, h) = g.peer.handshakes().pop().unwrap();
    assert_eq!(header(&h, "sec-websocket-protocol"), Some("chat.v1, chat.v2"));
    assert_eq!(header(&h, "sec-websocket-extensions"), Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(echo(&mut ws, "negotiated").await, "negotiated");

    // Nothing offered, nothing chosen.
    let (head, mut ws) = g.connect("/ws", &[]).await;
    assert_eq!(head.headers().get("sec-websocket-protocol"), None);
    assert_eq!(echo(&mut ws, "plain").await, "plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_reaches_the_backend_and_its_reply_ends_the_stream() {
    let g = gate(None);
    let (_, mut ws) = g.connect("/ws", &[]).await;
    assert_eq!(echo(&mut ws, "before").await, "before");
    let bye = CloseFrame { code: CloseCode::from(4001), reason: "client leaving".into() };
    in_time("close", ws.close(Some(bye))).await.unwrap();
    assert_eq!(g.peer.closes(1).await, [(Some(4001), "client leaving".to_string())]);
    // The backend's reply (tungstenite echoes the Close) comes back, then END_STREAM.
    assert_eq!(close_of(ws_recv(&mut ws).await), (4001, "client leaving".to_string()));
    assert!(ws_recv(&mut ws).await.is_none());
    assert_end_stream(&mut ws, &g).await;

    let line = &g.session_lines(1).await[0];
    let session = &line["websocket"];
    assert_eq!((session["close_initiator"].as_str(), session["close_code"].as_u64()), (Some("client"), Some(4001)));
    assert_eq!(session["protocol"], "h2", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_close_reaches_the_client_with_its_code_and_reason() {
    let g = gate(None);
    let (_, mut ws) = g.connect("/ws", &[]).await;
    send(&mut ws, Message::text("close 4002 backend leaving")).await;
    assert_eq!(close_of(ws_recv(&mut ws).await), (4002, "backend leaving".to_string()));
    // tungstenite answers the Close with the same frame; it reaches the backend.
    assert!(ws_recv(&mut ws).await.is_none());
    assert_eq!(g.peer.closes(1).await, [(Some(4002), "backend leaving".to_string())]);
    assert_end_stream(&mut ws, &g).await;

    let line = &g.session_lines(1).await[0];
    let session = &line["websocket"];
    assert_eq!((session["close_initiator"].as_str(), session["close_code"].as_u64()), (Some("backend"), Some(4002)));
    assert_eq!(session["protocol"], "h2", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_stream_with_1009() {
    let g = gate(Some(WebSocket::new().max_message_bytes(1000)));
    let (_, mut ws) = g.connect("/ws", &[]).await;
    assert_eq!(echo(&mut ws, &"a".repeat(1000)).await, "a".repeat(1000));
    send(&mut ws, Message::binary(vec![7u8; 5000])).await;
    assert_eq!(close_of(ws_recv(&mut ws).await).0, 1009, "{}", g.gw.logs());
    assert!(ws_recv(&mut ws).await.is_none());
    assert_eq!(g.peer.closes(1).await.iter().map(|c| c.0).collect::<Vec<_>>(), [Some(1009)]);
    assert_eq!(g.peer.messages(), 1, "only the message within the limit reached the backend");
    assert_end_stream(&mut ws, &g).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_outside_the_allowlist_get_403_before_the_backend() {
    let g = gate(Some(WebSocket::new().allowed_origins(["https://chat.example.com"])));
    let evil = g.refused(&[("origin", "https://evil.example")]).await;
    assert_eq!(evil.status(), 403, "cross-site WebSocket hijacking must be refused");
    let none = g.refused(&[]).await;
    assert_eq!(none.status(), 403, "no Origin is refused when allowed_origins is set");
    assert_eq!(g.peer.contacts(), 0, "nothing reached the backend");
    // The allowed origin gets through (case-insensitively).
    let (_, mut ws) = g.connect("/ws", &[("origin", "https://Chat.Example.com")]).await;
    assert_eq!(echo(&mut ws, "ok").await, "ok");
    assert_eq!(g.peer.contacts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_version_gets_426_naming_13() {
    let g = gate(None);
    let answer = g.refused(&[("sec-websocket-version", "12")]).await;
    assert_eq!(answer.status(), 426, "{answer:?}");
    assert_eq!(answer.headers().get("sec-websocket-version").map(|v| v.to_str().unwrap()), Some("13"));
    assert_eq!(g.peer.contacts(), 0, "nothing reached the backend");
}

/// A backend that closes its TCP connection (FIN) without a Close frame: the stream ends
/// with END_STREAM, the TCP FIN's counterpart (RFC 8441 §5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_fin_ends_the_stream_with_end_stream() {
    let g = gate(None);
    let (_, mut ws) = g.connect("/ws", &[]).await;
    assert_eq!(echo(&mut ws, "one").await, "one");
    send(&mut ws, Message::text("fin")).await;
    // No Close frame came from the backend, and wsgate makes none up: the stream just ends.
    assert_end_stream(&mut ws, &g).await;
    // The client ends its side too (END_STREAM); the session is over, logged without a Close.
    in_time("END_STREAM", tokio::io::AsyncWriteExt::shutdown(ws.get_mut())).await.unwrap();
    let line = &g.session_lines(1).await[0];
    let session = &line["websocket"];
    assert_eq!((session["close_initiator"].as_str(), session["close_code"].as_u64()), (Some("none"), None));
    assert_eq!(session["protocol"], "h2", "{line}");
}

/// A backend whose TCP connection is reset: the stream is reset (RST_STREAM, CANCEL), the
/// TCP RST's counterpart (RFC 8441 §5), not ended as if the backend had closed cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_reset_resets_the_stream() {
    let g = gate(None);
    let (_, mut ws) = g.connect("/ws", &[]).await;
    assert_eq!(echo(&mut ws, "one").await, "one");
    send(&mut ws, Message::text("rst")).await;
    let (rest, end) = stream_end(&mut ws).await;
    let e = end.expect_err("a reset stream, not END_STREAM");
    assert!(is_stream_reset(&e) && e.to_string().ends_with("CANCEL"), "{e} after {rest:?}\n{}", g.gw.logs());
    let line = &g.session_lines(1).await[0];
    let session = &line["websocket"];
    assert_eq!((session["close_initiator"].as_str(), session["close_code"].as_u64()), (Some("none"), None));
    assert_eq!(session["protocol"], "h2", "{line}");
}

/// Session `i` echoes `session i`.
async fn echo_numbered((i, ws): (usize, &mut H2Ws)) -> Result<(), String> {
    ws_echo_once(ws, &format!("session {i}"), CLIENT_TIMEOUT).await
}

/// `h2_ws_connect_on`: 200 WebSockets at once on one HTTP/2 connection, each its own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_sessions_share_one_connection() {
    let g = gate(None);
    let (client, port) = (h2_ws_client(g.port, &g.cert).await, g.port);
    let opened = futures_util::future::join_all((0..200).map(|i| {
        let mut client = client.clone();
        async move { h2_ws_connect_on(&mut client, port, &format!("/ws/{i}"), &[]).await }
    }))
    .await;
    let mut sessions: Vec<H2Ws> =
        opened.into_iter().map(|r| r.unwrap_or_else(|e| panic!("{e}\n{}", g.gw.logs())).1).collect();
    let echoes =
        in_time("echoes", futures_util::future::join_all(sessions.iter_mut().enumerate().map(echo_numbered))).await;
    let failed: Vec<_> = echoes.into_iter().enumerate().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    let mut targets: Vec<String> = g.peer.handshakes().into_iter().map(|(t, _)| t).collect();
    targets.sort_by_key(|t| t[4..].parse::<u32>().unwrap());
    assert_eq!(targets, (0..200).map(|i| format!("/ws/{i}")).collect::<Vec<_>>());
    let closed = in_time("closes", futures_util::future::join_all(sessions.iter_mut().map(|ws| ws.close(None)))).await;
    assert!(closed.iter().all(Result::is_ok), "{closed:?}");
    assert_eq!(g.session_lines(200).await.iter().filter(|l| l["websocket"]["protocol"] == "h2").count(), 200);
}
