//! A typed builder for wsgate's YAML config (the keys of `src/config/raw.rs`, documented in
//! docs/configuration.md), so tests state the settings they need and nothing else:
//!
//! ```ignore
//! let cfg = Config::new()
//!     .listen(port)
//!     .metrics(mport)
//!     .limits(Limits::new().header_timeout("1s"))
//!     .upstream("web", Upstream::new([a.addr(), b.addr()]).retries(0))
//!     .upstream("chat", Upstream::one(chat.addr()).health_check(HealthCheck::new().interval("100ms")))
//!     .route(Route::to("chat").path_prefix("/ws").websocket(WebSocket::new().max_sessions(1)))
//!     .route(Route::to("web"));
//! let gw = Wsgate::start_and_wait(&cfg, &[port, mport]);
//! // The one-pool case in one call: every request on `port` to the pool `web` of one backend.
//! let cfg = Config::proxy(port, "web", web.addr());
//! ```
//!
//! Every setting a test does not make is left out of the YAML (`skip_serializing_if`), so
//! wsgate's own defaults apply. Durations are written as in the YAML (`"100ms"`, `"1s"`,
//! `"1h"`), and nothing is validated here: a test may build a config wsgate must refuse.
//! Text that is itself under test (line numbers, unparsable YAML) goes in as [`RawYaml`].
#![allow(dead_code)]

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

/// What the harness accepts as a config file's text: a [`Config`] or [`RawYaml`].
pub trait ConfigText {
    fn config_text(&self) -> String;
}

/// Config text written by hand, for tests where the text itself is under test.
pub struct RawYaml<'a>(pub &'a str);

impl ConfigText for RawYaml<'_> {
    fn config_text(&self) -> String {
        self.0.to_string()
    }
}

impl ConfigText for Config {
    fn config_text(&self) -> String {
        self.to_yaml()
    }
}

/// `127.0.0.1:port`, the address every test listener and backend uses.
pub fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn is_false(b: &bool) -> bool {
    !*b
}

// ---------------------------------------------------------------- the document

#[derive(Serialize, Default, Clone, Debug)]
pub struct Config {
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Server>,
    listeners: Vec<Listener>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<Admin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log: Option<AccessLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drain: Option<Drain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trusted_proxies: Vec<String>,
    upstreams: BTreeMap<String, Upstream>,
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    config_watch: bool,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// The smallest working config: a listener on 127.0.0.1:`port` and a route for every
    /// request to the pool `name` of the one `backend`. Tests add what they need on top.
    pub fn proxy(port: u16, name: &str, backend: impl Into<Backend>) -> Config {
        Config::new().listen(port).upstream(name, Upstream::one(backend)).route(Route::to(name))
    }

    /// The YAML text wsgate reads.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a Config serialises to YAML")
    }

    /// Writes the YAML to `path` (e.g. a running wsgate's `config_path` before a SIGHUP).
    pub fn write_to(&self, path: &Path) {
        std::fs::write(path, self.to_yaml()).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A plain listener on 127.0.0.1:`port`.
    pub fn listen(self, port: u16) -> Config {
        self.listener(Listener::new(loopback(port)))
    }

    /// `trusted_proxies`: networks whose X-Forwarded-For is believed.
    pub fn trusted_proxies(mut self, networks: &[&str]) -> Config {
        self.trusted_proxies = networks.iter().map(|n| n.to_string()).collect();
        self
    }

    /// A listener of any shape (another address, TLS).
    pub fn listener(mut self, listener: Listener) -> Config {
        self.listeners.push(listener);
        self
    }

    /// The metrics listener on 127.0.0.1:`port`.
    pub fn metrics(mut self, port: u16) -> Config {
        self.metrics = Some(Metrics { address: loopback(port) });
        self
    }

    /// `admin: {address, token_file}` (`address` as written, e.g. `127.0.0.1:9102`).
    pub fn admin(mut self, address: impl Into<String>, token_file: Option<&str>) -> Config {
        self.admin = Some(Admin { address: address.into(), token_file: token_file.map(String::from) });
        self
    }

    pub fn server(mut self, server: Server) -> Config {
        self.server = Some(server);
        self
    }

    pub fn access_log(mut self, log: AccessLog) -> Config {
        self.access_log = Some(log);
        self
    }

    /// `config_watch: true`: reload when the config file or a file it names changes.
    pub fn config_watch(mut self) -> Config {
        self.config_watch = true;
        self
    }

    /// `drain: {window: ...}`.
    pub fn drain_window(mut self, window: impl Into<String>) -> Config {
        self.drain = Some(Drain { window: Some(window.into()) });
        self
    }

    pub fn limits(mut self, limits: Limits) -> Config {
        self.limits = Some(limits);
        self
    }

    /// Adds (or replaces) the pool `name`.
    pub fn upstream(mut self, name: impl Into<String>, upstream: Upstream) -> Config {
        self.upstreams.insert(name.into(), upstream);
        self
    }

    /// Appends a route (the order only matters for error messages: wsgate picks the most
    /// specific route).
    pub fn route(mut self, route: Route) -> Config {
        self.routes.push(route);
        self
    }
}

