//! Upstream pools: one Pingora `LoadBalancer` per configured pool (`pool.rs`), whose health
//! lives in a `HealthRegistry` (`health.rs`) that outlives the pool across config reloads,
//! so a backend that stays in the config keeps its health state; `lifecycle/reload.rs`
//! swaps pools. Discovery of DNS pools is in `discovery.rs`.
//!
//! This module holds the one pool choice and retry rule both request paths use: plain
//! HTTP (`upstream_peer`, `fail_to_connect`) and the WebSocket handshake.

pub(crate) mod affinity;
mod attempts;
pub(crate) mod discovery;
pub(crate) mod health;
mod least;
pub(crate) mod load;
pub(crate) mod moves;
mod peer_tls;
mod pool;
mod queue;
mod rebalance;
mod rotation;

pub(crate) use attempts::{Attempts, Failure};
pub(crate) use health::CheckSpec;
pub(crate) use pool::{initial_backends, Pool};

use crate::config::model::{Balance, HashKey};
use load::{Kind, Place};
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

impl Pool {
    /// The one pool choice: a healthy backend for `key` that this request has not excluded,
    /// recorded as the request's backend. With none left, the failure to answer: nothing
    /// healthy at all is 503, every healthy backend failed to connect is the last failure.
    pub(crate) fn pick(&self, key: &[u8], attempts: &mut Attempts) -> Result<SocketAddr, Failure> {
        let Some(addr) = self.select(key, attempts, |_| true).and_then(|b| b.addr.as_inet().copied()) else {
            return Err(attempts.last_failure.unwrap_or(Failure::NoneHealthy));
        };
        attempts.backend = Some(addr);
        Ok(addr)
    }

    /// The pool choice for a WebSocket session, with its place on the backend: as `pick`,
    /// skipping backends at `max_sessions_per_backend`; when every healthy one is at it,
    /// waiting in the pool's queue (FIFO, bounded) for a place.
    pub(crate) async fn pick_session(
        &self,
        key: &[u8],
        attempts: &mut Attempts,
    ) -> Result<(SocketAddr, Place), Failure> {
        let Some(cap) = self.spec.max_sessions_per_backend else {
            let addr = self.pick(key, attempts)?;
            return Ok((addr, self.loads.place(addr, Kind::Session)));
        };
        let started = Instant::now();
        let mut queued = false;
        let result = loop {
            // Those already waiting go first: a newcomer queues behind them.
            if queued || !self.loads.queue.is_waiting() {
                match self.pick_under(cap, key, attempts) {
                    Err(Failure::AtCapacity) => {}
                    picked => break picked,
                }
            }
            let Some(queue) = self.spec.queue else { break Err(Failure::AtCapacity) };
            let Some(remaining) = queue.timeout.checked_sub(started.elapsed()) else { break Err(Failure::AtCapacity) };
            let Some(freed) = self.loads.queue.join(queue.size) else { break Err(Failure::AtCapacity) };
            queued = true;
            self.loads.queue_waiting.inc();
            // Also counted out when the client leaves and this future is dropped.
            let _waiting = scopeguard::guard((), |()| self.loads.queue_waiting.dec());
            if !matches!(tokio::time::timeout(remaining, freed).await, Ok(Ok(()))) {
                break Err(Failure::AtCapacity);
            }
        };
        if queued {
            self.loads.queue_wait.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// A backend with room under `cap`, and the place taken on it.
    fn pick_under(&self, cap: usize, key: &[u8], attempts: &mut Attempts) -> Result<(SocketAddr, Place), Failure> {
        // Bounded: a lost race means another session took a backend's last place meanwhile.
        for _ in 0..8 {
            let room = |a: &SocketAddr| self.loads.sessions(a) < cap;
            let Some(addr) = self.select(key, attempts, room).and_then(|b| b.addr.as_inet().copied()) else {
                // Healthy backends left, all full; or none at all.
                return match self.pick(key, attempts) {
                    Ok(_) => Err(Failure::AtCapacity),
                    Err(failure) => Err(failure),
                };
            };
            if let Some(place) = self.loads.try_session(addr, cap) {
                attempts.backend = Some(addr);
                return Ok((addr, place));
            }
        }
        Err(Failure::AtCapacity)
    }
}

/// The bytes a consistent-hash pool hashes for this request. A missing header or cookie
/// falls back to the client address, so such clients still stick to one backend.
pub(crate) fn hash_input(balance: &Balance, req: &RequestHeader, client_ip: Option<IpAddr>) -> Vec<u8> {
    let client = || client_ip.map(|ip| ip.to_string().into_bytes()).unwrap_or_default();
    let Balance::ConsistentHash(key) = balance else { return Vec::new() };
    match key {
        HashKey::ClientIp => client(),
        // The path routing saw, so `//room/7` and `/room/7` stick to the same backend.
        HashKey::Path => crate::proxy::routing::normalize_path(req.uri.path()).as_bytes().to_vec(),
        HashKey::Header(name) => req.headers.get(name).map(|v| v.as_bytes().to_vec()).unwrap_or_else(client),
        HashKey::Cookie(name) => {
            affinity::cookie_values(req, name).next().map(|v| v.as_bytes().to_vec()).unwrap_or_else(client)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/room/7?x=1", None).unwrap();
        for (n, v) in headers {
            r.append_header(n.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn hash_inputs_follow_the_configured_key() {
        let ip: Option<IpAddr> = Some("10.0.0.9".parse().unwrap());
        let r = req(&[("X-User", "alice"), ("Cookie", "a=1; sid=abc ; b=2")]);
        let h = |k: HashKey| hash_input(&Balance::ConsistentHash(k), &r, ip);
        assert_eq!(h(HashKey::ClientIp), b"10.0.0.9");
        assert_eq!(h(HashKey::Path), b"/room/7");
        let dotted = RequestHeader::build("GET", b"//room/./7", None).unwrap();
        assert_eq!(
            hash_input(&Balance::ConsistentHash(HashKey::Path), &dotted, ip),
            b"/room/7",
            "hashed on the normalised path"
        );
        assert_eq!(h(HashKey::Header(http::HeaderName::from_static("x-user"))), b"alice");
        assert_eq!(h(HashKey::Cookie("sid".into())), b"abc");
        assert_eq!(h(HashKey::Cookie("missing".into())), b"10.0.0.9");
        assert!(hash_input(&Balance::RoundRobin, &r, ip).is_empty());
    }
}
