//! What an operator does to a pool's backends through the admin API: drain one (no new
//! sessions or requests; its sessions told to move, the idlest first, over a window), put
//! it back, and look at the sessions each carries. The drain lives with the backend's
//! load, which outlives reloads, so a SIGHUP keeps it.

use super::Loads;
use crate::upstream::moves::{now_ms, Move, SessionView};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Loads {
    /// Whether an operator drains `addr` (no lookup unless some backend is drained).
    pub(crate) fn drained(&self, addr: &SocketAddr) -> bool {
        self.draining.load(Ordering::Relaxed) > 0
            && self.backends.load().get(addr).is_some_and(|b| b.rotation.drained())
    }

    /// Drains `addr`, a member of the pool: its open sessions are told to move over
    /// `window`, the idlest first; how many. `None` if it is not a member.
    pub(crate) fn drain(&self, addr: &SocketAddr, window: Duration) -> Option<usize> {
        let load = self.member(addr)?;
        if load.rotation.set_drained(true) {
            self.draining.fetch_add(1, Ordering::Relaxed);
            log::info!("pool {}: backend {addr} drained by an operator over {window:?}", self.pool);
        }
        Some(load.movable.move_idle_first(Move::Drained, window))
    }

    /// Puts a drained `addr` back in rotation (with slow start, if the pool has it);
    /// `None` if it is not a member.
    pub(crate) fn enable(&self, addr: &SocketAddr) -> Option<()> {
        let load = self.member(addr)?;
        if load.rotation.set_drained(false) {
            self.draining.fetch_sub(1, Ordering::Relaxed);
            load.rotation.entered(now_ms());
            self.note_entry(now_ms());
            log::info!("pool {}: backend {addr} back in rotation (enabled by an operator)", self.pool);
        }
        Some(())
    }

    /// The open sessions of `addr`, or of every backend.
    pub(crate) fn sessions_on(&self, addr: Option<&SocketAddr>) -> Vec<Arc<dyn SessionView>> {
        let backends = self.backends.load();
        backends
            .iter()
            .filter(|(a, _)| addr.is_none_or(|want| want == *a))
            .flat_map(|(_, b)| b.movable.views())
            .collect()
    }

    /// Closes the open session `id` if one of this pool's backends carries it: `Some(false)`
    /// when it was already told to move.
    pub(crate) fn close(&self, id: u64, code: u16, reason: &str) -> Option<bool> {
        self.backends.load().values().find_map(|b| b.movable.close(id, code, reason))
    }

    fn member(&self, addr: &SocketAddr) -> Option<Arc<super::BackendLoad>> {
        let load = self.backends.load().get(addr).cloned()?;
        let member = *load.member.lock().unwrap_or_else(|e| e.into_inner());
        member.then_some(load)
    }
}
