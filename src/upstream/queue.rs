//! The waiting room of a pool whose healthy backends are all at `max_sessions_per_backend`:
//! upgrades wait in arrival order for a place, at most `queue.size` of them, each at most
//! `queue.timeout`. A freed place wakes the oldest waiter still waiting, which then picks
//! again; newcomers join behind the waiters instead of taking a freed place first.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::oneshot;

#[derive(Default)]
pub(crate) struct Queue {
    waiters: Mutex<VecDeque<oneshot::Sender<()>>>,
}

impl Queue {
    fn waiters(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<()>>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Joins the queue if fewer than `size` wait: the receiver fires when a place was freed.
    pub(crate) fn join(&self, size: usize) -> Option<oneshot::Receiver<()>> {
        let mut waiters = self.waiters();
        // Those who gave up (timed out, client gone) leave no place taken.
        waiters.retain(|w| !w.is_closed());
        if waiters.len() >= size {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        waiters.push_back(tx);
        Some(rx)
    }

    /// Whether anyone still waits (a newcomer then queues behind them).
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiters().iter().any(|w| !w.is_closed())
    }

    /// A place was freed: wakes the oldest waiter still waiting.
    pub(crate) fn wake_one(&self) {
        let mut waiters = self.waiters();
        while let Some(waiter) = waiters.pop_front() {
            if waiter.send(()).is_ok() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_woken_oldest_first_and_bounded() {
        let q = Queue::default();
        let mut first = q.join(2).unwrap();
        let mut second = q.join(2).unwrap();
        assert!(q.join(2).is_none(), "the queue is full");
        assert!(q.is_waiting());
        q.wake_one();
        assert!(first.try_recv().is_ok(), "the oldest is woken first");
        assert!(second.try_recv().is_err());
        drop(second); // gave up
        assert!(!q.is_waiting());
        q.wake_one(); // nobody left: a no-op
        let _third = q.join(1).expect("a waiter that left frees its place in the queue");
    }
}
