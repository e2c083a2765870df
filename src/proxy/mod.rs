//! The `ProxyHttp` implementation. Each hook is a thin dispatcher into the module that
//! makes its decision: `admission` and the limits → `routing` → `websocket` (upgrades, a
//! component the gateway owns) → `upstream` (pool, backend, retries) → `headers` (what the
//! backend receives) → `answer` (wsgate's own answers) / the access log.

pub mod admission;
pub(crate) mod answer;
mod auth;
mod client;
mod connect;
mod context;
pub mod headers;
pub(crate) mod routing;
#[cfg(test)]
mod tests;

use crate::auth::forward::Subject;
use crate::lifecycle::drain::Drain;
use crate::lifecycle::reload::Live;
use crate::listener;
use crate::listener::limits::{self, Held, Limits, Refusal};
use crate::telemetry::access_log::{AccessLog, Exchange, RequestLine};
use crate::telemetry::metrics::{self, Metrics, UpstreamErrorKind};
use crate::upstream::load::Kind;
use crate::upstream::{hash_input, Attempts, Failure};
use crate::websocket::{handshake, Refused, Upgrade, Upgraded, Upgrader};
use answer::{error_status, Answer};
use async_trait::async_trait;
pub(crate) use context::RequestCtx;
use context::UpgradeEnd;
use headers::Forwarding;
use log::{debug, warn};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct Gateway {
    /// Routes and pools, replaced as a whole by reloads.
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    access_log: Arc<AccessLog>,
    drain: Arc<Drain>,
    limits: Arc<Limits>,
    /// Serves WebSocket upgrades, once admitted and routed.
    websocket: Upgrader,
    /// Source of peer group keys no other request uses (see `Pool::fresh_peer`).
    fresh_groups: AtomicU64,
}

impl Gateway {
    pub(crate) fn new(
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
        access_log: AccessLog,
        drain: Arc<Drain>,
    ) -> Self {
        let access_log = Arc::new(access_log);
        let websocket = Upgrader::new(metrics.clone(), limits.clone(), drain.clone(), access_log.clone());
        Gateway { live, limits, metrics, access_log, drain, websocket, fresh_groups: AtomicU64::new(0) }
    }

    fn upstream_error(&self, ctx: &RequestCtx, kind: UpstreamErrorKind) {
        let (_, upstream) = ctx.labels();
        let backend = ctx.attempts.backend.map_or_else(|| "-".to_string(), |b| b.to_string());
        self.metrics.upstream_error(upstream, &backend, kind);
    }

    /// Admission (RFC 9112, then the limits) and routing: the route's index, or the answer.
    fn admit(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> std::result::Result<usize, Answer> {
        admission::check(req)?;
        headers::nominations(req)?;
        let (header_bytes, header_count) = limits::header_size(req);
        let admitted =
            self.limits.admit_request(&ctx.snapshot.config.limits, ctx.client_ip, header_bytes, header_count)?;
        ctx.held.admitted.extend(admitted);
        ctx.snapshot.router.select(headers::request_host(req), req.uri.path()).ok_or_else(Answer::no_route)
    }

    /// The route's `auth`, once routed: what it grants is kept for the backend request.
    async fn authorize(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        index: usize,
    ) -> std::result::Result<(), Answer> {
        let snapshot = ctx.snapshot.clone();
        let req = session.req_header();
        let host = headers::request_host(req).unwrap_or_default();
        let subject = Subject { req, client_ip: ctx.client_ip, tls: ctx.tls, host };
        ctx.granted = auth::authorize(&snapshot.config.routes[index], subject, &self.metrics).await?;
        Ok(())
    }

    /// Hands an admitted, routed WebSocket upgrade to the upgrader; answers what it refuses.
    async fn upgrade(&self, session: &mut Session, ctx: &mut RequestCtx, index: usize) -> Result<bool> {
        let snapshot = ctx.snapshot.clone();
        let route = &snapshot.config.routes[index];
        let (client_ip, peer_ip, tls) = (ctx.client_ip, ctx.peer_ip, ctx.tls);
        let mut original = session.req_header().clone();
        auth::prepare(route, &mut original, &ctx.granted);
        let backend_request = move |backend: SocketAddr| {
            let mut req = original.clone();
            let fwd = Forwarding { client_ip, peer_ip, tls, backend, websocket: true };
            headers::apply(&mut req, route, &fwd).map_err(|e| Refused::Policy(e.0))?;
            Ok(req)
        };
        let req = session.req_header();
        let up = Upgrade {
            request: RequestLine::new(req, headers::request_host(req), &self.access_log)
                .user(ctx.granted.user().map(str::to_string)),
            expires_at: auth::session_expiry(route, &ctx.granted),
            route,
            pool: &snapshot.pools[route.upstream],
            limits: &snapshot.config.limits,
            client_ip,
            started: ctx.started,
            backend_request: &backend_request,
            attempts: &mut ctx.attempts,
            held: &mut ctx.held,
        };
        let upgraded = self.websocket.upgrade(session, up).await;
        ctx.upgrade = Some(if upgraded == Ok(Upgraded::Open) { UpgradeEnd::SessionOpen } else { UpgradeEnd::Answered });
        if let Err(refused) = upgraded {
            Answer::from(refused).send(session).await?;
        }
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            snapshot: self.live.snapshot(),
            started: Instant::now(),
            route: None,
            client_ip: None,
            peer_ip: None,
            tls: false,
            attempts: Attempts::default(),
            place: None,
            granted: Default::default(),
            upgrade: None,
            held: Held::new(self.drain.in_flight()),
        }
    }

