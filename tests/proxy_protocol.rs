//! The client behind an L4 balancer (PROXY protocol) and behind trusted L7 proxies
//! (`trusted_proxies`): the address they carry is the client's at the backend
//! (`X-Forwarded-For`, `X-Real-IP`), in the access log and under the per-address limits.
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 PROXY header for a TCP client `source` (IPv4 or IPv6) to `destination`.
fn v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut addresses = Vec::new();
    let family = match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            addresses.extend(s.ip().octets());
            addresses.extend(d.ip().octets());
            0x11
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            addresses.extend(s.ip().octets());
            addresses.extend(d.ip().octets());
            0x21
        }
        _ => panic!("one family"),
    };
    addresses.extend(source.port().to_be_bytes());
    addresses.extend(destination.port().to_be_bytes());
    let mut header = V2_SIGNATURE.to_vec();
    header.extend([0x21, family]);
    header.extend((addresses.len() as u16).to_be_bytes());
    header.extend(addresses);
    header
}

/// Connects, sends `prefix` and a request for `path`; the status, `None` when closed.
async fn proxied_request(addr: SocketAddr, prefix: &[u8], path: &str) -> (TcpStream, Option<u16>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let _ = s.write_all(&bytes).await;
    let status = read_raw_response(&mut s, RawOpts { linger: Duration::ZERO, ..RawOpts::default() }).await.status;
    (s, status)
}

