//! What every section's validation shares: the problem list and how a path or an address
//! in the file is read.

use crate::config::locate::KeyPath;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every problem found, each at its key.
pub(crate) type Problems = Vec<(KeyPath, String)>;

pub(super) fn resolve_path(base_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

pub(super) fn socket_addr(text: &str, path: &KeyPath, problems: &mut Problems) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push((path.clone(), format!("`{text}` is not an ip:port address")));
            None
        }
    }
}
