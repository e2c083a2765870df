//! Keepalive and dead-peer detection against the real binary: quiet sessions whose peers
//! answer Pings stay open and never see wsgate's Pongs; a side that answers nothing is
//! found dead within `ping_interval + ping_timeout`, its connection closed, the other side
//! given Close 1001.
mod common;

use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const INTERVAL_MS: u64 = 500;
const TIMEOUT_MS: u64 = 500;

/// wsgate on a new port with keepalive on every route; the config and that port.
fn config(backend: SocketAddr, metrics_port: u16, log: &std::path::Path) -> (Config, u16) {
    let port = free_port();
    let keepalive = WebSocket::new().keepalive(format!("{INTERVAL_MS}ms"), format!("{TIMEOUT_MS}ms"));
    let cfg = Config::new()
        .listen(port)
        .metrics(metrics_port)
        .access_log(AccessLog::path(log.to_str().unwrap()))
        .upstream("app", Upstream::one(backend))
        .route(Route::to("app").websocket(keepalive));
    (cfg, port)
}

fn metrics_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test]
async fn quiet_sessions_that_answer_pings_stay_open_and_never_see_wsgates_pongs() {
    let backend = WsBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = config(backend.addr(), free_port(), &dir.path().join("access.jsonl"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port]);
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{}/chat", port), &[]).await.unwrap();
    // Reading answers Pings (tungstenite does); nothing else is sent for 3 intervals.
    let until = tokio::time::Instant::now() + Duration::from_millis(3 * INTERVAL_MS + 200);
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(until, ws.next()).await {
        match next {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("only Pings while quiet, got {other:?}"),
        }
    }
    assert!(pings >= 2, "pinged about once per interval: {pings}");
    assert_eq!(ws_echo_text(&mut ws, "still here").await, "still here", "the session is open");
    assert_eq!(backend.pongs(), 0, "the backend never sees a Pong meant for wsgate");
    ws.close(None).await.unwrap();
    drop(gw);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dead_and_the_backend_gets_1001() {
    let backend = WsBackend::start("b");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.jsonl");
    let metrics = free_port();
    let (cfg, port) = config(backend.addr(), metrics, &log);
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, metrics]);
    let addr = format!("127.0.0.1:{}", port).parse().unwrap();
    let client = ws_upgraded(addr, "/chat", b"").await;
    let opened = Instant::now();
    wait_for(metrics_addr(metrics), "wsgate_websocket_sessions_active", &[], Some(1.0)).await;
    let deadline = opened + Duration::from_secs(5);
    while backend.close_codes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = opened.elapsed();
    assert_eq!(backend.close_codes(), [Some(1001)]);
    let expected = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    assert!(took + Duration::from_secs(1) >= expected && took <= expected + Duration::from_secs(1), "{took:?}");
    let labels = [("side", "client")];
    wait_for(metrics_addr(metrics), "wsgate_websocket_dead_peers_total", &labels, Some(1.0)).await;
    wait_for(metrics_addr(metrics), "wsgate_websocket_sessions_active", &[], Some(0.0)).await;
    let line = access_log_lines(&log, 1).pop().unwrap();
    assert_eq!(line["websocket"]["reason"], "dead_peer", "{line}");
    drop((client, gw));
}

#[tokio::test]
async fn a_backend_that_answers_nothing_is_dead_and_the_client_gets_1001() {
    let backend = WsRecorder::start(Vec::new()); // never answers a Ping
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let (cfg, port) = config(backend.addr(), metrics, &dir.path().join("access.jsonl"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port, metrics]);
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{}/chat", port), &[]).await.unwrap();
    let opened = Instant::now();
    let close = ws_close_code(&mut ws).await;
    let took = opened.elapsed();
    assert_eq!(close, Some(1001));
    let expected = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    assert!(took + Duration::from_secs(1) >= expected && took <= expected + Duration::from_secs(1), "{took:?}");
    let session = backend.ended_session("/chat").await;
    assert!(session.ended, "the backend's connection is closed");
    assert_eq!(session.frame_count(), 1, "the backend got wsgate's Ping and nothing more: {:?}", session.events());
    let labels = [("side", "backend")];
    wait_for(metrics_addr(metrics), "wsgate_websocket_dead_peers_total", &labels, Some(1.0)).await;
    drop(gw);
}

