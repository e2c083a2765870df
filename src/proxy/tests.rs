//! `Gateway::request_filter` driven directly: a Pingora `Session` over an in-memory stream
//! (`tokio::io::duplex`, as Pingora's own proxy tests do), the request head read by
//! `read_request()`, then the hook, then the bytes it wrote to the client.

use super::*;
use crate::lifecycle::ready::Readiness;
use crate::listener::tls::ListenerCertificates;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::SocketDigest;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Limits low enough to reach in a test (the header bytes just above what an 8 KiB target
/// needs, so that 414 is tested apart from 431); `/api` is the only route, so anything else
/// is 404. The request rate only applies to requests with a client address.
const CONFIG: &str = "\
listeners:
  - address: 127.0.0.1:8080
access_log: {path: off}
upstreams:
  app: {backends: ['127.0.0.1:1']}
routes:
  - {path_prefix: /api, upstream: app}
limits:
  max_request_headers: 4
  max_request_header_bytes: 8300
  requests_per_second_per_ip: 1
";

/// The only place a `Gateway` is built, as `lifecycle::server::run` builds it.
fn gateway(yaml: &str) -> Gateway {
    let config = Arc::new(crate::config::parse(yaml, "test.yaml", Path::new("/nonexistent")).expect("valid config"));
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new(config.upstreams.len());
    let certificates = Arc::new(ListenerCertificates::load(&config.listeners).expect("no TLS listeners"));
    let live =
        Live::new(config.clone(), PathBuf::from("/nonexistent/test.yaml"), metrics.clone(), readiness, certificates);
    let access_log = AccessLog::open(&config.access_log).expect("access log off");
    let drain = Drain::new(config.drain_window);
    let limits = Arc::new(Limits::new(metrics.clone()));
    Gateway::new(live, metrics, limits, access_log, drain)
}

/// What `request_filter` did with one request.
struct Outcome {
    /// `Ok(true)`: answered by the hook; `Ok(false)`: left to the proxy.
    answered: bool,
    ctx: RequestCtx,
    /// Everything written to the client.
    response: String,
}

impl Outcome {
    fn status(&self) -> &str {
        self.response.get(9..12).unwrap_or("")
    }

    fn has_header(&self, line: &str) -> bool {
        let head = self.response.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n").any(|l| l.eq_ignore_ascii_case(line))
    }
}

/// Runs `request` (a complete head) through `request_filter` from client address `client`
/// (`None`: a stream without a socket, as a mock has).
async fn filter(gw: &Gateway, request: &[u8], client: Option<std::net::SocketAddr>) -> Outcome {
    let (mut peer, server) = tokio::io::duplex(64 * 1024);
    peer.write_all(request).await.unwrap();
    let mut session = Session::new_h1(Box::new(server));
    if let Some(addr) = client {
        // A mock stream has no socket digest, so no client address: give it one. The fd is
        // never used, as the address is already there.
        let digest = SocketDigest::from_raw_fd(-1);
        digest.peer_addr.set(Some(PeerAddr::Inet(addr))).unwrap();
        session.downstream_session.digest_mut().expect("an HTTP/1 session has a digest").socket_digest =
            Some(Arc::new(digest));
    }
    assert!(session.read_request().await.expect("a valid head"), "a head was read");
    let mut ctx = gw.new_ctx();
    let answered = gw.request_filter(&mut session, &mut ctx).await.expect("request_filter");
    drop(session); // closes the server side: the client reads to the end
    let mut response = Vec::new();
    peer.read_to_end(&mut response).await.unwrap();
    Outcome { answered, ctx, response: String::from_utf8(response).expect("a text answer") }
}

fn refusals(gw: &Gateway, cause: &str) -> u64 {
    gw.metrics.refusals.with_label_values(&[cause]).get()
}

#[tokio::test]
async fn a_target_over_8_kib_is_414_and_8_kib_is_routed() {
    let gw = gateway(CONFIG);
    let at_limit = format!("/api/{}", "a".repeat(admission::MAX_TARGET_BYTES - 5));
    let over = format!("{at_limit}b");
    let head = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");

    let out = filter(&gw, head(&over).as_bytes(), None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "414", "{}", out.response);
    assert!(out.has_header("Connection: close"), "{}", out.response);
    assert!(out.response.ends_with("\r\n\r\nrequest target too long\n"), "{}", out.response);

    let out = filter(&gw, head(&at_limit).as_bytes(), None).await;
    assert!(!out.answered, "exactly 8 KiB is allowed: {}", out.response);
    assert_eq!(out.response, "");
}

#[tokio::test]
async fn http_1_1_without_host_is_400_but_http_1_0_is_not() {
    let gw = gateway(CONFIG);
    let out = filter(&gw, b"GET /api HTTP/1.1\r\n\r\n", None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "400", "{}", out.response);
    assert!(out.response.ends_with("missing Host header\n"), "{}", out.response);

    let out = filter(&gw, b"GET /api HTTP/1.0\r\n\r\n", None).await;
    assert!(!out.answered, "HTTP/1.0 needs no Host: {}", out.response);
    assert_eq!(out.ctx.route, Some(0));
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501() {
    let gw = gateway(CONFIG);
    let out = filter(&gw, b"POST /api HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "501", "{}", out.response);
    assert!(out.has_header("Connection: close"), "{}", out.response);
    assert!(out.response.ends_with("unsupported transfer coding\n"), "{}", out.response);
}

#[tokio::test]
async fn too_many_or_too_large_header_fields_are_431() {
    let gw = gateway(CONFIG);
    // max_request_headers: 4
    let four = b"GET /api HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let out = filter(&gw, four, None).await;
    assert!(!out.answered, "4 fields are allowed: {}", out.response);
    let five = b"GET /api HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let out = filter(&gw, five, None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "431", "{}", out.response);
    assert!(out.has_header("Connection: close"), "{}", out.response);
    assert!(out.response.ends_with("request header fields too large\n"), "{}", out.response);

    // max_request_header_bytes: 8300, counted as name + value + 4 per field, plus the target:
    // (4 + 1 + 4) for Host, (5 + n + 4) for X-Big, 4 for /api: 8300 with n = 8278.
    let head = |n: usize| format!("GET /api HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "v".repeat(n));
    let out = filter(&gw, head(8278).as_bytes(), None).await;
    assert!(!out.answered, "8300 bytes are allowed: {}", out.response);
    let out = filter(&gw, head(8279).as_bytes(), None).await;
    assert_eq!(out.status(), "431", "8301 bytes are not: {}", out.response);
    assert_eq!(refusals(&gw, "headers_too_large"), 2);
}

#[tokio::test]
async fn requests_over_the_rate_per_client_are_429_with_retry_after() {
    let gw = gateway(CONFIG);
    let client = Some("10.0.0.1:40000".parse().unwrap());
    let request = b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n";
    let first = filter(&gw, request, client).await;
    assert!(!first.answered, "the first request is within the rate: {}", first.response);
    assert_eq!(first.ctx.client_ip, Some("10.0.0.1".parse().unwrap()));
    // The rate is counted per 1 s window of real time: of two more requests at least one
    // falls in a window that already holds one, whatever second boundary passes meanwhile.
    let (second, third) = (filter(&gw, request, client).await, filter(&gw, request, client).await);
    let refused = if second.answered { &second } else { &third };
    assert!(refused.answered, "a second request in the same second is refused");
    assert_eq!(refused.status(), "429", "{}", refused.response);
    assert!(refused.has_header("Retry-After: 1"), "{}", refused.response);
    assert!(refused.has_header("Connection: close"), "{}", refused.response);
    assert!(refusals(&gw, "rate_per_ip") >= 1);

    // Another client has a rate of its own.
    let other = filter(&gw, request, Some("10.0.0.2:40000".parse().unwrap())).await;
    assert!(!other.answered, "{}", other.response);
}

#[tokio::test]
async fn a_request_without_a_client_address_is_not_rate_limited() {
    // What a mock stream without a socket digest gives: no address, so no per-client limits.
    let gw = gateway(CONFIG);
    for _ in 0..3 {
        let out = filter(&gw, b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n", None).await;
        assert!(!out.answered, "{}", out.response);
        assert_eq!(out.ctx.client_ip, None);
    }
}

#[tokio::test]
async fn no_matching_route_is_404() {
    let gw = gateway(CONFIG);
    let out = filter(&gw, b"GET /elsewhere HTTP/1.1\r\nHost: a\r\n\r\n", None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "404", "{}", out.response);
    assert!(out.response.ends_with("no route for this request\n"), "{}", out.response);
    assert_eq!(out.ctx.route, None);
}

#[tokio::test]
async fn a_routed_plain_request_is_left_to_the_proxy() {
    let gw = gateway(CONFIG);
    // An IPv4 client of a dual-stack listener: the hook takes its address as IPv4.
    let client = Some("[::ffff:192.0.2.7]:5000".parse().unwrap());
    let out = filter(&gw, b"GET /api/items?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", client).await;
    assert!(!out.answered, "not answered by the hook");
    assert_eq!(out.response, "", "nothing written to the client");
    assert_eq!(out.ctx.route, Some(0));
    assert_eq!(out.ctx.client_ip, Some("192.0.2.7".parse().unwrap()));
    assert!(!out.ctx.tls);
    assert_eq!(out.ctx.held.admitted.len(), 1, "it holds its place under the per-client limits");
    assert!(out.ctx.upgrade.is_none());
}

#[tokio::test]
async fn a_connection_header_nominating_a_protected_field_is_400_before_a_backend_is_chosen() {
    let gw = gateway(CONFIG);
    let head = b"GET /api HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Forwarded-For\r\n\r\n";
    let out = filter(&gw, head, None).await;
    assert!(out.answered);
    assert_eq!(out.status(), "400", "{}", out.response);
    assert!(out.response.contains("nominates protected field `x-forwarded-for`"), "{}", out.response);
    assert_eq!(out.ctx.attempts.backend, None, "no backend was chosen");

    let fine = b"GET /api HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Custom\r\n\r\n";
    assert!(!filter(&gw, fine, None).await.answered, "an unprotected nomination passes");
}
