//! Health checking of a pool: a Pingora `HealthRegistry` with an observed check, run by
//! Pingora's `HealthCheckService`. The registry belongs to the pool's name and what its
//! check is built from (`upstream::CheckSpec`), not to one `LoadBalancer`, so it survives
//! reloads that change the backends.
//!
//! The observed check adds the backend-health gauge, one concise log line per change
//! (instead of Pingora's dump of the whole peer), and readiness once every backend of the
//! pool has been checked once.

use crate::config::model::Upstream;
use crate::metrics::Metrics;
use crate::ready::Readiness;
use crate::upstream;
use async_trait::async_trait;
use log::{info, warn};
use pingora::lb::health_check::HealthCheck;
use pingora::lb::{Backend, HealthCheckService, HealthRegistry};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A registry for `spec`'s health checks; `first_round` are the backends readiness waits for.
pub fn registry(spec: &Upstream, first_round: impl IntoIterator<Item = SocketAddr>, metrics: &Arc<Metrics>, readiness: &Arc<Readiness>) -> Arc<HealthRegistry> {
    let registry = HealthRegistry::new();
    let check = ObservedCheck::new(upstream::health_check(&upstream::CheckSpec::of(spec)), &spec.name, first_round, metrics.clone(), readiness.clone());
    registry.set_health_check(Box::new(check));
    Arc::new(registry)
}

/// The service that runs `registry`'s checks every `spec.health_check.interval`.
pub fn service(spec: &Upstream, registry: Arc<HealthRegistry>) -> HealthCheckService {
    let mut service = HealthCheckService::new(registry);
    service.health_check_frequency = Some(spec.health_check.interval);
    service.parallel_health_check = true;
    service
}

pub struct ObservedCheck {
    inner: Box<dyn HealthCheck + Send + Sync>,
    pool: String,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    /// Backends not yet checked in the first round; `None` once the round is complete.
    first_round: Mutex<Option<HashSet<SocketAddr>>>,
}

impl ObservedCheck {
    pub fn new(
        inner: Box<dyn HealthCheck + Send + Sync>,
        pool: &str,
        backends: impl IntoIterator<Item = SocketAddr>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
    ) -> Self {
        let backends: HashSet<SocketAddr> = backends.into_iter().collect();
        for b in &backends {
            // Pingora starts every backend in rotation until a check says otherwise.
            metrics.backend_healthy.with_label_values(&[pool, &b.to_string()]).set(1);
        }
        if backends.is_empty() {
            readiness.pool_checked();
        }
        ObservedCheck { inner, pool: pool.to_string(), metrics, readiness, first_round: Mutex::new(Some(backends)) }
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
        self.metrics.backend_healthy.with_label_values(&[&self.pool, &backend]).set(healthy as i64);
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
