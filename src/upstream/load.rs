//! What each backend of a pool carries now: its open WebSocket sessions and in-flight HTTP
//! requests, each counted by a `Place` held for as long as it lasts.
//!
//! The counts belong to the backend (pool name and address), not to a selector: Pingora
//! rebuilds its selectors on every discovery update and a reload builds new pools, and
//! counts kept inside them would restart at zero while the sessions go on (pingora PR #821).
//! `Loads` is kept with the pool's health series across reloads, so the same address keeps
//! its count and a new one starts at 0.

use crate::config::model::PassiveHealth;
use crate::telemetry::metrics::Metrics;
use crate::upstream::moves::{now_ms, Activity, Movable, Move, SessionView, Ticket};
use crate::upstream::queue::Queue;
use crate::upstream::rotation::Rotation;
use arc_swap::ArcSwap;
use pingora_prometheus::prometheus::{Histogram, IntCounterVec, IntGauge, IntGaugeVec};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The backends of one pool (by name) and what each carries.
pub(crate) struct Loads {
    pool: String,
    /// `wsgate_upstream_backend_sessions{upstream,backend}`.
    gauge: IntGaugeVec,
    backends: ArcSwap<HashMap<SocketAddr, Arc<BackendLoad>>>,
    /// Serialises inserts into `backends` (reads take no lock).
    insert: Mutex<()>,
    /// Upgrades waiting for a place (`max_sessions_per_backend` with `queue`).
    pub(crate) queue: Queue,
    /// `wsgate_upstream_queue_wait_seconds{upstream}`.
    pub(crate) queue_wait: Histogram,
    /// `wsgate_upstream_queue_waiting{upstream}`.
    pub(crate) queue_waiting: IntGauge,
    /// `wsgate_upstream_ejections_total{upstream,backend}`.
    ejections: IntCounterVec,
    /// What happens to the sessions of a backend that leaves rotation (set on each build;
    /// read on the request path, so without a lock).
    policy: ArcSwap<Policy>,
    /// Set once the pool has had backends: later ones are joining (slow start).
    populated: AtomicBool,
    /// Until when a backend may be ramping up (ms on `moves::now_ms`'s clock).
    ramp_until: std::sync::atomic::AtomicU64,
    /// How many of its backends an operator drains (checked before looking one up).
    draining: AtomicUsize,
}

/// The pool's settings for moving sessions, from the pool built last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policy {
    /// `on_backend_down: close`.
    pub(crate) close_on_down: bool,
    /// Moved sessions close spread over this (`drain.window`).
    pub(crate) spread: Duration,
    pub(crate) passive: Option<PassiveHealth>,
    pub(crate) slow_start: Option<Duration>,
}

/// One backend's load.
pub(crate) struct BackendLoad {
    label: String,
    sessions: AtomicUsize,
    requests: AtomicUsize,
    /// Whether the backend is in the pool now: only then does its sessions series exist.
    member: Mutex<bool>,
    /// Its open sessions, to tell them to move.
    movable: Movable,
    rotation: Rotation,
}

/// What a `Place` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Session,
    Request,
}

/// A session's or request's place on a backend, given back when dropped.
pub(crate) struct Place {
    load: Arc<BackendLoad>,
    kind: Kind,
    loads: Arc<Loads>,
    /// A session's: how it learns it must move (taken by the session), and its id.
    ticket: Option<Ticket>,
    ticket_id: Option<u64>,
}

impl Loads {
    pub(crate) fn new(pool: &str, metrics: &Metrics) -> Arc<Loads> {
        Arc::new(Loads {
            pool: pool.to_string(),
            gauge: metrics.backend_sessions.clone(),
            backends: ArcSwap::default(),
            insert: Mutex::new(()),
            queue: Queue::default(),
            queue_wait: metrics.queue_wait.with_label_values(&[pool]),
            queue_waiting: metrics.queue_waiting.with_label_values(&[pool]),
            ejections: metrics.ejections.clone(),
            policy: ArcSwap::default(),
            populated: AtomicBool::new(false),
            ramp_until: std::sync::atomic::AtomicU64::new(0),
            draining: AtomicUsize::new(0),
        })
    }

    /// A connect failure, reset or 502 from `addr`: with `passive_health`, enough of them in
    /// a row take it out of rotation for `eject` (and move its sessions, as a failed check
    /// does).
    pub(crate) fn failed(&self, addr: &SocketAddr) {
        let policy = self.policy();
        let (Some(passive), Some(load)) = (policy.passive, self.backends.load().get(addr).cloned()) else { return };
        if let Some(until) = load.rotation.failed(passive.failures, passive.eject, now_ms()) {
            self.note_entry(until);
            log::warn!(
                "pool {}: backend {addr} failed {} times in a row, out of rotation for {:?}",
                self.pool,
                passive.failures,
                passive.eject
            );
            self.ejections.with_label_values(&[&self.pool, &load.label]).inc();
            self.backend_down(addr);
        }
    }

