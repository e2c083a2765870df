//! `GET /sessions` (open sessions, filtered) and `DELETE /sessions/{id}` (close one).

use super::reply::Reply;
use super::request::Request;
use crate::lifecycle::reload::Snapshot;
use crate::upstream::moves::SessionView;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// How many sessions `GET /sessions` lists unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 1000;
/// Close codes an operator may send (RFC 6455 §7.4.1 and the IANA registry; 4000-4999 are
/// the application's).
const CLOSE_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 1012, 1013];

pub(super) fn list(snapshot: &Snapshot, req: &Request) -> Result<Reply, Reply> {
    let backend = req.parsed("backend", |t| t.parse::<SocketAddr>().map_err(|_| "not an address (IP:port)".into()))?;
    let limit =
        req.parsed("limit", |t| t.parse::<usize>().map_err(|_| "not a number".into()))?.unwrap_or(DEFAULT_LIMIT);
    let (upstream, route) = (req.param("upstream"), req.param("route"));
    if let Some(name) = upstream.filter(|n| !snapshot.pools.iter().any(|p| &p.spec.name == n)) {
        return Err(Reply::error(404, &format!("no upstream `{name}`")));
    }
    let mut sessions: Vec<Arc<dyn SessionView>> = snapshot
        .pools
        .iter()
        .filter(|p| upstream.is_none_or(|name| p.spec.name == name))
        .flat_map(|p| p.loads.sessions_on(backend.as_ref()))
        .filter(|s| route.is_none_or(|r| s.report().route == r))
        .collect();
    sessions.sort_by_cached_key(|s| s.report().id);
    let total = sessions.len();
    let listed: Vec<Value> = sessions.iter().take(limit).map(|s| row(s.as_ref())).collect();
    Ok(Reply::ok(json!({ "total": total, "sessions": listed })))
}

fn row(session: &dyn SessionView) -> Value {
    let r = session.report();
    json!({
        "id": r.id,
        "client": r.client.map(|c| c.to_string()),
        "route": r.route,
        "upstream": r.upstream,
        "backend": r.backend.to_string(),
        "subprotocol": r.subprotocol,
        "age_secs": round(r.age.as_secs_f64()),
        "idle_secs": round(r.idle.as_secs_f64()),
        "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out,
        "messages_in": r.messages_in,
        "messages_out": r.messages_out,
    })
}

fn round(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

pub(super) fn close(snapshot: &Snapshot, id: &str, req: &Request) -> Result<Reply, Reply> {
    let id: u64 = id.parse().map_err(|_| Reply::error(400, &format!("`{id}` is not a session id")))?;
    let code = req.parsed("code", |t| {
        let code = t.parse::<u16>().map_err(|_| "not a number".to_string())?;
        let allowed = CLOSE_CODES.contains(&code) || (4000..=4999).contains(&code);
        allowed.then_some(code).ok_or_else(|| "must be 1000, 1001, 1008, 1011, 1012, 1013 or 4000-4999".into())
    })?;
    let reason = req.param("reason").unwrap_or("");
    if reason.len() > 123 {
        return Err(Reply::error(400, "`reason`: at most 123 bytes (a Close frame's payload is 125)"));
    }
    let code = code.unwrap_or(1000);
    match snapshot.pools.iter().find_map(|p| p.loads.close(id, code, reason)) {
        Some(true) => Ok(Reply::ok(json!({ "id": id, "code": code }))),
        Some(false) => Err(Reply::error(409, &format!("session {id} is already closing"))),
        None => Err(Reply::error(404, &format!("no open session {id}"))),
    }
}
