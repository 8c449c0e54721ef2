//! The result document: what a finished run did, as JSON in the Job's
//! termination log. It is the controller's only knowledge of a finished Job,
//! so its shape is a contract (docs/AGENT.md, "Result document"): fields are
//! added, never renamed or removed, and `version` changes if that must ever
//! happen.
//!
//! Kubernetes keeps at most 4096 bytes of a termination message;
//! [`MoverReport::to_json`] shortens samples and the error message until the
//! document fits, so the controller always gets valid JSON.

use arca_repo::Id;

use crate::{Action, ErrorClass};

/// Version of the document's shape.
pub const REPORT_VERSION: u32 = 1;
/// Kubernetes truncates termination messages beyond this many bytes.
pub const MAX_REPORT_BYTES: usize = 4096;
/// Sample paths kept in a report (unreadable files, check errors).
pub const SAMPLE_LEN: usize = 3;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every action succeeded.
    Success,
    /// Every action finished, but a backup could not read some files (they
    /// are missing from its snapshot, which was saved). Exit code 3: report
    /// it, do not retry.
    Partial,
    /// An action failed; `error_class` says whether retrying may help.
    Failed,
}

/// The result document of one run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoverReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// How the run ended.
    pub outcome: Outcome,
    /// The process's exit code (0 success, 3 partial, else
    /// [`ErrorClass::exit_code`]).
    pub exit_code: u8,
    /// When the run started.
    pub started: jiff::Timestamp,
    /// Seconds the whole run took.
    pub duration_seconds: f64,
    /// The host recorded in snapshots and selected on restore.
    pub host: String,
    /// A report per finished action, in order.
    pub actions: Vec<ActionReport>,
    /// The action that failed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_action: Option<Action>,
    /// What kind of failure, if the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// The error message, if the run failed (never holds secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the `drill` action found, if it ran (absent in older documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSummary>,
    /// Per secondary repository, what replication did (after `backup`, or
    /// the `replicate` action); empty when none is configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// The `report` action's summary figures, if it ran (absent in older
    /// documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ComplianceSummary>,
}

/// The summary figures of the compliance report (`arca_dr::report`) of the
/// run's host, over [`ComplianceSummary::window_days`]: its applications'
/// figures combined (sums of counts, the worst of rates and gaps, every
/// judgement met), plus the repository-wide ones. Numbers only, so the
/// document stays small.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComplianceSummary {
    /// The window's length in days.
    pub window_days: u64,
    /// Every judged figure of the host's applications, the key rotation and
    /// the audit trail are compliant.
    pub compliant: bool,
    /// Snapshots of the host taken in the window.
    pub backups: u64,
    /// Backups of the host the audit trail records as failed in the window.
    pub failures: u64,
    /// The lowest success rate (0–1) of the host's applications; `None`
    /// without any backup attempted in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// The longest gap between successive snapshots, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_gap_seconds: Option<f64>,
    /// Every application's gaps within the class's RPO; `None` without a
    /// class (`ARCA_DATA_CLASS`) or a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_met: Option<bool>,
    /// Every application's snapshots conform to `FORGET_OPTIONS`; `None`
    /// without a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_conforms: Option<bool>,
    /// The audit trail verified intact; `None` if it could not be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_intact: Option<bool>,
    /// Holds in force on the host's snapshots.
    pub holds: u64,
    /// Age of the data key in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<f64>,
    /// The data key's rotation is overdue.
    pub rotation_overdue: bool,
    /// Bytes of packs, index and snapshot files in the repository.
    pub repository_bytes: u64,
}

