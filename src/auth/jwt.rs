//! `auth.jwt`: find the token, verify it, and rewrite the request for the backend.
//!
//! Order of the checks, each before anything more expensive: a token at all (`Missing`),
//! its size, its header (an `alg` the crate does not know, `none` included, is malformed),
//! the algorithm against the configured list, then a signature by each key that fits the
//! algorithm's family and the token's `kid`, and only for a signed token its claims.

use super::keys::VerifyingKey;
use super::outcome::{AuthFailure, AuthResult};
use super::token::TokenPlace;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::{Algorithm, Validation};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY: u64 = 60;
/// Longest token verified. Real ones are well under 4 KiB (the cookie limit); verifying
/// hashes and parses all of it, so a larger one is refused unread.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

type Claims = Map<String, Value>;

/// What validation hands to [`Jwt::new`].
pub(crate) struct JwtSettings {
    pub(crate) keys: Vec<VerifyingKey>,
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<Vec<String>>,
    pub(crate) token_from: Vec<TokenPlace>,
    /// Claim name → the header it is forwarded in.
    pub(crate) forward_claims: Vec<(String, HeaderName)>,
    pub(crate) keep_token: bool,
    pub(crate) close_at_expiry: bool,
}

/// A route's JWT policy, ready to verify.
#[derive(Debug)]
pub struct Jwt {
    keys: Vec<VerifyingKey>,
    /// One per accepted algorithm: the crate refuses a `Validation` whose algorithms span
    /// several families, and a token has exactly one algorithm anyway.
    validations: Vec<Validation>,
    token_from: Vec<TokenPlace>,
    forward_claims: Vec<(String, HeaderName)>,
    keep_token: bool,
    close_at_expiry: bool,
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim, when it is a string: the access log's `user`.
    pub user: Option<String>,
    /// The `exp` claim, without the leeway (a token admitted within the leeway has already
    /// passed it). `None` only for an `exp` beyond what `SystemTime` holds.
    pub expires_at: Option<SystemTime>,
    /// Where the token was found: [`Jwt::prepare`] takes it out of there.
    pub found_in: TokenPlace,
    /// The `forward_claims` headers with this token's values.
    pub forward: Vec<(HeaderName, HeaderValue)>,
}

impl Jwt {
    pub(crate) fn new(settings: JwtSettings) -> Jwt {
        let JwtSettings { keys, algorithms, issuer, audience, token_from, forward_claims, keep_token, close_at_expiry } =
            settings;
        let validations =
            algorithms.iter().map(|alg| validation(*alg, issuer.as_deref(), audience.as_deref())).collect();
        Jwt { keys, validations, token_from, forward_claims, keep_token, close_at_expiry }
    }

    /// Finds the first token in the configured places (in the listed order) and verifies it
    /// at `now`.
    pub fn authenticate(&self, req: &RequestHeader, now: SystemTime) -> Result<Identity, AuthFailure> {
        let Some((place, token)) = self.token_from.iter().find_map(|p| p.find(req).map(|t| (p, t))) else {
            let places: Vec<String> = self.token_from.iter().map(ToString::to_string).collect();
            return Err(AuthFailure::new(AuthResult::Missing, format!("no token in {}", places.join(", "))));
        };
        let (claims, exp) =
            self.verify(&token, now).map_err(|f| AuthFailure { detail: format!("{place}: {}", f.detail), ..f })?;
        Ok(self.identity(place, &claims, exp))
    }

    /// Rewrites the request for the backend: removes the token from where it was found
    /// (unless `keep_token`), removes any client-sent header named in `forward_claims` (a
    /// client must not forge `X-User-Id`), then sets the `forward_claims` headers.
    pub fn prepare(&self, req: &mut RequestHeader, identity: &Identity) {
        if !self.keep_token {
            identity.found_in.remove(req);
        }
        for (_, header) in &self.forward_claims {
            req.remove_header(header);
        }
        for (header, value) in &identity.forward {
            // Cannot fail: the value is already a HeaderValue.
            let _ = req.insert_header(header.clone(), value.clone());
        }
    }

    /// Whether a session ends when its token's `exp` passes (the session layer does it).
    pub fn close_at_expiry(&self) -> bool {
        self.close_at_expiry
    }

