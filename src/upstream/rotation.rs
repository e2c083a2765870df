//! Whether a backend is in rotation beyond what the active health checks say: passive
//! health (`failures` consecutive failures eject it for `eject`, without waiting for the
//! next check round) and slow start (a backend that joins or returns gets a share of new
//! sessions that grows linearly from ~0 to its full weight over `slow_start`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds on the process-wide clock of `moves::Activity` (0: never).
pub(crate) type Ms = u64;

/// One backend's rotation state.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    failures: AtomicU32,
    ejected_until: AtomicU64,
    /// When it last entered rotation (0: it has been in from the start).
    entered: AtomicU64,
    /// An operator drains it: no new sessions or requests until enabled.
    drained: AtomicBool,
}

impl Rotation {
    /// A failure; `Some(until)` when it ejects the backend (the count starts over).
    pub(crate) fn failed(&self, threshold: u32, eject: Duration, now: Ms) -> Option<Ms> {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < threshold || self.ejected(now) {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        let until = now + eject.as_millis() as u64;
        self.ejected_until.store(until, Ordering::Relaxed);
        // It returns to rotation when the ejection ends: slow start counts from then.
        self.entered.store(until, Ordering::Relaxed);
        Some(until)
    }

    /// Drains it or puts it back; whether that changed anything.
    pub(crate) fn set_drained(&self, drained: bool) -> bool {
        self.drained.swap(drained, Ordering::Relaxed) != drained
    }

    pub(crate) fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    pub(crate) fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    pub(crate) fn ejected(&self, now: Ms) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    /// It entered (or re-entered) rotation at `now`.
    pub(crate) fn entered(&self, now: Ms) {
        self.entered.store(now.max(1), Ordering::Relaxed);
    }

    /// Its share of its weight now, in thousandths: 1000 once `slow_start` has passed since
    /// it entered rotation (or without slow start), at least 1.
    pub(crate) fn ramp(&self, slow_start: Option<Duration>, now: Ms) -> u64 {
        let entered = self.entered.load(Ordering::Relaxed);
        let Some(window) = slow_start.filter(|w| !w.is_zero() && entered != 0) else { return 1000 };
        let elapsed = now.saturating_sub(entered);
        (elapsed.saturating_mul(1000) / window.as_millis().max(1) as u64).clamp(1, 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_failures_eject_and_a_success_starts_the_count_over() {
        let r = Rotation::default();
        let eject = Duration::from_secs(30);
        assert_eq!(r.failed(3, eject, 1000), None);
        assert_eq!(r.failed(3, eject, 1000), None);
        r.succeeded();
        assert_eq!(r.failed(3, eject, 1000), None);
        assert_eq!(r.failed(3, eject, 1000), None);
        assert_eq!(r.failed(3, eject, 1000), Some(31_000), "the third in a row");
        assert!(r.ejected(30_999) && !r.ejected(31_000));
        assert_eq!(r.failed(1, eject, 2000), None, "an ejected backend is not ejected again");
    }

    #[test]
    fn slow_start_ramps_linearly_from_entry() {
        let r = Rotation::default();
        let window = Some(Duration::from_secs(10));
        assert_eq!(r.ramp(window, 5000), 1000, "in rotation from the start");
        r.entered(10_000);
        assert_eq!(r.ramp(window, 10_000), 1, "just entered: almost nothing");
        assert_eq!(r.ramp(window, 12_000), 200);
        assert_eq!(r.ramp(window, 20_000), 1000);
        assert_eq!(r.ramp(None, 10_000), 1000, "without slow start");
        // An ejection's end is an entry too.
        let e = Rotation::default();
        e.failed(1, Duration::from_secs(5), 1000);
        assert_eq!(e.ramp(window, 6000), 1);
        assert_eq!(e.ramp(window, 11_000), 500);
    }
}