    /// `addr` answered: its count of failures starts over.
    pub(crate) fn succeeded(&self, addr: &SocketAddr) {
        if let Some(load) = self.backends.load().get(addr) {
            load.rotation.succeeded();
        }
    }

    /// Not ejected by passive health.
    pub(crate) fn in_rotation(&self, addr: &SocketAddr) -> bool {
        if self.policy.load().passive.is_none() {
            return true;
        }
        self.backends.load().get(addr).is_none_or(|b| !b.rotation.ejected(now_ms()))
    }

    /// `Some` while a backend of the pool may be ramping up (slow start).
    pub(crate) fn ramping(&self) -> Option<()> {
        // Without slow start (or long after the last entry) no clock is read per request.
        let until = self.ramp_until.load(Ordering::Relaxed);
        (until != 0 && now_ms() < until).then_some(())
    }

    /// A backend enters rotation at `at`: with slow start, the pool ramps until the window
    /// after it has passed.
    fn note_entry(&self, at: u64) {
        if let Some(window) = self.policy.load().slow_start {
            self.ramp_until.fetch_max(at + window.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// The share of its weight `addr` gets now, in thousandths (slow start).
    pub(crate) fn ramp(&self, addr: &SocketAddr) -> u64 {
        let Some(slow_start) = self.policy.load().slow_start else { return 1000 };
        self.backends.load().get(addr).map_or(1000, |b| b.rotation.ramp(Some(slow_start), now_ms()))
    }

    /// The settings of the pool built last.
    pub(crate) fn configure(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    fn policy(&self) -> Policy {
        **self.policy.load()
    }

    /// A backend left rotation (`healthy: false`) or came back.
    pub(crate) fn health_changed(&self, addr: SocketAddr, healthy: bool) {
        if healthy {
            self.backend(addr).rotation.entered(now_ms());
            self.note_entry(now_ms());
        } else {
            self.backend_down(&addr);
        }
    }

    /// Tells the `n` sessions idle longest on `addr` to move, over the next second.
    pub(crate) fn rebalance(&self, addr: &SocketAddr, n: usize) -> usize {
        let Some(load) = self.backends.load().get(addr).cloned() else { return 0 };
        load.movable.move_idlest(n, Move::Rebalance, Duration::from_secs(1))
    }

    /// Tells the sessions on `addr` to move, if the pool says so; how many.
    fn backend_down(&self, addr: &SocketAddr) -> usize {
        let policy = self.policy();
        let Some(load) = self.backends.load().get(addr).cloned() else { return 0 };
        if !policy.close_on_down {
            return 0;
        }
        let moved = load.movable.move_all(Move::BackendDown, policy.spread);
        if moved > 0 {
            log::warn!("pool {}: moving {moved} session(s) off {addr}, over {:?}", self.pool, policy.spread);
        }
        moved
    }

    /// Sessions plus in-flight requests on `addr` (0 for a backend nothing went to yet).
    pub(crate) fn load(&self, addr: &SocketAddr) -> usize {
        self.backends.load().get(addr).map_or(0, |b| b.load())
    }

    /// Open sessions on `addr`.
    pub(crate) fn sessions(&self, addr: &SocketAddr) -> usize {
        self.backends.load().get(addr).map_or(0, |b| b.sessions.load(Ordering::Relaxed))
    }

    /// In-flight HTTP requests on `addr`.
    pub(crate) fn requests(&self, addr: &SocketAddr) -> usize {
        self.backends.load().get(addr).map_or(0, |b| b.requests.load(Ordering::Relaxed))
    }

    /// Open sessions on `addr` that are staying (not told to move).
    pub(crate) fn staying(&self, addr: &SocketAddr) -> usize {
        let backends = self.backends.load();
        backends.get(addr).map_or(0, |b| b.sessions.load(Ordering::Relaxed).saturating_sub(b.movable.leaving()))
    }

    /// Takes a place of `kind` on `addr`.
    pub(crate) fn place(self: &Arc<Self>, addr: SocketAddr, kind: Kind) -> Place {
        let load = self.backend(addr);
        match kind {
            Kind::Request => {
                load.requests.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Session => {
                let now = load.sessions.fetch_add(1, Ordering::Relaxed) + 1;
                self.report(&load, now);
            }
        }
        self.place_on(load, kind)
    }

    /// A session's place on `addr` if it holds fewer than `cap` sessions.
    pub(crate) fn try_session(self: &Arc<Self>, addr: SocketAddr, cap: usize) -> Option<Place> {
        let load = self.backend(addr);
        let mut now = load.sessions.load(Ordering::Relaxed);
        // Bounded: each retry means another session took or left a place meanwhile.
        for _ in 0..64 {
            if now >= cap {
                return None;
            }
            match load.sessions.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.report(&load, now + 1);
                    return Some(self.place_on(load, Kind::Session));
                }
                Err(actual) => now = actual,
            }
        }
        None
    }

    fn place_on(self: &Arc<Self>, load: Arc<BackendLoad>, kind: Kind) -> Place {
        let ticket = (kind == Kind::Session).then(|| load.movable.register());
        let ticket_id = ticket.as_ref().map(|t| t.id);
        Place { load, kind, loads: self.clone(), ticket, ticket_id }
    }

    fn backend(&self, addr: SocketAddr) -> Arc<BackendLoad> {
        if let Some(load) = self.backends.load().get(&addr) {
            return load.clone();
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(load) = self.backends.load().get(&addr) {
            return load.clone();
        }
        let load = Arc::new(BackendLoad {
            label: addr.to_string(),
            sessions: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            member: Mutex::new(true),
            movable: Movable::default(),
            rotation: Rotation::default(),
        });
        let mut next = HashMap::clone(&self.backends.load());
        next.insert(addr, load.clone());
        self.backends.store(Arc::new(next));
        load
    }

    /// Sets the sessions series of `load` to `sessions`, if the backend is in the pool.
    fn report(&self, load: &BackendLoad, sessions: usize) {
        let member = load.member.lock().unwrap_or_else(|e| e.into_inner());
        if *member {
            self.gauge.with_label_values(&[&self.pool, &load.label]).set(sessions as i64);
        }
    }

    /// The pool's backends are `now`: series of those that left go (their count stays
    /// while their sessions do), new ones get theirs, and entries nothing is on any more
    /// are forgotten.
    pub(crate) fn members(&self, now: &HashSet<SocketAddr>) {
        // The pool's first backends are in rotation from the start; later ones join.
        let joining = self.populated.swap(!now.is_empty(), Ordering::Relaxed);
        for addr in now {
            let known = self.backends.load().contains_key(addr);
            let load = self.backend(*addr);
            let mut member = load.member.lock().unwrap_or_else(|e| e.into_inner());
            if (!known || !*member) && joining {
                load.rotation.entered(now_ms());
                self.note_entry(now_ms());
            }
            *member = true;
            drop(member);
            self.report(&load, load.sessions.load(Ordering::Relaxed));
        }
        let policy = self.policy();
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::clone(&self.backends.load());
        next.retain(|addr, load| {
            if now.contains(addr) {
                return true;
            }
            let mut member = load.member.lock().unwrap_or_else(|e| e.into_inner());
            if *member {
                *member = false;
                // A drained backend that leaves the pool is gone: back, it starts afresh.
                if load.rotation.set_drained(false) {
                    self.draining.fetch_sub(1, Ordering::Relaxed);
                }
                let _ = self.gauge.remove_label_values(&[&self.pool, &load.label]);
                let _ = self.ejections.remove_label_values(&[&self.pool, &load.label]);
                if policy.close_on_down {
                    load.movable.move_all(Move::BackendDown, policy.spread);
                }
            }
            load.load() > 0
        });
        self.backends.store(Arc::new(next));
    }

    /// The pool is gone: all its series go.
    pub(crate) fn remove_all(&self) {
        self.members(&HashSet::new());
    }
}

impl BackendLoad {
    fn load(&self) -> usize {
        self.sessions.load(Ordering::Relaxed) + self.requests.load(Ordering::Relaxed)
    }
}

impl Place {
    /// The session's activity clock (its tunnel touches it); `None` for a request.
    pub(crate) fn activity(&self) -> Option<Arc<Activity>> {
        self.ticket.as_ref().map(|t| t.activity.clone())
    }

    /// The session's id (the admin API's); `None` for a request.
    pub(crate) fn id(&self) -> Option<u64> {
        self.ticket_id
    }

    /// The session is open: what the admin API shows of it.
    pub(crate) fn describe(&self, view: Arc<dyn SessionView>) {
        if let Some(id) = self.ticket_id {
            self.load.movable.describe(id, view);
        }
    }

    /// Resolves with why once this session must move off its backend; never if it need not
    /// (or for a request).
    pub(crate) fn moved(&mut self) -> impl std::future::Future<Output = Move> + Send + 'static {
        let ticket = self.ticket.take();
        async move {
            match ticket {
                Some(t) => t.moved().await,
                None => std::future::pending().await,
            }
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(id) = self.ticket_id {
            self.load.movable.unregister(id);
        }
        match self.kind {
            Kind::Request => {
                self.load.requests.fetch_sub(1, Ordering::Relaxed);
            }
            Kind::Session => {
                let now = self.load.sessions.fetch_sub(1, Ordering::Relaxed) - 1;
                self.loads.report(&self.load, now);
                self.loads.queue.wake_one();
            }
        }
    }
}

mod operator;
#[cfg(test)]
mod tests;
