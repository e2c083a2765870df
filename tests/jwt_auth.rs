//! JWT authentication at the handshake (issue 17) against the real binary: a valid token
//! from any configured place admits the WebSocket (or plain HTTP) request, is taken out of
//! it, and the backend sees who the client is in `X-User-Id`; every bad token gets 401
//! with its `WWW-Authenticate` before any backend is contacted; `close_at_expiry` ends the
//! session at the token's `exp`. Tokens are signed with the test-only fixture keys.
mod common;

use common::jwt::*;
use common::*;
use futures_util::StreamExt;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite;

/// wsgate with two authenticated routes: `chat` (`/ws`, a WebSocket echo backend) and
/// `api` (`/api`, a backend that records every request).
struct Edge {
    gw: Wsgate,
    addr: SocketAddr,
    metrics: SocketAddr,
    chat: WsBackend,
    api: RecordingBackend,
}

impl Edge {
    fn start(close_at_expiry: bool) -> Edge {
        let (chat, api) = (WsBackend::start("chat"), RecordingBackend::start());
        let (port, mport) = (free_port(), free_port());
        let cfg = Config::new()
            .listen(port)
            .metrics(mport)
            .upstream("chat", Upstream::one(chat.addr()))
            .upstream("api", Upstream::one(api.addr()))
            .route(Route::to("chat").name("chat").path_prefix("/ws").auth(jwt_auth(close_at_expiry)))
            .route(Route::to("api").name("api").path_prefix("/api").auth(jwt_auth(false)));
        let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
        let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Edge { gw, addr: local(port), metrics: local(mport), chat, api }
    }

    async fn upgrade(&self, target: &str, headers: &[(&str, &str)]) -> Result<(Ws, WsResponse), tungstenite::Error> {
        ws_connect(&format!("ws://{}{target}", self.addr), headers).await
    }

    /// An upgrade that must succeed, with its echo working.
    async fn session(&self, target: &str, headers: &[(&str, &str)]) -> (Ws, WsResponse) {
        let (mut ws, response) = self
            .upgrade(target, headers)
            .await
            .unwrap_or_else(|e| panic!("upgrade {target} {headers:?}: {e}\n{}", self.gw.logs()));
        assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
        (ws, response)
    }

