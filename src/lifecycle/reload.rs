//! Live configuration: the routing snapshot every request reads, and SIGHUP reloads that
//! replace it atomically.
//!
//! A request (or WebSocket session) takes the current `Snapshot` when it starts and keeps it
//! to the end, so open sessions continue untouched on what they started with while new
//! requests follow the new config at once. Pools keep their health registry across reloads
//! when their name and what their checks are built from (`CheckSpec`: the health-check
//! settings and `tls`) stay, so a backend that stays keeps its health.
//! TLS certificates are reloaded too (new handshakes get the new ones). What needs new
//! sockets (listener addresses, TLS on/off, HTTP/2 offer, the metrics listener, `server:`,
//! `access_log`, `drain`) is refused by a reload and reported as needing an upgrade.

use crate::config::model::{Discovery, OnBackendDown};
use crate::config::{self, Config};
use crate::lifecycle::ready::Readiness;
use crate::lifecycle::watch::{self, Watch};
use crate::listener::tls::{ListenerCertificates, TlsError};
use crate::proxy::routing::Router;
use crate::telemetry::metrics::Metrics;
use crate::upstream::health::{self, BackendSeries};
use crate::upstream::load::Policy;
use crate::upstream::{initial_backends, CheckSpec, Pool};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use log::{error, info, warn};
use pingora::lb::HealthRegistry;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::task::AbortHandle;

/// Everything a request reads, replaced as a whole by a reload.
pub(crate) struct Snapshot {
    pub(crate) config: Arc<Config>,
    pub(crate) router: Router,
    /// Indexed like `config.upstreams`.
    pub(crate) pools: Vec<Arc<Pool>>,
}

/// Background work of one pool: its health registry's checks and, for DNS pools, the
/// periodic re-resolution.
struct PoolEntry {
    spec: config::model::Upstream,
    registry: Arc<HealthRegistry>,
    /// The pool's health-gauge series; kept while a pool of this name exists.
    series: Arc<BackendSeries>,
    pool: Arc<Pool>,
    health_task: Option<AbortHandle>,
    discovery_task: Option<AbortHandle>,
    rebalance_task: Option<AbortHandle>,
}

impl PoolEntry {
    fn stop(&mut self) {
        let tasks = [self.health_task.take(), self.discovery_task.take(), self.rebalance_task.take()];
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }
}

pub(crate) struct Live {
    current: ArcSwap<Snapshot>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    entries: Mutex<HashMap<String, PoolEntry>>,
    certificates: Arc<ListenerCertificates>,
}

#[derive(Debug)]
pub(crate) enum ReloadOutcome {
    Applied,
    Invalid(ReloadError),
    NeedsUpgrade(Vec<&'static str>),
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    #[error("TLS certificates: {0}")]
    Tls(#[from] TlsError),
    #[error("reload task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ReloadOutcome {
    fn label(&self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "ok",
            ReloadOutcome::Invalid(_) => "invalid",
            ReloadOutcome::NeedsUpgrade(_) => "needs_upgrade",
        }
    }
}

impl Live {
    /// Builds the first snapshot (blocking: DNS pools resolve here). Background tasks start
    /// with `LiveService`.
    pub(crate) fn new(
        config: Arc<Config>,
        config_path: PathBuf,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        certificates: Arc<ListenerCertificates>,
    ) -> Arc<Live> {
        let mut entries = HashMap::new();
        let snapshot = build(config, &mut entries, &metrics, &readiness);
        Arc::new(Live {
            current: ArcSwap::from_pointee(snapshot),
            config_path,
            metrics,
            readiness,
            entries: Mutex::new(entries),
            certificates,
        })
    }

