//! The one error type of the mover, and the class of every failure: what the
//! controller should do about it (retry, give up, look at the repository).

use std::path::PathBuf;

/// Errors of the mover. Messages name the variable, file or repository
/// involved; they never contain passwords, keys or credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable is missing or does not parse.
    #[error("{variable}: {reason}")]
    Config {
        /// The variable (e.g. `RESTIC_REPOSITORY`).
        variable: String,
        /// What is wrong with it (never its value if it is a secret).
        reason: String,
    },
    /// The password could not be read from its source.
    #[error("cannot read the repository password: {reason}")]
    Password {
        /// Why (names the file or says the command failed; never the password).
        reason: String,
    },
    /// The repository layer failed.
    #[error(transparent)]
    Repo(#[from] arca_repo::Error),
    /// Storage failed outside the repository layer (opening the backend).
    #[error(transparent)]
    Store(#[from] arca_store::Error),
    /// A local file system operation on the volume failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `check` found damage in the repository.
    #[error("check found {count} problem(s) in the repository; first: {first}")]
    Damaged {
        /// How many errors check reported.
        count: usize,
        /// The first of them.
        first: String,
    },
    /// The snapshot chosen for a restore cannot be restored by the agent.
    #[error("snapshot {snapshot}: {reason}")]
    Unrestorable {
        /// The snapshot's short ID.
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// A recovery drill ran and failed: damage found, the consistency
    /// command failed, or the RTO was missed (the report's `drill` section
    /// has the details).
    #[error("drill failed: {reason}")]
    DrillFailed {
        /// Why, one line.
        reason: String,
        /// Whether the repository's data was found damaged.
        damaged: bool,
    },
    /// A drill could not run (no snapshot to drill, scratch space unusable,
    /// repository unreadable).
    #[error(transparent)]
    Drill(#[from] arca_dr::Error),
    /// The action is not available in this build.
    #[error("action {action:?} is not available: {reason}")]
    Unavailable {
        /// The action.
        action: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// A [`Error::Config`] for `variable`.
    pub(crate) fn config(variable: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            variable: variable.to_owned(),
            reason: reason.into(),
        }
    }

    /// A [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// What kind of failure this is, for the exit code and the report.
    pub fn class(&self) -> ErrorClass {
        match self {
            // A snapshot the agent cannot restore stays so: retrying cannot help.
            Error::Config { .. }
            | Error::Password { .. }
            | Error::Unavailable { .. }
            | Error::Unrestorable { .. } => ErrorClass::Config,
            Error::Repo(repo) => repo_class(repo),
            Error::Store(store) => store_class(store),
            Error::Io { source, .. } => io_class(source),
            Error::Damaged { .. } => ErrorClass::Corrupt,
            Error::DrillFailed { damaged: true, .. } => ErrorClass::Corrupt,
            Error::DrillFailed { damaged: false, .. } => ErrorClass::Failed,
            Error::Drill(arca_dr::Error::Repo(repo)) => repo_class(repo),
            Error::Drill(arca_dr::Error::Io { source, .. }) => io_class(source),
            Error::Drill(arca_dr::Error::TargetNotEmpty { .. }) => ErrorClass::Config,
            Error::Drill(_) => ErrorClass::Failed,
        }
    }
}

fn repo_class(error: &arca_repo::Error) -> ErrorClass {
    use arca_repo::Error as E;
    match error {
        E::WrongPassword => ErrorClass::WrongPassword,
        E::Corrupt { .. } | E::BlobNotFound { .. } => ErrorClass::Corrupt,
        E::Store(store) => store_class(store),
        E::Io { source, .. } => io_class(source),
        E::InvalidOptions(_) => ErrorClass::Config,
        // A run that opens the repository again seals with the kept key.
        E::SealingKeyErased { .. } => ErrorClass::Retryable,
        _ => ErrorClass::Failed,
    }
}

fn store_class(error: &arca_store::Error) -> ErrorClass {
    match error {
        arca_store::Error::Transient { .. } => ErrorClass::Retryable,
        arca_store::Error::InvalidUrl { .. } => ErrorClass::Config,
        _ => ErrorClass::Failed,
    }
}

fn io_class(error: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy => ErrorClass::Retryable,
        _ => ErrorClass::Failed,
    }
}

/// What kind of failure ended a run: the `error_class` of the report and,
/// through [`ErrorClass::exit_code`], the process's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Storage unreachable, timeouts, throttling: the same Job may succeed later.
    Retryable,
    /// The environment is wrong (missing or malformed variable, unreadable
    /// password source, unavailable action, a selected snapshot the agent
    /// cannot restore): retrying cannot help.
    Config,
    /// The password opens no key of the repository: retrying cannot help.
    WrongPassword,
    /// The repository is damaged (authentication failure, missing data, `check` errors).
    Corrupt,
    /// Anything else (local I/O, permissions, a failed restore of some items).
    Failed,
    /// SIGTERM or SIGINT stopped the run; nothing was committed.
    Interrupted,
}

impl ErrorClass {
    /// The exit code for a run that ended with this class (docs/AGENT.md):
    /// 1 failed, 2 config, 11 retryable, 12 wrong password (restic's), 13
    /// corrupt, 143 interrupted. 0 (success) and 3 (partial success) are not
    /// failures and have no class.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Failed => 1,
            ErrorClass::Config => 2,
            ErrorClass::Retryable => 11,
            ErrorClass::WrongPassword => 12,
            ErrorClass::Corrupt => 13,
            ErrorClass::Interrupted => 143,
        }
    }

    /// Whether running the same Job again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Retryable | ErrorClass::Failed | ErrorClass::Interrupted
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_cause() {
        let transient = arca_store::Error::Transient {
            location: "s3:x".into(),
            message: "connection refused".into(),
        };
        assert_eq!(
            Error::Repo(arca_repo::Error::Store(transient)).class(),
            ErrorClass::Retryable
        );
        assert_eq!(
            Error::Repo(arca_repo::Error::WrongPassword).class(),
            ErrorClass::WrongPassword
        );
        assert_eq!(
            Error::Repo(arca_repo::Error::Corrupt {
                what: "index/ab".into(),
                reason: "bad tag".into()
            })
            .class(),
            ErrorClass::Corrupt
        );
        assert_eq!(
            Error::config("RESTIC_REPOSITORY", "not set").class(),
            ErrorClass::Config
        );
        assert_eq!(
            Error::Repo(arca_repo::Error::SealingKeyErased { key_id: 1 }).class(),
            ErrorClass::Retryable
        );
    }

    #[test]
    fn exit_codes_are_distinct_and_avoid_success_and_partial() {
        let classes = [
            ErrorClass::Retryable,
            ErrorClass::Config,
            ErrorClass::WrongPassword,
            ErrorClass::Corrupt,
            ErrorClass::Failed,
            ErrorClass::Interrupted,
        ];
        let mut codes: Vec<u8> = classes.iter().map(|c| c.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), classes.len());
        assert!(!codes.contains(&0) && !codes.contains(&3));
    }
}
