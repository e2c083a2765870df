//! wsgate's own answers. Every refusal and failure that reaches a client (a request against
//! RFC 9112, a limit, no route, a WebSocket handshake wsgate refuses, no healthy or no
//! reachable backend) converts into one `Answer`, and `Answer::send` is the one place that
//! writes it.

use crate::auth::{AuthFailure, AuthResult};
use crate::listener::limits::Refusal as Limit;
use crate::proxy::admission::Violation;
use crate::proxy::headers::PolicyError;
use crate::upstream::Failure;
use crate::websocket::handshake::Refusal as Handshake;
use crate::websocket::Refused;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::borrow::Cow;

/// A short text answer: status, a one-line reason as its body, extra header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) headers: &'static [(&'static str, &'static str)],
    /// The connection ends after this answer (said in it with `Connection: close`).
    pub(crate) close: bool,
    /// Another service's answer passed on as it is (forward auth's 401/403): its body
    /// and header fields replace the reason and the text type.
    pub(crate) relayed: Option<Box<Relayed>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relayed {
    body: Bytes,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Answer {
    /// `status` with its standard reason, closing the connection.
    pub(crate) fn status(status: u16) -> Answer {
        Answer { status, reason: reason(status).into(), headers: &[], close: true, relayed: None }
    }

    /// No route for the request: a normal answer on a connection that stays open.
    pub(crate) fn no_route() -> Answer {
        Answer { close: false, ..Answer::status(404) }
    }

    fn new(status: u16, reason: &'static str, headers: &'static [(&'static str, &'static str)]) -> Answer {
        Answer { status, reason: reason.into(), headers, close: true, relayed: None }
    }

    /// A forward-auth service's refusal, relayed: the connection stays open, as after any
    /// 401/403 the client may retry with credentials.
    pub(crate) fn relayed(status: u16, body: Bytes, headers: Vec<(http::HeaderName, http::HeaderValue)>) -> Answer {
        let relayed = Some(Box::new(Relayed { body, headers }));
        Answer { close: false, relayed, ..Answer::status(status) }
    }

    /// The forward-auth service could not be asked: fail closed.
    pub(crate) fn auth_unavailable() -> Answer {
        Answer::new(503, "service unavailable: authentication could not be checked", RETRY_SOON)
    }

    /// Writes the answer as the complete response to `session`'s request.
    pub(crate) async fn send(&self, session: &mut Session) -> Result<()> {
        if self.close {
            session.set_keepalive(None);
        }
        let (body, text) = match &self.relayed {
            Some(relayed) => (relayed.body.clone(), false),
            None => (Bytes::from(format!("{}\n", self.reason)), true),
        };
        let mut resp = ResponseHeader::build(self.status, Some(4 + self.headers.len()))?;
        if text {
            resp.insert_header("Content-Type", "text/plain; charset=utf-8")?;
        }
        resp.insert_header("Content-Length", body.len().to_string())?;
        resp.insert_header("Cache-Control", "no-store")?;
        for (name, value) in self.headers {
            resp.insert_header(*name, *value)?;
        }
        for (name, value) in self.relayed.iter().flat_map(|r| &r.headers) {
            resp.append_header(name.clone(), value.clone())?;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await
    }
}

/// The text body for a status wsgate answers with itself.
fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        403 => "forbidden",
        404 => "no route for this request",
        405 => "method not allowed: wsgate does not proxy CONNECT",
        426 => "upgrade required",
        501 => "not implemented",
        502 => "bad gateway: the backend failed",
        503 => "service unavailable: no healthy backend",
        504 => "gateway timeout: the backend did not answer in time",
        _ => "error",
    }
}

/// RFC 6750 §3: no credential, or one that failed.
const BEARER: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer")];
const BEARER_INVALID: &[(&str, &str)] = &[("WWW-Authenticate", "Bearer error=\"invalid_token\"")];
const RETRY_SOON: &[(&str, &str)] = &[("Retry-After", "1")];
const RETRY_LATER: &[(&str, &str)] = &[("Retry-After", "5")];
const VERSION_13: &[(&str, &str)] = &[("Sec-WebSocket-Version", "13")];
const RETRY_JITTERED: [&[(&str, &str)]; 5] = [
    &[("Retry-After", "1")],
    &[("Retry-After", "2")],
    &[("Retry-After", "3")],
    &[("Retry-After", "4")],
    &[("Retry-After", "5")],
];

impl From<Violation> for Answer {
    fn from(v: Violation) -> Answer {
        Answer::new(v.status(), v.reason(), &[])
    }
}

