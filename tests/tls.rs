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
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::self_signed()))
        .upstream("web", Upstream::one(web.addr()))
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat").path_prefix("/ws"))
        .route(Route::to("web"));
    let _ = key;
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let (status, headers, _) =
        https_request(addr, "localhost", &cert, "GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
    assert_eq!(status, 200, "{}", gw.log());
    assert_eq!(header(&headers, "x-backend"), Some("web"));
    assert_eq!(web.last_request().unwrap().header("x-forwarded-proto"), Some("https"));

    let (mut ws, resp) = wss_connect(&format!("wss://localhost:{port}/ws"), &[], &cert)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log()));
    assert_eq!(resp.status(), 101);
    assert_eq!(ws_echo_text(&mut ws, "over tls").await, "over tls");
    let big = "x".repeat(300_000);
    assert_eq!(ws_echo_text(&mut ws, &big).await, big);
    assert_eq!(header(&chat.last_headers(), "x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_offer_http2_for_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = write_self_signed_cert(dir.path());
    let web = HttpBackend::start("web");
    let port = free_port();
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::self_signed()))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let _gw = Wsgate::start_in_and_wait(dir, &cfg, &[port]);
    let mut client = h2_client(port, &cert).await;
    let request = http::Request::builder().uri(format!("https://localhost:{port}/over-h2")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("x-backend").unwrap(), "web");
    assert_eq!(web.last_request().unwrap().path, "/over-h2");
}

