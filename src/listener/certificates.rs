//! Loading a PEM certificate chain and its key, and the DNS names it is for: a leaf that
//! config validation (a broken file is a config error naming its key) and the TLS
//! listeners (start-up and reload) both use.

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CryptoProvider, RusTlsError};
use std::path::Path;
use std::sync::Arc;

/// A certificate (with its chain and key) and the DNS names it is for.
#[derive(Debug, Clone)]
pub(crate) struct LoadedCert {
    pub(crate) key: Arc<CertifiedKey>,
    /// Lower-case subject alternative DNS names (or the common name if it has none);
    /// wildcards stay as `*.example.com`.
    pub(crate) names: Vec<String>,
}

/// A certificate or key that cannot be used: which config key it is about (`cert` or
/// `key`), and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LoadError {
    pub(crate) key: &'static str,
    pub(crate) message: String,
}

fn error(key: &'static str, message: String) -> LoadError {
    LoadError { key, message }
}

/// Loads a PEM certificate chain and its private key, and checks that they belong together.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<LoadedCert, LoadError> {
    for (which, file) in [("cert", cert), ("key", key)] {
        if let Err(e) = std::fs::metadata(file) {
            return Err(error(which, format!("cannot read {}: {e}", file.display())));
        }
    }
    let (cert_name, key_name) = (cert.display().to_string(), key.display().to_string());
    // Pingora's PEM loader panics on some malformed input: a config mistake must not.
    let loaded = std::panic::catch_unwind(|| pingora::tls::load_certs_and_key_files(&cert_name, &key_name));
    let (chain, key_der) = match loaded {
        Ok(Ok(Some(pair))) => pair,
        Ok(Ok(None)) => {
            return Err(error("cert", format!("no PEM certificate in {cert_name} or no PEM private key in {key_name}")))
        }
        Ok(Err(e)) => return Err(error("cert", format!("cannot load {cert_name} / {key_name}: {e}"))),
        Err(_) => return Err(error("cert", format!("cannot parse {cert_name} / {key_name} as PEM"))),
    };
    let names = chain.first().map(|leaf| dns_names(leaf.as_ref())).unwrap_or_default();
    pingora::tls::install_default_crypto_provider();
    let provider = CryptoProvider::get_default().ok_or_else(|| error("key", "no TLS crypto provider".to_string()))?;
    let key = CertifiedKey::from_der(chain, key_der, provider).map_err(|e| match e {
        RusTlsError::InvalidCertificate(_) => error("cert", format!("cannot use the certificate in {cert_name}: {e}")),
        _ => error("key", format!("certificate and key do not form a usable pair: {e}")),
    })?;
    Ok(LoadedCert { key: Arc::new(key), names })
}

/// The DNS names of a DER certificate: its subject alternative names, else its common name.
fn dns_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_ascii_lowercase));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_certificate_names_localhost() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/tls");
        assert!(load(&conf.join("cert.pem"), &conf.join("key.pem")).unwrap().names.contains(&"localhost".to_string()));
        let missing = load(&conf.join("missing.pem"), &conf.join("key.pem")).unwrap_err();
        assert_eq!(missing.key, "cert");
        let swapped = load(&conf.join("key.pem"), &conf.join("cert.pem")).unwrap_err();
        assert_eq!(swapped.key, "cert", "{swapped:?}");
    }
}
