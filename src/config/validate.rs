//! Raw file → internal model. Collects every problem (key path + message) instead of
//! stopping at the first, so `wsgate -t` shows everything that needs fixing at once.

use super::locate::KeyPath;
use super::model::*;
use super::raw::{self, RawBackend, RawConfig};
use http::{HeaderName, HeaderValue};
use pingora::server::configuration::ServerConf;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) type Problems = Vec<(KeyPath, String)>;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: usize = 2;
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Generous enough for any chat or RPC message, small enough that one client cannot make a
/// backend buffer unbounded data.
const DEFAULT_MAX_MESSAGE_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(30);
const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(5);
/// A /64 is the smallest network an IPv6 host is usually given (RFC 6177), so a single
/// client can hold every address in it.
const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Pingora's runtimes get this long after the grace period (its own default).
const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

/// Headers whose meaning belongs to the connection or to wsgate's own policy: a route may
/// not `set` them (use `host_header` for Host).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
    "sec-websocket-key",
    "sec-websocket-accept",
    "sec-websocket-version",
];

pub(crate) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Problems> {
    let mut problems = Problems::new();
    let root = KeyPath::root();

    let server = server_conf(raw.server, base_dir, &root.key("server"), &mut problems);
    let listeners = listeners(&raw.listeners, base_dir, &root.key("listeners"), &mut problems);
    let metrics = raw.metrics.as_ref().and_then(|m| {
        let path = root.key("metrics").key("address");
        let addr = socket_addr(&m.address, &path, &mut problems)?;
        if listeners.iter().any(|l| l.address == addr) {
            problems.push((path, format!("{addr} is already a proxy listener")));
        }
        Some(addr)
    });

    let access_log = AccessLogConfig {
        target: match raw.access_log.as_ref().and_then(|a| a.path.as_deref()) {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("off") => AccessLogTarget::Off,
            Some("") => {
                problems.push((root.key("access_log").key("path"), "must be a file path, `stdout` or `off`".into()));
                AccessLogTarget::Off
            }
            Some(path) => AccessLogTarget::File(resolve_path(base_dir, path)),
        },
        include_query: raw.access_log.as_ref().is_some_and(|a| a.include_query),
    };

    let raw_limits = raw.limits.as_ref();
    let limit = |get: fn(&raw::RawLimits) -> Option<usize>, key: &str, default: usize, problems: &mut Problems| {
        let value = raw_limits.and_then(get).unwrap_or(default);
        if value == 0 {
            problems.push((root.key("limits").key(key), "must be at least 1".into()));
        }
        value
    };
    let limits = LimitsConfig {
        max_concurrent_per_ip: limit(|l| l.max_concurrent_per_ip, "max_concurrent_per_ip", 10_000, &mut problems),
        requests_per_second_per_ip: raw_limits.and_then(|l| l.requests_per_second_per_ip).filter(|r| *r > 0),
        max_websocket_sessions: limit(|l| l.max_websocket_sessions, "max_websocket_sessions", 100_000, &mut problems),
        max_request_header_bytes: limit(
            |l| l.max_request_header_bytes,
            "max_request_header_bytes",
            32 * 1024,
            &mut problems,
        ),
        max_request_headers: limit(|l| l.max_request_headers, "max_request_headers", 100, &mut problems),
        max_connections: limit(|l| l.max_connections, "max_connections", 10_000, &mut problems),
        max_connections_per_ip: limit(|l| l.max_connections_per_ip, "max_connections_per_ip", 1_024, &mut problems),
        header_timeout: raw_limits.and_then(|l| l.header_timeout).map_or(Duration::from_secs(10), |d| d.0),
        keepalive_timeout: raw_limits.and_then(|l| l.keepalive_timeout).map_or(Duration::from_secs(60), |d| d.0),
        send_timeout: raw_limits.and_then(|l| l.send_timeout).map_or(Duration::from_secs(60), |d| d.0),
        connections_per_second_per_ip: raw_limits.and_then(|l| l.connections_per_second_per_ip).filter(|r| *r > 0),
        ipv6_prefix: match raw_limits.and_then(|l| l.ipv6_prefix) {
            None => DEFAULT_IPV6_PREFIX,
            Some(bits @ 1..=128) => bits as u8,
            Some(bits) => {
                problems.push((
                    root.key("limits").key("ipv6_prefix"),
                    format!("{bits} is not a prefix length from 1 to 128"),
                ));
                DEFAULT_IPV6_PREFIX
            }
        },
    };
    if limits.header_timeout.is_zero() {
        problems.push((root.key("limits").key("header_timeout"), "must be longer than 0s".into()));
    }
    // Pingora counts keep-alive timeouts in whole seconds, and 0 would mean "no limit".
    if limits.keepalive_timeout < Duration::from_secs(1) || limits.keepalive_timeout.subsec_nanos() != 0 {
        problems.push((root.key("limits").key("keepalive_timeout"), "must be whole seconds, at least 1s".into()));
    }
    // Shorter would cut off clients over an ordinary stall (a lost packet's retransmission
    // timeout is 1 s and more).
    if limits.send_timeout < Duration::from_secs(1) {
        problems.push((root.key("limits").key("send_timeout"), "must be at least 1s".into()));
    }

    let explicit_window = raw.drain.as_ref().and_then(|d| d.window).map(|d| d.0);

    let mut upstream_index = HashMap::new();
    let mut upstreams = Vec::new();
    let upstreams_path = root.key("upstreams");
    if raw.upstreams.is_empty() {
        problems.push((upstreams_path.clone(), "at least one upstream is required".into()));
    }
    for (name, pool) in &raw.upstreams {
        if let Some(u) = upstream(name, pool, base_dir, &upstreams_path.key(name), &mut problems) {
            upstream_index.insert(name.clone(), upstreams.len());
            upstreams.push(u);
        }
    }

    let routes = routes(&raw.routes, &raw.upstreams, &upstream_index, &root.key("routes"), &mut problems);

    // Pingora keeps a stopping process for `grace_period_seconds` (default 300) and then
    // drops what is left, so the drain must fit in it: without a grace period the window
    // sets it, without a window the grace period bounds it (wsgate exits earlier anyway,
    // as soon as nothing is in flight).
    let mut server = server.unwrap_or_default();
    let drain_window = match (explicit_window, server.grace_period_seconds) {
        (Some(window), Some(grace)) if window > Duration::from_secs(grace) => {
            problems.push((
                root.key("drain").key("window"),
                format!("{window:?} does not fit in server.grace_period_seconds ({grace}s): sessions would be dropped before their Close"),
            ));
            window
        }
        (Some(window), _) => window,
        // Leave a second of the grace period for the last closing handshakes.
        (None, Some(grace)) => DEFAULT_DRAIN_WINDOW.min(Duration::from_secs(grace.saturating_sub(1))),
        (None, None) => DEFAULT_DRAIN_WINDOW,
    };
    if server.grace_period_seconds.is_none() {
        server.grace_period_seconds = Some(drain_window.as_secs() + 2);
    }
    if server.graceful_shutdown_timeout_seconds.is_none() {
        server.graceful_shutdown_timeout_seconds = Some(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS);
    }

    if problems.is_empty() {
        Ok(Config { server, listeners, metrics, access_log, limits, drain_window, upstreams, routes })
    } else {
        Err(problems)
    }
}

