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
//!   arms that when a request, body included, is done (`before_next_request`). On an
//!   HTTP/2 connection the first request is complete at the end of its first header block
//!   (preface, SETTINGS and a HEADERS frame without END_HEADERS are not): then the client
//!   gets a GOAWAY. (An idle HTTP/2 connection is closed by Pingora's h2 idle timeout, set
//!   to `keepalive_timeout` in `lifecycle/server.rs`.)
//! - It closes an HTTP/1 connection whose client accepts no byte for `limits.send_timeout`
//!   (`send.rs`).
//!
//! Both live in a wrapper around the connection's stream, so the connection's place under
//! the limits is released exactly when the stream is dropped, also when a WebSocket
//! session has taken the stream out of Pingora's HTTP session.

pub(crate) mod certificates;
mod head;
pub(crate) mod limits;
mod send;
mod stream;
#[cfg(test)]
mod tests;
pub(crate) mod tls;

pub use head::{H2FirstRequest, HeadEnd};
pub(crate) use stream::GatedStream;

use crate::config::model::LimitsConfig;
use crate::lifecycle::drain::Drain;
use crate::lifecycle::reload::Live;
use crate::listener::limits::{Limits, Refusal};
use crate::listener::tls::TlsAcceptors;
use async_trait::async_trait;
use head::HeadDeadline;
use log::debug;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::listeners::ConnectionFilter;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
pub(crate) struct AcceptFilter {
    pub(crate) limits: Arc<Limits>,
    pub(crate) live: Arc<Live>,
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
pub(crate) struct GatedApp<A> {
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
    pub(crate) fn new(
        inner: A,
        limits: Arc<Limits>,
        live: Arc<Live>,
        drain: Arc<Drain>,
        tls: TlsAcceptors,
    ) -> GatedApp<A> {
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
                let counted = GatedStream::new(stream, None, None, None, Some(admitted), self.limits.clone());
                (tls_handshake(acceptor, counted, head.deadline(), &self.limits, ip).await?, None)
            }
        };
        let http2 = stream.selected_alpn_proto() == Some(ALPN::H2);
        let send_timeout = (!http2).then_some(config.send_timeout);
        let mut gated =
            GatedStream::new(stream, Some(head), send_timeout, Some(unanswered), admitted, self.limits.clone());
        if http2 {
            gated.expect_http2();
        }
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
pub(crate) fn before_next_request(session: &mut ServerSession, limits: &LimitsConfig) {
    if session.get_keepalive().is_none() {
        return; // the connection closes after this request
    }
    session.set_keepalive(Some(limits.keepalive_timeout.as_secs()));
    let body_done = session.is_body_done();
    let Some(stream) = session.stream() else { return };
    GatedStream::renew_send_timeout(stream, limits.send_timeout);
    if body_done {
        GatedStream::expect_next_head(stream, limits.header_timeout);
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
