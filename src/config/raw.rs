//! The YAML file as written: a serde mirror of the document, nothing more.
//! Every struct denies unknown keys so a typo is an error, not a silently ignored setting.
//! Validation and defaults that depend on other keys live in `validate.rs`.

use super::duration::ConfigDuration;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Pingora's own `ServerConf`, checked key by key in `validate.rs`.
    #[serde(default)]
    pub server: Option<serde_yaml::Mapping>,
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub access_log: Option<RawAccessLog>,
    #[serde(default)]
    pub drain: Option<RawDrain>,
    #[serde(default)]
    pub limits: Option<RawLimits>,
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub certificates: Option<Vec<RawCertPair>>,
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_concurrent_per_ip: Option<usize>,
    #[serde(default)]
    pub requests_per_second_per_ip: Option<usize>,
    #[serde(default)]
    pub max_websocket_sessions: Option<usize>,
    #[serde(default)]
    pub max_request_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_request_headers: Option<usize>,
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub max_connections_per_ip: Option<usize>,
    #[serde(default)]
    pub header_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub keepalive_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub send_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub connections_per_second_per_ip: Option<usize>,
    #[serde(default)]
    pub ipv6_prefix: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    #[serde(default)]
    pub window: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub include_query: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub backends: Vec<RawBackend>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub hash_key: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub read_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub retries: Option<usize>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub discovery: DiscoveryKind,
    #[serde(default)]
    pub resolve_every: Option<ConfigDuration>,
    #[serde(default)]
    pub hosts_file: Option<String>,
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub verify: Option<bool>,
    #[serde(default)]
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryKind {
    #[default]
    Static,
    Dns,
}

/// `- 127.0.0.1:3001` or `- {address: 127.0.0.1:3002, weight: 2}`.
#[derive(Debug)]
pub enum RawBackend {
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
pub struct RawWeightedBackend {
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: usize,
}

fn default_weight() -> usize {
    1
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Random,
    ConsistentHash,
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
pub struct RawHealthCheck {
    #[serde(default)]
    pub kind: HealthCheckKind,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub interval: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub healthy_after: Option<usize>,
    #[serde(default)]
    pub unhealthy_after: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    pub upstream: String,
    #[serde(default)]
    pub host_header: Option<String>,
    #[serde(default)]
    pub request_headers: Option<RawRequestHeaders>,
    #[serde(default)]
    pub websocket: Option<RawWebSocket>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestHeaders {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub idle_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    #[serde(default)]
    pub max_sessions: Option<usize>,
}
