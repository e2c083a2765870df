//! Live configuration (SIGHUP): routes, pools and backends change in place while open
//! WebSocket sessions continue untouched; a broken file or a change that needs new sockets
//! changes nothing and is counted; health state survives (unless what the checks are built
//! from changes); DNS discovery follows records.
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The pool `chat` of `chat` backends (checked every 200 ms), routed from `/ws`.
fn config(port: u16, mport: u16, chat: &[SocketAddr]) -> Config {
    config_with(port, mport, chat, "200ms", "chat")
}

/// Like `config`, with the check's `interval` and the route's `upstream` as given. Sessions
/// on a backend that leaves stay (`on_backend_down: keep`), so these tests can show them
/// untouched; `session_balancing.rs` tests `close`.
fn config_with(port: u16, mport: u16, chat: &[SocketAddr], interval: &str, route_to: &str) -> Config {
    let pool = Upstream::new(chat.iter().copied()).health_check(HealthCheck::new().interval(interval));
    Config::new()
        .listen(port)
        .metrics(mport)
        .upstream("chat", pool.on_backend_down("keep"))
        .route(Route::to(route_to).name("chat").path_prefix("/ws"))
}

async fn reloads(maddr: SocketAddr, result: &str) -> f64 {
    let (_, _, text) = get(maddr, "x", "/metrics").await;
    let series = format!("wsgate_config_reloads_total{{result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.parse().unwrap())
}

/// Polls (bounded) until `reloads{result}` reaches `want`; returns how long it took.
async fn wait_reloads(maddr: SocketAddr, result: &str, want: f64) -> Duration {
    let started = Instant::now();
    while reloads(maddr, result).await < want {
        assert!(started.elapsed() < Duration::from_secs(5), "reload {result} never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_pools_and_routes_without_dropping_a_session() {
    let (a, b, c) = (WsBackend::start("a"), WsBackend::start("b"), WsBackend::start("c"));
    let (port, mport) = (free_port(), free_port());
    let gw = Wsgate::start_and_wait(&config(port, mport, &[a.addr(), b.addr()]), &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    let mut sessions = Vec::new();
    for i in 0..100 {
        let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
        assert_eq!(ws_echo_text(&mut ws, &format!("s{i}")).await, format!("s{i}"));
        sessions.push(ws);
    }
    assert_eq!(backend_of(addr, "/new").await.0, 404, "no /new route yet");

    // Add c, remove b, add a route.
    gw.write_config(
        &config(port, mport, &[a.addr(), c.addr()]).route(Route::to("chat").name("new").path_prefix("/new")),
    );
    let signalled = Instant::now();
    gw.signal("HUP");
    let mut took = Duration::ZERO;
    while backend_of(addr, "/new").await.0 != 200 {
        took = signalled.elapsed();
        assert!(took < Duration::from_secs(1), "new config not in effect after {took:?}\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("new route served {took:?} after SIGHUP");
    assert_eq!(reloads(maddr, "ok").await, 1.0);

    let b_before = b.health_hits();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        seen.insert(backend_of(addr, "/new").await.1);
    }
    assert_eq!(seen, ["a".to_string(), "c".to_string()].into(), "new requests go to the new pool only");
    // b is out of the config: no new request (its health checks stop too, eventually).
    let b_sessions = b.sessions();
    for _ in 0..20 {
        let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
        ws_echo_text(&mut ws, "new").await;
    }
    assert_eq!(b.sessions(), b_sessions, "no new WebSocket session reaches the removed backend");
    let _ = b_before;

    // All 100 sessions opened before the reload still work, on their original backends.
    for (i, ws) in sessions.iter_mut().enumerate() {
        assert_eq!(ws_echo_text(ws, &format!("again {i}")).await, format!("again {i}"), "session {i} dropped");
    }
    assert!(b.sessions() > 0 && a.sessions() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_or_socket_level_reloads_change_nothing() {
    let a = WsBackend::start("a");
    let (port, mport) = (free_port(), free_port());
    let good = config(port, mport, &[a.addr()]);
    let gw = Wsgate::start_and_wait(&good, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());
    let before = (backend_of(addr, "/ws").await, backend_of(addr, "/other").await);
    assert_eq!(before, ((200, "a".into()), (404, "-".into())));

    // A semantic error and a parse error: each is reported with its key, nothing changes.
    let broken = [
        (config_with(port, mport, &[a.addr()], "200ms", "chatt"), "routes[0].upstream"),
        (config_with(port, mport, &[a.addr()], "2 seconds", "chat"), "upstreams.chat.health_check.interval"),
    ];
    for (n, (cfg, key)) in broken.iter().enumerate() {
        gw.write_config(cfg);
        gw.signal("HUP");
        wait_reloads(maddr, "invalid", n as f64 + 1.0).await;
        assert!(gw.wait_log_contains(key, Duration::from_secs(5)), "{}", gw.log());
        assert_eq!((backend_of(addr, "/ws").await, backend_of(addr, "/other").await), before, "behaviour identical");
    }

    let other_port = free_port();
    gw.write_config(&config(other_port, mport, &[a.addr()]));
    gw.signal("HUP");
    wait_reloads(maddr, "needs_upgrade", 1.0).await;
    assert!(gw.wait_log_contains("need new sockets", Duration::from_secs(5)));
    assert_eq!((backend_of(addr, "/ws").await, backend_of(addr, "/other").await), before);
    assert!(std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(), "nothing half-applied");
    assert_eq!(reloads(maddr, "ok").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_state_survives_a_reload() {
    let a = WsBackend::start("a");
    let dead = free_port(); // never listens
    let (port, mport) = (free_port(), free_port());
    // Checks far apart: after the first round, only the survived state keeps `dead` out.
    let cfg = |route: &str| {
        let app = Upstream::new([a.addr().to_string(), loopback(dead)])
            .retries(0)
            .health_check(HealthCheck::new().interval("1h"));
        Config::new().listen(port).metrics(mport).upstream("app", app).route(Route::to("app").path_prefix(route))
    };
    let gw = Wsgate::start_and_wait(&cfg("/"), &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());
    // Wait for the first round to mark `dead` down (then no request fails: retries is 0).
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(maddr, "x", "/ready").await.0 != 200 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..10 {
        assert_eq!(backend_of(addr, "/x").await, (200, "a".into()));
    }
    gw.write_config(&cfg("/x"));
    gw.signal("HUP");
    wait_reloads(maddr, "ok", 1.0).await;
    for _ in 0..20 {
        assert_eq!(
            backend_of(addr, "/x").await,
            (200, "a".into()),
            "the dead backend came back into rotation on reload"
        );
    }
}

/// The checks are built from `tls` too: a plain HTTP check would fail against a TLS backend
/// and take it out of rotation (503) until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_turns_tls_on_rebuilds_the_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let (plain, tls) = (HttpBackend::start("plain"), HttpsBackend::start(&cert, &key).await);
    let (port, mport) = (free_port(), free_port());
    let cfg = |app: Upstream| {
        let app = app.retries(0).health_check(HealthCheck::new().kind("http").path("/healthz").interval("100ms"));
        Config::new().listen(port).metrics(mport).upstream("app", app).route(Route::to("app"))
    };
    let gw = Wsgate::start_and_wait(&cfg(Upstream::one(plain.addr())), &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());
    assert_eq!(backend_of(addr, "/").await, (200, "plain".into()));

    gw.write_config(&cfg(Upstream::one(tls.addr).tls(UpstreamTls::new().sni("localhost").verify(false))));
    gw.signal("HUP");
    wait_reloads(maddr, "ok", 1.0).await;
    // Checks over TLS reach the backend; one over plain TCP would never complete a request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tls.health_hits() < 3 {
        assert!(Instant::now() < deadline, "no health check over TLS after the reload\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..10 {
        assert_eq!(backend_of(addr, "/").await, (200, "tls".into()), "request {i} after the reload\n{}", gw.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_the_records_and_removed_backends_drain() {
    let port_b = free_port();
    let one = WsBackend::start_at("one", "127.0.0.2", port_b);
    let two = WsBackend::start_at("two", "127.0.0.3", port_b);
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 app.test\n").unwrap();
    let port = free_port();
    let app = Upstream::one(format!("app.test:{port_b}"))
        .dns("100ms", &hosts)
        .health_check(HealthCheck::new().interval("100ms"))
        .on_backend_down("keep");
    let gw = Wsgate::start_and_wait(&Config::new().listen(port).upstream("app", app).route(Route::to("app")), &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let answered = |n: usize| async move {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            seen.insert(backend_of(addr, "/").await.1);
        }
        seen
    };
    assert_eq!(answered(10).await, ["one".to_string()].into(), "{}", gw.log());
    // A session on `one`, which will be removed from DNS.
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "hi").await, "hi");

    std::fs::write(&hosts, "127.0.0.2 app.test\n127.0.0.3 app.test\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered(10).await.len() < 2 {
        assert!(Instant::now() < deadline, "the new address never joined");
    }

    std::fs::write(&hosts, "127.0.0.3 app.test\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered(10).await != ["two".to_string()].into() {
        assert!(Instant::now() < deadline, "the removed address still gets requests");
    }
    let one_hits = one.health_hits();
    assert_eq!(answered(20).await, ["two".to_string()].into());
    // `one` now only sees (at most) its own last health checks, no proxied request.
    assert!(one.health_hits() <= one_hits + 2);
    // The session opened on `one` is untouched.
    assert_eq!(ws_echo_text(&mut ws, "still").await, "still");
    assert_eq!(two.sessions(), 0);
}
