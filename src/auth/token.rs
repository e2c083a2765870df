//! Where a client puts its token (`token_from`), and how it is taken out again before the
//! request goes to the backend. Browsers cannot set headers on a WebSocket handshake, so
//! besides `Authorization: Bearer` (RFC 6750 §2.1) tokens come in a query parameter
//! (§2.3), a cookie, or as an entry of `Sec-WebSocket-Protocol`.
//!
//! Everything here reads attacker-controlled bytes: no UTF-8 is assumed, nothing is
//! indexed without a bound, and removal only ever drops bytes from what the client sent,
//! so what remains is as valid as it was.

use http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderName, HeaderValue};
use percent_encoding::percent_decode;
use pingora::http::RequestHeader;
use std::fmt;

/// One entry of `token_from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPlace {
    /// `header:Authorization`: the `Bearer` scheme (case-insensitive, RFC 9110 §11.1).
    Bearer,
    /// `header:NAME`: the whole value of another header.
    Header(HeaderName),
    /// `query:NAME`: a query parameter, percent-decoded.
    Query(String),
    /// `cookie:NAME`: one cookie of the `Cookie` header(s).
    Cookie(String),
    /// `subprotocol`: an entry of `Sec-WebSocket-Protocol` shaped like a JWT.
    Subprotocol,
}

impl TokenPlace {
    /// Reads one `token_from` entry; the error is the problem to report at its key.
    pub(crate) fn parse(text: &str) -> Result<TokenPlace, String> {
        let expected = "is not a token place: `header:NAME`, `query:NAME`, `cookie:NAME` or `subprotocol`";
        if text == "subprotocol" {
            return Ok(TokenPlace::Subprotocol);
        }
        let Some((kind, name)) = text.split_once(':') else { return Err(format!("`{text}` {expected}")) };
        let name = name.trim();
        match kind.trim() {
            "header" => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) if n == AUTHORIZATION => Ok(TokenPlace::Bearer),
                Ok(n) => Ok(TokenPlace::Header(n)),
                Err(_) => Err(format!("`{name}` is not a valid header name")),
            },
            "query" if !name.is_empty() => Ok(TokenPlace::Query(name.to_string())),
            // RFC 6265 §4.1.1: a cookie-name is a token (no separators, no spaces).
            "cookie" if !name.is_empty() && HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Ok(TokenPlace::Cookie(name.to_string()))
            }
            "query" | "cookie" => Err(format!("`{text}`: `{kind}:` needs a name")),
            _ => Err(format!("`{text}` {expected}")),
        }
    }

    /// The first non-empty token in this place, as the client sent it (percent-decoded for
    /// a query parameter).
    pub(crate) fn find(&self, req: &RequestHeader) -> Option<Vec<u8>> {
        let found = match self {
            TokenPlace::Bearer => req.headers.get_all(AUTHORIZATION).iter().find_map(|v| bearer(v.as_bytes())),
            TokenPlace::Header(name) => {
                req.headers.get_all(name).iter().map(|v| v.as_bytes().trim_ascii()).find(|v| !v.is_empty())
            }
            TokenPlace::Query(name) => return query_param(req.raw_path(), name),
            TokenPlace::Cookie(name) => req.headers.get_all(COOKIE).iter().find_map(|v| cookie(v.as_bytes(), name)),
            TokenPlace::Subprotocol => {
                let values = req.headers.get_all(SEC_WEBSOCKET_PROTOCOL);
                values.iter().find_map(|v| list(v.as_bytes()).find(|e| jwt_shaped(e)))
            }
        };
        found.map(<[u8]>::to_vec)
    }

    /// Takes every token of this place out of `req`: the header, every parameter or cookie
    /// of that name, every JWT-shaped subprotocol, keeping everything else in order.
    pub(crate) fn remove(&self, req: &mut RequestHeader) {
        match self {
            TokenPlace::Bearer => {
                req.remove_header(&AUTHORIZATION);
            }
            TokenPlace::Header(name) => {
                req.remove_header(name);
            }
            TokenPlace::Query(name) => remove_query_param(req, name),
            TokenPlace::Cookie(name) => rewrite_list(req, COOKIE, b"; ", |c| cookie_name(c) == name.as_bytes()),
            TokenPlace::Subprotocol => rewrite_list(req, SEC_WEBSOCKET_PROTOCOL, b", ", jwt_shaped),
        }
    }
}

impl fmt::Display for TokenPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenPlace::Bearer => write!(f, "header:Authorization"),
            TokenPlace::Header(name) => write!(f, "header:{name}"),
            TokenPlace::Query(name) => write!(f, "query:{name}"),
            TokenPlace::Cookie(name) => write!(f, "cookie:{name}"),
            TokenPlace::Subprotocol => write!(f, "subprotocol"),
        }
    }
}

