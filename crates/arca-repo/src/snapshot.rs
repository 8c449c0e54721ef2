//! Snapshots: the record of one backup, stored in `snapshots/`.
//!
//! A snapshot names the root tree of a backup plus when, where and by whom it
//! was taken. It is JSON (see `docs/FORMAT.md`, "Snapshots"); the repository
//! compresses and seals it, and its file name is the storage ID of the sealed
//! bytes, which is also the snapshot ID users see.

use crate::{Error, Id, Result};

/// One backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// When the backup started (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    /// The local UTC offset at backup time in seconds, for display and retention by local day.
    #[serde(default)]
    pub time_offset_seconds: i32,
    /// The snapshot this backup compared against, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Root tree: its nodes are the backed-up paths.
    pub tree: Id,
    /// The paths given to backup, absolute.
    pub paths: Vec<String>,
    /// Host the backup ran on.
    pub hostname: String,
    /// User the backup ran as.
    pub username: String,
    /// User ID the backup ran as.
    pub uid: u32,
    /// Group ID the backup ran as.
    pub gid: u32,
    /// User-given tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Exclude patterns in effect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Version of the program that wrote the snapshot (e.g. `arca 0.1.0`).
    pub program_version: String,
    /// Statistics of the backup run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
}

/// Statistics of the backup that produced a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotSummary {
    /// When the backup started.
    pub backup_start: jiff::Timestamp,
    /// When the backup finished.
    pub backup_end: jiff::Timestamp,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot.
    pub files_unmodified: u64,
    /// Directories not in the parent snapshot.
    pub dirs_new: u64,
    /// Directories changed since the parent snapshot.
    pub dirs_changed: u64,
    /// Directories unchanged since the parent snapshot.
    pub dirs_unmodified: u64,
    /// Data blobs added to the repository.
    pub data_blobs: u64,
    /// Tree blobs added to the repository.
    pub tree_blobs: u64,
    /// Plaintext bytes of the blobs added.
    pub data_added: u64,
    /// Stored (compressed, sealed) bytes of the blobs added.
    pub data_added_packed: u64,
    /// Files read or compared.
    pub total_files_processed: u64,
    /// Bytes of file content read or compared.
    pub total_bytes_processed: u64,
    /// Files that could not be read (and are missing from the snapshot).
    pub files_unreadable: u64,
}

impl Snapshot {
    /// The JSON plaintext (the repository compresses and seals it).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("snapshots always serialise")
    }

    /// Parses a snapshot (untrusted input).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt("snapshot", e))
    }
}
