//! Per-session client rate limits against the real binary: `throttle` delivers every
//! message, in order, no faster than the bucket allows; `close` ends the session with 1008.
mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// wsgate with `websocket` on its one route; the config and its port.
fn config(backend: SocketAddr, metrics: u16, log: &std::path::Path, websocket: WebSocket) -> (Config, u16) {
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .metrics(metrics)
        .access_log(AccessLog::path(log.to_str().unwrap()))
        .upstream("app", Upstream::one(backend))
        .route(Route::to("app").websocket(websocket));
    (cfg, port)
}

const RATE: f64 = 50.0;
const BURST: f64 = 20.0;
const SENT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_client_gets_every_message_through_in_order_at_the_rate() {
    let backend = WsBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let limits = WebSocket::new().client_messages_per_second(RATE, BURST);
    let (cfg, port) = config(backend.addr(), metrics, &dir.path().join("access.jsonl"), limits);
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, metrics]);
    let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
    let opened = Instant::now();
    let (mut tx, mut rx) = ws.split();
    // Ten times the rate: 100 messages in 0.2 s.
    let sender = tokio::spawn(async move {
        for i in 0..SENT {
            tx.send(Message::text(format!("m{i}"))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tx
    });
    let mut over = Vec::new();
    let deadline = opened + Duration::from_secs(10);
    while backend.messages() < SENT && Instant::now() < deadline {
        let allowed = RATE * opened.elapsed().as_secs_f64() + BURST + 2.0;
        let got = backend.messages();
        if got as f64 > allowed {
            over.push((opened.elapsed(), got));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = opened.elapsed();
    assert!(over.is_empty(), "the backend got more than rate × t + burst: {over:?}");
    assert_eq!(backend.messages(), SENT, "every message arrives");
    let least = Duration::from_secs_f64((SENT as f64 - BURST) / RATE);
    assert!(took >= least - Duration::from_millis(100), "{SENT} messages took {took:?}, at least {least:?}");
    let mut echoes = Vec::new();
    while echoes.len() < SENT {
        match tokio::time::timeout(Duration::from_secs(5), rx.next()).await.expect("echo") {
            Some(Ok(Message::Text(t))) => echoes.push(t.to_string()),
            other => panic!("an echo, got {other:?}"),
        }
    }
    assert_eq!(echoes, (0..SENT).map(|i| format!("m{i}")).collect::<Vec<_>>(), "all of them, in order");
    let labels = [("action", "throttle")];
    let text = scrape(SocketAddr::from(([127, 0, 0, 1], metrics))).await;
    assert!(sample(&text, "wsgate_websocket_rate_limited_total", &labels).unwrap_or(0.0) >= 1.0, "{text}");
    drop((sender, gw));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_its_bucket_with_close_gets_1008_and_the_backend_1001() {
    let backend = WsBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let (metrics, log) = (free_port(), dir.path().join("access.jsonl"));
    let limits = WebSocket::new().client_messages_per_second(5.0, 5.0).on_rate_exceeded("close");
    let (cfg, port) = config(backend.addr(), metrics, &log, limits);
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, metrics]);
    let (ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/"), &[]).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..50 {
            if tx.send(Message::text(format!("m{i}"))).await.is_err() {
                break;
            }
        }
        tx
    });
    let close = ws_close_code(&mut rx).await;
    assert_eq!(close, Some(1008));
    // Reading on sends tungstenite's Close reply, which completes the closing handshake.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(5), rx.next()).await {}
    let line = access_log_lines(&log, 1).pop().unwrap();
    assert_eq!(line["websocket"]["reason"], "rate_limited", "{line}");
    assert_eq!(backend.close_codes(), [Some(1001)]);
    assert!(backend.messages() <= 7, "at most the burst and the message in flight: {}", backend.messages());
    let labels = [("action", "close")];
    wait_for(SocketAddr::from(([127, 0, 0, 1], metrics)), "wsgate_websocket_rate_limited_total", &labels, Some(1.0))
        .await;
    drop((sender, gw));
}
