//! Zero-downtime upgrades (`wsgate -u` + SIGQUIT to the old process) and the WebSocket-aware
//! drain: open sessions keep working, then get Close 1001 spread over the drain window; the
//! old process exits as soon as its last session is gone; HTTP traffic never fails; an
//! upgrade onto a broken config changes nothing. Also SIGTERM (same drain) and SIGINT (fast).
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const WINDOW_SECS: u64 = 3;

fn config(dir: &Path, port: u16, ws: SocketAddr, http: SocketAddr) -> Config {
    config_routing(dir, port, ws, http, "web")
}

/// Like `config`, with the catch-all route (`routes[1]`) to the pool `web_route`.
fn config_routing(dir: &Path, port: u16, ws: SocketAddr, http: SocketAddr, web_route: &str) -> Config {
    Config::new()
        .server(Server::new().pid_file(dir.join("wsgate.pid")).upgrade_sock(dir.join("upgrade.sock")))
        .drain_window(format!("{WINDOW_SECS}s"))
        .listen(port)
        .upstream("chat", Upstream::one(ws))
        .upstream("web", Upstream::one(http))
        .route(Route::to("chat").path_prefix("/ws"))
        .route(Route::to(web_route))
}

/// A wsgate on a fresh port, with its config and upgrade socket in a fresh directory, in
/// front of `ws` and `http`; returned once it listens.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
    config_path: std::path::PathBuf,
    gateway: Wsgate,
}

fn start_gateway(ws: &WsBackend, http: &HttpBackend) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("wsgate.yaml");
    config(dir.path(), port, ws.addr(), http.addr()).write_to(&config_path);
    let gateway = Wsgate::start_with(&config_path, &[]);
    gateway.wait_port(port);
    Setup { dir, port, config_path, gateway }
}

