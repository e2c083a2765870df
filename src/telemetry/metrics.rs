//! wsgate's Prometheus metrics. They live in the `prometheus` crate's default registry,
//! which `pingora-prometheus` re-exports and the metrics endpoint (`admin.rs`) serves.
//!
//! Every label value comes from the config (route name, pool name, backend address) or a
//! fixed set (status, result, direction, close-code class), so cardinality is bounded by
//! the config, never by what clients send.

use pingora_prometheus::prometheus::{
    self, exponential_buckets, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// Label value for requests that matched no route.
pub(crate) const NO_ROUTE: &str = "none";

pub(crate) struct Metrics {
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_duration: HistogramVec,
    pub(crate) ws_upgrades: IntCounterVec,
    pub(crate) ws_active: IntGaugeVec,
    pub(crate) ws_duration: HistogramVec,
    pub(crate) ws_messages: IntCounterVec,
    pub(crate) ws_bytes: IntCounterVec,
    pub(crate) ws_closes: IntCounterVec,
    pub(crate) ws_protocol_errors: IntCounterVec,
    pub(crate) ws_dead_peers: IntCounterVec,
    pub(crate) ws_rate_limited: IntCounterVec,
    pub(crate) backend_healthy: IntGaugeVec,
    pub(crate) backend_sessions: IntGaugeVec,
    pub(crate) queue_wait: HistogramVec,
    pub(crate) queue_waiting: IntGaugeVec,
    pub(crate) ejections: IntCounterVec,
    pub(crate) upstream_errors: IntCounterVec,
    pub(crate) config_reloads: IntCounterVec,
    pub(crate) refusals: IntCounterVec,
    pub(crate) auth: IntCounterVec,
}

/// Outcome label of `wsgate_websocket_upgrades_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeResult {
    Accepted,
    BadHandshake,
    OriginDenied,
    Disabled,
    BackendRefused,
    BackendError,
}

impl UpgradeResult {
    pub(crate) fn label(self) -> &'static str {
        match self {
            UpgradeResult::Accepted => "accepted",
            UpgradeResult::BadHandshake => "bad_handshake",
            UpgradeResult::OriginDenied => "origin_denied",
            UpgradeResult::Disabled => "disabled",
            UpgradeResult::BackendRefused => "backend_refused",
            UpgradeResult::BackendError => "backend_error",
        }
    }
}

/// `kind` label of `wsgate_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamErrorKind {
    ConnectRefused,
    ConnectTimeout,
    ReadTimeout,
    Reset,
    Tls,
    Other,
}

impl UpstreamErrorKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::ReadTimeout => "read_timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Other => "other",
        }
    }

    pub(crate) fn of(e: &pingora::Error) -> Self {
        use pingora::ErrorType as T;
        match e.etype() {
            T::ConnectRefused => UpstreamErrorKind::ConnectRefused,
            T::ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
            T::ReadTimedout | T::WriteTimedout => UpstreamErrorKind::ReadTimeout,
            T::ConnectionClosed | T::ConnectError => UpstreamErrorKind::Reset,
            T::TLSHandshakeFailure | T::TLSHandshakeTimedout | T::InvalidCert | T::HandshakeError => {
                UpstreamErrorKind::Tls
            }
            _ => UpstreamErrorKind::Other,
        }
    }
}

/// The `code` label of a close: standard codes as themselves, others by class, so a client
/// cannot create a label per arbitrary number.
pub(crate) fn close_code_label(code: Option<u16>) -> std::borrow::Cow<'static, str> {
    match code {
        None => "none".into(),
        Some(c @ (1000..=1003 | 1007..=1011 | 1012..=1014)) => c.to_string().into(),
        Some(3000..=3999) => "3xxx".into(),
        Some(4000..=4999) => "4xxx".into(),
        Some(_) => "invalid".into(),
    }
}

