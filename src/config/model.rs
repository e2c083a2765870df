//! The validated internal model: what the proxy reads. Everything here has been checked,
//! defaulted and resolved (addresses, paths, cross-references), so the request path never
//! parses or validates anything.

use http::{HeaderName, HeaderValue};
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::raw::{HealthCheckKind, OnBackendDown, OnRateExceeded};

#[derive(Debug)]
pub struct Config {
    pub server: ServerConf,
    pub listeners: Vec<Listener>,
    /// The metrics listener's address, if any.
    pub metrics: Option<SocketAddr>,
    /// The admin API's listener, if any.
    pub admin: Option<AdminConfig>,
    pub access_log: AccessLogConfig,
    pub limits: LimitsConfig,
    /// Peers whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// WebSocket sessions get their Close 1001 spread over this window when draining.
    pub drain_window: Duration,
    /// Indexed by `Route::upstream`.
    pub upstreams: Vec<Upstream>,
    pub routes: Vec<Route>,
    /// Reload when the config file or one of `named_files` changes (as SIGHUP does).
    pub config_watch: bool,
    /// Files the config reads when it is loaded (certificates, keys, token, hosts files).
    pub named_files: Vec<std::path::PathBuf>,
}

impl Config {
    /// `ip` (canonical) is in `trusted_proxies`.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The listener a connection accepted at `local` came in on.
    pub fn listener_at(&self, local: SocketAddr) -> Option<&Listener> {
        let by_address = |address: &SocketAddr| *address == local;
        // Else a wildcard listener (0.0.0.0, ::) of the same family and port: a dual-stack
        // `[::]` listener sees IPv4 clients at IPv4-mapped IPv6 addresses.
        let wildcard = |address: &SocketAddr| {
            address.ip().is_unspecified() && address.port() == local.port() && address.is_ipv4() == local.is_ipv4()
        };
        let find = |matches: &dyn Fn(&SocketAddr) -> bool| self.listeners.iter().find(|l| matches(&l.address));
        find(&by_address).or_else(|| find(&wildcard))
    }
}

/// `admin`: where the admin API listens and the token every request must bear.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// The contents of `token_file` (trimmed), read at every load, so a SIGHUP rotates it.
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: configs are logged.
        f.debug_struct("AdminConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Requests (WebSocket sessions included) one client address may have open at once.
    pub max_concurrent_per_ip: usize,
    /// New requests per second per client address; `None`: no rate limit.
    pub requests_per_second_per_ip: Option<usize>,
    /// WebSocket sessions open at once, all routes together.
    pub max_websocket_sessions: usize,
    pub max_request_header_bytes: usize,
    pub max_request_headers: usize,
    /// Downstream connections open at once (TCP or TLS), all clients together.
    pub max_connections: usize,
    /// Downstream connections one client address may have open at once.
    pub max_connections_per_ip: usize,
    /// Time a new connection has to send its first request's complete head (408 after).
    pub header_timeout: Duration,
    /// How long an HTTP/1.1 connection waits for its next request, per read (whole seconds).
    pub keepalive_timeout: Duration,
    /// How long a client may accept no bytes of what wsgate is sending it before its
    /// connection (or HTTP/2 stream) is closed: nginx's `send_timeout`.
    pub send_timeout: Duration,
    /// New connections per second per client address; `None`: no rate limit.
    pub connections_per_second_per_ip: Option<usize>,
    /// IPv6 clients are counted per network of this prefix length (1..=128), since one host
    /// commonly holds a whole /64.
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: AccessLogTarget,
    /// Query strings can carry tokens: logged only when asked for.
    pub include_query: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: Option<ListenerTls>,
    /// Each connection starts with a PROXY protocol header (v1 or v2) carrying the client.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Chosen by the client's SNI; the first is the default (no SNI, or no match).
    pub certificates: Vec<CertFiles>,
    /// Hash of every certificate and key file's contents when loaded, so a reload sees
    /// renewed files even at the same paths.
    pub fingerprint: u64,
    /// Offer HTTP/2 by ALPN.
    pub http2: bool,
    /// Advertise extended CONNECT (RFC 8441) on HTTP/2 connections: WebSocket sessions as
    /// HTTP/2 streams.
    pub websocket_over_http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub backends: Vec<BackendSpec>,
    pub balance: Balance,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// How many other backends a failed connect may be retried on.
    pub retries: usize,
    pub health_check: HealthCheck,
    pub discovery: Discovery,
    /// TLS to the backends (https://, wss://), `None` for plain TCP.
    pub tls: Option<UpstreamTls>,
    /// Open WebSocket sessions a backend may hold; at the cap it gets no new one.
    pub max_sessions_per_backend: Option<usize>,
    /// Where upgrades wait when every healthy backend is at its cap (`None`: 503 at once).
    pub queue: Option<SessionQueue>,
    /// What happens to the open sessions of a backend that leaves rotation or the pool.
    pub on_backend_down: OnBackendDown,
    /// Moving surplus sessions off over-loaded backends (`None`: off).
    pub rebalance: Option<Rebalance>,
    /// Ejection after consecutive failures (`None`: only the active checks decide).
    pub passive_health: Option<PassiveHealth>,
    /// A backend that joins or returns ramps up to its weight over this (`None`: at once).
    pub slow_start: Option<Duration>,
    /// The cookie wsgate sets to pin a client to its backend (`None`: off).
    pub affinity: Option<Affinity>,
}

