//! `auth.forward` in the config file: defaults, what the URL becomes, and every mistake
//! reported at its key.

use super::*;
use crate::auth::RouteAuth;
use crate::config::ConfigError;
use std::path::PathBuf;
use std::sync::Arc;

const FORWARD: &str = "routes[0].auth.forward";

/// A config with one route whose `auth` is `auth` (block YAML, unindented); relative paths
/// are relative to the JWT fixtures.
fn parse(auth: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    let auth: String = auth.lines().map(|l| format!("      {l}\n")).collect();
    let text = format!(
        "listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  app:\n    backends: [127.0.0.1:3001]\nroutes:\n  - path_prefix: /ws\n    upstream: app\n    auth:\n{auth}"
    );
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    crate::config::parse(&text, "test.yaml", &fixtures)
}

fn route_auth(auth: &str) -> Arc<RouteAuth> {
    let config = parse(auth).unwrap_or_else(|e| panic!("{e}"));
    config.routes[0].auth.clone().expect("the route has auth")
}

fn forward_of(auth: &RouteAuth) -> &ForwardAuth {
    auth.forward.as_ref().expect("auth.forward")
}

/// `forward: <value>` is refused with a problem at `key` (below `routes[0].auth.forward`,
/// or the full path when it starts with `routes`) that says `what`.
#[track_caller]
fn refused(value: &str, key: &str, what: &str) {
    let errors: Vec<ConfigError> = match parse(&format!("forward: {value}")) {
        Ok(_) => panic!("expected errors for {value}"),
        Err(e) => e.0,
    };
    let key = match key {
        "" => FORWARD.to_string(),
        k if k.starts_with("routes") => k.to_string(),
        k => format!("{FORWARD}.{k}"),
    };
    assert!(
        errors.iter().any(|e| e.key == key && e.message.contains(what) && e.line.is_some()),
        "no error at {key} saying {what:?} for {value}\ngot: {errors:#?}"
    );
}

#[test]
fn the_documented_example_is_accepted_with_its_values() {
    let auth =
        route_auth("forward: {url: http://127.0.0.1:4000/check, timeout: 2s, copy_headers: [X-User-Id], cache: 30s}");
    let forward = forward_of(&auth);
    assert!(auth.jwt.is_none());
    assert_eq!(forward.copy_headers(), [HeaderName::from_static("x-user-id")]);
    assert_eq!(forward.timeout, Duration::from_secs(2));
    assert!(forward.cache.is_some());
    assert_eq!(
        (forward.target.path.as_str(), forward.target.authority.to_str().unwrap()),
        ("/check", "127.0.0.1:4000")
    );
}

#[test]
fn defaults_and_what_the_url_becomes() {
    let auth = route_auth("forward: {url: http://127.0.0.1}");
    let forward = forward_of(&auth);
    assert_eq!(
        (forward.timeout, forward.cache.is_none(), forward.copy_headers().len()),
        (Duration::from_secs(2), true, 0)
    );
    assert_eq!(forward.target.path, "/");
    assert_eq!(forward.target.peer._address.to_string(), "127.0.0.1:80");

    let auth = route_auth("forward: {url: \"https://[::1]/auth/verify?realm=chat\", cache: 0s}");
    let forward = forward_of(&auth);
    assert_eq!(forward.target.path, "/auth/verify?realm=chat", "the URL's own query is kept");
    assert_eq!(forward.target.peer._address.to_string(), "[::1]:443");
    assert_eq!((forward.target.peer.sni.as_str(), forward.target.authority.to_str().unwrap()), ("::1", "[::1]"));
    assert!(forward.cache.is_none(), "0s is off");

    let auth =
        route_auth("forward:\n  url: http://localhost:4000/check\njwt:\n  keys: jwks.json\n  algorithms: [RS256]");
    assert!(auth.jwt.is_some() && auth.forward.is_some(), "both may be set");
    assert_eq!(auth.forward.as_ref().unwrap().target.authority.to_str().unwrap(), "localhost:4000");
}

#[test]
fn every_mistake_is_reported_at_its_key() {
    refused("{url: ftp://127.0.0.1/check}", "url", "must start with http:// or https://");
    refused("{url: /check}", "url", "must start with http://");
    refused("{url: \"http://:4000/check\"}", "url", "");
    refused("{url: \"http://user:pw@127.0.0.1/check\"}", "url", "user or password");
    refused("{url: \"not a url\"}", "url", "is not a URL");
    refused("{url: http://127.0.0.1/, timeout: 0s}", "timeout", "more than 0");
    refused("{url: http://127.0.0.1/, timeout: 2}", "timeout", "missing unit");
    refused("{url: http://127.0.0.1/, cache: soon}", "cache", "invalid duration");
    refused("{url: http://127.0.0.1/, copy_headers: [\"X User\"]}", "copy_headers[0]", "not a valid header name");
    for reserved in
        ["Host", "Connection", "Upgrade", "Content-Length", "X-Forwarded-User", "X-Real-IP", "Sec-WebSocket-Protocol"]
    {
        refused(
            &format!("{{url: http://127.0.0.1/, copy_headers: [X-Ok, {reserved}]}}"),
            "copy_headers[1]",
            "cannot set it",
        );
    }
    refused("{url: http://127.0.0.1/, copy_headers: [X-User-Id, x-user-id]}", "copy_headers[1]", "listed twice");
    refused("{url: http://127.0.0.1/, retries: 2}", "retries", "unknown field `retries`");
    refused("{timeout: 2s}", "routes[0].auth.forward", "missing field `url`");
    let errors = parse("{}").unwrap_err().0;
    assert!(
        errors.iter().any(|e| e.key == "routes[0].auth" && e.message.contains("needs `jwt` or `forward`")),
        "{errors:#?}"
    );
}

#[test]
fn a_bad_forward_fails_the_route_even_beside_a_good_jwt() {
    let errors = parse("jwt:\n  keys: jwks.json\n  algorithms: [RS256]\nforward:\n  url: gopher://x").unwrap_err().0;
    assert!(errors.iter().any(|e| e.key == format!("{FORWARD}.url")), "{errors:#?}");
    let errors = parse("jwt:\n  keys: nowhere.json\n  algorithms: [RS256]\nforward:\n  url: gopher://x").unwrap_err().0;
    assert_eq!(errors.len(), 2, "both sections' problems are reported: {errors:#?}");
}
