//! The compliance report's data: [`collect`] reads one repository, [`build`]
//! (pure) turns what was read into a [`Report`] for a window and a `now`.

use std::collections::BTreeMap;

use arca_repo::audit::{self, AuditRecord, Outcome, Verification};
use arca_repo::hold::{self, Hold};
use arca_repo::repository::{DATA_DIR, INDEX_DIR, SNAPSHOTS_DIR};
use arca_repo::retention::{self, RetentionPolicy};
use arca_repo::select::chronological;
use arca_repo::snapshot::Snapshot;
use arca_repo::{Id, Repository};
use arca_sched::{DataClass, RpoStatus};
use jiff::{SignedDuration, Timestamp};

use crate::Result;
use crate::drill::DrillRecord;

/// The default key rotation period: 90 days.
pub const DEFAULT_ROTATION_PERIOD: SignedDuration = SignedDuration::from_hours(90 * 24);
/// The audit operation that rotates the data key (`arca key rotate`).
const KEY_ROTATE_OPERATION: &str = "key rotate";

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The window's start: backups, failures and gaps after it count.
    pub since: Timestamp,
    /// The report's time.
    pub now: Timestamp,
    /// The data class whose RPO and RTO apply; `None`: no objectives judged.
    pub class: Option<DataClass>,
    /// The retention policy the repository should conform to; `None`: not judged.
    pub policy: Option<RetentionPolicy>,
    /// How often the data key should rotate.
    pub rotation_period: SignedDuration,
}

/// Everything [`build`] needs, as read from a repository.
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// Where the repository is (for the header; no credentials).
    pub location: String,
    /// Every snapshot.
    pub snapshots: Vec<(Id, Snapshot)>,
    /// Every audit record.
    pub audit: Vec<(Id, AuditRecord)>,
    /// The audit trail's verification.
    pub audit_verification: Option<Verification>,
    /// Holds in force.
    pub holds: Vec<Hold>,
    /// When the oldest key file was written (the repository's master key).
    pub oldest_key: Option<Timestamp>,
    /// Bytes of packs, index and snapshot files.
    pub repository_bytes: u64,
}

/// The compliance report of one repository.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The repository.
    pub location: String,
    /// When the report was made.
    pub generated: Timestamp,
    /// The window's start.
    pub since: Timestamp,
    /// The data class judged against.
    pub class: Option<DataClass>,
    /// Its RPO, seconds.
    pub rpo_seconds: Option<f64>,
    /// Its RTO, seconds.
    pub rto_seconds: Option<f64>,
    /// Every application's (host + paths) figures.
    pub groups: Vec<GroupReport>,
    /// Holds in force.
    pub holds: Vec<HoldView>,
    /// The data key's age and rotation.
    pub keys: KeyStatus,
    /// The audit trail.
    pub audit: AuditStatus,
    /// Size and growth.
    pub size: SizeStatus,
    /// Whether every judged figure is compliant.
    pub compliant: bool,
}

/// One application's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupReport {
    /// Host of its snapshots.
    pub hostname: String,
    /// Paths of its snapshots.
    pub paths: Vec<String>,
    /// Snapshots taken in the window.
    pub backups_in_window: u64,
    /// Snapshots in the repository.
    pub snapshots_total: u64,
    /// Backups of its host the audit trail records as failed in the window.
    pub failures_recorded: u64,
    /// Successful backups over backups attempted (snapshots + recorded
    /// failures) in the window; `None` without any.
    pub success_rate: Option<f64>,
    /// The newest snapshot.
    pub last_backup: Option<Timestamp>,
    /// The longest time between successive snapshots in the window (the
    /// first one's gap counts from the last snapshot before the window).
    pub longest_gap_seconds: Option<f64>,
    /// Time since the newest snapshot.
    pub since_last_seconds: Option<f64>,
    /// Both within the RPO; `None` without a class.
    pub rpo_met: Option<bool>,
    /// The window's backups, oldest first.
    pub backups: Vec<BackupPoint>,
    /// The newest drill of one of its snapshots.
    pub last_drill: Option<DrillRecord>,
    /// Whether that drill passed and met the RTO; `None` without a drill.
    pub drill_ok: Option<bool>,
    /// Retention conformance; `None` without a policy.
    pub retention: Option<RetentionStatus>,
    /// Active holds on its snapshots.
    pub holds: u64,
}

