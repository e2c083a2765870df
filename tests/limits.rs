//! Limits: 431 for oversized headers, 429 (with Retry-After) per client for rate and
//! concurrency, 503 for WebSocket session caps (global and per route); each refusal is
//! counted by cause and logged once per cause.
mod common;
use common::*;
use std::net::SocketAddr;

fn refusals(text: &str, cause: &str) -> f64 {
    let series = format!("wsgate_refusals_total{{cause=\"{cause}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_with_the_right_status_and_count_each_cause() {
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let (port, mport) = (free_port(), free_port());
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\nmetrics: {{address: 127.0.0.1:{mport}}}\n\
         limits: {{max_concurrent_per_ip: 3, requests_per_second_per_ip: 20, max_request_headers: 20, max_request_header_bytes: 4096}}\n\
         upstreams:\n  web: {{backends: ['{}']}}\n  chat: {{backends: ['{}']}}\n\
         routes:\n  - {{path_prefix: /ws, upstream: chat, websocket: {{max_sessions: 1}}}}\n  - {{path_prefix: /more, upstream: chat}}\n  - {{upstream: web}}\n",
        web.addr(),
        chat.addr()
    );
    let gw = Wsgate::start_and_wait(&yaml, &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) = (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    // 431: too many header fields, and too many bytes of them.
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(http_request(addr, &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n")).await.0, 431);
    let big = "v".repeat(5000);
    assert_eq!(http_request(addr, &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")).await.0, 431);

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
