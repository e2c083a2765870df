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
mod extended_connect;
mod head;
pub(crate) mod limits;
pub(crate) mod proxy_protocol;
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
use extended_connect::ExtendedConnect;
use head::HeadDeadline;
use log::debug;
use pingora::apps::{HttpServerApp, ServerApp};
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
/// It also makes the accept loop yield the worker before its next accept. Pingora's accept
/// loop takes connections as long as tokio's cooperative budget lets it (128 at a time), so
/// under a flood, sessions already open would wait behind a batch of accepts and the tasks
/// spawned for them; one accept per turn lets their ready I/O in between, as nginx takes
/// one connection per event-loop turn (bench/RESULTS.md has the latencies). The filter
/// spends the rest of the loop's budget rather than awaiting a yield: Pingora drops the
/// accept future when shutdown comes, and an await here would be a point where the
/// accepted connection is dropped with it (a reset during an upgrade's hand-over). With
/// the budget spent, the loop yields inside the next `accept()`, before taking a socket.
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
        spend_budget();
        let snapshot = self.live.snapshot();
        let config = &snapshot.config;
        // Canonical, as the proxy takes it: an IPv4 client of a dual-stack listener is IPv4.
        let client = addr.map(|a| a.ip().to_canonical()).filter(|ip| !config.trusts(*ip));
        // The filter cannot tell which listener accepted the connection; where one of them
        // takes PROXY headers, the peer may be a balancer, and the gate checks the client.
        let client = client.filter(|_| !config.listeners.iter().any(|l| l.proxy_protocol));
        self.limits.screen_connection(&config.limits, client).is_ok()
    }
}

/// Spends the current task's cooperative budget without awaiting, so that its next
/// budget-aware poll (the listener's accept) yields to the scheduler. At most 128 steps.
fn spend_budget() {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..=u8::MAX {
        match tokio::task::coop::poll_proceed(&mut cx) {
            std::task::Poll::Ready(spent) => spent.made_progress(),
            std::task::Poll::Pending => return,
        }
    }
}

/// Wraps the proxy application (`HttpProxy`) so every connection passes the gate first.
pub(crate) struct GatedApp<A> {
    inner: Arc<A>,
    /// The same proxy, for HTTP/2 connections of `websocket_over_http2` listeners.
    extended: Arc<ExtendedConnect<A>>,
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
        let inner = Arc::new(inner);
        let extended = Arc::new(ExtendedConnect::new(inner.clone()));
        GatedApp { inner, extended, limits, live, drain, first_heads: Default::default(), tls }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GatedApp<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let snapshot = self.live.snapshot();
        let config = &snapshot.config.limits;
        let digest = stream.get_socket_digest();
        let peer = digest.as_ref().and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_canonical()));
        let local = digest.as_ref().and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        // Over a limit: dropping the stream closes the connection before anything is read.
        let mut admitted = self.limits.admit_connection(config, None).ok()?;
        let head = HeadDeadline::first(config.header_timeout, self.first_heads.clone());
        let proxied = local.and_then(|l| snapshot.config.listener_at(l)).is_some_and(|l| l.proxy_protocol);
        let (stream, ip) = match proxied {
            false => (stream, peer),
            true => {
                let (stream, client) = proxy_header(stream, head.deadline(), &self.limits, peer).await?;
                (stream, client.map(|a| a.ip().to_canonical()).or(peer))
            }
        };
        let client = ip.filter(|ip| !snapshot.config.trusts(*ip));
        let screened = !snapshot.config.listeners.iter().any(|l| l.proxy_protocol);
        self.limits.admit_client(config, client, !screened, &mut admitted).ok()?;
        let unanswered = self.drain.in_flight();
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
        let listener = local.and_then(|l| snapshot.config.listener_at(l));
        if http2 && listener.and_then(|l| l.tls.as_ref()).is_some_and(|t| t.websocket_over_http2) {
            return self.extended.process_new(Box::new(gated), shutdown).await;
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

/// A connection whose PROXY header was read, and the client it carried.
type Carried = (Stream, Option<std::net::SocketAddr>);

/// A `proxy_protocol` connection's header, by `deadline`: the stream with the carried
/// client as its peer, or `None` (closed, counted as a refusal). Boxed, as `tls_handshake`.
fn proxy_header<'a>(
    stream: Stream,
    deadline: tokio::time::Instant,
    limits: &'a Limits,
    peer: Option<std::net::IpAddr>,
) -> Pin<Box<dyn Future<Output = Option<Carried>> + Send + 'a>> {
    Box::pin(async move {
        match tokio::time::timeout_at(deadline, proxy_protocol::take(stream)).await {
            Ok(Ok(taken)) => Some(taken),
            Ok(Err(proxy_protocol::BadHeader::Silent)) => None,
            Ok(Err(e)) => {
                debug!("PROXY header from {peer:?} refused: {e:?}");
                limits.refuse(Refusal::ProxyProtocol);
                None
            }
            Err(_) => {
                limits.refuse(Refusal::HeaderTimeout);
                None
            }
        }
    })
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
