//! `auth.jwt` in the config file: what is accepted, and every mistake reported at its key.

use super::*;
use crate::config::ConfigError;

const JWT: &str = "routes[0].auth.jwt";

fn errors(jwt: &str) -> Vec<ConfigError> {
    match parse(&config_text(jwt)) {
        Ok(_) => panic!("expected errors for:\n{jwt}"),
        Err(e) => e.0,
    }
}

/// `jwt` is refused with a problem at `key` (below `routes[0].auth.jwt`) that says `what`.
#[track_caller]
fn refused(jwt: &str, key: &str, what: &str) {
    let errors = errors(jwt);
    let key = if key.is_empty() { JWT.to_string() } else { format!("{JWT}.{key}") };
    assert!(
        errors.iter().any(|e| e.key == key && e.message.contains(what) && e.line.is_some()),
        "no error at {key} saying {what:?} for\n{jwt}\ngot: {errors:#?}"
    );
}

#[test]
fn the_documented_example_is_accepted_with_its_values() {
    let auth = route_auth(
        "keys: jwks.json\nalgorithms: [RS256, ES256]\nissuer: https://auth.example.com\naudience: [chat, admin]\n\
         token_from: [header:Authorization, query:access_token, cookie:session, subprotocol]\n\
         forward_claims: {sub: X-User-Id}\nkeep_token: true\nclose_at_expiry: true",
    );
    let jwt = jwt(&auth);
    assert!(jwt.close_at_expiry());
    let req = request("/ws?access_token=x", &[]);
    let failure = jwt.authenticate(&req, at(NOW)).unwrap_err();
    assert_eq!(failure.result, AuthResult::Invalid, "the query parameter was looked at: {failure}");
}

#[test]
fn defaults_take_the_bearer_header_and_a_route_without_auth_has_none() {
    let auth = route_auth("keys: jwks.json\nalgorithms: [RS256]");
    let failure = jwt(&auth).authenticate(&request("/ws?access_token=x", &[]), at(NOW)).unwrap_err();
    assert_eq!((failure.result, failure.detail.as_str()), (AuthResult::Missing, "no token in header:Authorization"));
    let mut req = bearer(&rs256(&claims()));
    let identity = jwt(&auth).authenticate(&req, at(NOW)).unwrap();
    jwt(&auth).prepare(&mut req, &identity);
    assert!(req.headers.get("authorization").is_none(), "keep_token defaults to false");
    assert!(!jwt(&auth).close_at_expiry());

    let plain = "listeners: [{address: 127.0.0.1:8080}]\nupstreams: {app: {backends: [127.0.0.1:3001]}}\nroutes: [{upstream: app}]";
    assert!(parse(plain).unwrap().routes[0].auth.is_none());
}

#[test]
fn key_files_are_found_relative_to_the_config_or_absolute() {
    let absolute = fixtures().join("jwks.json");
    route_auth(&format!("keys: {}\nalgorithms: [RS256]", absolute.display()));
    refused("keys: nowhere.json\nalgorithms: [RS256]", "keys", "cannot read");
    refused("secret_file: nowhere.key\nalgorithms: [HS256]", "secret_file", "cannot read");
}

