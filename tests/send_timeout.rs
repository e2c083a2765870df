//! `limits.send_timeout`: a client that accepts no bytes of its answer for that long is
//! closed (HTTP/1.1: the connection; HTTP/2: the stream; a WebSocket session: the client's
//! connection, the backend getting Close 1001), which lets the backend connection go, and
//! is counted as `wsgate_refusals_total{cause="send_timeout"}`. A client
//! that reads slowly but steadily is not cut off.
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Larger than every socket buffer between wsgate and the client.
const BODY: usize = 64 << 20;

/// `listener` (metrics on `mport`) in front of `backend`, with a 1 s `send_timeout`.
fn config(listener: Listener, mport: u16, backend: SocketAddr) -> Config {
    Config::new()
        .listener(listener)
        .metrics(mport)
        .limits(Limits::new().send_timeout("1s"))
        .upstream("bulk", Upstream::one(backend))
        .route(Route::to("bulk"))
}

async fn send_timeouts(maddr: SocketAddr) -> f64 {
    sample(&scrape(maddr).await, "wsgate_refusals_total", &[("cause", "send_timeout")]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_stops_reading_is_closed_and_the_backend_connection_released() {
    let backend = BulkBackend::start(BODY);
    let (port, mport) = (free_port(), free_port());
    let gw = Wsgate::start_and_wait(&config(Listener::on(port), mport, backend.addr()), &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    let mut stalled = connect_from("127.0.0.1", addr).await;
    stalled.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(backend.wait_open(1, Duration::from_secs(5)).await, "the request never reached the backend\n{}", gw.logs());
    let asked = Instant::now();
    // Not a byte read: wsgate fills the socket buffers, then nothing moves.
    assert!(
        backend.wait_open(0, Duration::from_secs(10)).await,
        "the backend connection is still held after {:?}",
        asked.elapsed()
    );
    let released = asked.elapsed();
    let (got, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(closed, "the client connection is still open after {:?}", asked.elapsed());
    assert!(got.starts_with(b"HTTP/1.1 200"), "the answer had begun");
    assert!(got.len() < BODY, "closed before the end of the body ({} bytes)", got.len());
    assert!(released >= Duration::from_millis(900) && released < Duration::from_secs(6), "released after {released:?}");
    eprintln!(
        "HTTP/1.1 slow reader: backend connection released {released:?} after the request; the client got {} bytes",
        got.len()
    );
    assert_eq!(send_timeouts(maddr).await, 1.0);

    // A client reading 64 KiB every 10 ms never goes a second without progress: it is
    // served for as long as it reads (well past send_timeout), far from the end of the body.
    // (Progress shows when the kernel reports the socket writable again, once a third of
    // its send buffer is free: a reader much slower than that buffer per send_timeout is
    // a stalled one, as for nginx.)
    let mut slow = connect_from("127.0.0.1", addr).await;
    slow.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (started, mut total, mut buf) = (Instant::now(), 0usize, vec![0u8; 64 * 1024]);
    for _ in 0..1000 {
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
        let n =
            tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf)).await.expect("no byte for 2 s").unwrap();
        assert!(n > 0, "closed after {total} bytes and {:?} of steady reading", started.elapsed());
        total += n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "read for {:?}", started.elapsed());
    assert!(total < BODY);
    assert_eq!(send_timeouts(maddr).await, 1.0, "the steady reader was not counted");
    let log = gw.log();
    assert_eq!(log.matches("limit `send_timeout` reached").count(), 1, "logged once:\n{log}");
    assert!(!log.contains("Fail to proxy"), "Pingora's line per slow reader is kept at debug level:\n{log}");
}

/// Over HTTP/2 a client that stops reading stops granting flow-control credit, so the
/// stall shows on the stream, not on the socket: the stream is reset after send_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_whose_client_stops_reading_is_reset_and_the_backend_connection_released() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = write_self_signed_cert(dir.path());
    let backend = BulkBackend::start(BODY);
    let (port, mport) = (free_port(), free_port());
    let cfg = config(Listener::on(port).tls(Tls::self_signed()), mport, backend.addr());
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, mport]);
    let maddr: SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();

    let mut client = h2_client(port, &cert).await;
    let request = http::Request::builder().uri(format!("https://localhost:{port}/big")).body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("no answer").unwrap();
    assert_eq!(response.status(), 200);
    assert!(backend.wait_open(1, Duration::from_secs(5)).await);
    let answered = Instant::now();
    // The body is never read, so its flow-control window is never given back.
    let _unread = response.into_body();
    assert!(
        backend.wait_open(0, Duration::from_secs(10)).await,
        "the backend connection is still held after {:?}",
        answered.elapsed()
    );
    let released = answered.elapsed();
    assert!(released >= Duration::from_millis(900) && released < Duration::from_secs(6), "released after {released:?}");
    eprintln!("HTTP/2 slow reader: backend connection released {released:?} after the answer began");
    assert_eq!(send_timeouts(maddr).await, 1.0);
    assert!(!gw.log().contains("Fail to proxy"), "{}", gw.log());
}

/// A WebSocket client that stops reading while the backend sends: not idle (bytes keep
/// coming), so only send_timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_stops_reading_is_dropped_and_the_backend_gets_1001() {
    let backend = WsRecorder::start(ws_frame(0x2, &vec![1; BODY / 2], false));
    let (port, mport) = (free_port(), free_port());
    let gw = Wsgate::start_and_wait(&config(Listener::on(port), mport, backend.addr()), &[port, mport]);
    let (addr, maddr): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{port}").parse().unwrap(), format!("127.0.0.1:{mport}").parse().unwrap());

    let mut stalled = ws_upgraded(addr, "/ws/stalled", b"").await;
    let upgraded = Instant::now();
    let to_backend = backend.closed_session("/ws/stalled").await;
    let told = upgraded.elapsed();
    assert_eq!(to_backend.close_codes(), [Some(1001)], "the backend is told the session is going away");
    let (_, closed) = read_until_closed(&mut stalled, Duration::from_secs(60)).await;
    assert!(closed, "the stalled client's connection is closed");
    assert!(told >= Duration::from_millis(900) && told < Duration::from_secs(6), "backend told after {told:?}");
    eprintln!("WebSocket slow reader: backend got Close 1001 {told:?} after the 101");
    // Counted once the session has ended, just after the client's connection closed.
    wait_for(maddr, "wsgate_refusals_total", &[("cause", "send_timeout")], Some(1.0)).await;
    drop(gw);
}
