//! WebSocket sessions: validate the client's handshake, open the backend side ourselves
//! (same pool selection and header policy as plain HTTP), relay the 101, then hand both raw
//! streams to wsgate's own tunnel.
//!
//! Why not let Pingora forward the upgrade: after the 101 Pingora 0.9.1 runs its own
//! single-loop tunnel, which deadlocks under bidirectional load (see `tunnel.rs`), and hooks
//! cannot replace it. So `request_filter` takes WebSocket upgrades over: everything before
//! (accept, TLS, HTTP parsing, routing) is Pingora's and shared with plain HTTP.

mod backend;
pub mod frames;
pub mod handshake;
mod pump;
pub(crate) mod tunnel;

use crate::config::model::Route;
use crate::lifecycle::drain::InFlight;
use crate::lifecycle::reload::Snapshot;
use crate::listener::limits::{Admitted, Limits, Refusal as LimitRefusal};
use crate::proxy::answer as responses;
use crate::proxy::headers::{self, Forwarding};
use crate::proxy::{Gateway, RequestCtx};
use crate::telemetry::access_log::{self, AccessLog, Record, WsRecord};
use crate::telemetry::metrics::{close_code_label, Metrics, SessionMeter, UpgradeResult};
use backend::{open_backend, relay_refusal, BackendHandshake};
use frames::Rules;
use futures_util::FutureExt;
use handshake::Refusal;
use log::{debug, warn};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tunnel::{Direction, Endpoint, Initiator, Meters, TunnelEnd, TunnelStats};

/// What happened to one WebSocket upgrade request, for logging.
#[derive(Debug, Default, Clone)]
pub(crate) struct WsOutcome {
    /// The session went on in its own task, which logs it when it ends.
    pub(crate) detached: bool,
    /// The request as the access log shows it (the session itself is gone by then).
    pub(crate) method: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) backend: Option<SocketAddr>,
    pub(crate) tunnel: Option<TunnelStats>,
}

impl WsOutcome {
    /// Completes an access-log `record` (client, route, timing filled in) with this outcome.
    pub(crate) fn record<'a>(&'a self, mut record: Record<'a>) -> Record<'a> {
        let t = self.tunnel.as_ref();
        record.method = &self.method;
        record.host = &self.host;
        record.path = &self.path;
        record.status = self.status;
        record.bytes_in = t.map_or(0, |t| t.client_to_backend_bytes);
        record.bytes_out = t.map_or(0, |t| t.backend_to_client_bytes);
        record.websocket = t.map(|t| WsRecord {
            messages_in: t.client_to_backend_messages,
            messages_out: t.backend_to_client_messages,
            close_initiator: t.first_close.map_or("none", |c| c.0.label()),
            close_code: t.first_close.and_then(|c| c.1),
        });
        record
    }
}

