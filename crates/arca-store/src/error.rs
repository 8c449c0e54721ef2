//! The crate's error type and how foreign errors are classified into it.

use std::io;

/// Errors of the storage layer. Messages name the location, never credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{path}: not found")]
    NotFound {
        /// Object path.
        path: String,
    },
    /// A failure that may succeed if retried (timeouts, 5xx, resets, throttling).
    #[error("{location}: temporary storage failure: {message}")]
    Transient {
        /// Where it happened (backend and path).
        location: String,
        /// What happened.
        message: String,
    },
    /// A failure that will not go away by retrying (auth, permissions, bad request, disk full).
    #[error("{location}: {message}")]
    Permanent {
        /// Where it happened (backend and path).
        location: String,
        /// What happened.
        message: String,
    },
    /// The repository URL or an option is invalid.
    #[error("invalid repository location {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }

    pub(crate) fn transient(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Transient {
            location: location.into(),
            message: message.into(),
        }
    }

    pub(crate) fn permanent(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Permanent {
            location: location.into(),
            message: message.into(),
        }
    }

    /// An object path a backend refuses (empty, absolute, or with `.`/`..`/empty segments).
    pub(crate) fn invalid_object_path(location: impl Into<String>, path: &str) -> Self {
        Error::permanent(
            location,
            format!("invalid object path {path:?} (a bug in the caller)"),
        )
    }

    /// Classifies a filesystem error at `location` (a full path).
    pub(crate) fn from_io(location: &str, path: &str, err: &io::Error) -> Self {
        use io::ErrorKind as K;
        match err.kind() {
            K::NotFound => Error::NotFound {
                path: path.to_owned(),
            },
            K::StorageFull => Error::permanent(
                location,
                format!("no space left on device at {location}; free space or move the repository"),
            ),
            K::PermissionDenied | K::ReadOnlyFilesystem => Error::permanent(
                location,
                format!("permission denied ({err}); check ownership and mount options"),
            ),
            K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ResourceBusy
            | K::StaleNetworkFileHandle => Error::transient(location, err.to_string()),
            _ => Error::permanent(location, err.to_string()),
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
