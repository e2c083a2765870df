//! The access log: one JSON line per HTTP request and per WebSocket session, with exact
//! fields; closes by the client (1000), by the backend (1011) and by a dropped connection
//! are told apart in the log and in the metrics.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket backend that echoes, and closes with 1011 when told `fail`.
async fn start_closing_backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "fail" => {
                            let _ =
                                ws.close(Some(CloseFrame { code: CloseCode::Error, reason: "internal".into() })).await;
                        }
                        Message::Text(_) | Message::Binary(_) => {
                            let Ok(()) = ws.send(msg).await else { return };
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_session_gets_one_exact_json_line() {
    let web = HttpBackend::start("web");
    let chat = start_closing_backend().await;
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listen(port)
        .metrics(mport)
        .access_log(AccessLog::path("logs.jsonl"))
        .upstream("web", Upstream::one(web.addr()))
        .upstream("chat", Upstream::one(chat))
        .route(Route::to("chat").name("ws").path_prefix("/ws"))
        .route(Route::to("web").name("site").host("site.example"));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let log_path = gw.dir.path().join("logs.jsonl");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let (status, _, _) = http_request(addr, "GET /page?token=secret HTTP/1.1\r\nHost: site.example\r\nCookie: sid=topsecret\r\nAuthorization: Bearer topsecret\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(get(addr, "nowhere.example", "/missing").await.0, 404);

    let url = format!("ws://127.0.0.1:{port}/ws/room?token=secret");
    // Closed by the client with 1000 after two messages.
    let (mut ws, _) = ws_connect(&url, &[]).await.unwrap();
    ws_echo_text(&mut ws, "one").await;
    ws_echo_text(&mut ws, "two").await;
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    // Closed by the backend with 1011.
    let (mut ws, _) = ws_connect(&url, &[]).await.unwrap();
    ws.send(Message::text("fail")).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Error),
        other => panic!("{other:?}"),
    }
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    // Dropped without any Close frame.
    let (mut ws, _) = ws_connect(&url, &[]).await.unwrap();
    ws_echo_text(&mut ws, "bye").await;
    drop(ws);

    let lines = access_log_lines(&log_path, 5);
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let raw = std::fs::read_to_string(&log_path).unwrap();
    assert!(!raw.contains("topsecret") && !raw.contains("token=secret"), "secrets leaked into the log:\n{raw}");

    let http = &lines[0];
    for (k, v) in [
        ("client", "127.0.0.1"),
        ("method", "GET"),
        ("host", "site.example"),
        ("path", "/page"),
        ("route", "site"),
        ("upstream", "web"),
    ] {
        assert_eq!(http[k], v, "{k} in {http}");
    }
    assert_eq!(http["status"], 200);
    assert_eq!(http["backend"], web.addr().to_string());
    assert!(http["bytes_out"].as_u64().unwrap() > 20, "{http}");
    assert!(http["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(http["time"].as_str().unwrap().ends_with('Z'));
    assert!(http.get("websocket").is_none());
    assert_eq!(
        (lines[1]["status"].as_u64(), lines[1]["route"].as_str(), lines[1]["path"].as_str()),
        (Some(404), Some("none"), Some("/missing"))
    );

    // Session lines arrive in the order the sessions ended.
    let sessions = &lines[2..];
    let expect = [(2, "client", Some(1000)), (1, "backend", Some(1011)), (1, "none", None)];
    for (line, (messages, initiator, code)) in sessions.iter().zip(expect) {
        assert_eq!(line["status"], 101, "{line}");
        assert_eq!(line["path"], "/ws/room");
        assert_eq!(line["route"], "ws");
        let ws = &line["websocket"];
        assert_eq!(ws["close_initiator"], initiator, "{line}");
        assert_eq!(ws["close_code"].as_u64().map(|c| c as u16), code, "{line}");
        assert_eq!(ws["messages_in"].as_u64(), Some(messages), "{line}");
        let echoed = if initiator == "backend" { 0 } else { messages };
        assert_eq!(ws["messages_out"].as_u64(), Some(echoed), "{line}");
        assert!(line["bytes_in"].as_u64().unwrap() > 0 && line["bytes_out"].as_u64().unwrap() > 0, "{line}");
    }

    let maddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let (_, _, text) = get(maddr, "x", "/metrics").await;
    for (initiator, code) in [("client", "1000"), ("backend", "1011"), ("none", "none")] {
        let series = format!("wsgate_websocket_closes_total{{code=\"{code}\",initiator=\"{initiator}\",route=\"ws\",upstream=\"chat\"}} 1");
        assert!(text.contains(&series), "missing {series}\n{text}");
    }
    assert!(
        text.contains(
            "wsgate_websocket_messages_total{direction=\"client_to_backend\",route=\"ws\",upstream=\"chat\"} 4"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_are_logged_when_asked_and_off_means_off() {
    let web = HttpBackend::start("web");
    let port = free_port();
    let site = |port: u16| Config::proxy(port, "web", web.addr());
    let gw = Wsgate::start_and_wait(&site(port).access_log(AccessLog::path("q.jsonl").include_query()), &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    get(addr, "x", "/search?q=rust").await;
    let lines = access_log_lines(&gw.dir.path().join("q.jsonl"), 1);
    assert_eq!(lines[0]["path"], "/search?q=rust");

    // The default target is stdout; `off` writes nothing anywhere.
    for (setting, expect_line) in [(None, true), (Some(AccessLog::path("off")), false)] {
        let port = free_port();
        let cfg = match setting {
            Some(log) => site(port).access_log(log),
            None => site(port),
        };
        let gw = Wsgate::start_and_wait(&cfg, &[port]);
        get(format!("127.0.0.1:{port}").parse().unwrap(), "x", "/marker").await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while expect_line && !gw.stdout().contains("/marker") {
            assert!(Instant::now() < deadline, "no access-log line on stdout: {}", gw.stdout());
            std::thread::sleep(Duration::from_millis(20));
        }
        if !expect_line {
            // The request above has been answered, so its log line would already be written.
            assert_eq!(gw.stdout(), "", "access_log off still wrote");
        }
    }
}
