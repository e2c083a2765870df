//! The `routes` section: what each route matches, where it sends requests, what it changes
//! in them and its WebSocket policy.

use super::reserved::connection_owned;
use super::values::Problems;
use crate::config::locate::KeyPath;
use crate::config::model::*;
use crate::config::raw;
use http::{HeaderName, HeaderValue};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a side may stay silent after wsgate's Ping unless `ping_timeout` says otherwise.
const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous enough for any chat or RPC message, small enough that one client cannot make a
/// backend buffer unbounded data.
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;

pub(super) fn routes(
    raw: &[raw::RawRoute],
    raw_upstreams: &BTreeMap<String, raw::RawUpstream>,
    upstream_index: &HashMap<String, usize>,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<Route> {
    if raw.is_empty() {
        problems.push((path.clone(), "at least one route is required".into()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let item = path.index(i);
        let before = problems.len();
        let upstream = upstream_index.get(&r.upstream).copied();
        if !raw_upstreams.contains_key(&r.upstream) {
            let known: Vec<&str> = raw_upstreams.keys().map(String::as_str).collect();
            let message = format!("unknown upstream `{}`; defined: {}", r.upstream, known.join(", "));
            problems.push((item.key("upstream"), message));
        }
        let (host, path_prefix) = matching(r, &item, problems);
        if !seen.insert((host.clone(), path_prefix.clone())) {
            problems.push((item.clone(), "another route already matches the same host and path_prefix".into()));
        }
        let host_header = host_header(r.host_header.as_deref(), &item, problems);
        let (set_headers, remove_headers) = request_headers(r.request_headers.as_ref(), &item, problems);
        let websocket = websocket_policy(r.websocket.as_ref(), &item.key("websocket"), problems);
        let auth = r.auth.as_ref().and_then(|a| super::auth::route_auth(a, base_dir, &item.key("auth"), problems));
        let (Some(upstream), true) = (upstream, problems.len() == before) else { continue };
        let name = r.name.clone().unwrap_or_else(|| format!("route{i}"));
        let route =
            Route { name, host, path_prefix, upstream, host_header, set_headers, remove_headers, websocket, auth };
        out.push(route);
    }
    out
}

/// What the route matches: its host (any when none) and path prefix.
fn matching(r: &raw::RawRoute, item: &KeyPath, problems: &mut Problems) -> (Option<HostPattern>, String) {
    let host = r.host.as_deref().and_then(|h| match host_pattern(h) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.push((item.key("host"), e));
            None
        }
    });
    let path_prefix = match path_prefix(r.path_prefix.as_deref().unwrap_or("/")) {
        Ok(p) => p,
        Err(e) => {
            problems.push((item.key("path_prefix"), e));
            String::new()
        }
    };
    (host, path_prefix)
}

fn host_header(raw: Option<&str>, item: &KeyPath, problems: &mut Problems) -> HostHeader {
    match raw {
        None | Some("preserve") => HostHeader::Preserve,
        Some("backend") => HostHeader::Backend,
        Some(literal) => match HeaderValue::from_str(literal) {
            Ok(v) if !literal.is_empty() => HostHeader::Literal(v),
            _ => {
                problems.push((item.key("host_header"), format!("`{literal}` is not a valid Host value")));
                HostHeader::Preserve
            }
        },
    }
}

type HeaderEdits = (Vec<(HeaderName, HeaderValue)>, Vec<HeaderName>);

fn request_headers(raw: Option<&raw::RawRequestHeaders>, item: &KeyPath, problems: &mut Problems) -> HeaderEdits {
    let path = item.key("request_headers");
    let mut set_headers = Vec::new();
    for (name, value) in raw.map(|h| &h.set).into_iter().flatten() {
        let key = path.key("set").key(name);
        match (header_name(name), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => set_headers.push((n, v)),
            (Err(e), _) => problems.push((key, e)),
            (_, Err(_)) => problems.push((key, format!("`{value}` is not a valid header value"))),
        }
    }
    let mut remove_headers = Vec::new();
    for (j, name) in raw.map(|h| h.remove.as_slice()).unwrap_or_default().iter().enumerate() {
        match header_name(name) {
            Ok(n) => remove_headers.push(n),
            Err(e) => problems.push((path.key("remove").index(j), e)),
        }
    }
    (set_headers, remove_headers)
}

fn websocket_policy(ws: Option<&raw::RawWebSocket>, path: &KeyPath, problems: &mut Problems) -> WebSocketPolicy {
    let idle_timeout = ws.and_then(|w| w.idle_timeout).map_or(DEFAULT_WS_IDLE_TIMEOUT, |d| d.0);
    if idle_timeout.is_zero() {
        problems.push((path.key("idle_timeout"), "must be greater than 0".into()));
    }
    let allowed_origins = ws
        .and_then(|w| w.allowed_origins.as_ref())
        .map(|origins| origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect::<Vec<_>>());
    if allowed_origins.as_ref().is_some_and(|o| o.iter().any(String::is_empty)) {
        problems.push((path.key("allowed_origins"), "an origin cannot be empty".into()));
    }
    let max_message_bytes = ws.and_then(|w| w.max_message_bytes).map_or(DEFAULT_MAX_MESSAGE_BYTES, |b| b.as_u64());
    if max_message_bytes == 0 {
        problems.push((path.key("max_message_bytes"), "must be at least 1".into()));
    }
    let max_lifetime = ws.and_then(|w| w.max_lifetime).map(|d| d.0);
    if max_lifetime.is_some_and(|d| d.is_zero()) {
        problems.push((path.key("max_lifetime"), "must be greater than 0".into()));
    }
    WebSocketPolicy {
        enabled: ws.and_then(|w| w.enabled).unwrap_or(true),
        idle_timeout,
        allowed_origins,
        max_message_bytes,
        max_sessions: ws.and_then(|w| w.max_sessions),
        max_lifetime,
        keepalive: ws.and_then(|w| keepalive(w, path, problems)),
        client_rate: ws.map(|w| client_rate(w, path, problems)).unwrap_or_default(),
    }
}

fn keepalive(ws: &raw::RawWebSocket, path: &KeyPath, problems: &mut Problems) -> Option<Keepalive> {
    let timeout = ws.ping_timeout.map(|d| d.0);
    let Some(interval) = ws.ping_interval.map(|d| d.0) else {
        if timeout.is_some() {
            problems.push((path.key("ping_timeout"), "needs ping_interval (keepalive is off without it)".into()));
        }
        return None;
    };
    let timeout = timeout.unwrap_or(DEFAULT_PING_TIMEOUT);
    for (key, value) in [("ping_interval", interval), ("ping_timeout", timeout)] {
        if value.is_zero() {
            problems.push((path.key(key), "must be greater than 0".into()));
        }
    }
    Some(Keepalive { interval, timeout })
}

fn client_rate(ws: &raw::RawWebSocket, path: &KeyPath, problems: &mut Problems) -> ClientRate {
    let messages = ws.client_messages_per_second.as_ref().map(|r| (r.rate, r.burst));
    let bytes =
        ws.client_bytes_per_second.as_ref().map(|r| (r.rate.as_u64() as f64, r.burst.map(|b| b.as_u64() as f64)));
    let mut bucket = |key: &str, given: Option<(f64, Option<f64>)>| {
        let (rate, burst) = given?;
        let burst = burst.unwrap_or(rate);
        if !(rate.is_finite() && rate > 0.0) {
            problems.push((path.key(key).key("rate"), "must be a number greater than 0".into()));
        }
        if !(burst.is_finite() && burst >= 1.0) {
            problems.push((path.key(key).key("burst"), "must be at least 1".into()));
        }
        Some(Bucket { rate, burst })
    };
    ClientRate {
        messages: bucket("client_messages_per_second", messages),
        bytes: bucket("client_bytes_per_second", bytes),
        on_exceeded: ws.on_rate_exceeded.unwrap_or_default(),
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a valid header name"))?;
    if connection_owned(parsed.as_str()) {
        return Err(format!("`{name}` is managed by wsgate and cannot be changed here"));
    }
    Ok(parsed)
}

pub(crate) fn host_pattern(text: &str) -> Result<HostPattern, String> {
    let host = text.trim().to_ascii_lowercase();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if let Some(suffix) = host.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostPattern::WildcardSuffix(format!(".{suffix}")));
        }
    } else if valid(&host) {
        return Ok(HostPattern::Exact(host));
    }
    Err(format!("`{text}` is not a host name or `*.domain` wildcard (ports are not part of a route's host)"))
}

pub(crate) fn path_prefix(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("`{text}` must start with `/`"));
    }
    if text.contains(|c: char| c == '?' || c == '#' || c.is_whitespace()) {
        return Err(format!("`{text}` must be a plain path (no query, fragment or spaces)"));
    }
    // Requests are routed on their normalised path, so the prefix is compared in that form too.
    let normal = crate::proxy::routing::normalize_path(text);
    let trimmed = normal.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".into() } else { trimmed.into() })
}