impl From<Limit> for Answer {
    fn from(limit: Limit) -> Answer {
        match limit {
            Limit::RatePerIp => Answer::new(429, "too many requests from this address", RETRY_SOON),
            Limit::ConcurrencyPerIp => Answer::new(429, "too many concurrent requests from this address", RETRY_SOON),
            Limit::WebSocketSessions | Limit::RouteWebSocketSessions => {
                Answer::new(503, "too many WebSocket sessions", RETRY_LATER)
            }
            Limit::HeadersTooLarge => Answer::new(431, "request header fields too large", &[]),
            // Connections over a limit are closed at accept, before there is a request to answer.
            Limit::Connections | Limit::ConnectionsPerIp | Limit::ConnectionRatePerIp => {
                Answer::new(503, "too many connections", &[])
            }
            Limit::HeaderTimeout => Answer::new(408, "request header timeout", &[]),
            // A client that stopped reading its answer is closed mid-answer: never sent.
            Limit::SendTimeout => Answer::new(408, "send timeout", &[]),
            // Closed before there is a request (nor a protocol to answer in).
            Limit::ProxyProtocol => Answer::new(400, "bad PROXY protocol header", &[]),
        }
    }
}

impl From<Handshake> for Answer {
    fn from(refusal: Handshake) -> Answer {
        match refusal {
            Handshake::UnsupportedVersion => Answer::new(426, refusal.message(), VERSION_13),
            _ => Answer::new(refusal.status(), refusal.message(), &[]),
        }
    }
}

impl From<Failure> for Answer {
    fn from(failure: Failure) -> Answer {
        match failure {
            Failure::InvalidHandshake => {
                Answer::new(502, "bad gateway: the backend's WebSocket handshake was invalid", &[])
            }
            Failure::CutShort => Answer::new(502, "bad gateway: the backend's answer was cut short", &[]),
            // Jittered, so that the clients refused together do not all come back together.
            Failure::AtCapacity => {
                let retry = RETRY_JITTERED[fastrand::usize(0..RETRY_JITTERED.len())];
                Answer::new(503, "service unavailable: every backend is at its session limit", retry)
            }
            _ => Answer::status(failure.status()),
        }
    }
}

/// A 401 never says which check failed (the debug log does); the connection stays open for
/// the client's next try with a token.
impl From<&AuthFailure> for Answer {
    fn from(failure: &AuthFailure) -> Answer {
        let headers = if failure.result == AuthResult::Missing { BEARER } else { BEARER_INVALID };
        Answer { close: false, ..Answer::new(401, "unauthorized", headers) }
    }
}

impl From<PolicyError> for Answer {
    fn from(e: PolicyError) -> Answer {
        Answer { reason: format!("bad request: {}", e.0).into(), ..Answer::status(400) }
    }
}

impl From<Refused> for Answer {
    fn from(refused: Refused) -> Answer {
        match refused {
            Refused::Handshake(r) => r.into(),
            Refused::Limit(r) => r.into(),
            Refused::Upstream(f) => f.into(),
            Refused::Policy(why) => PolicyError(why).into(),
        }
    }
}

/// The status a failed request is answered with, if it can still be answered: 502 when the
/// backend fails, 503 when no backend is healthy (raised as `HTTPStatus(503)`), 504 when it
/// is too slow; none when the client itself went away or stalled.
pub(super) fn error_status(e: &Error) -> Option<u16> {
    let downstream = e.esource() == &ErrorSource::Downstream;
    match e.etype() {
        ErrorType::HTTPStatus(code) => Some(*code),
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout if downstream => None,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => Some(504),
        ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed if downstream => None,
        _ => match e.esource() {
            ErrorSource::Upstream => Some(502),
            ErrorSource::Downstream => Some(400),
            ErrorSource::Internal | ErrorSource::Unset => Some(500),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_keeps_its_status_and_headers() {
        assert_eq!(Answer::from(Limit::RatePerIp).headers, RETRY_SOON);
        assert_eq!(Answer::from(Limit::HeadersTooLarge).status, 431);
        assert_eq!(Answer::from(Limit::WebSocketSessions).status, 503);
        assert_eq!(Answer::from(Handshake::UnsupportedVersion).headers, VERSION_13);
        assert_eq!(Answer::from(Handshake::OriginDenied).status, 403);
        assert_eq!(Answer::from(Failure::NoneHealthy).status, 503);
        assert_eq!(Answer::from(Failure::ConnectTimeout).status, 504);
        assert_eq!(Answer::from(Violation::TargetTooLong).status, 414);
        assert!(Answer::from(Refused::Policy("x".into())).reason.contains('x'));
        assert!(!Answer::no_route().close && Answer::status(502).close);
    }
}
