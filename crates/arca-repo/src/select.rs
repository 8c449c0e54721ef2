//! Snapshot selection and grouping: restic's `--host`/`--tag`/`--path`
//! filters, "the newest snapshot as of a time", and `--group-by`.
//!
//! Every verb that chooses snapshots (forget, copy, restore by time, the
//! agent, the controller) uses these functions rather than its own rules.
//! Everything here is pure: it works on snapshots already listed.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::snapshot::Snapshot;
use crate::{Error, Id, Result};

/// Which snapshots a command works on, as restic's `--host`, `--tag` and
/// `--path` flags. An empty list does not restrict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// The snapshot's host must be one of these.
    pub hosts: Vec<String>,
    /// The snapshot must carry every tag of at least one of these lists
    /// (restic's `--tag a,b --tag c`: OR of AND-lists). A list holding only
    /// the empty string matches snapshots without tags.
    pub tags: Vec<Vec<String>>,
    /// The snapshot must have been taken of every one of these paths.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `snapshot` passes every restriction of the filter.
    pub fn matches(&self, snapshot: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&snapshot.hostname))
            && (self.tags.is_empty() || self.tags.iter().any(|all| has_tags(snapshot, all)))
            && self
                .paths
                .iter()
                .all(|path| snapshot.paths.iter().any(|p| p == path))
    }

    /// Whether the filter restricts anything at all.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }
}

/// Whether `snapshot` carries every tag in `all` (restic's `HasTags`): an
/// empty string in the list matches a snapshot without tags.
pub fn has_tags(snapshot: &Snapshot, all: &[String]) -> bool {
    for tag in all {
        if tag.is_empty() && snapshot.tags.is_empty() {
            return true;
        }
        if !snapshot.tags.contains(tag) {
            return false;
        }
    }
    true
}

/// Orders snapshots oldest first: by time, then by ID (the order
/// [`crate::Repository::list_snapshots`] returns).
pub fn chronological(a: &(Id, Snapshot), b: &(Id, Snapshot)) -> Ordering {
    a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0))
}

/// The newest snapshot matching `filter` whose time is not after `as_of`
/// (any time if `None`), after skipping `skip_previous` newer matching ones:
/// `skip_previous = 1` is the one before the newest. `None` if there is no
/// such snapshot. Ties in time are broken by ID, as `latest` is.
pub fn pick(
    snapshots: &[(Id, Snapshot)],
    filter: &SnapshotFilter,
    as_of: Option<jiff::Timestamp>,
    skip_previous: usize,
) -> Option<(Id, Snapshot)> {
    let mut candidates: Vec<&(Id, Snapshot)> = snapshots
        .iter()
        .filter(|(_, snapshot)| filter.matches(snapshot))
        .filter(|(_, snapshot)| as_of.is_none_or(|as_of| snapshot.time <= as_of))
        .collect();
    candidates.sort_by(|a, b| chronological(b, a));
    candidates.get(skip_previous).map(|&found| found.clone())
}

/// Which snapshot attributes form a group (restic's `--group-by`); all
/// `false` puts every snapshot into one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl GroupBy {
    /// restic's default for `forget`: `host,paths`.
    pub const HOST_PATHS: GroupBy = GroupBy {
        host: true,
        paths: true,
        tags: false,
    };
}

impl FromStr for GroupBy {
    type Err = Error;

    /// Parses restic's syntax: a comma list of `host`, `paths`, `tags`, or
    /// the empty string for no grouping.
    fn from_str(s: &str) -> Result<GroupBy> {
        let mut group_by = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            match part {
                "host" | "hosts" => group_by.host = true,
                "path" | "paths" => group_by.paths = true,
                "tag" | "tags" => group_by.tags = true,
                other => {
                    return Err(Error::InvalidOptions(format!(
                        "unknown grouping option {other:?} in --group-by {s:?}: use host, paths, tags or ''"
                    )));
                }
            }
        }
        Ok(group_by)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [
            (self.host, "host"),
            (self.paths, "paths"),
            (self.tags, "tags"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&parts.join(","))
    }
}

/// What the snapshots of one group share; a field is `None` when the
/// grouping does not use it (restic prints it as `null`). Paths and tags are
/// sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct GroupKey {
    /// The host, when grouping by host.
    pub host: Option<String>,
    /// The sorted paths, when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// The sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The key of `snapshot` under `group_by`.
    pub fn of(snapshot: &Snapshot, group_by: GroupBy) -> GroupKey {
        let sorted = |items: &[String]| {
            let mut items = items.to_vec();
            items.sort();
            items
        };
        GroupKey {
            host: group_by.host.then(|| snapshot.hostname.clone()),
            paths: group_by.paths.then(|| sorted(&snapshot.paths)),
            tags: group_by.tags.then(|| sorted(&snapshot.tags)),
        }
    }
}

