//! wsgate's own full-duplex tunnel for upgraded connections.
//!
//! Why not Pingora's: in Pingora 0.9.1 (`proxy_h1.rs`) one `select!` loop serves both
//! directions and awaits each write inside its arm, so while it is blocked writing to a
//! backend that is itself blocked writing back, nobody reads: under bidirectional bulk
//! traffic both sockets fill and the session hangs for good. Here each direction is its own
//! pump (`pump.rs`) that only ever waits on its own reader or writer, so one side's
//! back-pressure never stops the other side from draining.
//!
//! Closing on wsgate's initiative (draining, an oversized message, a peer that broke the
//! protocol) is one `CloseRequest` both pumps read: each sends its peer the request's code
//! at the end of the frame in flight, forwards nothing more and waits for that peer's Close
//! reply; the tunnel ends once both replies are in or `CLOSING_TIMEOUT` has passed.

use super::branch::Branch;
use super::card::Card;
use super::keepalive;
use super::pump;
use super::shared::{CloseRequest, Shared};
pub(crate) use super::shared::{Departure, Direction, Initiator, Meters};
use crate::config::model::Keepalive;
use pingora::protocols::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Once one side has closed its TCP stream, the other gets this long to finish (unless the
/// WebSocket closing handshake is already complete, then the tunnel ends at once).
const HALF_CLOSE_LINGER: Duration = Duration::from_secs(10);
/// How long a session closing on wsgate's initiative waits for both peers' Close replies.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(10);
/// Once a peer is found dead, the other gets this long to take wsgate's Close.
const DEAD_PEER_LINGER: Duration = Duration::from_secs(1);
/// Why a tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TunnelEnd {
    /// Both directions reached end of stream.
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// A read or write failed (reset, broken pipe).
    Error(String),
    /// This peer accepted no bytes for `send_timeout` while wsgate held some for it.
    SendTimeout(Initiator),
    /// This peer answered nothing to wsgate's keepalive Ping within `ping_timeout`.
    DeadPeer(Initiator),
}

#[derive(Debug, Clone)]
pub(crate) struct TunnelStats {
    pub(crate) client_to_backend_bytes: u64,
    pub(crate) backend_to_client_bytes: u64,
    pub(crate) client_to_backend_messages: u64,
    pub(crate) backend_to_client_messages: u64,
    /// The first Close frame seen in either direction: its sender and code.
    pub(crate) first_close: Option<(Initiator, Option<u16>)>,
    /// The peer that broke RFC 6455 framing, if one did (the session was failed with 1002).
    pub(crate) protocol_error: Option<Initiator>,
    /// Why wsgate ended the session, when it did on its own initiative.
    pub(crate) departure: Option<Departure>,
    pub(crate) duration: Duration,
    pub(crate) end: TunnelEnd,
}

/// What ends a session besides its peers: idleness (by its activity clock, which the
/// rebalancer reads too), and `ending`, wsgate's own decision.
pub(crate) struct Ends<F> {
    pub(crate) idle_timeout: Duration,
    /// Pings to a silent side, and when it counts as dead.
    pub(crate) keepalive: Option<Keepalive>,
    pub(crate) ending: F,
    /// The session's card: its activity clock and counters.
    pub(crate) card: Arc<Card>,
}

/// One side of a session: its stream and the bytes already read from it with the handshake
/// (they are this direction's first bytes).
pub(crate) struct Endpoint {
    pub(crate) stream: Stream,
    pub(crate) early: Vec<u8>,
}

/// How a pump that writes to `peer` ended: `None` when the tunnel goes on. A stalled peer
/// (send timeout) is dropped while the other is told the session is going away.
fn failed(result: std::io::Result<()>, peer: Initiator, side: &str, shared: &Shared) -> Option<TunnelEnd> {
    match result {
        Ok(()) => None,
        Err(e) if pump::Stalled::is(&e) => {
            log::debug!("{peer:?} accepted no bytes for send_timeout; ending the session");
            shared.request_close(CloseRequest::stalled(peer));
            None
        }
        Err(e) => Some(TunnelEnd::Error(format!("{side}: {e}"))),
    }
}

