//! WebSocket sessions, a component the gateway owns: `Upgrader::upgrade` takes a request the
//! proxy has admitted and routed, validates its handshake, opens the backend side itself
//! (the pool choice and retry rule of `upstream`, the request the proxy's header policy
//! builds), relays the 101 and hands both raw streams to wsgate's own tunnel, in a task of
//! its own (`session.rs`). What it refuses it returns as `Refused`; the proxy answers it.
//!
//! Why not let Pingora forward the upgrade: after the 101 Pingora 0.9.1 runs its own
//! single-loop tunnel, which deadlocks under bidirectional load (see `tunnel.rs`), and hooks
//! cannot replace it. So `request_filter` hands WebSocket upgrades here: everything before
//! (accept, TLS, HTTP parsing, admission, routing) is Pingora's and the proxy's, shared with
//! plain HTTP.

mod backend;
mod branch;
pub(crate) mod card;
pub mod frames;
mod h2io;
pub mod handshake;
mod keepalive;
mod pump;
mod rate;
mod session;
mod shared;
mod upgrade;

pub(crate) use upgrade::{Refused, Upgrade, Upgraded};
pub(crate) mod tunnel;

use crate::lifecycle::drain::Drain;
use crate::listener::limits::Limits;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::{Metrics, UpgradeResult};
use crate::upstream::Failure;
use log::warn;
use pingora::connectors::TransportConnector;
use pingora::proxy::Session;
use session::{OpenSession, Services};
use std::sync::Arc;

/// The WebSocket side of the gateway.
pub(crate) struct Upgrader {
    /// Opens backend connections for WebSocket sessions (plain HTTP uses Pingora's own).
    connector: TransportConnector,
    /// What every session needs.
    services: Services,
}

impl Upgrader {
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
        drain: Arc<Drain>,
        access_log: Arc<AccessLog>,
    ) -> Self {
        Upgrader { connector: TransportConnector::new(None), services: Services { metrics, limits, drain, access_log } }
    }

    /// Serves the WebSocket upgrade in `session` on `up.route`.
    pub(crate) async fn upgrade(&self, session: &mut Session, up: Upgrade<'_>) -> Result<Upgraded, Refused> {
        // Whatever happens, this connection is not reused for another request.
        session.set_keepalive(None);
        let labels = [up.route.name.as_str(), up.pool.spec.name.as_str()];
        let http2 = session.is_http2();
        let protocol = if http2 { "h2" } else { "h1" };
        let result = self.open(session, up, protocol).await;
        if let Some(counted) = upgrade_result(&result) {
            let counter =
                self.services.metrics.ws_upgrades.with_label_values(&[labels[0], labels[1], counted.label(), protocol]);
            counter.inc();
        }
        match result? {
            Opening::Session(open) if http2 => {
                // An HTTP/2 stream's session runs in its stream's task: Pingora keeps the
                // connection open only while a stream task is (its idle timeout would end it
                // under the session).
                Box::pin(open.run()).await;
                Ok(Upgraded::Open)
            }
            Opening::Session(open) => {
                // Boxed: tokio would otherwise copy the whole (multi-KB) session future into
                // its task cell and again each time the task's stage changes; a box is copied once.
                tokio::spawn(Box::pin(open.run()));
                Ok(Upgraded::Open)
            }
            Opening::Relayed => Ok(Upgraded::Relayed),
            Opening::ClientGone => Ok(Upgraded::ClientGone),
        }
    }

    async fn open(
        &self,
        session: &mut Session,
        mut up: Upgrade<'_>,
        protocol: &'static str,
    ) -> Result<Opening, Refused> {
        let (route, pool) = (up.route, up.pool);
        handshake::validate(session.req_header(), &route.websocket).map_err(Refused::Handshake)?;
        let admitted = self.services.limits.admit_session(up.limits, &route.name, route.websocket.max_sessions);
        up.held.admitted.push(admitted.map_err(Refused::Limit)?);

        let mut backend = backend::open(&self.connector, &self.services.metrics, &mut up, session.req_header()).await?;
        // On the 101, and on a refusal relayed from the backend, as on any answer it gives.
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        pool.set_affinity_cookie(&mut backend.response, up.attempts, tls);
        if !handshake::is_valid_acceptance(session.req_header(), &backend.response) {
            if backend.response.status == 101 {
                warn!("backend {} answered 101 without a valid WebSocket acceptance", backend.addr);
                return Err(Refused::Upstream(Failure::InvalidHandshake));
            }
            let relayed = backend::relay_refusal(session, &mut backend, pool.spec.read_timeout).await?;
            return Ok(if relayed == Upgraded::ClientGone { Opening::ClientGone } else { Opening::Relayed });
        }
        let client = match session.is_http2() {
            true => h2io::switch_client(session, &backend.response),
            false => session::switch_client(session, &backend.response).await,
        };
        let Some(client) = client else { return Ok(Opening::ClientGone) };
        Ok(Opening::Session(Box::new(OpenSession::new(&self.services, up, client, backend, protocol))))
    }
}

/// An upgrade wsgate did not refuse, before its session runs.
enum Opening {
    Session(Box<OpenSession>),
    Relayed,
    ClientGone,
}

/// The `wsgate_websocket_upgrades_total` result of an upgrade (limit refusals are counted
/// as refusals instead).
fn upgrade_result(result: &Result<Opening, Refused>) -> Option<UpgradeResult> {
    Some(match result {
        Ok(Opening::Session(_) | Opening::ClientGone) => UpgradeResult::Accepted,
        Ok(Opening::Relayed) => UpgradeResult::BackendRefused,
        Err(Refused::Handshake(handshake::Refusal::OriginDenied)) => UpgradeResult::OriginDenied,
        Err(Refused::Handshake(handshake::Refusal::Disabled)) => UpgradeResult::Disabled,
        Err(Refused::Handshake(_) | Refused::Policy(_)) => UpgradeResult::BadHandshake,
        Err(Refused::Upstream(_)) => UpgradeResult::BackendError,
        Err(Refused::Limit(_)) => return None,
    })
}