const BACKEND_ROLE: &str = "WSGATE_KEEPALIVE_BACKEND";

/// Run as a helper process (this test binary again, with `BACKEND_ROLE` set): an echo
/// backend that prints its port and lives until it is killed; a no-op as a test.
#[test]
fn backend_process() {
    if std::env::var_os(BACKEND_ROLE).is_none() {
        return;
    }
    let backend = WsBackend::start("stopped");
    println!("port {}", backend.port());
    std::thread::sleep(Duration::from_secs(120));
}

/// A backend in a process of its own, killed (by its PID) when dropped.
struct BackendProcess(std::process::Child, u16);

impl BackendProcess {
    fn start() -> BackendProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "backend_process", "--nocapture", "--test-threads=1"])
            .env(BACKEND_ROLE, "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The harness prints "port N" on the line that names the test.
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let port =
            stdout.lines().map_while(Result::ok).take(50).find_map(|l| l.rsplit_once("port ")?.1.trim().parse().ok());
        BackendProcess(child, port.expect("the backend process printed its port"))
    }
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(self.0.id() as libc::pid_t, signal) }, 0);
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_stopped_backend_process_is_dead_and_the_client_gets_1001() {
    let backend = BackendProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, port) = config(SocketAddr::from(([127, 0, 0, 1], backend.1)), free_port(), &dir.path().join("a.jsonl"));
    let gw = Wsgate::start_in_and_wait(dir, &cfg, &[port]);
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/chat"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "alive").await, "alive");
    backend.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let close = ws_close_code(&mut ws).await;
    let took = stopped.elapsed();
    assert_eq!(close, Some(1001));
    let expected = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    assert!(took + Duration::from_secs(1) >= expected && took <= expected + Duration::from_secs(1), "{took:?}");
    drop(gw);
}

/// A backend that answers the upgrade, then streams `messages` 64 KiB messages, each written
/// in 8 KiB pieces 5 ms apart, so that wsgate is inside a frame most of the time.
fn streaming_backend(messages: usize) -> RawBackend {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    RawBackend::start(move |mut s| async move {
        let mut buf = Vec::new();
        let Ok(Some(head)) = common::backends::read_head(&mut s, &mut buf).await else { return };
        let Some(key) = head.headers.iter().find(|(n, _)| n == "sec-websocket-key").map(|(_, v)| v.clone()) else {
            return; // a health check
        };
        let accept = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n", ws_accept(&key));
        let (mut rd, mut wr) = tokio::io::split(s);
        tokio::spawn(async move { while matches!(rd.read(&mut [0u8; 4096]).await, Ok(n) if n > 0) {} });
        if wr.write_all(accept.as_bytes()).await.is_err() {
            return;
        }
        for i in 0..messages {
            for piece in ws_frame(0x2, &vec![i as u8; 64 * 1024], false).chunks(8 * 1024) {
                if wr.write_all(piece).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        std::future::pending::<()>().await;
    })
}

/// The figure: 64 KiB messages streamed to a client that reads slowly, with
/// `ping_interval: 100ms`: wsgate's Pings go in between messages, and every message arrives
/// whole (tungstenite fails the connection on a frame cut by anything).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_to_a_slow_reader_never_split_the_64_kib_messages_it_is_sent() {
    const MESSAGES: usize = 30;
    let backend = streaming_backend(MESSAGES); // it never answers a Ping: ping_timeout is long
    let port = free_port();
    let keepalive = WebSocket::new().keepalive("100ms", "30s");
    let cfg = Config::new()
        .listen(port)
        .upstream("app", Upstream::one(backend.addr))
        .route(Route::to("app").websocket(keepalive));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/stream"), &[]).await.unwrap();
    let (mut got, mut pings) = (0, 0);
    while got < MESSAGES {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("the next message") {
            Some(Ok(Message::Binary(data))) => {
                assert!(data.len() == 64 * 1024 && data.iter().all(|b| *b == got as u8), "message {got} arrived whole");
                got += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("message {got}: {other:?}"),
        }
    }
    assert!(pings >= 5, "pinged about every 100 ms while 30 messages took 1.2 s to stream: {pings}");
    drop(gw);
}
