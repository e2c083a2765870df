//! The `upstreams` section: each pool's backends, balancing, timeouts, discovery, health
//! check and TLS.

use super::values::{resolve_path, Problems};
use crate::config::duration::ConfigDuration;
use crate::config::locate::KeyPath;
use crate::config::model::*;
use crate::config::raw::{self, RawBackend};
use crate::upstream::affinity::{derive_key, is_cookie_name};
use http::HeaderName;
use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: usize = 2;
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(5);
const DEFAULT_AFFINITY_COOKIE: &str = "wsgate_affinity";
const DEFAULT_AFFINITY_TTL: Duration = Duration::from_secs(3600);
/// A `key_file` shorter than this is refused: the key is what keeps the cookie opaque.
const MIN_AFFINITY_SECRET: usize = 16;

pub(super) fn upstream(
    name: &str,
    raw: &raw::RawUpstream,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Upstream> {
    let before = problems.len();
    let (backends, dns_names) = backends(raw, &path.key("backends"), problems);
    let balance = balance(raw, path, problems);
    let health_check = health_check(raw.health_check.as_ref(), &path.key("health_check"), problems);
    let connect_timeout =
        positive(raw.connect_timeout, DEFAULT_CONNECT_TIMEOUT, &path.key("connect_timeout"), problems);
    let read_timeout = positive(raw.read_timeout, DEFAULT_READ_TIMEOUT, &path.key("read_timeout"), problems);
    let discovery = discovery(raw, dns_names, base_dir, path, problems);
    let tls = raw.tls.as_ref().and_then(|t| upstream_tls(t, base_dir, &path.key("tls"), problems));
    let (max_sessions_per_backend, queue) = session_cap(raw, path, problems);
    let rebalance = rebalance(raw.rebalance.as_ref(), &path.key("rebalance"), problems);
    let passive_health = passive_health(raw.passive_health.as_ref(), &path.key("passive_health"), problems);
    let slow_start = raw.slow_start.map(|d| positive(Some(d), d.0, &path.key("slow_start"), problems));
    let affinity = raw.affinity.as_ref().map(|a| affinity(a, name, base_dir, &path.key("affinity"), problems));
    (problems.len() == before).then(|| Upstream {
        name: name.to_string(),
        retries: raw.retries.unwrap_or(DEFAULT_RETRIES),
        backends,
        balance,
        connect_timeout,
        read_timeout,
        health_check,
        discovery,
        tls,
        max_sessions_per_backend,
        queue,
        on_backend_down: raw.on_backend_down,
        rebalance,
        passive_health,
        slow_start,
        affinity,
    })
}

fn affinity(raw: &raw::RawAffinity, pool: &str, base_dir: &Path, path: &KeyPath, problems: &mut Problems) -> Affinity {
    let cookie = raw.cookie.clone().unwrap_or_else(|| DEFAULT_AFFINITY_COOKIE.into());
    if !is_cookie_name(&cookie) {
        problems.push((path.key("cookie"), format!("`{cookie}` is not a valid cookie name (an RFC 6265 token)")));
    }
    let ttl = raw.ttl.map_or(DEFAULT_AFFINITY_TTL, |d| d.0);
    if ttl < Duration::from_secs(1) {
        problems.push((path.key("ttl"), "must be at least 1s (the cookie's Max-Age counts whole seconds)".into()));
    }
    let secret = raw.key_file.as_ref().and_then(|file| match std::fs::read(resolve_path(base_dir, file)) {
        // Trimmed, so `echo` and `printf` give the same key.
        Ok(bytes) if bytes.trim_ascii().len() >= MIN_AFFINITY_SECRET => Some(bytes.trim_ascii().to_vec()),
        Ok(bytes) => {
            let why = format!(
                "{file} holds {} bytes; the key needs at least {MIN_AFFINITY_SECRET}",
                bytes.trim_ascii().len()
            );
            problems.push((path.key("key_file"), why));
            None
        }
        Err(e) => {
            problems.push((path.key("key_file"), format!("cannot read {file}: {e}")));
            None
        }
    });
    Affinity { cookie, ttl, key: derive_key(secret.as_deref(), pool) }
}

fn passive_health(
    raw: Option<&raw::RawPassiveHealth>,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<PassiveHealth> {
    let raw = raw?;
    if raw.failures == 0 {
        problems.push((path.key("failures"), "must be at least 1".into()));
    }
    let eject = positive(Some(raw.eject), raw.eject.0, &path.key("eject"), problems);
    Some(PassiveHealth { failures: raw.failures, eject })
}

fn rebalance(raw: Option<&raw::RawRebalance>, path: &KeyPath, problems: &mut Problems) -> Option<Rebalance> {
    let raw = raw?;
    // At or under 1, a backend at exactly its share would shed sessions, for ever.
    if !(raw.max_skew > 1.0 && raw.max_skew.is_finite()) {
        problems.push((path.key("max_skew"), format!("{} must be a number greater than 1", raw.max_skew)));
    }
    if raw.closes_per_second == 0 {
        problems.push((path.key("closes_per_second"), "must be at least 1".into()));
    }
    Some(Rebalance { max_skew: raw.max_skew, closes_per_second: raw.closes_per_second })
}

/// `max_sessions_per_backend` and the `queue` that only applies with it.
fn session_cap(
    raw: &raw::RawUpstream,
    path: &KeyPath,
    problems: &mut Problems,
) -> (Option<usize>, Option<SessionQueue>) {
    if raw.max_sessions_per_backend == Some(0) {
        problems.push((path.key("max_sessions_per_backend"), "must be at least 1".into()));
    }
    let queue = raw.queue.as_ref().map(|q| SessionQueue { size: q.size, timeout: q.timeout.0 });
    if let Some(q) = &queue {
        if raw.max_sessions_per_backend.is_none() {
            problems.push((path.key("queue"), "only applies with `max_sessions_per_backend`".into()));
        }
        if q.size == 0 {
            problems.push((path.key("queue").key("size"), "must be at least 1".into()));
        }
        if q.timeout.is_zero() {
            problems.push((path.key("queue").key("timeout"), "must be greater than 0".into()));
        }
    }
    (raw.max_sessions_per_backend, queue)
}

/// A duration that must not be zero, `default` when not set.
fn positive(d: Option<ConfigDuration>, default: Duration, path: &KeyPath, problems: &mut Problems) -> Duration {
    let d = d.map_or(default, |d| d.0);
    if d.is_zero() {
        problems.push((path.clone(), "must be greater than 0".into()));
    }
    d
}

/// The configured backends: addresses (host names resolved once, now) for a static pool,
/// names to resolve again and again for a DNS pool.
fn backends(raw: &raw::RawUpstream, path: &KeyPath, problems: &mut Problems) -> (Vec<BackendSpec>, Vec<DnsName>) {
    if raw.backends.is_empty() {
        problems.push((path.clone(), "a pool needs at least one backend".into()));
    }
    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut dns_names: Vec<DnsName> = Vec::new();
    for (i, b) in raw.backends.iter().enumerate() {
        let (address, weight, item) = match b {
            RawBackend::Address(a) => (a.as_str(), 1, path.index(i)),
            RawBackend::Weighted(w) => (w.address.as_str(), w.weight, path.index(i).key("address")),
        };
        if weight == 0 {
            problems.push((path.index(i).key("weight"), "weight must be at least 1".into()));
        }
        if raw.discovery == raw::DiscoveryKind::Dns {
            match dns_name(address, weight) {
                Ok(n) => dns_names.push(n),
                Err(e) => problems.push((item, e)),
            }
            continue;
        }
        resolve_backend(address, weight, &item, &mut backends, problems);
    }
    (backends, dns_names)
}

/// Every address `address` resolves to is a backend.
fn resolve_backend(address: &str, weight: usize, item: &KeyPath, out: &mut Vec<BackendSpec>, problems: &mut Problems) {
    let addrs = match address.to_socket_addrs() {
        Ok(addrs) => addrs,
        Err(e) => return problems.push((item.clone(), format!("`{address}` is not a usable host:port ({e})"))),
    };
    let mut any = false;
    for address in addrs {
        any = true;
        if out.iter().any(|b| b.address == address) {
            problems.push((item.clone(), format!("duplicate backend {address}")));
        } else {
            out.push(BackendSpec { address, weight });
        }
    }
    if !any {
        problems.push((item.clone(), format!("`{address}` resolved to no address")));
    }
}

fn balance(raw: &raw::RawUpstream, path: &KeyPath, problems: &mut Problems) -> Balance {
    match (raw.balance, &raw.hash_key) {
        (raw::Balance::ConsistentHash, Some(key)) => match hash_key(key) {
            Ok(k) => Balance::ConsistentHash(k),
            Err(e) => {
                problems.push((path.key("hash_key"), e));
                Balance::ConsistentHash(HashKey::ClientIp)
            }
        },
        (raw::Balance::ConsistentHash, None) => Balance::ConsistentHash(HashKey::ClientIp),
        (_, Some(_)) => {
            problems.push((path.key("hash_key"), "hash_key only applies to `balance: consistent_hash`".into()));
            Balance::RoundRobin
        }
        (raw::Balance::RoundRobin, None) => Balance::RoundRobin,
        (raw::Balance::Random, None) => Balance::Random,
        (raw::Balance::LeastSessions, None) => Balance::LeastSessions,
    }
}

fn discovery(
    raw: &raw::RawUpstream,
    names: Vec<DnsName>,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Discovery {
    match raw.discovery {
        raw::DiscoveryKind::Static => {
            for (key, set) in [("resolve_every", raw.resolve_every.is_some()), ("hosts_file", raw.hosts_file.is_some())]
            {
                if set {
                    problems.push((path.key(key), "only applies to `discovery: dns`".into()));
                }
            }
            Discovery::Static
        }
        raw::DiscoveryKind::Dns => Discovery::Dns {
            names,
            every: positive(raw.resolve_every, DEFAULT_RESOLVE_EVERY, &path.key("resolve_every"), problems),
            hosts_file: raw.hosts_file.as_deref().map(|f| resolve_path(base_dir, f)),
        },
    }
}

/// `host:port` of a DNS-discovered backend (resolved later, again and again).
fn dns_name(text: &str, weight: usize) -> Result<DnsName, String> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("`{text}` is not host:port"))?;
    let port = port.parse::<u16>().map_err(|_| format!("`{port}` is not a port"))?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(format!("`{host}` is not a host name"));
    }
    Ok(DnsName { host: host.trim_matches(|c| c == '[' || c == ']').to_string(), port, weight })
}

