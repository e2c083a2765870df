//! A route's `auth` section. The key files are loaded here, so a broken one is a config
//! error naming its key (and `wsgate -t` finds it), and a SIGHUP reload, which validates
//! the file again, re-reads them.

use super::reserved::reserved;
use super::values::{resolve_path, Problems};
use crate::auth::{load_keys, load_secret, Jwt, JwtSettings, RouteAuth, TokenPlace, VerifyingKey};
use crate::config::locate::KeyPath;
use crate::config::raw;
use http::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// Headers that belong to the connection, the WebSocket handshake or wsgate's own
/// forwarding: a claim may not be forwarded in them, nor a token taken from them.
const ALGORITHMS: &str = "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

pub(super) fn route_auth(
    raw: &raw::RawAuth,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Arc<RouteAuth>> {
    if raw.jwt.is_none() && raw.forward.is_none() {
        problems.push((path.clone(), "needs `jwt` or `forward` (or both)".into()));
        return None;
    }
    // Both are checked before either failure stops us, so every problem is reported.
    let jwt = raw.jwt.as_ref().map(|r| jwt(r, base_dir, &path.key("jwt"), problems));
    let forward = raw.forward.as_ref().map(|r| super::auth_forward::forward(r, &path.key("forward"), problems));
    if matches!(jwt, Some(None)) || matches!(forward, Some(None)) {
        return None;
    }
    Some(Arc::new(RouteAuth { jwt: jwt.flatten(), forward: forward.flatten() }))
}

fn jwt(raw: &raw::RawJwt, base_dir: &Path, path: &KeyPath, problems: &mut Problems) -> Option<Jwt> {
    let before = problems.len();
    let algorithms = algorithms(&raw.algorithms, &path.key("algorithms"), problems);
    let keys = keys(raw, &algorithms, base_dir, path, problems);
    if raw.issuer.as_deref().is_some_and(str::is_empty) {
        problems.push((path.key("issuer"), "cannot be empty".into()));
    }
    let audience = raw.audience.as_ref().map(|a| a.0.clone());
    if audience.as_ref().is_some_and(|a| a.is_empty() || a.iter().any(String::is_empty)) {
        problems.push((path.key("audience"), "needs at least one audience, none of them empty".into()));
    }
    let token_from = token_places(raw.token_from.as_deref(), &path.key("token_from"), problems);
    let forward_claims = forward_claims(&raw.forward_claims, &path.key("forward_claims"), problems);
    let keys = keys.filter(|_| problems.len() == before)?;
    Some(Jwt::new(JwtSettings {
        keys,
        algorithms,
        issuer: raw.issuer.clone(),
        audience,
        token_from,
        forward_claims,
        keep_token: raw.keep_token,
        close_at_expiry: raw.close_at_expiry,
    }))
}

/// The accepted algorithms; `none` and unknown names are refused, and so is a list that
/// mixes a shared secret's (HS*) with public keys' algorithms.
fn algorithms(raw: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<Algorithm> {
    if raw.is_empty() {
        problems.push((path.clone(), "at least one algorithm is required".into()));
    }
    let mut out = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        match Algorithm::from_str(name) {
            Ok(alg) if !out.contains(&alg) => out.push(alg),
            Ok(_) => problems.push((path.index(i), format!("`{name}` is listed twice"))),
            Err(_) if name.eq_ignore_ascii_case("none") => {
                problems.push((path.index(i), "`none` would accept unsigned tokens: never allowed".into()))
            }
            Err(_) => problems.push((path.index(i), format!("`{name}` is not one of {ALGORITHMS}"))),
        }
    }
    let hmac = out.iter().any(|a| a.family() == AlgorithmFamily::Hmac);
    if hmac && out.iter().any(|a| a.family() != AlgorithmFamily::Hmac) {
        let message = "HS* algorithms (a shared `secret_file`) and public-key algorithms (`keys`) cannot be mixed";
        problems.push((path.clone(), message.into()));
    }
    out
}

/// The keys of `keys` or the secret of `secret_file`, checked against the algorithms.
fn keys(
    raw: &raw::RawJwt,
    algorithms: &[Algorithm],
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Vec<VerifyingKey>> {
    let misfits = |hmac: bool| {
        raw.algorithms.iter().enumerate().filter(move |(_, name)| {
            Algorithm::from_str(name).is_ok_and(|a| (a.family() == AlgorithmFamily::Hmac) == hmac)
        })
    };
    match (&raw.keys, &raw.secret_file) {
        (Some(_), Some(_)) => problems.push((path.clone(), "give `keys` or `secret_file`, not both".into())),
        (None, None) => {
            let message = "needs `keys` (public keys, for RS*, PS*, ES*, EdDSA) or `secret_file` (for HS*)";
            problems.push((path.clone(), message.into()));
        }
        (Some(file), None) => {
            for (i, name) in misfits(true) {
                let message = format!("`{name}` verifies with a shared secret: it needs `secret_file`, not `keys`");
                problems.push((path.key("algorithms").index(i), message));
            }
            return public_keys(file, algorithms, base_dir, &path.key("keys"), problems);
        }
        (None, Some(file)) => {
            for (i, name) in misfits(false) {
                let message = format!("`{name}` verifies with a public key: it needs `keys`, not `secret_file`");
                problems.push((path.key("algorithms").index(i), message));
            }
            let min_bytes = algorithms.iter().map(|a| secret_bytes(*a)).max().unwrap_or(0);
            match load_secret(&resolve_path(base_dir, file), min_bytes) {
                Ok(key) => return Some(vec![key]),
                Err(e) => problems.push((path.key("secret_file"), e)),
            }
        }
    }
    None
}

fn public_keys(
    file: &str,
    algorithms: &[Algorithm],
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Vec<VerifyingKey>> {
    let keys = load_keys(&resolve_path(base_dir, file)).map_err(|e| problems.push((path.clone(), e))).ok()?;
    let public: Vec<String> =
        algorithms.iter().filter(|a| a.family() != AlgorithmFamily::Hmac).map(|a| format!("{a:?}")).collect();
    if !public.is_empty() && !keys.iter().any(|k| algorithms.iter().any(|a| k.fits(*a, None))) {
        problems.push((path.clone(), format!("no key in {file} verifies {}", public.join(" or "))));
    }
    Some(keys)
}

/// RFC 7518 §3.2: an HMAC key at least as long as the hash's output.
fn secret_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 0,
    }
}

fn token_places(raw: Option<&[String]>, path: &KeyPath, problems: &mut Problems) -> Vec<TokenPlace> {
    let Some(raw) = raw else { return vec![TokenPlace::Bearer] };
    if raw.is_empty() {
        problems.push((path.clone(), "at least one place is required (default: [header:Authorization])".into()));
    }
    let mut out = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let place = TokenPlace::parse(text).and_then(|place| match &place {
            TokenPlace::Header(name) if *name == http::header::COOKIE => {
                Err("a token in a cookie is `cookie:NAME`".to_string())
            }
            TokenPlace::Header(name) if *name == http::header::SEC_WEBSOCKET_PROTOCOL => {
                Err("a token among the subprotocols is `subprotocol`".to_string())
            }
            TokenPlace::Header(name) if reserved(name) => {
                Err(format!("`{name}` belongs to the connection or to wsgate; it cannot carry a token"))
            }
            _ if out.contains(&place) => Err(format!("`{text}` is listed twice")),
            _ => Ok(place),
        });
        match place {
            Ok(place) => out.push(place),
            Err(e) => problems.push((path.index(i), e)),
        }
    }
    out
}

/// Claim → header; each header valid, not one wsgate manages, and fed by one claim only.
fn forward_claims(
    raw: &BTreeMap<String, String>,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<(String, HeaderName)> {
    let mut out: Vec<(String, HeaderName)> = Vec::new();
    for (claim, header) in raw {
        let key = path.key(claim);
        let name = match HeaderName::from_bytes(header.as_bytes()) {
            Ok(name) => name,
            Err(_) => {
                problems.push((key, format!("`{header}` is not a valid header name")));
                continue;
            }
        };
        if reserved(&name) {
            problems.push((key, format!("`{header}` belongs to the connection or to wsgate; a claim cannot set it")));
        } else if let Some((other, _)) = out.iter().find(|(_, n)| *n == name) {
            problems.push((key, format!("`{header}` already carries claim `{other}`")));
        } else if claim.is_empty() {
            problems.push((key, "a claim name cannot be empty".into()));
        } else {
            out.push((claim.clone(), name));
        }
    }
    out
}
