//! Authentication at the edge (issue 17): a route's `auth` decides, before any backend is
//! contacted, whether a request may pass, and rewrites what passes so the backend sees who
//! the client is and never the credential itself.
//!
//! `jwt` verifies a bearer token (RFC 7519) with the `jsonwebtoken` crate: signatures,
//! base64 and the token's JSON are the crate's work, never ours. What is ours is the policy
//! around it, where most JWT vulnerabilities live:
//! - only the configured algorithms, and a key is used only with an algorithm of its own
//!   family, so an `HS256` token "signed" with an RSA public key's bytes (algorithm
//!   confusion) and `alg: none` are refused before any signature is computed;
//! - `exp` is required, `exp`/`nbf` are checked with 60 s of leeway against the clock the
//!   caller passes, and a configured `issuer`/`audience` must be present, not only match
//!   when present (the crate's default);
//! - `token` finds the token in the configured places and takes it out before the request
//!   goes on, and the client's own copies of the headers claims are forwarded in are
//!   removed, so a client cannot forge `X-User-Id`.
//!
//! `forward` asks another service instead (nginx `auth_request`); see `forward.rs`.
//!
//! Keys are loaded by config validation (`keys`), so a SIGHUP reload re-reads them. Nothing
//! here may panic on a request: tokens, cookies and query strings are attacker-controlled
//! (`tests/fuzz.rs` checks it).

pub mod forward;
mod jwt;
mod keys;
mod token;

#[cfg(test)]
mod tests;

pub(crate) use jwt::JwtSettings;
pub use jwt::{Identity, Jwt};
pub(crate) use keys::{load_keys, load_secret, VerifyingKey};
pub use token::TokenPlace;

use std::fmt;

/// A route's `auth` section, as validated: at least one of the two. The request path runs
/// `jwt` first (cheap, local), then `forward` (a subrequest).
#[derive(Debug)]
pub struct RouteAuth {
    pub jwt: Option<Jwt>,
    pub forward: Option<forward::ForwardAuth>,
}

/// How an authentication ended: the `result` label of `wsgate_auth_total` (a closed set,
/// so the metric's cardinality stays bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthResult {
    Ok,
    /// No token in any of the configured places.
    Missing,
    /// A token that is malformed, badly signed, of a refused algorithm, or whose claims
    /// (`nbf`, `iss`, `aud`) do not hold.
    Invalid,
    /// A good token whose `exp` (plus the leeway) has passed.
    Expired,
    /// wsgate's side failed: a configured key could not be used for verification.
    Error,
}

impl AuthResult {
    pub fn label(&self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Missing => "missing",
            AuthResult::Invalid => "invalid",
            AuthResult::Expired => "expired",
            AuthResult::Error => "error",
        }
    }
}

/// Why a request was not admitted. `detail` is for wsgate's debug log only: telling a
/// client which check its token failed helps whoever forges one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub result: AuthResult,
    pub detail: String,
}

impl AuthFailure {
    pub(crate) fn new(result: AuthResult, detail: impl Into<String>) -> AuthFailure {
        AuthFailure { result, detail: detail.into() }
    }

    pub(crate) fn invalid(detail: impl Into<String>) -> AuthFailure {
        AuthFailure::new(AuthResult::Invalid, detail)
    }

    /// The 401's `WWW-Authenticate` value. RFC 6750 §3.1: a request without credentials
    /// gets the bare challenge (no error code), one with a bad token `invalid_token`.
    pub fn www_authenticate(&self) -> &'static str {
        match self.result {
            AuthResult::Missing => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.result.label(), self.detail)
    }
}
