//! The request-head functions on arbitrary request heads: `admission::check`,
//! `websocket::handshake::{upgrade_kind, validate}` and `headers::apply`, with the routes of
//! a fixed config (one per `host_header` policy).
//!
//! Input layout: byte 0 picks the route (bits 0-1), TLS (bit 2) and the client address
//! (bits 3-4: none, 10.1.2.3, 2001:db8::7, 192.0.2.9); the rest is an HTTP/1.x request head,
//! parsed with httparse and turned into a `RequestHeader` the way Pingora's HTTP/1 server
//! does. Properties, as the unit tests in src/proxy/headers.rs state them:
//! - nothing panics, and refusals carry a status from the documented set;
//! - after `apply` no hop-by-hop field is left, except `Connection: Upgrade` and
//!   `Upgrade: websocket` on a validated WebSocket upgrade; nothing the client named in
//!   `Connection` is left either (unless the route itself sets it);
//! - forwarding headers and route edits are as documented;
//! - `apply` refuses only requests whose `Connection` names a protected field;
//! - applying again (without a client address, as the unit test does) changes nothing;
//! - the result serialises to a request head that parses back with every field.

#![no_main]

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Version};
use libfuzzer_sys::fuzz_target;
use pingora_http::{IntoCaseHeaderName, RequestHeader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;
use wsgate::config::model::{HostHeader, Route};
use wsgate::proxy::headers::{self, Forwarding};
use wsgate::websocket::handshake::{self, Upgrade};

const CONFIG: &str = "\
listeners:
  - address: 127.0.0.1:8080
upstreams:
  app:
    backends: [127.0.0.1:3001]
routes:
  - name: preserve
    path_prefix: /chat
    upstream: app
    request_headers:
      set: {X-Served-By: wsgate}
      remove: [X-Debug, Cookie]
    websocket:
      allowed_origins: [\"https://chat.example.com\"]
  - name: backend
    path_prefix: /api
    upstream: app
    host_header: backend
    request_headers:
      set: {X-Served-By: wsgate, X-Env: prod}
      remove: [X-Debug]
  - name: literal
    path_prefix: /internal
    upstream: app
    host_header: internal.example
    websocket:
      enabled: false
  - name: plain
    upstream: app
";

/// Same list as src/proxy/headers.rs (RFC 9110 §7.6.1 plus what Pingora strips).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];
const PROTECTED: [&str; 6] = ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "forwarded"];

struct Fixture {
    routes: Vec<Route>,
    backend: SocketAddr,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = wsgate::config::parse(CONFIG, "fuzz.yaml", Path::new("/nonexistent")).expect("the fixed config is valid");
        assert_eq!(config.routes.len(), 4);
        Fixture { backend: config.upstreams[0].backends[0].address, routes: config.routes }
    })
}

/// Like pingora-core's `HttpSession::read_request` (v1/server.rs): httparse, then
/// `RequestHeader::build` and one `append_header` per field, then drop Content-Length when
/// Transfer-Encoding is present. `None` where Pingora would answer 400 itself.
fn request_head(bytes: &[u8]) -> Option<RequestHeader> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut fields);
    if !parsed.parse(bytes).ok()?.is_complete() {
        return None;
    }
    let mut req = RequestHeader::build(parsed.method.unwrap_or(""), parsed.path.unwrap_or("").as_bytes(), Some(parsed.headers.len())).ok()?;
    req.set_version(match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_09,
    });
    for field in parsed.headers.iter() {
        let name = Bytes::copy_from_slice(field.name.as_bytes()).into_case_header_name();
        // Pingora trusts httparse here (from_maybe_shared_unchecked); the checked
        // constructor accepts the same bytes.
        let value = HeaderValue::from_bytes(field.value).ok()?;
        req.append_header(name, value).ok()?;
    }
    if req.headers.contains_key(header::TRANSFER_ENCODING) {
        req.remove_header(&header::CONTENT_LENGTH);
    }
    Some(req)
}

fn values<'a>(req: &'a RequestHeader, name: &str) -> Vec<&'a [u8]> {
    req.headers.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// The head as it goes on the wire to the backend, parsed back.
