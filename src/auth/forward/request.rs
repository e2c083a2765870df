//! The subrequest's head: what the auth service learns about the client's request.
//!
//! The client's own headers go along (that is where its credential is), except those that
//! belong to the client's connection or to a body: the subrequest is a bodiless `GET` on
//! wsgate's own connection, so `Content-Length` or `Transfer-Encoding` would make the
//! service wait for a body that never comes, and `Connection`/`Upgrade` would ask it to
//! switch protocols. What the request was (method, URI, host, scheme, client) travels in
//! `X-Forwarded-*`, as nginx `auth_request` and Traefik ForwardAuth users expect; the
//! client's own `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are dropped so it cannot
//! claim another address or path to the auth service.

use super::target::{Subject, Target};
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

/// Hop-by-hop (RFC 9110 §7.6.1), body framing, and the parts of the WebSocket handshake
/// that only the backend's handshake uses (`Sec-WebSocket-Protocol` stays: it may carry
/// the credential).
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "host",
    "sec-websocket-key",
    "sec-websocket-extensions",
    "sec-websocket-version",
    "forwarded",
    "x-real-ip",
];

const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `GET <target path>` carrying `subject`'s headers and the `X-Forwarded-*` set.
pub(super) fn subrequest(subject: &Subject<'_>, target: &Target) -> pingora::Result<RequestHeader> {
    let client = subject.req;
    let mut req = RequestHeader::build("GET", target.path.as_bytes(), Some(client.headers.len() + 6))?;
    req.insert_header(header::HOST, target.authority.clone())?;
    let nominated = connection_nominated(client);
    for (name, value) in client.headers.iter() {
        if passed_on(name, &nominated) {
            req.append_header(name.clone(), value.clone())?;
        }
    }
    let uri = client.uri.path_and_query().map_or("/", |p| p.as_str());
    let proto = if subject.tls { "https" } else { "http" };
    for (name, value) in [
        (X_FORWARDED_METHOD, Some(client.method.as_str().to_string())),
        (X_FORWARDED_URI, Some(uri.to_string())),
        (X_FORWARDED_HOST, Some(subject.host.to_string()).filter(|h| !h.is_empty())),
        (X_FORWARDED_PROTO, Some(proto.to_string())),
        (X_FORWARDED_FOR, subject.client_ip.map(|ip| ip.to_string())),
    ] {
        // A host with bytes a header cannot carry is left out rather than failing the check.
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            req.insert_header(name, value)?;
        }
    }
    Ok(req)
}

fn passed_on(name: &HeaderName, nominated: &[HeaderName]) -> bool {
    !DROPPED.contains(&name.as_str()) && !name.as_str().starts_with("x-forwarded-") && !nominated.contains(name)
}

/// The headers the client's `Connection` names: hop-by-hop by its own say (RFC 9110 §7.6.1).
fn connection_nominated(req: &RequestHeader) -> Vec<HeaderName> {
    req.headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .collect()
}