// ---------------------------------------------------------------- server, listeners, metrics

/// `server:`, Pingora's `ServerConf` (the common keys typed, any other by `set`).
#[derive(Serialize, Default, Clone, Debug)]
pub struct Server {
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgrade_sock: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_log: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml::Value>,
}

impl Server {
    pub fn new() -> Server {
        Server::default()
    }
    pub fn threads(mut self, n: usize) -> Server {
        self.threads = Some(n);
        self
    }
    pub fn pid_file(mut self, path: impl AsRef<Path>) -> Server {
        self.pid_file = Some(path.as_ref().display().to_string());
        self
    }
    pub fn upgrade_sock(mut self, path: impl AsRef<Path>) -> Server {
        self.upgrade_sock = Some(path.as_ref().display().to_string());
        self
    }
    pub fn error_log(mut self, path: impl AsRef<Path>) -> Server {
        self.error_log = Some(path.as_ref().display().to_string());
        self
    }
    /// Any other `ServerConf` key (or a misspelt one, for error tests).
    pub fn set(mut self, key: &str, value: impl Into<serde_yaml::Value>) -> Server {
        self.other.insert(key.to_string(), value.into());
        self
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct Listener {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
    #[serde(skip_serializing_if = "is_false")]
    proxy_protocol: bool,
}

impl Listener {
    /// A listener on `address` as written (`127.0.0.1:8080`, `[::ffff:127.0.0.1]:8080`).
    pub fn new(address: impl Into<String>) -> Listener {
        Listener { address: address.into(), tls: None, proxy_protocol: false }
    }
    /// Each connection must start with a PROXY protocol header.
    pub fn proxy_protocol(mut self) -> Listener {
        self.proxy_protocol = true;
        self
    }
    /// A listener on 127.0.0.1:`port`.
    pub fn on(port: u16) -> Listener {
        Listener::new(loopback(port))
    }
    pub fn tls(mut self, tls: Tls) -> Listener {
        self.tls = Some(tls);
        self
    }
}

/// A listener's `tls:`: the default certificate, more chosen by SNI, HTTP/2 on or off.
#[derive(Serialize, Default, Clone, Debug)]
pub struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<CertPair>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket_over_http2: Option<bool>,
}

#[derive(Serialize, Clone, Debug)]
struct CertPair {
    cert: String,
    key: String,
}

impl Tls {
    /// `tls: {cert, key}` (paths as written: relative ones are against the config's directory).
    pub fn new(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Tls {
        Tls {
            cert: Some(cert.as_ref().display().to_string()),
            key: Some(key.as_ref().display().to_string()),
            ..Tls::default()
        }
    }
    /// `cert.pem` / `key.pem`, as `write_self_signed_cert` names them, next to the config.
    pub fn self_signed() -> Tls {
        Tls::new("cert.pem", "key.pem")
    }
    /// One more certificate under `certificates:`, chosen by SNI.
    pub fn certificate(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Tls {
        self.certificates
            .push(CertPair { cert: cert.as_ref().display().to_string(), key: key.as_ref().display().to_string() });
        self
    }
    pub fn http2(mut self, on: bool) -> Tls {
        self.http2 = Some(on);
        self
    }
    pub fn websocket_over_http2(mut self, on: bool) -> Tls {
        self.websocket_over_http2 = Some(on);
        self
    }
}

/// `admin:`.
#[derive(Serialize, Clone, Debug)]
pub struct Admin {
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_file: Option<String>,
}

#[derive(Serialize, Clone, Debug)]
struct Metrics {
    address: String,
}

#[derive(Serialize, Default, Clone, Debug)]
pub struct AccessLog {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    include_query: bool,
}

impl AccessLog {
    /// `access_log: {path}`: a file (relative to the config's directory), `stdout` or `off`.
    pub fn path(path: impl Into<String>) -> AccessLog {
        AccessLog { path: Some(path.into()), include_query: false }
    }
    pub fn include_query(mut self) -> AccessLog {
        self.include_query = true;
        self
    }
}

#[derive(Serialize, Clone, Debug)]
struct Drain {
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<String>,
}

// ---------------------------------------------------------------- limits

/// `limits:`; each setter sets the key of the same name.
#[derive(Serialize, Default, Clone, Debug)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_second_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_websocket_sessions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_header_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_request_headers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keepalive_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    send_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connections_per_second_per_ip: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipv6_prefix: Option<usize>,
}

impl Limits {
    pub fn new() -> Limits {
        Limits::default()
    }
    pub fn max_concurrent_per_ip(mut self, n: usize) -> Limits {
        self.max_concurrent_per_ip = Some(n);
        self
    }
    pub fn requests_per_second_per_ip(mut self, n: usize) -> Limits {
        self.requests_per_second_per_ip = Some(n);
        self
    }
    pub fn max_websocket_sessions(mut self, n: usize) -> Limits {
        self.max_websocket_sessions = Some(n);
        self
    }
    pub fn max_request_header_bytes(mut self, n: usize) -> Limits {
        self.max_request_header_bytes = Some(n);
        self
    }
    pub fn max_request_headers(mut self, n: usize) -> Limits {
        self.max_request_headers = Some(n);
        self
    }
    pub fn max_connections(mut self, n: usize) -> Limits {
        self.max_connections = Some(n);
        self
    }
    pub fn max_connections_per_ip(mut self, n: usize) -> Limits {
        self.max_connections_per_ip = Some(n);
        self
    }
    pub fn connections_per_second_per_ip(mut self, n: usize) -> Limits {
        self.connections_per_second_per_ip = Some(n);
        self
    }
    pub fn ipv6_prefix(mut self, bits: usize) -> Limits {
        self.ipv6_prefix = Some(bits);
        self
    }
    pub fn header_timeout(mut self, d: impl Into<String>) -> Limits {
        self.header_timeout = Some(d.into());
        self
    }
    pub fn keepalive_timeout(mut self, d: impl Into<String>) -> Limits {
        self.keepalive_timeout = Some(d.into());
        self
    }
    pub fn send_timeout(mut self, d: impl Into<String>) -> Limits {
        self.send_timeout = Some(d.into());
        self
    }
}

// ---------------------------------------------------------------- upstreams

/// One entry of a pool's `backends:`: `host:port`, or `{address, weight}`.
#[derive(Serialize, Clone, Debug)]
#[serde(untagged)]
pub enum Backend {
    Address(String),
    Weighted { address: String, weight: usize },
}

impl Backend {
    pub fn weighted(address: impl Display, weight: usize) -> Backend {
        Backend::Weighted { address: address.to_string(), weight }
    }
}

impl From<std::net::SocketAddr> for Backend {
    fn from(a: std::net::SocketAddr) -> Backend {
        Backend::Address(a.to_string())
    }
}
impl From<&str> for Backend {
    fn from(a: &str) -> Backend {
        Backend::Address(a.to_string())
    }
}
impl From<String> for Backend {
    fn from(a: String) -> Backend {
        Backend::Address(a)
    }
}

/// A pool (`upstreams.<name>`).
#[derive(Serialize, Clone, Debug)]
pub struct Upstream {
    backends: Vec<Backend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolve_every: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hosts_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<UpstreamTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sessions_per_backend: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<Queue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_backend_down: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebalance: Option<Rebalance>,
    #[serde(skip_serializing_if = "Option::is_none")]
    passive_health: Option<PassiveHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_start: Option<String>,
}

/// A pool's `passive_health:`.
#[derive(Serialize, Clone, Debug)]
pub struct PassiveHealth {
    failures: u32,
    eject: String,
}

/// A pool's `rebalance:`.
#[derive(Serialize, Clone, Debug)]
pub struct Rebalance {
    max_skew: f64,
    closes_per_second: usize,
}

/// A pool's `queue:` for upgrades waiting at `max_sessions_per_backend`.
#[derive(Serialize, Clone, Debug)]
pub struct Queue {
    size: usize,
    timeout: String,
}

impl Upstream {
    /// A pool of `backends` (socket addresses, `host:port` text, or [`Backend::weighted`]).
    pub fn new<B: Into<Backend>>(backends: impl IntoIterator<Item = B>) -> Upstream {
        Upstream {
            backends: backends.into_iter().map(Into::into).collect(),
            balance: None,
            hash_key: None,
            connect_timeout: None,
            read_timeout: None,
            retries: None,
            health_check: None,
            discovery: None,
            resolve_every: None,
            hosts_file: None,
            tls: None,
            max_sessions_per_backend: None,
            queue: None,
            on_backend_down: None,
            rebalance: None,
            passive_health: None,
            slow_start: None,
        }
    }
    /// A pool of one backend.
    pub fn one(backend: impl Into<Backend>) -> Upstream {
        Upstream::new([backend.into()])
    }
    /// `round_robin`, `random`, `consistent_hash` or `least_sessions`.
    pub fn balance(mut self, how: impl Into<String>) -> Upstream {
        self.balance = Some(how.into());
        self
    }
    /// `balance: consistent_hash` on `key` (`header:X-User`, `cookie:sid`, ...).
    pub fn consistent_hash(self, key: impl Into<String>) -> Upstream {
        let mut u = self.balance("consistent_hash");
        u.hash_key = Some(key.into());
        u
    }
    pub fn connect_timeout(mut self, d: impl Into<String>) -> Upstream {
        self.connect_timeout = Some(d.into());
        self
    }
    pub fn read_timeout(mut self, d: impl Into<String>) -> Upstream {
        self.read_timeout = Some(d.into());
        self
    }
    pub fn retries(mut self, n: usize) -> Upstream {
        self.retries = Some(n);
        self
    }
    pub fn health_check(mut self, check: HealthCheck) -> Upstream {
        self.health_check = Some(check);
        self
    }
    /// `discovery: dns`, re-resolved `every`, from `hosts_file` instead of the system resolver.
    pub fn dns(mut self, every: impl Into<String>, hosts_file: impl AsRef<Path>) -> Upstream {
        self.discovery = Some("dns".into());
        self.resolve_every = Some(every.into());
        self.hosts_file = Some(hosts_file.as_ref().display().to_string());
        self
    }
    pub fn tls(mut self, tls: UpstreamTls) -> Upstream {
        self.tls = Some(tls);
        self
    }
    pub fn max_sessions_per_backend(mut self, n: usize) -> Upstream {
        self.max_sessions_per_backend = Some(n);
        self
    }
    /// `keep` or `close`.
    pub fn on_backend_down(mut self, what: impl Into<String>) -> Upstream {
        self.on_backend_down = Some(what.into());
        self
    }
    /// `rebalance: {max_skew, closes_per_second}`.
    pub fn rebalance(mut self, max_skew: f64, closes_per_second: usize) -> Upstream {
        self.rebalance = Some(Rebalance { max_skew, closes_per_second });
        self
    }
    /// `passive_health: {failures, eject}`.
    pub fn passive_health(mut self, failures: u32, eject: impl Into<String>) -> Upstream {
        self.passive_health = Some(PassiveHealth { failures, eject: eject.into() });
        self
    }
    pub fn slow_start(mut self, d: impl Into<String>) -> Upstream {
        self.slow_start = Some(d.into());
        self
    }
    /// `queue: {size, timeout}`.
    pub fn queue(mut self, size: usize, timeout: impl Into<String>) -> Upstream {
        self.queue = Some(Queue { size, timeout: timeout.into() });
        self
    }
}

/// A pool's `health_check:`.
#[derive(Serialize, Default, Clone, Debug)]
pub struct HealthCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy_after: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unhealthy_after: Option<usize>,
}

impl HealthCheck {
    pub fn new() -> HealthCheck {
        HealthCheck::default()
    }
    /// `tcp` or `http`.
    pub fn kind(mut self, kind: impl Into<String>) -> HealthCheck {
        self.kind = Some(kind.into());
        self
    }
    pub fn path(mut self, path: impl Into<String>) -> HealthCheck {
        self.path = Some(path.into());
        self
    }
    pub fn interval(mut self, d: impl Into<String>) -> HealthCheck {
        self.interval = Some(d.into());
        self
    }
    pub fn timeout(mut self, d: impl Into<String>) -> HealthCheck {
        self.timeout = Some(d.into());
        self
    }
    pub fn healthy_after(mut self, n: usize) -> HealthCheck {
        self.healthy_after = Some(n);
        self
    }
    pub fn unhealthy_after(mut self, n: usize) -> HealthCheck {
        self.unhealthy_after = Some(n);
        self
    }
}

/// A pool's `tls:` (TLS to its backends). `UpstreamTls::new()` alone is `tls: {}`.
#[derive(Serialize, Default, Clone, Debug)]
pub struct UpstreamTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

impl UpstreamTls {
    pub fn new() -> UpstreamTls {
        UpstreamTls::default()
    }
    pub fn sni(mut self, name: impl Into<String>) -> UpstreamTls {
        self.sni = Some(name.into());
        self
    }
    pub fn verify(mut self, on: bool) -> UpstreamTls {
        self.verify = Some(on);
        self
    }
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> UpstreamTls {
        self.ca_file = Some(path.as_ref().display().to_string());
        self
    }
}

// ---------------------------------------------------------------- routes

/// A route (`routes[i]`); only `upstream` is required.
#[derive(Serialize, Clone, Debug)]
pub struct Route {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_prefix: Option<String>,
    upstream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    host_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_headers: Option<RequestHeaders>,
    #[serde(skip_serializing_if = "Option::is_none")]
    websocket: Option<WebSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<serde_yaml::Value>,
}

#[derive(Serialize, Default, Clone, Debug)]
struct RequestHeaders {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    set: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remove: Vec<String>,
}

impl Route {
    /// A route to the pool `upstream` (matching every host and path until narrowed).
    pub fn to(upstream: impl Into<String>) -> Route {
        Route {
            name: None,
            host: None,
            path_prefix: None,
            upstream: upstream.into(),
            host_header: None,
            request_headers: None,
            websocket: None,
            auth: None,
        }
    }
    /// The route's name in metrics and the access log.
    pub fn name(mut self, name: impl Into<String>) -> Route {
        self.name = Some(name.into());
        self
    }
    /// Exact (`chat.example.com`) or wildcard (`*.example.com`) host.
    pub fn host(mut self, host: impl Into<String>) -> Route {
        self.host = Some(host.into());
        self
    }
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Route {
        self.path_prefix = Some(prefix.into());
        self
    }
    /// `backend` (the backend's address) or a literal host.
    pub fn host_header(mut self, host: impl Into<String>) -> Route {
        self.host_header = Some(host.into());
        self
    }
    /// `request_headers.set`: `name` is set to `value` on the way to the backend.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Route {
        self.request_headers.get_or_insert_with(Default::default).set.insert(name.into(), value.into());
        self
    }
    /// `request_headers.remove`: `name` never reaches the backend.
    pub fn remove_header(mut self, name: impl Into<String>) -> Route {
        self.request_headers.get_or_insert_with(Default::default).remove.push(name.into());
        self
    }
    pub fn websocket(mut self, policy: WebSocket) -> Route {
        self.websocket = Some(policy);
        self
    }
    /// `auth:` as written (e.g. `{jwt: {...}}`; `tests/common/jwt.rs` builds the JWT one).
    pub fn auth(mut self, auth: serde_yaml::Value) -> Route {
        self.auth = Some(auth);
        self
    }
}