/// One backup in the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupPoint {
    /// The snapshot.
    pub snapshot: Id,
    /// When it was taken.
    pub time: Timestamp,
    /// How long the backup ran, if recorded.
    pub duration_seconds: Option<f64>,
    /// Stored bytes it added, if recorded.
    pub bytes_added: Option<u64>,
    /// Time since the previous snapshot (the gap it closed); `None` for
    /// the application's first.
    pub gap_seconds: Option<f64>,
}

/// What the retention policy would keep versus what exists.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetentionStatus {
    /// Snapshots that exist.
    pub existing: u64,
    /// Snapshots the policy keeps.
    pub kept_by_policy: u64,
    /// Snapshots it would remove that holds protect.
    pub held: u64,
    /// Snapshots it would remove (and no hold protects): a forget is due.
    pub excess: Vec<Id>,
    /// No excess.
    pub conforms: bool,
}

/// A hold in force.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HoldView {
    /// The held snapshot.
    pub snapshot: Id,
    /// Why.
    pub reason: String,
    /// Since when.
    pub placed: Timestamp,
    /// Until when (`None`: until released).
    pub until: Option<Timestamp>,
}

/// The data key's age.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyStatus {
    /// When the current data key came into use: the last `key rotate` the
    /// audit trail records, else the oldest key file.
    pub in_use_since: Option<Timestamp>,
    /// Its age in days.
    pub age_days: Option<f64>,
    /// When the next rotation is due.
    pub rotation_due: Option<Timestamp>,
    /// Due already.
    pub rotation_overdue: bool,
}

/// The audit trail's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditStatus {
    /// Records in the trail.
    pub records: u64,
    /// No gaps or alterations found (`None`: not verified).
    pub intact: Option<bool>,
    /// Removed records found.
    pub gaps: u64,
    /// Altered records found.
    pub damaged: u64,
}

/// The repository's size and growth.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SizeStatus {
    /// Bytes stored now.
    pub bytes: u64,
    /// Stored bytes added by the snapshots that still exist, summed over
    /// time (from snapshot summaries), oldest first.
    pub growth: Vec<GrowthPoint>,
}

/// The repository's size at one time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GrowthPoint {
    /// When.
    pub time: Timestamp,
    /// Stored bytes added up to then.
    pub bytes: u64,
}

/// Reads what the report needs from `repo` and builds it.
pub async fn collect(repo: &Repository, options: &ReportOptions) -> Result<Report> {
    let snapshots = repo.list_snapshots().await?;
    let audit = audit::list(repo, &audit::Filter::default()).await?;
    let audit_verification = Some(audit::verify(repo).await?);
    let holds = hold::active_holds(repo, options.now)
        .await?
        .into_values()
        .collect();
    let oldest_key = arca_repo::keys::list(repo)
        .await?
        .iter()
        .map(|key| key.created)
        .min();
    let mut repository_bytes = 0;
    for dir in [DATA_DIR, INDEX_DIR, SNAPSHOTS_DIR] {
        repository_bytes += repo
            .backend()
            .list(dir)
            .await
            .map_err(arca_repo::Error::from)?
            .iter()
            .map(|object| object.size)
            .sum::<u64>();
    }
    let input = ReportInput {
        location: repo.backend().to_string(),
        snapshots,
        audit,
        audit_verification,
        holds,
        oldest_key,
        repository_bytes,
    };
    Ok(build(&input, options))
}

/// An application: the host and the (sorted) paths of its snapshots.
type GroupId = (String, Vec<String>);

fn seconds(duration: SignedDuration) -> f64 {
    duration.as_secs_f64()
}

