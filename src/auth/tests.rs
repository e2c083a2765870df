//! `auth::jwt` through the config, as a route gets it: each verdict of the list
//! with tokens signed by the fixture keys (`tests/fixtures/jwt/`), at a fixed clock. Token
//! places are in `tests/places.rs`, config errors in `tests/config.rs`, and the
//! never-panics property in `tests/fuzz.rs`.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, AlgorithmFamily, EncodingKey, Header};
use pingora::http::RequestHeader;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod config;
mod fuzz;
mod places;

/// The tests' clock: tokens are made relative to it, so they never expire in CI.
const NOW: u64 = 1_700_000_000;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
}

/// A config with one route on `/ws` whose `auth.jwt` is `jwt` (block YAML, unindented).
/// Relative paths in it are relative to the fixtures.
fn config_text(jwt: &str) -> String {
    let jwt: String = jwt.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "listeners:\n  - address: 127.0.0.1:8080\nupstreams:\n  app:\n    backends: [127.0.0.1:3001]\nroutes:\n  - path_prefix: /ws\n    upstream: app\n    auth:\n      jwt:\n{jwt}"
    )
}

fn parse(text: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    crate::config::parse(text, "test.yaml", &fixtures())
}

fn route_auth(jwt: &str) -> Arc<RouteAuth> {
    let config = parse(&config_text(jwt)).unwrap_or_else(|e| panic!("{e}"));
    config.routes[0].auth.clone().expect("the route has auth")
}

fn jwt(auth: &RouteAuth) -> &Jwt {
    auth.jwt.as_ref().expect("auth.jwt")
}

const RS256_JWKS: &str = "keys: jwks.json\nalgorithms: [RS256]\nissuer: https://auth.example.com\naudience: chat";

/// A token signed with the fixture private key `key` (or, for HS*, the secret's bytes).
fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let bytes = std::fs::read(fixtures().join(key)).unwrap();
    let key = match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&bytes).unwrap(),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&bytes).unwrap(),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&bytes).unwrap(),
        AlgorithmFamily::Hmac => EncodingKey::from_secret(bytes.trim_ascii_end()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, &key).unwrap()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": NOW + 300, "iss": "https://auth.example.com", "aud": "chat", "tenant": 42})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn request(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
    for (name, value) in headers {
        req.append_header(name.to_string(), *value).unwrap();
    }
    req
}

fn bearer(token: &str) -> RequestHeader {
    request("/ws", &[("Authorization", &format!("Bearer {token}"))])
}

fn result_of(jwt: &Jwt, req: &RequestHeader) -> AuthResult {
    match jwt.authenticate(req, at(NOW)) {
        Ok(_) => AuthResult::Ok,
        Err(failure) => failure.result,
    }
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa_private.pem", Some("rsa-1"), claims)
}

#[test]
fn an_rs256_token_is_verified_by_the_jwks_key_its_kid_names() {
    let auth = route_auth(RS256_JWKS);
    let identity = jwt(&auth).authenticate(&bearer(&rs256(&claims())), at(NOW)).unwrap();
    assert_eq!(identity.user.as_deref(), Some("alice"));
    assert_eq!(identity.expires_at, Some(at(NOW + 300)));
    assert_eq!(identity.found_in, TokenPlace::Bearer);
    // Without a kid, every RSA key of the set is a candidate.
    let no_kid = sign(Algorithm::RS256, "rsa_private.pem", None, &claims());
    assert_eq!(result_of(jwt(&auth), &bearer(&no_kid)), AuthResult::Ok);
    // A kid the set does not have selects no key.
    let other_kid = sign(Algorithm::RS256, "rsa_private.pem", Some("rsa-2"), &claims());
    let failure = jwt(&auth).authenticate(&bearer(&other_kid), at(NOW)).unwrap_err();
    assert_eq!((failure.result, failure.detail.contains("no key")), (AuthResult::Invalid, true), "{failure}");
}

#[test]
fn es256_and_eddsa_tokens_are_verified_by_pem_keys() {
    let es = route_auth("keys: ec_public.pem\nalgorithms: [ES256]");
    let token = sign(Algorithm::ES256, "ec_private.pem", None, &claims());
    assert_eq!(result_of(jwt(&es), &bearer(&token)), AuthResult::Ok);
    // The JWKS's EC key verifies the same token by kid.
    let es_jwks = route_auth("keys: jwks.json\nalgorithms: [RS256, ES256]");
    let token = sign(Algorithm::ES256, "ec_private.pem", Some("ec-1"), &claims());
    assert_eq!(result_of(jwt(&es_jwks), &bearer(&token)), AuthResult::Ok);

    let ed = route_auth("keys: ed25519_public.pem\nalgorithms: [EdDSA]");
    let token = sign(Algorithm::EdDSA, "ed25519_private.pem", None, &claims());
    assert_eq!(result_of(jwt(&ed), &bearer(&token)), AuthResult::Ok);
}

