//! `cache`: a positive answer kept per credential, so a client that reconnects (a WebSocket
//! that drops and comes back, a page's burst of requests) costs one subrequest per `cache`
//! period instead of one each.
//!
//! The key is a SHA-256 of the request's `Authorization` and `Cookie` values: the
//! credential itself is never kept in memory longer than the request, and two clients share
//! an entry only if they send the same bytes in both. A request with neither header is
//! never cached: whatever the auth service decided on (the address, a query token) is not
//! in the key.
//!
//! Every entry lives exactly `ttl`, so insertion order is expiry order: a FIFO of
//! (key, expiry) finds both the expired entries and, when the cache is full, the oldest
//! ones in O(1), with no LRU crate and no scan of the map.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use ring::digest::{Context, SHA256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// At most this many credentials are remembered; a flood of distinct ones evicts the
/// oldest instead of growing memory.
pub(crate) const MAX_ENTRIES: usize = 10_000;

pub(crate) type Key = [u8; 32];
pub(crate) type Headers = Vec<(HeaderName, HeaderValue)>;

/// The cache key of `req`'s credential, `None` when it carries neither header.
pub(crate) fn key(req: &RequestHeader) -> Option<Key> {
    let mut digest = Context::new(&SHA256);
    let mut any = false;
    for (tag, name) in [(b'A', AUTHORIZATION), (b'C', COOKIE)] {
        digest.update(&[tag]);
        for value in req.headers.get_all(name) {
            any = true;
            // Length-prefixed, so `Authorization: ab` + `Cookie: c` and `Authorization: a`
            // + `Cookie: bc` (or one value split in two) cannot hash alike.
            digest.update(&(value.len() as u64).to_be_bytes());
            digest.update(value.as_bytes());
        }
    }
    let hash = digest.finish();
    any.then(|| hash.as_ref().try_into().ok()).flatten()
}

#[derive(Debug)]
pub(crate) struct Cache {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Every insertion, oldest first. A key inserted again leaves a stale pair here, which
    /// evicts nothing when it comes out (its expiry no longer matches the entry's).
    order: VecDeque<(Key, Instant)>,
}

#[derive(Debug)]
struct Entry {
    expires: Instant,
    headers: Headers,
}

impl Cache {
    pub(crate) fn new(ttl: Duration) -> Cache {
        Cache { ttl, state: Mutex::default() }
    }

    pub(crate) fn get(&self, key: &Key, now: Instant) -> Option<Headers> {
        let state = self.lock();
        state.entries.get(key).filter(|e| e.expires > now).map(|e| e.headers.clone())
    }

    pub(crate) fn insert(&self, key: Key, headers: Headers, now: Instant) {
        // A `ttl` too long for the clock to represent is not worth a panic: not cached.
        let Some(expires) = now.checked_add(self.ttl) else { return };
        let mut state = self.lock();
        while let Some(&(old, at)) = state.order.front() {
            if at > now && state.order.len() < MAX_ENTRIES {
                break;
            }
            state.order.pop_front();
            if state.entries.get(&old).is_some_and(|e| e.expires == at) {
                state.entries.remove(&old);
            }
        }
        state.order.push_back((key, expires));
        state.entries.insert(key, Entry { expires, headers });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Nothing panics while the lock is held, but a poisoned cache is still a valid one.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