/// The outcome of a recovery drill: restore into scratch space, verify, run
/// the optional consistency command, compare the time with the RTO.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DrillSummary {
    /// Verified, the command (if any) succeeded, and the RTO (if any) was met.
    pub passed: bool,
    /// Seconds from the drill's start until the restored copy was verified.
    pub measured_seconds: f64,
    /// The recovery time objective compared with, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// Bytes of file content restored and verified.
    pub bytes_verified: u64,
    /// Files (of every kind) restored and verified.
    pub files_verified: u64,
    /// The snapshot drilled (`None`: there was none to drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Id>,
    /// Why the drill failed, if it did (never holds secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What replication to one secondary repository did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    /// `ARCA_REPLICA_<N>_NAME`, or `replica-<N>`.
    pub name: String,
    /// Snapshots copied to the replica by this run.
    pub copied: u64,
    /// Primary snapshots (of this host) still missing on the replica after
    /// the copy; `None` if the replica could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_snapshots: Option<u64>,
    /// Primary's newest snapshot time minus the replica's newest (0 when up
    /// to date); `None` if either has no snapshot or the replica failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Why replication to this replica failed, if it did (never holds secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionReport {
    /// `unlock`.
    Unlock(UnlockReport),
    /// `backup` (and its forget).
    Backup(BackupReport),
    /// `prune`.
    Prune(PruneReport),
    /// `restore`.
    Restore(RestoreReport),
    /// `check`.
    Check(CheckSummary),
    /// `verify`.
    Verify(VerifyReport),
    /// `drill`; its findings are the document's `drill` section.
    Drill,
    /// `replicate`; per replica in the document's `replicas` section.
    Replicate,
    /// `report`; its figures are the document's `report` section.
    Report,
}

/// What `unlock` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnlockReport {
    /// Stale locks removed (0 when there were none, or no repository).
    pub stale_locks_removed: u64,
}

/// What `backup` did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupReport {
    /// The volume held nothing (but `lost+found`): no snapshot was taken and
    /// nothing was forgotten, so an unmounted or wiped volume never replaces
    /// good history.
    pub empty_source: bool,
    /// The repository did not exist and was created.
    pub repository_initialized: bool,
    /// The new snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<Id>,
    /// Its parent (the snapshot compared against), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Id>,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unmodified: u64,
    /// Files that could not be read and are missing from the snapshot.
    pub files_unreadable: u64,
    /// Up to [`SAMPLE_LEN`] of those, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_sample: Vec<String>,
    /// Directories new, changed, unmodified.
    pub dirs_new: u64,
    /// Directories changed.
    pub dirs_changed: u64,
    /// Directories unmodified.
    pub dirs_unmodified: u64,
    /// Bytes of file content in the snapshot.
    pub bytes_processed: u64,
    /// Bytes of new blobs, uncompressed.
    pub bytes_added: u64,
    /// Bytes those blobs took in the repository (compressed, encrypted).
    pub bytes_stored: u64,
    /// Seconds the backup took.
    pub duration_seconds: f64,
    /// What forget did, if `FORGET_OPTIONS` asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget: Option<ForgetReport>,
    /// Bytes of the repository's packs, index and snapshot files after the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_bytes: Option<u64>,
}

/// What the forget after a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForgetReport {
    /// Snapshots of this host kept.
    pub kept: u64,
    /// Snapshots of this host removed.
    pub removed: u64,
}

/// What `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    /// Packs deleted (marked by an earlier prune whose grace period has passed).
    pub packs_deleted: u64,
    /// Bytes those packs held.
    pub bytes_freed: u64,
    /// Packs marked for deletion by this prune (deleted by a later one).
    pub packs_marked: u64,
    /// Bytes the marked packs hold.
    pub bytes_marked: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_repacked: u64,
}

/// Why a restore restored nothing, or that it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreOutcome {
    /// The snapshot is in the volume, synced to disk.
    Restored,
    /// The repository holds no snapshot matching host, `RESTORE_AS_OF` and
    /// `SELECT_PREVIOUS`; the volume was not touched.
    NoSnapshot,
    /// There is no repository at the location; the volume was not touched.
    NoRepository,
}

