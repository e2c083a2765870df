//! Affinity cookies (`upstreams.<name>.affinity`): wsgate pins a client to the backend that
//! answered it by a cookie it sets itself, so stickiness does not depend on the application
//! setting one (`hash_key: cookie:NAME`) and survives a change in the pool's size, which
//! rehashes consistent hashing.
//!
//! The cookie names the backend opaquely: HMAC-SHA256 of its address, truncated to 16
//! bytes, base64url. A keyed hash rather than the address (or an index) because the address
//! is internal topology and an index changes meaning when the pool changes. The key is
//! derived from the config alone (`key_file`, else the pool's name and a built-in salt), so
//! a restart, a SIGHUP and a zero-downtime upgrade (a new process) all read the same cookies.
//! A cookie is a routing hint, never trusted for more: one that names no backend of the
//! pool (garbage, a removed backend, another key) only means the client is pinned again.

use crate::config::model::Affinity;
use arc_swap::ArcSwap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::http::RequestHeader;
use ring::hmac;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The cookie's value, decoded: 128 bits of HMAC-SHA256 are far beyond any pool's size for
/// collisions and beyond guessing for forgery.
type Token = [u8; 16];

/// What the key is derived from without `key_file`. Public (it is in the source), so the
/// cookie is then opaque but not secret: someone who knows the pool's name can test guessed
/// addresses against it.
const BUILT_IN_SALT: &[u8] = b"wsgate affinity cookie: built-in salt, not a secret";

/// The key of the pool `upstream`: HMAC-SHA256 of the pool's name under the `key_file`
/// secret (or the built-in salt). Keyed per pool, so two pools sharing a backend address and
/// a key file still tell their cookies apart.
pub(crate) fn derive_key(secret: Option<&[u8]>, upstream: &str) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.unwrap_or(BUILT_IN_SALT));
    let tag = hmac::sign(&key, format!("wsgate affinity v1\0{upstream}").as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// An RFC 6265 §4.1.1 cookie-name: an RFC 9110 token.
pub(crate) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// One pool's affinity: its key, its cookie, and which backend each valid value names.
pub(crate) struct Pinning {
    key: hmac::Key,
    cookie: String,
    max_age: u64,
    /// Token → backend for the backends the pool's discovery gave last: a request's cookie
    /// is one lookup instead of an HMAC per backend.
    known: ArcSwap<HashMap<Token, SocketAddr>>,
}

impl Pinning {
    pub(crate) fn new(spec: &Affinity) -> Pinning {
        Pinning {
            key: hmac::Key::new(hmac::HMAC_SHA256, &spec.key),
            cookie: spec.cookie.clone(),
            max_age: spec.ttl.as_secs(),
            known: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    fn token(&self, backend: SocketAddr) -> Token {
        let tag = hmac::sign(&self.key, backend.to_string().as_bytes());
        let mut token = [0; 16];
        token.copy_from_slice(&tag.as_ref()[..16]);
        token
    }

    /// The pool's backends are now `backends` (called with each discovery result).
    pub(crate) fn learn(&self, backends: impl Iterator<Item = SocketAddr>) {
        self.known.store(Arc::new(backends.map(|b| (self.token(b), b)).collect()));
    }

    /// The backend the request's cookie names, if it names one of the pool's. A client may
    /// send the name more than once (cookies of other paths or domains): any valid one counts.
    pub(crate) fn pinned(&self, req: &RequestHeader) -> Option<SocketAddr> {
        let known = self.known.load();
        cookie_values(req, &self.cookie).filter_map(decode).find_map(|t| known.get(&t).copied())
    }

    /// The `Set-Cookie` value pinning a client to `backend`. `Secure` only on TLS listeners:
    /// a browser drops a Secure cookie set over plain HTTP. `SameSite=Lax` still sends it on
    /// top-level navigation and on same-site WebSocket handshakes.
    pub(crate) fn set_cookie(&self, backend: SocketAddr, tls: bool) -> String {
        let secure = if tls { "; Secure" } else { "" };
        let value = URL_SAFE_NO_PAD.encode(self.token(backend));
        format!("{}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}", self.cookie, self.max_age)
    }
}

/// Every value of the cookie `name` in the request's `Cookie` fields (HTTP/2 clients may
/// send one field per cookie), without the optional quotes of RFC 6265 §4.1.1.
pub(crate) fn cookie_values<'a>(req: &'a RequestHeader, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

fn decode(value: &str) -> Option<Token> {
    URL_SAFE_NO_PAD.decode(value).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests;
