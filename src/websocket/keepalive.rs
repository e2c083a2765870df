//! Keepalive and dead-peer detection (`websocket.ping_interval`, `ping_timeout`).
//!
//! Each side's pump notes when that side last sent a byte; the supervisor checks both sides
//! whenever it wakes and sleeps until the next thing due, so a busy session costs one store
//! per read and one wake-up per interval. A side silent for `interval` gets a Ping from the
//! pump that writes to it, at that direction's next frame boundary; any byte back proves it
//! alive; nothing for `timeout` after the Ping went out makes it dead. The Pong answering
//! wsgate's Ping is cut out of the stream (`cut`), so no peer ever sees it.

use crate::config::model::Keepalive;
use crate::upstream::moves::{at_ms, now_ms};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// `Liveness::ping`: no Ping outstanding.
const IDLE: u64 = 0;
/// `Liveness::ping`: a Ping is due; the pump writing to this side sends it.
const DUE: u64 = u64::MAX;

/// One side's liveness, in milliseconds on `moves::now_ms`'s clock.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// When this side last sent a byte.
    heard: AtomicU64,
    /// `IDLE`, `DUE`, or when wsgate's Ping went out.
    ping: AtomicU64,
    /// Wakes the pump that writes to this side when a Ping is due.
    pub(super) wake: Notify,
}

/// What a side needs after a check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing until this time (ms).
    Until(u64),
    /// Silent for `timeout` after wsgate's Ping.
    Dead,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX / 4)) as u64
}

impl Liveness {
    pub(super) fn new(now: u64) -> Liveness {
        Liveness { heard: AtomicU64::new(now), ..Liveness::default() }
    }

    /// This side sent a byte at `now`.
    pub(super) fn heard(&self, now: u64) {
        self.heard.store(now, Ordering::Relaxed);
    }

    /// Whether the pump writing to this side owes it a Ping.
    pub(super) fn ping_due(&self) -> bool {
        self.ping.load(Ordering::Relaxed) == DUE
    }

    /// The pump wrote the Ping at `now`.
    pub(super) fn ping_sent(&self, now: u64) {
        self.ping.store(now.max(1), Ordering::Relaxed);
    }

    /// Decides what this side needs at `now`, asking for a Ping when one is due.
    pub(super) fn check(&self, now: u64, keepalive: &Keepalive) -> Verdict {
        let (interval, timeout) = (ms(keepalive.interval), ms(keepalive.timeout));
        let heard = self.heard.load(Ordering::Relaxed);
        match self.ping.load(Ordering::Relaxed) {
            IDLE if now >= heard + interval => {
                self.ping.store(DUE, Ordering::Relaxed);
                self.wake.notify_one();
                Verdict::Until(now + timeout)
            }
            IDLE => Verdict::Until(heard + interval),
            // Not at a frame boundary yet: the timeout runs from when it goes out.
            DUE => Verdict::Until(now + timeout),
            // Same millisecond counts: a loopback Pong can come back within it.
            sent if heard >= sent => {
                self.ping.store(IDLE, Ordering::Relaxed);
                Verdict::Until(heard + interval)
            }
            sent if now >= sent + timeout => Verdict::Dead,
            sent => Verdict::Until(sent + timeout),
        }
    }
}

/// Checks each side (named by `S`): when the supervisor must look again, or the side that
/// is dead.
pub(super) fn check<S: Copy>(sides: [(S, &Liveness); 2], keepalive: &Keepalive) -> Result<Instant, S> {
    let now = now_ms();
    let mut next = u64::MAX;
    for (side, liveness) in sides {
        match liveness.check(now, keepalive) {
            Verdict::Until(at) => next = next.min(at),
            Verdict::Dead => return Err(side),
        }
    }
    Ok(at_ms(next))
}

/// Removes the byte ranges `cuts` (in order, not overlapping, within `buf[..end]`) from the
/// buffer; the new end. `shift` then maps a position from before to after.
pub(super) fn cut(buf: &mut [u8], cuts: &[(usize, usize)], end: usize) -> usize {
    let mut write = cuts[0].0;
    for (i, &(_, stop)) in cuts.iter().enumerate() {
        let next = cuts.get(i + 1).map_or(end, |c| c.0);
        buf.copy_within(stop..next, write);
        write += next - stop;
    }
    write
}

/// Where position `p` (before `cut`) lands after it: a position inside a cut range lands
/// where the range was.
pub(super) fn shift(cuts: &[(usize, usize)], p: usize) -> usize {
    let removed: usize = cuts.iter().map(|&(start, stop)| stop.min(p).saturating_sub(start)).sum();
    p - removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(interval: u64, timeout: u64) -> Keepalive {
        Keepalive { interval: Duration::from_millis(interval), timeout: Duration::from_millis(timeout) }
    }

    #[test]
    fn a_silent_side_gets_one_ping_then_is_dead_after_the_timeout() {
        let l = Liveness::new(1000);
        let k = ka(100, 50);
        assert_eq!(l.check(1050, &k), Verdict::Until(1100), "not silent long enough");
        assert_eq!(l.check(1100, &k), Verdict::Until(1150), "silent for the interval: a Ping is due");
        assert!(l.ping_due());
        assert_eq!(l.check(1120, &k), Verdict::Until(1170), "not sent yet: no verdict");
        l.ping_sent(1130);
        assert!(!l.ping_due());
        assert_eq!(l.check(1170, &k), Verdict::Until(1180));
        assert_eq!(l.check(1180, &k), Verdict::Dead);
    }

    #[test]
    fn any_byte_after_the_ping_proves_the_side_alive() {
        let l = Liveness::new(0);
        let k = ka(100, 50);
        let _ = l.check(100, &k);
        l.ping_sent(100);
        l.heard(100);
        assert_eq!(l.check(150, &k), Verdict::Until(200), "heard in the same millisecond counts");
        assert!(!l.ping_due());
        l.heard(180);
        assert_eq!(l.check(200, &k), Verdict::Until(280), "the next Ping waits for a new silence");
    }

    #[test]
    fn cutting_ranges_closes_the_gaps_and_shifts_positions() {
        let mut buf = *b"aaPPbbbQQQc";
        let cuts = [(2, 4), (7, 10)];
        let end = cut(&mut buf, &cuts, 11);
        assert_eq!(&buf[..end], b"aabbbc");
        assert_eq!([0, 2, 3, 4, 7, 8, 10, 11].map(|p| shift(&cuts, p)), [0, 2, 2, 2, 5, 5, 5, 6]);
    }
}
