//! TLS listeners: https:// and wss:// through the same listener, with the client verifying
//! wsgate's certificate.
mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_work_through_a_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let (web, chat) = (HttpBackend::start("web"), WsBackend::start("chat"));
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n    tls: {{cert: cert.pem, key: key.pem}}\n\
         upstreams:\n  web: {{backends: ['{}']}}\n  chat: {{backends: ['{}']}}\n\
         routes:\n  - {{path_prefix: /ws, upstream: chat}}\n  - {{upstream: web}}\n",
        web.addr(),
        chat.addr()
    );
    let _ = key;
    let gw = Wsgate::start_in(dir, &yaml);
    gw.wait_port(port);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let (status, headers, _) = https_request(addr, "localhost", &cert, "GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "{}", gw.log());
    assert_eq!(header(&headers, "x-backend"), Some("web"));
    assert_eq!(web.last_request().unwrap().header("x-forwarded-proto"), Some("https"));

    let (mut ws, resp) = wss_connect(&format!("wss://localhost:{port}/ws"), &[], &cert).await.unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(resp.status(), 101);
    assert_eq!(ws_echo_text(&mut ws, "over tls").await, "over tls");
    let big = "x".repeat(300_000);
    assert_eq!(ws_echo_text(&mut ws, &big).await, big);
    assert_eq!(header(&chat.last_headers(), "x-forwarded-proto"), Some("https"));
}
