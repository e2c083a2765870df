//! The `ProxyHttp` implementation. Each hook is a thin dispatcher into the module that
//! makes its decision: `routing` → `websocket` (upgrades) → `upstream` (pool, backend)
//! → `headers` (what the backend receives) → `responses` / access log.

pub mod admission;
pub(crate) mod answer;
pub mod headers;
pub(crate) mod routing;
#[cfg(test)]
mod tests;

use crate::lifecycle::drain::{Drain, InFlight};
use crate::lifecycle::reload::{Live, Snapshot};
use crate::listener;
use crate::listener::limits::{self, Admitted, Limits, Refusal};
use crate::telemetry::access_log::{self, AccessLog, Record};
use crate::telemetry::metrics::{self, Metrics, UpstreamErrorKind};
use crate::upstream::{hash_input, Attempts};
use crate::websocket::{self, handshake, WsOutcome};
use async_trait::async_trait;
use headers::Forwarding;
use log::{debug, warn};
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct Gateway {
    /// Routes and pools, replaced as a whole by reloads.
    pub(crate) live: Arc<Live>,
    /// Opens backend connections for WebSocket sessions (plain HTTP uses Pingora's own).
    pub(crate) connector: TransportConnector,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: Arc<AccessLog>,
    pub(crate) drain: Arc<Drain>,
    pub(crate) limits: Arc<Limits>,
    /// Source of peer group keys no other request uses (see `Pool::fresh_peer`).
    fresh_groups: AtomicU64,
}

/// Per-request state.
pub(crate) struct RequestCtx {
    /// The routes and pools this request uses from start to end, whatever reloads happen.
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) started: Instant,
    pub(crate) route: Option<usize>,
    pub(crate) client_ip: Option<IpAddr>,
    /// The client connected over TLS.
    pub(crate) tls: bool,
    /// The backend this request went to, and those a failed connect excludes.
    pub(crate) attempts: Attempts,
    /// Set when `request_filter` served a WebSocket upgrade itself.
    pub(crate) websocket: Option<WsOutcome>,
    /// Keeps a draining process alive until this request or session is done (a WebSocket
    /// session takes it along when its tunnel goes on in its own task).
    pub(crate) in_flight: Option<InFlight>,
    /// This request's (and session's) place under the limits, released when it ends.
    pub(crate) admitted: Vec<Admitted>,
}

impl Gateway {
    pub(crate) fn new(
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        limits: Arc<Limits>,
        access_log: AccessLog,
        drain: Arc<Drain>,
    ) -> Self {
        Gateway {
            live,
            connector: TransportConnector::new(None),
            limits,
            metrics,
            access_log: Arc::new(access_log),
            drain,
            fresh_groups: AtomicU64::new(0),
        }
    }

