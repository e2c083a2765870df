//! Limits: 431 for oversized headers, 429 (with Retry-After) per client for rate and
//! concurrency, 503 for WebSocket session caps (global and per route); each refusal is
//! counted by cause and logged once per cause.
mod common;
use common::*;
use std::net::SocketAddr;

/// wsgate on `port` (metrics on `mport`), every request to `web`; each test adds its limits.
fn web_behind(port: u16, mport: u16, web: &HttpBackend) -> Config {
    Config::proxy(port, "web", web.addr()).metrics(mport)
}

fn refusals(text: &str, cause: &str) -> f64 {
    let series = format!("wsgate_refusals_total{{cause=\"{cause}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_the_right_status_and_count_each_cause() {
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listen(port)
        .metrics(mport)
        .limits(
            Limits::new()
                .max_concurrent_per_ip(3)
                .requests_per_second_per_ip(20)
                .max_request_headers(20)
                .max_request_header_bytes(4096),
        )
        .upstream("web", Upstream::one(web.addr()))
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat").path_prefix("/ws").websocket(WebSocket::new().max_sessions(1)))
        .route(Route::to("chat").path_prefix("/more"))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    // 431: too many header fields, and too many bytes of them.
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        http_request(addr, &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n")).await.0,
        431
    );
    let big = "v".repeat(5000);
    assert_eq!(
        http_request(addr, &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")).await.0,
        431
    );

    // 503 per route: one session allowed on /ws.
    let (mut first, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
    match ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            assert_eq!(resp.headers().get("retry-after").unwrap(), "5");
        }
        other => panic!("expected 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    assert_eq!(ws_echo_text(&mut first, "still fine").await, "still fine");

    // 429 for concurrency: sessions hold their client's slots for as long as they are open;
    // with 3 open, a fourth request is refused, and a slot frees when one closes.
    let (second, _) = ws_connect(&format!("ws://127.0.0.1:{port}/more"), &[]).await.unwrap();
    let (third, _) = ws_connect(&format!("ws://127.0.0.1:{port}/more"), &[]).await.unwrap();
    let (status, headers, _) = get(addr, "x", "/").await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert_eq!(ws_echo_text(&mut first, "admitted sessions are unaffected").await, "admitted sessions are unaffected");
    drop(third);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get(addr, "x", "/").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the slot of a closed session never came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop((first, second));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // a fresh rate interval

    // 429 for rate: 20 per second per client.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let (status, headers, _) = get(addr, "x", "/").await;
        if status == 429 {
            assert_eq!(header(&headers, "retry-after"), Some("1"));
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    let (_, _, text) = get(maddr, "x", "/metrics").await;
    assert_eq!(refusals(&text, "headers_too_large"), 2.0);
    assert_eq!(refusals(&text, "route_websocket_sessions"), 1.0);
    assert!(refusals(&text, "concurrency_per_ip") >= 1.0);
    assert!(refusals(&text, "rate_per_ip") >= 1.0);
    let log = gw.log();
    assert_eq!(log.matches("limit `headers_too_large` reached").count(), 1, "logged once per cause:\n{log}");
    assert_eq!(log.matches("limit `rate_per_ip` reached").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_in_all_and_per_client_address() {
    use tokio::io::AsyncWriteExt;
    let web = HttpBackend::start("web");
    let (port, mport) = (free_port(), free_port());
    let cfg = web_behind(port, mport, &web).limits(Limits::new().max_connections(5).max_connections_per_ip(3));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());
    let short = std::time::Duration::from_millis(300);

    // Three idle connections from 127.0.0.1 are held open; the fourth is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", addr).await;
        assert!(!read_until_closed(&mut s, short).await.1, "an admitted connection stays open");
        held.push(s);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (bytes, closed) = read_until_closed(&mut fourth, std::time::Duration::from_secs(5)).await;
    assert!(
        closed && bytes.is_empty(),
        "over the per-address limit: closed unanswered, got {:?}",
        String::from_utf8_lossy(&bytes)
    );

    // Another address still gets in, up to the total of 5.
    let mut other = connect_from("127.0.0.2", addr).await;
    other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first_answer = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut other, &mut first_answer).await.unwrap();
    assert_eq!(&first_answer, b"HTTP/1.1 200");
    let mut fifth = connect_from("127.0.0.3", addr).await;
    fifth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::io::AsyncReadExt::read_exact(&mut fifth, &mut first_answer).await.unwrap(); // admitted before the sixth arrives
    assert_eq!(&first_answer, b"HTTP/1.1 200");
    let mut sixth = connect_from("127.0.0.4", addr).await;
    let (bytes, closed) = read_until_closed(&mut sixth, std::time::Duration::from_secs(5)).await;
    assert!(closed && bytes.is_empty(), "over the total: closed");

    // Closing frees the place: 127.0.0.1 is served again.
    drop(held.pop());
    drop(other);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let (bytes, _) = read_until_closed(&mut s, std::time::Duration::from_secs(5)).await;
        if bytes.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the place of a closed connection never came back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let metrics = gw_metrics(maddr, &held).await;
    assert!(refusals(&metrics, "connections_per_ip") >= 1.0, "{metrics}");
    assert!(refusals(&metrics, "connections") >= 1.0);
    assert_eq!(gw.log().matches("limit `connections_per_ip` reached").count(), 1);
}

/// The metrics page, read from an address of its own (the proxy's limits do not apply to it).
async fn gw_metrics(maddr: SocketAddr, _keep_open: &[tokio::net::TcpStream]) -> String {
    get(maddr, "x", "/metrics").await.2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickling_in_past_the_header_timeout_gets_408() {
    use tokio::io::AsyncWriteExt;
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let (port, mport) = (free_port(), free_port());
    let cfg = web_behind(port, mport, &web)
        .limits(Limits::new().header_timeout("1s"))
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat").path_prefix("/ws"));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    // A byte every 100 ms: each read is quick, the head as a whole is not.
    let started = std::time::Instant::now();
    let mut slow = connect_from("127.0.0.1", addr).await;
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut sent = 0;
    for byte in head.iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if started.elapsed() > std::time::Duration::from_secs(3) {
            break;
        }
    }
    let (bytes, closed) = read_until_closed(&mut slow, std::time::Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&bytes);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "got {answer:?} after sending {sent} bytes");
    assert!(closed, "closed after the 408");
    assert!(sent < head.len(), "cut off before the head was complete ({sent} of {} bytes)", head.len());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(900) && elapsed < std::time::Duration::from_secs(3),
        "{elapsed:?}"
    );

    // A silent connection gets the same after the timeout.
    let mut silent = connect_from("127.0.0.1", addr).await;
    let (bytes, closed) = read_until_closed(&mut silent, std::time::Duration::from_secs(5)).await;
    assert!(closed && bytes.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&bytes));

    // The deadline is for the first head only: an idle keep-alive connection and an idle
    // WebSocket session outlive it.
    let mut keep = connect_from("127.0.0.1", addr).await;
    keep.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut status = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut keep, &mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // longer than header_timeout, on purpose
    assert_eq!(ws_echo_text(&mut ws, "still here").await, "still here");
    let (bytes, closed) = read_until_closed(&mut keep, std::time::Duration::from_millis(100)).await;
    assert!(!closed, "the idle keep-alive connection was cut: {:?}", String::from_utf8_lossy(&bytes));

    let (_, _, text) = get(maddr, "x", "/metrics").await;
    assert_eq!(refusals(&text, "header_timeout"), 2.0, "{text}");
    let log = gw.log();
    assert_eq!(log.matches("limit `header_timeout` reached").count(), 1);
    assert!(
        !log.contains("while reading request headers"),
        "Pingora's per-connection error line is kept at debug level:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_second_are_limited_per_client_address() {
    use tokio::io::AsyncWriteExt;
    let web = HttpBackend::start("web");
    let (port, mport) = (free_port(), free_port());
    let cfg = web_behind(port, mport, &web).limits(Limits::new().connections_per_second_per_ip(5));
    let _gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    // 12 connections at once from one address: about 5 are served, the rest closed unanswered.
    let mut served = 0;
    for _ in 0..12 {
        let mut s = connect_from("127.0.0.5", addr).await;
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        let (bytes, _) = read_until_closed(&mut s, std::time::Duration::from_secs(5)).await;
        if bytes.starts_with(b"HTTP/1.1 200") {
            served += 1;
        } else {
            assert!(bytes.is_empty(), "refused connections get no answer: {:?}", String::from_utf8_lossy(&bytes));
        }
    }
    // 5 per one-second interval; the loop takes milliseconds, but may straddle two intervals.
    assert!((5..=10).contains(&served), "served {served} of 12 with a limit of 5 per second");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.6", addr).await;
    other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert!(read_until_closed(&mut other, std::time::Duration::from_secs(5)).await.0.starts_with(b"HTTP/1.1 200"));
    let (_, _, text) = get(maddr, "x", "/metrics").await;
    assert_eq!(refusals(&text, "connection_rate_per_ip"), (12 - served) as f64, "{text}");
}

/// On a TLS listener the connection limits and the header timeout start at accept, before
/// the handshake, as on a plain listener: a client that never finishes its handshake holds
/// its place under `max_connections_per_ip` and loses it after `header_timeout`, the whole
/// budget for handshake and first head. (Pingora alone gives a handshake 60 s, uncounted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_count_against_the_connection_limits_and_the_header_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = write_self_signed_cert(dir.path());
    let web = HttpBackend::start("web");
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::self_signed()))
        .metrics(mport)
        .limits(Limits::new().header_timeout("1s").max_connections_per_ip(2))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    // Three connections from one address (not the one wait_port's probes came from): two
    // silent, one sending the start of a ClientHello record and no more. Whichever of them
    // wsgate takes last is over the limit of two and closed at once; the other two are
    // closed when the header timeout passes.
    let started = Instant::now();
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = connect_from("127.0.0.3", addr).await;
        if i == 1 {
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
        }
        held.push(s);
    }
    let closes = futures_util::future::join_all(held.iter_mut().map(|s| async {
        let (bytes, closed) = read_until_closed(s, Duration::from_secs(10)).await;
        assert!(closed && bytes.is_empty(), "closed {closed}, {} bytes sent back", bytes.len());
        started.elapsed()
    }))
    .await;
    let mut closes = closes;
    closes.sort();
    assert!(closes[0] < Duration::from_millis(700), "one connection over the limit is closed at once: {closes:?}");
    for after in &closes[1..] {
        assert!(
            *after >= Duration::from_millis(900) && *after < Duration::from_secs(3),
            "closed after the header timeout: {closes:?}"
        );
    }

    // The places are free again; the same budget covers handshake and head: a client that
    // finishes its handshake but sends no request gets a 408 over TLS.
    let tcp = connect_from("127.0.0.3", addr).await;
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&cert));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("handshake after the places were freed");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "not closed within 5 s");
    assert!(answer.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{:?}", String::from_utf8_lossy(&answer));

    let (status, _, _) =
        https_request(addr, "localhost", &cert, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
    let (_, _, text) = get(maddr, "x", "/metrics").await;
    assert_eq!(refusals(&text, "connections_per_ip"), 1.0, "{text}");
    assert_eq!(refusals(&text, "header_timeout"), 3.0, "{text}");
    assert!(!gw.log().contains("handshake"), "handshake failures are not logged one by one:\n{}", gw.log());
}

/// An idle keep-alive connection is closed after `limits.keepalive_timeout`. (Pingora by
/// itself waits for an HTTP/1.1 client's next request with no time limit at all, or for as
/// long as the client's own `Keep-Alive: timeout=` asks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_keepalive_timeout() {
    use std::time::{Duration, Instant};
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::proxy(port, "web", web.addr()).limits(Limits::new().keepalive_timeout("1s"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    for (name, extra) in [("plain", ""), ("asking for an hour", "Keep-Alive: timeout=3600\r\n")] {
        let mut conn = connect_from("127.0.0.1", addr).await;
        // Two requests on the connection: it is kept alive between them.
        for _ in 0..2 {
            let (status, headers, _) =
                request_on(&mut conn, &format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n")).await;
            assert_eq!(status, 200, "{name}");
            assert_ne!(header(&headers, "connection"), Some("close"), "{name}");
        }
        let idle_from = Instant::now();
        let (bytes, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
        let idle = idle_from.elapsed();
        assert!(closed, "{name}: the idle connection is still open after {idle:?}");
        assert!(bytes.is_empty(), "{name}: closed quietly, got {:?}", String::from_utf8_lossy(&bytes));
        assert!(idle >= Duration::from_millis(500) && idle < Duration::from_secs(3), "{name}: closed after {idle:?}");
    }
}

/// Every request head on a keep-alive connection must be complete within `header_timeout`
/// of its first byte, not just the first one (Pingora alone bounds each read only, so a
/// byte now and then would hold the connection forever). Idle time between requests is
/// `keepalive_timeout`'s business, not the head's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_heads_on_a_keep_alive_connection_are_held_to_the_header_timeout() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg =
        Config::proxy(port, "web", web.addr()).limits(Limits::new().header_timeout("1s").keepalive_timeout("30s"));
    let _gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = connect_from("127.0.0.1", addr).await;
    let (status, _, _) = request_on(&mut conn, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    // Idle for longer than the header timeout, on purpose, then a prompt request: served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _, _) =
        request_on(&mut conn, "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(status, 200, "idle time before a head does not count against it");

    // The third head trickles in a byte per 100 ms: cut off with a 408 about 1 s after its
    // first byte, long before it would be complete.
    let head = b"GET /third HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut sent = 0;
    for byte in head.iter() {
        if conn.write_all(&[*byte]).await.is_err() || started.elapsed() > Duration::from_secs(3) {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (bytes, closed) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    let answer = String::from_utf8_lossy(&bytes);
    assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "got {answer:?} after sending {sent} bytes");
    assert!(closed && sent < head.len(), "cut off after {sent} of {} bytes", head.len());
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(web.hits(), 2, "the cut-off request never reached the backend");
}
