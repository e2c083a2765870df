//! The connection gate's deadlines, driven directly: a `GatedStream` over an in-memory
//! stream (`tokio::io::duplex`, or a `tokio_test` mock), in paused time, so seconds of
//! deadline take no time at all.

use super::head::HeadDeadline;
use super::limits::Limits;
use super::stream::GatedStream;
use crate::telemetry::metrics::Metrics;
use pingora::protocols::Stream;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::{sleep, Instant};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n";

/// A gated connection as `GatedApp::process_new` makes one for a plain listener.
struct Gate {
    /// The proxy's side.
    stream: Stream,
    /// The client's side.
    client: DuplexStream,
    metrics: Arc<Metrics>,
    /// Connections whose first head is still on its way (what a draining process waits for).
    first_heads: Arc<AtomicUsize>,
}

impl Gate {
    /// `first_head`: with the first head's deadline (from now); `send_timeout` as the gate
    /// sets it for HTTP/1; `buffer`: how many bytes the pipe holds each way.
    fn new(first_head: bool, send_timeout: Option<Duration>, buffer: usize) -> Gate {
        let (client, server) = tokio::io::duplex(buffer);
        let metrics = Arc::new(Metrics::new());
        let first_heads = Arc::new(AtomicUsize::new(0));
        let head = first_head.then(|| HeadDeadline::first(HEADER_TIMEOUT, first_heads.clone()));
        let limits = Arc::new(Limits::new(metrics.clone()));
        let stream = GatedStream::new(Box::new(server), head, send_timeout, None, None, limits);
        Gate { stream: Box::new(stream), client, metrics, first_heads }
    }

    fn refusals(&self, cause: &str) -> u64 {
        self.metrics.refusals.with_label_values(&[cause]).get()
    }
}

