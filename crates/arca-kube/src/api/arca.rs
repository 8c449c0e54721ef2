//! Arca's additions: the optional `spec.arca` and `status.arca` sections. Nothing here changes what
//! a VolSync field means; an object without `arca:` behaves as VolSync documents.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DURATION_PATTERN, SCHEDULE_PATTERN};

/// A volume's data class (the seed's recovery tiers): it orders the work queue and sets the RPO.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum DataClass {
    /// RPO 1 hour, RTO 15 minutes; scheduled before everything else.
    Critical,
    /// RPO 4 hours, RTO 1 hour (the default).
    #[default]
    Important,
    /// RPO 24 hours, RTO 4 hours.
    Archival,
}

impl DataClass {
    /// The class's name as manifests and metric labels write it.
    pub fn as_str(self) -> &'static str {
        arca_sched::DataClass::from(self).as_str()
    }
}

/// The scheduler's class of the same name, which holds each class's RPO, RTO and queue order.
impl From<DataClass> for arca_sched::DataClass {
    fn from(class: DataClass) -> Self {
        match class {
            DataClass::Critical => arca_sched::DataClass::Critical,
            DataClass::Important => arca_sched::DataClass::Important,
            DataClass::Archival => arca_sched::DataClass::Archival,
        }
    }
}

/// Start scheduled syncs only inside a daily window (`02:00`–`06:00`, say); a run that falls due
/// outside it waits for the window's next opening.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupWindow {
    /// Opening time, `HH:MM`, in the schedule's time zone.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// Closing time, `HH:MM`; earlier than `start` means the window spans midnight.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// Scheduled verification of the repository (the agent's `verify`/`check` actions), run with the
/// first sync after it falls due.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// When verification falls due (same syntax as `trigger.schedule`).
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: String,
    /// Also read back this share of the pack data (`5%`, `1/10`); without it only the latest
    /// snapshot is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?%|[0-9]+/[0-9]+)$"))]
    pub read_data_subset: Option<String>,
}

/// What happens to the sync when a hook fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HookFailurePolicy {
    /// Abort this sync (the default for `preBackup`: never back up an unquiesced application).
    #[default]
    Fail,
    /// Record a Warning event and go on.
    Continue,
}

/// A command run in the application's pods (selected by label) around the snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// The pods to run in, in the object's namespace.
    pub selector: LabelSelector,
    /// The container (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments (not run through a shell).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// How long the command may run (Go duration, default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub timeout: Option<String>,
    /// What a failure or timeout does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<HookFailurePolicy>,
}

/// Pre- and post-backup hooks (the seed's "application quiesce and consistency check").
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// Run before the point-in-time copy is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_backup: Option<Hook>,
    /// Run once the point-in-time copy exists (or after the backup, for `copyMethod: Direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_backup: Option<Hook>,
}

/// A further repository the source's snapshots are copied to (the seed's cross-cloud copies).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationTarget {
    /// Secret of the target repository (same keys as `restic.repository`).
    pub repository: String,
    /// Copy on this schedule instead (same syntax as `trigger.schedule`, in `timeZone`), in
    /// the source's DR Job, never beside a backup; absent: after every successful backup, in
    /// the backup Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
}

/// Reports every day at 06:00 (in `timeZone`), after the night's backups.
pub const DEFAULT_REPORT_SCHEDULE: &str = "0 6 * * *";

/// Scheduled compliance reports (the agent's `report` action), besides the one every drill
/// makes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportSpec {
    /// When a report falls due (same syntax as `trigger.schedule`, in `timeZone`; default
    /// `0 6 * * *`, daily). A drill's report counts: the next falls due on the schedule after
    /// the last report, whichever made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
}

/// The seed's monthly DR test: first day of the month, 03:00.
pub const DEFAULT_DRILL_SCHEDULE: &str = "0 3 1 * *";

/// Scheduled recovery drills (the agent's `drill` action): the newest snapshot is restored into
/// scratch space, verified against the snapshot, optionally checked by the application's command,
/// timed against the RTO, and removed. The source volume is never touched.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// When a drill falls due (same syntax as `trigger.schedule`, in `timeZone`; default
    /// `0 3 1 * *`, the seed's monthly DR test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// Run a drill once whenever this differs from `status.arca.drill.lastManualDrill`, besides
    /// the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// The application's consistency check, run with `sh -c` in the restored copy (the agent's
    /// `ARCA_DRILL_COMMAND`; the image must have a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The recovery time objective the drill is held to (Go duration, default: the data
    /// class's RTO: critical 15m, important 1h, archival 4h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub rto: Option<String>,
}

/// `spec.arca` of a ReplicationSource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArcaSourceSpec {
    /// The volume's data class (default `important`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_class: Option<DataClass>,
    /// IANA time zone of `trigger.schedule`, `backupWindow` and `verify.schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Spread scheduled starts over this window after the scheduled time, by a stable hash of the
    /// object's namespace and name (Go duration, e.g. `15m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub jitter: Option<String>,
    /// Start scheduled syncs only inside this daily window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_window: Option<BackupWindow>,
    /// Scheduled verification of the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// Hooks around the point-in-time copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Repositories the snapshots are also copied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Vec<ReplicationTarget>>,
    /// Scheduled recovery drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
    /// Scheduled compliance reports (without it, reports are made with drills only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSpec>,
}

