//! Health checking of a pool: a Pingora `HealthRegistry` with an observed check, run by
//! Pingora's `HealthCheckService`. The registry belongs to the pool's name and what its
//! check is built from (`CheckSpec`), not to one `LoadBalancer`, so it survives
//! reloads that change the backends.
//!
//! The observed check adds the backend-health gauge, one concise log line per change
//! (instead of Pingora's dump of the whole peer), and readiness once every backend of the
//! pool has been checked once. The gauge's series of a pool follow its backends
//! (`BackendSeries`): DNS discovery and reloads remove those of backends that left.

use crate::config::model::Upstream;
use crate::config::model::{HealthCheck as CheckConfig, HealthCheckKind, UpstreamTls};
use crate::lifecycle::ready::Readiness;
use crate::telemetry::metrics::Metrics;
use crate::upstream::load::Loads;
use crate::upstream::peer_tls::{apply_tls, ca_of};
use async_trait::async_trait;
use log::{info, warn};
use pingora::http::RequestHeader;
use pingora::lb::health_check::HealthCheck;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::{Backend, HealthCheckService, HealthRegistry};
use pingora_prometheus::prometheus::IntGaugeVec;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A registry for `spec`'s health checks; `first_round` are the backends readiness waits for.
pub(crate) fn registry(
    spec: &Upstream,
    first_round: impl IntoIterator<Item = SocketAddr>,
    series: &Arc<BackendSeries>,
    readiness: &Arc<Readiness>,
) -> Arc<HealthRegistry> {
    let registry = HealthRegistry::new();
    let check = ObservedCheck::new(
        health_check(&CheckSpec::of(spec)),
        &spec.name,
        first_round,
        series.clone(),
        readiness.clone(),
    );
    registry.set_health_check(Box::new(check));
    Arc::new(registry)
}

/// The service that runs `registry`'s checks every `spec.health_check.interval`.
pub(crate) fn service(spec: &Upstream, registry: Arc<HealthRegistry>) -> HealthCheckService {
    let mut service = HealthCheckService::new(registry);
    service.health_check_frequency = Some(spec.health_check.interval);
    service.parallel_health_check = true;
    service
}

/// The `wsgate_upstream_backend_healthy` series of one pool: one per backend the pool has
/// now. It belongs to the pool's name and outlives reloads; every pool built under that
/// name reports each discovery result here (static backends once, DNS ones at every
/// resolution), so a backend that leaves loses its series and scrapes stay bounded.
pub(crate) struct BackendSeries {
    pool: String,
    gauge: IntGaugeVec,
    state: Mutex<Members>,
    /// What each backend carries, kept (like the series) across reloads.
    loads: Arc<Loads>,
}

#[derive(Default)]
struct Members {
    /// The pool built last; results from pools a reload replaced are ignored.
    generation: u64,
    backends: HashSet<SocketAddr>,
}

impl BackendSeries {
    pub(crate) fn new(pool: &str, metrics: &Metrics) -> Arc<BackendSeries> {
        Arc::new(BackendSeries {
            pool: pool.to_string(),
            gauge: metrics.backend_healthy.clone(),
            state: Mutex::default(),
            loads: Loads::new(pool, metrics),
        })
    }

    pub(crate) fn loads(&self) -> &Arc<Loads> {
        &self.loads
    }

    fn members(&self) -> std::sync::MutexGuard<'_, Members> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A newly built pool takes over reporting; its generation goes with its reports.
    pub(crate) fn next_generation(&self) -> u64 {
        let mut members = self.members();
        members.generation += 1;
        members.generation
    }

    /// The backends the pool of `generation` has now: series of those that left go, new
    /// ones start at 1 (Pingora puts a new backend in rotation until a check says otherwise).
    pub(crate) fn discovered(&self, generation: u64, backends: impl IntoIterator<Item = SocketAddr>) {
        let mut members = self.members();
        if generation != members.generation {
            return;
        }
        let now: HashSet<SocketAddr> = backends.into_iter().collect();
        for gone in members.backends.difference(&now) {
            let _ = self.gauge.remove_label_values(&[&self.pool, &gone.to_string()]);
        }
        for new in now.difference(&members.backends) {
            self.gauge.with_label_values(&[&self.pool, &new.to_string()]).set(1);
        }
        self.loads.members(&now);
        members.backends = now;
    }

    /// Records a backend's health, only while it is in the pool: a check that was under way
    /// when its backend left must not bring the series back.
    pub(crate) fn set_healthy(&self, backend: SocketAddr, healthy: bool) {
        let members = self.members();
        if members.backends.contains(&backend) {
            self.gauge.with_label_values(&[&self.pool, &backend.to_string()]).set(healthy as i64);
        }
    }

    /// The pool is gone: all its series go, and nothing reported later brings one back.
    pub(crate) fn remove_all(&self) {
        let mut members = self.members();
        for gone in members.backends.drain() {
            let _ = self.gauge.remove_label_values(&[&self.pool, &gone.to_string()]);
        }
        self.loads.remove_all();
        members.generation += 1;
    }
}

pub(crate) struct ObservedCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    pool: String,
    series: Arc<BackendSeries>,
    readiness: Arc<Readiness>,
    /// Backends not yet checked in the first round; `None` once the round is complete.
    first_round: Mutex<Option<HashSet<SocketAddr>>>,
}

