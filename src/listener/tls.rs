//! Certificates of TLS listeners: several per listener, chosen by the client's SNI, and
//! replaceable by a reload (SIGHUP) without touching open connections.
//!
//! Each TLS listener's rustls acceptor asks its `SniResolver` for a certificate during
//! every handshake; the resolver reads a `CertStore` that a reload swaps atomically.
//! Handshakes already done keep the certificate they got, so open sessions continue.

use crate::config::model::{CertFiles, Listener};
use crate::listener::certificates::{load, LoadError, LoadedCert};
use arc_swap::ArcSwap;
use pingora::listeners::tls::{Acceptor, TlsSettings};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// One listener's certificates: looked up by exact name, then by wildcard (`*.example.com`
/// covers `a.example.com`, not `example.com` nor `a.b.example.com`), else the first one.
#[derive(Debug)]
pub(crate) struct CertStore {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertStore {
    /// The first certificate is the default; a name claimed by two certificates goes to
    /// the first that claims it.
    pub(crate) fn new(certs: Vec<LoadedCert>) -> Option<CertStore> {
        let default = certs.first()?.key.clone();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for cert in &certs {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert_with(|| cert.key.clone()),
                    None => exact.entry(name.clone()).or_insert_with(|| cert.key.clone()),
                };
            }
        }
        Some(CertStore { default, exact, wildcard })
    }

    pub(crate) fn lookup(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else { return &self.default };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)).unwrap_or(&self.default)
    }
}

/// What rustls asks during each handshake.
#[derive(Debug)]
pub(crate) struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().lookup(hello.server_name()).clone())
    }
}

/// The resolvers of all TLS listeners, by listener address.
#[derive(Debug, Default)]
pub(crate) struct ListenerCertificates {
    resolvers: HashMap<SocketAddr, Arc<SniResolver>>,
}

/// Why TLS listeners could not be set up or their certificates reloaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("listener {address}: {source}")]
    Load { address: SocketAddr, source: LoadError },
    #[error("listener {0} has no certificate")]
    NoCertificate(SocketAddr),
    #[error("listener {0}: certificates not loaded")]
    NotLoaded(SocketAddr),
    #[error("listener {0} has no TLS acceptor to reload")]
    NoAcceptor(SocketAddr),
    #[error("listener {address}: {message}")]
    Settings { address: SocketAddr, message: String },
}

impl ListenerCertificates {
    /// Loads every TLS listener's certificates.
    pub(crate) fn load(listeners: &[Listener]) -> Result<ListenerCertificates, TlsError> {
        let stores = load_stores(listeners)?;
        let resolvers = stores
            .into_iter()
            .map(|(address, store)| (address, Arc::new(SniResolver { store: ArcSwap::from_pointee(store) })))
            .collect();
        Ok(ListenerCertificates { resolvers })
    }

    pub(crate) fn resolver(&self, address: &SocketAddr) -> Option<Arc<SniResolver>> {
        self.resolvers.get(address).cloned()
    }

    /// Loads the certificates of `listeners` (the same addresses as at start) and, only if
    /// all of them load, puts them in place for new handshakes.
    pub(crate) fn reload(&self, listeners: &[Listener]) -> Result<(), TlsError> {
        let stores = load_stores(listeners)?;
        for (address, store) in stores {
            match self.resolvers.get(&address) {
                Some(resolver) => resolver.store.store(Arc::new(store)),
                None => return Err(TlsError::NoAcceptor(address)),
            }
        }
        Ok(())
    }
}

/// The handshake side of the TLS listeners. To Pingora every wsgate listener is plain TCP:
/// Pingora would run a TLS handshake before anything of wsgate's sees the connection,
/// uncounted by the connection limits and for up to 60 s, so the connection gate runs it
/// instead, counted and within the header timeout (`listener/mod.rs`).
pub(crate) struct TlsAcceptors {
    listeners: Vec<(SocketAddr, Acceptor)>,
}

