//! wsgate: an HTTP and WebSocket reverse proxy on Pingora.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`lifecycle::server::run`]; the library
//! exists so fuzz targets (`fuzz/`) can drive the parsers directly. Only what those need is
//! `pub`. Folders follow a request: `listener` (accept, TLS, the gated stream) → `proxy`
//! (Pingora hooks, admission, routing, header policy, answers) → `upstream` (pools, health,
//! discovery) → `websocket` (upgrade, tunnel, frames); around them `lifecycle` (start,
//! reload, drain, readiness), `telemetry` (metrics, access log, the metrics listener,
//! logging), `admin` (the operators' API), `config` (YAML to one validated model) and
//! `import` (`wsgate import-nginx`: an nginx config to wsgate's YAML).

pub(crate) mod admin;
pub mod auth;
pub mod config;
pub mod ctl;
pub mod import;
pub mod lifecycle;
pub mod listener;
pub mod proxy;
pub mod telemetry;
pub(crate) mod upstream;
pub mod websocket;
