//! Forward authentication (`auth.forward`, issue 17) against the real binary: wsgate asks an
//! auth service (`tests/common/auth_service.rs`) about every WebSocket upgrade and plain
//! request of a route before any backend is contacted. A 2xx admits and its `X-User-Id`
//! replaces the client's; a 401/403 reaches the client as the service wrote it; a service
//! that errs, hangs or is gone gets 503 (fail closed); a positive answer is cached per
//! credential; each decision is counted in `wsgate_auth_total`.
mod common;

use common::auth_service::*;
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A client's upgrade request headers, for raw upgrades whose refusal body is read whole.
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// wsgate with four routes asking one auth service (`X-User-Id` copied, 30 s cache): `chat`
/// (`/ws`, a WebSocket echo backend, timeout 2 s), `api` (`/api`, a recording HTTP backend,
/// 2 s), `brief` (`/brief`, the echo backend, timeout 300 ms) and `gone` (`/gone`, the HTTP
/// backend, its auth URL a port nothing listens on).
struct Edge {
    gw: Wsgate,
    addr: SocketAddr,
    metrics: SocketAddr,
    chat: WsBackend,
    api: RecordingBackend,
    service: AuthService,
}

fn forward(url: &str, timeout: &str) -> serde_yaml::Value {
    let yaml = format!("forward: {{url: {url:?}, timeout: {timeout}, copy_headers: [X-User-Id], cache: 30s}}");
    serde_yaml::from_str(&yaml).expect("the auth YAML parses")
}

impl Edge {
    fn start() -> Edge {
        let (chat, api, service) = (WsBackend::start("chat"), RecordingBackend::start(), AuthService::start());
        let (port, mport) = (free_port(), free_port());
        let check = service.url("/check");
        let closed = format!("http://127.0.0.1:{}/check", free_port());
        let cfg = Config::new()
            .listen(port)
            .metrics(mport)
            .upstream("chat", Upstream::one(chat.addr()))
            .upstream("api", Upstream::one(api.addr()))
            .route(Route::to("chat").name("chat").path_prefix("/ws").auth(forward(&check, "2s")))
            .route(Route::to("api").name("api").path_prefix("/api").auth(forward(&check, "2s")))
            .route(Route::to("chat").name("brief").path_prefix("/brief").auth(forward(&check, "300ms")))
            .route(Route::to("api").name("gone").path_prefix("/gone").auth(forward(&closed, "2s")));
        let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
        let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Edge { gw, addr: local(port), metrics: local(mport), chat, api, service }
    }

    /// A WebSocket session through wsgate that must open.
    async fn session(&self, target: &str, headers: &[(&str, &str)]) -> Ws {
        let url = format!("ws://{}{target}", self.addr);
        let (ws, _) = ws_connect(&url, headers)
            .await
            .unwrap_or_else(|e| panic!("upgrade {target} {headers:?}: {e}\n{}", self.gw.logs()));
        ws
    }

