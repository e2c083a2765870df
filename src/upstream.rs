//! Upstream pools: one Pingora `LoadBalancer` per configured pool, built once at start-up,
//! with its active health check running as a Pingora background service.

use crate::ready::Readiness;
use crate::config::model::{Balance, HashKey, HealthCheck, HealthCheckKind, Upstream};
use crate::health::ObservedCheck;
use crate::metrics::Metrics;
use futures_util::FutureExt;
use pingora::http::RequestHeader;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::services::background::background_service;
use pingora::services::ServiceWithDependents;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// How far the selector may walk to find a healthy backend not tried yet for this request.
const MAX_SELECT_ITERATIONS: usize = 256;

/// The balancing algorithm is fixed per pool at start-up, so the request path does not
/// branch on configuration, only on this enum.
enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    Hash(Arc<LoadBalancer<Consistent>>),
}

pub struct Pool {
    pub spec: Upstream,
    balancer: Balancer,
}

impl Pool {
    /// Builds the pool and the background service that health-checks it.
    pub fn build(spec: &Upstream, metrics: &Arc<Metrics>, readiness: &Arc<Readiness>) -> (Pool, Box<dyn ServiceWithDependents>) {
        let check = ObservedCheck::new(
            health_check(&spec.health_check),
            &spec.name,
            spec.backends.iter().map(|b| b.address),
            metrics.clone(),
            readiness.clone(),
        );
        let (balancer, service) = match &spec.balance {
            Balance::RoundRobin => {
                let (lb, svc) = balancer::<RoundRobin>(spec, check);
                (Balancer::RoundRobin(lb), svc)
            }
            Balance::Random => {
                let (lb, svc) = balancer::<Random>(spec, check);
                (Balancer::Random(lb), svc)
            }
            Balance::ConsistentHash(_) => {
                let (lb, svc) = balancer::<Consistent>(spec, check);
                (Balancer::Hash(lb), svc)
            }
        };
        (Pool { spec: spec.clone(), balancer }, service)
    }

    /// A healthy backend for `key`, skipping those already `tried` for this request.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Backend> {
        let accept = |b: &Backend, healthy: bool| {
            healthy && !b.addr.as_inet().is_some_and(|a| tried.contains(a))
        };
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            Balancer::Random(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            Balancer::Hash(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
        }
    }
}

fn balancer<S>(spec: &Upstream, check: ObservedCheck) -> (Arc<LoadBalancer<S>>, Box<dyn ServiceWithDependents>)
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let backends: BTreeSet<Backend> = spec
        .backends
        .iter()
        .filter_map(|b| Backend::new_with_weight(&b.address.to_string(), b.weight).ok())
        .collect();
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(Static::new(backends)));
    // Static discovery never blocks: fill the selector now so the first request finds it.
    let _ = lb.update().now_or_never();
    lb.set_health_check(Box::new(check));
    lb.health_check_frequency = Some(spec.health_check.interval);
    lb.parallel_health_check = true;
    let service = background_service(&format!("health check {}", spec.name), lb);
    let lb = service.task();
    (lb, Box::new(service))
}

fn health_check(spec: &HealthCheck) -> Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync> {
    match spec.kind {
        HealthCheckKind::Tcp => {
            let mut hc = TcpHealthCheck::new();
            hc.consecutive_success = spec.healthy_after;
            hc.consecutive_failure = spec.unhealthy_after;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            hc.peer_template.options.total_connection_timeout = Some(spec.timeout);
            hc
        }
        HealthCheckKind::Http => {
            let mut hc = HttpHealthCheck::new("localhost", false);
            hc.consecutive_success = spec.healthy_after;
            hc.consecutive_failure = spec.unhealthy_after;
            hc.peer_template.options.connection_timeout = Some(spec.timeout);
            hc.peer_template.options.total_connection_timeout = Some(spec.timeout);
            hc.peer_template.options.read_timeout = Some(spec.timeout);
            if let Ok(mut req) = RequestHeader::build("GET", spec.path.as_bytes(), None) {
                let _ = req.insert_header("Host", "localhost");
                let _ = req.insert_header("User-Agent", "wsgate-health-check");
                hc.req = req;
            }
            Box::new(hc)
        }
    }
}

/// The bytes a consistent-hash pool hashes for this request. A missing header or cookie
/// falls back to the client address, so such clients still stick to one backend.
pub fn hash_input(balance: &Balance, req: &RequestHeader, client_ip: Option<IpAddr>) -> Vec<u8> {
    let client = || client_ip.map(|ip| ip.to_string().into_bytes()).unwrap_or_default();
    let Balance::ConsistentHash(key) = balance else { return Vec::new() };
    match key {
        HashKey::ClientIp => client(),
        HashKey::Path => req.uri.path().as_bytes().to_vec(),
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_else(client),
        HashKey::Cookie(name) => cookie(req, name).map(|v| v.as_bytes().to_vec()).unwrap_or_else(client),
    }
}

fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/room/7?x=1", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hash_inputs_follow_the_configured_key() {
        let ip: Option<IpAddr> = Some("10.0.0.9".parse().unwrap());
        let r = req(&[("X-User", "alice"), ("Cookie", "a=1; sid=abc ; b=2")]);
        let h = |k: HashKey| hash_input(&Balance::ConsistentHash(k), &r, ip);
        assert_eq!(h(HashKey::ClientIp), b"10.0.0.9");
        assert_eq!(h(HashKey::Path), b"/room/7");
        assert_eq!(h(HashKey::Header(http::HeaderName::from_static("x-user"))), b"alice");
        assert_eq!(h(HashKey::Cookie("sid".into())), b"abc");
        assert_eq!(h(HashKey::Cookie("missing".into())), b"10.0.0.9");
        assert!(hash_input(&Balance::RoundRobin, &r, ip).is_empty());
    }
}
