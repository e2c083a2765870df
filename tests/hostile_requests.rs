//! Hostile clients (issue 6, item 3): malformed request lines and header bytes, obs-fold,
//! request smuggling (conflicting Content-Length / Transfer-Encoding), non-WebSocket
//! upgrades, an upgrade on POST with a body, requests pipelined after an upgrade, a client
//! that half-closes, and a WebSocket client that never reads.
//!
//! Every case sends exact bytes on a raw socket and asserts the exact answer (status and
//! whether the connection was closed), what the backend saw (a recording backend that logs
//! every request and every byte), that wsgate did not panic and still runs, that a
//! WebSocket session opened before the case still echoes, and that an HTTP request made
//! after it still gets 200.
//!
//! The tests of this file share one wsgate (`SharedFixture`); every case marks its bytes
//! with a token of its own, so cases running in parallel cannot see each other's traffic.
//! Cases that Pingora decides before wsgate sees them are `#[ignore = "Pingora limit: ..."]` tests
//! that assert the right answer.
mod common;
use common::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct Fixture {
    // Field order is drop order: wsgate first, then its backends.
    gw: Wsgate,
    /// Route `/`: records every request and byte.
    rec: RecordingBackend,
    /// Route `/ws`: WebSocket echo (in a Mutex only because it is not `Sync`).
    chat: std::sync::Mutex<WsBackend>,
    addr: SocketAddr,
}

static FIXTURE: SharedFixture<Fixture> = SharedFixture::new();