/// What `restore` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestoreReport {
    /// Whether anything was restored.
    pub outcome: RestoreOutcome,
    /// The snapshot restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<Id>,
    /// When it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<jiff::Timestamp>,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Bytes of file content restored.
    pub bytes_restored: u64,
    /// Bytes read from the repository.
    pub bytes_read: u64,
    /// Entries of the volume removed because the snapshot lacks them (`--delete`).
    pub deleted: u64,
    /// Items deliberately not restored (sockets, devices without root, …).
    pub skipped: u64,
    /// Seconds the restore took, including the swap and the sync.
    pub duration_seconds: f64,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckSummary {
    /// No damage found.
    pub ok: bool,
    /// Problems found.
    pub errors: u64,
    /// Up to [`SAMPLE_LEN`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_sample: Vec<String>,
    /// Snapshots decoded.
    pub snapshots_checked: u64,
    /// Packs whose presence and size were checked.
    pub packs_checked: u64,
    /// Packs downloaded and authenticated in full.
    pub packs_read: u64,
    /// Bytes downloaded for that.
    pub bytes_read: u64,
}

/// What `verify` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// The snapshot verified (`None`: the repository has none of this host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<Id>,
    /// Trees loaded and authenticated.
    pub trees_verified: u64,
    /// Data blobs read and authenticated.
    pub blobs_verified: u64,
    /// Bytes of file content they hold.
    pub bytes_verified: u64,
}

/// The longest error message kept before the size limit forces less.
const MAX_ERROR_CHARS: usize = 1500;
/// The longest sample entry kept.
const MAX_SAMPLE_CHARS: usize = 200;

impl MoverReport {
    /// The report of a run that failed before any action ran (a bad
    /// environment) or was stopped by a signal: no action reports.
    pub fn failed(
        started: jiff::Timestamp,
        duration_seconds: f64,
        host: String,
        class: ErrorClass,
        error: String,
    ) -> MoverReport {
        MoverReport {
            version: REPORT_VERSION,
            outcome: Outcome::Failed,
            exit_code: class.exit_code(),
            started,
            duration_seconds,
            host,
            actions: Vec::new(),
            failed_action: None,
            error_class: Some(class),
            error: Some(error),
            drill: None,
            replicas: Vec::new(),
            report: None,
        }
    }

    /// The document as JSON of at most [`MAX_REPORT_BYTES`] bytes: long
    /// samples and messages are cut (with `…`), then dropped, if needed.
    pub fn to_json(&self) -> String {
        let mut report = self.clone();
        report.bound(MAX_ERROR_CHARS, MAX_SAMPLE_CHARS, SAMPLE_LEN);
        let mut text = serde_json::to_string(&report).expect("a report serialises");
        for (error_chars, sample_len) in [(800, 1), (300, 0), (100, 0), (20, 0)] {
            if text.len() <= MAX_REPORT_BYTES {
                break;
            }
            report.bound(error_chars, MAX_SAMPLE_CHARS, sample_len);
            text = serde_json::to_string(&report).expect("a report serialises");
        }
        text
    }

    fn bound(&mut self, error_chars: usize, sample_chars: usize, sample_len: usize) {
        if let Some(error) = &mut self.error {
            shorten(error, error_chars);
        }
        shorten(&mut self.host, sample_chars);
        if let Some(reason) = self.drill.as_mut().and_then(|drill| drill.reason.as_mut()) {
            shorten(reason, error_chars);
        }
        for replica in &mut self.replicas {
            shorten(&mut replica.name, sample_chars.min(error_chars.max(40)));
            if let Some(error) = &mut replica.error {
                shorten(error, sample_chars.min(error_chars));
            }
        }
        for action in &mut self.actions {
            let sample = match action {
                ActionReport::Backup(backup) => &mut backup.unreadable_sample,
                ActionReport::Check(check) => &mut check.error_sample,
                _ => continue,
            };
            sample.truncate(sample_len);
            for entry in sample {
                shorten(entry, sample_chars);
            }
        }
    }
}

