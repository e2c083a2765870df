//! The WebSocket opening handshake (RFC 6455 §4): is a request an upgrade, is it a valid
//! one, and is the backend's answer a valid acceptance of it. Pure functions.

use super::frames::Extensions;
use crate::config::model::WebSocketPolicy;
use base64::Engine;
use pingora::http::{RequestHeader, ResponseHeader};
use sha1::{Digest, Sha1};

const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// No upgrade requested (or `Upgrade` without `Connection: upgrade`, which RFC 9110
    /// says to ignore).
    None,
    WebSocket,
    /// Any other protocol (`h2c`, `websocket, h2c`, ...): never forwarded, the request is
    /// served as plain HTTP.
    Other,
}

pub fn upgrade_kind(req: &RequestHeader) -> Upgrade {
    let Some(upgrade) = req.headers.get(http::header::UPGRADE) else { return Upgrade::None };
    if !connection_tokens(req).iter().any(|t| t == "upgrade") {
        return Upgrade::None;
    }
    match upgrade.to_str() {
        Ok(v) if v.trim().eq_ignore_ascii_case("websocket") => Upgrade::WebSocket,
        _ => Upgrade::Other,
    }
}

/// Why a WebSocket handshake is refused before anything reaches a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not GET, not HTTP/1.1, or a malformed `Sec-WebSocket-Key`.
    BadRequest(&'static str),
    /// 426 with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// 403: `Origin` not in `allowed_origins`.
    OriginDenied,
    /// 400: the route has `websocket.enabled: false`.
    Disabled,
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) | Refusal::Disabled => 400,
            Refusal::UnsupportedVersion => 426,
            Refusal::OriginDenied => 403,
        }
    }
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::BadRequest(why) => why,
            Refusal::UnsupportedVersion => "unsupported WebSocket version; this server speaks version 13",
            Refusal::OriginDenied => "WebSocket origin not allowed",
            Refusal::Disabled => "WebSocket is disabled on this route",
        }
    }
}

