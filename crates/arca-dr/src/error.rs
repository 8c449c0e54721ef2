//! The crate's error type.

use std::path::PathBuf;

/// What can stop a drill or a report before it has a result. A drill that
/// ran but found damage is not an error: it is a failed
/// [`crate::DrillReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository could not be read (or written, for the audit record).
    #[error(transparent)]
    Repo(#[from] arca_repo::Error),
    /// No snapshot matches the selection.
    #[error("no snapshot matches the selection ({selection})")]
    NoSnapshot {
        /// The selection, as given.
        selection: String,
    },
    /// A local file or directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The scratch directory is not empty (a drill never overwrites data).
    #[error("drill target {} is not empty; give an empty or missing directory", path.display())]
    TargetNotEmpty {
        /// The directory.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