    /// A raw upgrade request (`extra`: header lines, each ending in CRLF); a refusal is read whole.
    async fn upgrade(&self, target: &str, extra: &str) -> (u16, Headers, String) {
        http_request(self.addr, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{UPGRADE}{extra}\r\n")).await
    }

    /// A plain `GET target` with `Host: chat.example` and `extra` header lines.
    async fn get(&self, target: &str, extra: &str) -> (u16, Headers, String) {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: chat.example\r\n{extra}Connection: close\r\n\r\n");
        http_request(self.addr, &raw).await
    }

    /// The backends saw nothing: no session, no plain request, no handshake recorded.
    fn assert_backends_untouched(&self) {
        let chat = (self.chat.sessions(), self.chat.health_hits(), self.chat.last_path());
        assert_eq!(chat, (0, 0, None), "the WebSocket backend was contacted\n{}", self.gw.logs());
        assert_eq!(self.api.paths(), Vec::<String>::new(), "the HTTP backend was contacted");
    }

    async fn auth_counts(&self, route: &str) -> [f64; 3] {
        let text = scrape(self.metrics).await;
        ["ok", "denied", "error"]
            .map(|result| sample(&text, "wsgate_auth_total", &[("route", route), ("result", result)]).unwrap_or(0.0))
    }
}

/// Every value of header `name` (lowercase), in order.
fn all_values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

/// Closes `ws` and reads until wsgate's Close reply (or the end), 2 s at most.
async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_admits_with_the_services_user_and_the_service_learns_the_request() {
    let edge = Edge::start();
    let mut ws =
        edge.session("/ws/room?id=7", &[("Authorization", "Bearer good-alice"), ("X-User-Id", "mallory")]).await;
    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    let forwarded = all_values(&edge.chat.last_headers(), "x-user-id");
    assert_eq!(forwarded, ["alice"], "the service's user only, never the client's copy\n{}", edge.gw.logs());

    let checks = edge.service.requests();
    assert_eq!(checks.len(), 1, "{checks:#?}");
    let check = &checks[0];
    assert_eq!((check.method.as_str(), check.path.as_str()), ("GET", "/check"));
    let host = edge.addr.to_string(); // tungstenite's Host for ws://127.0.0.1:<port>
    for (name, want) in [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/ws/room?id=7"),
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "127.0.0.1"),
        ("authorization", "Bearer good-alice"),
    ] {
        assert_eq!(check.header(name), Some(want), "{name} in {:#?}", check.headers);
    }
    for absent in ["upgrade", "sec-websocket-key", "sec-websocket-version", "content-length"] {
        assert_eq!(check.header(absent), None, "{absent} in {:#?}", check.headers);
    }
    let connection = check.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(!connection.contains("upgrade"), "Connection: {connection}");
    close(ws).await;

