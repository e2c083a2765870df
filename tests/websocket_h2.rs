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
        .listener(Listener::on(off).tls(Tls::new(&cert, &key)))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[on, off]);
    assert!(offers_extended_connect(on, &cert).await, "{}", gw.logs());
    assert!(!offers_extended_connect(off, &cert).await, "{}", gw.logs());
}
