//! WebSocket through wsgate: echo of text, binary and large messages, subprotocol and
//! extension negotiation end to end, idle timeout, and handshakes refused before anything
//! reaches a backend.
mod common;
use common::*;
use futures_util::SinkExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, Message};

struct Setup {
    gw: Wsgate,
    ws: WsBackend,
    port: u16,
}

/// wsgate in front of a WebSocket echo backend, on the route `/ws` with the `policy` given
/// (`None`: no `websocket:` key at all).
fn setup(policy: Option<WebSocket>) -> Setup {
    let ws = WsBackend::start("echo");
    let port = free_port();
    let mut route = Route::to("chat").path_prefix("/ws");
    if let Some(policy) = policy {
        route = route.websocket(policy);
    }
    let cfg = Config::new().listen(port).upstream("chat", Upstream::one(ws.addr())).route(route);
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    Setup { gw, ws, port }
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_text_binary_and_a_1_mib_message() {
    let s = setup(None);
    let (mut ws, resp) = ws_connect(&s.url("/ws/room"), &[]).await.unwrap_or_else(|e| panic!("{e}\n{}", s.gw.log()));
    assert_eq!(resp.status(), 101);
    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(b, binary),
        other => panic!("{other:?}"),
    }
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(b))) => assert!(b == big, "1 MiB message corrupted"),
        other => panic!("{other:?}"),
    }
    ws.close(None).await.unwrap();
    assert_eq!(s.ws.last_path().as_deref(), Some("/ws/room"));
    // The backend saw the normalized handshake.
    let h = s.ws.last_headers();
    assert_eq!(header(&h, "upgrade"), Some("websocket"));
    assert_eq!(header(&h, "connection"), Some("Upgrade"));
    assert_eq!(header(&h, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&h, "host"), Some(format!("127.0.0.1:{}", s.port).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_and_extensions_are_negotiated_end_to_end() {
    let s = setup(None);
    let (mut ws, resp) = ws_connect(
        &s.url("/ws"),
        &[
            ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "chat.v2");
    let h = s.ws.last_headers();
    assert_eq!(header(&h, "sec-websocket-protocol"), Some("chat.v2, chat.v1"));
    assert_eq!(header(&h, "sec-websocket-extensions"), Some("permessage-deflate; client_max_window_bits"));
    assert_eq!(ws_echo_text(&mut ws, "negotiated").await, "negotiated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_after_the_route_idle_timeout() {
    let s = setup(Some(WebSocket::new().idle_timeout("1s")));
    let (mut ws, _) = ws_connect(&s.url("/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "before").await, "before");
    let idle_since = Instant::now();
    // Traffic resets the timer: a message every 400 ms keeps the session open past 1 s.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(ws_echo_text(&mut ws, &format!("keep {i}")).await, format!("keep {i}"));
    }
    assert!(idle_since.elapsed() > Duration::from_millis(1500));
    let silent = Instant::now();
    let end = ws_recv(&mut ws).await;
    let waited = silent.elapsed();
    assert!(!matches!(end, Some(Ok(Message::Text(_)))), "{end:?}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");
}

/// nginx's `proxy_read_timeout` and Pingora's downstream read timeout both default to 60 s;
/// wsgate's default idle timeout is 1 h, so a silent session must outlive 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_outlives_the_usual_60_second_trap() {
    let s = setup(None);
    let (mut ws, _) = ws_connect(&s.url("/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "a").await, "a");
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(ws_echo_text(&mut ws, "still here").await, "still here");
}

async fn raw_handshake(addr: std::net::SocketAddr, method: &str, extra: &str) -> (u16, Headers, String) {
    http_request(
        addr,
        &format!("{method} /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"),
    )
    .await
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_are_refused_before_the_backend() {
    let s = setup(Some(WebSocket::new().allowed_origins(["https://chat.example.com"])));
    let origin = "Origin: https://chat.example.com\r\n";
    let (status, headers, _) =
        raw_handshake(s.addr(), "GET", &format!("{KEY}Sec-WebSocket-Version: 8\r\n{origin}")).await;
    assert_eq!(status, 426);
    assert_eq!(header(&headers, "sec-websocket-version"), Some("13"));
    let (status, _, _) =
        raw_handshake(s.addr(), "GET", &format!("Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n{origin}"))
            .await;
    assert_eq!(status, 400);
    let (status, _, _) = raw_handshake(s.addr(), "GET", &format!("Sec-WebSocket-Version: 13\r\n{origin}")).await;
    assert_eq!(status, 400);
    let (status, _, _) =
        raw_handshake(s.addr(), "POST", &format!("{KEY}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n{origin}"))
            .await;
    assert_eq!(status, 400);
    let (status, _, _) =
        raw_handshake(s.addr(), "GET", &format!("{KEY}Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n"))
            .await;
    assert_eq!(status, 403, "cross-site WebSocket hijacking must be refused");
    let (status, _, _) = raw_handshake(s.addr(), "GET", &format!("{KEY}Sec-WebSocket-Version: 13\r\n")).await;
    assert_eq!(status, 403, "no Origin is refused when allowed_origins is set");
    assert_eq!(s.ws.sessions(), 0, "nothing reached the backend");
    // And the allowed origin gets through.
    let (mut ws, _) = ws_connect(&s.url("/ws"), &[("Origin", "https://chat.example.com")]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "ok").await, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_session_with_1009() {
    let s = setup(Some(WebSocket::new().max_message_bytes(1000)));
    let (mut ws, _) = ws_connect(&s.url("/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, &"a".repeat(1000)).await, "a".repeat(1000));
    ws.send(Message::binary(vec![7u8; 5000])).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected Close 1009, got {other:?}"),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.ws.close_codes().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the backend got no Close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.ws.close_codes(), [Some(1009)]);
    assert_eq!(s.ws.messages(), 1, "only the message within the limit reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_websocket_disabled_answers_400() {
    let s = setup(Some(WebSocket::new().enabled(false)));
    match ws_connect(&s.url("/ws"), &[]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("expected 400, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert_eq!(s.ws.sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrades_are_not_forwarded() {
    let http = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::proxy(port, "web", http.addr());
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    for upgrade in ["h2c", "websocket, h2c"] {
        let (status, _, _) = http_request(
            addr,
            &format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: {upgrade}\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n{KEY}Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200, "served as plain HTTP");
        let got = http.last_request().unwrap();
        assert_eq!(got.header("upgrade"), None, "{upgrade}");
        assert_eq!(got.header("http2-settings"), None);
        assert_ne!(got.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("upgrade"));
    }
}

/// A backend may send interim answers (`100 Continue`, `103 Early Hints`) before its 101
/// (RFC 9110 §15.2): they are skipped, not relayed as the answer, and the session works.
/// The client's `Expect` is not forwarded on an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_before_the_101_are_skipped() {
    const INTERIM: &[&[u8]] =
        &[b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"];
    let (backend, seen) = RawBackend::ws_echo_after(INTERIM);
    let port = free_port();
    let cfg = Config::proxy(port, "chat", backend.addr);
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (mut ws, resp) = ws_connect(&format!("ws://127.0.0.1:{port}/chat"), &[("Expect", "100-continue")])
        .await
        .unwrap_or_else(|e| panic!("handshake through interim answers: {e}\n{}", gw.logs()));
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("link").is_none(), "the 103's fields are not the 101's");
    assert_eq!(ws_echo_text(&mut ws, "after 100 and 103").await, "after 100 and 103");
    ws.send(Message::binary(vec![7u8; 70_000])).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), 70_000),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(header(&seen[0], "expect"), None, "Expect must not reach the backend on an upgrade: {:?}", seen[0]);
}
