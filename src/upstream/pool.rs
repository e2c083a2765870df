//! A pool: its Pingora `LoadBalancer` (the algorithm fixed when it is built), how to reach
//! its backends (timeouts, TLS) and the discovery that feeds it.

use super::attempts::Attempts;
use crate::config::model::{Balance, Discovery, Rebalance, Upstream};
use crate::upstream::affinity::Pinning;
use crate::upstream::discovery::DnsDiscovery;
use crate::upstream::health::BackendSeries;
use crate::upstream::least;
use crate::upstream::load::Loads;
use crate::upstream::peer_tls::{apply_tls, ca_of};
use crate::upstream::rebalance::{self, Member};
use futures_util::FutureExt;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::lb::discovery::{ServiceDiscovery, Static};
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, HealthRegistry, LoadBalancer};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One backend as `Pool::report` shows it.
pub(crate) struct BackendReport {
    pub(crate) address: SocketAddr,
    pub(crate) weight: usize,
    /// The active health checks say so (and it is enabled).
    pub(crate) healthy: bool,
    /// Healthy and not ejected by passive health.
    pub(crate) in_rotation: bool,
    /// An operator drains it.
    pub(crate) draining: bool,
    pub(crate) sessions: usize,
    pub(crate) requests: usize,
}

/// How far the selector may walk to find a healthy backend not excluded for this request.
const MAX_SELECT_ITERATIONS: usize = 256;

/// The balancing algorithm is fixed per pool when it is built, so the request path does not
/// branch on configuration, only on this enum.
enum Balancer {
    RoundRobin(LoadBalancer<RoundRobin>),
    Random(LoadBalancer<Random>),
    Hash(LoadBalancer<Consistent>),
    /// Pingora's selector is not used: `least.rs` picks from the backends and their loads.
    LeastSessions(LoadBalancer<RoundRobin>),
}

pub(crate) struct Pool {
    pub(crate) spec: Upstream,
    balancer: Balancer,
    /// `tls.ca_file`'s certificates, in the form Pingora's connector takes, built once.
    ca: Option<Arc<CaType>>,
    /// What each backend carries (shared with the pools of this name before and after).
    pub(crate) loads: Arc<Loads>,
    /// The affinity cookie, if the pool has one (its discovery keeps it up to date).
    affinity: Option<Arc<Pinning>>,
}

/// The backends a pool starts with: the configured addresses, or for a DNS pool the names
/// resolved now (blocking: called at start-up and off the async threads on reload).
pub(crate) fn initial_backends(spec: &Upstream) -> BTreeSet<Backend> {
    match &spec.discovery {
        Discovery::Static => spec
            .backends
            .iter()
            .filter_map(|b| Backend::new_with_weight(&b.address.to_string(), b.weight).ok())
            .collect(),
        Discovery::Dns { names, hosts_file, .. } => {
            let dns = DnsDiscovery { names: names.clone(), hosts_file: hosts_file.clone() };
            dns.resolve_blocking().unwrap_or_else(|e| {
                log::warn!("pool {}: {e}; it stays empty until the names resolve", spec.name);
                BTreeSet::new()
            })
        }
    }
}

impl Pool {
    /// A pool over `initial` backends whose health is kept in `registry`; it reports each
    /// discovery result to `series` (from now on the only pool of its name that does).
    pub(crate) fn new(
        spec: &Upstream,
        registry: Arc<HealthRegistry>,
        initial: BTreeSet<Backend>,
        series: &Arc<BackendSeries>,
    ) -> Pool {
        let affinity = spec.affinity.as_ref().map(|a| Arc::new(Pinning::new(a)));
        let generation = series.next_generation();
        let report = Report { series: series.clone(), generation, affinity: affinity.clone() };
        let balancer = match &spec.balance {
            Balance::RoundRobin => Balancer::RoundRobin(balancer(spec, registry, initial, report)),
            Balance::Random => Balancer::Random(balancer(spec, registry, initial, report)),
            Balance::ConsistentHash(_) => Balancer::Hash(balancer(spec, registry, initial, report)),
            Balance::LeastSessions => Balancer::LeastSessions(balancer(spec, registry, initial, report)),
        };
        Pool { spec: spec.clone(), balancer, ca: ca_of(spec.tls.as_ref()), loads: series.loads().clone(), affinity }
    }

    /// The backend the request's affinity cookie names, if it names one of this pool's.
    pub(crate) fn pinned(&self, req: &RequestHeader) -> Option<SocketAddr> {
        self.affinity.as_ref()?.pinned(req)
    }

    /// Pins the client to the backend that answered with a `Set-Cookie` on the answer, unless
    /// its cookie already named that backend. Interim answers (100, 103) are not the answer;
    /// an upgrade's 101 is.
    pub(crate) fn set_affinity_cookie(&self, response: &mut ResponseHeader, attempts: &Attempts, tls: bool) {
        let (Some(affinity), Some(backend)) = (&self.affinity, attempts.backend) else { return };
        if attempts.pinned == Some(backend) || (response.status.is_informational() && response.status != 101) {
            return;
        }
        // Fails only on bytes a header value cannot hold; the cookie is ASCII by construction.
        let _ = response.append_header(http::header::SET_COOKIE, affinity.set_cookie(backend, tls));
    }

