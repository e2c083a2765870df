//! Header policy for the request sent to a backend: the nginx WebSocket recipe done right,
//! as one pure function used by both the plain-HTTP path (`upstream_request_filter`) and
//! wsgate's own WebSocket handshake.
//!
//! For plain HTTP, Pingora 0.9 has already applied its standard `HttpUpstreamRequestPolicy`
//! (strip hop-by-hop and Connection-nominated fields, forward Upgrade only for WebSocket)
//! before our filter runs. This function applies the same rules, so running it afterwards
//! changes nothing of Pingora's work and the WebSocket path, which bypasses Pingora's
//! request writer, gets identical treatment.

use crate::config::model::{HostHeader, Route};
use crate::websocket::handshake::connection_tokens;
use http::{header, HeaderName};
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};

/// Fields that only make sense on one connection (RFC 9110 §7.6.1), as Pingora strips them.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// A client may not make us drop these by naming them in `Connection` (Pingora refuses the
/// same nominations): they carry the request's identity and origin.
const PROTECTED: &[&str] =
    &["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded"];

// Names as static strings: Pingora keeps each inserted name's case, and a `&'static str`
// is the one form it takes without copying.
const X_FORWARDED_FOR: &str = "X-Forwarded-For";
const X_REAL_IP: &str = "X-Real-IP";
const X_FORWARDED_PROTO: &str = "X-Forwarded-Proto";
const X_FORWARDED_HOST: &str = "X-Forwarded-Host";
/// RFC 7239. Never forwarded: wsgate does not emit one, and a client's own would let it
/// claim any `for=`/`host=` to a backend that trusts the field.
const FORWARDED: &str = "forwarded";

/// What the policy needs to know about the connection the request arrived on.
pub struct Forwarding {
    /// The client (`X-Real-IP`): the peer, or with `trusted_proxies` whom they forwarded.
    pub client_ip: Option<IpAddr>,
    /// The connection's peer: the hop appended to `X-Forwarded-For`.
    pub peer_ip: Option<IpAddr>,
    pub tls: bool,
    pub backend: SocketAddr,
    /// The request is a validated WebSocket upgrade that this route lets through.
    pub websocket: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError(pub String);

/// The fields `req`'s `Connection` header nominates for removal; an error if it nominates
/// one the policy protects. The proxy checks this at admission, so that a refused request
/// is refused before a backend is chosen, on both paths.
pub fn nominations(req: &RequestHeader) -> Result<Vec<String>, PolicyError> {
    let tokens = connection_tokens(req);
    match tokens.iter().find(|t| PROTECTED.contains(&t.as_str())) {
        Some(protected) => Err(PolicyError(format!("Connection header nominates protected field `{protected}`"))),
        None => Ok(tokens),
    }
}

/// Rewrites `req` into what the backend receives.
pub fn apply(req: &mut RequestHeader, route: &Route, fwd: &Forwarding) -> Result<(), PolicyError> {
    // The host wsgate routed on (as `request_host`): a text Host field, else an absolute-form
    // URI's authority. A clone of a header value shares its bytes.
    let original_host = match req.headers.get(header::HOST).filter(|h| h.to_str().is_ok()) {
        Some(host) => Some(host.clone()),
        None => req.uri.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()),
    };

    for nominated in nominations(req)? {
        req.remove_header(nominated.as_str());
    }
    // Usually none is left (Pingora strips them first on the plain-HTTP path): one pass over
    // the request's few names is cheaper than a lookup per hop-by-hop name.
    if req.headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            req.remove_header(name);
        }
    }
    if fwd.websocket {
        insert(req, header::CONNECTION, "Upgrade");
        insert(req, header::UPGRADE, "websocket");
        // A GET upgrade has no body to wait for, and a backend that honours `Expect` answers
        // 100 before its 101, an interim head wsgate would otherwise have to skip.
        req.remove_header(&header::EXPECT);
    }

    match &route.host_header {
        HostHeader::Preserve => {}
        HostHeader::Backend => insert(req, header::HOST, &fwd.backend.to_string()),
        HostHeader::Literal(v) => {
            let _ = req.insert_header(header::HOST, v.clone());
        }
    }

    if let Some(peer) = fwd.peer_ip.or(fwd.client_ip) {
        let hop = ip_value(peer);
        // Usually the client is the peer: one value, shared (a clone shares its bytes).
        let real = match fwd.client_ip {
            Some(ip) if ip != peer => ip_value(ip),
            _ => hop.clone(),
        };
        if !req.headers.contains_key(X_FORWARDED_FOR) {
            let _ = req.insert_header(X_FORWARDED_FOR, hop);
            let _ = req.insert_header(X_REAL_IP, real);
            return finish(req, route, fwd, original_host);
        }
        let hop = hop.to_str().unwrap_or_default().to_string();
        let chain: Vec<&str> = req
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let xff = if chain.is_empty() { hop } else { format!("{}, {hop}", chain.join(", ")) };
        insert(req, X_FORWARDED_FOR, &xff);
        let _ = req.insert_header(X_REAL_IP, real);
    }
    finish(req, route, fwd, original_host)
}

