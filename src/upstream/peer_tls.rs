//! How a pool's `tls` settings reach Pingora's peers: requests' (`pool.rs`) and health
//! checks' (`health.rs`) alike.

use crate::config::model::UpstreamTls;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::PeerOptions;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::sync::Arc;

pub(super) fn ca_of(tls: Option<&UpstreamTls>) -> Option<Arc<CaType>> {
    let ders = tls?.ca_der.as_ref()?;
    // Parsed successfully at config validation, so parse_x509 cannot panic here.
    let certs: Vec<WrappedX509> = ders.iter().map(|der| WrappedX509::new(der.clone(), parse_x509)).collect();
    Some(Arc::from(certs.into_boxed_slice()))
}

/// Applies a pool's `tls` settings to a peer's options.
pub(super) fn apply_tls(options: &mut PeerOptions, tls: &UpstreamTls, ca: &Option<Arc<CaType>>) {
    options.verify_cert = tls.verify;
    options.verify_hostname = tls.verify;
    options.ca = ca.clone();
}