#[test]
fn broken_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cases = [
        (file("bad.json", "{\"keys\": [{\"kty\": \"RSA\"}"), "is not a valid JWKS"),
        (file("empty.json", "{\"keys\": []}"), "holds no"),
        (file("oct.json", "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}"), "symmetric"),
        (file("text.pem", "hello"), "neither a JWKS"),
        (file("cut.pem", "-----BEGIN PUBLIC KEY-----\nMIIB\n"), "without its `END PUBLIC KEY`"),
        (file("junk.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), "is not an RSA, EC"),
        (fixtures().join("rsa_private.pem").display().to_string(), "is a private key"),
    ];
    for (path, what) in cases {
        refused(&format!("keys: {path}\nalgorithms: [RS256]"), "keys", what);
    }
    // Keys that exist but verify none of the configured algorithms.
    refused("keys: ed25519_public.pem\nalgorithms: [RS256]", "keys", "no key in ed25519_public.pem verifies RS256");
    let short = file("short.key", "too short\n");
    refused(&format!("secret_file: {short}\nalgorithms: [HS256]"), "secret_file", "at least 32");
    refused("secret_file: hs256.key\nalgorithms: [HS512]", "secret_file", "at least 64");
}

#[test]
fn algorithms_must_be_known_signed_and_fit_the_key_source() {
    refused("keys: jwks.json\nalgorithms: []", "algorithms", "at least one");
    refused("keys: jwks.json\nalgorithms: [RS256, XS256]", "algorithms[1]", "is not one of");
    refused("keys: jwks.json\nalgorithms: [none]", "algorithms[0]", "never allowed");
    refused("keys: jwks.json\nalgorithms: [RS256, HS256]", "algorithms", "cannot be mixed");
    refused("keys: jwks.json\nalgorithms: [RS256, HS256]", "algorithms[1]", "needs `secret_file`");
    refused("secret_file: hs256.key\nalgorithms: [RS256]", "algorithms[0]", "needs `keys`");
    refused("algorithms: [RS256]", "", "needs `keys`");
    refused("keys: jwks.json\nsecret_file: hs256.key\nalgorithms: [RS256]", "", "not both");
    let missing = errors("keys: jwks.json");
    assert!(missing.iter().any(|e| e.key == JWT && e.message.contains("algorithms")), "{missing:#?}");
}

#[test]
fn token_places_must_be_well_formed() {
    let with_places = |places: &str| format!("keys: jwks.json\nalgorithms: [RS256]\ntoken_from: [{places}]");
    refused(&with_places(""), "token_from", "at least one");
    refused(&with_places("subprotocol, \"header:bad name\""), "token_from[1]", "not a valid header name");
    refused(&with_places("\"query:\""), "token_from[0]", "needs a name");
    refused(&with_places("\"cookie:\""), "token_from[0]", "needs a name");
    refused(&with_places("body:token"), "token_from[0]", "is not a token place");
    refused(&with_places("header:Host"), "token_from[0]", "cannot carry a token");
    refused(&with_places("header:Cookie"), "token_from[0]", "cookie:NAME");
    refused(&with_places("header:Sec-WebSocket-Protocol"), "token_from[0]", "is `subprotocol`");
    refused(&with_places("subprotocol, subprotocol"), "token_from[1]", "listed twice");
}

#[test]
fn claims_are_forwarded_only_in_valid_headers_wsgate_does_not_manage() {
    let with_claims = |claims: &str| format!("keys: jwks.json\nalgorithms: [RS256]\nforward_claims:\n  {claims}");
    refused(&with_claims("sub: \"X User\""), "forward_claims.sub", "not a valid header name");
    for reserved in ["Host", "Connection", "Upgrade", "Sec-WebSocket-Key", "Content-Length", "Transfer-Encoding"] {
        refused(&with_claims(&format!("sub: {reserved}")), "forward_claims.sub", "a claim cannot set it");
    }
    for reserved in ["X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP"] {
        refused(&with_claims(&format!("sub: {reserved}")), "forward_claims.sub", "a claim cannot set it");
    }
    refused(&with_claims("sub: X-User\n  email: x-user"), "forward_claims.sub", "already carries claim `email`");
}

#[test]
fn the_auth_section_is_checked_key_by_key() {
    refused("keys: jwks.json\nalgorithms: [RS256]\naudience: []", "audience", "at least one");
    refused("keys: jwks.json\nalgorithms: [RS256]\nissuer: \"\"", "issuer", "cannot be empty");
    let typo = errors("keys: jwks.json\nalgorithms: [RS256]\nleeway: 5");
    assert!(
        typo.iter().any(|e| e.key == format!("{JWT}.leeway") && e.message.contains("unknown field `leeway`")),
        "{typo:#?}"
    );
    let audience = errors("keys: jwks.json\nalgorithms: [RS256]\naudience: {a: b}");
    assert!(audience.iter().any(|e| e.message.contains("a string or a list of strings")), "{audience:#?}");
    let text = config_text("keys: jwks.json\nalgorithms: [RS256]").replace("      jwt:\n", "      jwtt:\n");
    let unknown = parse(&text).unwrap_err().0;
    assert!(unknown.iter().any(|e| e.key == "routes[0].auth.jwtt" && e.message.contains("unknown field `jwtt`")));
    let empty = config_text("").replace("      jwt:\n", "      {}\n");
    let empty = parse(&empty).unwrap_err().0;
    assert!(empty.iter().any(|e| e.key == "routes[0].auth" && e.message.contains("needs `jwt`")), "{empty:#?}");
}
