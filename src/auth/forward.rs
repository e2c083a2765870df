//! `auth.forward`: the route asks another service whether a request may pass, like nginx
//! `auth_request` and Traefik ForwardAuth, so an application's existing login (a session
//! cookie, an API key) guards its WebSockets without the application checking each one.
//!
//! The contract: a bodiless `GET` to the configured URL with the client's headers and
//! `X-Forwarded-*` (`request.rs`); a 2xx admits and hands back the `copy_headers` of the
//! answer for the backend request; a 401 or 403 is relayed to the client (status, body up
//! to 64 KiB, `WWW-Authenticate`, `Content-Type`); anything else — another status, no
//! answer within `timeout`, no connection — fails closed (503), because an auth service
//! that cannot be asked has not said yes. `cache` (`cache.rs`) keeps 2xx answers per
//! credential; refusals are never cached, so a user who logs in passes at once.
//!
//! Nothing the client or the auth service sends can panic this: header values are copied
//! as bytes, never parsed, and the answer's body is read up to its cap only.

mod cache;
mod exchange;
mod request;
mod target;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use exchange::{exchange, Answer};
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::connectors::http::v1::Connector;
use pingora::upstreams::peer::HttpPeer;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
pub use target::Subject;
pub(crate) use target::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardVerdict {
    /// A 2xx: set these on the backend request (each name may repeat; values in the order
    /// the auth service sent them), after removing the client's own copies of
    /// [`ForwardAuth::copy_headers`].
    Admit(Vec<(HeaderName, HeaderValue)>),
    /// A 401 or 403, to be answered to the client as it is. `body` is empty when the
    /// service's was over 64 KiB (and `Content-Type` is then left out).
    Refuse { status: u16, body: Bytes, headers: Vec<(HeaderName, HeaderValue)> },
    /// No usable answer: answer 503 and log the reason at warn.
    Unavailable(String),
}

/// What validation settled for `auth.forward`.
pub(crate) struct ForwardSettings {
    /// The URL as written, for log lines.
    pub url: String,
    pub address: SocketAddr,
    /// `https`: TLS with the system's roots, and `sni` checked against the certificate.
    pub tls: bool,
    pub sni: String,
    /// The URL's `host[:port]`: the subrequest's `Host`.
    pub authority: HeaderValue,
    /// The URL's path and query: the subrequest's target.
    pub path: String,
    pub timeout: Duration,
    pub copy_headers: Vec<HeaderName>,
    /// `None`: every check asks the service.
    pub cache: Option<Duration>,
}

pub struct ForwardAuth {
    target: Target,
    timeout: Duration,
    copy_headers: Vec<HeaderName>,
    cache: Option<cache::Cache>,
    connector: Connector,
}

impl ForwardAuth {
    pub(crate) fn new(settings: ForwardSettings) -> ForwardAuth {
        let peer = HttpPeer::new(settings.address, settings.tls, settings.sni);
        let target = Target { url: settings.url, peer, authority: settings.authority, path: settings.path };
        ForwardAuth {
            target,
            timeout: settings.timeout,
            copy_headers: settings.copy_headers,
            cache: settings.cache.map(cache::Cache::new),
            // One per route: its pool holds only this service's connections.
            connector: Connector::new(None),
        }
    }

    /// The names a 2xx answer may set: the proxy removes the client's own copies, so a
    /// client cannot forge `X-User-Id` when the service does not send one.
    pub fn copy_headers(&self) -> &[HeaderName] {
        &self.copy_headers
    }

    pub async fn check(&self, subject: Subject<'_>) -> ForwardVerdict {
        let cached = self.cache.as_ref().and_then(|cache| Some((cache, cache::key(subject.req)?)));
        if let Some((cache, key)) = &cached {
            if let Some(headers) = cache.get(key, Instant::now()) {
                return ForwardVerdict::Admit(headers);
            }
        }
        let verdict = self.ask(&subject).await;
        if let (ForwardVerdict::Admit(headers), Some((cache, key))) = (&verdict, cached) {
            cache.insert(key, headers.clone(), Instant::now());
        }
        verdict
    }

    async fn ask(&self, subject: &Subject<'_>) -> ForwardVerdict {
        let url = &self.target.url;
        let request = match request::subrequest(subject, &self.target) {
            Ok(request) => request,
            Err(e) => return ForwardVerdict::Unavailable(format!("auth service {url}: cannot build the request: {e}")),
        };
        // One deadline for connect, request and answer: a slow service must not hold a
        // handshake longer than `timeout`, whichever step is slow.
        match tokio::time::timeout(self.timeout, exchange(&self.connector, &self.target, request)).await {
            Err(_) => ForwardVerdict::Unavailable(format!("auth service {url}: no answer within {:?}", self.timeout)),
            Ok(Err(reason)) => ForwardVerdict::Unavailable(reason),
            Ok(Ok(answer)) => self.verdict(answer),
        }
    }

    fn verdict(&self, answer: Answer) -> ForwardVerdict {
        match answer.status {
            200..=299 => ForwardVerdict::Admit(values(&answer.headers, &self.copy_headers)),
            401 | 403 => {
                let relayed: &[HeaderName] = match answer.body {
                    Some(_) => &[WWW_AUTHENTICATE, CONTENT_TYPE],
                    None => &[WWW_AUTHENTICATE],
                };
                let headers = values(&answer.headers, relayed);
                ForwardVerdict::Refuse { status: answer.status, body: answer.body.unwrap_or_default(), headers }
            }
            status => ForwardVerdict::Unavailable(format!("auth service {}: answered {status}", self.target.url)),
        }
    }
}

/// Every value of each of `names` in `headers` (names are case-insensitive there).
fn values(headers: &HeaderMap, names: &[HeaderName]) -> Vec<(HeaderName, HeaderValue)> {
    names.iter().flat_map(|name| headers.get_all(name).iter().map(move |value| (name.clone(), value.clone()))).collect()
}

impl fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("url", &self.target.url)
            .field("timeout", &self.timeout)
            .field("copy_headers", &self.copy_headers)
            .field("cache", &self.cache.as_ref().map(|_| "on"))
            .finish_non_exhaustive()
    }
}
