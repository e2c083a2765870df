//! The admin API: its own listener, a Bearer token on every request (re-read on SIGHUP),
//! and `GET /upstreams` showing what each backend carries.
mod common;
use common::*;
use std::net::SocketAddr;

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Headers, serde_json::Value) {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let (status, headers, body) =
        http_request(addr, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n{auth}Connection: close\r\n\r\n")).await;
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