/// A status code as a label without allocating for the common ones.
pub(crate) fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    match status {
        0 => "0".into(),
        200 => "200".into(),
        204 => "204".into(),
        301 => "301".into(),
        302 => "302".into(),
        304 => "304".into(),
        400 => "400".into(),
        401 => "401".into(),
        403 => "403".into(),
        404 => "404".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        504 => "504".into(),
        s => s.to_string().into(),
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric definition")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates the metrics and registers them in the default registry. Registering twice
    /// (tests build several gateways in one process) keeps the first registration.
    pub(crate) fn new() -> Metrics {
        let m = Metrics {
            http_requests: counter("wsgate_http_requests_total", "HTTP requests answered, by route, upstream and status.", &["route", "upstream", "status"]),
            http_duration: histogram(
                "wsgate_http_request_duration_seconds",
                "Time from request to end of response.",
                &["route", "upstream"],
                exponential_buckets(0.0005, 2.5, 14).expect("valid buckets"),
            ),
            ws_upgrades: counter("wsgate_websocket_upgrades_total", "WebSocket upgrade attempts by result and the client's protocol (h1: an HTTP/1.1 upgrade, h2: an RFC 8441 stream).", &["route", "upstream", "result", "protocol"]),
            ws_active: IntGaugeVec::new(Opts::new("wsgate_websocket_sessions_active", "Open WebSocket sessions."), &["route", "upstream"]).expect("valid metric definition"),
            ws_duration: histogram(
                "wsgate_websocket_session_duration_seconds",
                "Lifetime of WebSocket sessions.",
                &["route", "upstream"],
                vec![0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0],
            ),
            ws_messages: counter("wsgate_websocket_messages_total", "WebSocket data messages by direction.", &["route", "upstream", "direction"]),
            ws_bytes: counter("wsgate_websocket_bytes_total", "Bytes carried by WebSocket sessions (on the wire) by direction.", &["route", "upstream", "direction"]),
            ws_closes: counter("wsgate_websocket_closes_total", "Ended WebSocket sessions by who sent the first Close frame and its code.", &["route", "upstream", "initiator", "code"]),
            ws_protocol_errors: counter(
                "wsgate_websocket_protocol_errors_total",
                "Sessions failed with Close 1002 because a peer's frames broke RFC 6455, by the direction of the offending frame.",
                &["route", "upstream", "direction"],
            ),
            ws_dead_peers: counter(
                "wsgate_websocket_dead_peers_total",
                "Sessions closed because a side answered nothing to wsgate's keepalive Ping within ping_timeout.",
                &["route", "upstream", "side"],
            ),
            ws_rate_limited: counter(
                "wsgate_websocket_rate_limited_total",
                "Times a client went over its message or byte rate: reading paused (throttle) or session closed with 1008 (close).",
                &["route", "upstream", "action"],
            ),
            backend_healthy: IntGaugeVec::new(Opts::new("wsgate_upstream_backend_healthy", "1 while a backend is in rotation, 0 otherwise."), &["upstream", "backend"])
                .expect("valid metric definition"),
            backend_sessions: IntGaugeVec::new(Opts::new("wsgate_upstream_backend_sessions", "Open WebSocket sessions on a backend."), &["upstream", "backend"])
                .expect("valid metric definition"),
            queue_wait: histogram(
                "wsgate_upstream_queue_wait_seconds",
                "Time upgrades waited for a place on a backend at max_sessions_per_backend.",
                &["upstream"],
                exponential_buckets(0.001, 4.0, 10).expect("valid buckets"),
            ),
            queue_waiting: IntGaugeVec::new(Opts::new("wsgate_upstream_queue_waiting", "Upgrades waiting now for a place on a backend at max_sessions_per_backend."), &["upstream"])
                .expect("valid metric definition"),
            ejections: counter("wsgate_upstream_ejections_total", "Backends taken out of rotation by passive health.", &["upstream", "backend"]),
            upstream_errors: counter("wsgate_upstream_errors_total", "Failed backend connections and exchanges by kind.", &["upstream", "backend", "kind"]),
            config_reloads: counter("wsgate_config_reloads_total", "SIGHUP reloads by result: ok, invalid, needs_upgrade.", &["result"]),
            refusals: counter("wsgate_refusals_total", "Requests refused by a limit, by cause.", &["cause"]),
            auth: counter("wsgate_auth_total", "Credential checks of routes with auth, by result: ok, missing, invalid, expired, error.", &["route", "result"]),
        };
        let registry = prometheus::default_registry();
        for collector in [
            Box::new(m.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.http_duration.clone()),
            Box::new(m.ws_upgrades.clone()),
            Box::new(m.ws_active.clone()),
            Box::new(m.ws_duration.clone()),
            Box::new(m.ws_messages.clone()),
            Box::new(m.ws_bytes.clone()),
            Box::new(m.ws_closes.clone()),
            Box::new(m.ws_protocol_errors.clone()),
            Box::new(m.ws_dead_peers.clone()),
            Box::new(m.ws_rate_limited.clone()),
            Box::new(m.backend_healthy.clone()),
            Box::new(m.backend_sessions.clone()),
            Box::new(m.queue_wait.clone()),
            Box::new(m.queue_waiting.clone()),
            Box::new(m.ejections.clone()),
            Box::new(m.upstream_errors.clone()),
            Box::new(m.config_reloads.clone()),
            Box::new(m.refusals.clone()),
            Box::new(m.auth.clone()),
        ] {
            let _ = registry.register(collector);
        }
        let build = IntGaugeVec::new(
            Opts::new("wsgate_build_info", "Always 1; the version label says which wsgate runs."),
            &["version"],
        )
        .expect("valid metric definition");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let _ = registry.register(Box::new(build));
        m
    }

    pub(crate) fn upstream_error(&self, upstream: &str, backend: &str, kind: UpstreamErrorKind) {
        self.upstream_errors.with_label_values(&[upstream, backend, kind.label()]).inc();
    }
}

