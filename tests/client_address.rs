//! The client's address: an IPv4 client reaching a dual-stack (IPv6) listener arrives as an
//! IPv4-mapped address (`::ffff:a.b.c.d`) and is that IPv4 client everywhere: in
//! `X-Forwarded-For` and `X-Real-IP`, in the access log and under the per-address limits.
//! (Keying IPv6 clients on their /64 is unit-tested in `src/listener/limits.rs`: loopback has one
//! IPv6 address.)
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive request on `s`; the status, or `None` if the connection was closed.
async fn request(s: &mut TcpStream, path: &str) -> Option<u16> {
    let _ =
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n").as_bytes()).await;
    read_raw_response(s, RawOpts { linger: Duration::ZERO, ..RawOpts::default() }).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_mapped_client_is_its_ipv4_address_everywhere() {
    let web = RecordingBackend::start();
    let port = free_port();
    // An IPv6 socket bound to a mapped loopback address: IPv4 clients, loopback only, and
    // every peer address reported as `::ffff:127.0.0.x`, as on a `[::]` listener.
    let cfg = Config::new()
        .listener(Listener::new(format!("[::ffff:127.0.0.1]:{port}")))
        .limits(Limits::new().max_connections_per_ip(1))
        .upstream("web", Upstream::one(web.addr()))
        .route(Route::to("web"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // Until the probe connection of `start_and_wait` is closed on wsgate's side too, it
    // holds 127.0.0.1's one place: poll.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut first = None;
    for _ in 0..100 {
        let mut s = connect_from("127.0.0.1", addr).await;
        if request(&mut s, "/from-1").await == Some(200) {
            first = Some(s);
            break;
        }
        assert!(Instant::now() < deadline, "127.0.0.1 never got its connection\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _first = first.unwrap_or_else(|| panic!("127.0.0.1 never got its connection\n{}", gw.logs()));
    // 127.0.0.2 is another client, though both are in `::/64` as mapped addresses.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(request(&mut other, "/from-2").await, Some(200), "{}", gw.logs());
    // A second connection of 127.0.0.1 is over its limit of 1: closed unanswered.
    let mut second = connect_from("127.0.0.1", addr).await;
    assert_eq!(request(&mut second, "/from-1-again").await, None, "{}", gw.logs());
    let mut rest = Vec::new();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut rest)).await.is_ok(),
        "closed at accept"
    );

    for (path, client) in [("/from-1", "127.0.0.1"), ("/from-2", "127.0.0.2")] {
        let got = web.requests_to(path);
        assert_eq!(got.len(), 1, "{:?}", web.paths());
        assert_eq!(got[0].header("x-real-ip"), Some(client), "{:?}", got[0].headers);
        assert_eq!(got[0].header("x-forwarded-for"), Some(format!("192.0.2.1, {client}").as_str()));
    }
    assert!(web.requests_to("/from-1-again").is_empty());

    // The access log names the same clients (polled: a line is written when its request ends).
    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = ["\"client\":\"127.0.0.1\"", "\"client\":\"127.0.0.2\""];
    for _ in 0..250 {
        if wanted.iter().all(|w| gw.stdout().contains(w)) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = gw.stdout();
    assert!(wanted.iter().all(|w| log.contains(w)), "{log}");
    assert!(!log.contains("::ffff:"), "{log}");
}