/// The report for `input` (pure).
pub fn build(input: &ReportInput, options: &ReportOptions) -> Report {
    let rpo = options.class.map(DataClass::rpo);
    let rto = options.class.map(DataClass::rto);
    let held: BTreeMap<Id, &Hold> = input
        .holds
        .iter()
        .map(|hold| (hold.record.snapshot, hold))
        .collect();
    let drills: Vec<DrillRecord> = input
        .audit
        .iter()
        .filter_map(|(_, record)| DrillRecord::from_audit(record))
        .collect();

    let mut by_group: BTreeMap<GroupId, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, snapshot) in &input.snapshots {
        let mut paths = snapshot.paths.clone();
        paths.sort();
        by_group
            .entry((snapshot.hostname.clone(), paths))
            .or_default()
            .push((*id, snapshot.clone()));
    }
    let groups: Vec<GroupReport> = by_group
        .into_iter()
        .map(|((hostname, paths), mut snapshots)| {
            snapshots.sort_by(chronological);
            group_report(hostname, paths, &snapshots, input, options, &drills, &held)
        })
        .collect();

    let keys = key_status(input, options);
    let audit = AuditStatus {
        records: input.audit.len() as u64,
        intact: input
            .audit_verification
            .as_ref()
            .map(Verification::is_intact),
        gaps: input
            .audit_verification
            .as_ref()
            .map_or(0, |v| v.gaps.len() as u64),
        damaged: input
            .audit_verification
            .as_ref()
            .map_or(0, |v| v.damaged.len() as u64),
    };
    let size = SizeStatus {
        bytes: input.repository_bytes,
        growth: growth(&input.snapshots),
    };
    let compliant = groups.iter().all(|group| {
        group.rpo_met != Some(false)
            && group.drill_ok != Some(false)
            && group.retention.as_ref().is_none_or(|r| r.conforms)
    }) && !keys.rotation_overdue
        && audit.intact != Some(false);
    Report {
        location: input.location.clone(),
        generated: options.now,
        since: options.since,
        class: options.class,
        rpo_seconds: rpo.map(seconds),
        rto_seconds: rto.map(seconds),
        groups,
        holds: input
            .holds
            .iter()
            .map(|hold| HoldView {
                snapshot: hold.record.snapshot,
                reason: hold.record.reason.clone(),
                placed: hold.record.time,
                until: hold.record.until,
            })
            .collect(),
        keys,
        audit,
        size,
        compliant,
    }
}

fn group_report(
    hostname: String,
    paths: Vec<String>,
    snapshots: &[(Id, Snapshot)],
    input: &ReportInput,
    options: &ReportOptions,
    drills: &[DrillRecord],
    held: &BTreeMap<Id, &Hold>,
) -> GroupReport {
    let in_window: Vec<&(Id, Snapshot)> = snapshots
        .iter()
        .filter(|(_, s)| s.time >= options.since && s.time <= options.now)
        .collect();
    // The gap closed by the window's first backup starts at the last
    // earlier snapshot; without one, the application's history starts there.
    let mut previous = snapshots
        .iter()
        .rev()
        .find(|(_, s)| s.time < options.since)
        .map(|(_, s)| s.time);
    let mut backups = Vec::with_capacity(in_window.len());
    for (id, snapshot) in &in_window {
        let summary = snapshot.summary.as_ref();
        backups.push(BackupPoint {
            snapshot: *id,
            time: snapshot.time,
            duration_seconds: summary.map(|s| seconds(s.backup_end.duration_since(s.backup_start))),
            bytes_added: summary.map(|s| s.data_added_packed),
            gap_seconds: previous.map(|previous| seconds(snapshot.time.duration_since(previous))),
        });
        previous = Some(snapshot.time);
    }
    let last_backup = snapshots.last().map(|(_, s)| s.time);
    let since_last = last_backup.map(|last| options.now.duration_since(last));
    let longest_gap_seconds = backups
        .iter()
        .filter_map(|b| b.gap_seconds)
        .fold(None, |max: Option<f64>, gap| {
            Some(max.map_or(gap, |m| m.max(gap)))
        });
    let rpo_met = options.class.map(|class| {
        let rpo = seconds(class.rpo());
        RpoStatus::evaluate(class, last_backup, options.now).within
            && longest_gap_seconds.is_none_or(|gap| gap <= rpo)
    });
    let failures_recorded = input
        .audit
        .iter()
        .filter(|(_, r)| {
            r.operation == "backup"
                && r.outcome == Outcome::Failure
                && r.hostname == hostname
                && r.time >= options.since
                && r.time <= options.now
        })
        .count() as u64;
    let attempted = backups.len() as u64 + failures_recorded;
    let success_rate = (attempted > 0).then(|| backups.len() as f64 / attempted as f64);
    let ids: Vec<Id> = snapshots.iter().map(|(id, _)| *id).collect();
    let last_drill = drills
        .iter()
        .filter(|d| d.snapshot.is_some_and(|s| ids.contains(&s)))
        .max_by_key(|d| d.time)
        .cloned();
    let rto = options.class.map(|class| seconds(class.rto()));
    let drill_ok = last_drill.as_ref().map(|d| {
        d.passed
            && match (rto, d.measured_seconds) {
                (Some(rto), Some(measured)) => measured <= rto,
                _ => true,
            }
    });
    let retention = options.policy.as_ref().map(|policy| {
        let decisions = retention::apply(policy, snapshots);
        let kept = decisions.iter().filter(|d| d.keep()).count() as u64;
        let removed: Vec<Id> = decisions
            .iter()
            .filter(|d| !d.keep())
            .map(|d| d.id)
            .collect();
        let (held_removed, excess): (Vec<Id>, Vec<Id>) =
            removed.into_iter().partition(|id| held.contains_key(id));
        RetentionStatus {
            existing: snapshots.len() as u64,
            kept_by_policy: kept,
            held: held_removed.len() as u64,
            conforms: excess.is_empty(),
            excess,
        }
    });
    GroupReport {
        hostname,
        paths,
        backups_in_window: backups.len() as u64,
        snapshots_total: snapshots.len() as u64,
        failures_recorded,
        success_rate,
        last_backup,
        longest_gap_seconds,
        since_last_seconds: since_last.map(seconds),
        rpo_met,
        backups,
        last_drill,
        drill_ok,
        retention,
        holds: ids.iter().filter(|id| held.contains_key(id)).count() as u64,
    }
}

