//! How `wsgate ctl` fails.

/// Why `ctl` failed, and so its exit code.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum CtlError {
    /// The invocation or the config cannot work (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The API refused, could not be reached, or a wait timed out (exit 1).
    #[error("{0}")]
    Failed(String),
}
