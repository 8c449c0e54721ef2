//! What the controller saw: plain data it fills from the API server and the agent's result
//! document, so every decision is a function of values a test can write down.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::{ReplicationDestination, ReplicationSource, SyncProgress};

/// A PersistentVolumeClaim, as far as decisions need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PvcObserved {
    /// Its name.
    pub name: String,
    /// `status.phase` (`Pending`, `Bound`, `Lost`).
    pub phase: Option<String>,
    /// `status.capacity.storage`, once bound.
    pub capacity: Option<Quantity>,
    /// `spec.resources.requests.storage`.
    pub requested: Option<Quantity>,
    /// `spec.storageClassName`.
    pub storage_class_name: Option<String>,
    /// `spec.accessModes`.
    pub access_modes: Vec<String>,
}

/// A VolumeSnapshot, as far as decisions need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SnapshotObserved {
    /// Its name.
    pub name: String,
    /// `status.readyToUse`.
    pub ready_to_use: bool,
    /// `status.restoreSize`.
    pub restore_size: Option<Quantity>,
    /// Labelled `volsync.backube/do-not-delete`: the user keeps it.
    pub do_not_delete: bool,
}

/// Where a mover Job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobPhase {
    /// Not finished (pods pending, running, or failed but within `backoffLimit`).
    Active,
    /// Condition `Complete`.
    Succeeded,
    /// Condition `Failed` (its `backoffLimit` is spent).
    Failed,
}

/// How a failure should be retried, from the agent's exit code and result document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (storage unreachable, lock contention): retry with backoff.
    Retryable,
    /// Needs a person (wrong password, corrupt repository): retry rarely.
    Fatal,
}

/// What the agent reported about its run (the controller fills this from the result document
/// in the pod's termination message).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentResult {
    /// Whether every action succeeded.
    pub success: bool,
    /// For a failure: how to retry it.
    pub error_class: Option<ErrorClass>,
    /// For a failure: what went wrong (no secrets; the agent never prints them).
    pub message: Option<String>,
    /// The snapshot written (backup) or restored (restore). `None` for a restore that found no
    /// eligible snapshot, and for a backup of an empty volume.
    pub snapshot_id: Option<String>,
    /// Backup: some files could not be read; the snapshot was still written.
    pub partial: bool,
    /// Backup: the volume was empty and no snapshot was written.
    pub source_empty: bool,
    /// Files new in the backup.
    pub files_new: Option<u64>,
    /// Files changed since the parent snapshot.
    pub files_changed: Option<u64>,
    /// Files unchanged since the parent snapshot.
    pub files_unmodified: Option<u64>,
    /// Bytes read (backup) or written (restore).
    pub bytes_processed: Option<u64>,
    /// Bytes added to the repository (backup).
    pub bytes_added: Option<u64>,
    /// Files written (restore).
    pub files_restored: Option<u64>,
    /// Size of the repository afterwards.
    pub repository_size: Option<u64>,
    /// How long the agent ran.
    pub duration: Option<SignedDuration>,
    /// The `drill` action's figures, when it ran (also when the drill failed).
    pub drill: Option<DrillResult>,
    /// Per secondary repository, what replication after the backup did.
    pub replicas: Vec<ReplicaResult>,
    /// The `report` action's summary figures, when it ran.
    pub report: Option<ReportResult>,
}

/// The result document's `report` section (docs/AGENT.md): the compliance report's summary
/// figures for the Job's host.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct ReportResult {
    /// The window's length in days.
    pub window_days: u64,
    /// Every judged figure is compliant.
    pub compliant: bool,
    /// Snapshots taken in the window.
    pub backups: u64,
    /// Backups recorded as failed in the window.
    pub failures: u64,
    /// The lowest success rate (0–1).
    pub success_rate: Option<f64>,
    /// The longest gap between successive snapshots, seconds.
    pub longest_gap_seconds: Option<f64>,
    /// Every gap within the RPO.
    pub rpo_met: Option<bool>,
    /// Conformance to the retention policy.
    pub retention_conforms: Option<bool>,
    /// The audit chain verified intact.
    pub audit_intact: Option<bool>,
    /// Holds in force.
    pub holds: u64,
    /// Age of the data key in days.
    pub key_age_days: Option<f64>,
    /// The data key's rotation is overdue.
    pub rotation_overdue: bool,
    /// Bytes of packs, index and snapshot files.
    pub repository_bytes: u64,
}