/// Cuts `text` to at most `chars` characters, marking the cut.
pub(crate) fn shorten(text: &mut String, chars: usize) {
    if let Some((cut, _)) = text.char_indices().nth(chars) {
        text.truncate(cut);
        text.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn report(error: String, host: String, sample: Vec<String>) -> MoverReport {
        let backup = BackupReport {
            unreadable_sample: sample.clone(),
            files_unreadable: sample.len() as u64,
            forget: Some(ForgetReport {
                kept: 3,
                removed: 1,
            }),
            ..BackupReport::default()
        };
        let check = CheckSummary {
            errors: sample.len() as u64,
            error_sample: sample,
            ..CheckSummary::default()
        };
        MoverReport {
            version: REPORT_VERSION,
            outcome: Outcome::Failed,
            exit_code: 13,
            started: jiff::Timestamp::UNIX_EPOCH,
            duration_seconds: 1.5,
            host,
            actions: vec![
                ActionReport::Unlock(UnlockReport::default()),
                ActionReport::Backup(backup),
                ActionReport::Check(check),
            ],
            failed_action: Some(Action::Check),
            error_class: Some(ErrorClass::Corrupt),
            error: Some(error.clone()),
            drill: Some(DrillSummary {
                passed: false,
                measured_seconds: 2.5,
                rto_seconds: Some(900.0),
                bytes_verified: 10,
                files_verified: 2,
                snapshot: None,
                reason: Some(error.clone()),
            }),
            replicas: (0..8)
                .map(|n| ReplicaStatus {
                    name: format!("replica-{n}"),
                    copied: 1,
                    lag_snapshots: Some(0),
                    lag_seconds: Some(0.0),
                    error: Some(error.clone()),
                })
                .collect(),
            // Every field set: the largest section a `report` action writes.
            report: Some(ComplianceSummary {
                window_days: 30,
                compliant: false,
                backups: u64::MAX,
                failures: u64::MAX,
                success_rate: Some(0.5),
                longest_gap_seconds: Some(86_400.25),
                rpo_met: Some(false),
                retention_conforms: Some(false),
                audit_intact: Some(false),
                holds: u64::MAX,
                key_age_days: Some(123.5),
                rotation_overdue: true,
                repository_bytes: u64::MAX,
            }),
        }
    }

    #[test]
    fn the_document_round_trips_and_names_its_parts() {
        let report = report(
            "damaged".into(),
            "volsync".into(),
            vec!["/data/a: denied".into()],
        );
        let json = report.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["outcome"], "failed");
        assert_eq!(value["error_class"], "corrupt");
        assert_eq!(value["failed_action"], "check");
        assert_eq!(value["actions"][0]["action"], "unlock");
        assert_eq!(value["actions"][1]["action"], "backup");
        assert_eq!(value["actions"][1]["forget"]["removed"], 1);
        assert_eq!(
            value["actions"][1]["unreadable_sample"][0],
            "/data/a: denied"
        );
        assert_eq!(value["drill"]["passed"], false);
        assert_eq!(value["drill"]["rto_seconds"], 900.0);
        assert_eq!(value["replicas"][7]["name"], "replica-7");
        assert_eq!(value["replicas"][0]["lag_snapshots"], 0);
        assert_eq!(value["report"]["audit_intact"], false);
        assert_eq!(value["report"]["success_rate"], 0.5);
        assert_eq!(serde_json::from_str::<MoverReport>(&json).unwrap(), report);
    }

    #[test]
    fn a_document_without_drill_or_replicas_still_parses() {
        let old = r#"{"version":1,"outcome":"success","exit_code":0,
            "started":"2026-01-01T00:00:00Z","duration_seconds":1.0,"host":"h",
            "actions":[{"action":"unlock","stale_locks_removed":0}]}"#;
        let report: MoverReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.drill, None);
        assert!(report.replicas.is_empty());
        let json = report.to_json();
        assert!(
            !json.contains("drill") && !json.contains("replicas"),
            "{json}"
        );
    }

    proptest! {
        #[test]
        fn the_document_always_fits_a_termination_message(
            error in ".{0,6000}",
            host in ".{0,300}",
            sample in proptest::collection::vec(".{0,3000}", 0..8),
        ) {
            let json = report(error, host, sample).to_json();
            prop_assert!(json.len() <= MAX_REPORT_BYTES, "{} bytes", json.len());
            prop_assert!(serde_json::from_str::<MoverReport>(&json).is_ok());
        }
    }
}
