//! The metrics listener (`metrics.address`): `GET /metrics` in the Prometheus text format
//! and `GET /ready` for load balancers in front of wsgate. Nothing else is served there.

use crate::lifecycle::ready::Readiness;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora_prometheus::prometheus::{self, Encoder, TextEncoder};
use std::sync::Arc;

pub(crate) struct AdminApp {
    pub(crate) readiness: Arc<Readiness>,
}

impl AdminApp {
    fn answer(&self, method: &http::Method, path: &str, shutting_down: bool) -> (u16, &'static str, Vec<u8>) {
        let text = "text/plain; charset=utf-8";
        if method != http::Method::GET && method != http::Method::HEAD {
            return (405, text, b"method not allowed\n".to_vec());
        }
        match path {
            "/metrics" => {
                let encoder = TextEncoder::new();
                let mut body = Vec::with_capacity(16 * 1024);
                match encoder.encode(&prometheus::gather(), &mut body) {
                    Ok(()) => (200, "text/plain; version=0.0.4; charset=utf-8", body),
                    Err(e) => (500, text, format!("encoding metrics failed: {e}\n").into_bytes()),
                }
            }
            "/ready" if shutting_down => (503, text, b"shutting down\n".to_vec()),
            "/ready" if !self.readiness.is_ready() => (503, text, b"waiting for the first health checks\n".to_vec()),
            "/ready" => (200, text, b"ready\n".to_vec()),
            _ => (404, text, b"not found: this listener serves /metrics and /ready\n".to_vec()),
        }
    }
}

#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        let shutting_down = *shutdown.borrow();
        let req = session.req_header();
        let (status, content_type, body) = self.answer(&req.method, req.uri.path(), shutting_down);
        respond(session, status, &[("Content-Type", content_type)], body, shutting_down).await
    }
}

/// Writes a complete, uncached answer on an operator listener (metrics, admin API) and
/// hands the connection back for its next request unless the process is shutting down.
pub(crate) async fn respond(
    mut session: ServerSession,
    status: u16,
    headers: &[(&'static str, &str)],
    body: Vec<u8>,
    shutting_down: bool,
) -> Option<ReusedHttpStream> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut resp = ResponseHeader::build(status, Some(2 + headers.len())).ok()?;
    for (name, value) in headers {
        resp.insert_header(*name, *value).ok()?;
    }
    resp.insert_header("Content-Length", body.len().to_string()).ok()?;
    resp.insert_header("Cache-Control", "no-store").ok()?;
    session.set_keepalive(if shutting_down { None } else { Some(60) });
    session.write_response_header(Box::new(resp)).await.ok()?;
    if !head_only {
        session.write_response_body(Bytes::from(body), true).await.ok()?;
    }
    let persistent = pingora::apps::HttpPersistentSettings::for_session(&session);
    session.finish().await.ok().flatten().map(|s| ReusedHttpStream::from_reusable_stream(s, persistent))
}
