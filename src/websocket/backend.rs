//! The backend side of a WebSocket handshake: pick a backend from the route's pool with
//! the upstream's one pool choice and retry rule, send it the request the proxy's header
//! policy built and read its final answer; relay a refusal to the client.

use super::tunnel::Endpoint;
use super::upgrade::{Refused, Upgrade, Upgraded};
use crate::telemetry::metrics::{Metrics, UpstreamErrorKind};
use crate::upstream::load::Place;
use crate::upstream::{hash_input, Failure};
use bytes::{Buf, BytesMut};
use log::{debug, warn};
use pingora::connectors::TransportConnector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Stream;
use pingora::proxy::Session;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend's handshake response head larger than this is refused (nginx uses 4-8 KiB).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// A refusing backend's body is relayed to the client up to this size.
const MAX_RELAYED_BODY: usize = 64 * 1024;
/// Interim answers (`100 Continue`, `103 Early Hints`) skipped before the final one; a
/// backend sending more is broken (or hostile) and gets 502.
const MAX_INTERIM_HEADS: usize = 8;

/// A backend connection that has answered the handshake.
pub(super) struct BackendHandshake {
    pub(crate) addr: SocketAddr,
    /// The session's place on the backend, taken when it was chosen.
    pub(crate) place: Place,
    pub(crate) stream: Stream,
    pub(crate) response: ResponseHeader,
    /// Bytes read so far: the response head (`head_len` bytes), then anything after it.
    pub(crate) buffer: BytesMut,
    pub(crate) head_len: usize,
}

impl BackendHandshake {
    /// The backend side of the tunnel. What the backend sent right behind its 101 (usually
    /// nothing; else its first frames) is copied, so the handshake buffer is not kept for
    /// the whole session.
    pub(super) fn into_endpoint(mut self) -> (Endpoint, Place) {
        let early = self.buffer.split_off(self.head_len).to_vec();
        (Endpoint { stream: self.stream, early }, self.place)
    }
}

/// Picks a healthy backend (retrying failed connects on others, bounded by the pool's
/// `retries`), sends it the handshake and reads its answer's head.
pub(super) async fn open(
    connector: &TransportConnector,
    metrics: &Metrics,
    up: &mut Upgrade<'_>,
    client_req: &RequestHeader,
) -> Result<BackendHandshake, Refused> {
    let pool = up.pool;
    let key = hash_input(&pool.spec.balance, client_req, up.client_ip);
    up.attempts.pinned = pool.pinned(client_req);
    let error = |addr: SocketAddr, kind| metrics.upstream_error(&pool.spec.name, &addr.to_string(), kind);
    loop {
        let (addr, place) = pool.pick_session(&key, up.attempts).await.map_err(Refused::Upstream)?;
        let stream = match connector.new_stream(&pool.peer(addr)).await {
            Ok(s) => s,
            Err(e) => {
                error(addr, UpstreamErrorKind::of(&e));
                pool.loads.failed(&addr);
                warn!("websocket connect to {addr} ({}) failed: {e}", pool.spec.name);
                let failure = Failure::of_connect(&e);
                if !up.attempts.connect_failed(failure, pool.spec.retries) {
                    return Err(Refused::Upstream(failure));
                }
                continue;
            }
        };
        // Once connected, no retry: the backend may already have acted on the request.
        let req = (up.backend_request)(addr)?;
        let exchanged = exchange(addr, place, stream, &req, pool.spec.read_timeout).await;
        match &exchanged {
            Ok(answered) if answered.response.status != 502 => pool.loads.succeeded(&addr),
            Ok(_) => pool.loads.failed(&addr),
            Err(failure) => {
                let timeout = *failure == Failure::Timeout;
                error(addr, if timeout { UpstreamErrorKind::ReadTimeout } else { UpstreamErrorKind::Other });
                pool.loads.failed(&addr);
            }
        }
        return exchanged.map_err(Refused::Upstream);
    }
}

