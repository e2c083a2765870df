//! What both directions of a tunnel share: who sends on each and its rules and counters
//! (`Direction`), the running totals, the first Close seen, and wsgate's own request to
//! close (`CloseRequest`), which both pumps read.

use super::card::{Card, Flow};
use super::frames::Rules;
use super::keepalive::Liveness;
use super::rate::RateSpec;
use crate::config::model::Keepalive;
use crate::upstream::moves::now_ms;
use pingora_prometheus::prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// RFC 6455 §7.4.1: 1001 Going Away, "a server going down".
const GOING_AWAY: u16 = 1001;
/// RFC 6455 §7.4.1: 1002, a protocol error.
pub(super) const PROTOCOL_ERROR: u16 = 1002;
/// RFC 6455 §7.4.1 (IANA registry): 1012 Service Restart, "reconnect".
const SERVICE_RESTART: u16 = 1012;
/// RFC 6455 §7.4.1: 1008, a message that violates the endpoint's policy.
const POLICY_VIOLATION: u16 = 1008;
/// RFC 6455 §7.4.1: 1009, a message too big to process.
pub(super) const MESSAGE_TOO_BIG: u16 = 1009;

/// Who sent a session's first Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initiator {
    Client,
    Backend,
    /// wsgate itself (draining, an oversized message, a protocol error).
    Proxy,
}

impl Initiator {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Initiator::Client => "client",
            Initiator::Backend => "backend",
            Initiator::Proxy => "proxy",
        }
    }

    /// The `direction` label of what this peer sends.
    pub(crate) fn direction_label(self) -> &'static str {
        match self {
            Initiator::Backend => "backend_to_client",
            _ => "client_to_backend",
        }
    }
}

/// Live counters a pump adds to as bytes pass (Prometheus counters, or detached ones).
pub(crate) struct Meters {
    pub(crate) bytes: IntCounter,
    pub(crate) messages: IntCounter,
}

/// One direction of the tunnel: who sends on it, its counters, its rules.
pub(crate) struct Direction {
    pub(crate) sender: Initiator,
    pub(crate) meters: Meters,
    /// Messages larger than this are refused: the tunnel closes with 1009.
    pub(crate) max_message: Option<u64>,
    /// What the sender's frame headers may hold (masking, negotiated RSV bits).
    pub(crate) rules: Rules,
    /// The receiving peer must accept bytes at least this often while wsgate holds some
    /// for it (`limits.send_timeout`).
    pub(crate) send_timeout: Duration,
    /// Token buckets on what the sender sends (clients only).
    pub(crate) rate: Option<RateSpec>,
}

/// wsgate closes the session: the code each peer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CloseRequest {
    pub(super) to_client: u16,
    pub(super) to_backend: u16,
    /// A peer that stopped reading: it gets nothing more, and no answer is awaited from it.
    pub(super) abandoned: Option<Initiator>,
    /// The abandoned peer also stopped sending (it is dead): the rest of its frame in
    /// flight will never come, so its direction ends without waiting for a boundary.
    pub(super) silent: bool,
}

impl CloseRequest {
    pub(crate) fn going_away() -> Self {
        CloseRequest { to_client: GOING_AWAY, to_backend: GOING_AWAY, abandoned: None, silent: false }
    }
    /// The client is told why (1001 or 1012); the backend that its client is going away.
    pub(crate) fn departure(why: Departure) -> Self {
        let to_client = match why {
            Departure::Drain | Departure::MaxLifetime | Departure::DeadPeer => GOING_AWAY,
            Departure::BackendDown | Departure::Rebalance | Departure::Drained => SERVICE_RESTART,
            Departure::Closed(code) => code,
            Departure::RateLimited | Departure::TokenExpired => POLICY_VIOLATION,
        };
        CloseRequest { to_client, to_backend: GOING_AWAY, abandoned: None, silent: false }
    }
    pub(crate) fn too_big() -> Self {
        CloseRequest { to_client: MESSAGE_TOO_BIG, to_backend: MESSAGE_TOO_BIG, abandoned: None, silent: false }
    }
    /// §7.1.7: the offender gets 1002; the other peer is told the session is going away.
    pub(crate) fn protocol_error(offender: Initiator) -> Self {
        match offender {
            Initiator::Backend => {
                CloseRequest { to_client: GOING_AWAY, to_backend: PROTOCOL_ERROR, abandoned: None, silent: false }
            }
            _ => CloseRequest { to_client: PROTOCOL_ERROR, to_backend: GOING_AWAY, abandoned: None, silent: false },
        }
    }
    /// `peer` accepted nothing for `send_timeout`: the other peer is told the session is
    /// going away.
    pub(crate) fn stalled(peer: Initiator) -> Self {
        CloseRequest { abandoned: Some(peer), ..Self::going_away() }
    }
    /// `peer` answered nothing to wsgate's Ping: its connection is closed, the other peer is
    /// told the session is going away.
    pub(crate) fn dead_peer(peer: Initiator) -> Self {
        CloseRequest { abandoned: Some(peer), silent: true, ..Self::going_away() }
    }
    pub(crate) fn abandons(self, peer: Initiator) -> bool {
        self.abandoned == Some(peer)
    }
    /// The code for the peer that `sender`'s pump writes to.
    pub(crate) fn code_to_peer_of(self, sender: Initiator) -> u16 {
        match sender {
            Initiator::Backend => self.to_client,
            _ => self.to_backend,
        }
    }
    /// The code the session's close is counted under.
    pub(super) fn label_code(self) -> u16 {
        self.to_client.max(self.to_backend)
    }
}

