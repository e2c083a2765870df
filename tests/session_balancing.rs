//! Session-aware balancing: `least_sessions` sends a new session to the backend with the
//! fewest open ones, the counts belong to the backends (a reload keeps them), and
//! `max_sessions_per_backend` with `queue` holds upgrades in line for a place, then 503.
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addrs(port: u16, mport: u16) -> (SocketAddr, SocketAddr) {
    (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap())
}

fn chat(port: u16, mport: u16, pool: Upstream) -> Config {
    Config::new().listen(port).metrics(mport).upstream("chat", pool).route(Route::to("chat").path_prefix("/ws"))
}

/// Waits until `backend` of pool `chat` holds `want` sessions (`None`: has no series).
async fn wait_sessions(maddr: SocketAddr, backend: SocketAddr, want: Option<f64>) {
    let backend = backend.to_string();
    wait_for(maddr, "wsgate_upstream_backend_sessions", &[("upstream", "chat"), ("backend", &backend)], want).await;
}

async fn open(port: u16, n: usize) -> Vec<Ws> {
    let mut sessions = Vec::new();
    for i in 0..n {
        let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.expect("upgrade");
        assert_eq!(ws_echo_text(&mut ws, &format!("m{i}")).await, format!("m{i}"));
        sessions.push(ws);
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_sessions_fills_the_emptiest_backend_and_a_reload_keeps_the_counts() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config =
        |backends: &[SocketAddr]| chat(port, mport, Upstream::new(backends.to_vec()).balance("least_sessions"));
    let gw = Wsgate::start_and_wait(&config(&[a.addr()]), &[port, mport]);

    let mut on_a = open(port, 3).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;

    // b joins: a new pool is built, but a keeps its 3 sessions, so the next 3 all go to b.
    gw.write_config(&config(&[a.addr(), b.addr()]));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(1.0)).await;
    wait_sessions(maddr, b.addr(), Some(0.0)).await;
    let on_b = open(port, 3).await;
    wait_sessions(maddr, b.addr(), Some(3.0)).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;
    assert_eq!((a.sessions(), b.sessions()), (3, 3), "the backends saw 3 upgrades each");

    // Two sessions on a end: the next two go where the room is.
    for mut ws in on_a.drain(..2) {
        ws.close(None).await.unwrap();
    }
    wait_sessions(maddr, a.addr(), Some(1.0)).await;
    let refill = open(port, 2).await;
    wait_sessions(maddr, a.addr(), Some(3.0)).await;
    assert_eq!((a.sessions(), b.sessions()), (5, 3));

    // a leaves the pool: its series goes (its sessions are not counted as anyone's).
    gw.write_config(&config(&[b.addr()]));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(2.0)).await;
    wait_sessions(maddr, a.addr(), None).await;
    wait_sessions(maddr, b.addr(), Some(3.0)).await;
    drop((on_a, on_b, refill));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_upgrades_wait_in_the_queue_then_get_503_with_a_jittered_retry_after() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let pool =
        Upstream::new([a.addr(), b.addr()]).balance("least_sessions").max_sessions_per_backend(50).queue(50, "2s");
    let _gw = Wsgate::start_and_wait(&chat(port, mport, pool), &[port, mport]);

    // 150 upgrades at once: 100 places, 50 in the queue.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let upgrades: Vec<_> = (0..150)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                (ws_connect(&url, &[]).await, started.elapsed())
            })
        })
        .collect();
    wait_for(maddr, "wsgate_upstream_queue_waiting", &[("upstream", "chat")], Some(50.0)).await;
    let total = |text: &str| {
        [a.addr(), b.addr()]
            .iter()
            .map(|x| sample(text, "wsgate_upstream_backend_sessions", &[("backend", &x.to_string())]).unwrap())
            .sum::<f64>()
    };
    assert_eq!(total(&scrape(maddr).await), 100.0, "exactly the caps");
    // One more finds the queue full.
    let retry_after = |e: &tokio_tungstenite::tungstenite::Error| match e {
        tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503 => {
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        }
        _ => None,
    };
    let refused = ws_connect(&url, &[]).await.expect_err("the queue is full");
    assert!(retry_after(&refused).is_some_and(|s| (1..=5).contains(&s)), "{refused:?}");

    // The first 100 are in (their handshakes finish); 20 of them close: 20 waiters get in.
    let settled = Instant::now();
    while upgrades.iter().filter(|u| u.is_finished()).count() < 100 {
        assert!(settled.elapsed() < Duration::from_secs(5), "the admitted handshakes never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for u in upgrades {
        if u.is_finished() {
            results.push(u.await.unwrap());
        } else {
            pending.push(u);
        }
    }
    assert_eq!((results.len(), pending.len()), (100, 50), "100 answered at once, 50 waiting");
    let mut open: Vec<Ws> = results.into_iter().map(|(r, _)| r.expect("admitted").0).collect();
    for mut ws in open.drain(..20) {
        ws.close(None).await.unwrap();
    }
    let mut waited = Vec::new();
    for p in pending {
        waited.push(p.await.unwrap());
    }
    let (admitted, timed_out): (Vec<_>, Vec<_>) = waited.into_iter().partition(|(r, _)| r.is_ok());
    assert_eq!((admitted.len(), timed_out.len()), (20, 30), "20 places freed, 20 waiters in");
    for (refusal, waited) in &timed_out {
        let refusal = refusal.as_ref().unwrap_err();
        assert!(retry_after(refusal).is_some_and(|s| (1..=5).contains(&s)), "{refusal:?}");
        assert!(*waited >= Duration::from_millis(1900) && *waited < Duration::from_secs(5), "waited {waited:?}");
    }
    let retries: std::collections::HashSet<u64> =
        timed_out.iter().filter_map(|(r, _)| retry_after(r.as_ref().unwrap_err())).collect();
    assert!(retries.len() > 1, "Retry-After is jittered: {retries:?}");
    let text = scrape(maddr).await;
    assert_eq!(total(&text), 100.0, "never more than the caps allow\n{text}");
    assert_eq!(sample(&text, "wsgate_upstream_queue_waiting", &[("upstream", "chat")]), Some(0.0));
    assert_eq!(sample(&text, "wsgate_upstream_queue_wait_seconds_count", &[("upstream", "chat")]), Some(50.0));
    drop((open, admitted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_max_lifetime_is_closed_with_1001_and_the_reason_is_logged() {
    use tokio_tungstenite::tungstenite::Message;
    let a = WsBackend::start("a");
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config = chat(port, mport, Upstream::one(a.addr()))
        .route(Route::to("chat").name("short").path_prefix("/short").websocket(WebSocket::new().max_lifetime("1s")))
        .access_log(AccessLog::path("access.jsonl"));
    let gw = Wsgate::start_and_wait(&config, &[port, mport]);

    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/short"), &[]).await.unwrap();
    let opened = Instant::now();
    assert_eq!(ws_echo_text(&mut ws, "hi").await, "hi");
    let close = loop {
        match ws_recv(&mut ws).await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no Close frame: {other:?}"),
        }
    };
    let lived = opened.elapsed();
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    // Reading on sends the client's Close reply, which completes the closing handshake.
    assert!(ws_recv(&mut ws).await.is_none_or(|r| r.is_err()), "nothing after the Close");
    // 1 s jittered by ±10%, plus scheduling.
    assert!(lived >= Duration::from_millis(850) && lived < Duration::from_millis(1600), "closed after {lived:?}");
    wait_for(
        maddr,
        "wsgate_websocket_closes_total",
        &[("route", "short"), ("initiator", "proxy"), ("code", "1001")],
        Some(1.0),
    )
    .await;
    let lines = access_log_lines(&gw.dir.path().join("access.jsonl"), 1);
    assert_eq!(lines[0]["websocket"]["reason"], "max_lifetime", "{}", lines[0]);
    assert_eq!(lines[0]["websocket"]["close_code"], 1001, "{}", lines[0]);
}

/// Reads `ws` until the proxy's Close: its code, and how long that took.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match ws_recv(ws).await {
            Some(Ok(Message::Close(frame))) => {
                // Reading on sends the Close reply, completing the closing handshake.
                let _ = ws_recv(ws).await;
                return frame.map(|f| u16::from(f.code));
            }
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_a_backend_that_leaves_are_moved_with_1012_spread_over_the_drain_window() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config = |backends: &[SocketAddr], on_down: &str| {
        chat(port, mport, Upstream::new(backends.to_vec()).balance("least_sessions").on_backend_down(on_down))
            .drain_window("1s")
            .access_log(AccessLog::path("access.jsonl"))
    };
    let gw = Wsgate::start_and_wait(&config(&[a.addr(), b.addr()], "close"), &[port, mport]);
    let sessions = open(port, 6).await;
    wait_sessions(maddr, b.addr(), Some(3.0)).await;

    // b leaves the pool: its three sessions are told 1012 within the 1 s window, a's are not.
    gw.write_config(&config(&[a.addr()], "close"));
    let removed = Instant::now();
    gw.signal("HUP");
    // Each session either stays (no Close within 1.5 s) or is closed; all watched at once.
    let watched = sessions.into_iter().map(|mut ws| async move {
        let closed = tokio::time::timeout(Duration::from_millis(1500), close_code(&mut ws)).await;
        (ws, closed.ok())
    });
    let (mut codes, mut on_a) = (Vec::new(), Vec::new());
    for (ws, closed) in futures_util::future::join_all(watched).await {
        match closed {
            Some(code) => codes.push(code),
            None => on_a.push(ws),
        }
    }
    let moved = codes.len();
    let took = removed.elapsed();
    assert_eq!(codes, [Some(1012); 3], "b's sessions get Service Restart");
    assert_eq!(on_a.len(), 3, "a's sessions are untouched");
    assert!(took < Duration::from_secs(6), "{took:?}");
    for ws in &mut on_a {
        assert_eq!(ws_echo_text(ws, "still").await, "still");
    }
    let text =
        wait_for(maddr, "wsgate_websocket_closes_total", &[("initiator", "proxy"), ("code", "1012")], Some(3.0)).await;
    assert!(text.contains("wsgate_upstream_backend_sessions"), "{text}");
    let lines = access_log_lines(&gw.dir.path().join("access.jsonl"), moved);
    assert!(lines.iter().all(|l| l["websocket"]["reason"] == "backend_down" && l["websocket"]["close_code"] == 1012));
    // Reconnecting, they land on a.
    let back = open(port, 3).await;
    wait_sessions(maddr, a.addr(), Some(6.0)).await;

    // With `keep`, a backend that leaves keeps its sessions.
    gw.write_config(&config(&[a.addr(), b.addr()], "keep"));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(2.0)).await;
    let mut kept = open(port, 6).await; // b has room: all six go there
    wait_sessions(maddr, b.addr(), Some(6.0)).await;
    gw.write_config(&config(&[a.addr()], "keep"));
    gw.signal("HUP");
    wait_for(maddr, "wsgate_config_reloads_total", &[("result", "ok")], Some(3.0)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // longer than the window: nothing may close
    for ws in &mut kept {
        assert_eq!(ws_echo_text(ws, "kept").await, "kept");
    }
    drop((on_a, back));
}

/// A client that reconnects 0-200 ms after any close, as client libraries do; counts the
/// closes it saw by code.
type Closes = std::sync::Arc<std::sync::Mutex<Vec<(usize, Option<u16>)>>>;

fn reconnecting_client(port: u16, id: usize, closes: Closes) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..10 {
            let Ok((mut ws, _)) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await else { return };
            let code = close_code(&mut ws).await;
            closes.lock().unwrap().push((id, code));
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..200))).await;
        }
    })
}

