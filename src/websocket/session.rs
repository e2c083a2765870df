//! An open WebSocket session, from the 101 to its end: taking the client's stream out of
//! Pingora's HTTP session, the tunnel, then metrics and the access-log line.

use super::backend::BackendHandshake;
use super::card::{Card, Identity};
use super::frames::Rules;
use super::handshake;
use super::rate::{RateMeters, RateSpec};
use super::tunnel::{self, Departure, Direction, Endpoint, Ends, Initiator, Meters, TunnelEnd, TunnelStats};
use super::upgrade::Upgrade;
use crate::config::model::ClientRate;
use crate::lifecycle::drain::Drain;
use crate::listener::limits::{Held, Limits, Refusal};
use crate::listener::GatedStream;
use crate::telemetry::access_log::{AccessLog, Exchange, RequestLine, WsRecord};
use crate::telemetry::metrics::{close_code_label, Metrics, SessionMeter};
use crate::upstream::load::Place;
use crate::upstream::moves::{Activity, Move};
use futures_util::FutureExt;
use log::debug;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every session needs, shared by all of them.
pub(super) struct Services {
    pub(super) metrics: Arc<Metrics>,
    pub(super) limits: Arc<Limits>,
    pub(super) drain: Arc<Drain>,
    pub(super) access_log: Arc<AccessLog>,
}

/// Everything a session's task owns.
pub(super) struct OpenSession {
    /// `h1` or `h2`: how the client carries the session.
    protocol: &'static str,
    client: Endpoint,
    backend: Endpoint,
    upstream_dir: Direction,
    downstream_dir: Direction,
    meter: SessionMeter,
    ends: Ends<Pin<Box<dyn Future<Output = Departure> + Send>>>,
    metrics: Arc<Metrics>,
    limits: Arc<Limits>,
    access_log: Arc<AccessLog>,
    route: String,
    upstream: String,
    client_ip: Option<IpAddr>,
    started: Instant,
    request: RequestLine,
    backend_addr: SocketAddr,
    status: u16,
    /// Drain and limit accounting, released when the session ends.
    held: Held,
    /// The session's place on its backend.
    place: Place,
}

impl OpenSession {
    pub(super) fn new(
        gw: &Services,
        up: Upgrade<'_>,
        client: Endpoint,
        backend: BackendHandshake,
        protocol: &'static str,
    ) -> OpenSession {
        let (mut client_rules, mut backend_rules) = Rules::session(handshake::negotiated_extensions(&backend.response));
        let keepalive = up.route.websocket.keepalive;
        (client_rules.own_pongs, backend_rules.own_pongs) = (keepalive.is_some(), keepalive.is_some());
        let (route, upstream) = (up.route.name.clone(), up.pool.spec.name.clone());
        let meter = SessionMeter::open(&gw.metrics, &route, &upstream);
        let send_timeout = up.limits.send_timeout;
        let upstream_dir = Direction {
            sender: Initiator::Client,
            meters: Meters { bytes: meter.bytes_to_backend.clone(), messages: meter.messages_to_backend.clone() },
            max_message: Some(up.route.websocket.max_message_bytes),
            rules: client_rules,
            send_timeout,
            rate: rate_spec(&gw.metrics, up.route.websocket.client_rate, &route, &upstream),
        };
        let downstream_dir = Direction {
            sender: Initiator::Backend,
            meters: Meters { bytes: meter.bytes_to_client.clone(), messages: meter.messages_to_client.clone() },
            max_message: None,
            rules: backend_rules,
            send_timeout,
            rate: None,
        };
        let backend_addr = backend.addr;
        let status = backend.response.status.as_u16();
        let subprotocol = handshake::subprotocol(&backend.response);
        let (backend, mut place) = backend.into_endpoint();
        let moved = place.moved();
        let identity = Identity {
            id: place.id().unwrap_or_default(),
            client: up.client_ip,
            route: route.clone(),
            upstream: upstream.clone(),
            backend: backend_addr,
            subprotocol,
        };
        let card = Card::new(identity, place.activity().unwrap_or_else(Activity::new));
        place.describe(card.clone());
        let expiry = up.expires_at.map(|at| at.duration_since(std::time::SystemTime::now()).unwrap_or_default());
        let ending = ending(gw.drain.session_deadline(), (up.route.websocket.max_lifetime, expiry), moved);
        OpenSession {
            client,
            backend_addr,
            status,
            backend,
            place,
            upstream_dir,
            downstream_dir,
            meter,
            ends: Ends { idle_timeout: up.route.websocket.idle_timeout, keepalive, ending: Box::pin(ending), card },
            metrics: gw.metrics.clone(),
            limits: gw.limits.clone(),
            access_log: gw.access_log.clone(),
            route,
            upstream,
            client_ip: up.client_ip,
            started: up.started,
            request: up.request,
            held: std::mem::take(up.held),
            protocol,
        }
    }

