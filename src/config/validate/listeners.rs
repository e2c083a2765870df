//! The `server` section (Pingora's own settings) and the listeners with their TLS.

use super::values::{resolve_path, socket_addr, Problems};
use crate::config::locate::KeyPath;
use crate::config::model::{CertFiles, Listener, ListenerTls};
use crate::config::raw;
use pingora::server::configuration::ServerConf;
use std::collections::HashSet;
use std::path::Path;

/// Pingora's `ServerConf` ignores unknown keys; we refuse them, then let Pingora parse and
/// validate the rest.
pub(super) fn server_conf(
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
            problems.push((path.clone(), crate::config::locate::strip_location(&e.to_string())));
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

pub(super) fn listeners(
    raw: &[raw::RawListener],
    base_dir: &Path,
    path: &KeyPath,
    problems: &mut Problems,
) -> Vec<Listener> {
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
        out.push(Listener { address, tls, proxy_protocol: l.proxy_protocol });
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
            Err(e) => problems.push((at.key(e.key), e.message)),
        }
    }
    if problems.len() > before {
        return None;
    }
    let files: Vec<&Path> = certificates.iter().flat_map(|c| [c.cert.as_path(), c.key.as_path()]).collect();
    let http2 = raw.http2.unwrap_or(true);
    if raw.websocket_over_http2 == Some(true) && !http2 {
        problems.push((path.key("websocket_over_http2"), "needs `http2: true`".into()));
    }
    let websocket_over_http2 = http2 && raw.websocket_over_http2.unwrap_or(true);
    Some(ListenerTls { fingerprint: fingerprint(&files), certificates, http2, websocket_over_http2 })
}

fn fingerprint(files: &[&Path]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        std::fs::read(f).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// `trusted_proxies`: networks (`10.0.0.0/8`) or single addresses whose `X-Forwarded-For`
/// is believed.
pub(super) fn trusted_proxies(raw: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let parsed = text.parse::<ipnet::IpNet>().or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => problems.push((path.index(i), format!("`{text}` is not an address or a network (10.0.0.0/8)"))),
        }
    }
    out
}