    /// The snapshot for a new request.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Re-reads the config file and applies it if it is valid and needs no new sockets.
    /// Nothing changes otherwise.
    pub(crate) async fn reload(self: &Arc<Self>, shutdown: &ShutdownWatch) -> ReloadOutcome {
        let path = self.config_path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path)).await;
        let config = match loaded {
            Ok(Ok(c)) => Arc::new(c),
            Ok(Err(errors)) => return self.finish(ReloadOutcome::Invalid(errors.into())),
            Err(e) => return self.finish(ReloadOutcome::Invalid(e.into())),
        };
        let blockers = needs_upgrade(&self.snapshot().config, &config);
        if !blockers.is_empty() {
            return self.finish(ReloadOutcome::NeedsUpgrade(blockers));
        }
        // Certificates first: if one fails to load now (a file replaced since validation),
        // nothing at all changes.
        if config.listeners != self.snapshot().config.listeners {
            let (certificates, listeners) = (self.certificates.clone(), config.listeners.clone());
            match tokio::task::spawn_blocking(move || certificates.reload(&listeners)).await {
                Ok(Ok(())) => {
                    info!("reload: TLS certificates replaced; new handshakes use them, open connections keep theirs")
                }
                Ok(Err(e)) => return self.finish(ReloadOutcome::Invalid(e.into())),
                Err(e) => return self.finish(ReloadOutcome::Invalid(e.into())),
            }
        }
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut entries = this.entries.lock().unwrap_or_else(|e| e.into_inner());
            let snapshot = build(config, &mut entries, &this.metrics, &this.readiness);
            this.current.store(Arc::new(snapshot));
        })
        .await;
        if let Err(e) = built {
            return self.finish(ReloadOutcome::Invalid(e.into()));
        }
        self.spawn_tasks(shutdown);
        self.finish(ReloadOutcome::Applied)
    }

    fn finish(&self, outcome: ReloadOutcome) -> ReloadOutcome {
        self.metrics.config_reloads.with_label_values(&[outcome.label()]).inc();
        match &outcome {
            ReloadOutcome::Applied => info!("reload: {} applied; open sessions continue on the previous config", self.config_path.display()),
            ReloadOutcome::Invalid(errors) => error!("reload: {} is invalid, nothing changed:\n{errors}", self.config_path.display()),
            ReloadOutcome::NeedsUpgrade(what) => warn!(
                "reload: changes to {} need new sockets; nothing changed; apply them with an upgrade (wsgate -u, or systemctl reload)",
                what.join(", ")
            ),
        }
        outcome
    }

    /// Starts the background work of pools that have none yet (new or rebuilt ones).
    fn spawn_tasks(&self, shutdown: &ShutdownWatch) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries.values_mut() {
            if entry.health_task.is_none() {
                let service = health::service(&entry.spec, entry.registry.clone());
                let shutdown = shutdown.clone();
                entry.health_task = Some(tokio::spawn(async move { service.start(shutdown).await }).abort_handle());
            }
            if let (None, Some(settings)) = (&entry.rebalance_task, entry.spec.rebalance) {
                let pool = entry.pool.clone();
                entry.rebalance_task = Some(
                    tokio::spawn(async move {
                        let mut active = false;
                        loop {
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            active = pool.rebalance_once(&settings, active);
                        }
                    })
                    .abort_handle(),
                );
            }
            if let (None, Discovery::Dns { every, .. }) = (&entry.discovery_task, &entry.spec.discovery) {
                let (pool, every) = (entry.pool.clone(), *every);
                entry.discovery_task = Some(
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(every).await;
                            pool.refresh().await;
                        }
                    })
                    .abort_handle(),
                );
            }
        }
    }
}

/// Builds a snapshot, reusing each pool's health registry when its name and `CheckSpec` are
/// unchanged, and dropping the background work (and the health series) of pools that went
/// away.
fn build(
    config: Arc<Config>,
    entries: &mut HashMap<String, PoolEntry>,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
) -> Snapshot {
    let mut pools = Vec::with_capacity(config.upstreams.len());
    let mut kept = HashMap::new();
    for spec in &config.upstreams {
        let initial = initial_backends(spec);
        let previous = entries.remove(&spec.name);
        let series =
            previous.as_ref().map_or_else(|| BackendSeries::new(&spec.name, metrics), |old| old.series.clone());
        let (registry, health_task) = match previous {
            Some(mut old) if CheckSpec::of(&old.spec) == CheckSpec::of(spec) => {
                // Same checks: keep the registry (and its health state) and its running checks.
                let task = old.health_task.take();
                old.stop();
                (old.registry, task)
            }
            previous => {
                if let Some(mut old) = previous {
                    old.stop();
                }
                let first_round = initial.iter().filter_map(|b| b.addr.as_inet().copied()).collect::<Vec<_>>();
                (health::registry(spec, first_round, &series, readiness), None)
            }
        };
        let close_on_down = spec.on_backend_down == OnBackendDown::Close;
        let (passive, slow_start) = (spec.passive_health, spec.slow_start);
        series.loads().configure(Policy { close_on_down, spread: config.drain_window, passive, slow_start });
        let pool = Arc::new(Pool::new(spec, registry.clone(), initial, &series));
        kept.insert(
            spec.name.clone(),
            PoolEntry {
                spec: spec.clone(),
                registry,
                series,
                pool: pool.clone(),
                health_task,
                discovery_task: None,
                rebalance_task: None,
            },
        );
        pools.push(pool);
    }
    for (_, mut gone) in entries.drain() {
        gone.stop();
        gone.series.remove_all();
    }
    *entries = kept;
    Snapshot { router: Router::new(&config.routes), config, pools }
}