/// Starts a new wsgate with `-u` on `config`, waits until it listens for the hand-over,
/// then sends SIGQUIT to `old`. Returns the new process.
fn upgrade(old: &Wsgate, config: &Path, sock: &Path) -> Wsgate {
    let _ = std::fs::remove_file(sock);
    let new = Wsgate::start_with(config, &["-u"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sock.exists() {
        assert!(new.is_running(), "new process died: {}", new.log());
        assert!(Instant::now() < deadline, "new process never opened {}: {}", sock.display(), new.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    old.signal("QUIT");
    new
}

/// Waits (bounded) for a process to exit; returns when it did.
fn exited_at(p: &Wsgate, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    while p.is_running() {
        assert!(Instant::now() < deadline, "process did not exit within {within:?}: {}", p.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    Instant::now()
}

#[derive(Debug)]
struct SessionEnd {
    at: Instant,
    code: Option<u16>,
    echoes_after_signal: usize,
}

/// One client session: echo every 100 ms until the proxy closes it; report how it ended.
async fn chatty_session(url: String, signalled: Arc<AtomicBool>) -> Result<SessionEnd, String> {
    let (mut ws, _) = ws_connect(&url, &[]).await.map_err(|e| format!("connect: {e}"))?;
    let mut after = 0;
    for i in 0..600 {
        ws.send(Message::text(format!("tick {i}"))).await.map_err(|e| format!("send: {e}"))?;
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => {
                if signalled.load(Ordering::SeqCst) {
                    after += 1;
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let at = Instant::now();
                // Finish the closing handshake: the proxy then closes the TCP connection.
                while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
                return Ok(SessionEnd { at, code: frame.map(|f| u16::from(f.code)), echoes_after_signal: after });
            }
            other => return Err(format!("abnormal end: {other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("never closed".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_drain_with_going_away_across_an_upgrade() {
    let (ws_backend, http) = (WsBackend::start("chat"), HttpBackend::start("web"));
    let Setup { dir, port, config_path, gateway: old } = start_gateway(&ws_backend, &http);

    let url = format!("ws://127.0.0.1:{port}/ws");
    let signalled = Arc::new(AtomicBool::new(false));
    let sessions: Vec<_> = (0..100).map(|_| tokio::spawn(chatty_session(url.clone(), signalled.clone()))).collect();
    // All 100 are open on the old process before the upgrade.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ws_backend.sessions() < 100 {
        assert!(Instant::now() < deadline, "only {} sessions opened", ws_backend.sessions());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let new = upgrade(&old, &config_path, &dir.path().join("upgrade.sock"));
    let signal_at = Instant::now();
    signalled.store(true, Ordering::SeqCst);

    let mut ends = Vec::new();
    for s in sessions {
        ends.push(s.await.unwrap().unwrap_or_else(|e| panic!("a session ended badly: {e}\n{}", old.log())));
    }
    let old_exit = exited_at(&old, Duration::from_secs(30));

    assert!(ends.iter().all(|e| e.code == Some(1001)), "every session gets Close 1001: {ends:?}");
    assert!(ends.iter().all(|e| e.echoes_after_signal >= 3), "sessions keep working while draining: {ends:?}");
    let first = ends.iter().map(|e| e.at).min().unwrap();
    let last = ends.iter().map(|e| e.at).max().unwrap();
    let spread = last - first;
    let mut per_second = [0usize; 8];
    for e in &ends {
        per_second[((e.at - first).as_secs() as usize).min(7)] += 1;
    }
    eprintln!(
        "closes from {:?} to {:?} after SIGQUIT, spread {spread:?}, per second {per_second:?}",
        first - signal_at,
        last - signal_at
    );
    assert!(
        spread >= Duration::from_millis(WINDOW_SECS * 1000 / 2),
        "closes must be spread over the window: {spread:?}"
    );
    assert!(per_second.iter().all(|&n| n < 60), "not all in one second: {per_second:?}");
    let linger = old_exit.saturating_duration_since(last);
    eprintln!("old process exited {linger:?} after the last session closed");
    assert!(linger < Duration::from_secs(1), "old process lingered {linger:?}");

    // The backend got a proper close for every session: the proxy's masked Close 1001.
    let codes = ws_backend.close_codes();
    assert_eq!(codes.iter().filter(|c| **c == Some(1001)).count(), 100, "{codes:?}");

    // New sessions land on the new process (the old one is gone).
    let (mut ws, _) = ws_connect(&url, &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut ws, "after").await, "after");
    assert!(new.is_running());
}

/// A keep-alive HTTP client that behaves like real ones: a request that fails on a reused
/// connection before any response byte arrived is retried once on a new connection.
struct LoadStats {
    ok: AtomicUsize,
    failed: AtomicUsize,
    refused: AtomicUsize,
    retried: AtomicUsize,
    /// What the first few failures were, for the assertion message.
    failures: std::sync::Mutex<Vec<String>>,
}

impl LoadStats {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 5 {
            failures.push(what);
        }
    }
}

async fn one_request(stream: &mut TcpStream) -> std::io::Result<(u16, bool)> {
    stream.write_all(b"GET /load HTTP/1.1\r\nHost: load\r\n\r\n").await?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, head.contains("connection: close")))
}

async fn load_worker(addr: SocketAddr, stop: Arc<AtomicBool>, stats: Arc<LoadStats>, keep_alive: bool) {
    let mut conn: Option<TcpStream> = None;
    for _ in 0..1_000_000 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let reused = conn.is_some();
        if conn.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        stats.refused.fetch_add(1, Ordering::SeqCst);
                    } else {
                        stats.fail(format!("connect: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let result = tokio::time::timeout(Duration::from_secs(10), one_request(conn.as_mut().unwrap())).await;
        match result {
            Ok(Ok((200, close))) => {
                stats.ok.fetch_add(1, Ordering::SeqCst);
                if close || !keep_alive {
                    conn = None;
                }
            }
            Ok(Err(_)) if reused => {
                // The server closed an idle keep-alive connection as we reused it.
                stats.retried.fetch_add(1, Ordering::SeqCst);
                conn = None;
            }
            other => {
                let what = match other {
                    Ok(Ok((status, _))) => format!("status {status}"),
                    Ok(Err(e)) => format!("{e} on a new connection"),
                    Err(_) => "no answer within 10 s".to_string(),
                };
                stats.fail(what);
                conn = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_load_survives_three_upgrades_and_a_broken_config_changes_nothing() {
    let (ws_backend, http) = (WsBackend::start("chat"), HttpBackend::start("web"));
    let Setup { dir, port, config_path, gateway: mut current } = start_gateway(&ws_backend, &http);
    let sock = dir.path().join("upgrade.sock");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(LoadStats {
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        retried: AtomicUsize::new(0),
        failures: Default::default(),
    });
    let workers: Vec<_> =
        (0..8).map(|i| tokio::spawn(load_worker(addr, stop.clone(), stats.clone(), i % 2 == 0))).collect();

    for round in 0..3 {
        let before = stats.ok.load(Ordering::SeqCst);
        let next = upgrade(&current, &config_path, &sock);
        exited_at(&current, Duration::from_secs(30));
        assert!(next.is_running(), "round {round}: {}", next.log());
        current = next;
        assert!(stats.ok.load(Ordering::SeqCst) > before, "round {round}: traffic flowed during the upgrade");
    }

    // An upgrade onto a broken config: the new process refuses to start, says why, and the
    // running one keeps serving untouched.
    let broken = dir.path().join("broken.yaml");
    config_routing(dir.path(), port, ws_backend.addr(), http.addr(), "nowhere").write_to(&broken);
    let failed_upgrade = Wsgate::start_with(&broken, &["-u"]);
    let status = failed_upgrade.wait_exit(Duration::from_secs(10)).expect("a broken config exits at once");
    assert_eq!(status.code(), Some(1));
    assert!(failed_upgrade.log().contains("routes[1].upstream"), "{}", failed_upgrade.log());
    let ok_before = stats.ok.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stats.ok.load(Ordering::SeqCst) > ok_before + 10, "still serving after the failed upgrade");
    assert!(current.is_running());

    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed, refused, retried) = (
        stats.ok.load(Ordering::SeqCst),
        stats.failed.load(Ordering::SeqCst),
        stats.refused.load(Ordering::SeqCst),
        stats.retried.load(Ordering::SeqCst),
    );
    eprintln!("across 3 upgrades: {ok} ok, {failed} failed, {refused} refused, {retried} retried on a new connection");
    assert_eq!((failed, refused), (0, 0), "first failures: {:?}", stats.failures.lock().unwrap());
    assert!(ok > 500, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_like_an_upgrade_and_sigint_stops_at_once() {
    let (ws_backend, http) = (WsBackend::start("chat"), HttpBackend::start("web"));
    for (signal, expect_close) in [("TERM", Some(1001)), ("INT", None)] {
        let Setup { dir: _dir, port, gateway: gw, .. } = start_gateway(&ws_backend, &http);
        let (mut ws, _) = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[]).await.unwrap();
        assert_eq!(ws_echo_text(&mut ws, "hi").await, "hi");
        let sent = Instant::now();
        gw.signal(signal);
        let end = tokio::time::timeout(Duration::from_secs(15), ws.next()).await.expect("session ends");
        match (expect_close, end) {
            (Some(code), Some(Ok(Message::Close(Some(frame))))) => assert_eq!(u16::from(frame.code), code),
            (None, other) => assert!(!matches!(other, Some(Ok(Message::Close(_)))), "SIGINT sends no Close: {other:?}"),
            (_, other) => panic!("SIG{signal}: {other:?}"),
        }
        drop(ws);
        let exit = exited_at(&gw, Duration::from_secs(15));
        eprintln!("SIG{signal}: exited {:?} after the signal", exit - sent);
        if signal == "INT" {
            assert!(exit - sent < Duration::from_secs(2), "SIGINT is a fast stop");
        }
    }
}

/// A connection accepted just before the listener stops, whose request head is still on its
/// way, is answered (with `Connection: close`) rather than closed unanswered: Pingora's own
/// cleanup drops every connection waiting for a head, wsgate gives a first head 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_arriving_as_the_listener_stops_is_answered() {
    let (ws_backend, http) = (WsBackend::start("chat"), HttpBackend::start("web"));
    let Setup { dir: _dir, port, gateway: gw, .. } = start_gateway(&ws_backend, &http);

    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET /load HTTP/1.1\r\n").await.unwrap();
    // Once wsgate has accepted it: a connection still in the kernel's backlog when the
    // process exits is reset, which no process can help.
    let (server, client) = (conn.peer_addr().unwrap(), conn.local_addr().unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !accepted_by_a_process(server, client) {
        assert!(Instant::now() < deadline, "wsgate did not accept the connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("TERM");
    let stopped = format!("Shutting down 127.0.0.1:{port}");
    assert!(gw.wait_log_contains(&stopped, Duration::from_secs(10)), "the listener did not stop: {}", gw.log());
    // Pingora's cleanup runs right after that line; the rest of the head comes now.
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        conn.write_all(b"Host: load\r\n\r\n").await?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).to_ascii_lowercase())
    })
    .await
    .expect("an answer within 5 s")
    .expect("read the answer");
    assert!(answer.starts_with("http/1.1 200"), "got {answer:?}\n{}", gw.log());
    assert!(answer.contains("connection: close"), "{answer:?}");
    exited_at(&gw, Duration::from_secs(15));
}

/// Whether a process has accepted the server side of the IPv4 connection `client` ->
/// `server`: in /proc/net/tcp a socket still in the listen backlog has inode 0, an accepted
/// one has an inode of its own.
fn accepted_by_a_process(server: std::net::SocketAddr, client: std::net::SocketAddr) -> bool {
    let hex = |a: std::net::SocketAddr| match a.ip() {
        std::net::IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_ne_bytes(ip.octets()), a.port()),
        std::net::IpAddr::V6(_) => unreachable!("IPv4 only"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 9 && fields[1] == local && fields[2] == remote && fields[9] != "0"
    })
}
