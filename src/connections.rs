//! The connection gate: what a downstream connection goes through before Pingora's HTTP
//! layer reads from it.
//!
//! - It counts connections, in all and per client address, and closes those over
//!   `limits.max_connections` / `limits.max_connections_per_ip` at once; `AcceptFilter`
//!   already turns most of them (and those over `connections_per_second_per_ip`) away in
//!   the accept loop.
//! - On TLS listeners it runs the TLS handshake, once the connection is counted.
//! - It gives the TLS handshake and the first request's head `limits.header_timeout` in
//!   all, however slowly they trickle in (slowloris): then the client gets a 408 (a client
//!   still in its handshake is just closed). Pingora itself only bounds each single read
//!   (60 s), which a byte a minute never hits, and a TLS handshake to 60 s. Each later
//!   head on a keep-alive connection gets `header_timeout` from its first byte: the proxy
//!   arms that when a request, body included, is done (`before_next_request`).
//!
//! Both live in a wrapper around the connection's stream, so the connection's place under
//! the limits is released exactly when the stream is dropped, also when a WebSocket
//! session has taken the stream out of Pingora's HTTP session.

use crate::config::model::LimitsConfig;
use crate::drain::{Drain, InFlight};
use crate::limits::{Admitted, Limits, Refusal};
use crate::live::Live;
use crate::tls::TlsAcceptors;
use pingora::listeners::tls::Acceptor;
use log::debug;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::listeners::ConnectionFilter;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest, SocketDigest, TimingDigest};
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{Peek, Shutdown, Ssl, Stream, UniqueID, UniqueIDType, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Turns connections over a limit away in Pingora's accept loop, before a task is spawned
/// for them (Pingora's `connection_filter`), so that a connection flood costs little more
/// than its accepts.
///
/// It also yields the worker once per accepted connection. Pingora's accept loop takes
/// connections as long as tokio's cooperative budget lets it (128 at a time), so under a
/// flood, sessions already open would wait behind a batch of accepts and the tasks spawned
/// for them; yielding each time lets their ready I/O in between, as nginx takes one
/// connection per event-loop turn. With one worker that halved the sessions' p99 echo
/// latency under bench/run.sh's flood (0.9-1.3 ms against 1.5-3.3 ms with a yield per 16
/// connections, at the same CPU per connection; bench/RESULTS.md, 2026-11-26).
pub struct AcceptFilter {
    pub limits: Arc<Limits>,
    pub live: Arc<Live>,
}

impl std::fmt::Debug for AcceptFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptFilter")
    }
}

#[async_trait]
impl ConnectionFilter for AcceptFilter {
    async fn should_accept(&self, addr: Option<&std::net::SocketAddr>) -> bool {
        tokio::task::yield_now().await;
        let snapshot = self.live.snapshot();
        // Canonical, as the proxy takes it: an IPv4 client of a dual-stack listener is IPv4.
        self.limits.screen_connection(&snapshot.config.limits, addr.map(|a| a.ip().to_canonical())).is_ok()
    }
}

/// Wraps the proxy application (`HttpProxy`) so every connection passes the gate first.
pub struct GatedApp<A> {
    inner: Arc<A>,
    limits: Arc<Limits>,
    live: Arc<Live>,
    drain: Arc<Drain>,
    /// Connections whose first request head has not been read in full yet.
    first_heads: Arc<AtomicUsize>,
    tls: TlsAcceptors,
}

/// At shutdown (an upgrade hands the sockets over, or SIGTERM), how long a connection
/// accepted just before the listener stopped gets for its first request head to arrive.
const FIRST_HEAD_GRACE: Duration = Duration::from_secs(1);

impl<A> GatedApp<A> {
    pub fn new(inner: A, limits: Arc<Limits>, live: Arc<Live>, drain: Arc<Drain>, tls: TlsAcceptors) -> GatedApp<A> {
        GatedApp { inner: Arc::new(inner), limits, live, drain, first_heads: Default::default(), tls }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GatedApp<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let snapshot = self.live.snapshot();
        let config = &snapshot.config.limits;
        let digest = stream.get_socket_digest();
        let ip = digest.as_ref().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_canonical()));
        // Over a limit: dropping the stream closes the connection before anything is read.
        let admitted = self.limits.admit_connection(config, ip).ok()?;
        let head = HeadDeadline::first(config.header_timeout, self.first_heads.clone());
        let unanswered = self.drain.in_flight();
        let local = digest.as_ref().and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        let (stream, admitted) = match local.and_then(|local| self.tls.for_local_address(local)) {
            None => (stream, Some(admitted)),
            Some(acceptor) => {
                // The connection keeps its place under the limits from below the TLS layer.
                let counted = GatedStream::new(stream, None, None, Some(admitted), self.limits.clone());
                (tls_handshake(acceptor, counted, head.deadline(), &self.limits, ip).await?, None)
            }
        };
        let gated = GatedStream::new(stream, Some(head), Some(unanswered), admitted, self.limits.clone());
        self.inner.process_new(Box::new(gated), shutdown).await
    }

    /// Pingora calls this once the listener has stopped, and the proxy's cleanup drops every
    /// connection still waiting for a request head, also one accepted a moment before whose
    /// request is on its way (its client would see the connection closed unanswered). Those
    /// get FIRST_HEAD_GRACE to arrive first; they are then served with `Connection: close`.
    async fn cleanup(&self) {
        let deadline = tokio::time::Instant::now() + FIRST_HEAD_GRACE;
        while self.first_heads.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.inner.cleanup().await
    }
}

