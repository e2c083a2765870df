//! The YAML file as written: a serde mirror of the document, nothing more.
//! Every struct denies unknown keys so a typo is an error, not a silently ignored setting.
//! Validation and defaults that depend on other keys live in `validate.rs`.

use super::duration::ConfigDuration;
use serde::Deserialize;
use std::collections::BTreeMap;

// A route's `auth` section (`jwt`, `forward`): its own file, `raw/auth.rs`.
mod auth;
pub(crate) use auth::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Pingora's own `ServerConf`, checked key by key in `validate.rs`.
    #[serde(default)]
    pub(crate) server: Option<serde_yaml::Mapping>,
    pub(crate) listeners: Vec<RawListener>,
    #[serde(default)]
    pub(crate) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(crate) admin: Option<RawAdmin>,
    #[serde(default)]
    pub(crate) access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub(crate) drain: Option<RawDrain>,
    #[serde(default)]
    pub(crate) limits: Option<RawLimits>,
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<String>,
    pub(crate) upstreams: BTreeMap<String, RawUpstream>,
    pub(crate) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(crate) config_watch: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) tls: Option<RawTls>,
    #[serde(default)]
    pub(crate) proxy_protocol: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default)]
    pub(crate) cert: Option<String>,
    #[serde(default)]
    pub(crate) key: Option<String>,
    #[serde(default)]
    pub(crate) certificates: Option<Vec<RawCertPair>>,
    #[serde(default)]
    pub(crate) http2: Option<bool>,
    #[serde(default)]
    pub(crate) websocket_over_http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertPair {
    pub(crate) cert: String,
    pub(crate) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub(crate) address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) address: String,
    #[serde(default)]
    pub(crate) token_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    #[serde(default)]
    pub(crate) max_concurrent_per_ip: Option<usize>,
    #[serde(default)]
    pub(crate) requests_per_second_per_ip: Option<usize>,
    #[serde(default)]
    pub(crate) max_websocket_sessions: Option<usize>,
    #[serde(default)]
    pub(crate) max_request_header_bytes: Option<bytesize::ByteSize>,
    #[serde(default)]
    pub(crate) max_request_headers: Option<usize>,
    #[serde(default)]
    pub(crate) max_connections: Option<usize>,
    #[serde(default)]
    pub(crate) max_connections_per_ip: Option<usize>,
    #[serde(default)]
    pub(crate) header_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) keepalive_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) send_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) connections_per_second_per_ip: Option<usize>,
    #[serde(default)]
    pub(crate) ipv6_prefix: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrain {
    #[serde(default)]
    pub(crate) window: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) include_query: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) backends: Vec<RawBackend>,
    #[serde(default)]
    pub(crate) balance: Balance,
    #[serde(default)]
    pub(crate) hash_key: Option<String>,
    #[serde(default)]
    pub(crate) connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) read_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) retries: Option<usize>,
    #[serde(default)]
    pub(crate) health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub(crate) discovery: DiscoveryKind,
    #[serde(default)]
    pub(crate) resolve_every: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) hosts_file: Option<String>,
    #[serde(default)]
    pub(crate) tls: Option<RawUpstreamTls>,
    #[serde(default)]
    pub(crate) max_sessions_per_backend: Option<usize>,
    #[serde(default)]
    pub(crate) queue: Option<RawQueue>,
    #[serde(default)]
    pub(crate) on_backend_down: OnBackendDown,
    #[serde(default)]
    pub(crate) rebalance: Option<RawRebalance>,
    #[serde(default)]
    pub(crate) passive_health: Option<RawPassiveHealth>,
    #[serde(default)]
    pub(crate) slow_start: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) affinity: Option<RawAffinity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassiveHealth {
    pub(crate) failures: u32,
    pub(crate) eject: ConfigDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRebalance {
    pub(crate) max_skew: f64,
    pub(crate) closes_per_second: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub(crate) size: usize,
    pub(crate) timeout: ConfigDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamTls {
    #[serde(default)]
    pub(crate) sni: Option<String>,
    #[serde(default)]
    pub(crate) verify: Option<bool>,
    #[serde(default)]
    pub(crate) ca_file: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DiscoveryKind {
    #[default]
    Static,
    Dns,
}

/// `- 127.0.0.1:3001` or `- {address: 127.0.0.1:3002, weight: 2}`.
#[derive(Debug)]
pub(crate) enum RawBackend {
    Address(String),
    Weighted(RawWeightedBackend),
}

// Hand-written rather than `#[serde(untagged)]`, whose only error is
// "data did not match any variant", which names neither the key nor the problem.
impl<'de> Deserialize<'de> for RawBackend {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(address) => Ok(RawBackend::Address(address)),
            value @ serde_yaml::Value::Mapping(_) => {
                serde_yaml::from_value(value).map(RawBackend::Weighted).map_err(D::Error::custom)
            }
            _ => Err(D::Error::custom("a backend is `host:port` or `{address: host:port, weight: N}`")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWeightedBackend {
    pub(crate) address: String,
    #[serde(default = "default_weight")]
    pub(crate) weight: usize,
}

fn default_weight() -> usize {
    1
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Balance {
    #[default]
    RoundRobin,
    Random,
    ConsistentHash,
    LeastSessions,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Tcp,
    Http,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    #[serde(default)]
    pub(crate) kind: HealthCheckKind,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) interval: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) healthy_after: Option<usize>,
    #[serde(default)]
    pub(crate) unhealthy_after: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) host: Option<String>,
    #[serde(default)]
    pub(crate) path_prefix: Option<String>,
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) host_header: Option<String>,
    #[serde(default)]
    pub(crate) request_headers: Option<RawRequestHeaders>,
    #[serde(default)]
    pub(crate) websocket: Option<RawWebSocket>,
    #[serde(default)]
    pub(crate) auth: Option<RawAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequestHeaders {
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebSocket {
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) idle_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    /// A number of bytes, or a size with a unit (`1MiB`), as the other sizes.
    pub(crate) max_message_bytes: Option<bytesize::ByteSize>,
    #[serde(default)]
    pub(crate) max_sessions: Option<usize>,
    #[serde(default)]
    pub(crate) max_lifetime: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) ping_interval: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) ping_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) client_messages_per_second: Option<RawRate<f64>>,
    #[serde(default)]
    pub(crate) client_bytes_per_second: Option<RawRate<bytesize::ByteSize>>,
    #[serde(default)]
    pub(crate) on_rate_exceeded: Option<OnRateExceeded>,
}

/// `{rate: R, burst: B}`: a token bucket (burst defaults to one second's worth).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate<T> {
    pub(crate) rate: T,
    #[serde(default)]
    pub(crate) burst: Option<T>,
}

/// `websocket.on_rate_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRateExceeded {
    /// Stop reading from the client until its bucket refills (TCP back-pressure does the
    /// rest: nothing is dropped or reordered).
    #[default]
    Throttle,
    /// Close the session: 1008 to the client, 1001 to the backend.
    Close,
}

/// `on_backend_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBackendDown {
    /// They go on until they end by themselves (or time out).
    Keep,
    /// They are closed with 1012, spread over `drain.window`, so clients reconnect to a
    /// healthy backend.
    #[default]
    Close,
}

/// `affinity: {cookie, ttl, key_file}` (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAffinity {
    pub(crate) cookie: Option<String>,
    pub(crate) ttl: Option<ConfigDuration>,
    pub(crate) key_file: Option<String>,
}
