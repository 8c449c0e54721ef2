//! Forgetting snapshots: by a retention policy applied per group (restic's
//! `forget --keep-*`), or by ID. Forgetting removes only the snapshot files;
//! the data they alone used stays until a prune.
//!
//! Planning is separate from removing, so `--dry-run` shows exactly what a
//! real run would remove: [`plan`] (or the pure [`plan_snapshots`]) builds a
//! [`ForgetPlan`], [`remove`] deletes its snapshots. A snapshot under a
//! legal hold is never removed: a policy keeps it ("legal hold"), and
//! naming it by ID is an error that removes nothing.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use crate::hold::active_holds;
use crate::repository::SNAPSHOTS_DIR;
use crate::retention::{Counters, RetentionPolicy, apply};
use crate::select::{GroupBy, GroupKey, SnapshotFilter, group_by};
use crate::snapshot::Snapshot;
use crate::{Error, Id, Repository, Result};

/// The reason a policy keeps a snapshot it would otherwise remove because
/// the snapshot is under a legal hold.
pub const HELD_REASON: &str = "legal hold";

/// How many snapshot files are deleted at once.
const DELETE_CONCURRENCY: usize = 8;

/// What a policy-driven forget works on and how.
#[derive(Debug, Clone, Default)]
pub struct ForgetOptions {
    /// The retention policy, applied to each group.
    pub policy: RetentionPolicy,
    /// Only snapshots matching this are considered (the rest are untouched).
    pub filter: SnapshotFilter,
    /// How snapshots are grouped (restic's default is [`GroupBy::HOST_PATHS`]).
    pub group_by: GroupBy,
    /// With an empty policy, remove every snapshot the filter selects
    /// (restic's `--unsafe-allow-remove-all`; needs a non-empty filter).
    pub unsafe_allow_remove_all: bool,
}

/// Why one snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepReason {
    /// The snapshot.
    pub id: Id,
    /// The rules that keep it, in restic's words.
    pub matches: Vec<String>,
    /// The count rules' remaining budget after it.
    pub counters: Counters,
}

/// The decision for one group: snapshots newest first.
#[derive(Debug, Clone)]
pub struct ForgetGroup {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// Snapshots kept, newest first.
    pub keep: Vec<(Id, Snapshot)>,
    /// Snapshots to remove, newest first.
    pub remove: Vec<(Id, Snapshot)>,
    /// One reason per kept snapshot, in the order of `keep`.
    pub reasons: Vec<KeepReason>,
}

/// What a forget removes and keeps, group by group.
#[derive(Debug, Clone, Default)]
pub struct ForgetPlan {
    /// The groups, ordered by key.
    pub groups: Vec<ForgetGroup>,
}

impl ForgetPlan {
    /// The IDs of every snapshot to remove, sorted.
    pub fn to_remove(&self) -> Vec<Id> {
        let ids: BTreeSet<Id> = self
            .groups
            .iter()
            .flat_map(|group| group.remove.iter().map(|(id, _)| *id))
            .collect();
        ids.into_iter().collect()
    }
}

/// Plans a policy-driven forget over `snapshots` (pure: no repository, no
/// clock). Snapshots in `held` are kept with [`HELD_REASON`].
///
/// Errors: an empty policy is [`Error::NoPolicy`] (restic refuses it too)
/// unless `unsafe_allow_remove_all` is set with a filter; a non-empty
/// policy that keeps nothing of a group is [`Error::WouldRemoveAll`].
pub fn plan_snapshots(
    snapshots: Vec<(Id, Snapshot)>,
    options: &ForgetOptions,
    held: &BTreeSet<Id>,
) -> Result<ForgetPlan> {
    let remove_all = options.policy.is_empty();
    if remove_all {
        if !options.unsafe_allow_remove_all {
            return Err(Error::NoPolicy);
        }
        if options.filter.is_empty() {
            return Err(Error::ConflictingOptions {
                first: "--unsafe-allow-remove-all".into(),
                second: "no snapshot filter (give --host, --tag or --path)".into(),
            });
        }
    }
    let selected: Vec<(Id, Snapshot)> = snapshots
        .into_iter()
        .filter(|(_, snapshot)| options.filter.matches(snapshot))
        .collect();
    let mut groups = Vec::new();
    for (key, members) in group_by(selected, options.group_by) {
        let mut by_id: BTreeMap<Id, Snapshot> = members.iter().cloned().collect();
        let decisions = apply(&options.policy, &members);
        let mut group = ForgetGroup {
            key,
            keep: Vec::new(),
            remove: Vec::new(),
            reasons: Vec::new(),
        };
        for decision in decisions {
            let snapshot = by_id
                .remove(&decision.id)
                .expect("apply decides on exactly the snapshots given");
            let mut matches = if remove_all {
                Vec::new()
            } else {
                decision.reasons
            };
            if held.contains(&decision.id) && matches.is_empty() {
                matches.push(HELD_REASON.to_owned());
            }
            if matches.is_empty() {
                group.remove.push((decision.id, snapshot));
            } else {
                group.reasons.push(KeepReason {
                    id: decision.id,
                    matches,
                    counters: decision.counters,
                });
                group.keep.push((decision.id, snapshot));
            }
        }
        if !remove_all && group.keep.is_empty() {
            return Err(Error::WouldRemoveAll {
                group: group.key.to_string(),
            });
        }
        groups.push(group);
    }
    Ok(ForgetPlan { groups })
}

