//! CONNECT requests. wsgate proxies none: an HTTP/1.1 CONNECT or a plain HTTP/2 one gets 405
//! (what Pingora answers when CONNECT proxying is off), an extended CONNECT (RFC 8441) for
//! another protocol than `websocket` 501. An extended CONNECT for `websocket` on an HTTP/2
//! connection is a WebSocket session (docs/design/h2-websocket.md).

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