/// The close codes the clients saw, checking that no client was moved twice.
fn codes_once_each(closes: &Closes) -> Vec<Option<u16>> {
    let seen = closes.lock().unwrap().clone();
    let clients: std::collections::HashSet<usize> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(clients.len(), seen.len(), "a client was moved twice: {seen:?}");
    seen.into_iter().map(|(_, code)| code).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_scale_out_rebalance_moves_the_surplus_once_and_the_pool_converges() {
    let (a, b, c) = (WsBackend::start("a"), WsBackend::start("b"), WsBackend::start("c"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config = |backends: &[SocketAddr]| {
        chat(port, mport, Upstream::new(backends.to_vec()).balance("least_sessions").rebalance(1.25, 20))
    };
    let gw = Wsgate::start_and_wait(&config(&[a.addr(), b.addr()]), &[port, mport]);
    let closes = Closes::default();
    let clients: Vec<_> = (0..300).map(|id| reconnecting_client(port, id, closes.clone())).collect();
    wait_sessions(maddr, a.addr(), Some(150.0)).await;
    wait_sessions(maddr, b.addr(), Some(150.0)).await;
    // Balanced: a round passes without a move.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(closes.lock().unwrap().is_empty(), "nothing moves in a balanced pool");

    gw.write_config(&config(&[a.addr(), b.addr(), c.addr()]));
    let scaled = Instant::now();
    gw.signal("HUP");
    let deadline = scaled + Duration::from_secs(30);
    let spread = loop {
        let text = scrape(maddr).await;
        let held: Vec<f64> = [a.addr(), b.addr(), c.addr()]
            .iter()
            .map(|x| sample(&text, "wsgate_upstream_backend_sessions", &[("backend", &x.to_string())]).unwrap_or(0.0))
            .collect();
        if held.iter().all(|n| (85.0..=115.0).contains(n)) && held.iter().sum::<f64>() == 300.0 {
            break held;
        }
        assert!(Instant::now() < deadline, "not converged: {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("converged to {spread:?} in {:?}", scaled.elapsed());
    // Moves told just before may still be closing: count once no close came for 1.5 s.
    let (mut last, mut quiet_since) = (usize::MAX, Instant::now());
    while quiet_since.elapsed() < Duration::from_millis(1500) {
        let now = closes.lock().unwrap().len();
        if now != last {
            (last, quiet_since) = (now, Instant::now());
        }
        assert!(Instant::now() < deadline + Duration::from_secs(10), "moves never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = codes_once_each(&closes);
    assert!(seen.iter().all(|c| *c == Some(1012)), "every close a client saw was 1012: {seen:?}");
    // The surplus was 2 x 50: about that many moved.
    eprintln!("{} sessions moved", seen.len());
    assert!((95..=115).contains(&seen.len()), "{} sessions moved", seen.len());
    for client in clients {
        client.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_resets_every_request_is_ejected_after_three_failures_between_active_checks() {
    use tokio::io::AsyncReadExt;
    let good = HttpBackend::start("good");
    // Accepts, reads the request, and resets the connection.
    let resetting = RawBackend::start(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.set_zero_linger();
    });
    let (port, mport) = (free_port(), free_port());
    let (addr, maddr) = addrs(port, mport);
    let pool = Upstream::new([good.addr(), resetting.addr])
        .health_check(HealthCheck::new().interval("60s"))
        .passive_health(3, "30s");
    let config = Config::new().listen(port).metrics(mport).upstream("web", pool).route(Route::to("web"));
    let _gw = Wsgate::start_and_wait(&config, &[port, mport]);

    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(backend_of(addr, "/").await);
    }
    let failed = answers.iter().filter(|(status, _)| *status == 502).count();
    eprintln!("passive health: {failed} failed of {} requests", answers.len());
    assert_eq!(failed, 3, "three failures, then out of rotation: {answers:?}");
    assert!(answers[answers.len() - 20..].iter().all(|a| *a == (200, "good".to_string())), "{answers:?}");
    let backend = resetting.addr.to_string();
    wait_for(maddr, "wsgate_upstream_ejections_total", &[("upstream", "web"), ("backend", &backend)], Some(1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_backend_in_slow_start_gets_a_small_share_first_and_its_full_share_after() {
    let (a, b) = (WsBackend::start("a"), WsBackend::start("b"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let config = |backends: &[SocketAddr]| chat(port, mport, Upstream::new(backends.to_vec()).slow_start("10s"));
    let gw = Wsgate::start_and_wait(&config(&[a.addr()]), &[port, mport]);
    gw.write_config(&config(&[a.addr(), b.addr()]));
    gw.signal("HUP");
    wait_sessions(maddr, b.addr(), Some(0.0)).await;
    let joined = Instant::now();

    // Round robin's fair share is half; in its first 2 s (a ramp up to 20%) b gets far less.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut early, before) = (0, b.sessions());
    while joined.elapsed() < Duration::from_secs(2) {
        connect_echo_close(&url, "x", Duration::from_secs(5)).await.unwrap();
        early += 1;
    }
    let to_b = b.sessions() - before;
    eprintln!("slow start: {to_b} of {early} sessions to b in its first 2 s");
    assert!(early >= 100, "only {early} sessions in 2 s");
    assert!((to_b as f64) < 0.25 * 0.5 * early as f64, "{to_b} of {early} went to b in its first 2 s");

    // Once the 10 s have passed, b takes its full share.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(joined.elapsed())).await;
    let before = b.sessions();
    for _ in 0..100 {
        connect_echo_close(&url, "x", Duration::from_secs(5)).await.unwrap();
    }
    let later = b.sessions() - before;
    eprintln!("slow start: {later} of 100 sessions to b after 10 s");
    assert!((40..=60).contains(&later), "{later} of 100 to b after slow start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_a_backend_that_fails_its_health_check_are_moved_to_healthy_ones() {
    let (a, b, c) = (WsBackend::start("a"), WsBackend::start("b"), WsBackend::start("c"));
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let check = HealthCheck::new().kind("http").path("/healthz").interval("200ms");
    let pool = Upstream::new([a.addr(), b.addr(), c.addr()]).balance("least_sessions").health_check(check);
    let _gw = Wsgate::start_and_wait(&chat(port, mport, pool).drain_window("1s"), &[port, mport]);
    let closes = Closes::default();
    let clients: Vec<_> = (0..300).map(|id| reconnecting_client(port, id, closes.clone())).collect();
    for x in [&a, &b, &c] {
        wait_sessions(maddr, x.addr(), Some(100.0)).await;
    }

    // b's check fails (its sessions still work): within the window plus a check interval,
    // all 100 are told 1012, and their clients are back, on a and c.
    b.fail_checks(true);
    let failed = Instant::now();
    let deadline = failed + Duration::from_secs(5);
    loop {
        let text = scrape(maddr).await;
        let held =
            |x: &WsBackend| sample(&text, "wsgate_upstream_backend_sessions", &[("backend", &x.addr().to_string())]);
        if held(&b) == Some(0.0) && held(&a).unwrap_or(0.0) + held(&c).unwrap_or(0.0) == 300.0 {
            break;
        }
        assert!(Instant::now() < deadline, "not moved: {:?} {:?} {:?}", held(&a), held(&b), held(&c));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = failed.elapsed();
    eprintln!("backend down: 100 sessions moved and reconnected in {took:?}");
    // The window, a check interval, a client's reconnect delay, and scheduling.
    assert!(took < Duration::from_millis(1000 + 200 + 200 + 800), "{took:?}");
    assert_eq!(codes_once_each(&closes), [Some(1012); 100], "b's sessions, each told once");
    for client in clients {
        client.abort();
    }
}

/// The largest max/min ratio of open sessions across `backends`, sampled every 100 ms once
/// about 250 sessions are open, while 1,000 sessions of exponential length (mean 1 s)
/// arrive at 250 per second through a pool balanced by `balance`.
async fn skew_under_random_lifetimes(balance: &str) -> f64 {
    let backends: Vec<WsBackend> = (0..4).map(|i| WsBackend::start(&format!("b{i}"))).collect();
    let (port, mport) = (free_port(), free_port());
    let (_, maddr) = addrs(port, mport);
    let pool = Upstream::new(backends.iter().map(|b| b.addr()).collect::<Vec<_>>()).balance(balance);
    let _gw = Wsgate::start_and_wait(&chat(port, mport, pool), &[port, mport]);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let sessions: Vec<_> = (0..1000u64)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 4)).await;
                let (mut ws, _) = ws_connect(&url, &[]).await.expect("upgrade");
                let lifetime = -(1.0 - fastrand::f64()).ln(); // exponential, mean 1 s
                tokio::time::sleep(Duration::from_secs_f64(lifetime)).await;
                let _ = ws.close(None).await;
            })
        })
        .collect();
    let started = Instant::now();
    let mut worst: f64 = 1.0;
    while started.elapsed() < Duration::from_millis(3800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = scrape(maddr).await;
        let held: Vec<f64> = backends
            .iter()
            .map(|b| {
                sample(&text, "wsgate_upstream_backend_sessions", &[("backend", &b.addr().to_string())]).unwrap_or(0.0)
            })
            .collect();
        let (max, min) = held.iter().fold((0f64, f64::MAX), |(mx, mn), &n| (mx.max(n), mn.min(n)));
        // Steady state: about 250 open (the first second fills up).
        if started.elapsed() > Duration::from_millis(1500) && min > 0.0 {
            worst = worst.max(max / min);
        }
    }
    for s in sessions {
        s.abort();
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_sessions_keeps_backends_even_under_sessions_of_random_length() {
    let least = skew_under_random_lifetimes("least_sessions").await;
    let round_robin = skew_under_random_lifetimes("round_robin").await;
    eprintln!("max/min open sessions across 4 backends: least_sessions {least:.3}, round_robin {round_robin:.3}");
    assert!(least <= 1.15, "least_sessions: {least:.3}");
}
