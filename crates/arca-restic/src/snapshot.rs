//! Snapshot files (`snapshots/<id>`) as restic writes them, and their
//! conversion into Arca's [`arca_repo::snapshot::Snapshot`] so the CLI prints
//! both the same way.

use arca_repo::Id;
use arca_repo::snapshot::Snapshot;

use crate::{Error, Result};

/// A restic snapshot. `time` keeps restic's text (RFC 3339 with the zone of
/// the machine that took it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ResticSnapshot {
    /// When the backup started, with its UTC offset.
    pub time: String,
    /// The snapshot this one was compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Root tree.
    pub tree: Id,
    /// Backed-up paths.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Host.
    #[serde(default)]
    pub hostname: String,
    /// User.
    #[serde(default)]
    pub username: String,
    /// User ID.
    #[serde(default)]
    pub uid: u32,
    /// Group ID.
    #[serde(default)]
    pub gid: u32,
    /// Exclude patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// For a copied snapshot, the ID of the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// The restic version that wrote it (restic ≥ 0.17).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program_version: String,
}

impl ResticSnapshot {
    /// Parses a snapshot's JSON (untrusted input), including its time.
    pub fn decode(json: &[u8]) -> Result<Self> {
        let snapshot: ResticSnapshot =
            serde_json::from_slice(json).map_err(|e| Error::corrupt("snapshot", e))?;
        snapshot.timestamp()?;
        Ok(snapshot)
    }

    /// The start time as an instant.
    pub fn timestamp(&self) -> Result<jiff::Timestamp> {
        self.time
            .parse()
            .map_err(|e| Error::corrupt("snapshot time", e))
    }

    /// The UTC offset of `time` in seconds (`Z` or `±HH:MM` at its end).
    pub fn offset_seconds(&self) -> i32 {
        let text = self.time.as_bytes();
        if text.len() < 6 || text.ends_with(b"Z") || text.ends_with(b"z") {
            return 0;
        }
        let tail = &self.time[self.time.len() - 6..];
        let sign = match tail.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return 0,
        };
        let hours: i32 = tail[1..3].parse().unwrap_or(0);
        let minutes: i32 = tail[4..6].parse().unwrap_or(0);
        sign * (hours * 3600 + minutes * 60)
    }

    /// The snapshot as Arca's type, for printing with Arca's code.
    pub fn to_arca(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            time: self.timestamp()?,
            time_offset_seconds: self.offset_seconds(),
            parent: self.parent,
            original: self.original,
            tree: self.tree,
            paths: self.paths.clone().unwrap_or_default(),
            hostname: self.hostname.clone(),
            username: self.username.clone(),
            uid: self.uid,
            gid: self.gid,
            tags: self.tags.clone().unwrap_or_default(),
            excludes: self.excludes.clone().unwrap_or_default(),
            program_version: if self.program_version.is_empty() {
                "restic".to_owned()
            } else {
                self.program_version.clone()
            },
            summary: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_what_restic_writes() {
        let tree = "ab".repeat(32);
        let json = format!(
            r#"{{"time":"2026-12-06T03:04:05.123456789+01:30","tree":"{tree}","paths":["/data"],"hostname":"h","username":"u","uid":1000,"gid":100,"tags":["a","b"]}}"#
        );
        let snapshot = ResticSnapshot::decode(json.as_bytes()).unwrap();
        let arca = snapshot.to_arca().unwrap();
        assert_eq!(arca.time, "2026-12-06T01:34:05.123456789Z".parse().unwrap());
        assert_eq!(arca.time_offset_seconds, 5400);
        assert_eq!(arca.tags, ["a", "b"]);
        assert_eq!(arca.tree, Id([0xab; 32]));
        let west = ResticSnapshot {
            time: "2026-01-01T00:00:00-07:00".into(),
            ..snapshot
        };
        assert_eq!(west.offset_seconds(), -7 * 3600);
        let bad = json.replace("2026-12-06", "yesterday");
        assert!(ResticSnapshot::decode(bad.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ResticSnapshot::decode(&bytes);
        }

        #[test]
        fn round_trips(seconds in 0i64..4_000_000_000, offset_minutes in -720i32..720, tags in proptest::collection::vec("[a-z]{1,5}", 0..3)) {
            let offset = jiff::tz::Offset::from_seconds(offset_minutes * 60).unwrap();
            let time = jiff::Timestamp::from_second(seconds).unwrap().to_zoned(jiff::tz::TimeZone::fixed(offset));
            let snapshot = ResticSnapshot {
                time: time.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                parent: None,
                tree: Id([1; 32]),
                paths: Some(vec!["/x".into()]),
                hostname: "h".into(),
                username: String::new(),
                uid: 0,
                gid: 0,
                excludes: None,
                tags: Some(tags),
                original: None,
                program_version: String::new(),
            };
            let decoded = ResticSnapshot::decode(&serde_json::to_vec(&snapshot).unwrap()).unwrap();
            prop_assert_eq!(decoded.offset_seconds(), offset_minutes * 60);
            prop_assert_eq!(decoded.timestamp().unwrap().as_second(), seconds);
            prop_assert_eq!(decoded, snapshot);
        }
    }
}