    /// None: Pingora's default adds a response-compression module, disabled, which wsgate
    /// never enables but every request would still build, drive and drop.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Canonical (an IPv4-mapped address as IPv4, as a dual-stack listener reports IPv4
        // clients) once, here: headers, access log, limits and hashing all read this.
        ctx.peer_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_canonical());
        ctx.client_ip = client::client_ip(ctx.peer_ip, session.req_header(), &ctx.snapshot.config);
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        // The connection gate bounds HTTP/1 writes on the socket; an HTTP/2 stream stalls on
        // flow control instead, which Pingora's per-stream write timeout sees.
        if session.is_http2() {
            session.set_write_timeout(Some(ctx.snapshot.config.limits.send_timeout));
        }
        match connect::classify(session) {
            None => {}
            Some(connect::Connect::Tunnel) => return Answer::status(405).send(session).await.map(|()| true),
            Some(connect::Connect::OtherProtocol) => return Answer::status(501).send(session).await.map(|()| true),
            Some(connect::Connect::WebSocket) => {
                if let Err(answer) = connect::as_upgrade(session.req_header_mut()) {
                    return answer.send(session).await.map(|()| true);
                }
            }
        }
        let index = match self.admit(session.req_header(), ctx) {
            Ok(index) => index,
            Err(answer) => return answer.send(session).await.map(|()| true),
        };
        ctx.route = Some(index);
        if let Err(answer) = self.authorize(session, ctx, index).await {
            return answer.send(session).await.map(|()| true);
        }
        if handshake::upgrade_kind(session.req_header()) == handshake::Upgrade::WebSocket {
            // Boxed, as the forward-auth check: the upgrade's state (a backend connection
            // and handshake) would otherwise be part of every plain request's future.
            return Box::pin(self.upgrade(session, ctx, index)).await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let route =
            ctx.route.map(|i| &ctx.snapshot.config.routes[i]).ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let pool = &ctx.snapshot.pools[route.upstream];
        let key = hash_input(&pool.spec.balance, session.req_header(), ctx.client_ip);
        ctx.attempts.pinned = pool.pinned(session.req_header());
        let addr = pool.pick(&key, &mut ctx.attempts).map_err(|f| Error::new(ErrorType::HTTPStatus(f.status())))?;
        ctx.place = Some(pool.loads.place(addr, Kind::Request));
        if std::mem::take(&mut ctx.attempts.needs_fresh) {
            return Ok(Box::new(pool.fresh_peer(addr, self.fresh_groups.fetch_add(1, Ordering::Relaxed) + 1)));
        }
        Ok(Box::new(pool.peer(addr)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.upstream_error(ctx, UpstreamErrorKind::of(&e));
        ctx.backend_failed();
        let retries = ctx.pool().map_or(0, |p| p.spec.retries);
        let retry = ctx.attempts.connect_failed(Failure::of_connect(&e), retries);
        if retry {
            warn!("connect to {} failed ({:?}); retrying on another backend", peer.address(), e.etype());
        }
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route.map(|i| &ctx.snapshot.config.routes[i]) else { return Ok(()) };
        let backend = ctx.attempts.backend.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let fwd =
            Forwarding { client_ip: ctx.client_ip, peer_ip: ctx.peer_ip, tls: ctx.tls, backend, websocket: false };
        auth::prepare(route, upstream, &ctx.granted);
        headers::apply(upstream, route, &fwd).map_err(|e| Error::explain(ErrorType::HTTPStatus(400), e.0))
    }

    /// `client_reused` is Pingora's name for whether the *upstream* connection came from its
    /// pool. A pooled connection the backend had closed (its keep-alive timeout, racing our
    /// request) fails before anything reached the backend: Pingora then marks the error
    /// retryable, and the request is retried on a new connection, to the same backend if
    /// selection picks it again. Only connect failures exclude a backend (`fail_to_connect`).
    /// A new connection the backend closed before answering (closed as idle the moment it
    /// was accepted, under load) gets one more try on a new connection, as nginx's
    /// `proxy_next_upstream error` retries idempotent requests.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // Pingora's default retry policy (idempotent requests on reused connections only).
        let mut e = e.more_context(format!("Peer: {peer}"));
        let idempotent = session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated();
        if idempotent {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        let unanswered = e.etype() == &ErrorType::ConnectionClosed && session.response_written().is_none();
        let once_more = idempotent && !e.retry() && unanswered && !ctx.attempts.retried_unanswered;
        if once_more {
            ctx.attempts.retried_unanswered = true;
            e.set_retry(true);
        }
        if (client_reused || once_more) && e.retry() {
            debug!(
                "pooled connection to {} was closed by the backend ({:?}); retrying on a new connection",
                peer.address(),
                e.etype()
            );
            ctx.attempts.needs_fresh = true;
        } else if e.esource() == &ErrorSource::Upstream {
            self.upstream_error(ctx, UpstreamErrorKind::of(&e));
            ctx.backend_failed();
        }
        e
    }

    /// A stale pooled connection is a normal event with keep-alive backends, not worth a
    /// warning per request (it is logged at debug level above).
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _error: &Error,
        context: ProxyWarnLogContext,
    ) -> bool {
        matches!(context, ProxyWarnLogContext::UpstreamRetry) && ctx.attempts.needs_fresh
    }

    /// Our own refusals (`HTTPStatus`) are already in the access log and metrics; Pingora
    /// would otherwise log each as an ERROR.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        matches!(error.etype(), ErrorType::HTTPStatus(_))
    }

    /// wsgate serves WebSocket upgrades itself, so a 101 on this path answers a request that
    /// did not ask to switch protocols: relaying it would hand the client a raw tunnel.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if upstream_response.status == 101 {
            self.upstream_error(ctx, UpstreamErrorKind::Other);
            return Err(Error::explain(ErrorType::HTTPStatus(502), "backend switched protocols unasked"));
        }
        if upstream_response.status == 502 {
            ctx.backend_failed();
        } else if let (Some(pool), Some(addr)) = (ctx.pool(), ctx.attempts.backend) {
            pool.loads.succeeded(&addr);
        }
        if let Some(pool) = ctx.pool() {
            pool.set_affinity_cookie(upstream_response, &ctx.attempts, ctx.tls);
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut RequestCtx) -> FailToProxy {
        if e.etype() == &ErrorType::WriteTimedout && e.esource() == &ErrorSource::Downstream {
            self.limits.refuse(Refusal::SendTimeout); // an HTTP/2 stream's (see request_filter)
        }
        let status = error_status(e);
        if let Some(status) = status.filter(|_| session.response_written().is_none()) {
            let _ = Answer::status(status).send(session).await;
        }
        // Pingora's convention: 0 when the client got no answer.
        FailToProxy { error_code: status.unwrap_or(0), can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.upgrade == Some(UpgradeEnd::SessionOpen) {
            return; // the session's own task logs it when it ends
        }
        listener::before_next_request(&mut session.downstream_session, &ctx.snapshot.config.limits);
        let (route, upstream) = ctx.labels();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if ctx.upgrade.is_none() {
            self.metrics.http_requests.with_label_values(&[route, upstream, &metrics::status_label(status)]).inc();
            self.metrics
                .http_duration
                .with_label_values(&[route, upstream])
                .observe(ctx.started.elapsed().as_secs_f64());
        }
        if self.access_log.enabled() {
            let req = session.req_header();
            let exchange = Exchange {
                client: ctx.client_ip,
                method: req.method.as_str(),
                host: headers::request_host(req).unwrap_or_default(),
                path: self.access_log.path(&req.uri),
                route,
                upstream,
                backend: ctx.attempts.backend,
                started: ctx.started,
                user: ctx.granted.user(),
            };
            // An upgrade that did not open moved no body bytes (its answer is wsgate's own).
            let bytes = match ctx.upgrade {
                None => (session.body_bytes_read() as u64, session.body_bytes_sent() as u64),
                Some(_) => (0, 0),
            };
            self.access_log.write(&exchange.record(status, bytes, None));
        }
    }
}
