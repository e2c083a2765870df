//! How a credential check ended: its metric label, and what a refusal tells the client.

use std::fmt;

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
    /// wsgate's side failed: a configured key could not be used for verification, or the
    /// forward auth service could not be asked.
    Error,
    /// The forward auth service answered 401 or 403.
    Denied,
}

impl AuthResult {
    pub fn label(&self) -> &'static str {
        match self {
            AuthResult::Ok => "ok",
            AuthResult::Missing => "missing",
            AuthResult::Invalid => "invalid",
            AuthResult::Expired => "expired",
            AuthResult::Error => "error",
            AuthResult::Denied => "denied",
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