fn upstream_tls(
    raw: &raw::RawUpstreamTls,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<UpstreamTls> {
    let sni = raw.sni.clone().unwrap_or_default();
    let verify = raw.verify.unwrap_or(true);
    if verify && sni.is_empty() {
        // Pingora's rustls connector turns verification off when the SNI is empty (as nginx
        // does); wsgate never does that silently.
        problems.push((
            path.key("sni"),
            "required to verify the backend's certificate (an empty SNI disables verification); set `verify: false` to accept that explicitly".into(),
        ));
        return None;
    }
    let ca_der = match &raw.ca_file {
        None => None,
        Some(file) => {
            let file = resolve_path(base_dir, file);
            match read_ca_file(&file) {
                Ok(ders) => Some(ders),
                Err(e) => {
                    problems.push((path.key("ca_file"), e));
                    return None;
                }
            }
        }
    };
    Some(UpstreamTls { sni, verify, ca_der })
}

/// The certificates of a PEM CA file, each checked to be parseable X.509 (Pingora's own
/// parser panics on anything else).
fn read_ca_file(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::PemObject;
    let iter = rustls_pki_types::CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("cannot read {}: {e:?}", file.display()))?;
    let mut ders = Vec::new();
    for cert in iter {
        let der = cert.map_err(|e| format!("{}: not a PEM certificate: {e:?}", file.display()))?.to_vec();
        let parsed = std::panic::catch_unwind(|| {
            pingora::utils::tls::WrappedX509::new(der.clone(), pingora::utils::tls::parse_x509)
        });
        if parsed.is_err() {
            return Err(format!("{}: a certificate is not valid X.509", file.display()));
        }
        ders.push(der);
    }
    if ders.is_empty() {
        return Err(format!("{}: no certificate found", file.display()));
    }
    Ok(ders)
}

