//! CONNECT requests. wsgate proxies none: an HTTP/1.1 CONNECT or a plain HTTP/2 one gets 405
//! (what Pingora answers when CONNECT proxying is off), an extended CONNECT (RFC 8441) for
//! another protocol than `websocket` 501. An extended CONNECT for `websocket` on an HTTP/2
//! connection is a WebSocket session (docs/design/h2-websocket.md).

use super::answer::Answer;
use base64::Engine;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

/// What a CONNECT request is to wsgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Connect {
    /// Tunnel proxying, which wsgate does not do (405).
    Tunnel,
    /// RFC 8441 for a protocol other than WebSocket (501).
    OtherProtocol,
    /// RFC 8441 for `websocket`.
    WebSocket,
}

/// `None` when the request is not a CONNECT.
pub(super) fn classify(session: &Session) -> Option<Connect> {
    let req = session.req_header();
    if req.method != http::Method::CONNECT {
        return None;
    }
    // h2 reports `:protocol` only where the connection offered extended CONNECT.
    Some(match req.extensions.get::<h2::ext::Protocol>() {
        None => Connect::Tunnel,
        Some(p) if p.as_str().eq_ignore_ascii_case("websocket") && session.is_http2() => Connect::WebSocket,
        Some(_) => Connect::OtherProtocol,
    })
}

/// RFC 8441 §5: an extended CONNECT for `websocket` stands for an HTTP/1.1 upgrade of
/// `:path` on `:authority`; rewritten as that, it goes the way every upgrade goes (limits,
/// routing, auth, the handshake checks, the backend's own handshake). The HTTP/2 side has
/// no `Sec-WebSocket-Key`: wsgate makes one for the backend and checks its accept value.
pub(super) fn as_upgrade(req: &mut RequestHeader) -> Result<(), Answer> {
    let (Some(authority), Some(target)) = (req.uri.authority().cloned(), req.uri.path_and_query().cloned()) else {
        return Err(Answer::status(400));
    };
    let target: http::Uri = target.as_str().parse().map_err(|_| Answer::status(400))?;
    req.set_method(http::Method::GET);
    req.set_uri(target);
    req.set_version(http::Version::HTTP_11);
    let key = base64::engine::general_purpose::STANDARD.encode(fastrand::u128(..).to_le_bytes());
    let fields =
        [("host", authority.as_str().to_string()), ("upgrade", "websocket".into()), ("connection", "Upgrade".into())];
    for (name, value) in fields.into_iter().chain([("sec-websocket-key", key)]) {
        req.insert_header(name, value).map_err(|_| Answer::status(400))?;
    }
    Ok(())
}