fn key_status(input: &ReportInput, options: &ReportOptions) -> KeyStatus {
    let rotated = input
        .audit
        .iter()
        .filter(|(_, r)| r.operation == KEY_ROTATE_OPERATION && r.outcome == Outcome::Success)
        .map(|(_, r)| r.time)
        .max();
    let in_use_since = rotated.or(input.oldest_key);
    let rotation_due =
        in_use_since.and_then(|since| since.checked_add(options.rotation_period).ok());
    KeyStatus {
        in_use_since,
        age_days: in_use_since.map(|since| seconds(options.now.duration_since(since)) / 86_400.0),
        rotation_due,
        rotation_overdue: rotation_due.is_some_and(|due| due < options.now),
    }
}

fn growth(snapshots: &[(Id, Snapshot)]) -> Vec<GrowthPoint> {
    let mut sorted: Vec<&(Id, Snapshot)> = snapshots.iter().collect();
    sorted.sort_by(|a, b| chronological(a, b));
    let mut total = 0u64;
    sorted
        .into_iter()
        .map(|(_, snapshot)| {
            total += snapshot.summary.as_ref().map_or(0, |s| s.data_added_packed);
            GrowthPoint {
                time: snapshot.time,
                bytes: total,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn snapshot(second: i64) -> Snapshot {
        let json = serde_json::json!({
            "time": Timestamp::from_second(second).unwrap(),
            "tree": Id([1; 32]),
            "paths": ["/data"],
            "hostname": "db-1",
            "username": "root",
            "uid": 0,
            "gid": 0,
            "program_version": "test",
        });
        Snapshot::decode(&serde_json::to_vec(&json).unwrap()).unwrap()
    }

    proptest! {
        /// The longest gap is the largest distance between successive
        /// snapshots in the window, and the RPO verdict follows it and the
        /// time since the last backup.
        #[test]
        fn rpo_compliance_follows_the_gaps(
            mut times in proptest::collection::vec(0i64..200_000, 1..20),
            since in 0i64..100_000,
            after in 0i64..20_000,
        ) {
            times.sort_unstable();
            let snapshots: Vec<(Id, Snapshot)> = times
                .iter()
                .enumerate()
                .map(|(n, &t)| (Id([n as u8; 32]), snapshot(1_700_000_000 + t)))
                .collect();
            let now = 1_700_000_000 + times[times.len() - 1] + after;
            let options = ReportOptions {
                since: Timestamp::from_second(1_700_000_000 + since).unwrap(),
                now: Timestamp::from_second(now).unwrap(),
                class: Some(DataClass::Critical),
                policy: None,
                rotation_period: DEFAULT_ROTATION_PERIOD,
            };
            let input = ReportInput { snapshots, ..ReportInput::default() };
            let report = build(&input, &options);
            let group = &report.groups[0];
            let expected_gap = times
                .windows(2)
                .filter(|pair| pair[1] >= since)
                .map(|pair| (pair[1] - pair[0]) as f64)
                .fold(None, |max: Option<f64>, gap| Some(max.map_or(gap, |m| m.max(gap))));
            prop_assert_eq!(group.longest_gap_seconds, expected_gap);
            prop_assert_eq!(group.backups_in_window as usize, times.iter().filter(|&&t| t >= since).count());
            let rpo = 3600.0;
            let within = expected_gap.is_none_or(|gap| gap <= rpo) && (after as f64) <= rpo;
            prop_assert_eq!(group.rpo_met, Some(within));
            prop_assert_eq!(report.compliant, within);
        }
    }
}