    fn upstream_error(&self, ctx: &RequestCtx, kind: UpstreamErrorKind) {
        let (_, upstream) = ctx.labels();
        let backend = ctx.attempts.backend.map_or_else(|| "-".to_string(), |b| b.to_string());
        self.metrics.upstream_error(upstream, &backend, kind);
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
            tls: false,
            attempts: Attempts::default(),
            websocket: None,
            in_flight: Some(self.drain.in_flight()),
            admitted: Vec::new(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Canonical (an IPv4-mapped address as IPv4, as a dual-stack listener reports IPv4
        // clients) once, here: headers, access log, limits and hashing all read this.
        ctx.client_ip = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_canonical());
        ctx.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        // The connection gate bounds HTTP/1 writes on the socket; an HTTP/2 stream stalls on
        // flow control instead, which Pingora's per-stream write timeout sees.
        if session.is_http2() {
            session.set_write_timeout(Some(ctx.snapshot.config.limits.send_timeout));
        }
        if let Err((status, reason)) = admission::check(session.req_header()) {
            session.set_keepalive(None);
            answer::text(session, status, reason, &[]).await?;
            return Ok(true);
        }
        let (header_bytes, header_count) = limits::header_size(session.req_header());
        match self.limits.admit_request(&ctx.snapshot.config.limits, ctx.client_ip, header_bytes, header_count) {
            Ok(admitted) => ctx.admitted.extend(admitted),
            Err(refusal) => return refuse(session, refusal).await,
        }
        let req = session.req_header();
        let Some(index) = ctx.snapshot.router.select(headers::request_host(req), req.uri.path()) else {
            answer::text(session, 404, answer::reason(404), &[]).await?;
            return Ok(true);
        };
        ctx.route = Some(index);
        if handshake::upgrade_kind(session.req_header()) == handshake::Upgrade::WebSocket {
            let snapshot = ctx.snapshot.clone();
            return websocket::serve(self, session, ctx, &snapshot, &snapshot.config.routes[index]).await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let route =
            ctx.route.map(|i| &ctx.snapshot.config.routes[i]).ok_or_else(|| Error::new(ErrorType::InternalError))?;
        let pool = &ctx.snapshot.pools[route.upstream];
        let key = hash_input(&pool.spec.balance, session.req_header(), ctx.client_ip);
        let Some(addr) = pool.select(&key, &ctx.attempts.excluded).and_then(|b| b.addr.as_inet().copied()) else {
            // Nothing healthy at all is 503; every healthy backend failed to connect is 502.
            let status = if ctx.attempts.excluded.is_empty() { 503 } else { 502 };
            return Err(Error::explain(ErrorType::HTTPStatus(status), answer::reason(status)));
        };
        ctx.attempts.backend = Some(addr);
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
        // Nothing reached the backend, so another backend may take the request (bounded).
        let retries = ctx.route.map_or(0, |i| ctx.snapshot.pools[ctx.snapshot.config.routes[i].upstream].spec.retries);
        let retry = ctx.attempts.exclude_backend(retries);
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
        let fwd = Forwarding { client_ip: ctx.client_ip, tls: ctx.tls, backend, websocket: false };
        headers::apply(upstream, route, &fwd).map_err(|e| Error::explain(ErrorType::HTTPStatus(400), e.0))
    }

    /// `client_reused` is Pingora's name for whether the *upstream* connection came from its
    /// pool. A pooled connection the backend had closed (its keep-alive timeout, racing our
    /// request) fails before anything reached the backend: Pingora then marks the error
    /// retryable, and the request is retried on a new connection, to the same backend if
    /// selection picks it again. Only connect failures exclude a backend (`fail_to_connect`).
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
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if client_reused && e.retry() {
            debug!(
                "pooled connection to {} was closed by the backend ({:?}); retrying on a new connection",
                peer.address(),
                e.etype()
            );
            ctx.attempts.needs_fresh = true;
        } else if e.esource() == &ErrorSource::Upstream {
            self.upstream_error(ctx, UpstreamErrorKind::of(&e));
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
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut RequestCtx) -> FailToProxy {
        if e.etype() == &ErrorType::WriteTimedout && e.esource() == &ErrorSource::Downstream {
            self.limits.refuse(Refusal::SendTimeout); // an HTTP/2 stream's (see request_filter)
        }
        let status = error_status(e);
        if status > 0 && session.response_written().is_none() {
            // This connection is closed after the answer: say so in it.
            session.set_keepalive(None);
            let _ = answer::text(session, status, answer::reason(status), &[]).await;
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.websocket.as_ref().is_some_and(|ws| ws.detached) {
            return; // the session's own task logs it when it ends
        }
        listener::before_next_request(&mut session.downstream_session, &ctx.snapshot.config.limits);
        let (route, upstream) = ctx.labels();
        let elapsed = ctx.started.elapsed();
        if ctx.websocket.is_none() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            self.metrics.http_requests.with_label_values(&[route, upstream, &metrics::status_label(status)]).inc();
            self.metrics.http_duration.with_label_values(&[route, upstream]).observe(elapsed.as_secs_f64());
        }
        if self.access_log.enabled() {
            self.access_log.write(&access_record(session, ctx, route, upstream, &self.access_log));
        }
    }
}

impl RequestCtx {
    /// `(route, upstream)` metric labels of this request.
    pub(crate) fn labels(&self) -> (&str, &str) {
        match self.route.map(|i| &self.snapshot.config.routes[i]) {
            Some(route) => (route.name.as_str(), self.snapshot.pools[route.upstream].spec.name.as_str()),
            None => (metrics::NO_ROUTE, metrics::NO_ROUTE),
        }
    }
}

/// Answers a request refused by a limit.
pub(crate) async fn refuse(session: &mut Session, refusal: Refusal) -> Result<bool> {
    let (status, reason, extra) = refusal.answer();
    session.set_keepalive(None);
    let extra: Vec<(&str, &str)> = extra.into_iter().collect();
    answer::text(session, status, reason, &extra).await?;
    Ok(true)
}

/// The access-log line of a finished request or WebSocket session.
fn access_record<'a>(
    session: &'a Session,
    ctx: &'a RequestCtx,
    route: &'a str,
    upstream: &'a str,
    log: &AccessLog,
) -> Record<'a> {
    let mut record = Record {
        time: access_log::now(),
        client: ctx.client_ip.map_or_else(String::new, |ip| ip.to_string()),
        method: "",
        host: "",
        path: "",
        status: 0,
        route,
        upstream,
        backend: ctx.attempts.backend.map_or_else(String::new, |b| b.to_string()),
        duration_ms: ctx.started.elapsed().as_secs_f64() * 1000.0,
        bytes_in: 0,
        bytes_out: 0,
        websocket: None,
    };
    // For WebSocket sessions Pingora's session is a placeholder by now: use what we kept.
    if let Some(ws) = &ctx.websocket {
        return ws.record(record);
    } else {
        let req = session.req_header();
        record.method = req.method.as_str();
        record.host = headers::request_host(req).unwrap_or_default();
        record.path = log.path(&req.uri);
        record.status = session.response_written().map_or(0, |r| r.status.as_u16());
        record.bytes_in = session.body_bytes_read() as u64;
        record.bytes_out = session.body_bytes_sent() as u64;
    }
    record
}

/// The status a failed request is answered with: 502 when the backend fails, 503 when no
/// backend is healthy (raised as `HTTPStatus(503)`), 504 when it is too slow.
fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            if e.esource() == &ErrorSource::Downstream {
                0
            } else {
                504
            }
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}