/// The certificate wsgate presented in a handshake with `server_name` (a DNS name, or an
/// IP address: then the client sends no SNI), verified against `trust`.
async fn served_cert(addr: std::net::SocketAddr, server_name: &str, trust: &std::path::Path) -> Vec<u8> {
    let tls =
        tls_connect(addr, server_name, trust).await.unwrap_or_else(|e| panic!("TLS handshake as {server_name}: {e}"));
    tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn der_of(pem: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::pem_file_iter(pem).unwrap().next().unwrap().unwrap().as_ref().to_vec()
}

fn trust_file(dir: &std::path::Path, name: &str, certs: &[&std::path::Path]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, certs.iter().map(|c| std::fs::read_to_string(c).unwrap()).collect::<String>()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_chosen_by_sni_and_reloaded_without_dropping_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (a_cert, _) = write_cert(&path, "a-", "a.test", "DNS:a.test,IP:127.0.0.1");
    let (b_cert, _) = write_cert(&path, "b-", "b.test", "DNS:b.test,DNS:*.b.test");
    let trust = trust_file(&path, "trust.pem", &[&a_cert, &b_cert]);
    let chat = WsBackend::start("chat");
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::new("a-cert.pem", "a-key.pem").certificate("b-cert.pem", "b-key.pem")))
        .metrics(mport)
        .upstream("chat", Upstream::one(chat.addr()))
        .route(Route::to("chat"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    assert_eq!(served_cert(addr, "a.test", &trust).await, der_of(&a_cert));
    assert_eq!(served_cert(addr, "b.test", &trust).await, der_of(&b_cert));
    assert_eq!(served_cert(addr, "x.b.test", &trust).await, der_of(&b_cert), "wildcard name");
    assert_eq!(served_cert(addr, "127.0.0.1", &trust).await, der_of(&a_cert), "no SNI: the first certificate");

    // A WebSocket session over the b certificate, open across the reloads below.
    let tls = tls_connect(addr, "b.test", &trust).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://b.test/chat", tls).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "before").await, "before");

    // Renewed at the same paths, then SIGHUP: new handshakes get the new certificate.
    let old_b = der_of(&b_cert);
    write_cert(&path, "b-", "b.test", "DNS:b.test,DNS:*.b.test");
    assert_ne!(der_of(&b_cert), old_b);
    let trust = trust_file(&path, "trust2.pem", &[&a_cert, &b_cert]);
    gw.signal("HUP");
    assert!(gw.wait_log_contains("TLS certificates replaced", std::time::Duration::from_secs(10)), "{}", gw.log());
    assert_eq!(served_cert(addr, "b.test", &trust).await, der_of(&b_cert));
    assert_eq!(ws_echo_text(&mut ws, "after the reload").await, "after the reload", "the open session continues");

    // A broken certificate file: the reload is refused and the certificates in use stay.
    let renewed = der_of(&b_cert);
    std::fs::write(&b_cert, "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n").unwrap();
    gw.signal("HUP");
    assert!(gw.wait_log_contains("is invalid, nothing changed", std::time::Duration::from_secs(10)), "{}", gw.log());
    assert!(gw.log().contains("listeners[0].tls.certificates[0].cert"), "the error names the key:\n{}", gw.log());
    assert_eq!(served_cert(addr, "b.test", &trust).await, renewed);
    assert_eq!(ws_echo_text(&mut ws, "still").await, "still");
    let (_, _, metrics) = get(format!("127.0.0.1:{mport}").parse().unwrap(), "x", "/metrics").await;
    assert!(metrics.contains("wsgate_config_reloads_total{result=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("wsgate_config_reloads_total{result=\"invalid\"} 1"), "{metrics}");
}

/// The frame types of the HTTP/2 frames in `bytes` (as far as they are complete).
fn h2_frame_types(bytes: &[u8]) -> Vec<u8> {
    let (mut types, mut at) = (Vec::new(), 0);
    while let Some(header) = bytes.get(at..at + 9) {
        types.push(header[3]);
        at += 9 + u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    }
    types
}

/// `header_timeout` and `keepalive_timeout` hold for HTTP/2 as for HTTP/1.1: a connection
/// has `header_timeout` from accept for its first complete request (nothing, a preface,
/// SETTINGS, or a HEADERS frame whose block never ends are no request) and is then told GOAWAY and
/// closed; a connection with no open stream for `keepalive_timeout` is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_held_to_the_header_and_keepalive_timeouts() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncWriteExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    // HEADERS on stream 1 with END_STREAM but not END_HEADERS: GET https /, block unfinished.
    const HEADERS_OPEN: &[u8] = &[0, 0, 3, 0x1, 0x1, 0, 0, 0, 1, 0x82, 0x87, 0x84];
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = write_self_signed_cert(dir.path());
    let web = HttpBackend::start("web");
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).tls(Tls::self_signed()))
        .metrics(mport)
        .limits(Limits::new().header_timeout("2s").keepalive_timeout("2s"))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, mport]);

    let cases = [
        ("no preface", Vec::new()),
        ("preface only", PREFACE.to_vec()),
        ("HEADERS without END_HEADERS", [PREFACE, SETTINGS, HEADERS_OPEN].concat()),
    ];
    for (case, sent) in cases {
        let started = Instant::now();
        let mut tls = h2_tls_connect(port, &cert).await;
        tls.write_all(&sent).await.unwrap();
        let (got, closed) = read_until_closed(&mut tls, Duration::from_secs(6)).await;
        let after = started.elapsed();
        assert!(closed, "{case}: still open after {after:?}");
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_secs(4),
            "{case}: closed after {after:?}"
        );
        assert!(
            h2_frame_types(&got).contains(&0x7),
            "{case}: GOAWAY before the close; frames {:?}",
            h2_frame_types(&got)
        );
        eprintln!("HTTP/2 {case}: closed {after:?} after connecting");
    }
    assert_eq!(web.hits(), 0, "the unfinished request never reached the backend");
    let maddr = format!("127.0.0.1:{mport}").parse().unwrap();
    assert_eq!(sample(&scrape(maddr).await, "wsgate_refusals_total", &[("cause", "header_timeout")]), Some(3.0));
    assert!(
        !gw.log().contains("H2 handshake error"),
        "Pingora's line per client without a preface is kept at debug level:\n{}",
        gw.log()
    );

    // Complete requests are served, also after a pause shorter than keepalive_timeout; the
    // connection, idle afterwards, is closed.
    let (mut client, connection) = h2::client::handshake(h2_tls_connect(port, &cert).await).await.unwrap();
    let connection = tokio::spawn(connection);
    for path in ["/first", "/idle-after"] {
        let request = http::Request::builder().uri(format!("https://localhost:{port}{path}")).body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("no answer").unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.data()).await.expect("body stalled") {
            chunk.unwrap();
        }
        if path == "/first" {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            client = client.ready().await.expect("still open after 1.2 s idle");
        }
    }
    let idle_from = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(6), connection).await;
    let idle = idle_from.elapsed();
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open after {idle:?}");
    assert!(idle >= Duration::from_millis(1500) && idle < Duration::from_secs(4), "closed after {idle:?} idle");
    eprintln!("HTTP/2 idle after one request: closed after {idle:?}");
    assert_eq!(web.last_request().unwrap().path, "/idle-after");
}
