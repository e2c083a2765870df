//! wsgate: an HTTP and WebSocket reverse proxy on Pingora.
//!
//! The binary (`src/main.rs`) is a thin CLI over [`server::run`]; the library exists so
//! fuzz targets (`fuzz/`) can drive the parsers directly.

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod allocator;
pub mod config;
pub mod connections;
pub mod discovery;
pub mod drain;
pub mod headers;
pub mod health;
pub mod limits;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod ready;
pub mod responses;
pub mod routing;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod websocket;
