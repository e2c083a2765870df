//! A route's `auth` in the YAML file, as written (see `validate/auth.rs` and
//! `validate/auth_forward.rs` for what is checked and loaded).

use crate::config::duration::ConfigDuration;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A route's `auth`: what a client must prove before its request reaches a backend.
/// Either or both: `jwt` is checked first, then `forward`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    #[serde(default)]
    pub(crate) jwt: Option<RawJwt>,
    #[serde(default)]
    pub(crate) forward: Option<RawForward>,
}

/// `auth.jwt`; checked and loaded in `validate/auth.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwt {
    #[serde(default)]
    pub(crate) keys: Option<String>,
    #[serde(default)]
    pub(crate) secret_file: Option<String>,
    pub(crate) algorithms: Vec<String>,
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    #[serde(default)]
    pub(crate) audience: Option<RawAudience>,
    #[serde(default)]
    pub(crate) token_from: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) forward_claims: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) keep_token: bool,
    #[serde(default)]
    pub(crate) close_at_expiry: bool,
}

/// `audience: chat` or `audience: [chat, admin]`.
#[derive(Debug)]
pub(crate) struct RawAudience(pub(crate) Vec<String>);

// Hand-written for the same reason as `RawBackend`'s: a useful error.
impl<'de> Deserialize<'de> for RawAudience {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(one) => Ok(RawAudience(vec![one])),
            value @ serde_yaml::Value::Sequence(_) => {
                serde_yaml::from_value(value).map(RawAudience).map_err(D::Error::custom)
            }
            _ => Err(D::Error::custom("an audience is a string or a list of strings")),
        }
    }
}

/// `auth.forward: {url, timeout, copy_headers, cache}`, an nginx `auth_request`-style
/// subrequest; checked in `validate/auth_forward.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawForward {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub(crate) copy_headers: Vec<String>,
    #[serde(default)]
    pub(crate) cache: Option<ConfigDuration>,
}
