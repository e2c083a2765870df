//! `config_watch` (or `--watch`): reload, as SIGHUP does, when the config file or a file it
//! names changes. Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink in
//! the file's directory, never writing the file itself, so wsgate watches the directories
//! that hold the files and, once a burst of events has settled, compares the files'
//! contents (read through symlinks) with what the last load read: any event that leaves
//! them unchanged is ignored, and a burst of writes is one reload.

use log::{error, info, warn};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A burst has settled when this passes without an event.
const QUIET: Duration = Duration::from_millis(250);
/// A burst that never settles is looked at after this.
const SETTLE_AT_MOST: Duration = Duration::from_secs(5);

/// The watched files, and what the last load read of each.
pub(crate) struct Watch {
    watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
    directories: BTreeSet<PathBuf>,
    files: Vec<PathBuf>,
    seen: Vec<Option<u64>>,
    /// A file is missing: said once until it is back.
    told_missing: bool,
}

impl Watch {
    /// Watches `files` (the config file first) as they are now.
    pub(crate) fn new(files: Vec<PathBuf>) -> notify::Result<Watch> {
        // Capacity 1: an event while one is pending changes nothing.
        let (tx, events) = mpsc::channel(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        })?;
        let mut watch = Watch {
            watcher,
            events,
            directories: BTreeSet::new(),
            files: Vec::new(),
            seen: Vec::new(),
            told_missing: false,
        };
        watch.rearm(files)?;
        Ok(watch)
    }

    /// After a reload (whatever asked for it): the files the config now names, and their
    /// contents as they are now, which that reload read.
    pub(crate) fn rearm(&mut self, files: Vec<PathBuf>) -> notify::Result<()> {
        let directories: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
        for gone in self.directories.difference(&directories) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in directories.difference(&self.directories) {
            self.watcher.watch(new, RecursiveMode::NonRecursive)?;
        }
        if self.files != files {
            info!("config_watch: watching {} file(s) in {} directory(ies)", files.len(), directories.len());
        }
        self.directories = directories;
        self.seen = files.iter().map(|f| fingerprint(f)).collect();
        self.files = files;
        Ok(())
    }

    /// Returns once the watched files' contents differ from what the last load read, all of
    /// them present; a burst of events counts once it has settled.
    pub(crate) async fn changed(&mut self) {
        loop {
            if self.events.recv().await.is_none() {
                // The watcher is gone (it never drops its sender while it lives).
                return std::future::pending().await;
            }
            let settle_by = Instant::now() + SETTLE_AT_MOST;
            while Instant::now() < settle_by {
                match tokio::time::timeout(QUIET, self.events.recv()).await {
                    Ok(Some(())) => continue,
                    _ => break,
                }
            }
            let now: Vec<Option<u64>> = self.files.iter().map(|f| fingerprint(f)).collect();
            if let Some(missing) = self.files.iter().zip(&now).find(|(_, seen)| seen.is_none()) {
                if !std::mem::replace(&mut self.told_missing, true) {
                    warn!("config_watch: {} is gone; the current config stays until it is back", missing.0.display());
                }
                continue;
            }
            self.told_missing = false;
            if now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

/// A hash of the file's contents, `None` when it cannot be read.
fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// A watch on `files`, or `None` (logged) when the system refuses one.
pub(crate) fn start(files: Vec<PathBuf>) -> Option<Watch> {
    match Watch::new(files) {
        Ok(w) => Some(w),
        Err(e) => {
            error!("config_watch: cannot watch the config's files, reload with SIGHUP instead: {e}");
            None
        }
    }
}

/// `watch.changed()`, or never when there is no watch.
pub(crate) async fn changed(watch: &mut Option<Watch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