/// Counters of one WebSocket session, resolved once when it opens so the tunnel's hot
/// path is a few atomic adds.
pub(crate) struct SessionMeter {
    pub(crate) bytes_to_backend: IntCounter,
    pub(crate) bytes_to_client: IntCounter,
    pub(crate) messages_to_backend: IntCounter,
    pub(crate) messages_to_client: IntCounter,
    active: IntGauge,
}

impl SessionMeter {
    pub(crate) fn open(m: &Metrics, route: &str, upstream: &str) -> SessionMeter {
        let active = m.ws_active.with_label_values(&[route, upstream]);
        active.inc();
        SessionMeter {
            bytes_to_backend: m.ws_bytes.with_label_values(&[route, upstream, "client_to_backend"]),
            bytes_to_client: m.ws_bytes.with_label_values(&[route, upstream, "backend_to_client"]),
            messages_to_backend: m.ws_messages.with_label_values(&[route, upstream, "client_to_backend"]),
            messages_to_client: m.ws_messages.with_label_values(&[route, upstream, "backend_to_client"]),
            active,
        }
    }
}

/// The active-sessions gauge goes down however the session ends, even if its task is
/// dropped mid-way (shutdown).
impl Drop for SessionMeter {
    fn drop(&mut self) {
        self.active.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_labels_are_bounded() {
        assert_eq!(close_code_label(None), "none");
        assert_eq!(close_code_label(Some(1000)), "1000");
        assert_eq!(close_code_label(Some(1001)), "1001");
        assert_eq!(close_code_label(Some(1009)), "1009");
        assert_eq!(close_code_label(Some(3001)), "3xxx");
        assert_eq!(close_code_label(Some(4321)), "4xxx");
        for odd in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000, 65535] {
            assert_eq!(close_code_label(Some(odd)), "invalid", "{odd}");
        }
    }

    #[test]
    fn status_labels() {
        assert_eq!(status_label(200), "200");
        assert_eq!(status_label(418), "418");
    }
}