/// The fields every forwarded request gets after the client address: protocol, original
/// host, then the route's own edits.
fn finish(
    req: &mut RequestHeader,
    route: &Route,
    fwd: &Forwarding,
    original_host: Option<http::HeaderValue>,
) -> Result<(), PolicyError> {
    let proto = http::HeaderValue::from_static(if fwd.tls { "https" } else { "http" });
    let _ = req.insert_header(X_FORWARDED_PROTO, proto);
    // A client's own values are never passed on: X-Forwarded-Host is only ever the host
    // wsgate routed on (none when the request named none), and Forwarded is dropped.
    req.remove_header(FORWARDED);
    match original_host {
        Some(host) => {
            let _ = req.insert_header(X_FORWARDED_HOST, host);
        }
        None => {
            req.remove_header(X_FORWARDED_HOST);
        }
    }

    for name in &route.remove_headers {
        req.remove_header(name);
    }
    for (name, value) in &route.set_headers {
        let _ = req.insert_header(name.clone(), value.clone());
    }
    Ok(())
}

/// The Host the client asked for: the `Host` header, or the authority of an absolute URI.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// An address as a header value, formatted on the stack (this runs for every request).
fn ip_value(ip: IpAddr) -> http::HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 48]; // the longest IPv6 text is 45 bytes
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    // An address's text is always a valid value.
    http::HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

