//! A route's `auth` on the request path: the credential is checked once the request is
//! routed, before any backend is chosen, and the request that passes is rewritten for the
//! backend (the token taken out, the claims put in) on both paths.

use super::answer::Answer;
use crate::auth::{AuthResult, Identity};
use crate::config::model::Route;
use crate::telemetry::metrics::Metrics;
use log::{debug, warn};
use pingora::http::RequestHeader;
use std::time::SystemTime;

/// Checks `req`'s credential for `route`: who the client is (`None` on a route without
/// `auth`), or the 401.
pub(super) fn authenticate(route: &Route, req: &RequestHeader, metrics: &Metrics) -> Result<Option<Identity>, Answer> {
    let Some(jwt) = route.auth.as_ref().and_then(|auth| auth.jwt.as_ref()) else { return Ok(None) };
    let verdict = jwt.authenticate(req, SystemTime::now());
    let result = verdict.as_ref().map_or_else(|failure| failure.result, |_| AuthResult::Ok);
    metrics.auth.with_label_values(&[route.name.as_str(), result.label()]).inc();
    match verdict {
        Ok(identity) => Ok(Some(identity)),
        Err(failure) => {
            // Clients without a valid token are common and their reasons many: debug, but a
            // key that cannot be used is the operator's to fix.
            match failure.result {
                AuthResult::Error => warn!("route {}: token check failed: {}", route.name, failure.detail),
                _ => debug!("route {}: {:?}: {}", route.name, failure.result, failure.detail),
            }
            Err(Answer::from(&failure))
        }
    }
}

/// Rewrites the request for the backend: the token out (unless `keep_token`), the forwarded
/// claims in. Before the header policy, so a route's own `request_headers` edits still win.
pub(super) fn prepare(route: &Route, req: &mut RequestHeader, identity: Option<&Identity>) {
    if let (Some(jwt), Some(identity)) = (route.auth.as_ref().and_then(|auth| auth.jwt.as_ref()), identity) {
        jwt.prepare(req, identity);
    }
}

/// When a session authenticated by `identity` must end: its token's expiry, if the route
/// says `close_at_expiry`.
pub(super) fn session_expiry(route: &Route, identity: Option<&Identity>) -> Option<SystemTime> {
    let jwt = route.auth.as_ref()?.jwt.as_ref()?;
    jwt.close_at_expiry().then(|| identity?.expires_at).flatten()
}
