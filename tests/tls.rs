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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_offer_http2_for_plain_http() {
    use tokio_rustls::rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = write_self_signed_cert(dir.path());
    let web = HttpBackend::start("web");
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - address: 127.0.0.1:{port}\n    tls: {{cert: cert.pem, key: key.pem}}\nupstreams:\n  web: {{backends: ['{}']}}\nroutes:\n  - {{upstream: web}}\n",
        web.addr()
    );
    let gw = Wsgate::start_in(dir, &yaml);
    gw.wait_port(port);
    let mut config = (*tls_client_config(&cert)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "h2 is offered");
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder().uri(format!("https://localhost:{port}/over-h2")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-backend").unwrap(), "web");
    assert_eq!(web.last_request().unwrap().path, "/over-h2");
}
