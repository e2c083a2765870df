//! The process around the request path: start-up, reloads (SIGHUP, `config_watch`),
//! graceful drain and the readiness signal systemd and `--wait-ready` use.

pub(crate) mod allocator;
pub(crate) mod drain;
pub mod ready;
pub(crate) mod reload;
pub(crate) mod rlimit;
pub mod server;
pub(crate) mod watch;