#[test]
fn a_pem_file_of_several_keys_verifies_with_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut pem = std::fs::read_to_string(fixtures().join("ec_public.pem")).unwrap();
    pem += &std::fs::read_to_string(fixtures().join("rsa_public.pem")).unwrap();
    let path = dir.path().join("keys.pem");
    std::fs::write(&path, pem).unwrap();
    let auth = route_auth(&format!("keys: {}\nalgorithms: [ES256, RS256]", path.display()));
    for token in [rs256(&claims()), sign(Algorithm::ES256, "ec_private.pem", None, &claims())] {
        assert_eq!(result_of(jwt(&auth), &bearer(&token)), AuthResult::Ok);
    }
}

#[test]
fn an_hs256_token_is_verified_with_the_secret_file() {
    let auth = route_auth("secret_file: hs256.key\nalgorithms: [HS256]");
    let token = sign(Algorithm::HS256, "hs256.key", None, &claims());
    assert_eq!(result_of(jwt(&auth), &bearer(&token)), AuthResult::Ok);
    // The file's trailing newline is not part of the secret.
    let with_newline = EncodingKey::from_secret(&std::fs::read(fixtures().join("hs256.key")).unwrap()).unwrap();
    let token = encode(&Header::new(Algorithm::HS256), &claims(), &with_newline).unwrap();
    assert_eq!(result_of(jwt(&auth), &bearer(&token)), AuthResult::Invalid);
}

#[test]
fn exp_is_required_and_checked_with_a_minute_of_leeway() {
    let auth = route_auth(RS256_JWKS);
    let verdict = |claims: Value| result_of(jwt(&auth), &bearer(&rs256(&claims)));
    assert_eq!(verdict(with(claims(), "exp", json!(NOW - 61))), AuthResult::Expired);
    assert_eq!(verdict(with(claims(), "exp", json!(NOW - 30))), AuthResult::Ok, "within the leeway");
    assert_eq!(verdict(without(claims(), "exp")), AuthResult::Invalid);
    assert_eq!(verdict(with(claims(), "exp", json!("tomorrow"))), AuthResult::Invalid);
    let failure = jwt(&auth).authenticate(&bearer(&rs256(&with(claims(), "exp", json!(1)))), at(NOW)).unwrap_err();
    assert_eq!(failure.www_authenticate(), "Bearer error=\"invalid_token\"");
}

#[test]
fn nbf_in_the_future_is_refused() {
    let auth = route_auth(RS256_JWKS);
    let verdict = |claims: Value| result_of(jwt(&auth), &bearer(&rs256(&claims)));
    assert_eq!(verdict(with(claims(), "nbf", json!(NOW + 120))), AuthResult::Invalid);
    assert_eq!(verdict(with(claims(), "nbf", json!(NOW + 30))), AuthResult::Ok, "within the leeway");
    assert_eq!(verdict(with(claims(), "nbf", json!(NOW - 10))), AuthResult::Ok);
}

#[test]
fn a_configured_issuer_and_audience_must_be_present_and_match() {
    let auth = route_auth(RS256_JWKS);
    let verdict = |claims: Value| result_of(jwt(&auth), &bearer(&rs256(&claims)));
    assert_eq!(verdict(with(claims(), "iss", json!("https://evil.example.com"))), AuthResult::Invalid);
    assert_eq!(verdict(without(claims(), "iss")), AuthResult::Invalid);
    assert_eq!(verdict(with(claims(), "aud", json!("billing"))), AuthResult::Invalid);
    assert_eq!(verdict(without(claims(), "aud")), AuthResult::Invalid);
    assert_eq!(verdict(with(claims(), "aud", json!(["billing", "chat"]))), AuthResult::Ok);
    // Without `audience` in the config, a token's `aud` is not held against it.
    let open = route_auth("keys: jwks.json\nalgorithms: [RS256]");
    assert_eq!(result_of(jwt(&open), &bearer(&rs256(&claims()))), AuthResult::Ok);
}

