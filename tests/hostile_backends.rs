//! Hostile backends (issue 6, item 3): a backend that answers 101 to a request that did not
//! ask to upgrade, a 101 that is not a valid WebSocket acceptance, garbage instead of HTTP,
//! a close before any byte or in the middle of a response, a stall, and no answer at all.
//!
//! Every case asserts the exact answer the client gets (and that no backend byte leaks to it
//! as a raw tunnel), that wsgate did not panic and still runs, that a WebSocket session
//! opened before the case still echoes, and that an HTTP request made after it gets 200.
//! The tests share one wsgate (`SharedFixture`) in front of every misbehaving backend, each
//! on its own route `/h/<name>` with a 700 ms `read_timeout`.
mod common;
use common::*;

use common::backends::read_head;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What each misbehaving backend sends after reading a request head, and whether it then
/// closes (`true`) or holds the connection open.
const HOSTILE: &[(&str, &[u8], bool)] = &[
    ("switch-websocket", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nTUNNEL-DATA", false),
    // Correct accept for WS_KEY, but switching to h2c.
    ("switch-h2c", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nTUNNEL-DATA", false),
    ("switch-wrong-accept", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\nTUNNEL-DATA", false),
    ("switch-no-upgrade-field", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nTUNNEL-DATA", false),
    ("switch-no-connection-field", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nTUNNEL-DATA", false),
    ("garbage-then-close", b"SSH-2.0-OpenSSH_9.6 TUNNEL-DATA\r\nwhatever\r\n\r\n", true),
    ("garbage-left-open", b"SSH-2.0-OpenSSH_9.6 TUNNEL-DATA\r\nwhatever\r\n\r\n", false),
    ("binary-garbage", b"\x00\xff\xfe\x01TUNNEL-DATA\r\n\r\n", true),
    ("partial-head-then-close", b"HTTP/1.1 200 OK\r\nContent-Le", true),
    ("close-before-any-byte", b"", true),
    ("truncated-content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", true),
    ("truncated-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", true),
    ("stall-mid-body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", false),
    ("close-delimited-body", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789", true),
];

struct Fixture {
    // Field order is drop order: wsgate first, then its backends.
    gw: Wsgate,
    rec: RecordingBackend,
    echo: std::sync::Mutex<WsBackend>,
    _hostile: Vec<RawBackend>,
    addr: SocketAddr,
}

static FIXTURE: SharedFixture<Fixture> = SharedFixture::new();

fn fixture() -> Arc<Fixture> {
    FIXTURE.get(|| {
        let rec = RecordingBackend::start();
        let echo = WsBackend::start("echo");
        // Accepts and reads, never answers.
        let never = RawBackend::start(|mut s| async move {
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        // Interim answers without end (bounded here by count), never a final one.
        let endless_interim = RawBackend::start(|mut s| async move {
            let mut buf = Vec::new();
            if read_head(&mut s, &mut buf).await.ok().flatten().is_none() {
                return;
            }
            for _ in 0..10_000 {
                if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
            }
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let mut hostile: Vec<(String, RawBackend)> =
            HOSTILE.iter().map(|&(n, resp, close)| (n.to_string(), RawBackend::canned(resp, close))).collect();
        hostile.push(("never-answers".to_string(), never));
        hostile.push(("endless-interim".to_string(), endless_interim));
        let port = free_port();
        let mut cfg = Config::new()
            .listen(port)
            .upstream("web", Upstream::one(rec.addr()))
            .upstream("echo", Upstream::one(echo.addr()))
            .route(Route::to("echo").path_prefix("/ws"))
            .route(Route::to("web").path_prefix("/"));
        for (name, b) in &hostile {
            cfg = cfg
                .upstream(name, Upstream::one(b.addr).read_timeout("700ms"))
                .route(Route::to(name).path_prefix(format!("/h/{name}")));
        }
        let gw = Wsgate::start_and_wait(&cfg, &[port]);
        Fixture {
            gw,
            rec,
            echo: std::sync::Mutex::new(echo),
            _hostile: hostile.into_iter().map(|(_, b)| b).collect(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A plain `GET` that does not ask to upgrade.
    Get,
    /// A plain `GET` with `Upgrade: h2c` (which wsgate does not forward).
    GetH2c,
    /// A valid WebSocket handshake.
    WebSocket,
}

fn request(kind: Kind, backend: &str) -> Vec<u8> {
    let path = format!("/h/{backend}");
    match kind {
        Kind::Get => format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
        Kind::GetH2c => format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").into_bytes(),
        Kind::WebSocket => ws_upgrade_request(&path, "x").into_bytes(),
    }
}

/// What the client must get.
#[derive(Clone, Copy)]
enum Expect {
    /// This status, a complete response, and not one byte the backend sent after its head.
    Status(u16),
    /// The backend's 200 head is forwarded, then the connection is closed with the body
    /// visibly incomplete (fewer bytes than Content-Length / no last chunk).
    TruncatedThenClosed,
    /// A complete 200 with body `0123456789`.
    Complete,
}

impl Expect {
    /// What is wrong with the answer `r` (nothing: empty).
    fn problems(self, r: &RawResponse) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            Expect::Status(status) => {
                if r.status != Some(status) {
                    let raw = String::from_utf8_lossy(&r.raw[..r.raw.len().min(300)]).into_owned();
                    problems.push(format!("expected {status}, got {}: {raw:?}", r.summary()));
                }
                if contains(&r.raw, b"TUNNEL-DATA") {
                    problems.push(format!("backend bytes reached the client: {:?}", String::from_utf8_lossy(&r.raw)));
                }
                if r.status == Some(status)
                    && r.header("content-length").and_then(|v| v.parse::<usize>().ok()) != Some(r.body.len())
                {
                    problems.push(format!("incomplete answer: {:?}", String::from_utf8_lossy(&r.raw)));
                }
            }
            Expect::TruncatedThenClosed => {
                if r.status != Some(200) {
                    problems.push(format!("expected the backend's 200 head, got {}", r.summary()));
                }
                if !r.closed {
                    problems
                        .push(format!("the client connection was left open (not closed within 5 s): {}", r.summary()));
                }
                let clen = r.header("content-length").and_then(|v| v.parse::<usize>().ok());
                let chunked = r.header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                let complete_looking = match (clen, chunked) {
                    (Some(n), _) => r.body.len() >= n,
                    (None, true) => contains(&r.raw, b"\r\n0\r\n\r\n"),
                    (None, false) => true, // close-delimited: the client could not tell
                };
                if complete_looking {
                    problems.push(format!(
                        "the truncated body was made to look complete: {:?}",
                        String::from_utf8_lossy(&r.raw)
                    ));
                }
            }
            Expect::Complete => {
                if r.status != Some(200) || r.body != b"0123456789" {
                    problems.push(format!(
                        "expected a complete 200 `0123456789`, got {} {:?}",
                        r.summary(),
                        String::from_utf8_lossy(&r.raw)
                    ));
                }
            }
        }
        problems
    }
}

/// Runs each case (the backend of route `/h/<backend>`, the request kind, the answer the
/// client must get) against the shared wsgate; after each, wsgate must be unharmed. Every
/// wrong answer is listed at the end.
async fn run_cases(cases: &[(&str, Kind, Expect)]) {
    let fx = fixture();
    let mut healthy = healthy_session(&fx.gw, fx.addr).await;
    let mut verdicts = Verdicts::new();
    for &(backend, kind, expect) in cases {
        let label = format!("{backend} ({kind:?})");
        let started = Instant::now();
        let r = raw_request(fx.addr, &request(kind, backend)).await;
        let took = started.elapsed();
        verdicts.record(&label, &format!("{} in {took:.1?}", r.summary()), expect.problems(&r));
        assert_unharmed(&fx.gw, fx.addr, &mut healthy, "/after", &label).await;
    }
    verdicts.assert_none_wrong(&fx.gw);
    // The healthy backends saw only the healthy traffic.
    assert!(fx.rec.paths().iter().all(|p| p == "/after"), "{:?}", fx.rec.paths());
    assert!(fx.echo.lock().unwrap().sessions() >= 1);
}

/// Garbage, a partial head, a close before any byte: 502. No answer within the pool's
/// `read_timeout`: 504. Same for plain requests and WebSocket handshakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_fails_before_its_response_head_gets_502_or_504() {
    use Expect::Status;
    let mut cases = Vec::new();
    for kind in [Kind::Get, Kind::WebSocket] {
        cases.extend([
            ("garbage-then-close", kind, Status(502)),
            ("garbage-left-open", kind, Status(502)),
            ("binary-garbage", kind, Status(502)),
            ("partial-head-then-close", kind, Status(502)),
            ("close-before-any-byte", kind, Status(502)),
            ("never-answers", kind, Status(504)),
        ]);
    }
    run_cases(&cases).await;
}

/// Interim answers (1xx) are skipped on the way to a handshake's final answer, but only a
/// few: a backend that sends nothing else gets 502, not its `100` relayed as the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_interim_answers_to_a_websocket_handshake_get_502() {
    run_cases(&[("endless-interim", Kind::WebSocket, Expect::Status(502))]).await;
}

/// A 101 that is not a valid acceptance of the client's WebSocket handshake (another
/// protocol, a wrong `Sec-WebSocket-Accept`, a missing `Upgrade` or `Connection`) gets 502
/// and no tunnel (docs/configuration.md, "WebSocket handshakes").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_101_to_a_websocket_handshake_gets_502_and_no_tunnel() {
    use Expect::Status;
    run_cases(&[
        ("switch-h2c", Kind::WebSocket, Status(502)),
        ("switch-wrong-accept", Kind::WebSocket, Status(502)),
        ("switch-no-upgrade-field", Kind::WebSocket, Status(502)),
        ("switch-no-connection-field", Kind::WebSocket, Status(502)),
        // No Sec-WebSocket-Accept at all.
        ("switch-websocket", Kind::WebSocket, Status(502)),
    ])
    .await;
}

/// A backend that dies (or stalls past `read_timeout`) after its response head: the head is
/// already with the client, so the client connection must be closed with the body visibly
/// incomplete (RFC 9112 §6.3, §8: an incomplete message must not be passed on as complete),
/// never left hanging. A close-delimited body, by contrast, is complete at the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_mid_response_gets_the_client_connection_closed() {
    run_cases(&[
        ("truncated-content-length", Kind::Get, Expect::TruncatedThenClosed),
        ("truncated-chunked", Kind::Get, Expect::TruncatedThenClosed),
        ("stall-mid-body", Kind::Get, Expect::TruncatedThenClosed),
        ("close-delimited-body", Kind::Get, Expect::Complete),
    ])
    .await;
}

/// RFC 9110 §15.2.2: a server must not switch protocols unless the client asked for it. An
/// `Upgrade: h2c` request is served as plain HTTP (wsgate does not forward the `Upgrade`),
/// so a backend that answers it with 101 anyway is broken: 502, no tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_an_upgrade_wsgate_did_not_forward_gets_502() {
    use Expect::Status;
    run_cases(&[("switch-h2c", Kind::GetH2c, Status(502)), ("switch-websocket", Kind::GetH2c, Status(502))]).await;
}

/// The same for a plain request that did not ask to upgrade at all: the client must get
/// 502, not the 101 and a raw byte tunnel to that backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_request_that_did_not_ask_to_upgrade_gets_502() {
    use Expect::Status;
    run_cases(&[
        ("switch-websocket", Kind::Get, Status(502)),
        ("switch-h2c", Kind::Get, Status(502)),
        ("switch-wrong-accept", Kind::Get, Status(502)),
    ])
    .await;
}

/// A backend refuses a WebSocket handshake (200 instead of 101) and dies after 10 of its
/// 100 body bytes. wsgate has not sent anything yet, so it can and must answer 502
/// (RFC 9112 §6.3: the message "MUST" be considered incomplete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_refusal_of_a_websocket_handshake_gets_502() {
    run_cases(&[("truncated-content-length", Kind::WebSocket, Expect::Status(502))]).await;
}
