//! Request headers a route may not write: what the connection and the WebSocket handshake
//! own (a route's `request_headers.set`), and for a route's auth (forwarded claims, copied
//! headers, token places) also what wsgate's forwarding owns.

use http::HeaderName;

/// What belongs to the connection, whoever writes.
const CONNECTION_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
];
const HANDSHAKE_HEADERS: &[&str] = &["sec-websocket-key", "sec-websocket-accept", "sec-websocket-version"];
const FORWARDING_HEADERS: &[&str] = &["forwarded", "x-real-ip"];
const AUTH_RESERVED_PREFIXES: &[&str] = &["sec-websocket-", "x-forwarded-"];

/// A header a route's `request_headers.set` may not set (`host_header` sets Host).
pub(crate) fn connection_owned(name: &str) -> bool {
    CONNECTION_HEADERS.contains(&name) || HANDSHAKE_HEADERS.contains(&name)
}

/// A header a route's auth may not write nor read a token from.
pub(super) fn reserved(name: &HeaderName) -> bool {
    let name = name.as_str();
    CONNECTION_HEADERS.contains(&name)
        || FORWARDING_HEADERS.contains(&name)
        || AUTH_RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}
