//! Self-tests of the test harness (backends + client helpers) WITHOUT a running wsgate;
//! the config builder is checked against `wsgate -t`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn refuses(addr: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

/// A port free_port returns can be bound. Between its check and this bind the port is
/// briefly unowned: a socket on it still closing (seen once in CI: AddrInUse right after
/// free_port's own bind succeeded) gets up to 2 s, as the harness's backends give theirs.
#[test]
fn free_port_is_bindable() {
    let p = free_port();
    assert_ne!(p, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", p)) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "free port {p} cannot be bound: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn http_backend_reports_what_it_received() {
    let b = HttpBackend::start("b1");
    let (status, headers, body) = http_request(
        b.addr(),
        "GET /foo/bar?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Custom: Some Value\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-backend"), Some("b1"));
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "GET /foo/bar?x=1");
    assert!(lines.contains(&"host: example.test"), "{body}");
    assert!(lines.contains(&"x-custom: Some Value"), "{body}");
    assert_eq!(b.hits(), 1);
    let last = b.last_request().unwrap();
    assert_eq!(last.header("X-Custom"), Some("Some Value"));

    let (status, _, body) = get(b.addr(), "h", "/again").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /again\n"));
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn http_backend_keep_alive_and_bodies() {
    let b = HttpBackend::start("ka");
    let mut s = TcpStream::connect(b.addr()).await.unwrap();
    // Content-Length body, connection kept alive.
    let (st, h, body) = request_on(&mut s, "POST /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "connection"), None);
    assert!(body.starts_with("POST /cl\n"));
    assert!(body.ends_with("\n\nhello"), "{body:?}");
    // Chunked body on the same connection.
    let (st, _, body) = request_on(
        &mut s,
        "PUT /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(st, 200);
    assert!(body.ends_with("\n\nabcde"), "{body:?}");
    // Third request closes.
    let (st, h, _) = request_on(&mut s, "GET /last HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn http_backend_special_paths() {
    let b = HttpBackend::start("sp");
    let (st, h, body) = get(b.addr(), "h", "/healthz").await;
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert_eq!(header(&h, "x-backend"), Some("sp"));
    assert_eq!((b.hits(), b.health_hits()), (0, 1));

    let (st, h, body) = get(b.addr(), "h", "/status/503").await;
    assert_eq!(st, 503);
    assert_eq!(header(&h, "x-backend"), Some("sp"));
    assert!(body.starts_with("GET /status/503\n"));
    let (st, _, _) = get(b.addr(), "h", "/status/404?q=1").await;
    assert_eq!(st, 404);

    let t0 = Instant::now();
    let (st, _, _) = get(b.addr(), "h", "/slow/300").await;
    assert_eq!(st, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert_eq!(b.hits(), 3);
}

#[tokio::test]
async fn ws_backend_echoes_and_selects_subprotocol() {
    let b = WsBackend::start("ws1");
    let (mut ws, resp) =
        ws_connect(&b.url("/chat?room=1"), &[("Sec-WebSocket-Protocol", "chat.v2, chat.v1"), ("X-Trace", "abc")])
            .await
            .expect("connect");
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers().get("sec-websocket-protocol").unwrap(), "chat.v2");

    assert_eq!(ws_echo_text(&mut ws, "hello").await, "hello");
    let bin: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    ws.send(Message::binary(bin.clone())).await.unwrap();
    match ws_recv(&mut ws).await {
        Some(Ok(Message::Binary(got))) => assert_eq!(got, bin),
        other => panic!("expected binary echo, got {other:?}"),
    }

    let hs = b.last_headers();
    assert_eq!(header(&hs, "x-trace"), Some("abc"));
    assert_eq!(header(&hs, "upgrade").map(|v| v.to_ascii_lowercase()), Some("websocket".into()));
    assert_eq!(b.last_path().as_deref(), Some("/chat?room=1"));
    assert_eq!(b.sessions(), 1);
    assert_eq!(b.messages(), 2);

    // Close handshake: the server answers our Close, then the stream ends.
    ws.close(None).await.unwrap();
    let mut got_close = false;
    for _ in 0..10 {
        match ws_recv(&mut ws).await {
            Some(Ok(Message::Close(_))) => got_close = true,
            Some(Ok(m)) => panic!("unexpected {m:?}"),
            Some(Err(_)) | None => break,
        }
    }
    assert!(got_close, "server did not answer Close");
}

#[tokio::test]
async fn ws_backend_without_subprotocol_sends_none() {
    let b = WsBackend::start("ws-np");
    let (mut ws, resp) = ws_connect(&b.url("/"), &[]).await.unwrap();
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
    assert_eq!(ws_echo_text(&mut ws, "x").await, "x");
}

#[tokio::test]
async fn ws_backend_answers_plain_http_healthz() {
    let b = WsBackend::start("wsh");
    let (st, h, body) = get(b.addr(), "h", "/healthz").await;
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert_eq!(header(&h, "x-backend"), Some("wsh"));
    assert_eq!((b.health_hits(), b.sessions()), (1, 0));
    // Keep-alive plain request followed by an upgrade is not needed; a fresh upgrade works.
    let (mut ws, _) = ws_connect(&b.url("/ws"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "after-health").await, "after-health");
}

#[tokio::test]
async fn raw_echo_backend_echoes_bulk() {
    let b = WsBackend::start_raw_echo("raw");
    let (ws, _) = ws_connect(&b.url("/bulk"), &[]).await.unwrap();
    let (mut tx, mut rx) = ws.split();
    const N: usize = 200;
    let payload = vec![7u8; 64 * 1024];
    let p2 = payload.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..N {
            tx.send(Message::binary(p2.clone())).await.unwrap();
        }
        tx
    });
    for i in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .unwrap_or_else(|_| panic!("timeout at message {i}"));
        match m {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), payload.len()),
            other => panic!("message {i}: {other:?}"),
        }
    }
    let _tx = writer.await.unwrap();
    assert_eq!(b.messages(), N);
}

