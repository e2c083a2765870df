//! The files a config names and reads when it is loaded (certificates, keys, secrets, token
//! and hosts files): a change to one of them changes what a reload would build, so
//! `config_watch` watches them beside the config file. Outputs (the access log) are not
//! among them.

use super::values::resolve_path;
use crate::config::raw::RawConfig;
use std::path::{Path, PathBuf};

pub(super) fn named_files(raw: &RawConfig, base_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<&str> = Vec::new();
    for tls in raw.listeners.iter().filter_map(|l| l.tls.as_ref()) {
        files.extend(tls.cert.as_deref().into_iter().chain(tls.key.as_deref()));
        for pair in tls.certificates.iter().flatten() {
            files.extend([pair.cert.as_str(), pair.key.as_str()]);
        }
    }
    files.extend(raw.admin.as_ref().and_then(|a| a.token_file.as_deref()));
    for pool in raw.upstreams.values() {
        files.extend(pool.hosts_file.as_deref());
        files.extend(pool.tls.as_ref().and_then(|t| t.ca_file.as_deref()));
        files.extend(pool.affinity.as_ref().and_then(|a| a.key_file.as_deref()));
    }
    for jwt in raw.routes.iter().filter_map(|r| r.auth.as_ref()?.jwt.as_ref()) {
        files.extend(jwt.keys.as_deref().into_iter().chain(jwt.secret_file.as_deref()));
    }
    let mut paths: Vec<PathBuf> = files.into_iter().map(|f| resolve_path(base_dir, f)).collect();
    paths.sort();
    paths.dedup();
    paths
}
