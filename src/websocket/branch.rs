//! A future with a waker of its own, for the arms of the tunnel's `select!`s.
//!
//! A session is one task: both pumps, their close watches and the supervisor's timers are
//! arms of nested `select!`s, and tokio wakes the whole task when any of them is ready. A
//! plain `select!` then polls every arm, so an echo's read on one side also polled the
//! other pump's read, every close watch (each poll takes the watch's lock) and the timers,
//! most of a round trip's work outside the kernel. A `Branch` is polled
//! through to its future only when that future's own waker fired; otherwise its poll is
//! one atomic swap and the task waker's registration.

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub(super) struct Branch<F> {
    future: F,
    signal: Arc<Signal>,
    /// The waker `future` is polled with, made once.
    own: Waker,
}

impl<F: Future + Unpin> Branch<F> {
    pub(super) fn new(future: F) -> Branch<F> {
        // Woken to begin with: the first poll reaches the future.
        let signal = Arc::new(Signal { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Branch { future, own: Waker::from(signal.clone()), signal }
    }
}

impl<F: Future + Unpin> Future for Branch<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Registered before the flag is read: a wake in between is not lost.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(&mut this.future).poll(&mut Context::from_waker(&this.own))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn reaches_its_future_only_when_that_future_was_woken() {
        let (polls, ready) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let mut branch = Branch::new(Probe { polls: polls.clone(), ready: ready.clone() });
        let task = Waker::noop();
        let mut cx = Context::from_waker(task);
        assert!(Pin::new(&mut branch).poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "the first poll goes through");
        for _ in 0..5 {
            assert!(Pin::new(&mut branch).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "not woken: not polled again");
        ready.store(true, Ordering::Relaxed);
        branch.own.wake_by_ref();
        assert!(Pin::new(&mut branch).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_wake_through_its_own_waker_gets_its_future_polled() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let waiter = notify.clone();
        let mut branch = Branch::new(Box::pin(async move { waiter.notified().await }));
        let polled = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            // The first poll registers the branch's own waker with the Notify: unless the
            // notification wakes that waker, the branch never polls its future again.
            tokio::join!(&mut branch, async {
                tokio::task::yield_now().await;
                notify.notify_one();
            })
        })
        .await;
        assert!(polled.is_ok(), "the branch's future was woken, so the task was");
    }
}
