//! Raw file → internal model. Collects every problem (key path + message) instead of
//! stopping at the first, so `wsgate -t` shows everything that needs fixing at once. One
//! file per section: `listeners.rs` (server settings, listeners, TLS), `limits.rs`,
//! `upstreams.rs`, `routes.rs` (a route's `auth` in `auth.rs`); here the top level and what
//! ties sections together.

mod auth;
mod auth_forward;
mod limits;
mod listeners;
mod named_files;
mod reserved;
mod routes;
mod upstreams;
mod values;

pub(crate) use reserved::connection_owned;
pub(crate) use values::Problems;
use values::{resolve_path, socket_addr};

#[cfg(test)]
pub(crate) use routes::host_pattern;

use super::locate::KeyPath;
use super::model::*;
use super::raw::{self, RawConfig};
use pingora::server::configuration::ServerConf;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(30);
/// Pingora's runtimes get this long after the grace period (its own default).
const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

pub(crate) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Problems> {
    let mut problems = Problems::new();
    let root = KeyPath::root();
    let named_files = named_files::named_files(&raw, base_dir);
    let server = listeners::server_conf(raw.server, base_dir, &root.key("server"), &mut problems);
    let listeners = listeners::listeners(&raw.listeners, base_dir, &root.key("listeners"), &mut problems);
    let metrics = raw.metrics.as_ref().and_then(|m| metrics_address(&m.address, &listeners, &root, &mut problems));
    let admin = raw.admin.as_ref().and_then(|a| admin(a, base_dir, (&listeners, metrics), &root, &mut problems));
    let access_log = access_log(raw.access_log.as_ref(), base_dir, &root, &mut problems);
    let limits = limits::limits(raw.limits.as_ref(), &root.key("limits"), &mut problems);
    let trusted_proxies = listeners::trusted_proxies(&raw.trusted_proxies, &root.key("trusted_proxies"), &mut problems);

    let mut upstream_index = HashMap::new();
    let mut upstreams = Vec::new();
    let upstreams_path = root.key("upstreams");
    if raw.upstreams.is_empty() {
        problems.push((upstreams_path.clone(), "at least one upstream is required".into()));
    }
    for (name, pool) in &raw.upstreams {
        if let Some(u) = upstreams::upstream(name, pool, base_dir, &upstreams_path.key(name), &mut problems) {
            upstream_index.insert(name.clone(), upstreams.len());
            upstreams.push(u);
        }
    }
    let routes_path = root.key("routes");
    let routes = routes::routes(&raw.routes, &raw.upstreams, &upstream_index, base_dir, &routes_path, &mut problems);

    let mut server = server.unwrap_or_default();
    let window = raw.drain.as_ref().and_then(|d| d.window).map(|d| d.0);
    let drain_window = drain_window(window, &mut server, &root, &mut problems);
    if problems.is_empty() {
        Ok(Config {
            server,
            listeners,
            metrics,
            admin,
            access_log,
            limits,
            trusted_proxies,
            drain_window,
            upstreams,
            routes,
            config_watch: raw.config_watch,
            named_files,
        })
    } else {
        Err(problems)
    }
}

/// The metrics listener's address, which no proxy listener may share.
fn metrics_address(text: &str, listeners: &[Listener], root: &KeyPath, problems: &mut Problems) -> Option<SocketAddr> {
    let path = root.key("metrics").key("address");
    let addr = socket_addr(text, &path, problems)?;
    if listeners.iter().any(|l| l.address == addr) {
        problems.push((path, format!("{addr} is already a proxy listener")));
    }
    Some(addr)
}

/// The admin API: its own address, and a token unless only this machine can reach it.
fn admin(
    raw: &raw::RawAdmin,
    base_dir: &Path,
    taken: (&[Listener], Option<SocketAddr>),
    root: &KeyPath,
    problems: &mut Problems,
) -> Option<AdminConfig> {
    let path = root.key("admin");
    let address = socket_addr(&raw.address, &path.key("address"), problems)?;
    if taken.0.iter().any(|l| l.address == address) || taken.1 == Some(address) {
        problems.push((path.key("address"), format!("{address} is already a proxy or metrics listener")));
    }
    let token = match &raw.token_file {
        None => None,
        Some(file) => match std::fs::read_to_string(resolve_path(base_dir, file)) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => {
                problems.push((path.key("token_file"), format!("{file} is empty")));
                None
            }
            Err(e) => {
                problems.push((path.key("token_file"), format!("cannot read {file}: {e}")));
                None
            }
        },
    };
    if raw.token_file.is_none() && !address.ip().is_loopback() {
        problems.push((path.key("token_file"), "required: the admin API is not on a loopback address".into()));
    }
    Some(AdminConfig { address, token })
}

fn access_log(
    raw: Option<&raw::RawAccessLog>,
    base_dir: &Path,
    root: &KeyPath,
    problems: &mut Problems,
) -> AccessLogConfig {
    let target = match raw.and_then(|a| a.path.as_deref()) {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some("") => {
            problems.push((root.key("access_log").key("path"), "must be a file path, `stdout` or `off`".into()));
            AccessLogTarget::Off
        }
        Some(path) => AccessLogTarget::File(resolve_path(base_dir, path)),
    };
    AccessLogConfig { target, include_query: raw.is_some_and(|a| a.include_query) }
}

/// Pingora keeps a stopping process for `grace_period_seconds` (default 300) and then
/// drops what is left, so the drain must fit in it: without a grace period the window sets
/// it, without a window the grace period bounds it (wsgate exits earlier anyway, as soon as
/// nothing is in flight).
fn drain_window(
    explicit: Option<Duration>,
    server: &mut ServerConf,
    root: &KeyPath,
    problems: &mut Problems,
) -> Duration {
    let window = match (explicit, server.grace_period_seconds) {
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
        server.grace_period_seconds = Some(window.as_secs() + 2);
    }
    if server.graceful_shutdown_timeout_seconds.is_none() {
        server.graceful_shutdown_timeout_seconds = Some(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS);
    }
    window
}
