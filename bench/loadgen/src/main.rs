//! Load generator and fast loopback backends for wsgate's benchmark (`bench/run.sh`).
//!
//! Every load subcommand prints one JSON object per line on stdout (`ws-idle` prints two:
//! `"event":"ready"` once every session is open, then `"event":"done"`), so the driver
//! can parse them with `grep`/`sed`. Latencies are exact: every sample is kept and sorted
//! (no histogram buckets). Every loop is bounded by the `--duration`, a count, or a
//! timeout.

mod bulk;
mod echo;
mod h2ws;
mod hold;
mod report;
mod transport;

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use echo::{close, echo_once};

/// Any single network step (connect, one echo, a close) that takes longer than this fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(name = "loadgen", about = "Loopback load generator and backends for bench/run.sh")]
struct Cli {
    /// Tokio worker threads (1 = single-threaded runtime).
    #[arg(long, default_value_t = 1, global = true)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo: each connection sends a message and waits for its echo; back to back (closed
    /// loop), or one per `--interval` (paced: the latency a well-behaved client sees).
    WsEcho {
        /// ws:// (plain TCP) or wss:// (TLS; HTTP/1.1 unless --h2).
        #[arg(long)]
        url: String,
        /// WebSocket over HTTP/2 (RFC 8441): each connection is its own TLS + HTTP/2
        /// connection carrying one extended-CONNECT stream. Needs a wss:// URL.
        #[arg(long)]
        h2: bool,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Paced: each connection sends one message per interval (starts staggered).
        #[arg(long, value_parser = parse_duration)]
        interval: Option<Duration>,
        /// `'Name: value'` added to every handshake (repeatable), e.g. an Authorization.
        #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
        headers: Vec<Header>,
    },
    /// Connection flood: opens TCP connections from `--source` as fast as it can; every
    /// other one is reset at once, the rest send a partial request line and are held (up to
    /// `--held-max`, oldest let go first). Every close is a reset (SO_LINGER 0), so no
    /// TIME_WAIT exhausts the source's ephemeral ports. Run it under `chrt --idle 0`.
    Flood {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.2")]
        source: std::net::IpAddr,
        /// Concurrent connect loops.
        #[arg(long, default_value_t = 6)]
        tasks: usize,
        #[arg(long, default_value_t = 1200)]
        held_max: usize,
        #[arg(long, default_value = "6s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Full session cycles: connect (handshake), one echo, close; `concurrency` at a time.
    WsHandshake {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 20)]
        concurrency: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// `'Name: value'` added to every handshake (repeatable), e.g. an Authorization.
        #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
        headers: Vec<Header>,
    },
    /// One session echoing `mib` MiB in `msg_kib` KiB messages, writer and reader concurrent.
    WsBulk {
        /// ws:// (plain TCP) or wss:// (TLS; HTTP/1.1 unless --h2).
        #[arg(long)]
        url: String,
        /// WebSocket over HTTP/2 (RFC 8441), one extended-CONNECT stream. Needs a wss:// URL.
        #[arg(long)]
        h2: bool,
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        #[arg(long, default_value_t = 64)]
        msg_kib: usize,
        /// Fail if no echoed byte arrives for this long.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        stall: Duration,
    },
    /// Opens N sessions (one echo each), prints `ready`, holds them, then closes them.
    WsIdle {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 5000)]
        sessions: usize,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        hold: Duration,
        /// Sessions being opened at once.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// After `hold`, every session echoes one message of this many bytes (0: none),
        /// prints `"event":"burst"` and stays idle for `burst_hold` more.
        #[arg(long, default_value_t = 0)]
        burst: usize,
        #[arg(long, default_value = "12s", value_parser = parse_duration)]
        burst_hold: Duration,
    },
    /// Holds N sessions whose clients reconnect 0..`reconnect` after any close, for
    /// `duration`; prints how the sessions ended (close codes, abnormal ends).
    WsHold {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 300)]
        sessions: usize,
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        reconnect: Duration,
        #[arg(long, default_value = "40s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// HTTP/1.1 keep-alive backend: every request gets 200 with a 1 KiB body.
    ServeHttp {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// WebSocket echo backend; a plain `GET /healthz` gets 200.
    ServeWs {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Reads run.sh's results (TSV: rotation, proxy, workers, metric, value) and prints the
    /// Markdown table of medians with each figure's ratio to nginx.
    Report {
        #[arg(long)]
        input: std::path::PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration `{s}`: expected e.g. 500ms, 10s, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in `{s}`: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

type Header = (HeaderName, HeaderValue);

fn parse_header(s: &str) -> Result<Header, String> {
    let (name, value) = s.split_once(':').ok_or_else(|| format!("bad header `{s}`: expected 'Name: value'"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|e| format!("bad header name in `{s}`: {e}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|e| format!("bad header value in `{s}`: {e}"))?;
    Ok((name, value))
}

fn main() {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads).enable_all().build()
    }
    .expect("tokio runtime");
    let code = rt.block_on(async move {
        match cli.cmd {
            Cmd::WsEcho { url, h2, connections, size, duration, interval, headers } => match transport::Transport::of(&url, h2) {
                Ok(t) => echo::ws_echo(url, t, echo::EchoArgs { connections, size, duration, interval }, &headers).await,
                Err(e) => fail("ws-echo", e),
            },
            Cmd::Flood { addr, source, tasks, held_max, duration } => flood(addr, source, tasks, held_max, duration).await,
            Cmd::WsHandshake { url, concurrency, duration, headers } => ws_handshake(url, concurrency, duration, headers.into()).await,
            Cmd::WsBulk { url, h2, mib, msg_kib, stall } => match transport::Transport::of(&url, h2) {
                Ok(t) => bulk::ws_bulk(url, t, mib, msg_kib, stall).await,
                Err(e) => fail("ws-bulk", e),
            },
            Cmd::WsIdle { url, sessions, hold, concurrency, burst, burst_hold } => ws_idle(url, sessions, hold, concurrency, (burst, burst_hold)).await,
            Cmd::WsHold { url, sessions, reconnect, duration } => hold::ws_hold(url, sessions, reconnect, duration).await,
            Cmd::ServeHttp { addr } => serve_http(addr).await,
            Cmd::ServeWs { addr } => serve_ws(addr).await,
            Cmd::Report { input } => report::run(&input),
        }
    });
    std::process::exit(code);
}

fn emit(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(kind: &str, why: impl std::fmt::Display) -> i32 {
    let why = why.to_string().replace('\\', "\\\\").replace('"', "'");
    emit(format!(r#"{{"kind":"{kind}","error":"{why}"}}"#));
    1
}

/// Exact percentile (nearest rank) of sorted nanosecond samples, in µs.
fn pct_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(url: &str) -> Result<Ws, String> {
    connect_with(url, &[]).await
}

/// `connect` with extra request headers.
async fn connect_with(url: &str, headers: &[Header]) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| format!("connect: {e}"))?;
    req.headers_mut().extend(headers.iter().cloned());
    let fut = tokio_tungstenite::connect_async_with_config(req, None, true);
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Err(_) => Err("connect timed out".into()),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

async fn flood(addr: SocketAddr, source: std::net::IpAddr, tasks: usize, held_max: usize, duration: Duration) -> i32 {
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let loops: Vec<_> = (0..tasks.max(1))
        .map(|task| {
            let (opened, failed) = (opened.clone(), failed.clone());
            let share = held_max / tasks.max(1);
            tokio::spawn(async move {
                let mut held = std::collections::VecDeque::with_capacity(share + 1);
                let mut n = task as u64;
                while Instant::now() < deadline {
                    n += 1;
                    tokio::task::yield_now().await; // lets the other loops in
                    let socket = match source {
                        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                    };
                    let socket = match socket.and_then(|s| s.bind(SocketAddr::new(source, 0)).map(|_| s)).and_then(|s| s.set_zero_linger().map(|_| s)) {
                        Ok(s) => s,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(addr)).await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if n % 2 == 0 || conn.write_all(b"GET /flood-").await.is_err() {
                        continue; // dropped: reset
                    }
                    held.push_back(conn);
                    if held.len() > share {
                        held.pop_front();
                    }
                }
            })
        })
        .collect();
    for l in loops {
        l.await.expect("flood loop");
    }
    let secs = start.elapsed().as_secs_f64();
    let (opened, failed) = (opened.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    emit(format!(r#"{{"kind":"flood","opened":{opened},"failed":{failed},"secs":{secs:.3},"per_s":{:.0}}}"#, opened as f64 / secs));
    i32::from(opened == 0)
}

async fn ws_handshake(url: String, concurrency: usize, duration: Duration, headers: Arc<[Header]>) -> i32 {
    let start = Instant::now();
    let deadline = start + duration;
    let payload: Arc<[u8]> = vec![7u8; 64].into();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (url, payload, headers) = (url.clone(), payload.clone(), headers.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed, mut samples, mut last_error) = (0u64, 0u64, Vec::new(), String::new());
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let cycle = async {
                        let mut ws = connect_with(&url, &headers).await?;
                        echo_once(&mut ws, &payload).await?;
                        close(ws).await;
                        Ok::<_, String>(())
                    };
                    match cycle.await {
                        Ok(()) => {
                            ok += 1;
                            samples.push(t0.elapsed().as_nanos() as u64);
                        }
                        Err(e) => {
                            failed += 1;
                            last_error = e;
                            // Back off a little so a dead target does not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (ok, failed, samples, last_error)
            })
        })
        .collect();
    let (mut ok, mut failed, mut all, mut last_error) = (0u64, 0u64, Vec::new(), String::new());
    for t in tasks {
        let (o, f, s, e) = t.await.expect("handshake task");
        ok += o;
        failed += f;
        all.extend(s);
        if !e.is_empty() {
            last_error = e;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    emit(format!(
        r#"{{"kind":"ws-handshake","concurrency":{concurrency},"handshakes":{ok},"failures":{failed},"secs":{secs:.3},"per_s":{:.1},"p50_us":{:.1},"p99_us":{:.1},"last_error":"{}"}}"#,
        ok as f64 / secs,
        pct_us(&all, 50.0),
        pct_us(&all, 99.0),
        last_error.replace('"', "'"),
    ));
    if ok == 0 {
        1
    } else {
        0
    }
}

async fn ws_idle(url: String, sessions: usize, hold: Duration, concurrency: usize, (burst, burst_hold): (usize, Duration)) -> i32 {
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let payload: Arc<[u8]> = vec![7u8; 64].into();
    let tasks: Vec<_> = (0..sessions)
        .map(|_| {
            let (url, payload, sem) = (url.clone(), payload.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore");
                let mut ws = connect(&url).await?;
                echo_once(&mut ws, &payload).await?;
                Ok::<_, String>(ws)
            })
        })
        .collect();
    let mut open = Vec::with_capacity(sessions);
    let (mut failed, mut last_error) = (0usize, String::new());
    for t in tasks {
        match t.await.expect("idle task") {
            Ok(ws) => open.push(ws),
            Err(e) => {
                failed += 1;
                last_error = e;
            }
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    emit(format!(
        r#"{{"kind":"ws-idle","event":"ready","sessions":{},"failed":{failed},"open_secs":{open_secs:.3},"last_error":"{}"}}"#,
        open.len(),
        last_error.replace('"', "'")
    ));
    tokio::time::sleep(hold).await;
    if burst > 0 {
        let t0 = Instant::now();
        let payload = vec![7u8; burst];
        let mut burst_failed = 0usize;
        // Bounded concurrency: a few sessions at a time, so the proxy's peak is not the point.
        for group in open.chunks_mut(concurrency.max(1)) {
            let echoes = group.iter_mut().map(|ws| echo_once(ws, &payload));
            burst_failed += futures_util::future::join_all(echoes).await.iter().filter(|r| r.is_err()).count();
        }
        failed += burst_failed;
        emit(format!(r#"{{"kind":"ws-idle","event":"burst","bytes":{burst},"failed":{burst_failed},"secs":{:.3}}}"#, t0.elapsed().as_secs_f64()));
        tokio::time::sleep(burst_hold).await;
    }
    let n = open.len();
    let closing: Vec<_> = open.into_iter().map(|ws| tokio::spawn(close(ws))).collect();
    for c in closing {
        let _ = c.await;
    }
    emit(format!(r#"{{"kind":"ws-idle","event":"done","sessions":{n},"failed":{failed},"secs":{:.3}}}"#, start.elapsed().as_secs_f64()));
    if failed > 0 {
        1
    } else {
        0
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, i32> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(|e| fail("serve", e))?;
    socket.set_reuseaddr(true).map_err(|e| fail("serve", e))?;
    socket.bind(addr).map_err(|e| fail("serve", format!("bind {addr}: {e}")))?;
    socket.listen(4096).map_err(|e| fail("serve", e))
}

async fn serve_http(addr: SocketAddr) -> i32 {
    let listener = match bind(addr).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n".to_vec();
    response.extend((0..1024).map(|i| b'a' + (i % 26) as u8));
    let response: Arc<[u8]> = response.into();
    emit(format!(r#"{{"kind":"serve-http","addr":"{addr}","event":"listening"}}"#));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let response = response.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut filled = 0usize;
            let mut out = Vec::with_capacity(response.len());
            loop {
                let n = match stream.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                filled += n;
                // Answer every complete request head in the buffer (requests have no body).
                let mut consumed = 0;
                out.clear();
                while let Some(end) = find(&buf[consumed..filled], b"\r\n\r\n") {
                    consumed += end + 4;
                    out.extend_from_slice(&response);
                }
                if consumed > 0 {
                    buf.copy_within(consumed..filled, 0);
                    filled -= consumed;
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                } else if filled == buf.len() {
                    return; // head larger than 8 KiB: not our client
                }
            }
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve_ws(addr: SocketAddr) -> i32 {
    let listener = match bind(addr).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    emit(format!(r#"{{"kind":"serve-ws","addr":"{addr}","event":"listening"}}"#));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(3600), ws_session(stream)).await;
        });
    }
}

async fn ws_session(mut stream: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut filled = 0usize;
    let head_end = loop {
        let n = match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buf[filled..])).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        filled += n;
        if let Some(end) = find(&buf[..filled], b"\r\n\r\n") {
            break end + 4;
        }
        if filled == buf.len() {
            return;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&buf[..head_end]), Ok(httparse::Status::Complete(_))) {
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
        return;
    }
    let header = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let is_upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let Some(key) = header("sec-websocket-key").filter(|_| is_upgrade) else {
        let answer: &[u8] = if req.path == Some("/healthz") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        };
        let _ = stream.write_all(answer).await;
        return;
    };
    let accept = derive_accept_key(key);
    let response = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(WebSocketConfig::default())).await;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Binary(_) | Message::Text(_))) => {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            // Pings are answered by tungstenite; after a Close it sends the reply on the next poll.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
