//! The state a request carries through the proxy's hooks.

use crate::lifecycle::reload::Snapshot;
use crate::listener::limits::Held;
use crate::telemetry::metrics;
use crate::upstream::load::Place;
use crate::upstream::{Attempts, Pool};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Per-request state.
pub(crate) struct RequestCtx {
    /// The routes and pools this request uses from start to end, whatever reloads happen.
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) started: Instant,
    pub(super) route: Option<usize>,
    pub(super) client_ip: Option<IpAddr>,
    /// The connection's peer (the client, unless it is a trusted proxy).
    pub(super) peer_ip: Option<IpAddr>,
    /// The client connected over TLS.
    pub(super) tls: bool,
    /// The backend this request went to, and those a failed connect excludes.
    pub(super) attempts: Attempts,
    /// The request's place on its backend (its load, for `least_sessions`).
    pub(super) place: Option<Place>,
    /// What the route's `auth` granted: who the client is, headers for the backend.
    pub(super) granted: super::auth::Granted,
    /// Set when the request asked for a WebSocket upgrade: what became of it.
    pub(super) upgrade: Option<UpgradeEnd>,
    /// Keeps a draining process alive and the request counted under the limits until it is
    /// done (a WebSocket session takes it along to its own task).
    pub(super) held: Held,
}

/// What became of a WebSocket upgrade request, as `logging` needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpgradeEnd {
    /// The session went on in its own task, which logs it when it ends.
    SessionOpen,
    /// The client got an answer (wsgate's refusal or the backend's), or left.
    Answered,
}

impl RequestCtx {
    /// The pool of this request's route.
    pub(super) fn pool(&self) -> Option<&Pool> {
        self.route.map(|i| &*self.snapshot.pools[self.snapshot.config.routes[i].upstream])
    }

    /// The backend this request went to failed it (passive health counts it).
    pub(super) fn backend_failed(&self) {
        if let (Some(pool), Some(addr)) = (self.pool(), self.attempts.backend) {
            pool.loads.failed(&addr);
        }
    }

    /// `(route, upstream)` metric labels of this request.
    pub(super) fn labels(&self) -> (&str, &str) {
        match self.route.map(|i| &self.snapshot.config.routes[i]) {
            Some(route) => (route.name.as_str(), self.snapshot.pools[route.upstream].spec.name.as_str()),
            None => (metrics::NO_ROUTE, metrics::NO_ROUTE),
        }
    }
}
