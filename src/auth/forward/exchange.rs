//! One subrequest on Pingora's HTTP/1 client (the code that talks to backends), so wsgate
//! parses no HTTP itself and connections to the auth service are pooled: a check on a warm
//! connection costs one round trip, not a TCP (and TLS) handshake.
//!
//! The caller bounds the whole exchange with `timeout`; nothing here waits on its own.

use super::target::Target;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use log::debug;
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::{Error, ErrorType};
use std::time::Duration;

/// The most of an answer's body that is read: a refusal's page is relayed to the client,
/// and anything longer is not worth holding per request.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// A pooled connection idle this long is closed by wsgate rather than found closed later.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Connections tried per check: a pooled one may have been closed by the service just as
/// the request went out (its keep-alive ended), and a GET is safe to send again.
const MAX_ATTEMPTS: usize = 3;

/// `100 Continue`/`103 Early Hints` before the answer; more than this is not an answer.
const MAX_INFORMATIONAL: usize = 4;

#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// `None` when the body was longer than [`MAX_BODY`] (and was not read to its end).
    pub body: Option<Bytes>,
}

/// Sends `request` to `target` and reads its answer, or says why there is none.
pub(super) async fn exchange(connector: &Connector, target: &Target, request: RequestHeader) -> Result<Answer, String> {
    let mut attempt = 1;
    loop {
        let (mut http, reused) = connector.get_http_session(&target.peer).await.map_err(|e| failure(target, &e))?;
        match send(&mut http, request.clone()).await {
            Ok(answer) => {
                // Back to the pool only if Pingora finds it reusable (keep-alive, body read
                // to its end); otherwise it is closed here.
                connector.release_http_session(http, &target.peer, Some(POOL_IDLE)).await;
                return Ok(answer);
            }
            Err(e) if reused && attempt < MAX_ATTEMPTS => {
                debug!("auth service {}: pooled connection failed ({e}); trying another", target.url);
                attempt += 1;
            }
            Err(e) => return Err(failure(target, &e)),
        }
    }
}

async fn send(http: &mut HttpSession, request: RequestHeader) -> pingora::Result<Answer> {
    http.write_request_header(Box::new(request)).await?;
    http.finish_body().await?;
    let mut informational = 0;
    let status = loop {
        http.read_response().await?;
        let status = http.get_status().map_or(0, |s| s.as_u16());
        // A 101 to a request that asked for no upgrade is a final (wrong) answer.
        if !(100..200).contains(&status) || status == 101 {
            break status;
        }
        informational += 1;
        if informational > MAX_INFORMATIONAL {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "informational answers without end");
        }
    };
    let headers = http.resp_header().map(|h| h.headers.clone()).unwrap_or_default();
    let body = read_body(http).await?;
    Ok(Answer { status, headers, body })
}

/// The body, or `None` as soon as it is known to exceed [`MAX_BODY`].
async fn read_body(http: &mut HttpSession) -> pingora::Result<Option<Bytes>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = http.read_body_ref().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(chunk);
    }
    Ok(Some(body.freeze()))
}

/// A short reason for the log line of the 503.
fn failure(target: &Target, e: &Error) -> String {
    let what = match e.etype() {
        ErrorType::ConnectRefused => "connection refused".to_string(),
        ErrorType::ConnectTimedout => "connect timed out".to_string(),
        _ => e.to_string(),
    };
    format!("auth service {}: {what}", target.url)
}