/// Lower-cased tokens of every `Connection` header.
pub fn connection_tokens(req: &RequestHeader) -> Vec<String> {
    req.headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Checks a WebSocket upgrade request against RFC 6455 §4.2.1 and the route's policy.
pub fn validate(req: &RequestHeader, policy: &WebSocketPolicy) -> Result<(), Refusal> {
    if !policy.enabled {
        return Err(Refusal::Disabled);
    }
    if req.method != http::Method::GET {
        return Err(Refusal::BadRequest("a WebSocket handshake must be a GET request"));
    }
    if req.version != http::Version::HTTP_11 {
        return Err(Refusal::BadRequest("a WebSocket handshake must use HTTP/1.1"));
    }
    let key = req.headers.get("sec-websocket-key").map(|v| v.as_bytes());
    let key_ok =
        key.and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok()).is_some_and(|k| k.len() == 16);
    if !key_ok || req.headers.get_all("sec-websocket-key").iter().count() != 1 {
        return Err(Refusal::BadRequest("missing or malformed Sec-WebSocket-Key"));
    }
    if req.headers.get("sec-websocket-version").map(|v| v.as_bytes()) != Some(b"13".as_slice()) {
        return Err(Refusal::UnsupportedVersion);
    }
    if let Some(allowed) = &policy.allowed_origins {
        let origin = req
            .headers
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase());
        if !origin.is_some_and(|o| allowed.contains(&o)) {
            return Err(Refusal::OriginDenied);
        }
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for a client key (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether a backend's 101 really accepts this client's WebSocket handshake: a backend that
/// switches to something else must not get a raw tunnel to the client.
pub fn is_valid_acceptance(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    let header = |name: &str| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let upgrade_ok = header("upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    let connection_ok = resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let expected = req.headers.get("sec-websocket-key").map(|k| accept_key(k.as_bytes()));
    let accept_ok = expected.is_some_and(|e| header("sec-websocket-accept") == Some(e.as_str()));
    resp.status == 101 && upgrade_ok && connection_ok && accept_ok
}

/// What the backend's 101 agreed to in `Sec-WebSocket-Extensions` (RFC 6455 §9.1), as far
/// as frame headers are concerned.
pub fn negotiated_extensions(resp: &ResponseHeader) -> Extensions {
    let mut found = Extensions::None;
    for value in resp.headers.get_all("sec-websocket-extensions") {
        let Ok(value) = value.to_str() else { return Extensions::Unknown };
        for name in value.split(',').map(|e| e.split(';').next().unwrap_or_default().trim()).filter(|n| !n.is_empty()) {
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                return Extensions::Unknown;
            }
            found = Extensions::Deflate;
        }
    }
    found
}

/// The subprotocol the backend's 101 selected (`Sec-WebSocket-Protocol`, RFC 6455 §4.2.2).
pub(crate) fn subprotocol(resp: &ResponseHeader) -> Option<String> {
    resp.headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn policy() -> WebSocketPolicy {
        WebSocketPolicy::for_tests()
    }

    fn req(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, b"/ws", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    fn ws(extra: &[(&str, &str)]) -> RequestHeader {
        let mut h = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        h.extend_from_slice(extra);
        req("GET", &h)
    }

    #[test]
    fn rfc_sample_accept_key() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn classifies_upgrades() {
        assert_eq!(upgrade_kind(&ws(&[])), Upgrade::WebSocket);
        assert_eq!(
            upgrade_kind(&req("GET", &[("Upgrade", "WebSocket"), ("Connection", "keep-alive, upgrade")])),
            Upgrade::WebSocket
        );
        assert_eq!(
            upgrade_kind(&req("GET", &[("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings")])),
            Upgrade::Other
        );
        assert_eq!(
            upgrade_kind(&req("GET", &[("Upgrade", "websocket, h2c"), ("Connection", "Upgrade")])),
            Upgrade::Other
        );
        assert_eq!(upgrade_kind(&req("GET", &[("Upgrade", "websocket")])), Upgrade::None);
        assert_eq!(upgrade_kind(&req("GET", &[])), Upgrade::None);
    }

    #[test]
    fn validates_handshakes() {
        assert_eq!(validate(&ws(&[]), &policy()), Ok(()));
        assert_eq!(
            validate(&req("POST", &[("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "13")]), &policy())
                .unwrap_err()
                .status(),
            400
        );
        let bad_key = req("GET", &[("Sec-WebSocket-Key", "short"), ("Sec-WebSocket-Version", "13")]);
        assert_eq!(validate(&bad_key, &policy()).unwrap_err().status(), 400);
        let no_key = req("GET", &[("Sec-WebSocket-Version", "13")]);
        assert_eq!(validate(&no_key, &policy()).unwrap_err().status(), 400);
        let v8 = req("GET", &[("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "8")]);
        assert_eq!(validate(&v8, &policy()), Err(Refusal::UnsupportedVersion));
        let mut http10 = ws(&[]);
        http10.set_version(http::Version::HTTP_10);
        assert_eq!(validate(&http10, &policy()).unwrap_err().status(), 400);
        let disabled = WebSocketPolicy { enabled: false, ..policy() };
        assert_eq!(validate(&ws(&[]), &disabled), Err(Refusal::Disabled));
    }

    #[test]
    fn checks_origins_when_configured() {
        let p = WebSocketPolicy { allowed_origins: Some(vec!["https://chat.example.com".into()]), ..policy() };
        assert_eq!(validate(&ws(&[("Origin", "https://Chat.Example.com/")]), &p), Ok(()));
        assert_eq!(validate(&ws(&[("Origin", "https://evil.example")]), &p), Err(Refusal::OriginDenied));
        assert_eq!(validate(&ws(&[]), &p), Err(Refusal::OriginDenied));
        assert_eq!(validate(&ws(&[("Origin", "https://evil.example")]), &policy()), Ok(()));
    }

    #[test]
    fn checks_backend_acceptance() {
        let client = ws(&[]);
        let mut ok = ResponseHeader::build(101, None).unwrap();
        ok.append_header("Upgrade", "websocket").unwrap();
        ok.append_header("Connection", "Upgrade").unwrap();
        ok.append_header("Sec-WebSocket-Accept", accept_key(KEY.as_bytes())).unwrap();
        assert!(is_valid_acceptance(&client, &ok));
        let mut wrong_accept = ok.clone();
        wrong_accept.insert_header("Sec-WebSocket-Accept", "nope").unwrap();
        assert!(!is_valid_acceptance(&client, &wrong_accept));
        let mut h2c = ok.clone();
        h2c.insert_header("Upgrade", "h2c").unwrap();
        assert!(!is_valid_acceptance(&client, &h2c));
        assert_eq!(negotiated_extensions(&ok), Extensions::None);
        let mut deflate = ok.clone();
        deflate.append_header("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits=10").unwrap();
        assert_eq!(negotiated_extensions(&deflate), Extensions::Deflate);
        deflate.append_header("Sec-WebSocket-Extensions", "x-webkit-frame-lz").unwrap();
        assert_eq!(negotiated_extensions(&deflate), Extensions::Unknown);
        let mut not101 = ok.clone();
        not101.set_status(200).unwrap();
        assert!(!is_valid_acceptance(&client, &not101));
    }
}
