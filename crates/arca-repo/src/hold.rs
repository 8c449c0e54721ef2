//! Legal holds: snapshots that forget and prune must keep.
//!
//! A hold is recorded in the repository, so every client and the operator
//! see it: each change is one immutable record in `holds/<id>`, sealed as
//! [`ObjectKind::Hold`]. Placing a hold writes a [`HoldRecord`] with
//! [`HoldAction::Place`]; releasing writes one with [`HoldAction::Release`]
//! that names the placements it ends, so the history stays and a hold placed
//! concurrently with a release is not released by accident. A placement with
//! an `until` time ends by itself at that time. The record format is in
//! docs/FORMAT.md ("Legal holds").

use std::collections::BTreeMap;

use arca_crypto::ObjectKind;

use crate::{Error, Id, Repository, Result, records};

/// Directory of hold records.
pub const HOLDS_DIR: &str = "holds";

/// What a hold record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldAction {
    /// Places a hold on the snapshot.
    Place,
    /// Ends the placements named in [`HoldRecord::ends`].
    Release,
}

/// One record in `holds/` (the stored JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HoldRecord {
    /// Placing or releasing.
    pub action: HoldAction,
    /// The snapshot held or released.
    pub snapshot: Id,
    /// Why (a case number, an audit): required for both actions.
    pub reason: String,
    /// When a placement ends by itself; `None` holds until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<jiff::Timestamp>,
    /// For a release: the IDs of the placement records it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ends: Vec<Id>,
    /// When the record was written.
    pub time: jiff::Timestamp,
    /// Who wrote it: host name.
    pub hostname: String,
    /// Who wrote it: user name.
    pub username: String,
}

/// An active hold on a snapshot: its placement record and that record's ID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hold {
    /// ID of the placement record (`holds/<id>`).
    pub id: Id,
    /// The placement.
    #[serde(flatten)]
    pub record: HoldRecord,
}

/// Who is placing or releasing, and when.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Host name recorded.
    pub hostname: String,
    /// User name recorded.
    pub username: String,
    /// The time recorded (and against which `until` is checked).
    pub now: jiff::Timestamp,
}

/// Every hold record, by ID. A damaged record is an error naming it: a
/// hold that cannot be read must stop forget rather than be ignored.
pub async fn history(repo: &Repository) -> Result<BTreeMap<Id, HoldRecord>> {
    let loaded = records::load_all(repo, HOLDS_DIR, decode).await?;
    loaded
        .into_iter()
        .map(|(id, record)| record.map(|record| (id, record)))
        .collect()
}

fn decode(repo: &Repository, path: &str, stored: &[u8]) -> Result<HoldRecord> {
    records::decode(repo, ObjectKind::Hold, path, stored)
}

/// The holds in force at `now`, one per held snapshot (of several placements
/// on one snapshot, the one that lasts longest).
pub async fn active_holds(repo: &Repository, now: jiff::Timestamp) -> Result<BTreeMap<Id, Hold>> {
    Ok(active_in(&history(repo).await?, now))
}

/// The decision behind [`active_holds`], on a loaded history.
pub fn active_in(history: &BTreeMap<Id, HoldRecord>, now: jiff::Timestamp) -> BTreeMap<Id, Hold> {
    let mut active: BTreeMap<Id, Hold> = BTreeMap::new();
    for (id, record) in placements_in_force(history, now) {
        let lasts_longer = |held: &Hold| match (held.record.until, record.until) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(old), Some(new)) => new > old,
        };
        match active.get(&record.snapshot) {
            Some(held) if !lasts_longer(held) => {}
            _ => {
                active.insert(
                    record.snapshot,
                    Hold {
                        id: *id,
                        record: record.clone(),
                    },
                );
            }
        }
    }
    active
}

/// Places a hold on each snapshot; returns the placement record IDs.
///
/// Each snapshot must exist, and is looked up again after its record is
/// written: a forget that removed it meanwhile is reported as
/// [`Error::SnapshotNotFound`] rather than leaving a hold on nothing unnoticed.
pub async fn place(
    repo: &Repository,
    snapshots: &[Id],
    reason: &str,
    until: Option<jiff::Timestamp>,
    actor: &Actor,
) -> Result<Vec<Id>> {
    check_reason(reason)?;
    if let Some(until) = until
        && until <= actor.now
    {
        return Err(Error::HoldExpired { until });
    }
    let mut placed = Vec::with_capacity(snapshots.len());
    for snapshot in snapshots {
        repo.load_snapshot(snapshot).await?;
        let record = HoldRecord {
            action: HoldAction::Place,
            snapshot: *snapshot,
            reason: reason.to_owned(),
            until,
            ends: Vec::new(),
            time: actor.now,
            hostname: actor.hostname.clone(),
            username: actor.username.clone(),
        };
        placed.push(records::save(repo, ObjectKind::Hold, HOLDS_DIR, &record).await?);
        repo.load_snapshot(snapshot).await?;
    }
    Ok(placed)
}