/// Runs the tunnel until both sides are done, an error, or `idle_timeout` of silence.
/// `ending` resolves when wsgate must end this session itself (a drain, its lifetime, its
/// backend leaving), with why.
pub(crate) async fn run(
    client: Endpoint,
    backend: Endpoint,
    upstream_dir: &Direction,
    downstream_dir: &Direction,
    ends: Ends<impl std::future::Future<Output = Departure>>,
) -> TunnelStats {
    let Ends { idle_timeout, keepalive, ending, card } = ends;
    let shared = Shared::new(card, keepalive);
    let (client_read, client_write) = tokio::io::split(client.stream);
    let (backend_read, backend_write) = tokio::io::split(backend.stream);
    // Pinned where they are made, so each pump's state is stored once in the session's
    // future (moved into `supervise` and pinned there, a copy of each stayed behind).
    let upstream = std::pin::pin!(pump::run(client_read, backend_write, client.early, upstream_dir, &shared));
    let downstream = std::pin::pin!(pump::run(backend_read, client_write, backend.early, downstream_dir, &shared));
    let end = supervise(upstream, downstream, ending, idle_timeout, &shared).await;
    let end = match shared.close_request().and_then(|r| r.abandoned.map(|peer| (peer, r.silent))) {
        Some((peer, true)) => TunnelEnd::DeadPeer(peer),
        Some((peer, false)) => TunnelEnd::SendTimeout(peer),
        None => end,
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    TunnelStats {
        client_to_backend_bytes: load(&shared.card.flows.upstream.bytes),
        backend_to_client_bytes: load(&shared.card.flows.downstream.bytes),
        client_to_backend_messages: load(&shared.card.flows.upstream.messages),
        backend_to_client_messages: load(&shared.card.flows.downstream.messages),
        first_close: shared.first_close.get().copied(),
        protocol_error: shared.protocol_error(),
        departure: shared.departure.get().copied(),
        duration: shared.start.elapsed(),
        end,
    }
}

/// Runs both pumps until the session is over: both are done (or one is, once the closing
/// handshake is complete), one failed, the idle timeout passed, or a closing handshake we
/// started outlived its bound. A drain asks both peers to close.
async fn supervise(
    upstream: Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    downstream: Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
    ending: impl std::future::Future<Output = Departure>,
    idle_timeout: Duration,
    shared: &Shared,
) -> TunnelEnd {
    let mut close_requests = shared.close_request_watch();
    let close_requested = async move {
        let _ = close_requests.changed().await;
    };
    tokio::pin!(ending, close_requested);
    // Each arm polled only when its own waker fired (see `Branch`): a read on one side
    // does not poll the other side's pump, the watches or the session's timers.
    let (mut upstream, mut downstream) = (Branch::new(upstream), Branch::new(downstream));
    let (mut ending, mut close_requested) = (Branch::new(ending), Branch::new(close_requested));
    let (mut up_done, mut down_done, mut ended) = (false, false, false);
    let mut linger_until: Option<Instant> = None;
    while !(up_done && down_done) {
        if up_done || down_done {
            if shared.handshake_complete() {
                break;
            }
            linger_until.get_or_insert_with(|| Instant::now() + HALF_CLOSE_LINGER.min(idle_timeout));
        }
        let mut deadline = shared.last() + idle_timeout;
        if linger_until.is_none() {
            match keep_alive(shared) {
                Ok(Some(at)) => deadline = deadline.min(at),
                Ok(None) => {}
                Err(()) => linger_until = Some(Instant::now() + DEAD_PEER_LINGER),
            }
        }
        let deadline = tokio::time::Instant::from_std(linger_until.map_or(deadline, |l| l.min(deadline)));
        tokio::select! {
            biased;
            result = &mut upstream, if !up_done => {
                up_done = true;
                if let Some(end) = failed(result, Initiator::Backend, "client side", shared) {
                    return end;
                }
            }
            result = &mut downstream, if !down_done => {
                down_done = true;
                if let Some(end) = failed(result, Initiator::Client, "backend side", shared) {
                    return end;
                }
            }
            why = &mut ending, if !ended => {
                ended = true;
                // A session already closing needs no help; otherwise say goodbye both ways.
                shared.depart(why);
            }
            // Closing on our initiative: bound the closing handshake.
            _ = &mut close_requested, if linger_until.is_none() => {
                linger_until = Some(Instant::now() + CLOSING_TIMEOUT);
            }
            _ = tokio::time::sleep_until(deadline) => {
                if linger_until.is_some_and(|l| l <= Instant::now()) {
                    break;
                }
                if shared.last() + idle_timeout <= Instant::now() {
                    return TunnelEnd::IdleTimeout;
                }
            }
        }
    }
    TunnelEnd::Closed
}

/// Keepalive's check of both sides while nothing is closing: when to look again (`None`:
/// never), or `Err` once a dead side has been told to go.
fn keep_alive(shared: &Shared) -> Result<Option<Instant>, ()> {
    let Some(sides) = shared.keepalive.as_deref().filter(|_| shared.close_request().is_none()) else {
        return Ok(None);
    };
    let each = [(Initiator::Client, &sides.client), (Initiator::Backend, &sides.backend)];
    keepalive::check(each, &sides.settings).map(Some).map_err(|dead| {
        log::debug!("{dead:?} answered nothing to wsgate's Ping; closing the session");
        shared.dead(dead);
    })
}

#[cfg(test)]
mod keepalive_tests;
#[cfg(test)]
mod tests;
