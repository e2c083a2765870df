//! WebSocket sessions: validate the client's handshake, open the backend side ourselves
//! (same pool selection and header policy as plain HTTP), relay the 101, then hand both raw
//! streams to wsgate's own tunnel.
//!
//! Why not let Pingora forward the upgrade: after the 101 Pingora 0.9.1 runs its own
//! single-loop tunnel, which deadlocks under bidirectional load (see `tunnel.rs`), and hooks
//! cannot replace it. So `request_filter` takes WebSocket upgrades over: everything before
//! (accept, TLS, HTTP parsing, routing) is Pingora's and shared with plain HTTP.

pub mod frames;
pub mod handshake;
mod pump;
pub mod tunnel;

use crate::config::model::Route;
use crate::headers::{self, Forwarding};
use crate::access_log::{self, AccessLog, Record, WsRecord};
use crate::drain::InFlight;
use crate::limits::Admitted;
use crate::metrics::{close_code_label, Metrics, SessionMeter, UpgradeResult, UpstreamErrorKind};
use crate::live::Snapshot;
use crate::proxy::{Gateway, RequestCtx};
use crate::responses;
use crate::upstream::{hash_input, Attempts, Pool};
use bytes::{Buf, BytesMut};
use handshake::Refusal;
use log::{debug, warn};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use pingora::{ErrorType, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use frames::Rules;
use futures_util::FutureExt;
use tunnel::{Direction, Endpoint, Initiator, Meters, TunnelStats};

/// A backend's handshake response head larger than this is refused (nginx uses 4-8 KiB).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// A refusing backend's body is relayed to the client up to this size.
const MAX_RELAYED_BODY: usize = 64 * 1024;
/// Interim answers (`100 Continue`, `103 Early Hints`) skipped before the final one; a
/// backend sending more is broken (or hostile) and gets 502.
const MAX_INTERIM_HEADS: usize = 8;

/// What happened to one WebSocket upgrade request, for logging.
#[derive(Debug, Default, Clone)]
pub struct WsOutcome {
    /// The session went on in its own task, which logs it when it ends.
    pub detached: bool,
    /// The request as the access log shows it (the session itself is gone by then).
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub backend: Option<SocketAddr>,
    pub tunnel: Option<TunnelStats>,
}

impl WsOutcome {
    /// Completes an access-log `record` (client, route, timing filled in) with this outcome.
    pub fn record<'a>(&'a self, mut record: Record<'a>) -> Record<'a> {
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
pub async fn serve(gw: &Gateway, session: &mut Session, ctx: &mut RequestCtx, snapshot: &Snapshot, route: &Route) -> Result<bool> {
    let outcome = ctx.websocket.insert(WsOutcome {
        method: session.req_header().method.to_string(),
        host: headers::request_host(session.req_header()).unwrap_or_default().to_string(),
        path: gw.access_log.path(&session.req_header().uri).to_string(),
        ..Default::default()
    });
    // Whatever happens, this connection is not reused for another request.
    session.set_keepalive(None);

    let (route_label, upstream_label) = (route.name.as_str(), snapshot.pools[route.upstream].spec.name.as_str());
    let count = |result: UpgradeResult| gw.metrics.ws_upgrades.with_label_values(&[route_label, upstream_label, result.label()]).inc();

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
    let fwd = Forwarding { client_ip: ctx.client_ip, tls: ctx.tls, backend: SocketAddr::from(([0, 0, 0, 0], 0)), websocket: true };
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
        send_timeout: Duration::from_secs(60),
    };
    let downstream_dir = Direction {
        sender: Initiator::Backend,
        meters: Meters { bytes: meter.bytes_to_client.clone(), messages: meter.messages_to_client.clone() },
        max_message: None,
        rules: backend_rules,
        send_timeout: Duration::from_secs(60),
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
        let stats = tunnel::run(self.client, self.backend, self.idle_timeout, &self.upstream_dir, &self.downstream_dir, self.drain_at).await;
        drop(self.meter);
        let (route, upstream) = (self.route.as_str(), self.upstream.as_str());
        let (initiator, code) = match stats.first_close {
            Some((who, code)) => (who.label(), close_code_label(code)),
            None => ("none", close_code_label(None)),
        };
        self.metrics.ws_closes.with_label_values(&[route, upstream, initiator, &code]).inc();
        self.metrics.ws_duration.with_label_values(&[route, upstream]).observe(stats.duration.as_secs_f64());
        if let Some(offender) = stats.protocol_error {
            self.metrics.ws_protocol_errors.with_label_values(&[route, upstream, offender.direction_label()]).inc();
        }
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

/// A backend connection that has answered the handshake.
struct BackendHandshake {
    addr: SocketAddr,
    stream: Stream,
    response: ResponseHeader,
    /// Bytes read so far: the response head (`head_len` bytes), then anything after it.
    buffer: BytesMut,
    head_len: usize,
}

/// Picks a healthy backend (retrying failed connects on others, bounded by the pool's
/// `retries`), sends the policy-rewritten handshake and reads the response head.
/// Errors are the status to answer the client with.
async fn open_backend(
    gw: &Gateway,
    pool: &Pool,
    route: &Route,
    client_req: &RequestHeader,
    mut fwd: Forwarding,
    attempts: &mut Attempts,
) -> std::result::Result<BackendHandshake, u16> {
    let key = hash_input(&pool.spec.balance, client_req, fwd.client_ip);
    let mut status = 503;
    for _ in 0..=pool.spec.retries {
        let Some(addr) = pool.select(&key, &attempts.excluded).and_then(|b| b.addr.as_inet().copied()) else { break };
        attempts.backend = Some(addr);
        let stream = match gw.connector.new_stream(&pool.peer(addr)).await {
            Ok(s) => s,
            Err(e) => {
                gw.metrics.upstream_error(&pool.spec.name, &addr.to_string(), UpstreamErrorKind::of(&e));
                warn!("websocket connect to {addr} ({}) failed: {e}", pool.spec.name);
                status = if matches!(e.etype(), ErrorType::ConnectTimedout) { 504 } else { 502 };
                attempts.exclude_backend(pool.spec.retries);
                continue;
            }
        };
        // Once connected, no retry: the backend may already have acted on the request.
        fwd.backend = addr;
        let mut req = client_req.clone();
        headers::apply(&mut req, route, &fwd).map_err(|_| 400u16)?;
        let exchanged = exchange(addr, stream, &req, pool.spec.read_timeout).await;
        if let Err(status) = exchanged {
            let kind = if status == 504 { UpstreamErrorKind::ReadTimeout } else { UpstreamErrorKind::Other };
            gw.metrics.upstream_error(&pool.spec.name, &addr.to_string(), kind);
        }
        return exchanged;
    }
    Err(status)
}

async fn exchange(addr: SocketAddr, mut stream: Stream, req: &RequestHeader, timeout: Duration) -> std::result::Result<BackendHandshake, u16> {
    let mut wire = Vec::with_capacity(1024);
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    wire.extend_from_slice(format!("{} {} HTTP/1.1\r\n", req.method, target).as_bytes());
    req.header_to_h1_wire(&mut wire);
    wire.extend_from_slice(b"\r\n");

    let io = async {
        stream.write_all(&wire).await.map_err(|_| 502u16)?;
        stream.flush().await.map_err(|_| 502u16)?;
        let mut buffer = BytesMut::with_capacity(4096);
        let mut interim = Interim::default();
        loop {
            if stream.read_buf(&mut buffer).await.map_err(|_| 502u16)? == 0 {
                return Err(502);
            }
            if let Some((response, head_len)) = final_response_head(&mut buffer, &mut interim)? {
                return Ok((response, buffer, head_len));
            }
            // Interim heads count too: the bound is on everything before the final head.
            if interim.bytes + buffer.len() > MAX_RESPONSE_HEAD {
                return Err(502);
            }
        }
    };
    match tokio::time::timeout(timeout, io).await {
        Err(_) => {
            warn!("websocket handshake with {addr} timed out after {timeout:?}");
            Err(504)
        }
        Ok(Err(status)) => {
            warn!("websocket handshake with {addr} failed: connection closed or invalid response");
            Err(status)
        }
        Ok(Ok((response, buffer, head_len))) => Ok(BackendHandshake { addr, stream, response, buffer, head_len }),
    }
}

/// Interim heads dropped so far from one backend's answer.
#[derive(Debug, Default)]
struct Interim {
    heads: usize,
    bytes: usize,
}

/// The final response head at the start of `buffer`, once complete, after dropping the
/// complete interim (1xx other than 101) heads before it: RFC 9110 §15.2 lets a server send
/// any number of them before its final answer, which for an upgrade is the 101 or a refusal.
/// `Err(502)` for a head that is not HTTP or for more than MAX_INTERIM_HEADS interim ones.
fn final_response_head(buffer: &mut BytesMut, interim: &mut Interim) -> std::result::Result<Option<(ResponseHeader, usize)>, u16> {
    loop {
        let Some((response, head_len)) = parse_response_head(buffer)? else { return Ok(None) };
        if !response.status.is_informational() || response.status == 101 {
            return Ok(Some((response, head_len)));
        }
        interim.heads += 1;
        if interim.heads > MAX_INTERIM_HEADS {
            return Err(502);
        }
        interim.bytes += head_len;
        buffer.advance(head_len);
    }
}

/// `Ok(None)` while the head is incomplete; `Err(502)` if it is not HTTP.
fn parse_response_head(buf: &[u8]) -> std::result::Result<Option<(ResponseHeader, usize)>, u16> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(502),
        Ok(httparse::Status::Complete(len)) => {
            let code = parsed.code.ok_or(502u16)?;
            let mut response = ResponseHeader::build(code, Some(parsed.headers.len())).map_err(|_| 502u16)?;
            for h in parsed.headers.iter() {
                response.append_header(h.name.to_string(), h.value).map_err(|_| 502u16)?;
            }
            Ok(Some((response, len)))
        }
    }
}

/// The backend refused the upgrade (401, 404, ...): the client gets that answer, with the
/// body if it is small and delimited by Content-Length.
async fn relay_refusal(session: &mut Session, backend: &mut BackendHandshake, timeout: Duration) -> Result<()> {
    let mut resp = backend.response.clone();
    let length = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n <= MAX_RELAYED_BODY);
    let mut body = backend.buffer.split_off(backend.head_len);
    if let Some(n) = length {
        let _ = tokio::time::timeout(timeout, async {
            while body.len() < n {
                match backend.stream.read_buf(&mut body).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    }
    if length.is_some_and(|n| body.len() < n) {
        // A short body relayed with a corrected length would look complete: refuse it.
        return responses::text(session, 502, "bad gateway: the backend's answer was cut short", &[]).await;
    }
    body.truncate(length.unwrap_or(0));
    for name in ["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"] {
        resp.remove_header(name);
    }
    resp.insert_header("Content-Length", body.len().to_string())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body.freeze()), true).await
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
            crate::connections::GatedStream::leave_send_timeout_to_the_tunnel(&stream);
            Some(Endpoint { stream, early })
        }
        other => {
            *session.downstream_session = other;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_heads_incrementally() {
        let full = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi";
        for cut in 0..full.len() - 4 {
            let r = parse_response_head(&full[..cut]);
            assert!(matches!(r, Ok(None)), "cut at {cut}");
        }
        let (resp, len) = parse_response_head(full).unwrap().unwrap();
        assert_eq!(resp.status, 101);
        assert_eq!(&full[len..], b"\x81\x02hi");
        assert_eq!(parse_response_head(b"garbage\r\n\r\n").unwrap_err(), 502);
    }

    #[test]
    fn interim_heads_before_the_final_one_are_dropped_and_bounded() {
        let interim: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
        let last = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi";
        let full = [interim, &last[..]].concat();
        // However the answer arrives in pieces, the result is the 101 and what follows it.
        for cut in 0..full.len() {
            let (mut buffer, mut seen) = (BytesMut::from(&full[..cut]), Interim::default());
            let mut found = final_response_head(&mut buffer, &mut seen).unwrap();
            buffer.extend_from_slice(&full[cut..]);
            if found.is_none() {
                found = final_response_head(&mut buffer, &mut seen).unwrap();
            }
            let (resp, len) = found.unwrap_or_else(|| panic!("cut at {cut}"));
            assert_eq!(resp.status, 101, "cut at {cut}");
            assert_eq!(&buffer[len..], b"\x81\x02hi", "cut at {cut}");
            assert_eq!((seen.heads, seen.bytes), (2, interim.len()), "cut at {cut}");
        }
        // A refusal after an interim head is the final answer too.
        let mut buffer = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..]);
        assert_eq!(final_response_head(&mut buffer, &mut Interim::default()).unwrap().unwrap().0.status, 403);
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_HEADS + 1);
        assert_eq!(final_response_head(&mut BytesMut::from(&endless[..]), &mut Interim::default()).unwrap_err(), 502);
        let just_enough = [b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_HEADS), last.to_vec()].concat();
        assert!(final_response_head(&mut BytesMut::from(&just_enough[..]), &mut Interim::default()).unwrap().is_some());
    }
}