    /// Runs the session to its end. Boxed `self`: moved in whole, it would be stored twice
    /// in the session's future (as the argument and as the local it is moved to).
    pub(super) async fn run(self: Box<Self>) {
        debug!("websocket session via {} open", self.backend_addr);
        let (up, down) = (&self.upstream_dir, &self.downstream_dir);
        let stats = tunnel::run(self.client, self.backend, up, down, self.ends).await;
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
        match stats.end {
            TunnelEnd::SendTimeout(_) => {
                self.limits.refuse(Refusal::SendTimeout);
            }
            TunnelEnd::DeadPeer(side) => {
                self.metrics.ws_dead_peers.with_label_values(&[route, upstream, side.label()]).inc()
            }
            _ => {}
        }
        // Last: a scrape that sees this session's close sees everything else it counted.
        self.metrics.ws_closes.with_label_values(&[route, upstream, initiator, &code]).inc();
        debug!("websocket tunnel ended: {stats:?}");
        if self.access_log.enabled() {
            let exchange = Exchange {
                client: self.client_ip,
                method: &self.request.method,
                host: &self.request.host,
                path: &self.request.path,
                route,
                upstream,
                backend: Some(self.backend_addr),
                started: self.started,
                user: self.request.user.as_deref(),
            };
            let bytes = (stats.client_to_backend_bytes, stats.backend_to_client_bytes);
            self.access_log.write(&exchange.record(self.status, bytes, Some(ws_record(&stats, self.protocol))));
        }
        drop((self.held, self.place));
    }
}

/// The route's client rate limits with their counters; `None` when it has none.
fn rate_spec(metrics: &Metrics, rate: ClientRate, route: &str, upstream: &str) -> Option<RateSpec> {
    if rate.messages.is_none() && rate.bytes.is_none() {
        return None;
    }
    let counter = |action| metrics.ws_rate_limited.with_label_values(&[route, upstream, action]);
    Some(RateSpec { rate, meters: RateMeters { throttled: counter("throttle"), closed: counter("close") } })
}

fn ws_record(t: &TunnelStats, protocol: &'static str) -> WsRecord {
    WsRecord {
        protocol,
        messages_in: t.client_to_backend_messages,
        messages_out: t.backend_to_client_messages,
        close_initiator: t.first_close.map_or("none", |c| c.0.label()),
        close_code: t.first_close.and_then(|c| c.1),
        reason: t.departure.map(Departure::label),
    }
}

/// When and why wsgate ends a session itself: at its drain deadline, once its lifetime
/// (jittered ±10%, so sessions opened together do not all end together) or its token (not
/// jittered: the token is no longer valid) has expired, when it is told to move off its
/// backend, or when an operator closes it.
fn ending(
    drain: impl Future<Output = ()>,
    (lifetime, token): (Option<Duration>, Option<Duration>),
    moved: impl Future<Output = Move>,
) -> impl Future<Output = Departure> {
    let lifetime = lifetime.map(|d| d.mul_f64(0.9 + 0.2 * fastrand::f64()));
    let after = |d: Option<Duration>| async move {
        match d {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    async move {
        tokio::select! {
            () = drain => Departure::Drain,
            () = after(lifetime) => Departure::MaxLifetime,
            () = after(token) => Departure::TokenExpired,
            why = moved => match why {
                Move::BackendDown => Departure::BackendDown,
                Move::Rebalance => Departure::Rebalance,
                Move::Drained => Departure::Drained,
                Move::Closed(code) => Departure::Closed(code),
            },
        }
    }
}

/// Sends the client the backend's 101 and takes the client's raw stream out of Pingora's
/// HTTP/1 session, with the bytes the client sent right behind its request (its first
/// frames, if it did not wait for the 101), which Pingora has already read. A closed
/// placeholder is left behind: Pingora then only runs `logging` and `finish` on it
/// (keep-alive is off, so `finish` just shuts it down).
pub(super) async fn switch_client(session: &mut Session, response: &ResponseHeader) -> Option<Endpoint> {
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
            GatedStream::leave_send_timeout_to_the_tunnel(&stream);
            Some(Endpoint { stream, early })
        }
        other => {
            *session.downstream_session = other;
            None
        }
    }
}
