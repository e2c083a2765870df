//! One HTTP/1.1 exchange with the admin listener, on Pingora's own client (the same code
//! that talks to backends), so `ctl` parses no HTTP itself.

use super::error::CtlError;
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::net::SocketAddr;
use std::time::Duration;

/// The whole exchange (connect, request, answer): the admin API answers from memory, so
/// anything slower means something is wrong.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct AdminClient {
    address: SocketAddr,
    token: Option<String>,
    connector: Connector,
    peer: HttpPeer,
}

impl AdminClient {
    pub(crate) fn new(address: SocketAddr, token: Option<String>) -> AdminClient {
        let peer = HttpPeer::new(address, false, String::new());
        AdminClient { address, token, connector: Connector::new(None), peer }
    }

    /// `method path`, returning the body of a 2xx answer; any other status becomes the
    /// API's `error` text.
    pub(crate) async fn call(&self, method: &str, path: &str) -> Result<String, CtlError> {
        let (status, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path)).await.map_err(|_| {
                CtlError::Failed(format!("the admin API at {} did not answer within {REQUEST_TIMEOUT:?}", self.address))
            })??;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(api_error(status, &body))
        }
    }

    async fn exchange(&self, method: &str, path: &str) -> Result<(u16, String), CtlError> {
        let (mut http, _) = self.connector.get_http_session(&self.peer).await.map_err(|e| self.unreachable(&e))?;
        let request = self.request(method, path)?;
        let broken = |e: Box<Error>| CtlError::Failed(format!("the admin API at {}: {e}", self.address));
        http.write_request_header(Box::new(request)).await.map_err(broken)?;
        http.finish_body().await.map_err(broken)?;
        http.read_response().await.map_err(broken)?;
        let status = http.get_status().map(|s| s.as_u16()).unwrap_or(0);
        Ok((status, read_body(&mut http).await.map_err(broken)?))
    }

    fn request(&self, method: &str, path: &str) -> Result<RequestHeader, CtlError> {
        let invalid = |e: Box<Error>| CtlError::Usage(format!("cannot build the request {method} {path}: {e}"));
        let mut request = RequestHeader::build(method, path.as_bytes(), None).map_err(invalid)?;
        request.insert_header("Host", self.address.to_string()).map_err(invalid)?;
        if let Some(token) = &self.token {
            request.insert_header("Authorization", format!("Bearer {token}")).map_err(invalid)?;
        }
        // A POST or DELETE carries no body; saying so spares the server waiting for one.
        if method != "GET" {
            request.insert_header("Content-Length", "0").map_err(invalid)?;
        }
        // One exchange per connection: nothing is left idle on the server's side.
        request.insert_header("Connection", "close").map_err(invalid)?;
        Ok(request)
    }

    fn unreachable(&self, e: &Error) -> CtlError {
        let address = self.address;
        CtlError::Failed(match e.etype() {
            ErrorType::ConnectRefused => {
                format!("cannot connect to the admin API at {address}: connection refused (is wsgate running with this admin.address?)")
            }
            _ => format!("cannot connect to the admin API at {address}: {e}"),
        })
    }
}

async fn read_body(http: &mut HttpSession) -> pingora::Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = http.read_body_bytes().await? {
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The API's `{"error": "..."}` as a sentence; a 401 says what to fix.
pub(crate) fn api_error(status: u16, body: &str) -> CtlError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| body.trim().to_string());
    CtlError::Failed(match status {
        401 => format!(
            "the admin API refused the token (401: {message}): the token is missing or wrong; \
             check admin.token_file in the config or --token-file"
        ),
        _ => format!("the admin API answered {status}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_shows_its_error_field_and_a_401_names_the_token() {
        let CtlError::Failed(m) = api_error(404, r#"{"error": "no such backend"}"#) else { panic!() };
        assert_eq!(m, "the admin API answered 404: no such backend");
        let CtlError::Failed(m) = api_error(401, r#"{"error": "a valid Authorization: Bearer token is required"}"#)
        else {
            panic!()
        };
        assert!(m.contains("token is missing or wrong") && m.contains("Bearer token is required"), "{m}");
        let CtlError::Failed(m) = api_error(502, "bad gateway\n") else { panic!() };
        assert_eq!(m, "the admin API answered 502: bad gateway", "a body that is not JSON is shown as it is");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        // Bind and drop: the port is closed on loopback and nothing else takes it this fast.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let client = AdminClient::new(address, None);
        let CtlError::Failed(m) = client.call("GET", "/upstreams").await.unwrap_err() else { panic!() };
        assert!(m.contains(&address.to_string()) && m.contains("refused"), "{m}");
    }
}
