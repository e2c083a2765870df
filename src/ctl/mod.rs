//! `wsgate ctl`: the operator's client of the admin API (`src/admin/`), so nobody has to
//! write curl lines with a Bearer header and percent-encoded IPv6 addresses by hand.
//!
//! The admin address and token come from the same config file the server reads (`-c`), or
//! from `--admin URL --token-file F` on a machine without it. Answers are shown as aligned
//! tables, or with `--json` exactly as the API sent them (for scripts). Exit codes: 0 done,
//! 1 the API refused or could not be reached (or `drain --wait` timed out), 2 a usage or
//! config mistake, as clap itself uses 2 for usage errors.

mod args;
mod client;
mod drain;
mod error;
mod target;
mod urls;
mod views;

#[cfg(test)]
mod tests;

use args::Action;
pub use args::{CtlArgs, DEFAULT_CONFIG};
use client::AdminClient;
use error::CtlError;
use std::process::ExitCode;

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
