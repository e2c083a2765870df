//! What a forward-auth check is about (the client's request) and where it goes.

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::net::IpAddr;

/// The request being decided on, as the proxy sees it.
pub struct Subject<'a> {
    pub req: &'a RequestHeader,
    /// The client's address (after `trusted_proxies`): `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// Whether the client came over TLS: `X-Forwarded-Proto`.
    pub tls: bool,
    /// The host the client asked for: `X-Forwarded-Host`.
    pub host: &'a str,
}

/// Where the subrequest goes.
pub(crate) struct Target {
    pub(super) url: String,
    pub(super) peer: HttpPeer,
    pub(super) authority: HeaderValue,
    pub(super) path: String,
}
