//! The short text answers wsgate gives on its own (404, 502, 503, 504, handshake refusals).

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// Writes a complete `status` response with a one-line text body.
pub(crate) async fn text(session: &mut Session, status: u16, message: &str, extra: &[(&str, &str)]) -> Result<()> {
    let body = Bytes::from(format!("{message}\n"));
    let mut resp = ResponseHeader::build(status, Some(4 + extra.len()))?;
    resp.insert_header("Content-Type", "text/plain; charset=utf-8")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "no-store")?;
    for (name, value) in extra {
        resp.insert_header(name.to_string(), *value)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// The text body for an error status wsgate produces itself.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        400 => "bad request",
        403 => "forbidden",
        404 => "no route for this request",
        426 => "upgrade required",
        502 => "bad gateway: the backend failed",
        503 => "service unavailable: no healthy backend",
        504 => "gateway timeout: the backend did not answer in time",
        _ => "error",
    }
}