fn insert(req: &mut RequestHeader, name: impl pingora::http::IntoCaseHeaderName, value: &str) {
    // Values built here come from addresses and validated config, so they are valid.
    if let Ok(value) = http::HeaderValue::from_str(value) {
        let _ = req.insert_header(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn route(host_header: HostHeader) -> Route {
        Route {
            name: "r".into(),
            host_header,
            set_headers: vec![(HeaderName::from_static("x-served-by"), HeaderValue::from_static("wsgate"))],
            remove_headers: vec![HeaderName::from_static("x-debug")],
            ..Route::for_tests("/")
        }
    }

    fn fwd(websocket: bool) -> Forwarding {
        Forwarding {
            client_ip: Some("10.1.2.3".parse().unwrap()),
            peer_ip: Some("10.1.2.3".parse().unwrap()),
            tls: false,
            backend: "127.0.0.1:3001".parse().unwrap(),
            websocket,
        }
    }

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/chat", None).unwrap();
        for (n, v) in headers {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn get<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
        req.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn websocket_upgrade_is_normalized() {
        let mut req =
            request(&[("Host", "chat.example.com"), ("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")]);
        apply(&mut req, &route(HostHeader::Preserve), &fwd(true)).unwrap();
        assert_eq!(get(&req, "upgrade"), Some("websocket"));
        assert_eq!(get(&req, "connection"), Some("Upgrade"));
        assert_eq!(get(&req, "host"), Some("chat.example.com"));
    }

    #[test]
    fn other_upgrades_and_hop_by_hop_fields_never_reach_the_backend() {
        let mut req = request(&[
            ("Host", "a"),
            ("Upgrade", "h2c"),
            ("Connection", "Upgrade, HTTP2-Settings, X-Secret"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic x"),
        ]);
        apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).unwrap();
        for gone in ["upgrade", "connection", "http2-settings", "x-secret", "keep-alive", "te", "proxy-authorization"] {
            assert_eq!(get(&req, gone), None, "{gone} must be stripped");
        }
    }

    #[test]
    fn protected_nominations_are_refused() {
        let mut req = request(&[("Host", "a"), ("Connection", "close, X-Forwarded-For")]);
        assert!(apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).is_err());
    }

    #[test]
    fn forwarding_headers_append_and_set() {
        let mut req = request(&[
            ("Host", "app.example.com:8080"),
            ("X-Forwarded-For", "192.0.2.1, 192.0.2.2"),
            ("X-Real-IP", "spoofed"),
        ]);
        apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).unwrap();
        assert_eq!(get(&req, "x-forwarded-for"), Some("192.0.2.1, 192.0.2.2, 10.1.2.3"));
        assert_eq!(get(&req, "x-real-ip"), Some("10.1.2.3"));
        assert_eq!(get(&req, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&req, "x-forwarded-host"), Some("app.example.com:8080"));
        let mut tls = fwd(false);
        tls.tls = true;
        let mut req = request(&[("Host", "a")]);
        apply(&mut req, &route(HostHeader::Preserve), &tls).unwrap();
        assert_eq!(get(&req, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&req, "x-forwarded-for"), Some("10.1.2.3"));
    }

    #[test]
    fn host_header_policies() {
        let mut req = request(&[("Host", "public.example.com")]);
        apply(&mut req, &route(HostHeader::Backend), &fwd(false)).unwrap();
        assert_eq!(get(&req, "host"), Some("127.0.0.1:3001"));
        assert_eq!(get(&req, "x-forwarded-host"), Some("public.example.com"));
        let mut req = request(&[("Host", "public.example.com")]);
        apply(&mut req, &route(HostHeader::Literal(HeaderValue::from_static("internal"))), &fwd(false)).unwrap();
        assert_eq!(get(&req, "host"), Some("internal"));
    }

    #[test]
    fn route_edits_apply_last() {
        let mut req = request(&[("Host", "a"), ("X-Debug", "1"), ("X-Served-By", "client")]);
        apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).unwrap();
        assert_eq!(get(&req, "x-debug"), None);
        assert_eq!(get(&req, "x-served-by"), Some("wsgate"));
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let mut once = request(&[("Host", "a"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]);
        apply(&mut once, &route(HostHeader::Preserve), &fwd(true)).unwrap();
        let mut twice = once.clone();
        let mut f = fwd(true);
        (f.client_ip, f.peer_ip) = (None, None); // the second pass must not append the client again
        apply(&mut twice, &route(HostHeader::Preserve), &f).unwrap();
        assert_eq!(once.headers, twice.headers);
    }

    #[test]
    fn x_forwarded_host_is_the_host_routed_on_or_nothing() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("Host", HeaderValue::from_bytes(b"caf\xe9.test").unwrap()).unwrap();
        assert_eq!(request_host(&req), None, "routing does not read a Host that is not text");
        apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).unwrap();
        assert!(req.headers.get("x-forwarded-host").is_none());
    }

    #[test]
    fn a_clients_forwarding_claims_never_reach_the_backend() {
        let forged = [
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=10.9.9.9;host=admin.internal"),
            ("forwarded", "for=1.2.3.4"),
        ];
        // No Host (HTTP/1.0): no X-Forwarded-Host at all, rather than the client's.
        let mut req = request(&forged);
        req.set_version(http::Version::HTTP_10);
        apply(&mut req, &route(HostHeader::Preserve), &fwd(false)).unwrap();
        assert_eq!(get(&req, "x-forwarded-host"), None);
        assert_eq!(get(&req, "forwarded"), None);
        // With a Host: that host, whatever the client claimed; the same on upgrades.
        for websocket in [false, true] {
            let mut req =
                request(&[&[("Host", "app.example.com"), ("Expect", "100-continue")][..], &forged[..]].concat());
            apply(&mut req, &route(HostHeader::Preserve), &fwd(websocket)).unwrap();
            assert_eq!(req.headers.get_all("x-forwarded-host").iter().collect::<Vec<_>>(), ["app.example.com"]);
            assert_eq!(get(&req, "forwarded"), None);
            // `Expect` only matters to a request with a body: kept on plain HTTP (Pingora
            // handles the 100), dropped from upgrades.
            assert_eq!(get(&req, "expect").is_some(), !websocket, "websocket: {websocket}");
        }
    }
}
