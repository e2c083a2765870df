//! WebSocket over HTTP/2 (RFC 8441): what an HTTP/2 client of wsgate sees.
mod common;
use common::*;
use std::time::Duration;

/// After one exchange, the server's SETTINGS have been read: whether it offered extended
/// CONNECT.
async fn offers_extended_connect(port: u16, cert: &std::path::Path) -> bool {
    let mut client = h2_client(port, cert).await;
    let req = http::Request::get(format!("https://localhost:{port}/")).body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("an answer").unwrap();
    assert_eq!(response.status(), 200);
    client.is_extended_connect_protocol_enabled()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listeners_with_websocket_over_http2_offer_extended_connect() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let web = RecordingBackend::start();
    let (on, off) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(on).tls(Tls::new(&cert, &key).websocket_over_http2(true)))
        .listener(Listener::on(off).tls(Tls::new(&cert, &key).websocket_over_http2(false)))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[on, off]);
    assert!(offers_extended_connect(on, &cert).await, "{}", gw.logs());
    assert!(!offers_extended_connect(off, &cert).await, "{}", gw.logs());
}

/// The status an HTTP/2 CONNECT gets; `protocol`: its `:protocol`, if any.
async fn connect_status(port: u16, cert: &std::path::Path, protocol: Option<&str>) -> u16 {
    let mut client = h2_client(port, cert).await;
    // Wait for the server's SETTINGS (extended CONNECT must be offered before it is used).
    let get = http::Request::get(format!("https://localhost:{port}/")).body(()).unwrap();
    let (first, _) = client.send_request(get, true).unwrap();
    first.await.unwrap();
    let mut req = http::Request::builder().method("CONNECT").uri(format!("https://localhost:{port}/ws"));
    if let Some(p) = protocol {
        req = req.extension(h2::ext::Protocol::from(p)).header("sec-websocket-version", "13");
    }
    let (response, _stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
    tokio::time::timeout(Duration::from_secs(10), response).await.expect("an answer").unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_requests_are_answered_by_wsgate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let web = RecordingBackend::start();
    let port = free_port();
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new(&cert, &key).websocket_over_http2(true)))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    assert_eq!(connect_status(port, &cert, None).await, 405, "{}", gw.logs());
    assert_eq!(connect_status(port, &cert, Some("bytestream")).await, 501, "{}", gw.logs());
    // HTTP/1.1 CONNECT, as before: 405.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tls = tls_connect(addr, "localhost", &cert).await.unwrap();
    let (status, _, _) = request_on(tls, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").await;
    assert_eq!(status, 405);
    let methods: Vec<String> = web.requests_to("").into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET"; 2], "only the GETs that waited for SETTINGS reach the backend");
}

/// A masked client text frame (RFC 6455 §5.2).
fn client_text(text: &str) -> bytes::Bytes {
    ws_frame(0x1, text.as_bytes(), true).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_over_an_http2_stream_echoes_through_an_http1_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let cfg = h2_ws_gateway(port, &cert, &key, ws.addr());
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (response, mut send) = h2_ws_open_raw(port, &cert, "/ws?room=1", &[client_text("early")]).await;
    assert_eq!(response.status(), 200, "{}", gw.logs());
    assert_eq!(ws.last_path().as_deref(), Some("/ws?room=1"));
    let mut body = response.into_body();
    send.send_data(client_text("hello"), false).unwrap();
    let wanted = [&[0x81, 5][..], b"early", &[0x81, 5], b"hello"].concat();
    assert_eq!(h2_read_exactly(&mut body, wanted.len()).await, wanted, "{}", gw.logs());
}

/// Pingora closes an HTTP/2 connection with no stream task for `keepalive_timeout`: a quiet
/// WebSocket stream keeps its task, so its connection stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_websocket_stream_outlives_the_connections_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new(&cert, &key).websocket_over_http2(true)))
        .limits(Limits::new().keepalive_timeout("1s"))
        .upstream("ws", Upstream::one(ws.addr()))
        .route(Route::to("ws"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (response, mut send) = h2_ws_open_raw(port, &cert, "/ws", &[]).await;
    assert_eq!(response.status(), 200, "{}", gw.logs());
    let mut body = response.into_body();
    // Quiet for 2.5 idle timeouts: the point of the test is time passing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    send.send_data(client_text("still"), false).unwrap();
    assert_eq!(h2_read_exactly(&mut body, 7).await, [&[0x81, 5][..], b"still"].concat(), "{}", gw.logs());
}

/// A masked client Close with `code`.
fn client_close(code: u16) -> bytes::Bytes {
    ws_frame(0x8, &code.to_be_bytes(), true).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_handshake_over_http2_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let cfg = h2_ws_gateway(port, &cert, &key, ws.addr());
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (response, mut send) = h2_ws_open_raw(port, &cert, "/ws", &[]).await;
    assert_eq!(response.status(), 200, "{}", gw.logs());
    let mut body = response.into_body();
    send.send_data(client_close(1000), false).unwrap();
    // The backend's Close comes back, then the stream ends (END_STREAM: the tunnel's FIN).
    assert_eq!(h2_read_exactly(&mut body, 4).await, [0x88, 2, 0x03, 0xe8], "{}", gw.logs());
    // An empty DATA frame carries END_STREAM; nothing else follows the Close.
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(10), body.data()).await.expect("the stream ends") {
            None => break,
            Some(chunk) => assert!(chunk.unwrap().is_empty(), "bytes after the Close"),
        }
    }
    assert!(body.is_end_stream(), "{}", gw.logs());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ws.close_codes().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ws.close_codes(), [Some(1000)]);
    // The session's access-log line is written when it ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.stdout().contains("\"status\":101") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = gw.stdout();
    assert!(log.contains("\"close_code\":1000") && log.contains("\"protocol\":\"h2\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_of_the_stream_ends_the_backend_session() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let ws = WsBackend::start("ws");
    let port = free_port();
    let cfg = h2_ws_gateway(port, &cert, &key, ws.addr());
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (response, mut send) = h2_ws_open_raw(port, &cert, "/ws", &[client_text("one")]).await;
    assert_eq!(response.status(), 200, "{}", gw.logs());
    let mut body = response.into_body();
    assert_eq!(h2_read_exactly(&mut body, 5).await, [&[0x81, 3][..], b"one"].concat());
    send.send_reset(h2::Reason::CANCEL);
    // The session ends (its access-log line is written then), its backend connection with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gw.stdout().contains("\"status\":101") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = gw.stdout();
    assert!(log.contains("\"close_initiator\":\"none\""), "the session did not end\n{log}\n{}", gw.logs());
}