    /// The token's claims and its `exp`, if it holds at `now`.
    fn verify(&self, token: &[u8], now: SystemTime) -> Result<(Claims, u64), AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::invalid(format!("token of {} bytes, over {MAX_TOKEN_BYTES}", token.len())));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthFailure::invalid(format!("malformed token: {e}")))?;
        let Some(validation) = self.validations.iter().find(|v| v.algorithms.first() == Some(&header.alg)) else {
            return Err(AuthFailure::invalid(format!("algorithm {:?} is not accepted", header.alg)));
        };
        let claims = self.signed_claims(token, header.alg, header.kid.as_deref(), validation)?;
        let exp = check_times(&claims, now)?;
        Ok((claims, exp))
    }

    /// Tries each key that fits until one verifies the signature. A token without `kid`
    /// costs at most one verification per key of its algorithm's family.
    fn signed_claims(
        &self,
        token: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
    ) -> Result<Claims, AuthFailure> {
        let (mut tried, mut unusable) = (0, 0);
        for key in self.keys.iter().filter(|k| k.fits(alg, kid)) {
            tried += 1;
            match jsonwebtoken::decode::<Claims>(token, &key.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => {}
                    // The key's bytes do not make a key of its type: our fault, not the token's.
                    ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::Provider(_) => unusable += 1,
                    // Anything else is the token's: malformed, or signed with wrong claims.
                    _ => return Err(claims_failure(&e)),
                },
            }
        }
        let kid = kid.map(|k| format!(" and kid {:?}", k.chars().take(64).collect::<String>())).unwrap_or_default();
        match (tried, unusable) {
            (0, _) => Err(AuthFailure::invalid(format!("no key for {alg:?}{kid}"))),
            (t, u) if t == u => Err(AuthFailure::new(AuthResult::Error, format!("no key for {alg:?}{kid} is usable"))),
            (t, _) => {
                Err(AuthFailure::invalid(format!("signature does not verify with the {t} key(s) for {alg:?}{kid}")))
            }
        }
    }

    fn identity(&self, place: &TokenPlace, claims: &Claims, exp: u64) -> Identity {
        let forward = self
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((header.clone(), HeaderValue::from_str(&text).ok()?))
            })
            .collect();
        Identity {
            user: claims.get("sub").and_then(Value::as_str).map(str::to_string),
            expires_at: UNIX_EPOCH.checked_add(Duration::from_secs(exp)),
            found_in: place.clone(),
            forward,
        }
    }
}

/// The crate's claim checks for one algorithm. `exp` and `nbf` are left to
/// [`check_times`], which uses the caller's clock (the crate reads the system's); a
/// configured `iss`/`aud` is also required to be present (the crate checks them only when
/// the token has them).
fn validation(alg: Algorithm, issuer: Option<&str>, audience: Option<&[String]>) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = LEEWAY;
    let mut required = vec!["exp"];
    if let Some(issuer) = issuer {
        v.set_issuer(&[issuer]);
        required.push("iss");
    }
    match audience {
        Some(audience) => {
            v.set_audience(audience);
            required.push("aud");
        }
        // Without a configured audience any `aud` is fine (the crate would refuse them all).
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

/// `exp` (required) and `nbf` at `now`, with [`LEEWAY`]; returns `exp`.
fn check_times(claims: &Claims, now: SystemTime) -> Result<u64, AuthFailure> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let Some(exp) = numeric_date(claims, "exp")? else {
        return Err(AuthFailure::invalid("claim `exp` is required"));
    };
    // RFC 7519 §4.1.4: the current time must be before `exp`.
    if now >= exp.saturating_add(LEEWAY) {
        return Err(AuthFailure::new(AuthResult::Expired, format!("expired at {exp}, now {now}")));
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if nbf > now.saturating_add(LEEWAY) {
            return Err(AuthFailure::invalid(format!("not valid before {nbf}, now {now}")));
        }
    }
    Ok(exp)
}

/// A NumericDate claim (RFC 7519 §2): seconds since the epoch, fractions rounded as the
/// crate does.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<u64>, AuthFailure> {
    let Some(value) = claims.get(name) else { return Ok(None) };
    let seconds = value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
    });
    seconds.map(Some).ok_or_else(|| AuthFailure::invalid(format!("claim `{name}` is not a NumericDate")))
}

fn claims_failure(e: &JwtError) -> AuthFailure {
    match e.kind() {
        ErrorKind::MissingRequiredClaim(claim) => AuthFailure::invalid(format!("claim `{claim}` is required")),
        ErrorKind::InvalidIssuer => AuthFailure::invalid("wrong issuer"),
        ErrorKind::InvalidAudience => AuthFailure::invalid("wrong audience"),
        ErrorKind::ExpiredSignature => AuthFailure::new(AuthResult::Expired, "expired"),
        _ => AuthFailure::invalid(e.to_string()),
    }
}
