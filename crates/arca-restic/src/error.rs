use std::path::PathBuf;

use arca_repo::Id;
use arca_repo::restore::RestoreFailure;

/// Everything that can go wrong reading a restic repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] arca_store::Error),
    /// The Arca repository a migration writes into failed.
    #[error(transparent)]
    Destination(#[from] arca_repo::Error),
    /// No key file opens with the given password.
    #[error("wrong password or no key file found in the restic repository")]
    WrongPassword,
    /// The location holds no restic repository (no `config` or no key files).
    #[error("{location} is not a restic repository")]
    NotARepository {
        /// The location as the backend names it.
        location: String,
    },
    /// A file or blob failed authentication: damaged, truncated or tampered with.
    #[error("{what} failed authentication (damaged or tampered with)")]
    Unauthenticated {
        /// What was being opened (`index/<id>`, `data blob <id>`).
        what: String,
    },
    /// A file or blob decrypted but does not decode.
    #[error("{what} is corrupt: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: String,
        /// Why it does not decode.
        reason: String,
    },
    /// Something restic stored that this reader does not support.
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// What it is.
        what: String,
        /// Why.
        reason: String,
    },
    /// A blob that no index file names.
    #[error("{blob_type} blob {id} is in no index")]
    BlobNotFound {
        /// Data or tree.
        blob_type: arca_repo::blob::BlobType,
        /// The blob's ID (SHA-256 of its plaintext).
        id: Id,
    },
    /// No snapshot matches what was asked for.
    #[error("no snapshot matches {spec:?}")]
    SnapshotNotFound {
        /// The ID, prefix or `latest` given.
        spec: String,
    },
    /// Several snapshots match an ID prefix.
    #[error("{spec:?} matches {count} snapshots; give more hex digits")]
    AmbiguousSnapshot {
        /// The prefix given.
        spec: String,
        /// How many match.
        count: usize,
    },
    /// Invalid options (bad patterns).
    #[error("{0}")]
    InvalidOptions(String),
    /// A local filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Some items of a restore failed; the others were restored.
    #[error("restore incomplete: {} item(s) failed, first {}", failures.len(), failures.first().map_or_else(String::new, ToString::to_string))]
    RestoreFailed {
        /// Every item that failed.
        failures: Vec<RestoreFailure>,
    },
}

impl Error {
    /// The error as `arca_repo`'s, for code shared with Arca repositories:
    /// the variants both have keep their meaning (missing blob, wrong
    /// password, storage failure); damage and the rest become
    /// [`arca_repo::Error::Corrupt`] naming what failed.
    pub fn into_repo(self) -> arca_repo::Error {
        match self {
            Error::Store(e) => arca_repo::Error::Store(e),
            Error::Destination(e) => e,
            Error::WrongPassword => arca_repo::Error::WrongPassword,
            Error::BlobNotFound { blob_type, id } => {
                arca_repo::Error::BlobNotFound { blob_type, id }
            }
            Error::Corrupt { what, reason } => arca_repo::Error::Corrupt { what, reason },
            Error::RestoreFailed { failures } => arca_repo::Error::RestoreFailed { failures },
            Error::Io { path, source } => arca_repo::Error::Io { path, source },
            other => arca_repo::Error::Corrupt {
                what: "restic repository".to_owned(),
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