async fn exchange(
    addr: SocketAddr,
    place: Place,
    mut stream: Stream,
    req: &RequestHeader,
    timeout: Duration,
) -> Result<BackendHandshake, Failure> {
    let mut wire = Vec::with_capacity(1024);
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    wire.extend_from_slice(format!("{} {} HTTP/1.1\r\n", req.method, target).as_bytes());
    req.header_to_h1_wire(&mut wire);
    wire.extend_from_slice(b"\r\n");

    let io = async {
        stream.write_all(&wire).await.map_err(|_| Failure::BadAnswer)?;
        stream.flush().await.map_err(|_| Failure::BadAnswer)?;
        let mut buffer = BytesMut::with_capacity(4096);
        let mut interim = Interim::default();
        loop {
            if stream.read_buf(&mut buffer).await.map_err(|_| Failure::BadAnswer)? == 0 {
                return Err(Failure::BadAnswer);
            }
            if let Some((response, head_len)) = final_response_head(&mut buffer, &mut interim)? {
                return Ok((response, buffer, head_len));
            }
            // Interim heads count too: the bound is on everything before the final head.
            if interim.bytes + buffer.len() > MAX_RESPONSE_HEAD {
                return Err(Failure::BadAnswer);
            }
        }
    };
    match tokio::time::timeout(timeout, io).await {
        Err(_) => {
            warn!("websocket handshake with {addr} timed out after {timeout:?}");
            Err(Failure::Timeout)
        }
        Ok(Err(failure)) => {
            warn!("websocket handshake with {addr} failed: connection closed or invalid response");
            Err(failure)
        }
        Ok(Ok((response, buffer, head_len))) => {
            Ok(BackendHandshake { addr, place, stream, response, buffer, head_len })
        }
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
/// `Err(BadAnswer)` for a head that is not HTTP or for more than MAX_INTERIM_HEADS interim ones.
fn final_response_head(
    buffer: &mut BytesMut,
    interim: &mut Interim,
) -> Result<Option<(ResponseHeader, usize)>, Failure> {
    loop {
        let Some((response, head_len)) = parse_response_head(buffer)? else { return Ok(None) };
        if !response.status.is_informational() || response.status == 101 {
            return Ok(Some((response, head_len)));
        }
        interim.heads += 1;
        if interim.heads > MAX_INTERIM_HEADS {
            return Err(Failure::BadAnswer);
        }
        interim.bytes += head_len;
        buffer.advance(head_len);
    }
}

/// `Ok(None)` while the head is incomplete; `Err(BadAnswer)` if it is not HTTP.
fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHeader, usize)>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(Failure::BadAnswer),
        Ok(httparse::Status::Complete(len)) => {
            let code = parsed.code.ok_or(Failure::BadAnswer)?;
            let mut response =
                ResponseHeader::build(code, Some(parsed.headers.len())).map_err(|_| Failure::BadAnswer)?;
            for h in parsed.headers.iter() {
                response.append_header(h.name.to_string(), h.value).map_err(|_| Failure::BadAnswer)?;
            }
            Ok(Some((response, len)))
        }
    }
}

/// The backend refused the upgrade (401, 404, ...): the client gets that answer, with the
/// body if it is small and delimited by Content-Length.
pub(super) async fn relay_refusal(
    session: &mut Session,
    backend: &mut BackendHandshake,
    timeout: Duration,
) -> Result<Upgraded, Refused> {
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
        return Err(Refused::Upstream(Failure::CutShort));
    }
    body.truncate(length.unwrap_or(0));
    for name in ["connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"] {
        resp.remove_header(name);
    }
    let written = async {
        resp.insert_header("Content-Length", body.len().to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body.freeze()), true).await
    };
    if let Err(e) = written.await {
        debug!("relaying the backend's refusal failed: {e}");
        return Ok(Upgraded::ClientGone);
    }
    Ok(Upgraded::Relayed)
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
        assert_eq!(parse_response_head(b"garbage\r\n\r\n").unwrap_err(), Failure::BadAnswer);
    }

    #[test]
    fn interim_heads_before_the_final_one_are_dropped_and_bounded() {
        let interim: &[u8] =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n";
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
        let mut buffer =
            BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"[..]);
        assert_eq!(final_response_head(&mut buffer, &mut Interim::default()).unwrap().unwrap().0.status, 403);
        let endless = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_HEADS + 1);
        assert_eq!(
            final_response_head(&mut BytesMut::from(&endless[..]), &mut Interim::default()).unwrap_err(),
            Failure::BadAnswer
        );
        let just_enough = [b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_HEADS), last.to_vec()].concat();
        assert!(final_response_head(&mut BytesMut::from(&just_enough[..]), &mut Interim::default()).unwrap().is_some());
    }
}
