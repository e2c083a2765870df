//! wsgate: an HTTP and WebSocket reverse proxy on Pingora.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`server::run`]; the library exists so
//! fuzz targets (`fuzz/`) can drive the parsers directly. Only what those need is `pub`.

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod admission;
pub(crate) mod allocator;
pub(crate) mod certificates;
pub mod config;
pub mod connections;
pub(crate) mod discovery;
pub(crate) mod drain;
pub mod headers;
pub(crate) mod health;
pub(crate) mod limits;
pub(crate) mod live;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub mod ready;
pub(crate) mod responses;
pub(crate) mod routing;
pub mod server;
pub(crate) mod tls;
pub(crate) mod upstream;
pub mod websocket;