#[tokio::test]
async fn stop_refuses_and_closes_open_connections() {
    let mut h = HttpBackend::start("h");
    let mut w = WsBackend::start("w");
    let (ha, wa) = (h.addr(), w.addr());

    // An idle keep-alive HTTP connection and an open WebSocket session.
    let mut idle = TcpStream::connect(ha).await.unwrap();
    let (st, _, _) = request_on(&mut idle, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert_eq!(st, 200);
    let (mut ws, _) = ws_connect(&w.url("/"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "before").await, "before");

    h.stop();
    w.stop();
    assert!(refuses(ha), "http backend port still accepts");
    assert!(refuses(wa), "ws backend port still accepts");

    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("idle conn not closed");
    assert!(matches!(n, Ok(0) | Err(_)), "idle connection still open: {n:?}");
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("ws not closed") {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => {}
        other => panic!("ws still open: {other:?}"),
    }

    // Restart on the same ports.
    let h2 = HttpBackend::start_on("h2", ha.port());
    let (st, hd, _) = get(h2.addr(), "h", "/").await;
    assert_eq!(st, 200);
    assert_eq!(header(&hd, "x-backend"), Some("h2"));
    let w2 = WsBackend::start_on("w2", wa.port());
    let (mut ws2, _) = ws_connect(&w2.url("/"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws2, "again").await, "again");
    drop(h2);
    assert!(refuses(ha), "port still accepts after drop");
}

/// Self-signed cert + rustls client helpers, against a tiny in-test TLS server.
#[tokio::test]
async fn tls_helpers_trust_self_signed_cert() {
    use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&cert).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let acceptor2 = acceptor.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        // 1st connection: wss echo of one message.
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
        if let Some(Ok(m)) = ws.next().await {
            ws.send(m).await.unwrap();
        }
        // 2nd connection: one HTTPS response.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure").await.unwrap();
        tls.shutdown().await.ok();
    });

    let (mut ws, _) = wss_connect(&format!("wss://localhost:{}/x", addr.port()), &[], &cert).await.expect("wss");
    assert_eq!(ws_echo_text(&mut ws, "tls").await, "tls");
    drop(ws);
    let (st, _, body) = https_request(addr, "127.0.0.1", &cert, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!((st, body.as_str()), (200, "secure"));
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();

    // A client trusting a different self-signed cert must fail verification.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = write_self_signed_cert(other.path());
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a2 = l2.local_addr().unwrap();
    let bad_server = tokio::spawn(async move {
        let (tcp, _) = l2.accept().await.unwrap();
        let _ = acceptor2.accept(tcp).await; // fails: client aborts the handshake
    });
    let Err(err) = tls_connect(a2, "localhost", &other_cert).await else {
        panic!("untrusted cert must be rejected");
    };
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    tokio::time::timeout(Duration::from_secs(10), bad_server).await.unwrap().unwrap();
}

