//! Per-session limits on what a client sends (`client_messages_per_second`,
//! `client_bytes_per_second`): token buckets that bound each read.
//!
//! A read never takes more bytes than the byte bucket holds, nor more than `MIN_FRAME`
//! bytes per message token (a client's smallest frame is a masked, empty one: 6 bytes), so a
//! read can only complete about as many messages as there are tokens. With `throttle` an
//! empty bucket stops the reading until it refills (TCP back-pressure slows the client;
//! nothing is dropped or reordered); with `close` a client that sends past its bucket gets
//! Close 1008.

use crate::config::model::{Bucket, ClientRate, OnRateExceeded};
use pingora_prometheus::prometheus::IntCounter;
use std::time::{Duration, Instant};

/// A client's smallest frame: 2 header bytes and a 4-byte masking key.
const MIN_FRAME: usize = 6;
/// A throttled client waits for at least this many byte tokens (or its whole burst), so
/// that a throttled stream is read in chunks, not byte by byte.
const MIN_BYTES_READ: f64 = 4096.0;

/// The counters of a route and pool: times reading paused, sessions closed.
pub(crate) struct RateMeters {
    pub(crate) throttled: IntCounter,
    pub(crate) closed: IntCounter,
}

/// A route's limits and the counters to count them in.
pub(crate) struct RateSpec {
    pub(crate) rate: ClientRate,
    pub(crate) meters: RateMeters,
}

struct Tokens {
    bucket: Bucket,
    tokens: f64,
    at: Instant,
}

impl Tokens {
    fn new(bucket: Bucket, now: Instant) -> Tokens {
        Tokens { bucket, tokens: bucket.burst, at: now }
    }
    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.bucket.rate;
        self.tokens = (self.tokens + earned).min(self.bucket.burst);
        self.at = now;
    }
    /// When the bucket will hold `want` tokens.
    fn when(&self, want: f64) -> Instant {
        self.at + Duration::from_secs_f64(((want - self.tokens) / self.bucket.rate).max(0.0))
    }
}

/// What the next read may do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Allowance {
    /// Read at most this many bytes.
    Read(usize),
    /// Read nothing before this instant (throttled).
    Wait(Instant),
}

/// One session's buckets.
pub(super) struct Limiter<'a> {
    messages: Option<Tokens>,
    bytes: Option<Tokens>,
    close: bool,
    meters: &'a RateMeters,
    /// Set while throttled, so a pause is counted once.
    waiting: bool,
    /// The client went past its bucket (`close`): reported once.
    over: bool,
}

impl<'a> Limiter<'a> {
    pub(super) fn new(spec: &'a RateSpec, now: Instant) -> Limiter<'a> {
        Limiter {
            messages: spec.rate.messages.map(|b| Tokens::new(b, now)),
            bytes: spec.rate.bytes.map(|b| Tokens::new(b, now)),
            close: spec.rate.on_exceeded == OnRateExceeded::Close,
            meters: &spec.meters,
            waiting: false,
            over: false,
        }
    }

    /// How much the next read may take at `now`.
    pub(super) fn allowance(&mut self, now: Instant) -> Allowance {
        let mut read = usize::MAX;
        let mut wait: Option<Instant> = None;
        if let Some(t) = self.messages.as_mut() {
            t.refill(now);
            if t.tokens < 1.0 && !self.close {
                wait = Some(t.when(1.0));
            }
            read = read.min((t.tokens.max(1.0) as usize).saturating_mul(MIN_FRAME));
        }
        if let Some(t) = self.bytes.as_mut() {
            t.refill(now);
            let enough = t.bucket.burst.min(MIN_BYTES_READ);
            if t.tokens < enough && !self.close {
                wait = wait.max(Some(t.when(enough)));
            }
            read = read.min(t.tokens.max(1.0) as usize);
        }
        match wait {
            Some(until) => {
                if !std::mem::replace(&mut self.waiting, true) {
                    self.meters.throttled.inc();
                }
                Allowance::Wait(until)
            }
            None => {
                self.waiting = false;
                Allowance::Read(read)
            }
        }
    }

    /// A read of `bytes` completed `messages`: true when the client went past its bucket
    /// and the session must close (`close`).
    pub(super) fn spent(&mut self, bytes: usize, messages: u64) -> bool {
        let mut over = false;
        for (t, n) in [(self.messages.as_mut(), messages as f64), (self.bytes.as_mut(), bytes as f64)] {
            if let Some(t) = t {
                t.tokens -= n;
                over |= t.tokens < 0.0;
            }
        }
        let first = over && self.close && !std::mem::replace(&mut self.over, true);
        if first {
            self.meters.closed.inc();
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(messages: Option<(f64, f64)>, bytes: Option<(f64, f64)>, on: OnRateExceeded) -> RateSpec {
        let bucket = |(rate, burst)| Bucket { rate, burst };
        RateSpec {
            rate: ClientRate { messages: messages.map(bucket), bytes: bytes.map(bucket), on_exceeded: on },
            meters: RateMeters {
                throttled: IntCounter::new("t", "t").unwrap(),
                closed: IntCounter::new("c", "c").unwrap(),
            },
        }
    }

    #[test]
    fn reads_are_bounded_by_the_tokens_and_an_empty_bucket_waits_for_one() {
        let s = spec(Some((10.0, 20.0)), None, OnRateExceeded::Throttle);
        let t0 = Instant::now();
        let mut l = Limiter::new(&s, t0);
        assert_eq!(l.allowance(t0), Allowance::Read(20 * MIN_FRAME));
        assert!(!l.spent(120, 20));
        assert_eq!(l.allowance(t0), Allowance::Wait(t0 + Duration::from_millis(100)), "one token takes 100 ms");
        assert_eq!(l.allowance(t0), Allowance::Wait(t0 + Duration::from_millis(100)));
        assert_eq!(s.meters.throttled.get(), 1, "one pause counted once");
        assert_eq!(l.allowance(t0 + Duration::from_millis(500)), Allowance::Read(5 * MIN_FRAME));
        assert_eq!(l.allowance(t0 + Duration::from_secs(60)), Allowance::Read(20 * MIN_FRAME), "at most the burst");
    }

    #[test]
    fn bytes_are_read_in_chunks_once_throttled() {
        let s = spec(None, Some((1000.0, 10_000.0)), OnRateExceeded::Throttle);
        let t0 = Instant::now();
        let mut l = Limiter::new(&s, t0);
        assert_eq!(l.allowance(t0), Allowance::Read(10_000));
        assert!(!l.spent(9_000, 3));
        assert_eq!(l.allowance(t0), Allowance::Wait(t0 + Duration::from_millis(3096)), "until 4096 tokens");
    }

    #[test]
    fn close_reads_on_and_reports_a_client_past_its_bucket() {
        let s = spec(Some((1.0, 2.0)), None, OnRateExceeded::Close);
        let t0 = Instant::now();
        let mut l = Limiter::new(&s, t0);
        assert!(!l.spent(12, 2));
        assert_eq!(l.allowance(t0), Allowance::Read(MIN_FRAME), "never waits");
        assert!(l.spent(6, 1), "one message past the bucket");
        assert!(!l.spent(6, 1), "reported once");
        assert_eq!((s.meters.closed.get(), s.meters.throttled.get()), (1, 0));
    }
}
