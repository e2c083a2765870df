//! The admin API: its own listener, a Bearer token on every request (re-read on SIGHUP),
//! `GET /upstreams` showing what each backend carries, `GET /sessions` and
//! `DELETE /sessions/{id}`, draining a backend and putting it back.
mod common;
use common::*;
use std::net::SocketAddr;

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Headers, serde_json::Value) {
    call(addr, "GET", path, token).await
}

async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, Headers, serde_json::Value) {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
    let (status, headers, body) = http_request(addr, &head).await;
    (status, headers, serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_shows_each_backends_sessions_to_the_bearer_of_the_token() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, aport) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "first-token\n").unwrap();
    let config = |token_file: &str| {
        Config::new()
            .listen(port)
            .admin(format!("127.0.0.1:{aport}"), Some(token_file))
            .upstream("chat", Upstream::new([a.addr(), b.addr()]).balance("least_sessions"))
            .route(Route::to("chat"))
    };
    let gw = Wsgate::start_in_and_wait(dir, &config("admin.token"), &[port, aport]);
    let admin: SocketAddr = format!("127.0.0.1:{aport}").parse().unwrap();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap().0);
    }

    for token in [None, Some("wrong"), Some("first-toke")] {
        let (status, headers, body) = get(admin, "/upstreams", token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    }
    let (status, _, body) = get(admin, "/upstreams", Some("first-token")).await;
    assert_eq!(status, 200, "{body}");
    let chat = &body["upstreams"][0];
    assert_eq!(chat["name"], "chat");
    let backends = chat["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2, "{body}");
    let sessions_held: u64 = backends.iter().map(|b| b["sessions"].as_u64().unwrap()).sum();
    assert_eq!(sessions_held, 3, "{body}");
    assert!(backends.iter().all(|b| b["healthy"] == true && b["in_rotation"] == true && b["weight"] == 1), "{body}");
    let (status, _, body) = get(admin, "/nothing", Some("first-token")).await;
    assert_eq!((status, body["error"].is_string()), (404, true));

    // A SIGHUP re-reads the token file: the old token stops working.
    std::fs::write(gw.dir.path().join("admin.token"), "second-token").unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(admin, "/upstreams", Some("second-token")).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the new token never took effect\n{}", gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(admin, "/upstreams", Some("first-token")).await.0, 401);
    drop(sessions);
}

#[test]
fn an_admin_api_off_loopback_needs_a_token_and_its_own_address() {
    let base = Config::proxy(8080, "app", "127.0.0.1:3001".parse::<SocketAddr>().unwrap());
    let (ok, out) = check_config(&base.clone().admin("0.0.0.0:9102", None));
    assert!(!ok && out.contains("admin.token_file"), "{out}");
    let (ok, out) = check_config(&base.clone().admin("127.0.0.1:8080", None));
    assert!(!ok && out.contains("admin.address"), "{out}");
    let (ok, out) = check_config(&base.admin("127.0.0.1:9102", Some("missing.token")));
    assert!(!ok && out.contains("admin.token_file"), "{out}");
}

const TOKEN: &str = "t0ken";

/// Waits (bounded) until the backends have counted `total` sessions: a backend counts one
/// just after its 101 is out, so possibly after the client has it.
async fn settle(a: &WsBackend, b: &WsBackend, total: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a.sessions() + b.sessions() < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A client that reads until its session ends (answering a Close, as clients do).
fn reading(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {} })
}