/// Plans a policy-driven forget over the repository's snapshots, keeping
/// those under a legal hold at `now`.
pub async fn plan(
    repo: &Repository,
    options: &ForgetOptions,
    now: jiff::Timestamp,
) -> Result<ForgetPlan> {
    let snapshots = repo.list_snapshots().await?;
    let held: BTreeSet<Id> = active_holds(repo, now).await?.into_keys().collect();
    plan_snapshots(snapshots, options, &held)
}

/// Resolves snapshot IDs, unique prefixes or `latest` to snapshots, each
/// once, in the order given. Any spec that matches nothing (or more than one
/// snapshot) is an error, so a caller removes nothing unless all resolve.
pub async fn resolve(repo: &Repository, specs: &[String]) -> Result<Vec<(Id, Snapshot)>> {
    let mut found: Vec<(Id, Snapshot)> = Vec::with_capacity(specs.len());
    for spec in specs {
        let (id, snapshot) = repo.find_snapshot(spec).await?;
        if !found.iter().any(|(known, _)| *known == id) {
            found.push((id, snapshot));
        }
    }
    Ok(found)
}

/// The snapshots a command works on: those named by `specs` (see
/// [`resolve`]), or every snapshot if there are none, narrowed by `filter`;
/// oldest first.
pub async fn snapshots_for(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(Id, Snapshot)>> {
    let mut chosen = if specs.is_empty() {
        repo.list_snapshots().await?
    } else {
        resolve(repo, specs).await?
    };
    chosen.retain(|(_, snapshot)| filter.matches(snapshot));
    chosen.sort_by(crate::select::chronological);
    Ok(chosen)
}

/// Removes the snapshot files `ids` (a plan's [`ForgetPlan::to_remove`], or
/// resolved IDs). Refuses, removing nothing, with an append-only key or when
/// any of them is under a legal hold at `now`. A snapshot already gone
/// (removed by a concurrent forget) counts as removed. Returns the IDs
/// removed; if some deletions fail the others still happen and the first
/// failure is returned.
pub async fn remove(repo: &Repository, ids: &[Id], now: jiff::Timestamp) -> Result<Vec<Id>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    repo.require_full_access("forget")?;
    let holds = active_holds(repo, now).await?;
    let held: Vec<Id> = ids
        .iter()
        .filter(|id| holds.contains_key(id))
        .copied()
        .collect();
    if !held.is_empty() {
        return Err(Error::SnapshotsHeld { snapshots: held });
    }
    let results: Vec<(Id, Result<()>)> = futures::stream::iter(ids.iter().copied())
        .map(|id| async move {
            let path = format!("{SNAPSHOTS_DIR}/{id}");
            (id, crate::marks::delete_if_present(repo, &path).await)
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    let mut removed = Vec::with_capacity(results.len());
    let mut first_error = None;
    for (id, result) in results {
        match result {
            Ok(()) => removed.push(id),
            Err(error) => {
                tracing::warn!(snapshot = %id, %error, "could not remove the snapshot");
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => {
            removed.sort();
            Ok(removed)
        }
    }
}

/// Plans a policy-driven forget and, unless `dry_run`, removes what the plan
/// says. The library form of `arca forget --keep-*` for the agent and the
/// operator.
pub async fn forget(
    repo: &Repository,
    options: &ForgetOptions,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<ForgetPlan> {
    let plan = plan(repo, options, now).await?;
    if !dry_run {
        remove(repo, &plan.to_remove(), now).await?;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::Count;
    use crate::select::tests::snapshot_at;

    fn sample() -> Vec<(Id, Snapshot)> {
        vec![
            (
                Id([1; 32]),
                snapshot_at("2026-01-01T10:00:00Z", "a", &["/d"], &[]),
            ),
            (
                Id([2; 32]),
                snapshot_at("2026-01-02T10:00:00Z", "a", &["/d"], &[]),
            ),
            (
                Id([3; 32]),
                snapshot_at("2026-01-03T10:00:00Z", "a", &["/d"], &["keep"]),
            ),
            (
                Id([4; 32]),
                snapshot_at("2026-01-01T10:00:00Z", "b", &["/d"], &[]),
            ),
            (
                Id([5; 32]),
                snapshot_at("2026-01-02T10:00:00Z", "b", &["/d"], &[]),
            ),
        ]
    }

    fn keep_last(n: u32) -> ForgetOptions {
        ForgetOptions {
            policy: RetentionPolicy {
                keep_last: Some(Count::Limited(n)),
                ..Default::default()
            },
            group_by: GroupBy::HOST_PATHS,
            ..Default::default()
        }
    }

    fn ids(list: &[(Id, Snapshot)]) -> Vec<u8> {
        list.iter().map(|(id, _)| id.0[0]).collect()
    }

    #[test]
    fn policy_runs_per_group() {
        let plan = plan_snapshots(sample(), &keep_last(1), &BTreeSet::new()).unwrap();
        assert_eq!(plan.groups.len(), 2);
        assert_eq!(plan.groups[0].key.host.as_deref(), Some("a"));
        assert_eq!(ids(&plan.groups[0].keep), vec![3]);
        assert_eq!(ids(&plan.groups[0].remove), vec![2, 1]);
        assert_eq!(plan.groups[0].reasons[0].matches, ["last snapshot"]);
        assert_eq!(ids(&plan.groups[1].keep), vec![5]);
        assert_eq!(ids(&plan.groups[1].remove), vec![4]);
        assert_eq!(
            plan.to_remove(),
            vec![Id([1; 32]), Id([2; 32]), Id([4; 32])]
        );
    }

    #[test]
    fn filter_leaves_other_snapshots_alone() {
        let mut options = keep_last(1);
        options.filter.hosts = vec!["b".into()];
        let plan = plan_snapshots(sample(), &options, &BTreeSet::new()).unwrap();
        assert_eq!(plan.groups.len(), 1);
        assert_eq!(plan.to_remove(), vec![Id([4; 32])]);
    }

    #[test]
    fn held_snapshots_are_kept() {
        let held = BTreeSet::from([Id([1; 32])]);
        let plan = plan_snapshots(sample(), &keep_last(1), &held).unwrap();
        assert_eq!(ids(&plan.groups[0].keep), vec![3, 1]);
        assert_eq!(plan.groups[0].reasons[1].matches, [HELD_REASON]);
        assert_eq!(plan.to_remove(), vec![Id([2; 32]), Id([4; 32])]);
    }

    #[test]
    fn empty_policy_is_refused_unless_removing_all_is_asked_for() {
        let options = ForgetOptions::default();
        assert!(matches!(
            plan_snapshots(sample(), &options, &BTreeSet::new()),
            Err(Error::NoPolicy)
        ));
        let unfiltered = ForgetOptions {
            unsafe_allow_remove_all: true,
            ..Default::default()
        };
        assert!(matches!(
            plan_snapshots(sample(), &unfiltered, &BTreeSet::new()),
            Err(Error::ConflictingOptions { .. })
        ));
        let filtered = ForgetOptions {
            unsafe_allow_remove_all: true,
            filter: SnapshotFilter {
                hosts: vec!["a".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let plan = plan_snapshots(sample(), &filtered, &BTreeSet::from([Id([2; 32])])).unwrap();
        assert_eq!(plan.to_remove(), vec![Id([1; 32]), Id([3; 32])]);
    }

    #[test]
    fn a_policy_that_keeps_nothing_of_a_group_is_refused() {
        let options = ForgetOptions {
            policy: RetentionPolicy {
                keep_tags: vec![vec!["keep".into()]],
                ..Default::default()
            },
            group_by: GroupBy::HOST_PATHS,
            ..Default::default()
        };
        let error = plan_snapshots(sample(), &options, &BTreeSet::new()).unwrap_err();
        assert!(
            matches!(&error, Error::WouldRemoveAll { group } if group == "host [b], paths [/d]"),
            "{error}"
        );
        // Without grouping the one group keeps the tagged snapshot.
        let ungrouped = ForgetOptions {
            group_by: GroupBy::default(),
            ..options
        };
        let plan = plan_snapshots(sample(), &ungrouped, &BTreeSet::new()).unwrap();
        assert_eq!(plan.groups[0].key.to_string(), "all snapshots");
        assert_eq!(ids(&plan.groups[0].keep), vec![3]);
        assert_eq!(plan.groups[0].reasons[0].matches, ["has tags [keep]"]);
    }
}
