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
mod outcome;
mod token;

#[cfg(test)]
mod tests;

pub(crate) use jwt::JwtSettings;
pub use jwt::{Identity, Jwt};
pub(crate) use keys::{load_keys, load_secret, VerifyingKey};
pub use outcome::{AuthFailure, AuthResult};
pub use token::TokenPlace;

/// A route's `auth` section, as validated: at least one of the two. The request path runs
/// `jwt` first (cheap, local), then `forward` (a subrequest).
#[derive(Debug)]
pub struct RouteAuth {
    pub jwt: Option<Jwt>,
    pub forward: Option<forward::ForwardAuth>,
}
