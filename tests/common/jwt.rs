//! Tokens for the JWT tests, signed with the test-only keys of `tests/fixtures/jwt/` (see
//! its README), and the route `auth` those keys verify.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://auth.test";
pub const AUDIENCE: &str = "chat";

pub fn jwt_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = jwt_fixture(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A route's `auth:` verifying RS256/ES256 tokens of the fixture JWKS from every place,
/// forwarding `sub` as `X-User-Id`.
pub fn jwt_auth(close_at_expiry: bool) -> serde_yaml::Value {
    let keys = jwt_fixture("jwks.json").display().to_string();
    let yaml = format!(
        "jwt:\n  keys: {keys:?}\n  algorithms: [RS256, ES256]\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  \
         token_from: ['header:Authorization', 'query:access_token', 'cookie:session', subprotocol]\n  \
         forward_claims: {{sub: X-User-Id}}\n  close_at_expiry: {close_at_expiry}\n"
    );
    serde_yaml::from_str(&yaml).expect("the auth YAML parses")
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims the route accepts: `sub`, `iss`, `aud`, and `exp` five minutes ahead.
pub fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now_secs() + 300})
}

/// `claims` with `key` set to `value`.
pub fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// Signed with the fixture private key (or, for HS*, the secret's bytes) `key`.
pub fn sign(alg: Algorithm, key: &str, kid: Option<&str>, claims: &Value) -> String {
    let bytes = fixture_bytes(key);
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => EncodingKey::from_rsa_pem(&bytes).unwrap(),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&bytes).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&bytes).unwrap(),
        _ => EncodingKey::from_secret(bytes.trim_ascii_end()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    encode(&header, claims, &key).unwrap()
}

/// RS256 with the key the JWKS has as `rsa-1`.
pub fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa_private.pem", Some("rsa-1"), claims)
}

/// HS256 whose secret is the RSA public key's PEM text: what algorithm confusion forges.
pub fn hs256_with_rsa_public_key(claims: &Value) -> String {
    let key = EncodingKey::from_secret(&fixture_bytes("rsa_public.pem")).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    encode(&header, claims, &key).unwrap()
}

/// `alg: none`: header and claims, empty signature.
pub fn unsigned(claims: &Value) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", part(&json!({"alg": "none", "typ": "JWT"})), part(claims))
}

/// `token` with one character in the middle of its signature changed.
pub fn tampered(token: &str) -> String {
    let signature = token.rfind('.').expect("three parts") + 1;
    let i = signature + (token.len() - signature) / 2;
    let mut bytes = token.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
