//! Configuration: one YAML file → a validated [`model::Config`].
//!
//! `raw` mirrors the file, `validate` turns it into the model and collects every mistake,
//! `locate` finds the line of a key for mistakes found after parsing.

mod duration;
mod locate;
pub mod model;
mod raw;
mod validate;

pub(crate) use duration::parse_duration;
use locate::{strip_location, KeyPath};
pub use model::Config;
pub(crate) use validate::connection_owned;
#[cfg(test)]
pub(crate) use validate::host_pattern as validate_host_pattern;

use std::fmt;
use std::path::Path;

/// One mistake in the config file, with enough context to fix it without guessing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// Dotted key path, e.g. `upstreams.chat.health_check.interval`; empty for the whole file.
    pub key: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Every mistake found in one file.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            key: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    // Relative paths in the file are relative to the file's directory as the path names it,
    // not to the working directory (Pingora's daemon mode changes directory to `/`), and not
    // through symlinks: a Kubernetes ConfigMap's files are symlinks into a directory that the
    // next update deletes, while the mount's own paths always lead to the current files.
    let base_dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(".").to_path_buf());
    parse(&text, &file, &base_dir)
}

/// Parses and validates config `text`; `file` names it in errors, `base_dir` anchors
/// relative paths.
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let raw: raw::RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = key_path(e.path());
        let inner = e.into_inner();
        // serde_yaml points at the enclosing mapping for errors raised by a value's own
        // Deserialize (durations, backends); the key's own line is more useful.
        let location = locate::locate(text, &path)
            .filter(|_| !path.0.is_empty())
            .or_else(|| inner.location().map(|l| (l.line(), l.column())));
        let (key, message) = (path.to_string(), strip_location(&inner.to_string()));
        // serde_yaml starts some messages with the key path, which the error shows already.
        let message = message.strip_prefix(&format!("{key}: ")).map_or(message.clone(), str::to_string);
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            key,
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            message,
        }])
    })?;
    validate::validate(raw, base_dir).map_err(|problems| {
        ConfigErrors(
            problems
                .into_iter()
                .map(|(path, message)| {
                    let location = locate::locate(text, &path);
                    ConfigError {
                        file: file.to_string(),
                        key: path.to_string(),
                        line: location.map(|l| l.0),
                        column: location.map(|l| l.1),
                        message,
                    }
                })
                .collect(),
        )
    })
}

fn key_path(path: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment as S;
    KeyPath(
        path.iter()
            .filter_map(|segment| match segment {
                S::Seq { index } => Some(locate::Segment::Index(*index)),
                S::Map { key } => Some(locate::Segment::Key(key.clone())),
                S::Enum { .. } | S::Unknown => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests;
