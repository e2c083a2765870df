//! A route's `auth.forward`: the auth service's URL (its host name resolved once, now, like
//! a static upstream's: a name that does not resolve is a config error, not a 503 on every
//! request), the subrequest's deadline, the headers it may set and the cache period.

use super::reserved::reserved;
use super::values::Problems;
use crate::auth::forward::{ForwardAuth, ForwardSettings};
use crate::config::locate::KeyPath;
use crate::config::raw;
use http::uri::{Scheme, Uri};
use http::{HeaderName, HeaderValue};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// An auth service answers from memory or one lookup; 2 s is nginx's and Traefik's order of
/// magnitude, and short enough that a hung one fails handshakes quickly.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn forward(raw: &raw::RawForward, path: &KeyPath, problems: &mut Problems) -> Option<ForwardAuth> {
    let before = problems.len();
    let url = url(&raw.url, &path.key("url"), problems);
    let timeout = raw.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
    if timeout.is_zero() {
        problems.push((path.key("timeout"), "must be more than 0 (default 2s)".into()));
    }
    let copy_headers = copy_headers(&raw.copy_headers, &path.key("copy_headers"), problems);
    // `0s` says "off" as plainly as leaving the key out.
    let cache = raw.cache.map(|c| c.0).filter(|c| !c.is_zero());
    let url = url.filter(|_| problems.len() == before)?;
    Some(ForwardAuth::new(ForwardSettings {
        url: raw.url.clone(),
        address: url.address,
        tls: url.tls,
        sni: url.host,
        authority: url.authority,
        path: url.path,
        timeout,
        copy_headers,
        cache,
    }))
}

struct Url {
    address: SocketAddr,
    tls: bool,
    host: String,
    authority: HeaderValue,
    path: String,
}

/// `http://host[:port]/path?query` or `https://…`; the port defaults to the scheme's.
fn url(text: &str, path: &KeyPath, problems: &mut Problems) -> Option<Url> {
    let mut fail = |message: String| problems.push((path.clone(), message));
    let Ok(uri) = text.parse::<Uri>() else {
        fail(format!("`{text}` is not a URL (http://host:port/path)"));
        return None;
    };
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        _ => {
            fail(format!("`{text}` must start with http:// or https://"));
            return None;
        }
    };
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        fail(format!("`{text}` has no host"));
        return None;
    };
    // Credentials in the URL would be sent nowhere (the subrequest carries the client's).
    if authority.as_str().contains('@') {
        fail(format!("`{text}`: a user or password in the URL is not supported"));
        return None;
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // `host()` keeps an IPv6 literal's brackets; the address and the SNI name do not.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let address = match (host.as_str(), port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(address)) => address,
        Ok(None) | Err(_) => {
            fail(format!("`{host}` does not resolve to an address"));
            return None;
        }
    };
    let Ok(authority) = HeaderValue::from_str(authority.as_str()) else {
        fail(format!("`{text}`: its host cannot be a Host header"));
        return None;
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Some(Url { address, tls, host, authority, path })
}

/// Valid names, none of them a header the connection, the handshake or wsgate itself sets,
/// none twice.
fn copy_headers(raw: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let problem = match HeaderName::from_bytes(text.as_bytes()) {
            Err(_) => format!("`{text}` is not a valid header name"),
            Ok(name) if reserved(&name) => {
                format!("`{text}` belongs to the connection or to wsgate; the auth service cannot set it")
            }
            Ok(name) if out.contains(&name) => format!("`{text}` is listed twice"),
            Ok(name) => {
                out.push(name);
                continue;
            }
        };
        problems.push((path.index(i), problem));
    }
    out
}