pub(crate) fn hash_key(text: &str) -> Result<HashKey, String> {
    match text {
        "client_ip" => return Ok(HashKey::ClientIp),
        "path" => return Ok(HashKey::Path),
        _ => {}
    }
    if let Some(name) = text.strip_prefix("header:") {
        return HeaderName::from_bytes(name.trim().as_bytes())
            .map(HashKey::Header)
            .map_err(|_| format!("`{name}` is not a valid header name"));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        let name = name.trim();
        if name.is_empty() || name.contains(|c: char| c == ';' || c == '=' || c.is_whitespace()) {
            return Err(format!("`{name}` is not a valid cookie name"));
        }
        return Ok(HashKey::Cookie(name.to_string()));
    }
    Err(format!("unknown hash_key `{text}`; expected client_ip, path, header:NAME or cookie:NAME"))
}

fn health_check(raw: Option<&raw::RawHealthCheck>, path: &KeyPath, problems: &mut Problems) -> HealthCheck {
    let default = raw::RawHealthCheck {
        kind: raw::HealthCheckKind::Tcp,
        path: None,
        interval: None,
        timeout: None,
        healthy_after: None,
        unhealthy_after: None,
    };
    let raw = raw.unwrap_or(&default);
    if raw.path.is_some() && raw.kind != raw::HealthCheckKind::Http {
        problems.push((path.key("path"), "path only applies to `kind: http`".into()));
    }
    let check_path = raw.path.clone().unwrap_or_else(|| "/".into());
    if !check_path.starts_with('/') {
        problems.push((path.key("path"), "must start with `/`".into()));
    }
    let interval = raw.interval.map_or(DEFAULT_HEALTH_INTERVAL, |d| d.0);
    let timeout = raw.timeout.map_or(DEFAULT_HEALTH_TIMEOUT, |d| d.0);
    for (key, value) in [("interval", interval), ("timeout", timeout)] {
        if value.is_zero() {
            problems.push((path.key(key), "must be greater than 0".into()));
        }
    }
    let healthy_after = raw.healthy_after.unwrap_or(1);
    let unhealthy_after = raw.unhealthy_after.unwrap_or(1);
    for (key, value) in [("healthy_after", healthy_after), ("unhealthy_after", unhealthy_after)] {
        if value == 0 {
            problems.push((path.key(key), "must be at least 1".into()));
        }
    }
    HealthCheck { kind: raw.kind, path: check_path, interval, timeout, healthy_after, unhealthy_after }
}
