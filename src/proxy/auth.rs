//! A route's `auth` on the request path: the credential is checked once the request is
//! routed, before any backend is chosen (`jwt` first: local and cheap; then `forward`: a
//! subrequest), and the request that passes is rewritten for the backend (the token taken
//! out, the claims and the auth service's headers put in) on both paths.

use super::answer::Answer;
use crate::auth::forward::{ForwardVerdict, Subject};
use crate::auth::{AuthResult, Identity};
use crate::config::model::Route;
use crate::telemetry::metrics::Metrics;
use http::{HeaderName, HeaderValue};
use log::{debug, warn};
use pingora::http::RequestHeader;
use std::time::SystemTime;

/// What a route's `auth` admitted.
#[derive(Debug, Default)]
pub(crate) struct Granted {
    /// Who the token says the client is (`jwt`).
    pub(super) identity: Option<Identity>,
    /// The forward-auth service's `copy_headers`, for the backend request.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Granted {
    pub(super) fn user(&self) -> Option<&str> {
        self.identity.as_ref()?.user.as_deref()
    }
}

/// Checks the request's credentials for `route`: what was granted, or the answer (401 for a
/// bad token, the auth service's own 401/403, 503 when it cannot be asked). One count in
/// `wsgate_auth_total` per request, for the check that decided.
pub(super) async fn authorize(route: &Route, subject: Subject<'_>, metrics: &Metrics) -> Result<Granted, Answer> {
    let Some(auth) = route.auth.as_deref() else { return Ok(Granted::default()) };
    let count = |result: AuthResult| metrics.auth.with_label_values(&[route.name.as_str(), result.label()]).inc();
    let identity = match &auth.jwt {
        None => None,
        Some(jwt) => match jwt.authenticate(subject.req, SystemTime::now()) {
            Ok(identity) => Some(identity),
            Err(failure) => {
                count(failure.result);
                // Clients without a valid token are common and their reasons many: debug;
                // a key that cannot be used is the operator's to fix.
                match failure.result {
                    AuthResult::Error => warn!("route {}: token check failed: {}", route.name, failure.detail),
                    _ => debug!("route {}: {failure}", route.name),
                }
                return Err(Answer::from(&failure));
            }
        },
    };
    let headers = match &auth.forward {
        None => Vec::new(),
        // Boxed: the subrequest's state (an HTTP client's) would otherwise sit inline in
        // every request's `request_filter` future, which Pingora boxes and copies per request.
        Some(forward) => match Box::pin(forward.check(subject)).await {
            ForwardVerdict::Admit(headers) => headers,
            ForwardVerdict::Refuse { status, body, headers } => {
                count(AuthResult::Denied);
                return Err(Answer::relayed(status, body, headers));
            }
            ForwardVerdict::Unavailable(why) => {
                count(AuthResult::Error);
                warn!("route {}: forward auth: {why}", route.name);
                return Err(Answer::auth_unavailable());
            }
        },
    };
    count(AuthResult::Ok);
    Ok(Granted { identity, headers })
}

/// Rewrites the request for the backend: the token out (unless `keep_token`), the claims
/// and the auth service's headers in, the client's own copies of those gone. Before the
/// header policy, so a route's own `request_headers` edits still win.
pub(super) fn prepare(route: &Route, req: &mut RequestHeader, granted: &Granted) {
    let Some(auth) = route.auth.as_deref() else { return };
    if let (Some(jwt), Some(identity)) = (&auth.jwt, &granted.identity) {
        jwt.prepare(req, identity);
    }
    if let Some(forward) = &auth.forward {
        for name in forward.copy_headers() {
            req.remove_header(name);
        }
        for (name, value) in &granted.headers {
            let _ = req.append_header(name.clone(), value.clone());
        }
    }
}

/// When a session must end: its token's expiry, if the route says `close_at_expiry`.
pub(super) fn session_expiry(route: &Route, granted: &Granted) -> Option<SystemTime> {
    let jwt = route.auth.as_ref()?.jwt.as_ref()?;
    jwt.close_at_expiry().then(|| granted.identity.as_ref()?.expires_at).flatten()
}
