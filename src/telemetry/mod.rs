//! What wsgate tells its operators: Prometheus metrics, the access log, the admin listener
//! and its own log.

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod logging;
pub(crate) mod metrics;
