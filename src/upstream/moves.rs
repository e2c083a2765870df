//! Moving sessions off a backend. A session's place on its backend carries a ticket; the
//! backend's `Movable` reaches every open ticket, so wsgate can tell the sessions of a
//! backend that left rotation (or carries too many) to close and reconnect elsewhere.
//! Each is given a delay, so that a backend's sessions do not all reconnect at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Why a session is told to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Its backend left rotation (health checks, passive health) or the pool.
    BackendDown,
    /// Its backend holds more than its share of the pool's sessions.
    Rebalance,
    /// An operator drains its backend (admin API).
    Drained,
    /// An operator closes it with this code (admin API).
    Closed(u16),
}

type Order = (Move, Duration);

/// When a session last moved a byte: its tunnel touches it, the rebalancer reads it (idle
/// sessions move first). Milliseconds since one process-wide instant, so sessions compare.
#[derive(Debug, Default)]
pub(crate) struct Activity(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Now on the same clock, in milliseconds.
pub(crate) fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// The instant `ms` milliseconds into that clock.
pub(crate) fn at_ms(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms)
}

impl Activity {
    pub(crate) fn new() -> Arc<Activity> {
        let activity = Arc::new(Activity::default());
        activity.touch();
        activity
    }
    pub(crate) fn touch(&self) {
        self.set(now_ms());
    }
    /// A byte moved at `ms` (from `now_ms`).
    pub(crate) fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::Relaxed);
    }
    pub(crate) fn last(&self) -> Instant {
        epoch() + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// What the admin API sees of an open session.
pub(crate) trait SessionView: Send + Sync {
    fn report(&self) -> SessionReport<'_>;
    /// The reason the client will be given with `code` when an operator closes it.
    fn give_reason(&self, code: u16, reason: &str);
}

/// One open session, as `GET /sessions` lists it (`_in`: client to backend).
#[derive(Debug, Clone)]
pub(crate) struct SessionReport<'a> {
    pub(crate) id: u64,
    pub(crate) client: Option<std::net::IpAddr>,
    pub(crate) route: &'a str,
    pub(crate) upstream: &'a str,
    pub(crate) backend: std::net::SocketAddr,
    pub(crate) subprotocol: Option<&'a str>,
    pub(crate) age: Duration,
    pub(crate) idle: Duration,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
}

/// Session ids, unique in the process (the admin API closes a session by its id).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Open {
    /// `None` once the session has been told to move.
    order: Option<oneshot::Sender<Order>>,
    activity: Arc<Activity>,
    /// Set once the session is open (after its 101).
    view: Option<Arc<dyn SessionView>>,
}

/// The open sessions of one backend.
#[derive(Default)]
pub(crate) struct Movable {
    open: Mutex<HashMap<u64, Open>>,
    /// Sessions told to move that have not closed yet.
    leaving: std::sync::atomic::AtomicUsize,
}

/// A session's side: resolves when it must move.
pub(crate) struct Ticket {
    pub(crate) id: u64,
    pub(crate) activity: Arc<Activity>,
    order: oneshot::Receiver<Order>,
}