fn wire_round_trip(req: &RequestHeader) -> Vec<Vec<u8>> {
    let mut wire = b"GET / HTTP/1.1\r\n".to_vec();
    req.header_to_h1_wire(&mut wire);
    wire.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; 512];
    let mut parsed = httparse::Request::new(&mut fields);
    let status = parsed.parse(&wire).unwrap_or_else(|e| panic!("the forwarded head does not parse ({e}): {:?}", String::from_utf8_lossy(&wire)));
    assert!(status.is_complete());
    assert_eq!(parsed.headers.len(), req.headers.len(), "fields lost or gained on the wire");
    let mut lines: Vec<Vec<u8>> = wire.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines.sort();
    lines
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, head)) = data.split_first() else { return };
    let fx = fixture();
    let route = &fx.routes[(control & 3) as usize];
    let tls = control & 4 != 0;
    let client_ip: Option<IpAddr> = match (control >> 3) & 3 {
        0 => None,
        1 => Some("10.1.2.3".parse().unwrap()),
        2 => Some("2001:db8::7".parse().unwrap()),
        _ => Some("192.0.2.9".parse().unwrap()),
    };
    let Some(original) = request_head(head) else { return };

    if let Err(violation) = wsgate::proxy::admission::check(&original) {
        assert!([400, 414, 501].contains(&violation.status()) && !violation.reason().is_empty(), "{violation:?}");
    }
    let kind = handshake::upgrade_kind(&original);
    let validated = handshake::validate(&original, &route.websocket);
    if let Err(refusal) = &validated {
        assert!([400, 403, 426].contains(&refusal.status()) && !refusal.message().is_empty(), "{refusal:?}");
    }
    if validated.is_ok() {
        assert!(original.method == http::Method::GET && original.version == Version::HTTP_11 && route.websocket.enabled);
    }
    // As src/proxy/mod.rs and src/websocket/mod.rs decide it.
    let websocket = kind == Upgrade::WebSocket && validated.is_ok();
    let fwd = Forwarding { client_ip, peer_ip: client_ip, tls, backend: fx.backend, websocket };

    let nominated = handshake::connection_tokens(&original);
    let set_by_route = |name: &str| route.set_headers.iter().any(|(n, _)| n.as_str() == name);
    let mut req = original.clone();
    if let Err(e) = headers::apply(&mut req, route, &fwd) {
        assert!(!e.0.is_empty());
        assert!(nominated.iter().any(|t| PROTECTED.contains(&t.as_str())), "refused without a protected nomination: {e:?}");
        return;
    }
    assert!(!nominated.iter().any(|t| PROTECTED.contains(&t.as_str())), "a protected nomination was accepted");

    // Hop-by-hop fields: gone, but for the WebSocket pair, which is normalised.
    for name in HOP_BY_HOP {
        let got = values(&req, name);
        let expected: &[&[u8]] = match name {
            "connection" if websocket => &[b"Upgrade"],
            "upgrade" if websocket => &[b"websocket"],
            _ if set_by_route(name) => continue,
            _ => &[],
        };
        assert_eq!(got, expected, "{name} after apply (websocket: {websocket})");
    }
    for token in &nominated {
        if !set_by_route(token) && !(websocket && (token == "connection" || token == "upgrade")) {
            assert!(values(&req, token).is_empty(), "`{token}` was named in Connection but is still there");
        }
    }

    // Forwarding fields.
    let proto: &[u8] = if tls { b"https" } else { b"http" };
    assert_eq!(values(&req, "x-forwarded-proto"), [proto]);
    if let Some(ip) = client_ip {
        let ip = ip.to_string();
        assert_eq!(values(&req, "x-real-ip"), [ip.as_bytes()]);
        let xff = values(&req, "x-forwarded-for");
        assert_eq!(xff.len(), 1);
        let xff = std::str::from_utf8(xff[0]).expect("x-forwarded-for is text");
        assert!(xff == ip || xff.ends_with(&format!(", {ip}")), "x-forwarded-for `{xff}` does not end with the client");
    } else {
        assert_eq!(values(&req, "x-forwarded-for"), values(&original, "x-forwarded-for"));
        assert_eq!(values(&req, "x-real-ip"), values(&original, "x-real-ip"));
    }
    // X-Forwarded-Host: exactly the host wsgate routed on (`request_host`: a text Host field,
    // else an absolute URI's authority); with neither, none at all: a client's own never
    // passes. Nor does a client's `Forwarded`.
    if !set_by_route("x-forwarded-host") {
        match headers::request_host(&original) {
            Some(host) => assert_eq!(values(&req, "x-forwarded-host"), [host.as_bytes()], "X-Forwarded-Host is not the Host wsgate routed on"),
            None => assert!(values(&req, "x-forwarded-host").is_empty(), "a client's X-Forwarded-Host passed"),
        }
    }
    if !set_by_route("forwarded") {
        assert!(values(&req, "forwarded").is_empty(), "a client's Forwarded passed");
    }
    match &route.host_header {
        HostHeader::Preserve => assert_eq!(values(&req, "host"), values(&original, "host")),
        HostHeader::Backend => assert_eq!(values(&req, "host"), [fx.backend.to_string().as_bytes()]),
        HostHeader::Literal(v) => assert_eq!(values(&req, "host"), [v.as_bytes()]),
    }
    // Route edits come last.
    for name in &route.remove_headers {
        if !set_by_route(name.as_str()) {
            assert!(values(&req, name.as_str()).is_empty(), "{name} should have been removed");
        }
    }
    for (name, value) in &route.set_headers {
        assert_eq!(values(&req, name.as_str()), [value.as_bytes()], "{name}");
    }
    // Untouched: a field none of the rules above names keeps its values.
    for name in original.headers.keys() {
        let n = name.as_str();
        let named = HOP_BY_HOP.contains(&n)
            || nominated.iter().any(|t| t == n)
            || ["host", "x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "forwarded"].contains(&n)
            || route.remove_headers.iter().any(|h: &HeaderName| h == name)
            || set_by_route(n);
        if !named {
            assert_eq!(values(&req, n), values(&original, n), "{n} changed");
        }
    }

    let once_wire = wire_round_trip(&req);

    // Idempotence, as `applying_twice_changes_nothing` states it: the second pass has no
    // client address (it would append it to X-Forwarded-For again, by design). With a
    // rewritten Host, the second pass sees the rewritten one as the original and records
    // that in X-Forwarded-Host, so the comparison leaves that field out then.
    let mut twice = req.clone();
    let again = Forwarding { client_ip: None, peer_ip: None, tls, backend: fx.backend, websocket };
    headers::apply(&mut twice, route, &again).expect("the second pass refuses nothing");
    if matches!(route.host_header, HostHeader::Preserve) {
        assert_eq!(twice.headers, req.headers, "apply is not idempotent");
        assert_eq!(wire_round_trip(&twice), once_wire, "apply is not idempotent on the wire");
    } else {
        let (mut a, mut b) = (req.clone(), twice.clone());
        a.remove_header("x-forwarded-host");
        b.remove_header("x-forwarded-host");
        assert_eq!(b.headers, a.headers, "apply is not idempotent (X-Forwarded-Host aside)");
        assert_eq!(wire_round_trip(&b), wire_round_trip(&a), "apply is not idempotent on the wire (X-Forwarded-Host aside)");
    }
});