fn fixture() -> Arc<Fixture> {
    FIXTURE.get(|| {
        let rec = RecordingBackend::start();
        let chat = WsBackend::start("chat");
        let port = free_port();
        let cfg = Config::new()
            .listen(port)
            .upstream("web", Upstream::one(rec.addr()))
            .upstream("chat", Upstream::one(chat.addr()))
            .route(Route::to("chat").path_prefix("/ws"))
            .route(Route::to("web").path_prefix("/"));
        let gw = Wsgate::start_and_wait(&cfg, &[port]);
        Fixture { gw, rec, chat: std::sync::Mutex::new(chat), addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    })
}

impl Fixture {
    async fn healthy_session(&self) -> Ws {
        healthy_session(&self.gw, self.addr).await
    }
    async fn unharmed(&self, healthy: &mut Ws, case: &str) {
        assert_unharmed(&self.gw, self.addr, healthy, "/after", case).await;
    }
    /// Requests the backend received whose target contains `token`.
    fn seen(&self, token: &str) -> Vec<RecordedRequest> {
        self.rec.requests_to(token)
    }
}

/// What the backend must have received for a case.
enum Fwd {
    /// Not a byte carrying the case's token.
    Nothing,
    /// The head may have been forwarded before the error was found (a broken body).
    Unchecked,
    /// Exactly one request carrying the token, passing this check.
    Once(fn(&RecordedRequest)),
}

struct Case {
    name: &'static str,
    /// Bytes with `{T}` standing for the case's token.
    bytes: Vec<u8>,
    status: u16,
    /// `Some(true)`: the connection must be closed after the answer.
    closed: Option<bool>,
    fwd: Fwd,
}

fn case(name: &'static str, status: u16, closed: Option<bool>, fwd: Fwd, bytes: impl Into<Vec<u8>>) -> Case {
    Case { name, bytes: bytes.into(), status, closed, fwd }
}

/// `{T}` → token, `{SM}` → a complete second request to `/smuggled-<token>`, `{SMLEN}` →
/// its length, `{SMLEN5}` → its length + 5 (`0\r\n\r\n` + it), `{SMHEX}` → its length in hex.
fn expand(bytes: &[u8], token: &str) -> Vec<u8> {
    let smuggled = format!("GET /smuggled-{token} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{T}") {
            out.extend_from_slice(token.as_bytes());
            i += 3;
        } else if bytes[i..].starts_with(b"{SM}") {
            out.extend_from_slice(smuggled.as_bytes());
            i += 4;
        } else if bytes[i..].starts_with(b"{SMLEN5}") {
            out.extend_from_slice((smuggled.len() + 5).to_string().as_bytes());
            i += 8;
        } else if bytes[i..].starts_with(b"{SMLEN}") {
            out.extend_from_slice(smuggled.len().to_string().as_bytes());
            i += 7;
        } else if bytes[i..].starts_with(b"{SMHEX}") {
            out.extend_from_slice(format!("{:x}", smuggled.len()).as_bytes());
            i += 7;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

impl Case {
    /// What is wrong with the answer `r` to this case (sent marked with `token`) and with
    /// what the backend received (nothing wrong: empty).
    fn problems(&self, fx: &Fixture, token: &str, r: &RawResponse) -> Vec<String> {
        let mut problems = Vec::new();
        if r.status != Some(self.status) {
            problems.push(format!("expected {}, got {}", self.status, r.summary()));
        }
        if self.closed == Some(true) && !r.closed {
            problems.push(format!("connection must be closed after the answer, got {}", r.summary()));
        }
        if r.status_lines() > 1 {
            problems.push(format!("more than one response: {:?}", String::from_utf8_lossy(&r.raw)));
        }
        let smuggled = fx.seen(&format!("/smuggled-{token}"));
        if !smuggled.is_empty() {
            problems.push(format!("the backend received the smuggled request: {smuggled:?}"));
        }
        match self.fwd {
            Fwd::Nothing => {
                if contains(&fx.rec.bytes(), token.as_bytes()) {
                    problems.push(format!("the backend received bytes of this request: {:?}", fx.seen(token)));
                }
            }
            Fwd::Unchecked => {}
            Fwd::Once(check) => {
                let seen: Vec<_> = fx.seen(token).into_iter().filter(|r| !r.path.contains("/smuggled-")).collect();
                if seen.len() == 1 {
                    if let Err(e) = std::panic::catch_unwind(|| check(&seen[0])) {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                        problems.push(format!(
                            "backend saw a wrong request: {} — {:?}",
                            msg.unwrap_or_default(),
                            seen[0]
                        ));
                    }
                } else {
                    problems.push(format!("expected the backend to receive exactly one request, got {seen:?}"));
                }
            }
        }
        problems
    }
}

/// Sends each case (marked with the token `<group>-<name>`) to the shared wsgate and checks
/// its answer and what the backend received; after each, wsgate must be unharmed. Every
/// wrong answer is listed at the end.
async fn run_cases(group: &str, cases: Vec<Case>) {
    let fx = fixture();
    let mut healthy = fx.healthy_session().await;
    let mut verdicts = Verdicts::new();
    for c in cases {
        let token = format!("{group}-{}", c.name);
        let r = raw_request(fx.addr, &expand(&c.bytes, &token)).await;
        verdicts.record(&token, &r.summary(), c.problems(&fx, &token, &r));
        fx.unharmed(&mut healthy, &token).await;
    }
    verdicts.assert_none_wrong(&fx.gw);
}

fn no_length_framing_conflict(r: &RecordedRequest) {
    assert_eq!(
        r.header("content-length"),
        None,
        "Content-Length must be removed when Transfer-Encoding is present (RFC 9112 §6.3)"
    );
}

// ---------------------------------------------------------------- malformed requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_lines_and_header_bytes_get_400() {
    let n = Some(true);
    run_cases(
        "malformed",
        vec![
            case(
                "tls-hello-on-plain-port",
                400,
                n,
                Fwd::Nothing,
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03{T}\r\n\r\n"[..],
            ),
            case("words-no-version", 400, n, Fwd::Nothing, "HELLO {T}\r\n\r\n"),
            case("missing-version", 400, n, Fwd::Nothing, "GET /c/{T}\r\nHost: x\r\n\r\n"),
            case("http-9.9", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/9.9\r\nHost: x\r\n\r\n"),
            case("two-versions", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1 /admin HTTP/1.1\r\nHost: x\r\n\r\n"),
            case("nul-in-method", 400, n, Fwd::Nothing, &b"G\0T /c/{T} HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
            case("quote-and-angle-in-target", 400, n, Fwd::Nothing, "GET /c/{T}\"<x> HTTP/1.1\r\nHost: x\r\n\r\n"),
            case(
                "nul-in-header-value",
                400,
                n,
                Fwd::Nothing,
                &b"GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"[..],
            ),
            case(
                "space-in-header-name",
                400,
                n,
                Fwd::Nothing,
                "GET /c/{T} HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n",
            ),
            case("space-before-colon", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-Test : v\r\n\r\n"),
            case("separator-in-header-name", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: x\r\nX(A): v\r\n\r\n"),
            case("empty-header-name", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"),
            case("no-colon", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
            case(
                "ctl-0x01-in-value",
                400,
                n,
                Fwd::Nothing,
                &b"GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"[..],
            ),
            case("del-in-value", 400, n, Fwd::Nothing, &b"GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n"[..]),
            case("bare-cr-in-value", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
            // RFC 9112 §3.2: more than one Host field line → 400.
            case("duplicate-host", 400, n, Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
        ],
    )
    .await;
}

/// RFC 9112 §5.2: a server that receives obs-fold in a request must reject it with 400
/// (or replace each fold with SP); wsgate rejects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_fold_is_rejected_with_400() {
    let n = Some(true);
    run_cases(
        "obsfold",
        vec![
            case(
                "fold-with-space",
                400,
                n,
                Fwd::Nothing,
                "GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: first\r\n second\r\n\r\n",
            ),
            case(
                "fold-with-tab",
                400,
                n,
                Fwd::Nothing,
                "GET /c/{T} HTTP/1.1\r\nHost: x\r\nX-A: first\r\n\tsecond\r\n\r\n",
            ),
            case(
                "fold-of-transfer-encoding",
                400,
                n,
                Fwd::Nothing,
                "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\nhello",
            ),
        ],
    )
    .await;
}

/// RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes to
/// parse MUST respond with a 414 (URI Too Long) status code."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "Pingora limit: a request head over its own buffer is refused with 400 before wsgate sees it; wsgate answers 414 from 8 KiB up to there (see a_long_request_target_gets_414)"]
async fn an_absurdly_long_request_target_gets_414() {
    let long = "a".repeat(100 * 1024);
    run_cases(
        "longuri",
        vec![case(
            "uri-100KiB",
            414,
            Some(true),
            Fwd::Nothing,
            format!("GET /c/{{T}}/{long} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )],
    )
    .await;
}

/// What wsgate itself limits: targets over 8 KiB (and under Pingora's own head limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_target_gets_414() {
    let long = "a".repeat(20 * 1024);
    run_cases(
        "uri20k",
        vec![case(
            "uri-20KiB",
            414,
            Some(true),
            Fwd::Nothing,
            format!("GET /c/{{T}}/{long} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )],
    )
    .await;
}

/// RFC 9112 §3.2: an invalid request-line gets 400 (or a 301 to the encoded target); a
/// recipient "SHOULD NOT attempt to autocorrect and then process the request without a
/// redirect, since the invalid request-line might be deliberately crafted to bypass
/// security filters along the request chain".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "Pingora limit: its HTTP/1 parser percent-encodes NUL, SP and control bytes in the target before wsgate sees it, so wsgate cannot tell them from a client's own %00"]
async fn invalid_bytes_in_the_request_target_get_400_not_autocorrection() {
    let n = Some(true);
    run_cases(
        "target",
        vec![
            case("nul-in-target", 400, n, Fwd::Nothing, &b"GET /c/{T}/a\0b HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
            case("space-in-target", 400, n, Fwd::Nothing, "GET /c/{T}/a b HTTP/1.1\r\nHost: x\r\n\r\n"),
            case("ctl-in-target", 400, n, Fwd::Nothing, &b"GET /c/{T}/a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        ],
    )
    .await;
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
/// HTTP/1.1 request message that lacks a Host header field".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http11_request_without_host_gets_400() {
    run_cases(
        "nohost",
        vec![case("http11-no-host", 400, Some(true), Fwd::Nothing, "GET /c/{T} HTTP/1.1\r\nConnection: close\r\n\r\n")],
    )
    .await;
}

// ---------------------------------------------------------------- request smuggling

/// Each body carries a complete second request (`{SM}`, to `/smuggled-<token>`): whatever
/// wsgate answers, the backend must never receive it as a request of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_are_refused_or_framed_by_transfer_encoding_alone() {
    let n = Some(true);
    run_cases(
        "smuggle",
        vec![
            // RFC 9112 §6.3 (5): differing Content-Length values are unrecoverable → 400.
            case("cl-duplicate-conflicting", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 9{SMLEN}\r\n\r\nhello{SM}"),
            case("cl-list-conflicting", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 9{SMLEN}\r\n\r\nhello{SM}"),
            case("cl-negative", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{SM}"),
            case("cl-plus-sign", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello{SM}"),
            // RFC 9112 §6.3 (3): with both, Transfer-Encoding alone frames the body, the proxy
            // removes Content-Length and closes the connection after responding, so the bytes
            // after the final chunk are never read as a request.
            case("cl.te", 200, n, Fwd::Once(|r| {
                no_length_framing_conflict(r);
                assert!(r.body.is_empty(), "body must end at the last chunk");
            }), "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: {SMLEN5}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SM}"),
            case("te.cl", 200, n, Fwd::Once(|r| {
                no_length_framing_conflict(r);
                assert!(String::from_utf8_lossy(&r.body).starts_with("GET /smuggled-"), "the chunk is body data");
            }), "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{SMHEX}\r\n{SM}\r\n0\r\n\r\n"),
            case("cl.te-uppercase-chunked", 200, n, Fwd::Once(|r| {
                no_length_framing_conflict(r);
                assert!(r.body.is_empty());
            }), "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: {SMLEN5}\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n{SM}"),
            // RFC 9112 §6.3 (4): chunked not the final coding of a request → 400 and close.
            case("te-chunked-identity", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SM}"),
            case("te-chunked-identity-no-cl", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SM}"),
            case("te-xchunked", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SM}"),
            case("te-xchunked-no-cl", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SM}"),
            case("te-two-fields-chunked-then-identity", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SM}"),
            // RFC 9112 §5.1: whitespace between field name and colon → 400.
            case("te-space-before-colon", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SM}"),
            case("te-vertical-tab", 400, n, Fwd::Nothing, &b"POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SM}"[..]),
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
            case("te-in-http10", 400, n, Fwd::Nothing, "POST /c/{T} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SM}"),
            // A broken chunked body is found while streaming it: the head may be on its way.
            case("chunk-size-not-hex", 400, n, Fwd::Unchecked, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{SM}"),
            case("chunk-size-overflow", 400, n, Fwd::Unchecked, "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nhello\r\n0\r\n\r\n{SM}"),
        ],
    )
    .await;
}

/// RFC 9112 §6.1: "A server that receives a request message with a transfer coding it does
/// not understand SHOULD respond with 501 (Not Implemented)." wsgate de-chunks and
/// re-frames the body, so it cannot pass `gzip` on: it must refuse, not drop the coding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_wsgate_cannot_pass_on_gets_501() {
    run_cases(
        "tecoding",
        vec![case(
            "te-gzip-chunked",
            501,
            Some(true),
            Fwd::Nothing,
            "POST /c/{T} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{SM}",
        )],
    )
    .await;
}

// ---------------------------------------------------------------- upgrades

fn no_upgrade_forwarded(r: &RecordedRequest) {
    assert_eq!(r.header("upgrade"), None, "Upgrade must not reach the backend");
    assert_eq!(r.header("http2-settings"), None, "HTTP2-Settings must not reach the backend");
    let conn = r.header("connection").unwrap_or("").to_ascii_lowercase();
    assert!(!conn.contains("upgrade"), "Connection: {conn}");
}

/// `Upgrade: h2c` and `Upgrade: websocket, h2c` are served as plain HTTP (docs/configuration.md,
/// "What the backend receives").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_websocket_upgrades_are_served_as_plain_http() {
    run_cases(
        "upgrade",
        vec![
            case("h2c", 200, None, Fwd::Once(no_upgrade_forwarded),
                 "GET /c/{T} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
            case("websocket-and-h2c", 200, None, Fwd::Once(no_upgrade_forwarded),
                 format!("GET /c/{{T}} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n")),
        ],
    )
    .await;
}

/// RFC 6455 §4.1: the handshake is a GET. A POST upgrade carrying a body (here a complete
/// request) is refused before any backend is contacted, and the body is not read as a
/// next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_on_post_with_a_body_gets_400() {
    run_cases(
        "postupgrade",
        vec![case("post-upgrade-with-body", 400, Some(true), Fwd::Nothing,
            format!("POST /c/{{T}} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\nContent-Length: {{SMLEN}}\r\n\r\n{{SM}}"))],
    )
    .await;
}

/// A request pipelined in the same write right after a WebSocket upgrade request.
///
/// Bytes a client sends behind its upgrade request are the session's first client bytes,
/// read as frames like every later byte (dropping them could cut a frame in two). An HTTP
/// request there is no frame, so the session is failed: the client gets Close 1002 and its
/// connection closed, the backend a Close 1001, and no backend ever gets the pipelined
/// bytes as an HTTP request. When the upgrade is refused (by wsgate or by the backend) the
/// connection is closed after the one answer, so the pipelined request is never served
/// either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pipelined_after_an_upgrade_is_never_served() {
    let fx = fixture();
    let mut healthy = fx.healthy_session().await;

    // 1. Accepted upgrade (the WebSocket echo backend) + pipelined request.
    let token = "pipeline-accepted";
    let plain_before = fx.chat.lock().unwrap().health_hits();
    let mut s = TcpStream::connect(fx.addr).await.unwrap();
    let mut bytes = ws_upgrade_request(&format!("/ws/{token}"), "x").into_bytes();
    bytes.extend(expand(b"{SM}", token));
    s.write_all(&bytes).await.unwrap();
    let r = read_raw_response(&mut s, RawOpts { linger: Duration::from_millis(300), ..Default::default() }).await;
    assert_eq!(r.status, Some(101), "{}\n{}", r.summary(), fx.gw.logs());
    assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT));
    assert_eq!(r.status_lines(), 1, "exactly one response: {:?}", String::from_utf8_lossy(&r.raw));
    assert!(r.closed, "the session is failed: {:?}", String::from_utf8_lossy(&r.raw));
    let head_end = r.raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a 101 head") + 4;
    assert_eq!(
        &r.raw[head_end..head_end + 4],
        &[0x88, 0x10, 0x03, 0xEA],
        "Close 1002 (\"protocol error\") follows the 101"
    );
    drop(s);
    assert!(
        fx.seen("/smuggled-").iter().all(|r| !r.path.contains(token)),
        "the HTTP backend got the pipelined request"
    );
    assert_eq!(
        fx.chat.lock().unwrap().health_hits(),
        plain_before,
        "the WebSocket backend got the pipelined bytes as an HTTP request"
    );
    println!("{token:48} -> 101, then Close 1002: the pipelined bytes are no frame");
    fx.unharmed(&mut healthy, token).await;

    // 2. Refused by wsgate (version 8 → 426) and 3. declined by the backend (it answers
    // 200 instead of 101): one answer, then the connection is closed.
    run_cases(
        "pipeline",
        vec![
            case("refused-426", 426, Some(true), Fwd::Nothing,
                 format!("GET /ws/{{T}} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n{{SM}}")),
            case("declined-by-backend", 200, Some(true), Fwd::Once(|r| assert_eq!(r.header("upgrade"), Some("websocket"))),
                 format!("GET /c/{{T}} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n{{SM}}")),
        ],
    )
    .await;
}

// ---------------------------------------------------------------- half-close

/// A client may shut down its sending side once the request is complete (e.g.
/// `nc -N`, `shutdown(SHUT_WR)`); the response must still be delivered. (RFC 9112 §9.6 only
/// has a server close after responding.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "Pingora limit: a client EOF while the response is pending aborts the request in Pingora's proxy loop (proxy_h1), before any hook runs"]
async fn a_client_that_half_closes_after_its_request_still_gets_the_response() {
    let fx = fixture();
    let mut healthy = fx.healthy_session().await;
    let mut verdicts = Verdicts::new();
    for (name, req) in [
        ("half-close-get", "GET /c/{T} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("half-close-get-connection-close", "GET /c/{T} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("half-close-post", "POST /c/{T} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
        ("half-close-http10", "GET /c/{T} HTTP/1.0\r\nHost: x\r\n\r\n"),
    ] {
        let token = format!("halfclose-{name}");
        let r =
            raw_exchange(fx.addr, &expand(req.as_bytes(), &token), RawOpts { half_close: true, ..Default::default() })
                .await;
        let mut problems = Vec::new();
        if r.status != Some(200) || !r.body.ends_with(token.as_bytes()) {
            problems.push(format!("expected 200 with the backend's body, got {}", r.summary()));
        }
        verdicts.record(&token, &r.summary(), problems);
        fx.unharmed(&mut healthy, &token).await;
    }
    verdicts.assert_none_wrong(&fx.gw);
}

// ---------------------------------------------------------------- a client that never reads

/// A WebSocket client that never reads while its backend streams 200 MiB at it: wsgate's
/// memory must stay bounded (back-pressure reaches the backend), other sessions keep
/// working, and the flooded session can be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_does_not_grow_wsgate_memory() {
    use futures_util::{SinkExt, StreamExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio_tungstenite::tungstenite::Message;
    const FLOOD_MIB: u64 = 200;
    const BOUND_MIB: u64 = 64;

    let sent = Arc::new(AtomicU64::new(0));
    let sent_in = sent.clone();
    let flood = RawBackend::start(move |s| {
        let sent = sent_in.clone();
        async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else { return };
            let chunk = vec![0x5a_u8; 1 << 20];
            while let Some(Ok(msg)) = ws.next().await {
                if msg == Message::text("flood") {
                    for _ in 0..FLOOD_MIB {
                        if ws.send(Message::binary(chunk.clone())).await.is_err() {
                            return;
                        }
                        sent.fetch_add(1 << 20, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let echo = WsBackend::start("echo");
    let rec = RecordingBackend::start();
    let port = free_port();
    let cfg = Config::new()
        .listen(port)
        .upstream("flood", Upstream::one(flood.addr))
        .upstream("echo", Upstream::one(echo.addr()))
        .upstream("web", Upstream::one(rec.addr()))
        .route(Route::to("flood").path_prefix("/flood"))
        .route(Route::to("echo").path_prefix("/ws"))
        .route(Route::to("web").path_prefix("/"));
    let gw = Wsgate::start_and_wait(&cfg, &[port]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut healthy, _) = ws_connect(&format!("ws://{addr}/ws/healthy"), &[]).await.unwrap();
    assert_eq!(ws_echo_text(&mut healthy, "warm-up").await, "warm-up");

    // The never-reading client: a raw handshake, one "flood" frame, then no reads at all.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(ws_upgrade_request("/flood", "x").as_bytes()).await.unwrap();
    let r = read_raw_response(&mut s, RawOpts { linger: Duration::from_millis(100), ..Default::default() }).await;
    assert_eq!(r.status, Some(101), "{}\n{}", r.summary(), gw.logs());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(gw.pid());
    assert!(idle > 0, "cannot read VmRSS of wsgate");
    s.write_all(&ws_frame(0x1, b"flood", true)).await.unwrap();

    let start = Instant::now();
    let mut peak = idle;
    while start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(gw.pid()));
    }
    let sent_mib = sent.load(Ordering::Relaxed) >> 20;
    println!(
        "never-reading client: wsgate RSS idle {} MiB, peak {} MiB over 3 s (+{} MiB); backend got {sent_mib} MiB of {FLOOD_MIB} MiB out",
        idle / 1024,
        peak / 1024,
        peak.saturating_sub(idle) / 1024
    );
    assert!(sent_mib > 0, "the flood never started\n{}", gw.logs());
    assert!(
        peak.saturating_sub(idle) < BOUND_MIB * 1024,
        "wsgate RSS grew from {idle} KiB to {peak} KiB (bound +{BOUND_MIB} MiB) behind a client that never reads"
    );
    assert!(sent_mib < FLOOD_MIB, "back-pressure never reached the backend: all {FLOOD_MIB} MiB were accepted");
    // Meanwhile other sessions and requests are unaffected.
    assert_unharmed(&gw, addr, &mut healthy, "/after", "never-reading-client (during)").await;

    // Closing the flooded session ends it (no byte stuck forever, no panic).
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_unharmed(&gw, addr, &mut healthy, "/after", "never-reading-client (after close)").await;
}
