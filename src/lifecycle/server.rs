//! Assembles the Pingora server from the validated config: listeners, the proxy service
//! and one health-check background service per pool.

use crate::admin::AdminApi;
use crate::config::Config;
use crate::lifecycle::drain::{Drain, DrainService};
use crate::lifecycle::ready::{Readiness, ReadyService};
use crate::lifecycle::reload::{Live, LiveService};
use crate::listener::limits::Limits;
use crate::listener::tls::{ListenerCertificates, TlsAcceptors, TlsError};
use crate::listener::{AcceptFilter, GatedApp};
use crate::proxy::Gateway;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::admin::AdminApp;
use crate::telemetry::metrics::Metrics;
use log::{error, info};
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::Opt;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service as ListeningService;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Why wsgate could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    /// Never a silent default: running on settings other than the file's is worse than not
    /// starting.
    #[error("server: cannot hand the settings to Pingora: {0}")]
    ServerConf(#[from] serde_yaml::Error),
    #[error("access_log.path: cannot open {target:?}: {source}")]
    AccessLog { target: crate::config::model::AccessLogTarget, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

/// `watch`: reload on changes to the config's files, whatever `config_watch` says.
pub fn run(config: Config, config_path: PathBuf, opt: Opt, watch: bool) -> ExitCode {
    match start(config, config_path, opt, watch) {
        Ok(server) => {
            if server.configuration.daemon && server.configuration.daemon_wait_for_ready {
                crate::lifecycle::ready::release_parent_on_ready_signal();
            }
            server.run_forever()
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The Pingora server with every service added, not yet running.
fn start(config: Config, config_path: PathBuf, mut opt: Opt, watch: bool) -> Result<Server, StartError> {
    // We parsed the file ourselves (Pingora would read it again and ignore our keys) and
    // `-t` has been handled; the rest of Pingora's options (-d, -u) apply as they are.
    opt.conf = None;
    opt.test = false;
    // Pingora takes its `ServerConf` by value; the config keeps its own copy so a reload can
    // tell whether `server:` changed (`ServerConf` is not `Clone`: copy it through serde).
    crate::lifecycle::rlimit::raise_open_files();
    let server_conf = serde_yaml::from_value(serde_yaml::to_value(&config.server)?)?;
    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    // Bootstrap (taking over the listening sockets in an upgrade) runs as a service, after
    // a daemon has forked: that is what lets `wsgate -u -d` return to systemd before the
    // old process is asked to hand its sockets over. Listeners wait for it.
    let bootstrap = server.bootstrap_as_a_service();

    let config = Arc::new(config);
    let access_log = AccessLog::open(&config.access_log)
        .map_err(|source| StartError::AccessLog { target: config.access_log.target.clone(), source })?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new(config.upstreams.len());
    let certificates = Arc::new(ListenerCertificates::load(&config.listeners)?);
    let live = Live::new(config.clone(), config_path, metrics.clone(), readiness.clone(), certificates.clone());
    server.add_service(background_service("wsgate live config", LiveService { live: live.clone(), watch }));
    server.add_service(background_service("wsgate allocator", crate::lifecycle::allocator::AllocatorService));
    let drain = Drain::new(config.drain_window);
    server.add_service(background_service("wsgate drain", DrainService { drain: drain.clone() }));

    let limits = Arc::new(Limits::new(metrics.clone()));
    let tls = TlsAcceptors::build(&config.listeners, &certificates)?;
    let filter = Arc::new(AcceptFilter { limits: limits.clone(), live: live.clone() });
    let gateway = Gateway::new(live.clone(), metrics, limits.clone(), access_log, drain.clone());
    let mut http = pingora::proxy::http_proxy(&server.configuration, gateway);
    http.server_options = Some(http_options(&config));
    let proxy = proxy_service(GatedApp::new(http, limits, live.clone(), drain, tls), filter, &config);
    let mut listening = vec![server.add_service(proxy)];
    if let Some(address) = config.metrics {
        let mut admin = ListeningService::new("wsgate metrics".to_string(), AdminApp { readiness: readiness.clone() });
        admin.add_tcp(&address.to_string());
        listening.push(server.add_service(admin));
        info!("metrics on http://{address}/metrics, readiness on /ready");
    }
    if let Some(admin) = &config.admin {
        let mut api = ListeningService::new("wsgate admin".to_string(), AdminApi { live: live.clone() });
        api.add_tcp(&admin.address.to_string());
        listening.push(server.add_service(api));
        info!(
            "admin API on http://{}{}",
            admin.address,
            if admin.token.is_some() { "" } else { " (no token: loopback only)" }
        );
    }
    for handle in &listening {
        handle.add_dependency(&bootstrap);
    }
    let marker_for = server.configuration.daemon.then(|| PathBuf::from(&server.configuration.pid_file));
    let ready = server.add_service(background_service("wsgate readiness", ReadyService { readiness, marker_for }));
    ready.add_dependencies(&listening);
    Ok(server)
}

/// An HTTP/2 connection with no open stream for `keepalive_timeout` is closed, as an idle
/// HTTP/1.1 one is (Pingora alone keeps it for ever). Taken at start-up: Pingora reads it
/// from the proxy, which a reload does not rebuild.
fn http_options(config: &Config) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    // CONNECT reaches `request_filter`, which answers every one wsgate does not serve.
    options.allow_connect_method_proxying = true;
    options.h2_idle_timeout = Some(config.limits.keepalive_timeout);
    options
}

fn proxy_service(
    app: GatedApp<HttpProxy<Gateway>>,
    filter: Arc<AcceptFilter>,
    config: &Config,
) -> ListeningService<GatedApp<HttpProxy<Gateway>>> {
    let mut proxy = ListeningService::new("wsgate proxy".to_string(), app);
    proxy.set_connection_filter(filter);
    for listener in &config.listeners {
        let address = listener.address.to_string();
        // Plain TCP to Pingora also for TLS listeners: the connection gate runs the handshake.
        // No L4 read buffer: Pingora's HTTP layer reads into its own buffer anyway, and an
        // idle WebSocket session would otherwise keep 64 KiB of it (bench/RESULTS.md).
        proxy.add_listener(
            ListenerConfig::tcp(address.clone()).l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE)),
        );
        info!("listening on {address}{}", if listener.tls.is_some() { " (TLS)" } else { "" });
    }
    proxy
}