/// Releases every active hold on each snapshot; returns the release record
/// IDs. [`Error::NotHeld`] (before anything is written) if a snapshot has
/// no active hold. Refused with an append-only key.
pub async fn release(
    repo: &Repository,
    snapshots: &[Id],
    reason: &str,
    actor: &Actor,
) -> Result<Vec<Id>> {
    repo.require_full_access("hold release")?;
    check_reason(reason)?;
    let history = history(repo).await?;
    let mut releases = Vec::with_capacity(snapshots.len());
    for snapshot in snapshots {
        let ends: Vec<Id> = placements_in_force(&history, actor.now)
            .filter(|(_, record)| record.snapshot == *snapshot)
            .map(|(id, _)| *id)
            .collect();
        if ends.is_empty() {
            return Err(Error::NotHeld {
                snapshot: *snapshot,
            });
        }
        releases.push(HoldRecord {
            action: HoldAction::Release,
            snapshot: *snapshot,
            reason: reason.to_owned(),
            until: None,
            ends,
            time: actor.now,
            hostname: actor.hostname.clone(),
            username: actor.username.clone(),
        });
    }
    let mut ids = Vec::with_capacity(releases.len());
    for record in &releases {
        ids.push(records::save(repo, ObjectKind::Hold, HOLDS_DIR, record).await?);
    }
    Ok(ids)
}

/// The placement records in force at `now`: not ended by a release, not expired.
pub fn placements_in_force(
    history: &BTreeMap<Id, HoldRecord>,
    now: jiff::Timestamp,
) -> impl Iterator<Item = (&Id, &HoldRecord)> {
    let released: std::collections::BTreeSet<&Id> = history
        .values()
        .filter(|record| record.action == HoldAction::Release)
        .flat_map(|record| record.ends.iter())
        .collect();
    history.iter().filter(move |(id, record)| {
        record.action == HoldAction::Place
            && !released.contains(id)
            && record.until.is_none_or(|until| until > now)
    })
}

fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(Error::InvalidOptions(
            "a hold needs a reason (--reason TEXT): who asked for it and why".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(second: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(second).unwrap()
    }

    fn place(snapshot: u8, until: Option<i64>) -> HoldRecord {
        HoldRecord {
            action: HoldAction::Place,
            snapshot: Id([snapshot; 32]),
            reason: "case 1".into(),
            until: until.map(at),
            ends: vec![],
            time: at(0),
            hostname: "h".into(),
            username: "u".into(),
        }
    }

    #[test]
    fn releases_end_only_the_placements_they_name() {
        let mut history = BTreeMap::new();
        history.insert(Id([1; 32]), place(9, None));
        history.insert(Id([2; 32]), place(9, Some(100)));
        history.insert(Id([3; 32]), place(8, None));
        let mut release = place(9, None);
        release.action = HoldAction::Release;
        release.ends = vec![Id([1; 32])];
        history.insert(Id([4; 32]), release);
        let active = active_in(&history, at(50));
        assert_eq!(active.len(), 2);
        assert_eq!(active[&Id([9; 32])].id, Id([2; 32]));
        assert_eq!(active[&Id([8; 32])].id, Id([3; 32]));
        // The timed placement expires by itself.
        let later = active_in(&history, at(100));
        assert_eq!(later.keys().collect::<Vec<_>>(), [&Id([8; 32])]);
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut record = place(7, Some(1_800_000_000));
        record.ends = vec![Id([5; 32])];
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["action"], "place");
        assert_eq!(json["until"], "2027-01-15T08:00:00Z");
        let back: HoldRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }

    proptest! {
        /// A snapshot is held exactly when some unreleased, unexpired
        /// placement names it, and the hold reported lasts at least as long
        /// as every such placement.
        #[test]
        fn active_holds_match_their_definition(
            placements in proptest::collection::vec((0u8..4, proptest::option::of(0i64..20)), 0..12),
            released in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
            now in 0i64..20,
        ) {
            let mut history = BTreeMap::new();
            for (i, (snapshot, until)) in placements.iter().enumerate() {
                history.insert(Id([i as u8 + 1; 32]), place(*snapshot, *until));
            }
            let ids: Vec<Id> = history.keys().copied().collect();
            let ends: Vec<Id> = if ids.is_empty() { vec![] } else {
                released.iter().map(|index| *index.get(&ids)).collect()
            };
            let mut release = place(0, None);
            release.action = HoldAction::Release;
            release.ends = ends.clone();
            history.insert(Id([200; 32]), release);
            let active = active_in(&history, at(now));
            for snapshot in 0u8..4 {
                let in_force: Vec<&HoldRecord> = history
                    .iter()
                    .filter(|(id, r)| r.action == HoldAction::Place
                        && r.snapshot == Id([snapshot; 32])
                        && !ends.contains(id)
                        && r.until.is_none_or(|u| u > at(now)))
                    .map(|(_, r)| r)
                    .collect();
                let held = active.get(&Id([snapshot; 32]));
                prop_assert_eq!(held.is_some(), !in_force.is_empty());
                if let Some(held) = held {
                    for r in in_force {
                        let outlasts = match (held.record.until, r.until) {
                            (None, _) => true,
                            (Some(_), None) => false,
                            (Some(a), Some(b)) => a >= b,
                        };
                        prop_assert!(outlasts);
                    }
                }
            }
        }
    }
}