/// Serves a WebSocket upgrade request on `route` end to end. Always answers the client.
pub(crate) async fn serve(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    snapshot: &Snapshot,
    route: &Route,
) -> Result<bool> {
    let outcome = ctx.websocket.insert(WsOutcome {
        method: session.req_header().method.to_string(),
        host: headers::request_host(session.req_header()).unwrap_or_default().to_string(),
        path: gw.access_log.path(&session.req_header().uri).to_string(),
        ..Default::default()
    });
    // Whatever happens, this connection is not reused for another request.
    session.set_keepalive(None);

    let (route_label, upstream_label) = (route.name.as_str(), snapshot.pools[route.upstream].spec.name.as_str());
    let count = |result: UpgradeResult| {
        gw.metrics.ws_upgrades.with_label_values(&[route_label, upstream_label, result.label()]).inc()
    };

    if let Err(refusal) = handshake::validate(session.req_header(), &route.websocket) {
        let extra: &[(&str, &str)] = match refusal {
            Refusal::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            _ => &[],
        };
        count(match refusal {
            Refusal::OriginDenied => UpgradeResult::OriginDenied,
            Refusal::Disabled => UpgradeResult::Disabled,
            Refusal::BadRequest(_) | Refusal::UnsupportedVersion => UpgradeResult::BadHandshake,
        });
        outcome.status = refusal.status();
        responses::text(session, refusal.status(), refusal.message(), extra).await?;
        return Ok(true);
    }

    match gw.limits.admit_session(&snapshot.config.limits, route_label, route.websocket.max_sessions) {
        Ok(admitted) => ctx.admitted.push(admitted),
        Err(refusal) => {
            ctx.websocket.as_mut().expect("set above").status = refusal.answer().0;
            return crate::proxy::refuse(session, refusal).await;
        }
    }
    let pool = &snapshot.pools[route.upstream];
    let fwd = Forwarding {
        client_ip: ctx.client_ip,
        tls: ctx.tls,
        backend: SocketAddr::from(([0, 0, 0, 0], 0)),
        websocket: true,
    };
    let opened = open_backend(gw, pool, route, session.req_header(), fwd, &mut ctx.attempts).await;
    let outcome = ctx.websocket.as_mut().expect("set above");
    let mut backend = match opened {
        Ok(b) => b,
        Err(status) => {
            count(UpgradeResult::BackendError);
            outcome.status = status;
            responses::text(session, status, responses::reason(status), &[]).await?;
            return Ok(true);
        }
    };
    outcome.backend = Some(backend.addr);
    outcome.status = backend.response.status.as_u16();

    if !handshake::is_valid_acceptance(session.req_header(), &backend.response) {
        if backend.response.status == 101 {
            count(UpgradeResult::BackendError);
            warn!("backend {} answered 101 without a valid WebSocket acceptance", backend.addr);
            outcome.status = 502;
            responses::text(session, 502, "bad gateway: the backend's WebSocket handshake was invalid", &[]).await?;
        } else {
            count(UpgradeResult::BackendRefused);
            relay_refusal(session, &mut backend, pool.spec.read_timeout).await?;
        }
        return Ok(true);
    }
    count(UpgradeResult::Accepted);

    let (client_rules, backend_rules) = Rules::session(handshake::negotiated_extensions(&backend.response));
    let BackendHandshake { addr, stream: backend_stream, mut buffer, head_len, response } = backend;
    // Usually empty: what the backend sent right behind its 101, its first frames. Copied
    // so the handshake buffer is not kept for the whole session.
    let backend = Endpoint { stream: backend_stream, early: buffer.split_off(head_len).to_vec() };
    drop(buffer);
    let Some(client) = switch_client(session, &response).await else {
        return Ok(true);
    };
    let meter = SessionMeter::open(&gw.metrics, route_label, upstream_label);
    let upstream_dir = Direction {
        sender: Initiator::Client,
        meters: Meters { bytes: meter.bytes_to_backend.clone(), messages: meter.messages_to_backend.clone() },
        max_message: Some(route.websocket.max_message_bytes),
        rules: client_rules,
        send_timeout: snapshot.config.limits.send_timeout,
    };
    let downstream_dir = Direction {
        sender: Initiator::Backend,
        meters: Meters { bytes: meter.bytes_to_client.clone(), messages: meter.messages_to_client.clone() },
        max_message: None,
        rules: backend_rules,
        send_timeout: snapshot.config.limits.send_timeout,
    };
    // The tunnel goes on in a task of its own, so the request's futures (Pingora's and this
    // handshake's, ~24 KB) are freed for the whole life of the session.
    let open = OpenSession {
        client,
        backend,
        idle_timeout: route.websocket.idle_timeout,
        upstream_dir,
        downstream_dir,
        meter,
        drain_at: Box::pin(gw.drain.session_deadline()),
        metrics: gw.metrics.clone(),
        limits: gw.limits.clone(),
        access_log: gw.access_log.clone(),
        route: route_label.to_string(),
        upstream: upstream_label.to_string(),
        client_ip: ctx.client_ip,
        started: ctx.started,
        outcome: ctx.websocket.clone().expect("set above"),
        held: (ctx.in_flight.take(), std::mem::take(&mut ctx.admitted)),
    };
    ctx.websocket.as_mut().expect("set above").detached = true;
    debug!("websocket session via {addr} open");
    // Boxed: tokio would otherwise copy the whole (multi-KB) session future into its task
    // cell and again each time the task's stage changes (callgrind: ~45% of a handshake's
    // instructions were such copies); a box is copied once.
    tokio::spawn(Box::pin(open.run()));
    Ok(true)
}

