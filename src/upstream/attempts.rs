//! One request's way through a pool (the backends tried and excluded, its pin) and why it
//! got no answer from a backend: the state `Pool::pick` reads and the retry rule.

use std::net::SocketAddr;

/// One request's way through a pool. Which backend it went to (for the access log, the
/// metrics and the forwarding headers) is kept apart from which backends selection must
/// skip: a request retried on a new connection to the same backend has gone to one backend
/// and excluded none.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// The backend chosen last: the one that served (or failed) the request.
    pub(crate) backend: Option<SocketAddr>,
    /// Backends whose connect failed for this request; selection skips them.
    pub(crate) excluded: Vec<SocketAddr>,
    /// The backend the client's affinity cookie names (`Pool::pinned`): selection takes it
    /// while it may serve, and the answer gets a new cookie when another backend served.
    pub(crate) pinned: Option<SocketAddr>,
    /// The last attempt failed on a pooled connection the backend had already closed, so
    /// the next one must not take another pooled connection (it may be just as stale).
    pub(crate) needs_fresh: bool,
    /// A new connection was closed before any answer and the request retried once more.
    pub(crate) retried_unanswered: bool,
    /// How the last excluded backend failed: the answer once no backend is left.
    pub(super) last_failure: Option<Failure>,
}

impl Attempts {
    /// The one retry rule: records that connecting to the chosen backend failed (nothing
    /// reached it, so another backend may take the request); whether the request may go on
    /// to another one within the pool's `retries`.
    pub(crate) fn connect_failed(&mut self, failure: Failure, retries: usize) -> bool {
        if let Some(b) = self.backend {
            self.excluded.push(b);
        }
        self.last_failure = Some(failure);
        self.excluded.len() <= retries
    }
}

/// Why a request got no answer from a backend. Each is answered with `status()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No healthy backend in the pool (503).
    NoneHealthy,
    /// Every backend tried refused or reset the connection (502).
    ConnectFailed,
    /// The last backend tried did not accept the connection in time (504).
    ConnectTimeout,
    /// The backend did not answer in time (504).
    Timeout,
    /// The backend's answer was not HTTP, or it closed before answering (502).
    BadAnswer,
    /// The backend answered 101 without a valid WebSocket acceptance (502).
    InvalidHandshake,
    /// The backend's answer ended before its announced length (502).
    CutShort,
    /// Every healthy backend is at `max_sessions_per_backend` (and the queue, if any, was
    /// full or the wait ran out) (503).
    AtCapacity,
}

impl Failure {
    /// How a failed connect is answered once no backend is left to try.
    pub(crate) fn of_connect(e: &pingora::Error) -> Failure {
        if matches!(e.etype(), pingora::ErrorType::ConnectTimedout) {
            Failure::ConnectTimeout
        } else {
            Failure::ConnectFailed
        }
    }

    pub(crate) fn status(self) -> u16 {
        match self {
            Failure::NoneHealthy | Failure::AtCapacity => 503,
            Failure::ConnectTimeout | Failure::Timeout => 504,
            Failure::ConnectFailed | Failure::BadAnswer | Failure::InvalidHandshake | Failure::CutShort => 502,
        }
    }
}