    /// How to reach `addr` of this pool: timeouts, and TLS if the pool has it.
    pub(crate) fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let tls = self.spec.tls.as_ref();
        // Pingora's rustls connector needs a server name even unverified (it refuses an
        // empty one): the address itself is one, and rustls sends no SNI for it.
        let sni =
            tls.map_or_else(String::new, |t| if t.sni.is_empty() { addr.ip().to_string() } else { t.sni.clone() });
        let mut peer = HttpPeer::new(addr, tls.is_some(), sni);
        peer.options.connection_timeout = Some(self.spec.connect_timeout);
        peer.options.read_timeout = Some(self.spec.read_timeout);
        if let Some(tls) = tls {
            apply_tls(&mut peer.options, tls, &self.ca);
        }
        peer
    }

    /// Like `peer`, but Pingora opens a new connection for it instead of taking a pooled one:
    /// pooled connections are found by the peer's hash, which includes `group_key`, so a key
    /// no other request uses (`unique_group`, never 0) finds none. The zero idle timeout
    /// closes that connection after its request instead of leaving it in the pool under a key
    /// nobody asks for again.
    pub(crate) fn fresh_peer(&self, addr: SocketAddr, unique_group: u64) -> HttpPeer {
        let mut peer = self.peer(addr);
        peer.group_key = unique_group;
        peer.options.idle_timeout = Some(std::time::Duration::ZERO);
        peer
    }

    /// While a backend ramps up (slow start): a pick at random by weight × ramp among the
    /// accepted backends, so each gets its ramped share exactly (rejecting a ramping backend
    /// inside Pingora's round robin would have its iterator offer it again on the next call,
    /// about doubling its share). `None` when nothing ramps: the usual selector picks.
    fn ramped(&self, accept: &impl Fn(&Backend, bool) -> bool) -> Option<Option<Backend>> {
        self.loads.ramping()?;
        let backends = self.backends();
        let members = backends.get_backend();
        let weighed: Vec<(&Backend, u64)> = members
            .iter()
            .filter(|b| accept(b, backends.ready(b)))
            .filter_map(|b| Some((b, b.weight.max(1) as u64 * self.loads.ramp(b.addr.as_inet()?))))
            .collect();
        if weighed.iter().all(|(b, w)| *w == b.weight.max(1) as u64 * 1000) {
            return None;
        }
        let total: u64 = weighed.iter().map(|(_, w)| w).sum();
        let mut point = fastrand::u64(0..total.max(1));
        for (b, w) in &weighed {
            if point < *w {
                return Some(Some((*b).clone()));
            }
            point -= w;
        }
        Some(None)
    }

    /// Each backend of the pool now, as the admin API shows it.
    pub(crate) fn report(&self) -> Vec<BackendReport> {
        let backends = self.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let address = *b.addr.as_inet()?;
                let healthy = backends.ready(b);
                Some(BackendReport {
                    address,
                    weight: b.weight,
                    healthy,
                    in_rotation: healthy && self.loads.in_rotation(&address) && !self.loads.drained(&address),
                    draining: self.loads.drained(&address),
                    sessions: self.loads.sessions(&address),
                    requests: self.loads.requests(&address),
                })
            })
            .collect()
    }

    fn backends(&self) -> &pingora::lb::Backends {
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Random(lb) => lb.backends(),
            Balancer::Hash(lb) => lb.backends(),
            Balancer::LeastSessions(lb) => lb.backends(),
        }
    }

    /// One rebalancing round: tells the surplus sessions of over-loaded healthy backends to
    /// move (at most `closes_per_second`); whether the rebalance goes on next round.
    pub(crate) fn rebalance_once(&self, settings: &Rebalance, active: bool) -> bool {
        let backends = self.backends();
        let members: Vec<Member> = backends
            .get_backend()
            .iter()
            .filter(|b| backends.ready(b))
            .filter_map(|b| {
                let addr = *b.addr.as_inet()?;
                Some(Member { addr, sessions: self.loads.staying(&addr), weight: b.weight })
            })
            .collect();
        let (moves, active) = rebalance::plan(&members, settings.max_skew, settings.closes_per_second, active);
        for (addr, n) in moves {
            self.loads.rebalance(&addr, n);
        }
        active
    }

    /// Re-runs discovery (DNS pools) and rebuilds the selector.
    pub(crate) async fn refresh(&self) {
        let _ = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.update().await,
            Balancer::Random(lb) => lb.update().await,
            Balancer::Hash(lb) => lb.update().await,
            Balancer::LeastSessions(lb) => lb.update().await,
        };
    }

    /// A healthy backend for `key`, skipping those the request's `attempts` excluded and
    /// those `room` says have no room: the one its affinity cookie pins it to while that one
    /// is in rotation, else the balancer's pick. Backends ejected by passive health are
    /// skipped, and those in slow start taken in proportion to their ramp, unless that leaves
    /// none: then the pool serves from every healthy backend rather than fail (Envoy's "panic
    /// mode").
    pub(crate) fn select(
        &self,
        key: &[u8],
        attempts: &Attempts,
        room: impl Fn(&SocketAddr) -> bool,
    ) -> Option<Backend> {
        // A backend an operator drains gets nothing new, even in panic mode.
        let usable = |a: &SocketAddr| !attempts.excluded.contains(a) && room(a) && !self.loads.drained(a);
        // Slow start does not hold back a pinned client: it is not a new one for the backend.
        let pinned = attempts.pinned.filter(|a| usable(a) && self.loads.in_rotation(a));
        if let Some(backend) = pinned.and_then(|a| self.healthy_member(a)) {
            return Some(backend);
        }
        // `least_sessions` weighs slow start into the loads it compares, round robin and
        // random pick by ramped weight while a backend ramps up (`ramped`); a hash pool takes
        // a ramping backend with the probability of its ramp.
        let hashing = matches!(self.balancer, Balancer::Hash(_));
        let in_rotation = |a: &SocketAddr| {
            let ramp = if hashing { self.loads.ramp(a) } else { 1000 };
            self.loads.in_rotation(a) && (ramp >= 1000 || fastrand::u64(0..1000) < ramp)
        };
        self.select_where(key, |a| usable(a) && in_rotation(a)).or_else(|| self.select_where(key, usable))
    }

    /// The pool's backend at `addr`, if the active health checks find it healthy.
    fn healthy_member(&self, addr: SocketAddr) -> Option<Backend> {
        let backends = self.backends();
        backends.get_backend().iter().find(|b| b.addr.as_inet() == Some(&addr) && backends.ready(b)).cloned()
    }

    fn select_where(&self, key: &[u8], usable: impl Fn(&SocketAddr) -> bool) -> Option<Backend> {
        let accept = |b: &Backend, healthy: bool| healthy && b.addr.as_inet().is_some_and(&usable);
        match &self.balancer {
            Balancer::RoundRobin(lb) => {
                self.ramped(&accept).unwrap_or_else(|| lb.select_with(key, MAX_SELECT_ITERATIONS, accept))
            }
            Balancer::Random(lb) => {
                self.ramped(&accept).unwrap_or_else(|| lb.select_with(key, MAX_SELECT_ITERATIONS, accept))
            }
            Balancer::Hash(lb) => lb.select_with(key, MAX_SELECT_ITERATIONS, accept),
            Balancer::LeastSessions(lb) => {
                let (backends, loads) = (lb.backends(), &self.loads);
                let members = backends.get_backend();
                let candidates = members.iter().filter(|b| accept(b, backends.ready(b)));
                let weighed = candidates.filter_map(|b| {
                    let addr = b.addr.as_inet()?;
                    Some((b, loads.load(addr), b.weight as u64 * loads.ramp(addr)))
                });
                least::least_loaded(weighed, |n| fastrand::usize(0..n)).cloned()
            }
        }
    }
}