#[test]
fn alg_none_and_unlisted_algorithms_are_refused() {
    let auth = route_auth(RS256_JWKS);
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT"})), part(claims()));
    assert_eq!(result_of(jwt(&auth), &bearer(&none)), AuthResult::Invalid);
    // ES256 is in neither the list nor verified by the set's EC key on this route.
    let es = sign(Algorithm::ES256, "ec_private.pem", Some("ec-1"), &claims());
    let failure = jwt(&auth).authenticate(&bearer(&es), at(NOW)).unwrap_err();
    assert_eq!((failure.result, failure.detail.contains("not accepted")), (AuthResult::Invalid, true), "{failure}");
}

#[test]
fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the attacker knows the public key and uses its PEM bytes as
    // an HMAC secret, hoping the verifier feeds the same bytes to HMAC.
    let public_pem = std::fs::read(fixtures().join("rsa_public.pem")).unwrap();
    let forged =
        encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(&public_pem).unwrap()).unwrap();
    let auth = route_auth(RS256_JWKS);
    assert_eq!(result_of(jwt(&auth), &bearer(&forged)), AuthResult::Invalid);
    // Even with HS256 accepted (the config refuses that; built directly here), an RSA key
    // never verifies an HMAC token.
    let keys = crate::auth::load_keys(&fixtures().join("rsa_public.pem")).unwrap();
    let confused = Jwt::new(JwtSettings {
        keys,
        algorithms: vec![Algorithm::RS256, Algorithm::HS256],
        issuer: None,
        audience: None,
        token_from: vec![TokenPlace::Bearer],
        forward_claims: vec![],
        keep_token: false,
        close_at_expiry: false,
    });
    let failure = confused.authenticate(&bearer(&forged), at(NOW)).unwrap_err();
    assert_eq!((failure.result, failure.detail.contains("no key for HS256")), (AuthResult::Invalid, true));
}

#[test]
fn missing_garbage_and_tampered_tokens() {
    let auth = route_auth(RS256_JWKS);
    let missing = jwt(&auth).authenticate(&request("/ws", &[]), at(NOW)).unwrap_err();
    assert_eq!((missing.result, missing.www_authenticate()), (AuthResult::Missing, "Bearer"));
    assert_eq!(missing.result.label(), "missing");
    let basic = request("/ws", &[("Authorization", "Basic YWxpY2U6c2VjcmV0")]);
    assert_eq!(result_of(jwt(&auth), &basic), AuthResult::Missing);
    for garbage in ["x", "a.b.c", "eyJ.eyJ.", "....", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", &"A".repeat(20_000)] {
        assert_eq!(result_of(jwt(&auth), &bearer(garbage)), AuthResult::Invalid, "{garbage}");
    }
    let token = rs256(&claims());
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    assert_eq!(result_of(jwt(&auth), &bearer(&tampered)), AuthResult::Invalid);
    let other_claims = format!("{}.{}.{signature}", head.split('.').next().unwrap(), URL_SAFE_NO_PAD.encode("{}"));
    assert_eq!(result_of(jwt(&auth), &bearer(&other_claims)), AuthResult::Invalid);
}

#[test]
fn forward_claims_set_headers_and_a_forged_one_is_removed() {
    let auth = route_auth(&format!(
        "{RS256_JWKS}\nforward_claims: {{sub: X-User-Id, tenant: X-Tenant, roles: X-Roles, note: X-Note}}"
    ));
    let claims = with(with(claims(), "roles", json!(["admin"])), "note", json!("line\nbreak"));
    let mut req = request(
        "/ws",
        &[("Authorization", &format!("Bearer {}", rs256(&claims))), ("X-User-Id", "root"), ("X-Roles", "admin")],
    );
    let identity = jwt(&auth).authenticate(&req, at(NOW)).unwrap();
    jwt(&auth).prepare(&mut req, &identity);
    let values =
        |name: &str| req.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(values("x-user-id"), ["alice"], "the client's X-User-Id is gone");
    assert_eq!(values("x-tenant"), ["42"], "a number is forwarded");
    assert!(values("x-roles").is_empty(), "a list is not, and the client's copy is removed");
    assert!(values("x-note").is_empty(), "nor a value that is no header value");
    assert!(values("authorization").is_empty(), "the token is taken out");
    assert!(!jwt(&auth).close_at_expiry());
}

#[test]
fn labels_are_the_metric_values() {
    let labels: Vec<&str> =
        [AuthResult::Ok, AuthResult::Missing, AuthResult::Invalid, AuthResult::Expired, AuthResult::Error]
            .iter()
            .map(AuthResult::label)
            .collect();
    assert_eq!(labels, ["ok", "missing", "invalid", "expired", "error"]);
}