/// The parts of a config that a reload cannot change in place.
fn needs_upgrade(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut what = Vec::new();
    // Certificates may change (they are reloaded), and websocket_over_http2 (read per
    // connection); what the sockets are may not.
    let sockets = |c: &Config| {
        let tls = |l: &crate::config::model::Listener| l.tls.as_ref().map(|t| t.http2);
        c.listeners.iter().map(|l| (l.address, tls(l))).collect::<Vec<_>>()
    };
    if sockets(old) != sockets(new) {
        what.push("listeners (addresses, TLS on or off, http2)");
    }
    if old.metrics != new.metrics {
        what.push("metrics");
    }
    if old.admin.as_ref().map(|a| a.address) != new.admin.as_ref().map(|a| a.address) {
        what.push("admin.address");
    }
    if old.server != new.server {
        what.push("server");
    }
    if old.access_log != new.access_log {
        what.push("access_log");
    }
    if old.drain_window != new.drain_window {
        what.push("drain");
    }
    what
}

/// Starts the pools' background work and reloads on SIGHUP, and on a change to the config's
/// files with `config_watch` (or `watch`, the command line's `--watch`).
pub(crate) struct LiveService {
    pub(crate) live: Arc<Live>,
    pub(crate) watch: bool,
}

impl LiveService {
    /// The watch the current config asks for: `current` re-armed on its files, or a new one,
    /// or none.
    fn watch_for(&self, current: Option<Watch>) -> Option<Watch> {
        let config = self.live.snapshot().config.clone();
        if !(self.watch || config.config_watch) {
            return None;
        }
        let files = std::iter::once(self.live.config_path.clone()).chain(config.named_files.iter().cloned()).collect();
        match current {
            None => watch::start(files),
            Some(mut w) => {
                if let Err(e) = w.rearm(files) {
                    error!("config_watch: cannot watch the config's files: {e}");
                }
                Some(w)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for LiveService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.live.spawn_tasks(&shutdown);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot listen for SIGHUP, in-place reloads are off: {e}");
                return;
            }
        };
        let mut watch = self.watch_for(None);
        loop {
            tokio::select! {
                _ = hangup.recv() => info!("SIGHUP: reloading {}", self.live.config_path.display()),
                _ = watch::changed(&mut watch) => {
                    info!("config_watch: a file changed, reloading {}", self.live.config_path.display())
                }
                _ = shutdown.changed() => return,
            }
            self.live.reload(&shutdown).await;
            watch = self.watch_for(watch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        config::parse(text, "t.yaml", std::path::Path::new(".")).unwrap()
    }

    const BASE: &str = "listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  a: {backends: ['127.0.0.1:1']}\nroutes:\n  - upstream: a\n";

    #[test]
    fn only_socket_level_changes_need_an_upgrade() {
        let base = parse(BASE);
        assert!(needs_upgrade(&base, &parse(&BASE.replace("127.0.0.1:1", "127.0.0.1:2"))).is_empty());
        assert!(needs_upgrade(&base, &parse(&format!("{BASE}  - {{path_prefix: /x, upstream: a}}\n"))).is_empty());
        assert_eq!(
            needs_upgrade(&base, &parse(&BASE.replace("8080", "8081"))),
            ["listeners (addresses, TLS on or off, http2)"]
        );
        assert_eq!(needs_upgrade(&base, &parse(&format!("server: {{threads: 4}}\n{BASE}"))), ["server"]);
        assert_eq!(needs_upgrade(&base, &parse(&format!("drain: {{window: 5s}}\n{BASE}"))), ["server", "drain"]);
    }
}
