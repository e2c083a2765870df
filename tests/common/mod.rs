//! Shared integration-test harness. Use from a test file with `mod common;`.
//!
//! * `config`   — `Config`, the typed builder of wsgate's YAML (`RawYaml` for hand-written text)
//! * `proxy`    — `Wsgate` (runs the binary), `check_config`, `free_port`
//! * `backends` — `HttpBackend`, `WsBackend` (each on its own tokio runtime)
//! * `https`    — `HttpsBackend` (TLS to backends), `h2_client` (HTTP/2 to wsgate)
//! * `h2ws`     — WebSocket over HTTP/2 (RFC 8441): `h2_ws_connect` / `h2_ws_connect_on`
//!   (`H2Ws`, a tungstenite client over `H2WsStream`), `h2_ws_open_raw`, `h2_read_exactly`
//! * `client`   — raw HTTP(S) requests, `backend_of`, `ws_connect` / `wss_connect`,
//!   `connect_echo_close` (`_as`: another Host, plain or TLS), self-signed certs,
//!   `copy_shipped_certs`
//! * `metrics`  — `scrape`, `sample`, `wait_for` a value on /metrics; `traffic_config`;
//!   `access_log_lines`
//! * `peers`    — `BulkBackend` (a body larger than socket buffers), `connect_from`, `read_until_closed`
//! * `raw`      — exact-bytes exchanges (`raw_request`), recording and misbehaving backends,
//!   `healthy_session` / `assert_unharmed` / `Verdicts` for tables of hostile cases
//! * `recorder` — `WsRecorder`, a WebSocket backend that records every byte it receives
#![allow(dead_code, unused_imports)]

pub mod auth_service;
pub mod backends;
pub mod client;
pub mod config;
pub mod h2ws;
pub mod https;
pub mod jwt;
pub mod metrics;
pub mod page;
pub mod peers;
pub mod proxy;
pub mod raw;
pub mod recorder;

pub use backends::*;
pub use client::*;
pub use config::*;
pub use h2ws::*;
pub use https::*;
pub use metrics::*;
pub use peers::*;
pub use proxy::*;
pub use raw::*;
pub use recorder::*;