/// Polls `gw`'s stdout (the access log) until it has every one of `wanted`.
async fn access_log_has(gw: &Wsgate, wanted: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    for _ in 0..250 {
        if wanted.iter().all(|w| gw.stdout().contains(w.as_str())) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stdout()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_and_v2_carry_the_client_to_headers_log_and_limits() {
    let web = RecordingBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).proxy_protocol())
        .metrics(mport)
        .limits(Limits::new().max_connections_per_ip(1))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let v1 = format!("PROXY TCP4 198.51.100.1 127.0.0.1 40001 {port}\r\n");
    let (_held1, status) = proxied_request(addr, v1.as_bytes(), "/v1").await;
    assert_eq!(status, Some(200), "{}", gw.logs());
    // The same TCP peer (127.0.0.1) carrying other clients: each has its own place.
    let v2_ipv4 = v2("198.51.100.2:40002".parse().unwrap(), addr);
    let (_held2, status) = proxied_request(addr, &v2_ipv4, "/v2-ipv4").await;
    assert_eq!(status, Some(200), "{}", gw.logs());
    let v2_ipv6 = v2("[2001:db8::7]:40003".parse().unwrap(), "[2001:db8::1]:443".parse().unwrap());
    let (_held3, status) = proxied_request(addr, &v2_ipv6, "/v2-ipv6").await;
    assert_eq!(status, Some(200), "{}", gw.logs());
    // A second connection of 198.51.100.1 while its first is open: over its limit of 1.
    let (_, status) = proxied_request(addr, v1.as_bytes(), "/v1-again").await;
    assert_eq!(status, None, "{}", gw.logs());

    for (path, client) in [("/v1", "198.51.100.1"), ("/v2-ipv4", "198.51.100.2"), ("/v2-ipv6", "2001:db8::7")] {
        let got = web.requests_to(path);
        assert_eq!(got.len(), 1, "{:?}", web.paths());
        assert_eq!(got[0].header("x-real-ip"), Some(client), "{:?}", got[0].headers);
        assert_eq!(got[0].header("x-forwarded-for"), Some(client), "{:?}", got[0].headers);
    }
    assert!(web.requests_to("/v1-again").is_empty());
    let wanted: Vec<String> =
        ["198.51.100.1", "198.51.100.2", "2001:db8::7"].iter().map(|c| format!("\"client\":\"{c}\"")).collect();
    let log = access_log_has(&gw, &wanted).await;
    assert!(wanted.iter().all(|w| log.contains(w.as_str())), "{log}");
    assert!(!log.contains("\"client\":\"127.0.0.1\""), "{log}");
    let limited = sample(
        &scrape(SocketAddr::from(([127, 0, 0, 1], mport))).await,
        "wsgate_refusals_total",
        &[("cause", "connections_per_ip")],
    );
    assert_eq!(limited, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_valid_proxy_header_is_closed_unanswered() {
    let web = RecordingBackend::start();
    let (port, mport) = (free_port(), free_port());
    let cfg = Config::new()
        .listener(Listener::on(port).proxy_protocol())
        .metrics(mport)
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let refused = || async { sample(&scrape(maddr).await, "wsgate_refusals_total", &[("cause", "proxy_protocol")]) };
    // start_and_wait's probe connected and closed without a byte, as a balancer's TCP health
    // check does: not a refusal.
    let before = refused().await.unwrap_or(0.0);
    assert_eq!(before, 0.0);

    let mut oversized = V2_SIGNATURE.to_vec();
    oversized.extend([0x21, 0x11, 0x10, 0x00]); // 4 KiB of addresses and TLVs declared
    let mut bad_version = V2_SIGNATURE.to_vec();
    bad_version.extend([0x31, 0x11, 0x00, 0x0c]);
    let cases: [(&str, Vec<u8>); 5] = [
        ("plain HTTP", Vec::new()),
        ("v1 without ports", b"PROXY TCP4 198.51.100.1 127.0.0.1\r\n".to_vec()),
        ("v1 bad address", b"PROXY TCP4 198.51.100.999 127.0.0.1 1 2\r\n".to_vec()),
        ("v2 version 3", bad_version),
        ("v2 oversized", oversized),
    ];
    for (what, prefix) in &cases {
        let started = Instant::now();
        let (mut s, status) = proxied_request(addr, prefix, "/never").await;
        assert_eq!(status, None, "{what}: answered\n{}", gw.logs());
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok() && started.elapsed() < Duration::from_secs(3), "{what}: not closed at once");
    }
    assert!(web.requests_to("/never").is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while refused().await.unwrap_or(0.0) < before + cases.len() as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused().await, Some(before + cases.len() as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_forwarded_address() {
    let web = RecordingBackend::start();
    let ws = WsBackend::start("ws");
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .trusted_proxies(&["127.0.0.1", "10.0.0.0/8"])
        .upstream("web", Upstream::one(web.addr()))
        .upstream("ws", Upstream::one(ws.addr()))
        .route(Route::to("ws").path_prefix("/ws"))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let forwarded = "X-Forwarded-For: 198.51.100.9, 203.0.113.5, 10.1.2.3\r\n";
    let mut trusted = connect_from("127.0.0.1", addr).await;
    let head = format!("GET /via-trusted HTTP/1.1\r\nHost: x\r\n{forwarded}\r\n");
    trusted.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_raw_response(&mut trusted, RawOpts::default()).await.status, Some(200));
    let mut untrusted = connect_from("127.0.0.2", addr).await;
    let head = format!("GET /via-untrusted HTTP/1.1\r\nHost: x\r\n{forwarded}\r\n");
    untrusted.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_raw_response(&mut untrusted, RawOpts::default()).await.status, Some(200));

    let got = &web.requests_to("/via-trusted")[0];
    assert_eq!(got.header("x-real-ip"), Some("203.0.113.5"), "{:?}", got.headers);
    assert_eq!(got.header("x-forwarded-for"), Some("198.51.100.9, 203.0.113.5, 10.1.2.3, 127.0.0.1"));
    let got = &web.requests_to("/via-untrusted")[0];
    assert_eq!(got.header("x-real-ip"), Some("127.0.0.2"), "{:?}", got.headers);
    assert_eq!(got.header("x-forwarded-for"), Some("198.51.100.9, 203.0.113.5, 10.1.2.3, 127.0.0.2"));

    // The WebSocket path reads the same client.
    let url = format!("ws://127.0.0.1:{port}/ws");
    let (mut client, _) = ws_connect(&url, &[("X-Forwarded-For", "203.0.113.77")]).await.expect("upgrade");
    assert_eq!(ws_echo_text(&mut client, "hi").await, "hi");
    let headers = ws.last_headers();
    assert_eq!(header_value(&headers, "x-real-ip"), Some("203.0.113.77"), "{headers:?}");
    client.close(None).await.unwrap(); // a session's log line is written when it ends
    let wanted = ["203.0.113.5", "127.0.0.2", "203.0.113.77"].map(|c| format!("\"client\":\"{c}\""));
    let log = access_log_has(&gw, &wanted).await;
    assert!(wanted.iter().all(|w| log.contains(w.as_str())), "{log}");
}

/// On a TLS listener the PROXY header comes before the ClientHello, in the clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_header_precedes_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_self_signed_cert(dir.path());
    let web = RecordingBackend::start();
    let port = free_port();
    let cfg = Config::new()
        .listener(Listener::on(port).proxy_protocol().tls(Tls::new(&cert, &key)))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&v2("198.51.100.44:40044".parse().unwrap(), addr)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&cert));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap_or_else(|e| panic!("TLS: {e}\n{}", gw.logs()));
    let (status, _, _) =
        request_on(tls, "GET /over-tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "{}", gw.logs());
    let got = &web.requests_to("/over-tls")[0];
    assert_eq!(got.header("x-real-ip"), Some("198.51.100.44"), "{:?}", got.headers);
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
}
