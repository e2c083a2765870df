//! `wsgate ctl`: the operator's client of the admin API (`src/admin/`), so nobody has to
//! write curl lines with a Bearer header and percent-encoded IPv6 addresses by hand.
//!
//! The admin address and token come from the same config file the server reads (`-c`), or
//! from `--admin URL --token-file F` on a machine without it. Answers are shown as aligned
//! tables, or with `--json` exactly as the API sent them (for scripts). Exit codes: 0 done,
//! 1 the API refused or could not be reached (or `drain --wait` timed out), 2 a usage or
//! config mistake, as clap itself uses 2 for usage errors.

mod client;
mod drain;
mod target;
mod urls;
mod views;

#[cfg(test)]
mod tests;

use clap::{Args, Subcommand};
use client::AdminClient;
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// Take a backend out of rotation and close its sessions (Close 1001) spread over a window
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
        /// The WebSocket close code sent to both ends [default: the server's]
        #[arg(long, value_name = "CODE")]
        code: Option<u16>,
        /// The close reason sent to both ends
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

/// The config's duration syntax (`250ms`, `5s`, `2m`, `1h`, `1d`). A copy of
/// `config::duration::parse_duration`, which is private to the config module; a bare
/// number is refused for the same reason (seconds or milliseconds?).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let millis: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration `{text}`: expected a number with a unit, e.g. 250ms, 30s, 2m")),
    };
    let n: u64 = digits.parse().map_err(|_| format!("invalid duration `{text}`: expected a number before `{unit}`"))?;
    n.checked_mul(millis).map(Duration::from_millis).ok_or_else(|| format!("invalid duration `{text}`: too large"))
}

/// Why `ctl` failed, and so its exit code.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum CtlError {
    /// The invocation or the config cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The API refused, could not be reached, or a wait timed out (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Runs `wsgate ctl` and returns the process's exit code.
pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsgate ctl: {e}");
            ExitCode::from(match e {
                CtlError::Usage(_) => 2,
                CtlError::Failed(_) => 1,
            })
        }
    }
}

fn execute(args: &CtlArgs) -> Result<(), CtlError> {
    let target = target::resolve(&args.connection)?;
    // One request at a time: a current-thread runtime is all a CLI needs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CtlError::Failed(format!("cannot start the async runtime: {e}")))?;
    let client = AdminClient::new(target.address, target.token.clone());
    runtime.block_on(dispatch(&client, &args.action, args.connection.json, &target))
}

async fn dispatch(client: &AdminClient, action: &Action, json: bool, target: &target::Target) -> Result<(), CtlError> {
    match action {
        Action::Upstreams => views::show(&client.call("GET", "/upstreams").await?, json, views::upstreams),
        Action::Sessions { upstream, backend, route, limit } => {
            let limit = limit.map(|n| n.to_string());
            let query = [
                ("upstream", upstream.as_deref()),
                ("backend", backend.as_deref()),
                ("route", route.as_deref()),
                ("limit", limit.as_deref()),
            ];
            let path = urls::with_query("/sessions", query);
            views::show(&client.call("GET", &path).await?, json, views::sessions)
        }
        Action::Drain { pool, addr, window, wait, timeout } => {
            let request = drain::Request { pool, addr, window: window.as_ref(), wait: *wait, timeout: *timeout };
            drain::run(client, &request, target.drain_window, json).await
        }
        Action::Enable { pool, addr } => {
            let path = urls::backend(pool, addr, "enable");
            views::show(&client.call("POST", &path).await?, json, views::enabled)
        }
        Action::Close { id, code, reason } => {
            let code = code.map(|c| c.to_string());
            let query = [("code", code.as_deref()), ("reason", reason.as_deref())];
            let path = urls::with_query(&format!("/sessions/{id}"), query);
            views::show(&client.call("DELETE", &path).await?, json, views::closed)
        }
    }
}