/// An open WebSocket session, from the 101 to its end: the tunnel, then metrics and the
/// access-log line.
struct OpenSession {
    client: Endpoint,
    backend: Endpoint,
    idle_timeout: Duration,
    upstream_dir: Direction,
    downstream_dir: Direction,
    meter: SessionMeter,
    drain_at: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    access_log: Arc<AccessLog>,
    route: String,
    upstream: String,
    client_ip: Option<std::net::IpAddr>,
    started: std::time::Instant,
    outcome: WsOutcome,
    /// Drain and limit accounting, released when the session ends.
    held: (Option<InFlight>, Vec<Admitted>),
}

impl OpenSession {
    async fn run(mut self) {
        let stats = tunnel::run(
            self.client,
            self.backend,
            self.idle_timeout,
            &self.upstream_dir,
            &self.downstream_dir,
            self.drain_at,
        )
        .await;
        drop(self.meter);
        let (route, upstream) = (self.route.as_str(), self.upstream.as_str());
        let (initiator, code) = match stats.first_close {
            Some((who, code)) => (who.label(), close_code_label(code)),
            None => ("none", close_code_label(None)),
        };
        self.metrics.ws_duration.with_label_values(&[route, upstream]).observe(stats.duration.as_secs_f64());
        if let Some(offender) = stats.protocol_error {
            self.metrics.ws_protocol_errors.with_label_values(&[route, upstream, offender.direction_label()]).inc();
        }
        if let TunnelEnd::SendTimeout(_) = stats.end {
            self.limits.refuse(LimitRefusal::SendTimeout);
        }
        // Last: a scrape that sees this session's close sees everything else it counted.
        self.metrics.ws_closes.with_label_values(&[route, upstream, initiator, &code]).inc();
        debug!("websocket tunnel ended: {stats:?}");
        self.outcome.tunnel = Some(stats);
        if self.access_log.enabled() {
            let record = Record {
                time: access_log::now(),
                client: self.client_ip.map_or_else(String::new, |ip| ip.to_string()),
                route,
                upstream,
                backend: self.outcome.backend.map_or_else(String::new, |b| b.to_string()),
                duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                ..Record::default()
            };
            self.access_log.write(&self.outcome.record(record));
        }
        drop(self.held);
    }
}

/// Sends the client the backend's 101 and takes the client's raw stream out of Pingora's
/// HTTP/1 session, with the bytes the client sent right behind its request (its first
/// frames, if it did not wait for the 101), which Pingora has already read. A closed
/// placeholder is left behind: Pingora then only runs `logging` and `finish` on it
/// (keep-alive is off, so `finish` just shuts it down).
async fn switch_client(session: &mut Session, response: &ResponseHeader) -> Option<Endpoint> {
    let ServerSession::H1(h1) = &mut *session.downstream_session else { return None };
    if let Err(e) = h1.write_response_header_ref(response).await {
        debug!("client went away before the 101 was delivered: {e}");
        return None;
    }
    // After a 101 Pingora's body reader hands out what it read past the request head, on
    // the first read and without touching the socket; with nothing buffered it would wait
    // on the socket, so that read is not awaited (the tunnel reads the socket itself).
    let early = match h1.read_body_bytes().now_or_never() {
        Some(Ok(Some(bytes))) => bytes.to_vec(),
        Some(Ok(None)) | None => Vec::new(),
        Some(Err(e)) => {
            debug!("client stream failed right after the 101: {e}");
            return None;
        }
    };
    let (placeholder, _) = tokio::io::duplex(1);
    let placeholder = ServerSession::new_http1(Box::new(placeholder));
    match std::mem::replace(&mut *session.downstream_session, placeholder) {
        ServerSession::H1(h1) => {
            let stream = h1.into_inner();
            // The tunnel bounds its writes by send_timeout itself (and ends the session
            // cleanly for the other peer); the connection gate's clock would cut it first.
            crate::listener::GatedStream::leave_send_timeout_to_the_tunnel(&stream);
            Some(Endpoint { stream, early })
        }
        other => {
            *session.downstream_session = other;
            None
        }
    }
}