    /// A plain `GET target` with `extra` header lines (each ending in CRLF).
    async fn get(&self, target: &str, extra: &str) -> (u16, Headers, String) {
        http_request(self.addr, &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")).await
    }

    fn backend_header(&self, name: &str) -> Option<String> {
        header(&self.chat.last_headers(), name).map(String::from)
    }

    async fn auth_count(&self, route: &str, result: &str) -> Option<f64> {
        sample(&scrape(self.metrics).await, "wsgate_auth_total", &[("route", route), ("result", result)])
    }

    /// The access log's lines (wsgate's stdout) once there are `want` of them (bounded: 5 s).
    async fn access_log(&self, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<Value> = self.gw.stdout().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            if lines.len() >= want || Instant::now() >= deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The status and `WWW-Authenticate` of a refused upgrade.
fn refusal(result: Result<(Ws, WsResponse), tungstenite::Error>) -> (u16, Option<String>) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), challenge)
        }
        Ok((_, response)) => (response.status().as_u16(), None),
        Err(e) => panic!("an HTTP answer, got {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_in_each_place_admits_the_session_and_is_taken_out() {
    let edge = Edge::start(false);
    let bearer = format!("Bearer {}", rs256(&claims("in-header")));
    let (_ws1, _) = edge.session("/ws", &[("Authorization", &bearer)]).await;
    assert_eq!(edge.backend_header("x-user-id").as_deref(), Some("in-header"), "{}", edge.gw.logs());
    assert_eq!(edge.backend_header("authorization"), None, "the token never reaches the backend");

    let query = format!("/ws?room=1&access_token={}", rs256(&claims("in-query")));
    let (_ws2, _) = edge.session(&query, &[]).await;
    assert_eq!(edge.backend_header("x-user-id").as_deref(), Some("in-query"));
    assert_eq!(edge.chat.last_path().as_deref(), Some("/ws?room=1"), "other parameters stay");

    let cookie = format!("session={}; theme=dark", rs256(&claims("in-cookie")));
    let (_ws3, _) = edge.session("/ws", &[("Cookie", &cookie)]).await;
    assert_eq!(edge.backend_header("x-user-id").as_deref(), Some("in-cookie"));
    assert_eq!(edge.backend_header("cookie").as_deref(), Some("theme=dark"), "other cookies stay");

    // Browsers cannot set headers on a handshake: the token rides as a subprotocol entry.
    let offer = format!("chat, {}", rs256(&claims("in-subprotocol")));
    let (_ws4, response) = edge.session("/ws", &[("Sec-WebSocket-Protocol", &offer)]).await;
    assert_eq!(edge.backend_header("x-user-id").as_deref(), Some("in-subprotocol"));
    assert_eq!(edge.backend_header("sec-websocket-protocol").as_deref(), Some("chat"), "only the real protocol");
    let chosen = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(chosen.as_deref(), Some("chat"));

    // The JWKS's EC key (kid ec-1) verifies ES256 tokens on the same route.
    let es256 = format!("Bearer {}", sign(Algorithm::ES256, "ec_private.pem", Some("ec-1"), &claims("es256")));
    let (_ws5, _) = edge.session("/ws", &[("Authorization", &es256)]).await;
    assert_eq!(edge.backend_header("x-user-id").as_deref(), Some("es256"));

    assert_eq!(edge.chat.sessions(), 5);
    assert_eq!(edge.auth_count("chat", "ok").await, Some(5.0), "{}", scrape(edge.metrics).await);
    drop((_ws1, _ws2, _ws3, _ws4, _ws5)); // the sessions end, and their access-log lines are written
    let lines = edge.access_log(5).await;
    let mut users: Vec<&str> = lines.iter().filter(|l| l["status"] == 101).filter_map(|l| l["user"].as_str()).collect();
    users.sort();
    assert_eq!(users, ["es256", "in-cookie", "in-header", "in-query", "in-subprotocol"], "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_forge_the_forwarded_claim_header() {
    let edge = Edge::start(false);
    let bearer = format!("Bearer {}", rs256(&claims("alice")));
    let (_ws, _) = edge.session("/ws", &[("Authorization", &bearer), ("X-User-Id", "admin")]).await;
    let forwarded = all_values(&edge.chat.last_headers(), "x-user-id");
    assert_eq!(forwarded, ["alice"], "the token's sub only, never the client's copy\n{}", edge.gw.logs());
    let (status, _, _) = edge.get("/api/me", &format!("Authorization: {bearer}\r\nX-User-Id: admin\r\n")).await;
    assert_eq!(status, 200);
    let request = edge.api.requests().pop().unwrap();
    let forwarded = all_values(&request.headers, "x-user-id");
    assert_eq!(forwarded, ["alice"], "{:?}", request.headers);
    // Without a token the forged header alone gets nowhere.
    let (status, _) = refusal(edge.upgrade("/ws", &[("X-User-Id", "admin")]).await);
    assert_eq!(status, 401);
}

/// Every value of header `name` (lowercase), in order.
fn all_values(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
}

/// A bad case: its label, what the client adds (a query string, header lines), and the
/// `result` label wsgate counts it under.
struct Bad {
    label: &'static str,
    query: String,
    headers: Vec<(&'static str, String)>,
    result: &'static str,
}

fn bearer_case(label: &'static str, token: String, result: &'static str) -> Bad {
    Bad { label, query: String::new(), headers: vec![("Authorization", format!("Bearer {token}"))], result }
}

fn bad_cases() -> Vec<Bad> {
    let expired = with(claims("late"), "exp", json!(now_secs() - 120)); // beyond the 60 s leeway
    vec![
        Bad { label: "no token", query: String::new(), headers: vec![], result: "missing" },
        bearer_case("expired 2 min ago", rs256(&expired), "expired"),
        bearer_case("wrong issuer", rs256(&with(claims("x"), "iss", json!("https://evil.test"))), "invalid"),
        bearer_case("wrong audience", rs256(&with(claims("x"), "aud", json!("billing"))), "invalid"),
        bearer_case("alg none", unsigned(&claims("x")), "invalid"),
        bearer_case("HS256, not listed", sign(Algorithm::HS256, "hs256.key", None, &claims("x")), "invalid"),
        bearer_case(
            "RS384, not listed",
            sign(Algorithm::RS384, "rsa_private.pem", Some("rsa-1"), &claims("x")),
            "invalid",
        ),
        bearer_case("EdDSA, not listed", sign(Algorithm::EdDSA, "ed25519_private.pem", None, &claims("x")), "invalid"),
        bearer_case("HS256 keyed with the RSA public key", hs256_with_rsa_public_key(&claims("x")), "invalid"),
        bearer_case("tampered signature", tampered(&rs256(&claims("x"))), "invalid"),
        bearer_case("garbage", "garbage".into(), "invalid"),
        Bad {
            label: "garbage in the query",
            query: "?access_token=not.a.jwt".into(),
            headers: vec![],
            result: "invalid",
        },
        Bad {
            label: "alg none in the cookie",
            query: String::new(),
            headers: vec![("Cookie", format!("theme=dark; session={}", unsigned(&claims("x"))))],
            result: "invalid",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_before_any_backend_is_contacted() {
    let edge = Edge::start(false);
    let cases = bad_cases();
    let mut wrong = Vec::new();
    for case in &cases {
        let challenge = if case.result == "missing" { "Bearer" } else { "Bearer error=\"invalid_token\"" };
        let want = (401, Some(challenge.to_string()));
        let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let upgrade = refusal(edge.upgrade(&format!("/ws{}", case.query), &headers).await);
        let lines: String = case.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let (status, got, _) = edge.get(&format!("/api/info{}", case.query), &lines).await;
        let plain = (status, header(&got, "www-authenticate").map(String::from));
        if upgrade != want || plain != want {
            wrong.push(format!("{}: upgrade {upgrade:?}, plain GET {plain:?}, want {want:?}", case.label));
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), edge.gw.logs());
    let contacted = (edge.chat.last_path(), edge.chat.sessions() + edge.chat.health_hits());
    assert_eq!(contacted, (None, 0), "the WebSocket backend was contacted");
    assert_eq!(edge.api.paths(), Vec::<String>::new(), "the HTTP backend was contacted");

    // Each case was tried on both routes once.
    for result in ["missing", "invalid", "expired"] {
        let want = cases.iter().filter(|c| c.result == result).count() as f64;
        for route in ["chat", "api"] {
            let got = edge.auth_count(route, result).await;
            assert_eq!(got, Some(want), "{route} {result}\n{}", scrape(edge.metrics).await);
        }
    }
    assert_eq!(edge.auth_count("chat", "ok").await.unwrap_or(0.0), 0.0);
    let lines = edge.access_log(2 * cases.len()).await;
    assert!(lines.iter().all(|l| l["status"] == 401 && l.get("user").is_none()), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_of_the_route_need_the_token_too() {
    let edge = Edge::start(false);
    let (status, headers, _) = edge.get("/api/info?x=1", "").await;
    assert_eq!((status, header(&headers, "www-authenticate")), (401, Some("Bearer")));
    let (status, _, _) = edge.get("/ws/info", "").await;
    assert_eq!(status, 401, "the WebSocket route's plain requests too");
    assert!(edge.api.paths().is_empty() && edge.chat.health_hits() == 0);

    let token = rs256(&claims("bob"));
    let (status, _, body) = edge.get("/api/info?x=1", &format!("Authorization: Bearer {token}\r\n")).await;
    assert_eq!(status, 200, "{body}\n{}", edge.gw.logs());
    let (status, _, _) = edge.get(&format!("/api/info?x=1&access_token={token}"), "").await;
    assert_eq!(status, 200);
    let requests = edge.api.requests();
    assert_eq!(requests.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(), ["/api/info?x=1", "/api/info?x=1"]);
    for request in &requests {
        assert_eq!(request.header("authorization"), None, "{:?}", request.headers);
        assert_eq!(request.header("x-user-id"), Some("bob"), "{:?}", request.headers);
    }
    let (status, _, _) = edge.get("/ws/info", &format!("Authorization: Bearer {token}\r\n")).await;
    assert_eq!((status, edge.chat.health_hits()), (200, 1));

    assert_eq!(edge.auth_count("api", "ok").await, Some(2.0));
    assert_eq!(edge.auth_count("api", "missing").await, Some(1.0));
    assert_eq!(edge.auth_count("chat", "ok").await, Some(1.0));
    let lines = edge.access_log(5).await;
    let users: Vec<(u64, Option<&str>)> =
        lines.iter().map(|l| (l["status"].as_u64().unwrap_or(0), l["user"].as_str())).collect();
    assert_eq!(users, [(401, None), (401, None), (200, Some("bob")), (200, Some("bob")), (200, Some("bob"))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_at_expiry_ends_the_session_at_the_tokens_exp() {
    let edge = Edge::start(true);
    // Whole seconds: `exp` is a NumericDate, and the session must end at it, not at
    // exp + the 60 s leeway admission allows.
    let exp = now_secs() + 3;
    let token = rs256(&with(claims("brief"), "exp", json!(exp)));
    let (mut ws, _) = edge.session("/ws", &[("Authorization", &format!("Bearer {token}"))]).await;
    let code = ws_close_code(&mut ws).await;
    let at = SystemTime::now();
    let expiry = UNIX_EPOCH + Duration::from_secs(exp);
    let late = match at.duration_since(expiry) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    eprintln!("close_at_expiry: Close {code:?} {late:+.3} s after exp");
    assert_eq!(code, Some(1008), "{}", edge.gw.logs());
    assert!((-0.5..=1.0).contains(&late), "closed {late:+.3} s after exp\n{}", edge.gw.logs());
    let deadline = Instant::now() + Duration::from_secs(5);
    while edge.chat.close_codes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.chat.close_codes(), [Some(1001)], "the backend is told the client went away");
    // Reading on sends tungstenite's Close reply, which completes the close handshake.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {}
    let lines = edge.access_log(1).await;
    let line = lines.last().unwrap_or_else(|| panic!("no access-log line\n{}", edge.gw.logs()));
    assert_eq!((&line["user"], &line["websocket"]["reason"]), (&json!("brief"), &json!("token_expired")), "{line}");
}
