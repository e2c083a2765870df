//! Request headers a route's auth may not write (forwarded claims, copied headers) nor read
//! a token from: what the connection, the handshake and wsgate's forwarding own.

use http::HeaderName;

const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "forwarded",
    "x-real-ip",
];
const RESERVED_PREFIXES: &[&str] = &["sec-websocket-", "x-forwarded-"];

pub(super) fn reserved(name: &HeaderName) -> bool {
    let name = name.as_str();
    RESERVED_HEADERS.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
}
