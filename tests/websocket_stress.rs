//! Guards for two Pingora 0.9.1 WebSocket defects that wsgate's own tunnel avoids:
//! - pingora#946 (a tunnel torn down right after a fast 101): thousands of sequential and
//!   concurrent connect-echo-close sessions, 0 failures;
//! - the single-loop tunnel deadlock under bidirectional bulk load: GiB-sized echoes
//!   through one session against a backend that reads and writes in one loop, 0 stalls.
//!
//! Sizes can be raised for a longer soak: WSGATE_STRESS_SEQUENTIAL, WSGATE_STRESS_CONCURRENT,
//! WSGATE_STRESS_BULK_MIB, WSGATE_STRESS_BULK_RUNS.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn proxy_to(backend: &WsBackend) -> (Wsgate, u16) {
    let port = free_port();
    let cfg = Config::proxy(port, "chat", backend.addr()).server(Server::new().threads(2));
    (Wsgate::start_and_wait(&cfg, &[port]), port)
}

/// Session `i`: connect, one echo (bounded: 10 s), close.
async fn session(url: &str, i: usize) -> Result<(), String> {
    connect_echo_close(url, &format!("message {i}"), Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sequential_and_concurrent_sessions_never_fail() {
    let backend = WsBackend::start("echo");
    let (gw, port) = proxy_to(&backend);
    let url = format!("ws://127.0.0.1:{port}/");

    let sequential = env_or("WSGATE_STRESS_SEQUENTIAL", 5000);
    let started = Instant::now();
    let mut failures = Vec::new();
    for i in 0..sequential {
        if let Err(e) = session(&url, i).await {
            failures.push(e);
        }
    }
    eprintln!("{sequential} sequential sessions in {:?}, {} failed", started.elapsed(), failures.len());
    assert!(failures.is_empty(), "{} of {sequential} failed, first: {}\n{}", failures.len(), failures[0], gw.log());

    let concurrent = env_or("WSGATE_STRESS_CONCURRENT", 200);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrent)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { session(&url, i).await })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e);
        }
    }
    eprintln!("{concurrent} concurrent sessions in {:?}, {} failed", started.elapsed(), failures.len());
    assert!(failures.is_empty(), "{} of {concurrent} failed, first: {}", failures.len(), failures[0]);
    assert_eq!(backend.sessions(), sequential + concurrent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_echo_through_one_session_never_stalls() {
    const MESSAGE: usize = 64 * 1024;
    let backend = WsBackend::start_raw_echo("bulk");
    let (_gw, port) = proxy_to(&backend);
    let total_mib = env_or("WSGATE_STRESS_BULK_MIB", 256);
    let runs = env_or("WSGATE_STRESS_BULK_RUNS", 2);
    let messages = total_mib * 1024 * 1024 / MESSAGE;
    for run in 0..runs {
        let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            let payload: Vec<u8> = (0..MESSAGE).map(|i| (i % 251) as u8).collect();
            for _ in 0..messages {
                sink.send(Message::binary(payload.clone())).await.unwrap();
            }
            sink
        });
        let reader = async {
            let mut received = 0usize;
            while received < messages * MESSAGE {
                match stream.next().await {
                    Some(Ok(Message::Binary(b))) => received += b.len(),
                    other => panic!("run {run}: unexpected {other:?} after {received} bytes"),
                }
            }
            received
        };
        // A stall is the failure this guards against: bound each run generously.
        let received = tokio::time::timeout(Duration::from_secs(300), reader)
            .await
            .unwrap_or_else(|_| panic!("run {run} stalled"));
        let mut sink = writer.await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!("run {run}: {total_mib} MiB echoed in {secs:.2}s = {:.0} MiB/s", total_mib as f64 / secs);
        assert_eq!(received, messages * MESSAGE);
        let _ = sink.close().await;
    }
}

/// A session that moved one large message each way holds no more memory afterwards than a
/// fresh idle one: each direction's buffer goes back to its start size once the burst is
/// over. jemalloc is told to return freed pages at once, so RSS shows what wsgate holds,
/// not what the allocator keeps for later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_give_their_buffers_back_after_a_large_message() {
    const SESSIONS: usize = 100;
    const MESSAGE: usize = 256 * 1024;
    let backend = WsBackend::start("chat");
    let port = free_port();
    let cfg = Config::proxy(port, "chat", backend.addr());
    let gw = Wsgate::start_in_env(
        tempfile::tempdir().unwrap(),
        &cfg,
        &[("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")],
    );
    gw.wait_port(port);
    let url = format!("ws://127.0.0.1:{port}/");
    // One session first, so what every process grows by on its first session is not counted.
    let (mut first, _) = ws_connect(&url, &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut first, "warm-up").await, "warm-up");
    let base = rss_kib(gw.pid());
    assert!(base > 0, "cannot read VmRSS of wsgate");
    let mut sessions = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let (mut ws, _) = ws_connect(&url, &[]).await.unwrap();
        assert_eq!(ws_echo_text(&mut ws, &format!("s{i}")).await, format!("s{i}"));
        sessions.push(ws);
    }
    let fresh = rss_kib(gw.pid()).saturating_sub(base);
    let message = vec![3u8; MESSAGE];
    for ws in &mut sessions {
        ws.send(Message::Binary(message.clone())).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(echo)))) => assert_eq!(echo.len(), MESSAGE),
            other => panic!("no echo of the large message: {other:?}"),
        }
    }
    // Buffers shrink after a short read or a quiet second: poll (bounded) until they have.
    let deadline = Instant::now() + Duration::from_secs(10);
    let used = loop {
        let used = rss_kib(gw.pid()).saturating_sub(base);
        if used * 10 <= fresh * 11 || Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "{SESSIONS} idle sessions: +{fresh} KiB fresh, +{used} KiB after one {MESSAGE}-byte message each way ({:.2}x)",
        used as f64 / fresh.max(1) as f64
    );
    assert!(
        used * 10 <= fresh * 11,
        "RSS per idle session after a large message {} KiB > 1.1 x fresh {} KiB",
        used / SESSIONS as u64,
        fresh / SESSIONS as u64
    );
    drop(gw);
}