impl TlsAcceptors {
    /// One acceptor per TLS listener: TLS 1.2 and 1.3 only (Pingora's rustls acceptor),
    /// rustls's modern cipher suites, certificates chosen by SNI from `certificates`, and
    /// HTTP/2 offered by ALPN where the listener allows it.
    pub(crate) fn build(listeners: &[Listener], certificates: &ListenerCertificates) -> Result<TlsAcceptors, TlsError> {
        let mut acceptors = Vec::new();
        for listener in listeners {
            let Some(tls) = &listener.tls else { continue };
            let resolver = certificates.resolver(&listener.address).ok_or(TlsError::NotLoaded(listener.address))?;
            // The paths are unused: certificates come from the resolver.
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| TlsError::Settings { address: listener.address, message: e.to_string() })?;
            settings.set_cert_resolver(resolver);
            if tls.http2 {
                settings.enable_h2();
            }
            acceptors.push((listener.address, settings.build()));
        }
        Ok(TlsAcceptors { listeners: acceptors })
    }

    /// The acceptor for a connection accepted at `local`, if it came in on a TLS listener.
    pub(crate) fn for_local_address(&self, local: SocketAddr) -> Option<&Acceptor> {
        listener_of(self.listeners.iter().map(|(address, _)| *address), local).map(|i| &self.listeners[i].1)
    }
}

/// Which of the listening addresses a connection accepted at `local` came in on: the same
/// address, else a wildcard one (0.0.0.0, ::) of the same family and port (a dual-stack
/// `[::]` listener sees IPv4 clients at IPv4-mapped IPv6 addresses).
fn listener_of(listeners: impl Iterator<Item = SocketAddr> + Clone, local: SocketAddr) -> Option<usize> {
    listeners.clone().position(|address| address == local).or_else(|| {
        listeners.clone().position(|address| {
            address.ip().is_unspecified() && address.port() == local.port() && address.is_ipv4() == local.is_ipv4()
        })
    })
}

fn load_stores(listeners: &[Listener]) -> Result<Vec<(SocketAddr, CertStore)>, TlsError> {
    let mut stores = Vec::new();
    for listener in listeners {
        let Some(tls) = &listener.tls else { continue };
        let certs = tls
            .certificates
            .iter()
            .map(|CertFiles { cert, key }| {
                load(cert, key).map_err(|source| TlsError::Load { address: listener.address, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let store = CertStore::new(certs).ok_or(TlsError::NoCertificate(listener.address))?;
        stores.push((listener.address, store));
    }
    Ok(stores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn loaded(names: &[&str]) -> LoadedCert {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tls");
        let mut cert = load(&conf.join("cert.pem"), &conf.join("key.pem")).expect("the demo certificate loads");
        cert.names = names.iter().map(|n| n.to_string()).collect();
        // A distinct key object per test certificate, so lookups can be told apart.
        cert.key = Arc::new((*cert.key).clone());
        cert
    }

    #[test]
    fn connections_are_matched_to_their_listener_by_local_address() {
        let listeners: Vec<SocketAddr> =
            ["127.0.0.1:8443", "0.0.0.0:9443", "[::]:7443"].iter().map(|a| a.parse().unwrap()).collect();
        let of = |local: &str| listener_of(listeners.iter().copied(), local.parse().unwrap());
        assert_eq!(of("127.0.0.1:8443"), Some(0));
        assert_eq!(of("127.0.0.2:8443"), None, "another address on the port");
        assert_eq!(of("10.1.2.3:9443"), Some(1), "any IPv4 address on a wildcard listener's port");
        assert_eq!(of("[::1]:9443"), None, "an IPv4 wildcard does not take IPv6");
        assert_eq!(of("[::1]:7443"), Some(2));
        assert_eq!(of("[::ffff:127.0.0.1]:7443"), Some(2), "IPv4 client of a dual-stack listener");
        assert_eq!(of("127.0.0.1:80"), None);
    }

    #[test]
    fn lookup_prefers_exact_then_wildcard_then_the_first_certificate() {
        let (a, b, c) = (loaded(&["a.test"]), loaded(&["b.test", "*.b.test"]), loaded(&["*.b.test", "c.test"]));
        let store = CertStore::new(vec![a.clone(), b.clone(), c.clone()]).unwrap();
        let is = |name: Option<&str>, want: &LoadedCert| Arc::ptr_eq(store.lookup(name), &want.key);
        assert!(is(Some("a.test"), &a));
        assert!(is(Some("A.Test."), &a), "case and a trailing dot do not matter");
        assert!(is(Some("b.test"), &b));
        assert!(is(Some("x.b.test"), &b), "the first certificate claiming a name gets it");
        assert!(is(Some("c.test"), &c));
        assert!(is(Some("x.y.b.test"), &a), "a wildcard covers one label only");
        assert!(is(Some("unknown.test"), &a));
        assert!(is(None, &a), "no SNI: the first certificate");
        assert!(CertStore::new(Vec::new()).is_none());
    }
}
