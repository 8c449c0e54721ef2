//! The one error type of the repository layer.

use std::path::PathBuf;

use crate::Id;
use crate::blob::BlobType;

/// Errors of the repository layer. Messages name the damaged file, blob or
/// snapshot and, where one exists, the fix; they never contain key material or
/// passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] arca_store::Error),
    /// Cryptography failed outside of reading a repository file (e.g. the OS RNG).
    #[error(transparent)]
    Crypto(#[from] arca_crypto::Error),
    /// No key file in the repository opens with the given password.
    #[error(
        "wrong password: no key in the repository matches it (check the password or password file)"
    )]
    WrongPassword,
    /// There is no `config` file at the location.
    #[error("{location}: not an Arca repository (no config file); run `arca init` to create one")]
    NotARepository {
        /// The backend location.
        location: String,
    },
    /// `init` found an existing `config` file.
    #[error("{location}: a repository already exists here; refusing to overwrite it")]
    AlreadyInitialized {
        /// The backend location.
        location: String,
    },
    /// No snapshot matches the given ID, prefix or `latest`.
    #[error("no snapshot matches {spec:?}; `arca snapshots` lists them")]
    SnapshotNotFound {
        /// What the user asked for.
        spec: String,
    },
    /// More than one snapshot ID starts with the given prefix.
    #[error("snapshot prefix {spec:?} is ambiguous; give more hex digits")]
    AmbiguousSnapshot {
        /// What the user asked for.
        spec: String,
    },
    /// Stored data failed validation: bad authentication tag, bad length,
    /// wrong content ID, malformed structure.
    #[error("{what} is corrupt: {reason}")]
    Corrupt {
        /// What is damaged, naming the file, pack or blob (e.g. `index/ab12…`).
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The index does not know a blob that something refers to.
    #[error(
        "{blob_type} blob {id} is not in the index; the repository is missing data (run `arca check`)"
    )]
    BlobNotFound {
        /// Type of the missing blob.
        blob_type: BlobType,
        /// Content ID of the missing blob.
        id: Id,
    },
    /// A local filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Options or parameters are out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Some items of a restore could not be restored (the rest were).
    #[error("{}", crate::restore::describe_failures(failures))]
    RestoreFailed {
        /// Every failed item with its reason.
        failures: Vec<crate::restore::RestoreFailure>,
    },
    /// A restored file does not hold what the snapshot says (`restore --verify`).
    #[error("{}: restored file does not match the snapshot: {reason}", path.display())]
    VerifyFailed {
        /// The restored file.
        path: PathBuf,
        /// The first difference found.
        reason: String,
    },
    /// A backup stopped before its snapshot was written, so nothing was
    /// committed; what it uploaded is reused by the next run.
    #[error("backup did not complete: {reason}; no snapshot was written, run the backup again")]
    BackupIncomplete {
        /// Why it stopped.
        reason: String,
    },
    /// Another prune holds an unexpired lease on the repository.
    #[error(
        "another prune is running on this repository (host {hostname:?}, pid {pid}, lease until {expires}); try again later, or run `arca unlock` if it is known to be dead"
    )]
    PruneRunning {
        /// Host name recorded in the other lease.
        hostname: String,
        /// Process ID recorded in the other lease.
        pid: u32,
        /// When the other lease expires unless refreshed.
        expires: jiff::Timestamp,
    },
    /// This prune could not refresh its lease in time and stopped before
    /// deleting anything further.
    #[error(
        "the prune's lease expired before it could be refreshed ({reason}); nothing more was deleted, run prune again"
    )]
    LeaseLost {
        /// Why the refresh failed.
        reason: String,
    },
    /// The repository was opened with an append-only key, which may not
    /// delete, rewrite or release anything.
    #[error(
        "{operation} is not allowed with an append-only key; open the repository with a full-access key"
    )]
    AppendOnlyKey {
        /// What was refused (e.g. "forget", "key remove").
        operation: &'static str,
    },
    /// No key file matches the given ID or prefix.
    #[error("no key matches {spec:?}; `arca key list` lists them")]
    KeyNotFound {
        /// What the user asked for.
        spec: String,
    },
    /// More than one key file ID starts with the given prefix.
    #[error("key prefix {spec:?} is ambiguous; give more hex digits")]
    AmbiguousKey {
        /// What the user asked for.
        spec: String,
    },
    /// Removing the key would leave the repository without any key.
    #[error(
        "key {id} is the repository's only key; removing it would make the repository unreadable"
    )]
    LastKey {
        /// The key file's ID.
        id: Id,
    },
    /// The key to remove is the one the repository was opened with.
    #[error("key {id} is the key in use; open the repository with another key, or pass --force")]
    KeyInUse {
        /// The key file's ID.
        id: Id,
    },
    /// The key file opens, but an erasure replaced its keyrings and
    /// destroyed the keys it holds.
    #[error(
        "{path} was written before an erasure (`arca prune --erase`) destroyed the data keys it holds; open the repository with a key file written since"
    )]
    KeyFileSuperseded {
        /// The key file.
        path: String,
    },
    /// `prune --erase` found no old data key and no old keyring to destroy.
    #[error(
        "nothing to erase: the repository holds only its current data key {current:08x} (rotate with `arca key rotate` first)"
    )]
    NothingToErase {
        /// The current data key's id.
        current: u32,
    },
    /// `prune --erase` would leave other key files holding the old keys.
    #[error(
        "not erasing: {} other key file(s) ({}) hold the old data keys and cannot be rewritten without their passwords; remove them (`arca key remove`) or pass --remove-other-keys, then add new ones afterwards. Nothing was changed",
        .ids.len(), .ids.iter().map(Id::short).collect::<Vec<_>>().join(", ")
    )]
    OtherKeysHoldOldKeys {
        /// The other key files.
        ids: Vec<Id>,
    },
    /// A key rotation wrote a keyring while an erasure ran.
    #[error(
        "a keyring ({keyring}) appeared while erasing; a key rotation ran at the same time. Run `arca prune --erase` again"
    )]
    KeyringChanged {
        /// The keyring that appeared.
        keyring: String,
    },
    /// An erasure (`prune --erase`) has begun that destroys the data key this
    /// process seals with (it opened the repository before the last key
    /// rotation): nothing more was written under it.
    #[error(
        "data key {key_id:08x}, which this process opened the repository with, is being destroyed by `arca prune --erase` (a key rotation happened since it opened the repository); nothing sealed under it was committed. Run the command again"
    )]
    SealingKeyErased {
        /// The data key this process sealed with.
        key_id: u32,
    },
    /// `key rotate` while an erasure has begun or was interrupted.
    #[error(
        "an erasure (`arca prune --erase`) is running or was interrupted{}: a key rotated now would be lost with it. Let it finish or run `arca prune --erase` again, then rotate",
        if *.wrote { "; this rotation's keyring was written and may be dropped by it, so run `arca key rotate` again afterwards" } else { "" }
    )]
    ErasureUnderWay {
        /// Whether the rotation had already written its keyring.
        wrote: bool,
    },
    /// A hold release names a snapshot that has no active hold.
    #[error("snapshot {snapshot} has no active hold to release; `arca hold list` lists them")]
    NotHeld {
        /// The snapshot.
        snapshot: Id,
    },
    /// A hold's `until` is not in the future.
    #[error("a hold until {until} would already have expired; give a time in the future")]
    HoldExpired {
        /// The requested end of the hold.
        until: jiff::Timestamp,
    },
    /// The operation would remove snapshots under legal hold.
    #[error("{} held snapshot(s) cannot be removed: {}", snapshots.len(), crate::error::short_ids(snapshots))]
    SnapshotsHeld {
        /// The held snapshots.
        snapshots: Vec<Id>,
    },
    /// `forget` was given neither a policy nor snapshot IDs.
    #[error(
        "no policy was specified, no snapshots will be removed (give --keep-* options or snapshot IDs)"
    )]
    NoPolicy,
    /// Two options that exclude each other were given together.
    #[error("{first} cannot be used together with {second}")]
    ConflictingOptions {
        /// One option (as the user wrote it, e.g. `snapshot IDs`).
        first: String,
        /// The other option.
        second: String,
    },
    /// A retention policy would remove every snapshot of a group.
    #[error(
        "refusing to delete the last snapshot of snapshot group {group}; forget them by ID if that is meant"
    )]
    WouldRemoveAll {
        /// The group, as `host [h], paths [/p]`.
        group: String,
    },
    /// `repository destroy` was not confirmed with the repository's ID.
    #[error(
        "not destroying repository {repository}: the confirmation {given:?} is not its full ID; nothing was removed"
    )]
    DestroyNotConfirmed {
        /// The repository's ID.
        repository: Id,
        /// What was given instead.
        given: String,
    },
    /// A path does not exist in a snapshot.
    #[error("{path}: no such file or directory in snapshot {snapshot}")]
    PathNotFound {
        /// The snapshot.
        snapshot: Id,
        /// The path asked for.
        path: String,
    },
}

/// `ab12cd34, ef56…`: the IDs' short forms for a message.
pub(crate) fn short_ids(ids: &[Id]) -> String {
    ids.iter()
        .map(|id| id.short())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// A [`Error::Corrupt`] for `what`.
    pub(crate) fn corrupt(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Names the file an error came from: a [`Error::Corrupt`] or crypto error
    /// raised while decoding the bytes of `path` becomes a [`Error::Corrupt`]
    /// naming `path`. Other errors pass through unchanged.
    pub(crate) fn in_file(self, path: &str) -> Self {
        match self {
            Error::Corrupt { what, reason } if what == path => Error::Corrupt { what, reason },
            Error::Corrupt { what, reason } => Error::Corrupt {
                what: format!("{path} ({what})"),
                reason,
            },
            Error::Crypto(e) => Error::Corrupt {
                what: path.to_owned(),
                reason: e.to_string(),
            },
            other => other,
        }
    }
}
