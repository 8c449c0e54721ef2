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
    /// For a snapshot made by `copy`: the ID of the snapshot it was copied
    /// from in the first repository it was taken in (restic's `original`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::any_id;

    fn any_timestamp() -> impl Strategy<Value = jiff::Timestamp> {
        (0i64..4_000_000_000, 0i32..1_000_000_000)
            .prop_map(|(s, ns)| jiff::Timestamp::new(s, ns).expect("in range"))
    }

    fn any_summary() -> impl Strategy<Value = SnapshotSummary> {
        (
            any_timestamp(),
            any_timestamp(),
            proptest::array::uniform13(any::<u64>()),
        )
            .prop_map(|(backup_start, backup_end, n)| SnapshotSummary {
                backup_start,
                backup_end,
                files_new: n[0],
                files_changed: n[1],
                files_unmodified: n[2],
                dirs_new: n[3],
                dirs_changed: n[4],
                dirs_unmodified: n[5],
                data_blobs: n[6],
                tree_blobs: n[7],
                data_added: n[8],
                data_added_packed: n[9],
                total_files_processed: n[10],
                total_bytes_processed: n[11],
                files_unreadable: n[12],
            })
    }

    fn any_snapshot() -> impl Strategy<Value = Snapshot> {
        let strings = || proptest::collection::vec(".{0,12}", 0..3);
        (
            (
                any_timestamp(),
                -86_400i32..86_400,
                proptest::option::of(any_id()),
                proptest::option::of(any_id()),
                any_id(),
            ),
            (strings(), ".{0,12}", ".{0,12}", any::<u32>(), any::<u32>()),
            (
                strings(),
                strings(),
                ".{0,12}",
                proptest::option::of(any_summary()),
            ),
        )
            .prop_map(
                |(
                    (time, time_offset_seconds, parent, original, tree),
                    (paths, hostname, username, uid, gid),
                    (tags, excludes, program_version, summary),
                )| Snapshot {
                    time,
                    time_offset_seconds,
                    parent,
                    original,
                    tree,
                    paths,
                    hostname,
                    username,
                    uid,
                    gid,
                    tags,
                    excludes,
                    program_version,
                    summary,
                },
            )
    }

    #[test]
    fn time_is_rfc3339() {
        let snapshot = Snapshot {
            time: "2026-11-23T22:09:00.5Z".parse().unwrap(),
            time_offset_seconds: 3600,
            parent: None,
            original: None,
            tree: Id([3; 32]),
            paths: vec!["/data".into()],
            hostname: "node-1".into(),
            username: "root".into(),
            uid: 0,
            gid: 0,
            tags: vec![],
            excludes: vec![],
            program_version: "arca 0.1.0".into(),
            summary: None,
        };
        let json: serde_json::Value = serde_json::from_slice(&snapshot.encode()).unwrap();
        assert_eq!(json["time"], "2026-11-23T22:09:00.5Z");
        assert_eq!(json["tree"], Id([3; 32]).to_hex());
        assert!(json.get("parent").is_none());
        assert!(json.get("original").is_none());
    }

    proptest! {
        #[test]
        fn snapshot_round_trips(snapshot in any_snapshot()) {
            prop_assert_eq!(Snapshot::decode(&snapshot.encode()).unwrap(), snapshot);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Snapshot::decode(&bytes);
        }
    }
}