/// Why wsgate ends a session on its own initiative (the access log's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// The process is draining (1001).
    Drain,
    /// The route's `websocket.max_lifetime` passed (1001).
    MaxLifetime,
    /// The backend left rotation or the pool (1012: reconnect, to another backend).
    BackendDown,
    /// The backend holds more than its share (1012).
    Rebalance,
    /// A side answered nothing to wsgate's keepalive Ping (1001 to the other).
    DeadPeer,
    /// The client sent past its rate limit with `on_rate_exceeded: close` (1008).
    RateLimited,
    /// An operator drains the backend (1012).
    Drained,
    /// The client's token expired, with `close_at_expiry` (1008).
    TokenExpired,
    /// An operator closed the session with this code (`DELETE /sessions/{id}`).
    Closed(u16),
}

impl Departure {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Departure::Drain => "drain",
            Departure::MaxLifetime => "max_lifetime",
            Departure::BackendDown => "backend_down",
            Departure::Rebalance => "rebalance",
            Departure::DeadPeer => "dead_peer",
            Departure::RateLimited => "rate_limited",
            Departure::Drained => "drained",
            Departure::TokenExpired => "token_expired",
            Departure::Closed(_) => "closed_by_operator",
        }
    }
}

/// Keepalive on a session: its settings and each side's liveness.
pub(super) struct Sides {
    pub(super) settings: Keepalive,
    pub(super) client: Liveness,
    pub(super) backend: Liveness,
}

/// State both pumps share: activity for the idle timeout, and the closing handshake.
pub(super) struct Shared {
    pub(super) start: Instant,
    /// What the admin API sees of the session: its activity clock (shared with the
    /// rebalancer) and the counters the tunnel keeps.
    pub(super) card: Arc<Card>,
    pub(super) first_close: OnceLock<(Initiator, Option<u16>)>,
    pub(super) client_sent_close: AtomicBool,
    pub(super) backend_sent_close: AtomicBool,
    /// Set once, when this session must close on wsgate's initiative.
    pub(super) close_request: watch::Sender<Option<CloseRequest>>,
    /// Why, when wsgate ended a session that nothing else was closing.
    pub(super) departure: OnceLock<Departure>,
    /// Keepalive's settings and each side's liveness, when it is on (boxed: most sessions
    /// of most routes go without, and every byte here is per session).
    pub(super) keepalive: Option<Box<Sides>>,
}

impl Shared {
    pub(super) fn new(card: Arc<Card>, keepalive: Option<Keepalive>) -> Self {
        let now = now_ms();
        card.activity.set(now);
        Shared {
            card,
            keepalive: keepalive
                .map(|settings| Box::new(Sides { settings, client: Liveness::new(now), backend: Liveness::new(now) })),
            start: Instant::now(),
            first_close: OnceLock::new(),
            client_sent_close: AtomicBool::new(false),
            backend_sent_close: AtomicBool::new(false),
            close_request: watch::channel(None).0,
            departure: OnceLock::new(),
        }
    }

    /// Ends the session on wsgate's initiative for `why`, unless it is closing already.
    pub(super) fn depart(&self, why: Departure) {
        if self.first_close.get().is_none() && self.request_close(CloseRequest::departure(why)) {
            let _ = self.departure.set(why);
        }
    }
    /// `side` answered nothing to wsgate's Ping: ends the session, unless it is closing.
    pub(super) fn dead(&self, side: Initiator) {
        if self.first_close.get().is_none() && self.request_close(CloseRequest::dead_peer(side)) {
            let _ = self.departure.set(Departure::DeadPeer);
        }
    }
    /// `side`'s liveness, when keepalive is on.
    pub(super) fn liveness(&self, side: Initiator) -> Option<&Liveness> {
        let sides = self.keepalive.as_deref()?;
        Some(match side {
            Initiator::Backend => &sides.backend,
            _ => &sides.client,
        })
    }
    pub(crate) fn touch(&self) {
        self.card.activity.touch();
    }
    pub(super) fn last(&self) -> Instant {
        self.card.activity.last()
    }
    pub(crate) fn flow(&self, sender: Initiator) -> &Flow {
        match sender {
            Initiator::Backend => &self.card.flows.downstream,
            _ => &self.card.flows.upstream,
        }
    }
    pub(crate) fn note_close(&self, sender: Initiator, code: Option<u16>) {
        let _ = self.first_close.set((sender, code));
        match sender {
            Initiator::Client => self.client_sent_close.store(true, Ordering::Relaxed),
            Initiator::Backend => self.backend_sent_close.store(true, Ordering::Relaxed),
            Initiator::Proxy => {}
        }
    }
    pub(crate) fn close_request(&self) -> Option<CloseRequest> {
        *self.close_request.borrow()
    }
    pub(crate) fn close_request_watch(&self) -> watch::Receiver<Option<CloseRequest>> {
        self.close_request.subscribe()
    }
    /// Asks both pumps to close the session; the first request wins. True if this was it.
    pub(crate) fn request_close(&self, request: CloseRequest) -> bool {
        let first = self.close_request.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(request);
            true
        });
        if first {
            let _ = self.first_close.set((Initiator::Proxy, Some(request.label_code())));
        }
        first
    }
    /// Both sides have sent a Close frame (RFC 6455 §7.1.1): nothing more may follow.
    pub(super) fn handshake_complete(&self) -> bool {
        self.client_sent_close.load(Ordering::Relaxed) && self.backend_sent_close.load(Ordering::Relaxed)
    }
    pub(super) fn protocol_error(&self) -> Option<Initiator> {
        if self.card.flows.upstream.malformed.load(Ordering::Relaxed) {
            Some(Initiator::Client)
        } else if self.card.flows.downstream.malformed.load(Ordering::Relaxed) {
            Some(Initiator::Backend)
        } else {
            None
        }
    }
}