/// After each request on a connection that stays open: Pingora would wait for the next
/// request with no time limit (or as long as the client's `Keep-Alive: timeout=` asks), so
/// bound that by `keepalive_timeout`, and give the next head `header_timeout` from its
/// first byte, but only once the request body is all in: bytes of it still on their way
/// are not the next head.
pub fn before_next_request(session: &mut ServerSession, limits: &LimitsConfig) {
    if session.get_keepalive().is_none() {
        return; // the connection closes after this request
    }
    session.set_keepalive(Some(limits.keepalive_timeout.as_secs()));
    if session.is_body_done() {
        if let Some(stream) = session.stream() {
            GatedStream::expect_next_head(stream, limits.header_timeout);
        }
    }
}

/// The TLS handshake of a counted connection, by `deadline`. Boxed: inline, its state
/// (a rustls connection) would be copied into every connection's future, also on plain
/// listeners, where a connection flood pays for each byte of it.
fn tls_handshake<'a>(
    acceptor: &'a Acceptor,
    counted: GatedStream,
    deadline: tokio::time::Instant,
    limits: &'a Limits,
    ip: Option<std::net::IpAddr>,
) -> Pin<Box<dyn Future<Output = Option<Stream>> + Send + 'a>> {
    Box::pin(async move {
        match tokio::time::timeout_at(deadline, acceptor.tls_handshake(counted)).await {
            Ok(Ok(tls)) => Some(Box::new(tls) as Stream),
            Ok(Err(e)) => {
                // Scanners and broken clients: one line each would flood the log.
                debug!("TLS handshake with {ip:?} failed: {e}");
                None
            }
            Err(_) => {
                limits.refuse(Refusal::HeaderTimeout);
                None
            }
        }
    })
}

/// Sent when a request's head is not complete in time.
const HEADER_TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 24\r\nConnection: close\r\n\r\nrequest header timeout\r\n";

/// A downstream stream holding its place under the connection limits, with the deadline
/// of the first request's head while that is still being read.
pub struct GatedStream {
    inner: Stream,
    head: Option<HeadDeadline>,
    /// Set (to the header timeout, in ms) when a keep-alive connection's request is done:
    /// the next head gets a deadline of its own from its first byte on.
    next_head_ms: AtomicU64,
    limits: Arc<Limits>,
    /// Keeps a draining process alive until the connection's first answer is on its way
    /// (by then the request counts as in flight itself), so a connection accepted just
    /// before the drain began is served, not cut off by the process's exit.
    unanswered: Option<InFlight>,
    /// The connection's place under the limits, held by the layer nearest the socket: on a
    /// TLS listener the one inside the TLS stream, which exists from accept on.
    _admitted: Option<Admitted>,
}

impl std::fmt::Debug for GatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedStream").field("inner", &self.inner).field("head", &self.head).finish()
    }
}

impl HeadDeadline {
    /// A connection's first head: a timer, so that a client sending nothing at all is cut
    /// off too.
    fn first(header_timeout: Duration, first_heads: Arc<AtomicUsize>) -> HeadDeadline {
        first_heads.fetch_add(1, Ordering::AcqRel);
        let due = Due::Timer(Box::pin(tokio::time::sleep(header_timeout)));
        HeadDeadline { due, end: HeadEnd::default(), _pending: Some(PendingHead(first_heads)) }
    }

    /// A later head on a keep-alive connection, from its first byte: checked as its bytes
    /// arrive, which costs no timer per request. A client that stops sending altogether is
    /// `keepalive_timeout`'s (Pingora's timeout on each read while it waits for a request).
    fn later(header_timeout: Duration) -> HeadDeadline {
        HeadDeadline { due: Due::At(tokio::time::Instant::now() + header_timeout), end: HeadEnd::default(), _pending: None }
    }

