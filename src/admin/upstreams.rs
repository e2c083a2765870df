//! `GET /upstreams`: every pool and what each backend carries now.

use crate::lifecycle::reload::Snapshot;
use serde_json::{json, Value};

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