impl Movable {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self) -> Ticket {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, order) = oneshot::channel();
        let activity = Activity::new();
        self.open().insert(id, Open { order: Some(tx), activity: activity.clone(), view: None });
        Ticket { id, activity, order }
    }

    /// The session `id` is open: what the admin API shows of it.
    pub(crate) fn describe(&self, id: u64, view: Arc<dyn SessionView>) {
        if let Some(open) = self.open().get_mut(&id) {
            open.view = Some(view);
        }
    }

    pub(crate) fn unregister(&self, id: u64) {
        if self.open().remove(&id).is_some_and(|o| o.order.is_none()) {
            self.leaving.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Sessions told to move that are still open (they are about to leave).
    pub(crate) fn leaving(&self) -> usize {
        self.leaving.load(Ordering::Relaxed)
    }

    /// The open sessions' views.
    pub(crate) fn views(&self) -> Vec<Arc<dyn SessionView>> {
        self.open().values().filter_map(|o| o.view.clone()).collect()
    }

    /// Tells the open session `id` to close now with `code` (and `reason`, for the client):
    /// `None` if it is not here, `Some(false)` if it was already told to move.
    pub(crate) fn close(&self, id: u64, code: u16, reason: &str) -> Option<bool> {
        let order = {
            let mut open = self.open();
            let entry = open.get_mut(&id).filter(|o| o.view.is_some())?;
            if let (Some(view), Some(_)) = (&entry.view, &entry.order) {
                view.give_reason(code, reason);
            }
            entry.order.take()
        };
        Some(order.is_some_and(|tx| self.send(vec![tx], Move::Closed(code), vec![Duration::ZERO]) == 1))
    }

    /// Tells every open session to move, each after a delay uniform in `0..spread`; how many.
    pub(crate) fn move_all(&self, why: Move, spread: Duration) -> usize {
        let orders: Vec<_> = self.open().values_mut().filter_map(|o| o.order.take()).collect();
        let delays = orders.iter().map(|_| spread.mul_f64(fastrand::f64())).collect();
        self.send(orders, why, delays)
    }

    /// Tells the `n` sessions idle longest to move, each after a delay uniform in
    /// `0..spread`; how many were told.
    pub(crate) fn move_idlest(&self, n: usize, why: Move, spread: Duration) -> usize {
        let orders = self.idlest_first(n);
        let delays = orders.iter().map(|_| spread.mul_f64(fastrand::f64())).collect();
        self.send(orders, why, delays)
    }

    /// Tells every open session to move over `window`, the idlest first, evenly spaced;
    /// how many were told.
    pub(crate) fn move_idle_first(&self, why: Move, window: Duration) -> usize {
        let orders = self.idlest_first(usize::MAX);
        let n = orders.len().max(1) as f64;
        let delays = (0..orders.len()).map(|i| window.mul_f64(i as f64 / n)).collect();
        self.send(orders, why, delays)
    }

    /// The orders of the `n` staying sessions idle longest, idlest first.
    fn idlest_first(&self, n: usize) -> Vec<oneshot::Sender<Order>> {
        let mut open = self.open();
        let mut by_idle: Vec<(Instant, u64)> =
            open.iter().filter(|(_, o)| o.order.is_some()).map(|(id, o)| (o.activity.last(), *id)).collect();
        by_idle.sort_unstable();
        by_idle.iter().take(n).filter_map(|(_, id)| open.get_mut(id)?.order.take()).collect()
    }

    /// Sends each of `orders` (taken from their sessions) its delay; how many got one.
    fn send(&self, orders: Vec<oneshot::Sender<Order>>, why: Move, delays: Vec<Duration>) -> usize {
        self.leaving.fetch_add(orders.len(), Ordering::Relaxed);
        orders.into_iter().zip(delays).map(|(tx, delay)| tx.send((why, delay)).is_ok()).filter(|sent| *sent).count()
    }
}

impl Ticket {
    /// Resolves with why once the session must move (after its delay); never if it need not.
    pub(crate) async fn moved(self) -> Move {
        match self.order.await {
            Ok((why, delay)) => {
                tokio::time::sleep(delay).await;
                why
            }
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn every_open_session_is_told_within_the_spread() {
        let movable = Movable::default();
        let tickets: Vec<Ticket> = (0..20).map(|_| movable.register()).collect();
        let ids: Vec<u64> = tickets.iter().map(|t| t.id).collect();
        let gone = movable.register();
        movable.unregister(gone.id);
        let started = tokio::time::Instant::now();
        assert_eq!(movable.move_all(Move::BackendDown, Duration::from_secs(10)), 20);
        // Each session waits on its own (concurrently), as open sessions do.
        let at = futures_util::future::join_all(tickets.into_iter().map(|t| async move {
            assert_eq!(t.moved().await, Move::BackendDown);
            started.elapsed()
        }))
        .await;
        assert!(at.iter().all(|d| *d <= Duration::from_secs(10)), "{at:?}");
        assert!(at.iter().max() > at.iter().min(), "spread, not all at once: {at:?}");
        assert_eq!(movable.move_all(Move::BackendDown, Duration::ZERO), 0, "each session is told once");
        assert_eq!(movable.leaving(), 20);
        for id in ids {
            movable.unregister(id);
        }
        assert_eq!(movable.leaving(), 0, "told sessions that closed are no longer leaving");
        let unregistered = tokio::time::timeout(Duration::from_secs(60), gone.moved()).await;
        assert!(unregistered.is_err(), "a session that left is not told");
    }

    #[tokio::test(start_paused = true)]
    async fn the_idlest_sessions_move_first() {
        let movable = Movable::default();
        let tickets: Vec<Ticket> = (0..4).map(|_| movable.register()).collect();
        tokio::time::advance(Duration::from_millis(10)).await;
        std::thread::sleep(Duration::from_millis(5)); // the activity clock is the real one
        tickets[1].activity.touch();
        tickets[3].activity.touch();
        assert_eq!(movable.move_idlest(2, Move::Rebalance, Duration::ZERO), 2);
        let told: Vec<bool> = tickets.into_iter().map(|mut t| t.order.try_recv().is_ok()).collect();
        assert_eq!(told, [true, false, true, false], "the two idle ones");
    }
}