impl fmt::Display for GroupKey {
    /// restic's group heading: `host [h], tags [a, b], paths [/x]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(host) = &self.host {
            parts.push(format!("host [{host}]"));
        }
        if let Some(tags) = &self.tags {
            parts.push(format!("tags [{}]", tags.join(", ")));
        }
        if let Some(paths) = &self.paths {
            parts.push(format!("paths [{}]", paths.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Splits snapshots into groups by `group_by`, groups ordered by key and the
/// snapshots of each oldest first.
pub fn group_by(
    snapshots: Vec<(Id, Snapshot)>,
    group_by: GroupBy,
) -> Vec<(GroupKey, Vec<(Id, Snapshot)>)> {
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for entry in snapshots {
        groups
            .entry(GroupKey::of(&entry.1, group_by))
            .or_default()
            .push(entry);
    }
    groups
        .into_iter()
        .map(|(key, mut members)| {
            members.sort_by(chronological);
            (key, members)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A snapshot of `paths` on `host` with `tags`, taken at `time`.
    pub(crate) fn snapshot_at(time: &str, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
        Snapshot {
            time: time.parse().expect("test timestamps parse"),
            time_offset_seconds: 0,
            parent: None,
            original: None,
            tree: Id([0; 32]),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            hostname: host.into(),
            username: "root".into(),
            uid: 0,
            gid: 0,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            excludes: vec![],
            program_version: "arca test".into(),
            summary: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn sample() -> Vec<(Id, Snapshot)> {
        vec![
            (
                Id([1; 32]),
                snapshot_at("2026-01-01T00:00:00Z", "a", &["/data"], &[]),
            ),
            (
                Id([2; 32]),
                snapshot_at("2026-01-02T00:00:00Z", "a", &["/data", "/etc"], &["x"]),
            ),
            (
                Id([3; 32]),
                snapshot_at("2026-01-03T00:00:00Z", "b", &["/data"], &["x", "y"]),
            ),
            (
                Id([4; 32]),
                snapshot_at("2026-01-04T00:00:00Z", "a", &["/data"], &["y"]),
            ),
        ]
    }

    fn matching(filter: &SnapshotFilter) -> Vec<u8> {
        sample()
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .map(|(id, _)| id.0[0])
            .collect()
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(SnapshotFilter::default().is_empty());
        assert_eq!(matching(&SnapshotFilter::default()), vec![1, 2, 3, 4]);
    }

    #[test]
    fn hosts_are_alternatives() {
        let filter = SnapshotFilter {
            hosts: strings(&["b", "c"]),
            ..Default::default()
        };
        assert_eq!(matching(&filter), vec![3]);
    }

    #[test]
    fn tags_are_or_of_and_lists() {
        let and = SnapshotFilter {
            tags: vec![strings(&["x", "y"])],
            ..Default::default()
        };
        assert_eq!(matching(&and), vec![3]);
        let or = SnapshotFilter {
            tags: vec![strings(&["x"]), strings(&["y"])],
            ..Default::default()
        };
        assert_eq!(matching(&or), vec![2, 3, 4]);
        let untagged = SnapshotFilter {
            tags: vec![strings(&[""])],
            ..Default::default()
        };
        assert_eq!(matching(&untagged), vec![1]);
    }

    #[test]
    fn paths_must_all_be_present() {
        let filter = SnapshotFilter {
            paths: strings(&["/data", "/etc"]),
            ..Default::default()
        };
        assert_eq!(matching(&filter), vec![2]);
        let filter = SnapshotFilter {
            paths: strings(&["/data"]),
            hosts: strings(&["a"]),
            ..Default::default()
        };
        assert_eq!(matching(&filter), vec![1, 2, 4]);
    }

    #[test]
    fn pick_finds_newest_as_of_and_skips_previous() {
        let all = sample();
        let none = SnapshotFilter::default();
        let pick_id = |filter: &SnapshotFilter, as_of: Option<&str>, skip: usize| {
            pick(&all, filter, as_of.map(|t| t.parse().unwrap()), skip).map(|(id, _)| id.0[0])
        };
        assert_eq!(pick_id(&none, None, 0), Some(4));
        assert_eq!(pick_id(&none, None, 1), Some(3));
        assert_eq!(pick_id(&none, None, 4), None);
        // `as_of` is inclusive.
        assert_eq!(pick_id(&none, Some("2026-01-02T00:00:00Z"), 0), Some(2));
        assert_eq!(pick_id(&none, Some("2026-01-02T12:00:00Z"), 1), Some(1));
        assert_eq!(pick_id(&none, Some("2025-12-31T00:00:00Z"), 0), None);
        let host_a = SnapshotFilter {
            hosts: strings(&["a"]),
            ..Default::default()
        };
        assert_eq!(pick_id(&host_a, Some("2026-01-03T12:00:00Z"), 0), Some(2));
    }

    #[test]
    fn pick_breaks_time_ties_by_id() {
        let mut all = sample();
        all[0].1.time = all[3].1.time;
        assert_eq!(
            pick(&all, &SnapshotFilter::default(), None, 0).map(|(id, _)| id),
            Some(Id([4; 32]))
        );
        assert_eq!(
            pick(&all, &SnapshotFilter::default(), None, 1).map(|(id, _)| id),
            Some(Id([1; 32]))
        );
    }

    #[test]
    fn group_by_parses_restic_syntax() {
        assert_eq!("".parse::<GroupBy>().unwrap(), GroupBy::default());
        assert_eq!(
            "host,paths".parse::<GroupBy>().unwrap(),
            GroupBy::HOST_PATHS
        );
        let all: GroupBy = "host,paths,tags".parse().unwrap();
        assert!(all.host && all.paths && all.tags);
        assert_eq!(all.to_string(), "host,paths,tags");
        assert!(matches!(
            "host,colour".parse::<GroupBy>(),
            Err(Error::InvalidOptions(message)) if message.contains("colour")
        ));
    }

    #[test]
    fn groups_by_host_and_sorted_paths() {
        let mut all = sample();
        // The same path set in another order is the same group.
        all[1].1.paths = strings(&["/etc", "/data"]);
        all.push((
            Id([5; 32]),
            snapshot_at("2025-12-01T00:00:00Z", "a", &["/data", "/etc"], &[]),
        ));
        let groups = group_by(all.clone(), GroupBy::HOST_PATHS);
        let summary: Vec<(GroupKey, Vec<u8>)> = groups
            .into_iter()
            .map(|(key, members)| (key, members.iter().map(|(id, _)| id.0[0]).collect()))
            .collect();
        let key = |host: &str, paths: &[&str]| GroupKey {
            host: Some(host.into()),
            paths: Some(strings(paths)),
            tags: None,
        };
        assert_eq!(
            summary,
            vec![
                (key("a", &["/data"]), vec![1, 4]),
                (key("a", &["/data", "/etc"]), vec![5, 2]),
                (key("b", &["/data"]), vec![3]),
            ]
        );
        let one = group_by(all, GroupBy::default());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0.to_string(), "all snapshots");
        assert_eq!(one[0].1.len(), 5);
    }

    #[test]
    fn group_key_serialises_unused_fields_as_null() {
        let key = GroupKey::of(&sample()[2].1, "tags".parse().unwrap());
        let json = serde_json::to_value(&key).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"host": null, "paths": null, "tags": ["x", "y"]})
        );
        assert_eq!(key.to_string(), "tags [x, y]");
    }

    proptest! {
        #[test]
        fn pick_skipping_walks_the_matching_snapshots_newest_first(
            times in proptest::collection::vec(0i64..1000, 0..12),
            hosts in proptest::collection::vec(0u8..3, 12),
        ) {
            let all: Vec<(Id, Snapshot)> = times
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let mut snapshot = snapshot_at("2026-01-01T00:00:00Z", &format!("h{}", hosts[i]), &["/"], &[]);
                    snapshot.time = jiff::Timestamp::from_second(t).unwrap();
                    (Id([i as u8; 32]), snapshot)
                })
                .collect();
            let filter = SnapshotFilter { hosts: vec!["h0".into()], ..Default::default() };
            let mut expected: Vec<(Id, Snapshot)> =
                all.iter().filter(|(_, s)| s.hostname == "h0").cloned().collect();
            expected.sort_by(chronological);
            expected.reverse();
            for (skip, want) in expected.iter().enumerate() {
                let picked = pick(&all, &filter, None, skip);
                prop_assert_eq!(picked.as_ref(), Some(want));
            }
            prop_assert_eq!(pick(&all, &filter, None, expected.len()), None);
        }
    }
}
