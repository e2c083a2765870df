//! DNS service discovery for pools with `discovery: dns`: every `resolve_every`, each
//! backend name is resolved again and every address becomes a backend (a Kubernetes
//! headless service, Consul DNS). Plugged into Pingora's load balancer as its
//! `ServiceDiscovery`, so a removed address stops getting new requests while sessions
//! already on it continue.
//!
//! Names resolve through the system resolver, or through `hosts_file` when set: a file in
//! /etc/hosts format that something else renders (and that tests rewrite).

use crate::config::model::DnsName;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

pub(crate) struct DnsDiscovery {
    pub(crate) names: Vec<DnsName>,
    pub(crate) hosts_file: Option<PathBuf>,
}

/// Why a DNS pool's names gave no backends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("{}: {source}", path.display())]
    HostsFile { path: PathBuf, source: std::io::Error },
    #[error("no address for any backend name ({0})")]
    NoAddress(String),
}

impl DnsDiscovery {
    /// Every address of every name, blocking (run it off the async threads).
    pub(crate) fn resolve_blocking(&self) -> Result<BTreeSet<Backend>, DiscoveryError> {
        let hosts = match &self.hosts_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| DiscoveryError::HostsFile { path: path.clone(), source })?,
            ),
            None => None,
        };
        let mut backends = BTreeSet::new();
        let mut failures = Vec::new();
        for name in &self.names {
            let addrs: Vec<SocketAddr> = match &hosts {
                Some(text) => {
                    hosts_lookup(text, &name.host).into_iter().map(|ip| SocketAddr::new(ip, name.port)).collect()
                }
                None => match (name.host.as_str(), name.port).to_socket_addrs() {
                    Ok(a) => a.collect(),
                    Err(e) => {
                        failures.push(format!("{}: {e}", name.host));
                        continue;
                    }
                },
            };
            for addr in addrs {
                if let Ok(b) = Backend::new_with_weight(&addr.to_string(), name.weight) {
                    backends.insert(b);
                }
            }
        }
        // An empty answer for every name is more likely a resolver outage than a pool
        // that really shrank to nothing: keep the last good set (Pingora does on error).
        if backends.is_empty() {
            return Err(DiscoveryError::NoAddress(failures.join("; ")));
        }
        Ok(backends)
    }
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let this = DnsDiscovery { names: self.names.clone(), hosts_file: self.hosts_file.clone() };
        let resolved = tokio::task::spawn_blocking(move || this.resolve_blocking())
            .await
            .map_err(|e| pingora::Error::because(pingora::ErrorType::InternalError, "resolver task", e))?;
        match resolved {
            Ok(backends) => Ok((backends, HashMap::new())),
            Err(e) => {
                log::warn!("DNS discovery: {e}; keeping the previous backends");
                Err(pingora::Error::because(pingora::ErrorType::InternalError, "DNS discovery", e))
            }
        }
    }
}

/// Addresses of `host` in a hosts-format text (`IP name [aliases...]`, `#` comments).
pub(crate) fn hosts_lookup(text: &str, host: &str) -> Vec<IpAddr> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let ip: IpAddr = fields.next()?.parse().ok()?;
            fields.any(|name| name.eq_ignore_ascii_case(host)).then_some(ip)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_files() {
        let text = "# comment\n127.0.0.1 localhost\n127.0.0.2  app.svc other # trailing\n::1 app.svc\nbad line\n127.0.0.3 App.Svc\n";
        let ips: Vec<String> = hosts_lookup(text, "app.svc").iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["127.0.0.2", "::1", "127.0.0.3"]);
        assert!(hosts_lookup(text, "missing").is_empty());
    }

    #[test]
    fn resolves_every_address_and_refuses_an_empty_answer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "127.0.0.2 a.svc\n127.0.0.3 a.svc\n").unwrap();
        let d = DnsDiscovery {
            names: vec![DnsName { host: "a.svc".into(), port: 80, weight: 1 }],
            hosts_file: Some(file.clone()),
        };
        let got: Vec<String> = d.resolve_blocking().unwrap().iter().map(|b| b.addr.to_string()).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        std::fs::write(&file, "# empty\n").unwrap();
        assert!(d.resolve_blocking().is_err());
    }
}