/// `Bearer <token>`: the scheme in any case, then at least one space (RFC 6750 §2.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return None;
    }
    Some(rest.trim_ascii()).filter(|t| !t.is_empty())
}

/// Entries of a comma- or semicolon-separated header, trimmed, empty ones skipped.
fn split(value: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    value.split(move |b| *b == separator).map(<[u8]>::trim_ascii).filter(|e| !e.is_empty())
}

fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    split(value, b',')
}

fn cookie_name(pair: &[u8]) -> &[u8] {
    let name = pair.iter().position(|b| *b == b'=').map_or(pair, |eq| &pair[..eq]);
    name.trim_ascii()
}

/// The value of cookie `name` in one `Cookie` header, without the optional double quotes
/// of RFC 6265 §4.1.1.
fn cookie<'a>(value: &'a [u8], name: &str) -> Option<&'a [u8]> {
    split(value, b';').find_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        if pair[..eq].trim_ascii() != name.as_bytes() {
            return None;
        }
        let v = pair[eq + 1..].trim_ascii();
        let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
        Some(v).filter(|v| !v.is_empty())
    })
}

/// Three dot-separated base64url parts, the first a JSON object (`{"` or `{ ` encode as
/// `ey`). The signature part may be empty so that an `alg: none` token is found, and then
/// refused, rather than passed over as a protocol name; a name such as `v1.chat.example`
/// is not taken for a token.
fn jwt_shaped(entry: &[u8]) -> bool {
    let b64url = |part: &[u8]| part.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    let mut parts = entry.split(|b| *b == b'.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => {
            header.starts_with(b"ey") && !claims.is_empty() && [header, claims, signature].into_iter().all(b64url)
        }
        _ => false,
    }
}

/// The query of a request target (after the first `?`; Pingora has already cut any `#`).
fn query(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let q = target.iter().position(|b| *b == b'?')?;
    Some((&target[..q], &target[q + 1..]))
}

fn param_name_is(param: &[u8], name: &str) -> bool {
    let raw = param.iter().position(|b| *b == b'=').map_or(param, |eq| &param[..eq]);
    *percent_decode(raw).collect::<Vec<u8>>() == *name.as_bytes()
}

fn query_param(target: &[u8], name: &str) -> Option<Vec<u8>> {
    let (_, query) = query(target)?;
    query.split(|b| *b == b'&').filter(|p| param_name_is(p, name)).find_map(|p| {
        let eq = p.iter().position(|b| *b == b'=')?;
        let value: Vec<u8> = percent_decode(&p[eq + 1..]).collect();
        Some(value).filter(|v| !v.is_empty())
    })
}

/// Drops every `name` parameter; the others keep their bytes and order.
fn remove_query_param(req: &mut RequestHeader, name: &str) {
    let target = req.raw_path();
    let Some((path, query)) = query(target) else { return };
    let kept: Vec<&[u8]> = query.split(|b| *b == b'&').filter(|p| !param_name_is(p, name)).collect();
    if kept.len() == query.split(|b| *b == b'&').count() {
        return;
    }
    let mut rewritten = path.to_vec();
    if !kept.is_empty() {
        rewritten.push(b'?');
        rewritten.extend_from_slice(&kept.join(&b'&'));
    }
    let path = path.to_vec();
    // Dropping whole parameters cannot make a valid target invalid; should Pingora refuse
    // it all the same, the path alone still never carries the token on.
    if req.set_raw_path(&rewritten).is_err() {
        let _ = req.set_raw_path(&path);
    }
}

/// Rewrites each `name` header without the entries `drop` matches; a header left empty is
/// removed. Headers without such an entry are not touched.
fn rewrite_list(req: &mut RequestHeader, name: HeaderName, separator: &[u8], drop: impl Fn(&[u8]) -> bool) {
    let split_on = separator[0];
    let values = req.headers.get_all(&name);
    if !values.iter().any(|v| split(v.as_bytes(), split_on).any(&drop)) {
        return;
    }
    let kept: Vec<HeaderValue> = values
        .iter()
        .filter_map(|v| {
            let entries: Vec<&[u8]> = split(v.as_bytes(), split_on).filter(|e| !drop(e)).collect();
            HeaderValue::from_bytes(&entries.join(separator)).ok().filter(|v| !v.is_empty())
        })
        .collect();
    req.remove_header(&name);
    for value in kept {
        let _ = req.append_header(name.clone(), value);
    }
}