/// wsgate with an admin API (token `TOKEN`) in front of `backends` (least sessions, so the
/// sessions spread evenly); its port, the admin address and the metrics address.
fn with_admin(backends: &[SocketAddr]) -> (Wsgate, u16, SocketAddr, SocketAddr) {
    let (port, aport, mport) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), TOKEN).unwrap();
    let config = Config::new()
        .listen(port)
        .admin(format!("127.0.0.1:{aport}"), Some("admin.token"))
        .metrics(mport)
        .upstream("chat", Upstream::new(backends.to_vec()).balance("least_sessions"))
        .route(Route::to("chat").path_prefix("/ws"))
        .route(Route::to("chat").path_prefix("/other"));
    let gw = Wsgate::start_in_and_wait(dir, &config, &[port, aport, mport]);
    let local = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (gw, port, local(aport), local(mport))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_one_is_closed_with_the_operators_code() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (gw, port, admin, _) = with_admin(&[a.addr(), b.addr()]);
    let mut open = Vec::new();
    for path in ["/ws/1", "/ws/2", "/other/3"] {
        open.push(
            ws_connect(&format!("ws://127.0.0.1:{port}{path}"), &[("Sec-WebSocket-Protocol", "chat.v1")])
                .await
                .unwrap()
                .0,
        );
    }
    assert_eq!(ws_echo_text(&mut open[0], "hello").await, "hello");
    let (status, _, all) = get(admin, "/sessions", Some(TOKEN)).await;
    assert_eq!((status, all["total"].as_u64()), (200, Some(3)), "{all}");
    let first = &all["sessions"][0];
    assert_eq!(
        (first["route"].as_str(), first["upstream"].as_str(), first["client"].as_str()),
        (Some("route0"), Some("chat"), Some("127.0.0.1"))
    );
    assert_eq!(first["subprotocol"], "chat.v1");
    assert_eq!((first["messages_in"].as_u64(), first["messages_out"].as_u64()), (Some(1), Some(1)), "{first}");
    assert!(
        first["bytes_in"].as_u64() > Some(5) && first["age_secs"].as_f64() >= first["idle_secs"].as_f64(),
        "{first}"
    );
    let on_a = get(admin, &format!("/sessions?backend={}", a.addr()), Some(TOKEN)).await.2;
    let on_b = get(admin, &format!("/sessions?backend={}", b.addr()), Some(TOKEN)).await.2;
    assert_eq!(on_a["total"].as_u64().unwrap() + on_b["total"].as_u64().unwrap(), 3);
    assert_eq!(get(admin, "/sessions?route=route1", Some(TOKEN)).await.2["total"], 1);
    let limited = get(admin, "/sessions?limit=1", Some(TOKEN)).await.2;
    assert_eq!((limited["total"].as_u64(), limited["sessions"].as_array().map(Vec::len)), (Some(3), Some(1)));

    let id = first["id"].as_u64().unwrap();
    for (path, want) in [
        (format!("/sessions/{id}?code=999"), 400),
        (format!("/sessions/{id}?code=abc"), 400),
        ("/sessions/nope".to_string(), 400),
        ("/sessions/987654321".to_string(), 404),
    ] {
        let (status, _, body) = call(admin, "DELETE", &path, Some(TOKEN)).await;
        assert_eq!((status, body["error"].is_string()), (want, true), "{path}: {body}");
    }
    let (status, _, body) =
        call(admin, "DELETE", &format!("/sessions/{id}?code=4001&reason=bye%20now"), Some(TOKEN)).await;
    assert_eq!((status, body["code"].as_u64()), (200, Some(4001)), "{body}");
    let close = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), futures_util::StreamExt::next(&mut open[0]))
            .await
            .expect("closed")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame.unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("a Close, got {other:?}"),
        }
    };
    assert_eq!((u16::from(close.code), &*close.reason), (4001, "bye now"));
    // Reading on sends tungstenite's Close reply: the closing handshake completes.
    while let Ok(Some(_)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), futures_util::StreamExt::next(&mut open[0])).await
    {}
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(admin, "/sessions", Some(TOKEN)).await.2["total"] != 2 {
        assert!(std::time::Instant::now() < deadline, "the closed session is still listed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop((open, gw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_a_missing_or_wrong_token() {
    let a = WsBackend::start("a");
    let (gw, _, admin, _) = with_admin(&[a.addr()]);
    let backend = a.addr();
    for (method, path) in [
        ("GET", "/upstreams".to_string()),
        ("GET", "/sessions".to_string()),
        ("DELETE", "/sessions/1".to_string()),
        ("POST", format!("/upstreams/chat/backends/{backend}/drain")),
        ("GET", format!("/upstreams/chat/backends/{backend}/drain")),
        ("POST", format!("/upstreams/chat/backends/{backend}/enable")),
    ] {
        for token in [None, Some("wrong")] {
            let (status, _, body) = call(admin, method, &path, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
        }
    }
    assert!(get(admin, "/upstreams", Some(TOKEN)).await.2["upstreams"][0]["backends"][0]["draining"] == false);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_gets_nothing_new_until_enabled_even_across_a_reload() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (gw, port, admin, metrics) = with_admin(&[a.addr(), b.addr()]);
    let mut open = Vec::new();
    for _ in 0..6 {
        open.push(reading(ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap().0));
    }
    settle(&a, &b, 6).await;
    assert_eq!(a.sessions(), 3, "least_sessions spreads them");
    let drain = format!("/upstreams/chat/backends/{}/drain", a.addr());
    for (method, path, want) in [
        ("POST", format!("{drain}?window=soon"), 400),
        ("POST", "/upstreams/nope/backends/127.0.0.1:1/drain".to_string(), 404),
        ("POST", "/upstreams/chat/backends/127.0.0.1:1/drain".to_string(), 404),
        ("POST", "/upstreams/chat/backends/not-an-address/drain".to_string(), 400),
        ("PUT", drain.clone(), 405),
    ] {
        let (status, _, body) = call(admin, method, &path, Some(TOKEN)).await;
        assert_eq!((status, body["error"].is_string()), (want, true), "{method} {path}: {body}");
    }
    let (status, _, body) = call(admin, "POST", &format!("{drain}?window=1s"), Some(TOKEN)).await;
    assert_eq!((status, body["closing"].as_u64(), body["draining"].as_bool()), (200, Some(3), Some(true)), "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(admin, &drain, Some(TOKEN)).await.2["sessions"] != 0 {
        assert!(std::time::Instant::now() < deadline, "the drained backend still has sessions");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(a.close_codes(), [Some(1001); 3], "the backend is told its clients are going away");
    gw.signal("HUP");
    let reloaded = [("result", "ok")];
    wait_for(metrics, "wsgate_config_reloads_total", &reloaded, Some(1.0)).await;
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..4 {
        open.push(reading(ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap().0));
        assert_eq!(backend_of(proxy, "/other/x").await, (200, "b".to_string()), "requests stay off it too");
    }
    settle(&a, &b, 10).await;
    assert_eq!(a.sessions(), 3, "no new session reaches a drained backend, even after a reload");
    let state = get(admin, &drain, Some(TOKEN)).await.2;
    assert_eq!((state["draining"].as_bool(), state["sessions"].as_u64()), (Some(true), Some(0)), "{state}");
    let (status, _, body) =
        call(admin, "POST", &format!("/upstreams/chat/backends/{}/enable", a.addr()), Some(TOKEN)).await;
    assert_eq!((status, body["draining"].as_bool()), (200, Some(false)), "{body}");
    open.push(reading(ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap().0));
    settle(&a, &b, 11).await;
    assert_eq!(a.sessions(), 4, "enabled: the emptiest backend gets the next session");
    open.iter().for_each(|t| t.abort());
    drop(gw);
}