/// Reads from the gated stream until it fails or ends: the bytes read and how it ended.
async fn read_all(stream: &mut Stream) -> (Vec<u8>, std::io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

/// What the client received once the proxy's side is gone.
async fn received(mut client: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    got
}

#[tokio::test(start_paused = true)]
async fn a_head_trickling_in_past_header_timeout_is_cut_at_header_timeout_with_408() {
    let Gate { mut stream, client, metrics, first_heads } = Gate::new(true, Some(SEND_TIMEOUT), 4096);
    let (client_rx, mut client_tx) = tokio::io::split(client);
    assert_eq!(first_heads.load(Ordering::Acquire), 1);
    // A byte every 100 ms: every read is quick, the head as a whole takes 2.6 s.
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let trickle = tokio::spawn(async move {
        for byte in head {
            if client_tx.write_all(&[*byte]).await.is_err() {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let (got, end) = read_all(&mut stream).await;
    let elapsed = started.elapsed();

    let err = end.expect_err("the read fails");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        elapsed >= HEADER_TIMEOUT && elapsed < HEADER_TIMEOUT + Duration::from_millis(100),
        "cut after {elapsed:?}"
    );
    assert!(got.len() < head.len() && head.starts_with(&got), "only part of the head got through: {got:?}");
    assert_eq!(metrics.refusals.with_label_values(&["header_timeout"]).get(), 1);
    assert_eq!(first_heads.load(Ordering::Acquire), 0, "no longer waited for by a drain");
    drop(stream);
    trickle.await.unwrap();
    let answer = received(client_rx).await;
    assert!(answer.starts_with(TIMEOUT_408), "{}", String::from_utf8_lossy(&answer));
    assert!(answer.ends_with(b"\r\n\r\nrequest header timeout\r\n"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test(start_paused = true)]
async fn a_client_sending_nothing_is_cut_at_header_timeout() {
    let mut gate = Gate::new(true, Some(SEND_TIMEOUT), 4096);
    let started = Instant::now();
    let (got, end) = read_all(&mut gate.stream).await;
    assert_eq!(end.expect_err("the read fails").kind(), ErrorKind::TimedOut);
    assert!(got.is_empty());
    // The deadline is a timer: a reader parked on a silent client is woken by it.
    assert_eq!(started.elapsed(), HEADER_TIMEOUT);
    assert_eq!(gate.refusals("header_timeout"), 1);
    drop(gate.stream);
    assert!(received(gate.client).await.starts_with(TIMEOUT_408));
}

/// Over a `tokio_test` mock: its reads arrive on schedule (and it panics when dropped with any
/// left unread); a cut would fail a read.
#[tokio::test(start_paused = true)]
async fn a_head_complete_in_time_passes_and_its_deadline_ends_with_it() {
    let mock = tokio_test::io::Builder::new()
        .read(b"GET / HTTP/1.1\r\n")
        .wait(Duration::from_millis(1500))
        .read(b"Host: a\r\n\r\n")
        .wait(Duration::from_secs(5))
        .read(b"a body long after the head's deadline")
        .build();
    let metrics = Arc::new(Metrics::new());
    let first_heads = Arc::new(AtomicUsize::new(0));
    let head = HeadDeadline::first(HEADER_TIMEOUT, first_heads.clone());
    let gated = GatedStream::new(Box::new(mock), Some(head), None, None, None, Arc::new(Limits::new(metrics.clone())));
    let mut stream: Stream = Box::new(gated);

    assert_eq!(first_heads.load(Ordering::Acquire), 1);
    let mut head = vec![0u8; 27];
    stream.read_exact(&mut head).await.expect("the head is read");
    assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(first_heads.load(Ordering::Acquire), 0, "a complete head is no longer pending");
    let started = Instant::now();
    let (rest, end) = read_all(&mut stream).await;
    end.expect("no deadline after the head");
    assert_eq!(rest, b"a body long after the head's deadline");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(metrics.refusals.with_label_values(&["header_timeout"]).get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_later_head_gets_header_timeout_from_its_first_byte() {
    let Gate { mut stream, mut client, metrics, .. } = Gate::new(false, Some(SEND_TIMEOUT), 4096);
    let mut buf = [0u8; 64];

    // A keep-alive connection idle for longer than header_timeout is not cut: the clock
    // starts with the head's first byte.
    GatedStream::expect_next_head(&stream, HEADER_TIMEOUT);
    sleep(HEADER_TIMEOUT * 5).await;
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert_eq!(stream.read(&mut buf).await.unwrap(), 16);
    sleep(HEADER_TIMEOUT - Duration::from_millis(1)).await;
    client.write_all(b"Host: a\r\n\r\n").await.unwrap();
    assert_eq!(stream.read(&mut buf).await.unwrap(), 11, "complete 1 ms before its deadline");

    // The next one: its first byte, then the rest too late.
    GatedStream::expect_next_head(&stream, HEADER_TIMEOUT);
    client.write_all(b"G").await.unwrap();
    assert_eq!(stream.read(&mut buf).await.unwrap(), 1);
    sleep(HEADER_TIMEOUT).await;
    client.write_all(b"ET / HTTP/1.1\r\n").await.unwrap();
    let err = stream.read(&mut buf).await.expect_err("bytes after the deadline fail the read");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(metrics.refusals.with_label_values(&["header_timeout"]).get(), 1);
    drop(stream);
    assert!(received(client).await.starts_with(TIMEOUT_408));
}

#[tokio::test(start_paused = true)]
async fn an_http2_first_request_not_complete_in_time_gets_a_goaway() {
    let Gate { stream, mut client, .. } = Gate::new(true, None, 4096);
    // `expect_http2` is on the concrete type (the gate calls it before boxing).
    let mut gated = *stream.into_any().downcast::<GatedStream>().expect("a GatedStream");
    gated.expect_http2();
    // The preface and a SETTINGS frame: no request yet.
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    client.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut stream: Stream = Box::new(gated);
    let started = Instant::now();
    let (got, end) = read_all(&mut stream).await;
    assert_eq!(got.len(), 24 + 9);
    assert_eq!(end.expect_err("the read fails").kind(), ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), HEADER_TIMEOUT);
    drop(stream);
    // GOAWAY, last stream 0, NO_ERROR.
    assert_eq!(received(client).await, [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_accepts_no_byte_is_cut_at_send_timeout() {
    let mut gate = Gate::new(false, Some(SEND_TIMEOUT), 64);
    let started = Instant::now();
    let err = gate.stream.write_all(&[b'x'; 1024]).await.expect_err("the write fails");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // The pipe took 64 bytes at once; the clock runs from the first write that took none.
    assert_eq!(started.elapsed(), SEND_TIMEOUT);
    assert_eq!(gate.refusals("send_timeout"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_that_keeps_taking_bytes_is_not_cut() {
    let Gate { mut stream, mut client, metrics, .. } = Gate::new(false, Some(SEND_TIMEOUT), 64);
    // 64 bytes every 2 s: no stall reaches the 3 s send timeout, the whole answer takes 30 s.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            sleep(Duration::from_secs(2)).await;
            match client.read(&mut buf).await.unwrap() {
                0 => return got,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    let started = Instant::now();
    stream.write_all(&[b'x'; 1024]).await.expect("the write goes through");
    assert!(started.elapsed() > SEND_TIMEOUT * 5, "{:?}", started.elapsed());
    drop(stream);
    assert_eq!(reader.await.unwrap().len(), 1024);
    assert_eq!(metrics.refusals.with_label_values(&["send_timeout"]).get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_websocket_tunnel_takes_the_send_timeout_over() {
    let Gate { mut stream, client: _client, metrics, .. } = Gate::new(false, Some(SEND_TIMEOUT), 64);
    GatedStream::leave_send_timeout_to_the_tunnel(&stream);
    let write = tokio::time::timeout(SEND_TIMEOUT * 10, stream.write_all(&[b'x'; 1024])).await;
    assert!(write.is_err(), "still pending: the gate no longer cuts it");
    assert_eq!(metrics.refusals.with_label_values(&["send_timeout"]).get(), 0);

    // `before_next_request` puts it back (renew_send_timeout) for the next request.
    GatedStream::renew_send_timeout(&stream, SEND_TIMEOUT);
    let started = Instant::now();
    let err = stream.write_all(&[b'x'; 1024]).await.expect_err("cut again");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), SEND_TIMEOUT);
}

/// The accept filter's fairness: after it, the task's next budget-aware poll yields, and
/// the filter itself never awaits (an await would be where an accepted socket is dropped).
#[tokio::test]
async fn spend_budget_makes_the_next_accept_yield_without_awaiting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    assert!(tokio::task::coop::has_budget_remaining());
    super::spend_budget();
    assert!(!tokio::task::coop::has_budget_remaining());
    // A connection is waiting, but the spent budget makes the first poll of accept Pending.
    let mut accept = std::pin::pin!(listener.accept());
    assert!(futures_util::poll!(accept.as_mut()).is_pending());
    tokio::task::yield_now().await;
    assert!(futures_util::poll!(accept.as_mut()).is_ready());
}
