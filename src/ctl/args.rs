//! `wsgate ctl`'s command line (clap derive).

use crate::config::parse_duration;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Where the server and `ctl` look for the config when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/wsgate/wsgate.yaml";

/// `wsgate ctl`'s arguments: how to reach the admin API, and what to ask it.
#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(subcommand)]
    pub(crate) action: Action,
}

/// Global so they may come before or after the action (`ctl --json upstreams` or
/// `ctl upstreams --json`).
#[derive(Args, Debug)]
pub(crate) struct Connection {
    /// The config file to read admin.address and admin.token_file from [default: /etc/wsgate/wsgate.yaml]
    #[arg(short = 'c', long = "conf", value_name = "FILE", global = true, conflicts_with = "admin")]
    pub(crate) config: Option<PathBuf>,
    /// The admin API's base URL (e.g. http://127.0.0.1:9102) instead of reading a config
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) admin: Option<String>,
    /// A file holding the Bearer token (trimmed); overrides the config's admin.token_file
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// Print the API's JSON answer unchanged instead of a table
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Subcommand, Debug, PartialEq)]
pub(crate) enum Action {
    /// Each pool and its backends: weight, health, rotation, draining, sessions, requests
    Upstreams,
    /// Open WebSocket sessions, optionally filtered
    Sessions {
        /// Only sessions of this pool
        #[arg(long, value_name = "NAME")]
        upstream: Option<String>,
        /// Only sessions on this backend (host:port as in the config)
        #[arg(long, value_name = "ADDR")]
        backend: Option<String>,
        /// Only sessions of this route
        #[arg(long, value_name = "NAME")]
        route: Option<String>,
        /// At most N sessions (the total is still reported)
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Take a backend out of rotation and close its sessions (Close 1012, the idlest first) over a window
    Drain {
        /// The pool (a name under `upstreams:`)
        pool: String,
        /// The backend's address as in the pool (e.g. 10.0.0.7:9001 or [::1]:9001)
        addr: String,
        /// Spread the closes over this long (250ms, 30s, 2m) [default: the config's drain.window]
        #[arg(long, value_name = "DURATION", value_parser = parse_window)]
        window: Option<Window>,
        /// Return only once the backend holds no session (for a Kubernetes preStop hook)
        #[arg(long)]
        wait: bool,
        /// With --wait: give up (exit 1) after this long [default: the window + 60s]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "wait")]
        timeout: Option<Duration>,
    },
    /// Put a drained backend back in rotation
    Enable {
        /// The pool (a name under `upstreams:`)
        pool: String,
        /// The backend's address as in the pool
        addr: String,
    },
    /// Close one WebSocket session (its id from `sessions`)
    Close {
        id: u64,
        /// The close code the client gets (1000, 1001, 1008, 1011, 1012, 1013, 4000-4999) [default: 1000]
        #[arg(long, value_name = "CODE")]
        code: Option<u16>,
        /// The close reason the client gets (at most 123 bytes)
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// `--window` as typed (the server parses the same syntax) and as a duration (for the
/// default `--timeout`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    pub(crate) text: String,
    pub(crate) duration: Duration,
}

fn parse_window(text: &str) -> Result<Window, String> {
    Ok(Window { text: text.trim().to_string(), duration: parse_duration(text)? })
}