#[test]
fn the_config_builder_leaves_out_every_key_not_set() {
    let cfg = Config::proxy(8080, "web", "127.0.0.1:3001");
    assert_eq!(
        cfg.to_yaml(),
        "listeners:\n- address: 127.0.0.1:8080\nupstreams:\n  web:\n    backends:\n    - 127.0.0.1:3001\nroutes:\n- upstream: web\n"
    );
    let (ok, out) = check_config(&cfg);
    assert!(ok, "{out}\n{}", cfg.to_yaml());
}

/// Every builder method, at once, makes a config `wsgate -t` accepts: the builder's keys are
/// wsgate's keys.
#[test]
fn every_key_the_config_builder_writes_is_one_wsgate_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    write_cert(dir.path(), "b-", "b.test", "DNS:b.test");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.2 app.test\n").unwrap();
    let cfg = Config::new()
        .server(
            Server::new()
                .threads(2)
                .pid_file(dir.path().join("wsgate.pid"))
                .upgrade_sock(dir.path().join("upgrade.sock"))
                .error_log(dir.path().join("error.log"))
                .set("grace_period_seconds", 10),
        )
        .listen(8080)
        .listener(Listener::on(8443).tls(Tls::new(&cert, &key).certificate("b-cert.pem", "b-key.pem").http2(true)))
        .metrics(9090)
        .access_log(AccessLog::path("access.jsonl").include_query())
        .drain_window("5s")
        .limits(
            Limits::new()
                .max_concurrent_per_ip(10)
                .requests_per_second_per_ip(100)
                .max_websocket_sessions(1000)
                .max_request_header_bytes(16384)
                .max_request_headers(50)
                .max_connections(5000)
                .max_connections_per_ip(100)
                .connections_per_second_per_ip(50)
                .ipv6_prefix(64)
                .header_timeout("10s")
                .keepalive_timeout("60s")
                .send_timeout("30s"),
        )
        .upstream(
            "web",
            Upstream::new([Backend::from("127.0.0.1:3001"), Backend::weighted("127.0.0.1:3002", 2)])
                .balance("round_robin")
                .connect_timeout("1s")
                .read_timeout("30s")
                .retries(1)
                .health_check(
                    HealthCheck::new()
                        .kind("http")
                        .path("/healthz")
                        .interval("5s")
                        .timeout("1s")
                        .healthy_after(2)
                        .unhealthy_after(3),
                ),
        )
        .upstream("sticky", Upstream::new(["127.0.0.1:3003", "127.0.0.1:3004"]).consistent_hash("cookie:sid"))
        .upstream("dns", Upstream::one("app.test:3005").dns("10s", &hosts))
        .upstream("tls", Upstream::one("127.0.0.1:3006").tls(UpstreamTls::new().sni("localhost").ca_file(&cert)))
        .upstream("insecure", Upstream::one("127.0.0.1:3007").tls(UpstreamTls::new().verify(false)))
        .upstream(
            "chat",
            Upstream::new(["127.0.0.1:3008", "127.0.0.1:3009"])
                .balance("least_sessions")
                .max_sessions_per_backend(100)
                .queue(10, "2s")
                .on_backend_down("keep")
                .rebalance(1.25, 20)
                .passive_health(3, "30s")
                .slow_start("30s"),
        )
        .route(
            Route::to("web")
                .name("site")
                .host("*.example.com")
                .path_prefix("/app")
                .host_header("backend")
                .set_header("X-Served-By", "wsgate")
                .remove_header("X-Debug"),
        )
        .route(
            Route::to("sticky").path_prefix("/ws").websocket(
                WebSocket::new()
                    .enabled(true)
                    .idle_timeout("5m")
                    .allowed_origins(["https://example.com"])
                    .max_message_bytes(1 << 20)
                    .max_sessions(100)
                    .max_lifetime("24h")
                    .keepalive("30s", "10s")
                    .client_messages_per_second(50.0, 200.0)
                    .client_bytes_per_second("1MiB", "4MiB")
                    .on_rate_exceeded("close"),
            ),
        )
        .route(Route::to("dns").path_prefix("/dns"))
        .route(Route::to("tls").path_prefix("/tls"))
        .route(Route::to("insecure").path_prefix("/insecure"));
    let (ok, out) = check_config_in(dir.path(), "wsgate.yaml", &cfg);
    assert!(ok, "{out}\n{}", cfg.to_yaml());
}