/// A route's `websocket:` policy.
#[derive(Serialize, Default, Clone, Debug)]
pub struct WebSocket {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_sessions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lifetime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_messages_per_second: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_bytes_per_second: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_rate_exceeded: Option<String>,
}

/// `{rate, burst}` of a client rate limit (numbers, or sizes such as `1MiB`).
#[derive(Serialize, Clone, Debug)]
pub struct Rate {
    rate: serde_yaml::Value,
    burst: serde_yaml::Value,
}

impl WebSocket {
    pub fn new() -> WebSocket {
        WebSocket::default()
    }
    pub fn enabled(mut self, on: bool) -> WebSocket {
        self.enabled = Some(on);
        self
    }
    pub fn idle_timeout(mut self, d: impl Into<String>) -> WebSocket {
        self.idle_timeout = Some(d.into());
        self
    }
    pub fn allowed_origins<S: Into<String>>(mut self, origins: impl IntoIterator<Item = S>) -> WebSocket {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }
    pub fn max_message_bytes(mut self, n: u64) -> WebSocket {
        self.max_message_bytes = Some(n);
        self
    }
    pub fn max_sessions(mut self, n: usize) -> WebSocket {
        self.max_sessions = Some(n);
        self
    }
    pub fn max_lifetime(mut self, d: impl Into<String>) -> WebSocket {
        self.max_lifetime = Some(d.into());
        self
    }
    pub fn keepalive(mut self, interval: impl Into<String>, timeout: impl Into<String>) -> WebSocket {
        (self.ping_interval, self.ping_timeout) = (Some(interval.into()), Some(timeout.into()));
        self
    }
    pub fn client_messages_per_second(mut self, rate: f64, burst: f64) -> WebSocket {
        self.client_messages_per_second = Some(Rate { rate: rate.into(), burst: burst.into() });
        self
    }
    pub fn client_bytes_per_second(mut self, rate: &str, burst: &str) -> WebSocket {
        self.client_bytes_per_second = Some(Rate { rate: rate.into(), burst: burst.into() });
        self
    }
    pub fn on_rate_exceeded(mut self, action: impl Into<String>) -> WebSocket {
        self.on_rate_exceeded = Some(action.into());
        self
    }
}
