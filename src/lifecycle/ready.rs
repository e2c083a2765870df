//! Readiness: wsgate is ready once its listeners are up (taken over, in an upgrade) and
//! every pool has finished its first round of health checks, so rotation reflects reality.
//!
//! It shows in three places: `GET /ready` on the metrics listener, Pingora's service
//! readiness, and, for a daemon, a marker file next to the pid file holding the pid of the
//! process that is ready. `wsgate --wait-ready` waits for that marker to name the pid in the
//! pid file: systemd's ExecStartPost/ExecReload use it so `systemctl start` and
//! `systemctl reload` return only when the new process really serves. (Pingora's own
//! `daemon_wait_for_ready` releases the parent earlier, as soon as the child can receive
//! the listening sockets.)

use async_trait::async_trait;
use log::info;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::ServiceReadyNotifier;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(20);

pub(crate) struct Readiness {
    pools_pending: AtomicUsize,
}

impl Readiness {
    pub(crate) fn new(pools: usize) -> Arc<Readiness> {
        Arc::new(Readiness { pools_pending: AtomicUsize::new(pools) })
    }
    /// Called once per pool, after its first full round of checks.
    pub(crate) fn pool_checked(&self) {
        let _ = self.pools_pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
    pub(crate) fn is_ready(&self) -> bool {
        self.pools_pending.load(Ordering::Acquire) == 0
    }
}

/// The marker file of a pid file: `/run/wsgate/wsgate.pid` → `/run/wsgate/wsgate.pid.ready`.
pub(crate) fn marker_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".ready");
    PathBuf::from(name)
}

/// Tells Pingora this service is ready once the pools are, and, for a daemon, writes the
/// marker. Started with the other services, i.e. after the listeners exist.
pub(crate) struct ReadyService {
    pub(crate) readiness: Arc<Readiness>,
    /// `Some(pid file)` when running as a daemon.
    pub(crate) marker_for: Option<PathBuf>,
}

#[async_trait]
impl BackgroundService for ReadyService {
    async fn start_with_ready_notifier(&self, shutdown: ShutdownWatch, ready: ServiceReadyNotifier) {
        // Bounded by the pools' health-check timeouts: each backend is checked once, promptly.
        while !self.readiness.is_ready() {
            if *shutdown.borrow() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        if let Some(pid_file) = &self.marker_for {
            let marker = marker_path(pid_file);
            let temp = marker.with_extension("ready.tmp");
            let written =
                std::fs::write(&temp, std::process::id().to_string()).and_then(|()| std::fs::rename(&temp, &marker));
            if let Err(e) = written {
                log::error!("cannot write readiness marker {}: {e}", marker.display());
            }
        }
        info!("ready: listeners up and every pool health-checked once");
        ready.notify_ready();
    }
}

/// `wsgate --wait-ready`: waits until the process named in `pid_file` has declared itself
/// ready, or `timeout` passes.
pub fn wait_ready(pid_file: &Path, timeout: Duration) -> Result<u32, String> {
    let marker = marker_path(pid_file);
    let deadline = Instant::now() + timeout;
    loop {
        let pid = std::fs::read_to_string(pid_file).ok().and_then(|p| p.trim().parse::<u32>().ok());
        let ready = std::fs::read_to_string(&marker).ok().and_then(|p| p.trim().parse::<u32>().ok());
        match (pid, ready) {
            (Some(pid), Some(ready)) if pid == ready => return Ok(pid),
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "not ready after {timeout:?}: pid file {} says {pid:?}, marker {} says {ready:?}",
                    pid_file.display(),
                    marker.display()
                ))
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// The pid of the process `wsgate -d` was started as: after it forks, the parent that waits
/// for its daemon's readiness signal.
static WAITING_PARENT: AtomicI32 = AtomicI32::new(0);
/// Set in that process when it forks (just before).
static FORKED: AtomicBool = AtomicBool::new(false);

/// For `wsgate -d` with Pingora's `daemon_wait_for_ready`: makes the daemon's "ready for the
/// sockets" signal (SIGUSR1) release the waiting parent with exit status 0, whenever it comes.
///
/// Pingora 0.9.1 installs its SIGUSR1 handler in the parent only after forking; a daemon that
/// signals before that (a loaded machine may run the new process first) kills the parent,
/// whose default action for SIGUSR1 is to terminate, and `wsgate -d` (systemd's start and
/// reload) fails although the daemon runs. Call it before Pingora forks. Pingora's handler,
/// once installed, chains to this one (signal-hook-registry keeps the previous handler).
/// Anywhere else (before the fork, in the daemon) SIGUSR1 keeps its default action.
pub fn release_parent_on_ready_signal() {
    extern "C" fn on_ready_signal(signal: libc::c_int) {
        // SAFETY: getpid, _exit, signal and raise are async-signal-safe (signal-safety(7)).
        unsafe {
            if FORKED.load(Ordering::SeqCst) && libc::getpid() == WAITING_PARENT.load(Ordering::SeqCst) {
                libc::_exit(0);
            }
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
    // Set before the fork, not in the parent after it: the daemon may run and signal before
    // the parent returns from fork (CI met it: the parent killed by SIGUSR1 with FORKED unset).
    extern "C" fn before_fork() {
        FORKED.store(true, Ordering::SeqCst);
    }
    WAITING_PARENT.store(std::process::id() as i32, Ordering::SeqCst);
    // SAFETY: both callbacks only touch atomics or make async-signal-safe calls; nothing in
    // wsgate or Pingora uses SIGUSR1 before Pingora's own handler.
    unsafe {
        libc::pthread_atfork(Some(before_fork), None, None);
        libc::signal(libc::SIGUSR1, on_ready_signal as *const () as libc::sighandler_t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_marker_to_name_the_current_pid() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("w.pid");
        assert_eq!(marker_path(&pid_file), dir.path().join("w.pid.ready"));
        std::fs::write(&pid_file, "42\n").unwrap();
        std::fs::write(marker_path(&pid_file), "41").unwrap();
        assert!(wait_ready(&pid_file, Duration::from_millis(100)).unwrap_err().contains("Some(41)"));
        std::fs::write(marker_path(&pid_file), "42").unwrap();
        assert_eq!(wait_ready(&pid_file, Duration::from_millis(100)), Ok(42));
    }

    #[test]
    fn counts_pools_down_to_ready() {
        let r = Readiness::new(2);
        r.pool_checked();
        assert!(!r.is_ready());
        r.pool_checked();
        r.pool_checked();
        assert!(r.is_ready());
    }
}