/// Where a pool reports the backends each discovery gives it.
struct Report {
    series: Arc<BackendSeries>,
    generation: u64,
    /// The pool's affinity cookie reads the backends' names from each result.
    affinity: Option<Arc<Pinning>>,
}

/// A discovery that answers its first call with the backends resolved when the pool was
/// built (so the pool is usable at once, without a runtime), and asks `next` afterwards.
/// Every answer it gives goes through it, so it reports each one.
struct Primed {
    first: Mutex<Option<BTreeSet<Backend>>>,
    next: Box<dyn ServiceDiscovery + Send + Sync>,
    report: Report,
}

#[async_trait::async_trait]
impl ServiceDiscovery for Primed {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        let found = match first {
            Some(backends) => (backends, HashMap::new()),
            None => self.next.discover().await?,
        };
        let addrs = found.0.iter().filter_map(|b| b.addr.as_inet().copied());
        if let Some(affinity) = &self.report.affinity {
            affinity.learn(addrs.clone());
        }
        self.report.series.discovered(self.report.generation, addrs);
        Ok(found)
    }
}

fn balancer<S>(
    spec: &Upstream,
    registry: Arc<HealthRegistry>,
    initial: BTreeSet<Backend>,
    report: Report,
) -> LoadBalancer<S>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let next: Box<dyn ServiceDiscovery + Send + Sync> = match &spec.discovery {
        Discovery::Static => Static::new(initial.clone()),
        Discovery::Dns { names, hosts_file, .. } => {
            Box::new(DnsDiscovery { names: names.clone(), hosts_file: hosts_file.clone() })
        }
    };
    let discovery = Box::new(Primed { first: Mutex::new(Some(initial)), next, report });
    let lb = LoadBalancer::<S>::from_backends(Backends::new_with_health_registry(discovery, registry));
    // The primed discovery answers at once: fill the selector now so the first request finds it.
    let _ = lb.update().now_or_never();
    lb
}