fn resolve_path(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

fn socket_addr(text: &str, path: &KeyPath, problems: &mut Problems) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push((path.clone(), format!("`{text}` is not an ip:port address")));
            None
        }
    }
}

/// Pingora's `ServerConf` ignores unknown keys; we refuse them, then let Pingora parse and
/// validate the rest.
fn server_conf(
    section: Option<serde_yaml::Mapping>,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<ServerConf> {
    let mut section = section.unwrap_or_default();
    let known: HashSet<String> = match serde_yaml::to_value(ServerConf::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m.keys().filter_map(|k| k.as_str().map(String::from)).collect(),
        _ => HashSet::new(),
    };
    let mut ok = true;
    for key in section.keys() {
        let name = key.as_str().unwrap_or_default();
        if !known.contains(name) {
            let mut expected: Vec<&str> = known.iter().map(String::as_str).collect();
            expected.sort_unstable();
            problems.push((path.key(name), format!("unknown server setting; known settings: {}", expected.join(", "))));
            ok = false;
        }
    }
    // `wsgate -u -d` must return before the old process is told to hand over its sockets
    // (systemd's ExecReload runs the two in sequence), so a daemon forks first and
    // releases its parent once it waits for them (Pingora's `daemon_wait_for_ready`).
    let wait_key = serde_yaml::Value::from("daemon_wait_for_ready");
    if !section.contains_key(&wait_key) {
        section.insert(wait_key, serde_yaml::Value::Bool(true));
    }
    for key in ["pid_file", "upgrade_sock", "error_log", "ca_file", "working_directory"] {
        if let Some(serde_yaml::Value::String(p)) = section.get_mut(key) {
            *p = resolve_path(base_dir, p).display().to_string();
        }
    }
    if !ok {
        return None;
    }
    let conf = match serde_yaml::from_value::<ServerConf>(serde_yaml::Value::Mapping(section)) {
        Ok(conf) => conf,
        Err(e) => {
            problems.push((path.clone(), super::strip_location(&e.to_string())));
            return None;
        }
    };
    match conf.validate() {
        Ok(conf) => Some(conf),
        Err(e) => {
            problems.push((path.clone(), e.to_string()));
            None
        }
    }
}

fn listeners(raw: &[raw::RawListener], base_dir: &Path, path: &KeyPath, problems: &mut Problems) -> Vec<Listener> {
    if raw.is_empty() {
        problems.push((path.clone(), "at least one listener is required".into()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let item = path.index(i);
        let Some(address) = socket_addr(&l.address, &item.key("address"), problems) else { continue };
        if !seen.insert(address) {
            problems.push((item.key("address"), format!("duplicate listener {address}")));
            continue;
        }
        let tls = l.tls.as_ref().and_then(|t| listener_tls(t, base_dir, &item.key("tls"), problems));
        out.push(Listener { address, tls });
    }
    out
}

/// A TLS listener's certificates: `cert`/`key` first (the default), then `certificates`,
/// each loaded here so a bad file is a config error naming its key, not a failed start.
fn listener_tls(raw: &raw::RawTls, base_dir: &Path, path: &KeyPath, problems: &mut Problems) -> Option<ListenerTls> {
    let mut pairs = Vec::new();
    match (&raw.cert, &raw.key) {
        (Some(cert), Some(key)) => pairs.push((path.clone(), cert, key)),
        (None, None) => {}
        (Some(_), None) => problems.push((path.key("key"), "`cert` needs its `key`".into())),
        (None, Some(_)) => problems.push((path.key("cert"), "`key` needs its `cert`".into())),
    }
    for (i, pair) in raw.certificates.iter().flatten().enumerate() {
        pairs.push((path.key("certificates").index(i), &pair.cert, &pair.key));
    }
    if pairs.is_empty() {
        if raw.cert.is_none() && raw.key.is_none() {
            problems.push((path.clone(), "a TLS listener needs `cert` and `key`, or `certificates`".into()));
        }
        return None;
    }
    let before = problems.len();
    let mut certificates = Vec::new();
    for (at, cert, key) in pairs {
        let files = CertFiles { cert: resolve_path(base_dir, cert), key: resolve_path(base_dir, key) };
        match crate::listener::certificates::load(&files.cert, &files.key) {
            Ok(_) => certificates.push(files),
            Err((which, message)) => problems.push((at.key(which), message)),
        }
    }
    if problems.len() > before {
        return None;
    }
    let files: Vec<&Path> = certificates.iter().flat_map(|c| [c.cert.as_path(), c.key.as_path()]).collect();
    Some(ListenerTls { fingerprint: fingerprint(&files), certificates, http2: raw.http2.unwrap_or(true) })
}

fn fingerprint(files: &[&Path]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(f).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
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

fn upstream(
    name: &str,
    raw: &raw::RawUpstream,
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Upstream> {
    let before = problems.len();
    let backends_path = path.key("backends");
    if raw.backends.is_empty() {
        problems.push((backends_path.clone(), "a pool needs at least one backend".into()));
    }
    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut dns_names: Vec<DnsName> = Vec::new();
    for (i, b) in raw.backends.iter().enumerate() {
        let (address, weight, item) = match b {
            RawBackend::Address(a) => (a.as_str(), 1, backends_path.index(i)),
            RawBackend::Weighted(w) => (w.address.as_str(), w.weight, backends_path.index(i).key("address")),
        };
        if weight == 0 {
            problems.push((backends_path.index(i).key("weight"), "weight must be at least 1".into()));
        }
        if raw.discovery == raw::DiscoveryKind::Dns {
            match dns_name(address, weight) {
                Ok(n) => dns_names.push(n),
                Err(e) => problems.push((item, e)),
            }
            continue;
        }
        // Hostnames are resolved once, at start-up; every address they resolve to is a backend.
        match address.to_socket_addrs() {
            Ok(addrs) => {
                let mut any = false;
                for address in addrs {
                    any = true;
                    if backends.iter().any(|b| b.address == address) {
                        problems.push((item.clone(), format!("duplicate backend {address}")));
                    } else {
                        backends.push(BackendSpec { address, weight });
                    }
                }
                if !any {
                    problems.push((item, format!("`{address}` resolved to no address")));
                }
            }
            Err(e) => problems.push((item, format!("`{address}` is not a usable host:port ({e})"))),
        }
    }

    let balance = match (raw.balance, &raw.hash_key) {
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
    };

    let health_check = health_check(raw.health_check.as_ref(), &path.key("health_check"), problems);
    let positive =
        |d: Option<super::duration::ConfigDuration>, key: &str, default: Duration, problems: &mut Problems| {
            let d = d.map_or(default, |d| d.0);
            if d.is_zero() {
                problems.push((path.key(key), "must be greater than 0".into()));
            }
            d
        };
    let connect_timeout = positive(raw.connect_timeout, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, problems);
    let read_timeout = positive(raw.read_timeout, "read_timeout", DEFAULT_READ_TIMEOUT, problems);
    let discovery = match raw.discovery {
        raw::DiscoveryKind::Static => {
            for key in ["resolve_every", "hosts_file"] {
                let set = if key == "resolve_every" { raw.resolve_every.is_some() } else { raw.hosts_file.is_some() };
                if set {
                    problems.push((path.key(key), "only applies to `discovery: dns`".into()));
                }
            }
            Discovery::Static
        }
        raw::DiscoveryKind::Dns => Discovery::Dns {
            names: dns_names,
            every: positive(raw.resolve_every, "resolve_every", DEFAULT_RESOLVE_EVERY, problems),
            hosts_file: raw.hosts_file.as_deref().map(|f| resolve_path(base_dir, f)),
        },
    };

    let tls = raw.tls.as_ref().and_then(|t| upstream_tls(t, base_dir, &path.key("tls"), problems));

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
    })
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

fn routes(
    raw: &[raw::RawRoute],
    raw_upstreams: &BTreeMap<String, raw::RawUpstream>,
    upstream_index: &HashMap<String, usize>,
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
            problems.push((
                item.key("upstream"),
                format!("unknown upstream `{}`; defined: {}", r.upstream, known.join(", ")),
            ));
        }
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
        if !seen.insert((host.clone(), path_prefix.clone())) {
            problems.push((item.clone(), "another route already matches the same host and path_prefix".into()));
        }
        let host_header = match r.host_header.as_deref() {
            None | Some("preserve") => HostHeader::Preserve,
            Some("backend") => HostHeader::Backend,
            Some(literal) => match HeaderValue::from_str(literal) {
                Ok(v) if !literal.is_empty() => HostHeader::Literal(v),
                _ => {
                    problems.push((item.key("host_header"), format!("`{literal}` is not a valid Host value")));
                    HostHeader::Preserve
                }
            },
        };
        let headers = r.request_headers.as_ref();
        let mut set_headers = Vec::new();
        for (name, value) in headers.map(|h| &h.set).into_iter().flatten() {
            let key = item.key("request_headers").key("set").key(name);
            match (header_name(name), HeaderValue::from_str(value)) {
                (Ok(n), Ok(v)) => set_headers.push((n, v)),
                (Err(e), _) => problems.push((key, e)),
                (_, Err(_)) => problems.push((key, format!("`{value}` is not a valid header value"))),
            }
        }
        let mut remove_headers = Vec::new();
        for (j, name) in headers.map(|h| h.remove.as_slice()).unwrap_or_default().iter().enumerate() {
            match header_name(name) {
                Ok(n) => remove_headers.push(n),
                Err(e) => problems.push((item.key("request_headers").key("remove").index(j), e)),
            }
        }
        let ws = r.websocket.as_ref();
        let idle_timeout = ws.and_then(|w| w.idle_timeout).map_or(DEFAULT_WS_IDLE_TIMEOUT, |d| d.0);
        if idle_timeout.is_zero() {
            problems.push((item.key("websocket").key("idle_timeout"), "must be greater than 0".into()));
        }
        let allowed_origins = ws
            .and_then(|w| w.allowed_origins.as_ref())
            .map(|origins| origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect::<Vec<_>>());
        if allowed_origins.as_ref().is_some_and(|o| o.iter().any(String::is_empty)) {
            problems.push((item.key("websocket").key("allowed_origins"), "an origin cannot be empty".into()));
        }
        let max_message_bytes = ws.and_then(|w| w.max_message_bytes).unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max_message_bytes == 0 {
            problems.push((item.key("websocket").key("max_message_bytes"), "must be at least 1".into()));
        }
        let (Some(upstream), true) = (upstream, problems.len() == before) else { continue };
        out.push(Route {
            name: r.name.clone().unwrap_or_else(|| format!("route{i}")),
            host,
            path_prefix,
            upstream,
            host_header,
            set_headers,
            remove_headers,
            websocket: WebSocketPolicy {
                enabled: ws.and_then(|w| w.enabled).unwrap_or(true),
                idle_timeout,
                allowed_origins,
                max_message_bytes,
                max_sessions: ws.and_then(|w| w.max_sessions),
            },
        });
    }
    out
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("`{name}` is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&parsed.as_str()) {
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
