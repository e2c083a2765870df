//! Active health checks: a stopped backend leaves rotation, a restarted one comes back;
//! for HTTP pools and for WebSocket sessions alike.
mod common;
use common::*;
use std::time::{Duration, Instant};

/// Who answered each of `n` requests (`-` for an error answer).
async fn backends_answering(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let (status, name) = backend_of(addr, "/").await;
        seen.push(if status == 200 { name } else { "-".to_string() });
    }
    seen
}

/// Polls (bounded: 10 s) until every one of 6 requests is answered by `only`.
async fn wait_until_only(addr: std::net::SocketAddr, only: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = backends_answering(addr, 6).await;
        if seen.iter().all(|b| b == only) {
            return;
        }
        assert!(Instant::now() < deadline, "still seeing {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_leaves_rotation_and_returns_when_restarted() {
    for kind in ["tcp", "http"] {
        let a = HttpBackend::start("a");
        let mut b = HttpBackend::start("b");
        let b_port = b.port();
        let port = free_port();
        let mut check =
            HealthCheck::new().kind(kind).interval("100ms").timeout("200ms").unhealthy_after(1).healthy_after(2);
        if kind == "http" {
            check = check.path("/healthz");
        }
        let cfg = Config::new()
            .listen(port)
            .upstream("app", Upstream::new([a.addr(), b.addr()]).retries(0).health_check(check))
            .route(Route::to("app"));
        let _gw = Wsgate::start_and_wait(&cfg, &[port]);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let seen = backends_answering(addr, 4).await;
        assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()), "{kind}: {seen:?}");

        b.stop();
        wait_until_only(addr, "a").await;
        // With `retries: 0` a request sent to b would fail: out of rotation means never tried.
        assert!(backends_answering(addr, 20).await.iter().all(|x| x == "a"));

        let b = HttpBackend::start_on("b", b_port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !backends_answering(addr, 4).await.contains(&"b".to_string()) {
            assert!(Instant::now() < deadline, "{kind}: b never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if kind == "http" {
            assert!(b.health_hits() >= 2, "http checks request the configured path");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_avoid_unhealthy_backends() {
    let a = WsBackend::start("a");
    let mut b = WsBackend::start("b");
    let port = free_port();
    let check = HealthCheck::new().kind("http").path("/healthz").interval("100ms");
    let cfg = Config::new()
        .listen(port)
        .upstream("chat", Upstream::new([a.addr(), b.addr()]).retries(0).health_check(check))
        .route(Route::to("chat"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    b.stop();
    let b_sessions = b.sessions();
    // Give the checker a bounded moment to notice, then every session must land on a.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut consecutive_ok = 0;
    while consecutive_ok < 10 {
        assert!(Instant::now() < deadline, "sessions kept failing");
        match ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await {
            Ok((mut ws, _)) => {
                assert_eq!(ws_echo_text(&mut ws, "hi").await, "hi");
                consecutive_ok += 1;
            }
            Err(_) => {
                consecutive_ok = 0;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(b.sessions(), b_sessions);
    assert!(a.sessions() >= 10);
}