/// `spec.arca` of a ReplicationDestination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArcaDestinationSpec {
    /// The volume's data class (default `important`): orders the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_class: Option<DataClass>,
    /// IANA time zone of `trigger.schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Spread scheduled starts over this window (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub jitter: Option<String>,
    /// The ReplicationSource (`<namespace>/<name>`) whose snapshots to restore, for a
    /// repository several sources share; omitted: the snapshots of host `volsync` whatever
    /// their source (VolSync's behaviour, right for a repository of one source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SOURCE_REF_PATTERN))]
    pub source: Option<String>,
}

/// `<namespace>/<name>` of a Kubernetes object.
const SOURCE_REF_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$";

/// Live progress of the running mover, as far as it reported it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// Files processed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_done: Option<u64>,
    /// Bytes processed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    /// Total bytes, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// When the mover last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Time>,
}

/// Whether the newest successful backup is within the data class's RPO.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RpoState {
    /// Within the RPO.
    Met,
    /// Past the RPO (or never backed up).
    Breached,
}

/// RPO state of a source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RpoStatus {
    /// The class whose RPO applies.
    pub data_class: DataClass,
    /// Met or breached, as of the last reconcile.
    pub state: RpoState,
    /// When the RPO is (or was) breached without a further successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach_time: Option<Time>,
}

/// Where one replication target (`spec.arca.replication[]`) stands, from the result of the
/// last Job that copied to it (the backup Job, or for a scheduled target the DR Job).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// The target's repository Secret (also its name in metrics).
    pub name: String,
    /// When a copy to it last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_copy_time: Option<Time>,
    /// Snapshots the primary has that it lacks, after the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_snapshots: Option<u64>,
    /// The primary's newest snapshot time minus its newest, in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<u64>,
    /// Why the last copy to it failed (absent when it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A scheduled target: when its last copy started (the next falls due on the schedule
    /// after it, whether it succeeded or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// A scheduled target: when its next copy falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_copy_time: Option<Time>,
}

/// The last recovery drill of a source and the next one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// When the last drill ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_time: Option<Time>,
    /// Whether it passed: verified, the command (if any) succeeded, and the RTO was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Seconds from its start until the restored copy was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_seconds: Option<f64>,
    /// The RTO it was held to, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    /// Bytes of file content restored and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_verified: Option<u64>,
    /// Files restored and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_verified: Option<u64>,
    /// The snapshot drilled.
    #[serde(
        rename = "snapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Why it failed (absent when it passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The `spec.arca.drill.manual` value of the last completed manual drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_drill: Option<String>,
    /// When the next scheduled drill falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill_time: Option<Time>,
}

/// `status.arca` of a ReplicationSource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArcaSourceStatus {
    /// ID of the snapshot the last successful backup wrote.
    #[serde(
        rename = "lastSnapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_snapshot_id: Option<String>,
    /// Files new in the last backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_new: Option<u64>,
    /// Files changed since the parent snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_changed: Option<u64>,
    /// Files unchanged since the parent snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_unmodified: Option<u64>,
    /// Bytes the last backup read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_processed: Option<u64>,
    /// Bytes the last backup added to the repository (after deduplication and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_added: Option<u64>,
    /// Size of the repository after the last backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_size_bytes: Option<u64>,
    /// Some files could not be read in the last backup (its snapshot was still written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The last backup found the volume empty and wrote no snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_empty: bool,
    /// Live progress of the sync in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<SyncProgress>,
    /// RPO state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<RpoStatus>,
    /// When the repository was last verified successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Time>,
    /// Failed mover runs since the last success (drives the retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// The next mover run is not started before this time (backoff after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,
    /// Per replication target, in `spec.arca.replication` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaStatus>>,
    /// Recovery drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillStatus>,
    /// The last compliance report (made with every drill, and on `spec.arca.report.schedule`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportStatus>,
}

/// The summary figures of the last compliance report of a source's repository (the agent's
/// `report` action, run after every drill and on `spec.arca.report.schedule`), over `windowDays`, for the source's host. The
/// whole report is in the ConfigMap `configMap`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportStatus {
    /// When the report was made (its Job ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report_time: Option<Time>,
    /// The ConfigMap holding the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// The window's length in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u64>,
    /// Every judged figure (RPO, retention, drills, key rotation, audit chain) is compliant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliant: Option<bool>,
    /// Snapshots taken in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<u64>,
    /// Backups the audit trail records as failed in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
    /// Successful backups over backups attempted in the window (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// The longest gap between successive snapshots in the window, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_gap_seconds: Option<f64>,
    /// The gaps were all within the data class's RPO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo_met: Option<bool>,
    /// The snapshots conform to the retention policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_conforms: Option<bool>,
    /// The repository's audit chain verified intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_intact: Option<bool>,
    /// Holds in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds: Option<u64>,
    /// Age of the data key in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<f64>,
    /// The data key's rotation is overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_overdue: Option<bool>,
    /// Bytes of packs, index and snapshot files in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_bytes: Option<u64>,
    /// With `spec.arca.report`: when the next scheduled report falls due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_report_time: Option<Time>,
}

/// `status.arca` of a ReplicationDestination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArcaDestinationStatus {
    /// ID of the snapshot the last successful restore wrote to the volume.
    #[serde(
        rename = "lastSnapshotID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub last_snapshot_id: Option<String>,
    /// Files the last restore wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_restored: Option<u64>,
    /// Bytes the last restore wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_restored: Option<u64>,
    /// The last restore found no eligible snapshot and left the volume as it was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_eligible_snapshot: bool,
    /// Live progress of the restore in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<SyncProgress>,
    /// Failed mover runs since the last success (drives the retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// The next mover run is not started before this time (backoff after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,
}
