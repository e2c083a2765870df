//! The admin API (`admin.address`): JSON endpoints for operators, on a listener of its own.
//! Every request must bear `Authorization: Bearer <token>` when `admin.token_file` is set
//! (compared in constant time); the token is re-read with the config on SIGHUP.
//!
//! - `GET /upstreams`: each pool and its backends: weight, health, rotation, drain, open
//!   sessions, in-flight requests.
//! - `GET /sessions?upstream=&backend=&route=&limit=`: the open sessions.
//! - `DELETE /sessions/{id}?code=&reason=`: closes one at a frame boundary.
//! - `POST /upstreams/{pool}/backends/{address}/drain?window=`: no new sessions or requests
//!   for it; its sessions get 1012 over the window, the idlest first. `GET` on it: how many
//!   are left. `POST .../enable` puts it back.

mod reply;
mod request;
mod sessions;
mod upstreams;

use crate::lifecycle::reload::Live;
use crate::telemetry::admin::respond;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use reply::Reply;
use request::Request;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub(crate) struct AdminApi {
    pub(crate) live: Arc<Live>,
}

impl AdminApi {
    fn answer(&self, req: &RequestHeader) -> Reply {
        let snapshot = self.live.snapshot();
        let token = snapshot.config.admin.as_ref().and_then(|a| a.token.as_deref());
        if !authorized(req, token) {
            return Reply::error(401, "a valid Authorization: Bearer token is required");
        }
        let req = Request::new(req);
        let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        let answer = match segments.as_slice() {
            ["upstreams"] if method == "GET" => Ok(Reply::ok(upstreams::report(&snapshot))),
            ["sessions"] if method == "GET" => sessions::list(&snapshot, &req),
            ["sessions", id] if method == "DELETE" => sessions::close(&snapshot, id, &req),
            ["upstreams", pool, "backends", address, action @ ("drain" | "enable")] => {
                upstreams::backend(action, &snapshot, pool, address, &req)
            }
            ["upstreams"] | ["sessions"] | ["sessions", _] => Err(Reply::error(405, "method not allowed")),
            _ => Err(Reply::error(404, "no such endpoint")),
        };
        answer.unwrap_or_else(|refused| refused)
    }
}

/// Whether `req` bears the token (any request does when none is configured).
fn authorized(req: &RequestHeader, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let presented = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

#[async_trait]
impl HttpServerApp for AdminApi {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        let reply = self.answer(session.req_header());
        let body = serde_json::to_vec_pretty(&reply.body).unwrap_or_default();
        let mut headers = vec![("Content-Type", "application/json")];
        if reply.status == 401 {
            headers.push(("WWW-Authenticate", "Bearer"));
        }
        let shutting_down = *shutdown.borrow();
        respond(session, reply.status, &headers, body, shutting_down).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/upstreams", None).unwrap();
        if let Some(a) = auth {
            r.insert_header("Authorization", a).unwrap();
        }
        r
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        assert!(authorized(&req(None), None), "no token configured");
        assert!(authorized(&req(Some("Bearer s3cret")), Some("s3cret")));
        for wrong in [None, Some("Bearer s3cre"), Some("Bearer s3crett"), Some("s3cret"), Some("Basic s3cret")] {
            assert!(!authorized(&req(wrong), Some("s3cret")), "{wrong:?}");
        }
    }
}
