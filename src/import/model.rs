//! What the translation produces: wsgate's config as ordered structs, so the YAML writer
//! emits keys in a fixed order and the same input always gives the same bytes. Only what
//! an nginx config can say is here; everything else stays at wsgate's defaults (left out).
//! Every `origin` is `file:line: what`, written as a comment above the item.

use std::time::Duration;

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Output {
    /// The files read, the main one first (the header names them).
    pub(crate) sources: Vec<String>,
    pub(crate) server: ServerOut,
    pub(crate) listeners: Vec<ListenerOut>,
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) access_log_off: bool,
    pub(crate) upstreams: Vec<PoolOut>,
    pub(crate) routes: Vec<RouteOut>,
    pub(crate) limits: LimitsOut,
}

/// `server:` (Pingora's settings).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ServerOut {
    pub(crate) threads: Option<u64>,
    pub(crate) pid_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerOut {
    pub(crate) origin: String,
    pub(crate) address: String,
    pub(crate) tls: Option<TlsOut>,
    pub(crate) proxy_protocol: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TlsOut {
    pub(crate) cert: String,
    pub(crate) key: String,
    /// More `{cert, key}` pairs, chosen by SNI.
    pub(crate) more: Vec<(String, String)>,
    /// `tls.http2` (wsgate's default is true; written only when false).
    pub(crate) http2: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolOut {
    pub(crate) origin: String,
    pub(crate) name: String,
    pub(crate) backends: Vec<BackendOut>,
    /// `round_robin` (the default) is left out.
    pub(crate) balance: Option<&'static str>,
    pub(crate) hash_key: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) tls: Option<UpstreamTlsOut>,
    /// `passive_health: {failures, eject}`.
    pub(crate) passive_health: Option<(u32, Duration)>,
    pub(crate) slow_start: Option<Duration>,
    /// `affinity: {cookie, ttl}`.
    pub(crate) affinity: Option<(String, Option<Duration>)>,
}

impl PoolOut {
    pub(crate) fn new(name: &str, origin: String) -> PoolOut {
        PoolOut {
            origin,
            name: name.to_string(),
            backends: Vec::new(),
            balance: None,
            hash_key: None,
            connect_timeout: None,
            read_timeout: None,
            tls: None,
            passive_health: None,
            slow_start: None,
            affinity: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendOut {
    pub(crate) address: String,
    pub(crate) weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamTlsOut {
    pub(crate) sni: Option<String>,
    pub(crate) verify: bool,
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteOut {
    pub(crate) origin: String,
    pub(crate) host: Option<String>,
    pub(crate) path_prefix: String,
    pub(crate) upstream: String,
    pub(crate) host_header: Option<String>,
    pub(crate) set_headers: Vec<(String, String)>,
    pub(crate) remove_headers: Vec<String>,
    pub(crate) idle_timeout: Option<Duration>,
}

/// `limits:`, each only when the nginx config said something that maps to it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LimitsOut {
    pub(crate) max_concurrent_per_ip: Option<u64>,
    pub(crate) requests_per_second_per_ip: Option<u64>,
    pub(crate) header_timeout: Option<Duration>,
    pub(crate) keepalive_timeout: Option<Duration>,
    pub(crate) send_timeout: Option<Duration>,
}

impl LimitsOut {
    pub(crate) fn is_empty(&self) -> bool {
        *self == LimitsOut::default()
    }
}
