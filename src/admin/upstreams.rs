//! `GET /upstreams`: every pool and what each backend carries now; draining a backend and
//! putting it back (`/upstreams/{pool}/backends/{address}/drain`, `.../enable`).

use super::reply::Reply;
use super::request::Request;
use crate::config::parse_duration;
use crate::lifecycle::reload::Snapshot;
use crate::upstream::Pool;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

pub(super) fn report(snapshot: &Snapshot) -> Value {
    let pools: Vec<Value> = snapshot
        .pools
        .iter()
        .map(|pool| {
            let backends: Vec<Value> = pool
                .report()
                .into_iter()
                .map(|b| {
                    json!({
                        "address": b.address.to_string(),
                        "weight": b.weight,
                        "healthy": b.healthy,
                        "in_rotation": b.in_rotation,
                        "draining": b.draining,
                        "sessions": b.sessions,
                        "requests": b.requests,
                    })
                })
                .collect();
            json!({ "name": pool.spec.name, "backends": backends })
        })
        .collect();
    json!({ "upstreams": pools })
}

/// What `.../backends/{address}/{action}` acts on.
pub(super) fn backend(
    action: &str,
    snapshot: &Snapshot,
    pool: &str,
    address: &str,
    req: &Request,
) -> Result<Reply, Reply> {
    let found = snapshot.pools.iter().find(|p| p.spec.name == pool);
    let pool: &Arc<Pool> = found.ok_or_else(|| Reply::error(404, &format!("no upstream `{pool}`")))?;
    let addr: SocketAddr =
        address.parse().map_err(|_| Reply::error(400, &format!("`{address}` is not a backend address (IP:port)")))?;
    let unknown = || Reply::error(404, &format!("upstream `{}` has no backend {addr}", pool.spec.name));
    let (upstream, backend) = (pool.spec.name.as_str(), addr.to_string());
    match (req.method.as_str(), action) {
        ("POST", "drain") => {
            let window = req.parsed("window", parse_duration)?.unwrap_or(snapshot.config.drain_window);
            let closing = pool.loads.drain(&addr, window).ok_or_else(unknown)?;
            Ok(Reply::ok(json!({ "upstream": upstream, "backend": backend, "draining": true, "closing": closing })))
        }
        ("GET", "drain") => {
            if !pool.report().iter().any(|b| b.address == addr) {
                return Err(unknown());
            }
            let (draining, sessions) = (pool.loads.drained(&addr), pool.loads.sessions(&addr));
            Ok(Reply::ok(
                json!({ "upstream": upstream, "backend": backend, "draining": draining, "sessions": sessions }),
            ))
        }
        ("POST", "enable") => {
            pool.loads.enable(&addr).ok_or_else(unknown)?;
            Ok(Reply::ok(json!({ "upstream": upstream, "backend": backend, "draining": false })))
        }
        _ => Err(Reply::error(405, "method not allowed")),
    }
}