    let (status, _, body) = edge.get("/api/me?x=1", "Authorization: Bearer good-alice\r\nX-User-Id: mallory\r\n").await;
    assert_eq!(status, 200, "{body}\n{}", edge.gw.logs());
    let request = edge.api.requests().pop().expect("the HTTP backend got the request");
    assert_eq!(request.path, "/api/me?x=1");
    assert_eq!(all_values(&request.headers, "x-user-id"), ["alice"], "{:?}", request.headers);
    let check = edge.service.requests().pop().unwrap();
    let seen = ["x-forwarded-uri", "x-forwarded-host"].map(|n| check.header(n).map(String::from));
    assert_eq!(seen, [Some("/api/me?x=1".into()), Some("chat.example".into())], "{:#?}", check.headers);
    assert_eq!(edge.service.count(), 2, "one check per route: each route has its own cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_or_403_is_relayed_as_the_service_wrote_it_and_no_backend_is_contacted() {
    let edge = Edge::start();
    let forbidden = "Authorization: Bearer forbidden\r\n";
    let mut wrong = Vec::new();
    for (what, target, extra) in [
        ("upgrade", "/ws", forbidden),
        ("upgrade", "/ws", ""),
        ("plain GET", "/api/x", forbidden),
        ("plain GET", "/api/x", ""),
        ("plain GET on the WebSocket route", "/ws/x", forbidden),
    ] {
        let (status, headers, body) = match what {
            "upgrade" => edge.upgrade(target, extra).await,
            _ => edge.get(target, extra).await,
        };
        let seen = (status, body.as_str(), header(&headers, "content-type"), header(&headers, "www-authenticate"));
        let want = match extra {
            "" => (401, "", None, Some(CHALLENGE)),
            _ => (403, FORBIDDEN_BODY, Some("text/plain"), None),
        };
        if seen != want {
            wrong.push(format!("{what} {target} {extra:?}: got {seen:?}, want {want:?} ({headers:?})"));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), edge.gw.logs());
    edge.assert_backends_untouched();
    assert_eq!(edge.service.count(), 5, "refusals are never cached");

    // The client is refused by a 401, not by the handshake: a real WebSocket client sees it too.
    let url = format!("ws://{}/ws", edge.addr);
    match ws_connect(&url, &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a 401, got {:?}", other.map(|(_, r)| r.status())),
    }
    edge.assert_backends_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_errs_hangs_or_is_gone_fails_closed_with_503() {
    let mut edge = Edge::start();
    let broken = "Authorization: Bearer broken\r\n";
    assert_eq!(edge.upgrade("/ws", broken).await.0, 503, "a 500 from the service\n{}", edge.gw.logs());
    assert_eq!(edge.get("/api/x", broken).await.0, 503);

    // The `brief` route gives the service 300 ms.
    let started = Instant::now();
    let (status, _, body) = edge.upgrade("/brief", "Authorization: Bearer slow\r\n").await;
    let waited = started.elapsed();
    eprintln!("a silent auth service (timeout 300ms): {status} after {waited:?}");
    assert_eq!(status, 503, "{body}\n{}", edge.gw.logs());
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(edge.service.count_for("Bearer slow"), 1, "the check went out; no answer came");

    let started = Instant::now();
    assert_eq!(edge.get("/gone/x", "Authorization: Bearer good-alice\r\n").await.0, 503, "nothing listens");
    eprintln!("an auth URL nobody listens on: 503 after {:?}", started.elapsed());

    // Stopped: its pooled connections (from the 500s) close, and no new one is accepted.
    edge.service.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(edge.service.addr()).await.is_ok() {
        assert!(Instant::now() < deadline, "the stopped auth service still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let good = "Authorization: Bearer good-dave\r\n";
    assert_eq!(edge.upgrade("/ws", good).await.0, 503, "a stopped service\n{}", edge.gw.logs());
    assert_eq!(edge.get("/api/x", good).await.0, 503);
    edge.assert_backends_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_positive_answer_is_cached_per_credential() {
    let edge = Edge::start();
    let started = Instant::now();
    for _ in 0..100 {
        close(edge.session("/ws", &[("Authorization", "Bearer good-bob")]).await).await;
    }
    let took = started.elapsed();
    eprintln!("100 handshakes with one cached credential (each closed): {took:?}, {:?} each", took / 100);
    assert_eq!(edge.service.count_for("Bearer good-bob"), 1, "{}", edge.gw.logs());
    assert_eq!(all_values(&edge.chat.last_headers(), "x-user-id"), ["bob"], "the cached answer's header");

    let mut ws = edge.session("/ws", &[("Authorization", "Bearer good-carol")]).await;
    assert_eq!(ws_echo_text(&mut ws, "hi").await, "hi");
    assert_eq!(all_values(&edge.chat.last_headers(), "x-user-id"), ["carol"], "another credential, its own entry");
    close(ws).await;
    close(edge.session("/ws", &[("Authorization", "Bearer good-bob")]).await).await;
    assert_eq!((edge.service.count_for("Bearer good-carol"), edge.service.count()), (1, 2));
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.chat.sessions() < 102 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(edge.chat.sessions(), 102);
    eprintln!("connections to the auth service: {}", edge.service.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_decision_is_counted_as_ok_denied_or_error() {
    let edge = Edge::start();
    for _ in 0..2 {
        // The second is answered from the cache, and counted all the same.
        close(edge.session("/ws", &[("Authorization", "Bearer good-erin")]).await).await;
    }
    assert_eq!(edge.upgrade("/ws", "Authorization: Bearer forbidden\r\n").await.0, 403);
    assert_eq!(edge.upgrade("/ws", "").await.0, 401);
    assert_eq!(edge.upgrade("/ws", "Authorization: Bearer broken\r\n").await.0, 503);
    assert_eq!(edge.get("/api/x", "Authorization: Bearer good-erin\r\n").await.0, 200);
    assert_eq!(edge.get("/api/x", "").await.0, 401);
    assert_eq!(edge.get("/gone/x", "Authorization: Bearer good-erin\r\n").await.0, 503);

    let text = scrape(edge.metrics).await;
    for (route, want) in [("chat", [2.0, 2.0, 1.0]), ("api", [1.0, 1.0, 0.0]), ("gone", [0.0, 0.0, 1.0])] {
        assert_eq!(edge.auth_counts(route).await, want, "{route}: ok, denied, error\n{text}");
    }
    assert_eq!(edge.auth_counts("brief").await, [0.0; 3], "{text}");
    for result in ["missing", "invalid", "expired"] {
        assert_eq!(sample(&text, "wsgate_auth_total", &[("result", result)]), None, "JWT results only for JWT\n{text}");
    }
}