/// `affinity`.
#[derive(Clone)]
pub struct Affinity {
    pub cookie: String,
    /// The cookie's `Max-Age` (whole seconds).
    pub ttl: Duration,
    /// HMAC-SHA256 key naming backends in the cookie: from `key_file`, else the pool's name.
    pub key: [u8; 32],
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: configs are logged.
        f.debug_struct("Affinity").field("cookie", &self.cookie).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// `passive_health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveHealth {
    /// Consecutive connect failures, resets or 502s that eject a backend.
    pub failures: u32,
    /// How long an ejected backend stays out of rotation.
    pub eject: Duration,
}

/// `rebalance`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rebalance {
    /// A backend over this many times its fair share sheds down to it.
    pub max_skew: f64,
    /// At most this many sessions are told to move per second, per pool.
    pub closes_per_second: usize,
}

/// `queue`: how many upgrades may wait for a place, and how long each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionQueue {
    pub size: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Server name sent and verified.
    pub sni: String,
    pub verify: bool,
    /// DER certificates of `ca_file`; `None`: the system's roots (or `server.ca_file`).
    pub ca_der: Option<Vec<Vec<u8>>>,
}

/// Where a pool's backends come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `backends` as resolved at start-up (or reload).
    Static,
    /// Names re-resolved every `every`; each address is a backend.
    Dns { names: Vec<DnsName>, every: Duration, hosts_file: Option<PathBuf> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    pub host: String,
    pub port: u16,
    pub weight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub address: SocketAddr,
    pub weight: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    ConsistentHash(HashKey),
    /// Fewest open sessions plus in-flight requests relative to weight.
    LeastSessions,
}

/// What a consistent-hash pool hashes to pick a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Path,
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Request path for `kind: http`.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: usize,
    pub unhealthy_after: usize,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Label used in logs and metrics: the configured `name`, or `route<index>`.
    pub name: String,
    pub host: Option<HostPattern>,
    /// Normalised without a trailing `/` (except the root `/`).
    pub path_prefix: String,
    pub upstream: usize,
    pub host_header: HostHeader,
    pub set_headers: Vec<(HeaderName, HeaderValue)>,
    pub remove_headers: Vec<HeaderName>,
    pub websocket: WebSocketPolicy,
    /// `auth`: what a request must prove before it reaches a backend (`None`: nothing).
    pub auth: Option<std::sync::Arc<crate::auth::RouteAuth>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Lower-case host name.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    WildcardSuffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    Preserve,
    Backend,
    Literal(HeaderValue),
}

#[derive(Debug, Clone)]
pub struct WebSocketPolicy {
    pub enabled: bool,
    pub idle_timeout: Duration,
    /// `None` admits every origin; otherwise exact, case-insensitive `Origin` matches.
    pub allowed_origins: Option<Vec<String>>,
    /// Largest client message passed to the backend; a larger one closes the session with 1009.
    pub max_message_bytes: u64,
    /// WebSocket sessions open at once on this route; `None`: only the global limit.
    pub max_sessions: Option<usize>,
    /// A session older than this (each its own, jittered ±10%) is closed with 1001.
    pub max_lifetime: Option<Duration>,
    /// Pings to a silent side and dead-peer detection; `None`: off.
    pub keepalive: Option<Keepalive>,
    /// Token buckets on what each session's client sends.
    pub client_rate: ClientRate,
}

/// `ping_interval` / `ping_timeout`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keepalive {
    /// A side silent this long gets a Ping.
    pub interval: Duration,
    /// A side silent this long after wsgate's Ping is dead.
    pub timeout: Duration,
}

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub rate: f64,
    pub burst: f64,
}

/// `client_messages_per_second`, `client_bytes_per_second`, `on_rate_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClientRate {
    pub messages: Option<Bucket>,
    pub bytes: Option<Bucket>,
    pub on_exceeded: OnRateExceeded,
}

/// Unit-test fixtures: what the pure modules' tests build routes from.
#[cfg(test)]
impl WebSocketPolicy {
    /// Enabled, 1 s idle timeout, any origin, 1 MiB messages, no session cap.
    pub(crate) fn for_tests() -> Self {
        WebSocketPolicy {
            enabled: true,
            idle_timeout: Duration::from_secs(1),
            allowed_origins: None,
            max_message_bytes: 1 << 20,
            max_sessions: None,
            max_lifetime: None,
            keepalive: None,
            client_rate: ClientRate::default(),
        }
    }
}

#[cfg(test)]
impl Route {
    /// A route on `prefix` to pool 0 that changes nothing in the request.
    pub(crate) fn for_tests(prefix: &str) -> Self {
        Route {
            name: String::new(),
            host: None,
            path_prefix: prefix.to_string(),
            upstream: 0,
            host_header: HostHeader::Preserve,
            set_headers: vec![],
            remove_headers: vec![],
            websocket: WebSocketPolicy::for_tests(),
            auth: None,
        }
    }
}