    fn deadline(&self) -> tokio::time::Instant {
        match &self.due {
            Due::Timer(timer) => timer.deadline(),
            Due::At(at) => *at,
        }
    }

    /// Whether the deadline has passed; a timer is polled with the reader's waker, so a
    /// reader parked on a silent client is woken when it passes.
    fn passed(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.due {
            Due::Timer(timer) => timer.as_mut().poll(cx).is_ready(),
            Due::At(at) => tokio::time::Instant::now() >= *at,
        }
    }
}

enum Due {
    Timer(Pin<Box<tokio::time::Sleep>>),
    At(tokio::time::Instant),
}

struct HeadDeadline {
    due: Due,
    end: HeadEnd,
    /// Only for a connection's first head: what a draining process waits for.
    _pending: Option<PendingHead>,
}

/// Counts a connection among those whose first head is still on its way, until dropped.
struct PendingHead(Arc<AtomicUsize>);

impl Drop for PendingHead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for HeadDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadDeadline").field("end", &self.end).finish()
    }
}

/// Finds where a request head ends (its first empty line) in bytes that arrive in pieces.
/// Line ends may be CRLF or a bare LF, as Pingora's parser accepts both; empty lines
/// before the request line are skipped (RFC 9112 §2.2), so they cannot end the head early.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeadEnd {
    seen_content: bool,
    line_empty: bool,
}

impl HeadEnd {
    /// Feeds the next bytes; true once the head is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.seen_content && self.line_empty => return true,
                b'\n' => self.line_empty = true,
                b'\r' => {}
                _ => {
                    self.seen_content = true;
                    self.line_empty = false;
                }
            }
        }
        false
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.head.as_mut().is_some_and(|head| head.passed(cx)) {
            return this.header_timed_out(cx);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if this.head.is_none() {
                let next_head_ms = this.next_head_ms.swap(0, Ordering::AcqRel);
                if next_head_ms > 0 {
                    this.head = Some(HeadDeadline::later(Duration::from_millis(next_head_ms)));
                }
            }
            if let Some(head) = &mut this.head {
                if head.passed(cx) {
                    return this.header_timed_out(cx);
                }
                if head.end.feed(&buf.filled()[before..]) {
                    this.head = None;
                }
            }
        }
        polled
    }
}

impl GatedStream {
    /// Answers 408 (written without waiting: it fits any socket buffer, and the connection
    /// is closed right after) and fails the read.
    fn header_timed_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.limits.refuse(Refusal::HeaderTimeout);
        let _ = Pin::new(&mut self.inner).poll_write(cx, HEADER_TIMEOUT_RESPONSE);
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        self.head = None;
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request header timeout")))
    }

    fn new(inner: Stream, head: Option<HeadDeadline>, unanswered: Option<InFlight>, admitted: Option<Admitted>, limits: Arc<Limits>) -> GatedStream {
        GatedStream { inner, head, next_head_ms: AtomicU64::new(0), limits, unanswered, _admitted: admitted }
    }

    /// A keep-alive connection's request is done: its next request head, from its first
    /// byte on, has `header_timeout` to be complete. `stream` is the downstream stream of an
    /// HTTP/1 session, if it is a gated one.
    fn expect_next_head(stream: &Stream, header_timeout: Duration) {
        if let Some(gated) = stream.as_any().downcast_ref::<GatedStream>() {
            gated.next_head_ms.store(header_timeout.as_millis().clamp(1, u64::MAX as u128) as u64, Ordering::Release);
        }
    }

    fn note_written(&mut self, written: &Poll<io::Result<usize>>) {
        if self.unanswered.is_some() && matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.unanswered = None;
        }
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_written(&written);
        written
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_written(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// Everything else Pingora asks of a stream is the wrapped stream's.

#[async_trait]
impl Shutdown for GatedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GatedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GatedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GatedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GatedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GatedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GatedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::HeadEnd;

    fn ends_at(input: &[u8]) -> Option<usize> {
        let mut end = HeadEnd::default();
        (0..input.len()).find(|&i| end.feed(&input[i..i + 1])).map(|i| i + 1)
    }

    #[test]
    fn finds_the_end_of_a_head_fed_in_any_pieces() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(ends_at(req), Some(req.len() - 4));
        for split in 0..req.len() {
            let mut end = HeadEnd::default();
            let done = end.feed(&req[..split]) || end.feed(&req[split..]);
            assert!(done, "split at {split}");
        }
        assert_eq!(ends_at(b"GET / HTTP/1.1\nHost: a\n\n"), Some(24), "bare LF line ends");
    }

    #[test]
    fn leading_empty_lines_and_partial_heads_do_not_end_it() {
        assert_eq!(ends_at(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(ends_at(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
        assert_eq!(ends_at(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"), Some(22));
    }
}
