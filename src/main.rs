//! wsgate: an HTTP and WebSocket reverse proxy on Pingora.

use wsgate::config;
use wsgate::ctl::{self, CtlArgs, DEFAULT_CONFIG};
use wsgate::import::{self, ImportArgs};
use wsgate::lifecycle::{ready, server};
use wsgate::telemetry::logging;

use clap::{Parser, Subcommand};
use pingora::server::configuration::Opt;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// HTTP and WebSocket reverse proxy.
#[derive(Parser, Debug)]
#[command(name = "wsgate", version, about, long_about = None)]
// `wsgate -c FILE ctl ...` would silently ignore that -c (ctl has its own): refuse it.
#[command(args_conflicts_with_subcommands = true)]
#[command(mut_arg("conf", |a| a.value_name("FILE").help("The YAML config file [default: /etc/wsgate/wsgate.yaml]")))]
#[command(mut_arg("test", |a| a.help("Check the config file and exit: 0 if valid, 1 listing every error")))]
#[command(mut_arg("daemon", |a| a.help("Run in the background")))]
#[command(mut_arg("upgrade", |a| a.help("Take over the listening sockets of a running wsgate (zero-downtime upgrade)")))]
struct Cli {
    /// Pingora's own options (-c, -t, -d, -u), with wsgate's help texts.
    #[command(flatten)]
    pingora: Opt,

    /// Wait until the daemon named in the config's pid file serves (listeners up, pools
    /// health-checked), at most SECONDS; exit 0 then, 1 on timeout. For systemd's
    /// ExecStartPost and ExecReload.
    #[arg(long, value_name = "SECONDS")]
    wait_ready: Option<u64>,

    /// Reload, as SIGHUP does, when the config file or a file it names changes (the
    /// config's `config_watch: true` does the same)
    #[arg(long)]
    watch: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask a running wsgate's admin API: upstreams, sessions, drain, enable, close
    Ctl(CtlArgs),
    /// Translate an nginx config into a wsgate config, reporting what does not carry over
    #[command(after_help = "The YAML goes to stdout (or OUT), the report to stderr: one line per directive \
translated approximately or not at all, and per likely mistake, each FILE:LINE.\n\
Exit: 0 usable (passes `wsgate -t`), 1 nothing to route or fails `wsgate -t` here, 2 a file does not parse.\n\
Reference: docs/import-nginx.md")]
    ImportNginx(ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // No logger for the subcommands: their own messages are their output, and the server's
    // log format would only add noise to them.
    match cli.command {
        Some(Command::Ctl(args)) => return ctl::run(args),
        Some(Command::ImportNginx(args)) => return import::run(args),
        None => {}
    }
    logging::init();

    let path = PathBuf::from(cli.pingora.conf.clone().unwrap_or_else(|| DEFAULT_CONFIG.to_string()));
    let config = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("wsgate: configuration {} has {} error(s)", path.display(), errors.0.len());
            return ExitCode::FAILURE;
        }
    };
    if let Some(seconds) = cli.wait_ready {
        let pid_file = PathBuf::from(&config.server.pid_file);
        return match ready::wait_ready(&pid_file, std::time::Duration::from_secs(seconds)) {
            Ok(pid) => {
                println!("wsgate: process {pid} is ready");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wsgate: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.pingora.test {
        println!("wsgate: configuration {} is valid", path.display());
        return ExitCode::SUCCESS;
    }
    // Reloads re-read the file later, possibly after a daemon changed directory to `/`. Not
    // canonicalized: a Kubernetes ConfigMap's file is a symlink into a directory that the
    // next update deletes, so the path must stay the one the user gave.
    let path = std::path::absolute(&path).unwrap_or(path);
    server::run(config, path, cli.pingora, cli.watch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn the_server_flags_parse_as_before_the_subcommand() {
        let cli = parse("wsgate -c /tmp/w.yaml").unwrap();
        assert_eq!((cli.pingora.conf.as_deref(), cli.command.is_none()), (Some("/tmp/w.yaml"), true));
        let cli = parse("wsgate -t -c w.yaml").unwrap();
        assert!(cli.pingora.test && cli.command.is_none());
        let cli = parse("wsgate --wait-ready 60 -c w.yaml").unwrap();
        assert_eq!(cli.wait_ready, Some(60));
        let cli = parse("wsgate -u -d -c w.yaml").unwrap();
        assert!(cli.pingora.upgrade && cli.pingora.daemon);
        assert!(parse("wsgate --watch -c w.yaml").unwrap().watch);
    }

    #[test]
    fn ctl_is_a_subcommand_with_its_own_config_flag() {
        let cli = parse("wsgate ctl -c w.yaml upstreams").unwrap();
        assert!(matches!(cli.command, Some(Command::Ctl(_))) && cli.pingora.conf.is_none());
        assert!(parse("wsgate -c w.yaml ctl upstreams").is_err(), "the server's -c must not be silently ignored");
        assert!(parse("wsgate nonsense").is_err());
    }

    #[test]
    fn import_nginx_is_a_subcommand() {
        let cli = parse("wsgate import-nginx /etc/nginx/nginx.conf -o w.yaml").unwrap();
        let Some(Command::ImportNginx(args)) = cli.command else { panic!("not import-nginx: {cli:?}") };
        assert_eq!(
            (args.file.to_str(), args.output.as_ref().and_then(|p| p.to_str())),
            (Some("/etc/nginx/nginx.conf"), Some("w.yaml"))
        );
        assert!(parse("wsgate import-nginx").is_err(), "FILE is required");
        assert!(parse("wsgate -c w.yaml import-nginx n.conf").is_err());
    }
}
