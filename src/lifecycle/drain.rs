//! Graceful drain: what happens between Pingora's shutdown signal (SIGQUIT after handing the
//! listeners to a new process, or SIGTERM) and the exit of this process.
//!
//! Pingora on its own keeps the process for a fixed `grace_period_seconds` and then drops
//! whatever is still open: WebSocket clients see an abnormal closure (1006) and all
//! reconnect at once. Instead, each open WebSocket session is given a moment spread
//! uniformly over `drain.window`; at that moment its tunnel sends Close 1001 (Going Away)
//! both ways at a frame boundary and lets the closing handshake finish. The process exits
//! as soon as nothing is in flight any more, not after a fixed sleep.

use async_trait::async_trait;
use log::info;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the drain service looks whether the last request or session has ended.
const EXIT_POLL: Duration = Duration::from_millis(50);

pub(crate) struct Drain {
    window: Duration,
    started: watch::Sender<Option<Instant>>,
    /// Requests being served, WebSocket sessions included, and connections not answered yet
    /// (`connections::GatedStream`).
    active: AtomicUsize,
}

/// Counts one request or session as in flight for as long as it lives.
pub(crate) struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drain {
    pub(crate) fn new(window: Duration) -> Arc<Drain> {
        Arc::new(Drain { window, started: watch::channel(None).0, active: AtomicUsize::new(0) })
    }

    pub(crate) fn in_flight(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub(crate) fn begin(&self) {
        self.started.send_if_modified(|started| started.is_none() && started.replace(Instant::now()).is_none());
    }

    /// Resolves when a session should close because of a drain: at a point spread
    /// uniformly over the window after the drain began (never, if no drain begins).
    pub(crate) fn session_deadline(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut started = self.started.subscribe();
        let offset = self.window.mul_f64(fastrand::f64());
        async move {
            let begun = match started.wait_for(Option::is_some).await {
                Ok(begun) => *begun,
                Err(_) => None,
            };
            let Some(begun) = begun else { return std::future::pending().await };
            tokio::time::sleep_until(tokio::time::Instant::from_std(begun + offset)).await;
        }
    }
}

/// Starts the drain on Pingora's shutdown signal and ends the process once nothing is in
/// flight (Pingora's own `grace_period_seconds` timer remains the upper bound).
pub(crate) struct DrainService {
    pub(crate) drain: Arc<Drain>,
}

#[async_trait]
impl BackgroundService for DrainService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.wait_for(|down| *down).await.is_err() {
            return;
        }
        let began = Instant::now();
        info!(
            "draining: {} request(s)/session(s) open; WebSocket sessions get Close 1001 spread over {:?}",
            self.drain.active(),
            self.drain.window
        );
        self.drain.begin();
        // Bounded by the process itself: Pingora ends it after its grace period anyway.
        loop {
            if self.drain.active() == 0 {
                info!("drained in {:?}: nothing in flight, exiting", began.elapsed());
                log::logger().flush();
                std::process::exit(0);
            }
            tokio::time::sleep(EXIT_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_in_flight_work_and_spreads_deadlines_over_the_window() {
        let drain = Drain::new(Duration::from_millis(400));
        let a = drain.in_flight();
        let b = drain.in_flight();
        assert_eq!(drain.active(), 2);
        drop(a);
        assert_eq!(drain.active(), 1);
        drop(b);
        assert_eq!(drain.active(), 0);

        let deadlines: Vec<_> = (0..40)
            .map(|_| {
                let deadline = drain.session_deadline();
                tokio::spawn(async move {
                    deadline.await;
                    Instant::now()
                })
            })
            .collect();
        // Nothing fires before the drain begins.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(deadlines.iter().all(|d| !d.is_finished()));
        let begun = Instant::now();
        drain.begin();
        let mut fired = Vec::new();
        for d in deadlines {
            let at = tokio::time::timeout(Duration::from_secs(2), d).await.expect("fires within the window").unwrap();
            fired.push(at - begun);
        }
        fired.sort();
        assert!(*fired.last().unwrap() < Duration::from_millis(600), "{fired:?}");
        assert!(fired[30] > fired[10] + Duration::from_millis(50), "spread over the window: {fired:?}");
    }
}