/// The result document's `drill` section (docs/AGENT.md).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct DrillResult {
    /// Verified, the command (if any) succeeded, and the RTO (if any) was met.
    pub passed: bool,
    /// Seconds from the drill's start until the restored copy was verified.
    #[serde(default)]
    pub measured_seconds: f64,
    /// The RTO it was compared with.
    #[serde(default)]
    pub rto_seconds: Option<f64>,
    /// Bytes of file content restored and verified.
    #[serde(default)]
    pub bytes_verified: u64,
    /// Files restored and verified.
    #[serde(default)]
    pub files_verified: u64,
    /// The snapshot drilled (none: there was none to drill).
    #[serde(default, rename = "snapshot")]
    pub snapshot_id: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One entry of the result document's `replicas` list (docs/AGENT.md).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct ReplicaResult {
    /// `ARCA_REPLICA_<N>_NAME`: the operator sets the target's Secret name.
    pub name: String,
    /// Snapshots copied by this run.
    #[serde(default)]
    pub copied: u64,
    /// Primary snapshots the secondary still lacks (absent when it could not be read).
    #[serde(default)]
    pub lag_snapshots: Option<u64>,
    /// The primary's newest snapshot time minus the secondary's newest.
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// Why the copy failed, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// A mover Job owned by the object.
#[derive(Clone, Debug, PartialEq)]
pub struct JobObserved {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub phase: JobPhase,
    /// `spec.parallelism`.
    pub parallelism: i32,
    /// The agent's actions (the container's arguments): tells which of unlock, prune and
    /// verification this run included.
    pub actions: Vec<String>,
    /// `status.completionTime` (or the failure's time): names the destination's image snapshot.
    pub finished_at: Option<Timestamp>,
    /// The agent's result, once a pod terminated with one.
    pub result: Option<AgentResult>,
    /// The tail of the last pod's log, filtered (for `latestMoverStatus.logs`).
    pub logs: Option<String>,
    /// The latest progress the agent pushed, while it runs.
    pub progress: Option<SyncProgress>,
}

/// A Secret: its key names only; values are never read into decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretObserved {
    /// Its name.
    pub name: String,
    /// The keys of its `data`.
    pub keys: BTreeSet<String>,
}

/// Objects the operator created for one ReplicationSource or ReplicationDestination (found by
/// owner reference), plus RBAC objects by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedObserved {
    /// Mover Jobs (normally none or one).
    pub jobs: Vec<JobObserved>,
    /// PVCs (point-in-time copies, provisioned destinations, caches).
    pub pvcs: Vec<PvcObserved>,
    /// VolumeSnapshots.
    pub snapshots: Vec<SnapshotObserved>,
    /// Names of ServiceAccounts present.
    pub service_accounts: BTreeSet<String>,
    /// Names of Roles present.
    pub roles: BTreeSet<String>,
    /// Names of RoleBindings present.
    pub role_bindings: BTreeSet<String>,
}

impl OwnedObserved {
    pub(crate) fn pvc(&self, name: &str) -> Option<&PvcObserved> {
        self.pvcs.iter().find(|p| p.name == name)
    }

    pub(crate) fn snapshot(&self, name: &str) -> Option<&SnapshotObserved> {
        self.snapshots.iter().find(|s| s.name == name)
    }
}

/// Everything [`reconcile_source`](crate::reconcile_source) looks at.
#[derive(Clone, Debug)]
pub struct SourceObserved {
    /// The object, with its metadata (uid, creation time, finalizers, deletion time) and status.
    pub source: ReplicationSource,
    /// `spec.sourcePVC`, if it exists.
    pub source_pvc: Option<PvcObserved>,
    /// The repository Secret (`spec.restic.repository`), if it exists.
    pub repository_secret: Option<SecretObserved>,
    /// The Secrets of `spec.arca.replication[].repository` that exist.
    pub replica_secrets: Vec<SecretObserved>,
    /// Whether the custom CA's Secret or ConfigMap (when one is configured) exists with its key.
    pub custom_ca_found: bool,
    /// What the operator created for it.
    pub owned: OwnedObserved,
}

/// Everything [`reconcile_destination`](crate::reconcile_destination) looks at.
#[derive(Clone, Debug)]
pub struct DestinationObserved {
    /// The object, with its metadata and status.
    pub destination: ReplicationDestination,
    /// `spec.restic.destinationPVC`, if given and it exists.
    pub destination_pvc: Option<PvcObserved>,
    /// The repository Secret (`spec.restic.repository`), if it exists.
    pub repository_secret: Option<SecretObserved>,
    /// Whether the custom CA's Secret or ConfigMap (when one is configured) exists with its key.
    pub custom_ca_found: bool,
    /// What the operator created for it.
    pub owned: OwnedObserved,
}
