//! A session as the outside sees it: the admin API lists it (`GET /sessions`) through its
//! backend's registry (`upstream::moves`), reading the same counters the tunnel adds to, so
//! listing costs the tunnel nothing; an operator's close comes as a move order, with the
//! reason for the client kept here.

use crate::upstream::moves::{Activity, SessionReport, SessionView};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Running totals of one direction, readable however the tunnel ends.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    pub(crate) bytes: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) malformed: AtomicBool,
}

/// Both directions' totals: `upstream` is client to backend.
#[derive(Debug, Default)]
pub(crate) struct Flows {
    pub(crate) upstream: Flow,
    pub(crate) downstream: Flow,
}

/// Who and where a session is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) id: u64,
    pub(crate) client: Option<IpAddr>,
    pub(crate) route: String,
    pub(crate) upstream: String,
    pub(crate) backend: SocketAddr,
    pub(crate) subprotocol: Option<String>,
}

/// One open session's card.
pub(crate) struct Card {
    identity: Identity,
    started: Instant,
    pub(crate) activity: Arc<Activity>,
    pub(crate) flows: Arc<Flows>,
    /// An operator's close: the code and reason for the client.
    close: OnceLock<(u16, String)>,
}

impl Card {
    pub(crate) fn new(identity: Identity, activity: Arc<Activity>) -> Arc<Card> {
        Arc::new(Card { identity, started: Instant::now(), activity, flows: Arc::default(), close: OnceLock::new() })
    }

    /// The reason an operator gave with `code`, if this close is theirs.
    pub(crate) fn reason_for(&self, code: u16) -> Option<&str> {
        self.close.get().filter(|(c, _)| *c == code).map(|(_, reason)| reason.as_str())
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Arc<Card> {
        let identity = Identity {
            id: 0,
            client: None,
            route: String::new(),
            upstream: String::new(),
            backend: SocketAddr::from(([127, 0, 0, 1], 1)),
            subprotocol: None,
        };
        Card::new(identity, Activity::new())
    }
}

impl SessionView for Card {
    fn report(&self) -> SessionReport<'_> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let id = &self.identity;
        SessionReport {
            id: id.id,
            client: id.client,
            route: &id.route,
            upstream: &id.upstream,
            backend: id.backend,
            subprotocol: id.subprotocol.as_deref(),
            age: self.started.elapsed(),
            idle: self.activity.last().elapsed(),
            bytes_in: load(&self.flows.upstream.bytes),
            bytes_out: load(&self.flows.downstream.bytes),
            messages_in: load(&self.flows.upstream.messages),
            messages_out: load(&self.flows.downstream.messages),
        }
    }

    fn give_reason(&self, code: u16, reason: &str) {
        let _ = self.close.set((code, reason.to_string()));
    }
}
