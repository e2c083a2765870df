//! The metrics listener: /metrics in the Prometheus text format with wsgate's metrics and
//! their exact names and labels, /ready, and nothing else.
mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_http_and_websocket_traffic() {
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let dead = free_port();
    let (port, mport) = (free_port(), free_port());
    let policy = WebSocket::new().allowed_origins(["https://ok.example"]);
    let cfg = traffic_config(port, mport, web.addr(), chat.addr(), dead, Some(policy));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let (addr, maddr) = (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    for _ in 0..3 {
        assert_eq!(get(addr, "site.example", "/").await.0, 200);
    }
    assert_eq!(get(addr, "unknown.example", "/").await.0, 404);
    assert_eq!(get(addr, "site.example", "/gone").await.0, 502);

    let (mut ws, _) =
        ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[("Origin", "https://ok.example")]).await.unwrap();
    for i in 0..3 {
        assert_eq!(ws_echo_text(&mut ws, &format!("m{i}")).await, format!("m{i}"));
    }
    let text =
        wait_for(maddr, "wsgate_websocket_sessions_active", &[("route", "chat"), ("upstream", "chat")], Some(1.0))
            .await;
    // Live counters: visible while the session is still open.
    assert_eq!(
        sample(&text, "wsgate_websocket_messages_total", &[("route", "chat"), ("direction", "client_to_backend")]),
        Some(3.0)
    );
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    while let Some(Ok(_)) =
        tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut ws)).await.unwrap()
    {}
    // A second session that just drops its TCP connection: closed by nobody.
    let (ws2, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[("Origin", "https://ok.example")]).await.unwrap();
    drop(ws2);
    // And refused handshakes.
    let refused = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[("Origin", "https://evil.example")]).await;
    assert!(refused.is_err());

    let text = wait_for(
        maddr,
        "wsgate_websocket_closes_total",
        &[("route", "chat"), ("initiator", "none"), ("code", "none")],
        Some(1.0),
    )
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        v("wsgate_http_requests_total", &[("route", "site"), ("upstream", "web"), ("status", "200")]),
        Some(3.0)
    );
    assert_eq!(
        v("wsgate_http_requests_total", &[("route", "none"), ("upstream", "none"), ("status", "404")]),
        Some(1.0)
    );
    assert_eq!(
        v("wsgate_http_requests_total", &[("route", "gone"), ("upstream", "gone"), ("status", "502")]),
        Some(1.0)
    );
    assert_eq!(v("wsgate_http_request_duration_seconds_count", &[("route", "site"), ("upstream", "web")]), Some(3.0));
    assert_eq!(v("wsgate_websocket_upgrades_total", &[("route", "chat"), ("result", "accepted")]), Some(2.0));
    assert_eq!(v("wsgate_websocket_upgrades_total", &[("route", "chat"), ("result", "origin_denied")]), Some(1.0));
    assert_eq!(v("wsgate_websocket_sessions_active", &[("route", "chat")]), Some(0.0));
    assert_eq!(v("wsgate_websocket_session_duration_seconds_count", &[("route", "chat")]), Some(2.0));
    assert_eq!(
        v("wsgate_websocket_messages_total", &[("route", "chat"), ("direction", "client_to_backend")]),
        Some(3.0)
    );
    assert_eq!(
        v("wsgate_websocket_messages_total", &[("route", "chat"), ("direction", "backend_to_client")]),
        Some(3.0)
    );
    assert!(
        v("wsgate_websocket_bytes_total", &[("route", "chat"), ("direction", "client_to_backend")]).unwrap() > 20.0
    );
    assert!(
        v("wsgate_websocket_bytes_total", &[("route", "chat"), ("direction", "backend_to_client")]).unwrap() > 10.0
    );
    assert_eq!(
        v("wsgate_websocket_closes_total", &[("route", "chat"), ("initiator", "client"), ("code", "1000")]),
        Some(1.0)
    );
    assert_eq!(
        v("wsgate_upstream_backend_healthy", &[("upstream", "web"), ("backend", &web.addr().to_string())]),
        Some(1.0)
    );
    assert_eq!(v("wsgate_upstream_errors_total", &[("upstream", "gone"), ("kind", "connect_refused")]), Some(1.0));
    assert_eq!(v("wsgate_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    assert!(v("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(v("process_open_fds", &[]).unwrap() > 0.0);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_leaving_rotation_shows_in_the_health_gauge() {
    let mut b = HttpBackend::start("b");
    let b_addr = b.addr().to_string();
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listen(port)
        .metrics(mport)
        .upstream("app", Upstream::one(b.addr()).health_check(HealthCheck::new().interval("100ms")))
        .route(Route::to("app"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let maddr = format!("127.0.0.1:{mport}").parse().unwrap();
    wait_for(maddr, "wsgate_upstream_backend_healthy", &[("upstream", "app"), ("backend", &b_addr)], Some(1.0)).await;
    b.stop();
    wait_for(maddr, "wsgate_upstream_backend_healthy", &[("upstream", "app"), ("backend", &b_addr)], Some(0.0)).await;
}

/// One health series per backend the pool has now: DNS discovery adds and removes them as
/// addresses come and go, and a pool removed by a reload takes all of its series along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_series_follow_dns_discovered_backends_and_removed_pools() {
    let port_b = free_port();
    let backends: Vec<WsBackend> =
        ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|ip| WsBackend::start_at(ip, ip, port_b)).collect();
    let addr_of = |i: usize| backends[i].addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 app.test\n127.0.0.3 app.test\n").unwrap();
    let (port, mport) = (free_port(), free_port());
    let cfg = |name: &str, pool: Upstream| {
        Config::new().listen(port).metrics(mport).upstream(name, pool).route(Route::to(name))
    };
    let dns = Upstream::one(format!("app.test:{port_b}"))
        .dns("100ms", &hosts)
        .health_check(HealthCheck::new().interval("100ms"));
    let gw = Wsgate::start_and_wait(&cfg("app", dns), &[port, mport]);
    let maddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let healthy = "wsgate_upstream_backend_healthy";
    for i in [0, 1] {
        wait_for(maddr, healthy, &[("upstream", "app"), ("backend", &addr_of(i))], Some(1.0)).await;
    }

    std::fs::write(&hosts, "127.0.0.3 app.test\n127.0.0.4 app.test\n").unwrap();
    wait_for(maddr, healthy, &[("upstream", "app"), ("backend", &addr_of(0))], None).await;
    wait_for(maddr, healthy, &[("upstream", "app"), ("backend", &addr_of(2))], Some(1.0)).await;
    let text = wait_for(maddr, healthy, &[("upstream", "app"), ("backend", &addr_of(1))], Some(1.0)).await;
    assert_eq!(text.lines().filter(|l| l.starts_with(healthy)).count(), 2, "{text}");

    // A reload that removes the pool (the route now uses another one).
    let web = HttpBackend::start("web");
    gw.write_config(&cfg("web", Upstream::one(web.addr())));
    gw.signal("HUP");
    let text = wait_for(maddr, healthy, &[("upstream", "app")], None).await;
    assert_eq!(sample(&text, healthy, &[("upstream", "web")]), Some(1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_first_health_check_round_and_nothing_else_is_served() {
    // A backend that accepts connections and never answers: the first HTTP check of this
    // pool takes its full 1 s timeout, and /ready must say 503 until then.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (port, mport) = (free_port(), free_port());
    let check = HealthCheck::new().kind("http").interval("1h").timeout("1s");
    let cfg = Config::new()
        .listen(port)
        .metrics(mport)
        .upstream("app", Upstream::one(silent_addr).health_check(check))
        .route(Route::to("app"));
    let started = Instant::now();
    let _gw = Wsgate::start_and_wait(&cfg, &[mport]);
    let maddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let (status, _, body) = get(maddr, "localhost", "/ready").await;
    assert_eq!(status, 503, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = get(maddr, "localhost", "/ready").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "ready before the first check finished");
    assert_eq!(get(maddr, "localhost", "/").await.0, 404);
    assert_eq!(get(maddr, "localhost", "/metricsx").await.0, 404);
    let (status, _, _) =
        http_request(maddr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status, 405);
    drop(silent);
}