impl ObservedCheck {
    pub(crate) fn new(
        inner: Box<dyn HealthCheck + Send + Sync>,
        pool: &str,
        backends: impl IntoIterator<Item = SocketAddr>,
        series: Arc<BackendSeries>,
        readiness: Arc<Readiness>,
    ) -> Self {
        let backends: HashSet<SocketAddr> = backends.into_iter().collect();
        for b in &backends {
            // A new registry: Pingora starts every backend in rotation until a check says otherwise.
            series.set_healthy(*b, true);
        }
        if backends.is_empty() {
            readiness.pool_checked();
        }
        ObservedCheck { inner, pool: pool.to_string(), series, readiness, first_round: Mutex::new(Some(backends)) }
    }

    fn note_checked(&self, backend: &Backend) {
        let Some(addr) = backend.addr.as_inet() else { return };
        let mut round = self.first_round.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pending) = round.as_mut() {
            pending.remove(addr);
            if pending.is_empty() {
                *round = None;
                self.readiness.pool_checked();
                info!("pool {}: first health check round complete", self.pool);
            }
        }
    }
}

#[async_trait]
impl HealthCheck for ObservedCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let result = self.inner.check(target).await;
        self.note_checked(target);
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let backend = self.backend_summary(target);
        if let Some(addr) = target.addr.as_inet() {
            self.series.set_healthy(*addr, healthy);
            self.series.loads().health_changed(*addr, healthy);
        }
        if healthy {
            info!("pool {}: backend {backend} is healthy, back in rotation", self.pool);
        } else {
            warn!("pool {}: backend {backend} is unhealthy, out of rotation", self.pool);
        }
        self.inner.health_status_change(target, healthy).await;
    }

    fn backend_summary(&self, target: &Backend) -> String {
        target.addr.as_inet().map_or_else(|| format!("{:?}", target.addr), |a| a.to_string())
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_prometheus::prometheus::core::Collector;

    #[test]
    fn series_follow_the_latest_pool_and_only_its_members() {
        let metrics = Metrics::new();
        let series = BackendSeries::new("p", &metrics);
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        let count = || {
            metrics.backend_healthy.collect()[0]
                .get_metric()
                .iter()
                .filter(|m| m.get_label().iter().any(|l| l.value() == "p"))
                .count()
        };
        let old = series.next_generation();
        series.discovered(old, [a, b]);
        series.set_healthy(b, false);
        assert_eq!((count(), metrics.backend_healthy.with_label_values(&["p", "10.0.0.2:80"]).get()), (2, 0));
        let new = series.next_generation();
        series.discovered(new, [a]);
        series.discovered(old, [a, b]); // a replaced pool's late answer changes nothing
        series.set_healthy(b, true); // nor does a late check of a backend that left
        assert_eq!(count(), 1);
        series.remove_all();
        series.discovered(new, [a, b]);
        assert_eq!(count(), 0);
    }
}
/// Everything a pool's health check is built from, and nothing else: `health_check` takes
/// only this, so a reload may keep a pool's running checks (and their health state) exactly
/// when this stays equal, whatever field is added to it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckSpec {
    pub(crate) check: CheckConfig,
    /// The check connects like requests do: over TLS, with the same name, verification and CAs.
    pub(crate) tls: Option<UpstreamTls>,
}

impl CheckSpec {
    pub(crate) fn of(pool: &Upstream) -> CheckSpec {
        CheckSpec { check: pool.health_check.clone(), tls: pool.tls.clone() }
    }
}

/// The Pingora health check `spec` asks for (over TLS if the pool uses TLS).
pub(crate) fn health_check(spec: &CheckSpec) -> Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync> {
    let (tls, ca) = (spec.tls.as_ref(), ca_of(spec.tls.as_ref()));
    let spec = &spec.check;
    match spec.kind {
        HealthCheckKind::Tcp => {
            let mut hc = match tls {
                // One template serves every backend: without an SNI, a placeholder name
                // (only possible with `verify: false`, so it is never checked).
                Some(t) => TcpHealthCheck::new_tls(if t.sni.is_empty() { "localhost" } else { &t.sni }),
                None => TcpHealthCheck::new(),
            };
            if let Some(t) = tls {
                apply_tls(&mut hc.peer_template.options, t, &ca);
            }
            hc.consecutive_success = spec.healthy_after;
            hc.consecutive_failure = spec.unhealthy_after;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            hc.peer_template.options.total_connection_timeout = Some(spec.timeout);
            hc
        }
        HealthCheckKind::Http => {
            let host = tls.map_or("localhost", |t| if t.sni.is_empty() { "localhost" } else { t.sni.as_str() });
            let mut hc = HttpHealthCheck::new(host, tls.is_some());
            if let Some(t) = tls {
                hc.peer_template.sni = host.to_string();
                apply_tls(&mut hc.peer_template.options, t, &ca);
            }
            hc.consecutive_success = spec.healthy_after;
            hc.consecutive_failure = spec.unhealthy_after;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            hc.peer_template.options.total_connection_timeout = Some(spec.timeout);
            hc.peer_template.options.read_timeout = Some(spec.timeout);
            if let Ok(mut req) = RequestHeader::build("GET", spec.path.as_bytes(), None) {
                let _ = req.insert_header("Host", host);
                let _ = req.insert_header("User-Agent", "wsgate-health-check");
                hc.req = req;
            }
            Box::new(hc)
        }
    }
}
