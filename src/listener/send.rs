//! The send timeout of HTTP/1 connections (`limits.send_timeout`, nginx's `send_timeout`):
//! a client that accepts no byte of what wsgate writes to it for that long has stopped
//! reading, and its connection is closed, releasing the backend connection behind it.
//!
//! Measured on the socket, not per response chunk: Pingora's own write timeout covers body
//! writes only, so a client that stops reading just before the end of an answer (the last
//! flush, a chunked body's last chunk, a response head behind a full socket buffer) would
//! hold the connection for ever. HTTP/2 streams stall on flow control rather than on the
//! socket: the proxy sets Pingora's per-stream write timeout for those.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Debug, Default)]
pub(super) struct SendClock {
    /// In ms; 0 is off (a WebSocket tunnel bounds its own writes, HTTP/2 its streams').
    timeout_ms: AtomicU64,
    /// Runs from the first write that could not go on since the last one that did. Kept
    /// once allocated and reset for each stall: a stall is rare, a write is not.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl SendClock {
    pub(super) fn new(timeout: Option<Duration>) -> SendClock {
        let clock = SendClock::default();
        clock.set(timeout);
        clock
    }

    pub(super) fn set(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |t| t.as_millis().clamp(1, u64::MAX as u128) as u64);
        self.timeout_ms.store(ms, Ordering::Release);
    }

    /// After each write, flush or shutdown: whether it has been `pending` (no byte taken)
    /// since the stall began for the whole timeout. Any call that was not pending ends a
    /// stall. A pending call arms the timer with the writer's waker, so a writer parked on
    /// a client that reads nothing is woken when the time is up.
    pub(super) fn expired(&mut self, cx: &mut Context<'_>, pending: bool) -> bool {
        if !pending {
            self.armed = false;
            return false;
        }
        let ms = self.timeout_ms.load(Ordering::Acquire);
        if ms == 0 {
            return false;
        }
        if !self.armed {
            let due = Instant::now() + Duration::from_millis(ms);
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(due),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(due))),
            }
            self.armed = true;
        }
        let expired = self.timer.as_mut().is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if expired {
            self.armed = false;
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::SendClock;
    use std::time::Duration;
    use tokio::io::AsyncWrite;

    /// Writes into a pipe nobody reads: pending from the moment the pipe is full.
    #[tokio::test]
    async fn a_stall_expires_after_the_timeout_and_progress_restarts_it() {
        let (mut tx, mut rx) = tokio::io::duplex(8);
        let mut clock = SendClock::new(Some(Duration::from_millis(100)));
        let started = tokio::time::Instant::now();
        let timed_out = std::future::poll_fn(|cx| {
            let pending = std::pin::Pin::new(&mut tx).poll_write(cx, b"0123456789abcdef").is_pending();
            if clock.expired(cx, pending) {
                std::task::Poll::Ready(true)
            } else if pending {
                std::task::Poll::Pending
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        });
        assert!(tokio::time::timeout(Duration::from_secs(2), timed_out).await.expect("the stall expires"));
        assert!(started.elapsed() >= Duration::from_millis(100));

        // Progress (the reader takes the bytes) disarms it; off means never.
        let mut buf = [0u8; 8];
        tokio::io::AsyncReadExt::read_exact(&mut rx, &mut buf).await.unwrap();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(!clock.expired(&mut cx, false));
        clock.set(None);
        assert!(!clock.expired(&mut cx, true), "off");
    }
}
