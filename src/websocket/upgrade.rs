//! What the request path hands the WebSocket side for one upgrade, and what it gets back.

use super::handshake;
use crate::config::model::{LimitsConfig, Route};
use crate::listener::limits::{Held, Refusal as LimitRefusal};
use crate::telemetry::access_log::RequestLine;
use crate::upstream::{Attempts, Failure, Pool};
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The request the backend receives once `addr` is chosen (the proxy's header policy).
pub(crate) type BackendRequest<'a> = &'a (dyn Fn(SocketAddr) -> Result<RequestHeader, Refused> + Send + Sync);

/// What one upgrade needs from the request path.
pub(crate) struct Upgrade<'a> {
    /// The request as the access log shows it (Pingora's session is gone when it is written).
    pub(crate) request: RequestLine,
    pub(crate) route: &'a Route,
    pub(crate) pool: &'a Pool,
    pub(crate) limits: &'a LimitsConfig,
    pub(crate) client_ip: Option<IpAddr>,
    /// The session ends with Close 1008 at this time (its token's expiry, `close_at_expiry`).
    pub(crate) expires_at: Option<std::time::SystemTime>,
    pub(crate) started: Instant,
    pub(crate) backend_request: BackendRequest<'a>,
    /// The request's way through the pool (its backend is the access log's).
    pub(crate) attempts: &'a mut Attempts,
    /// What keeps the request counted; an open session takes it along.
    pub(crate) held: &'a mut Held,
}

/// Why wsgate refused an upgrade itself; the proxy answers each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Handshake(handshake::Refusal),
    Limit(LimitRefusal),
    Upstream(Failure),
    /// The header policy refused the request (its reason).
    Policy(String),
}

/// What became of an upgrade wsgate did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgraded {
    /// The 101 went out; the session goes on in its own task, which logs it when it ends.
    Open,
    /// The backend refused the upgrade; the client got its answer.
    Relayed,
    /// The client left before its answer reached it.
    ClientGone,
}
