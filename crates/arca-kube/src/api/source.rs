//! `ReplicationSource`: back a volume up on a trigger.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ArcaSourceSpec, ArcaSourceStatus, CopyMethod, CustomCaSpec, ExternalSpec, MoverConfig,
    MoverKind, MoverStatus, OpaqueSection, TriggerSpec,
};

/// VolSync's default `pruneIntervalDays`.
pub const DEFAULT_PRUNE_INTERVAL_DAYS: i32 = 7;

/// The desired state of a ReplicationSource.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "volsync.backube",
    version = "v1alpha1",
    kind = "ReplicationSource",
    namespaced,
    derive = "PartialEq",
    status = "ReplicationSourceStatus",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourcePVC"}"#,
    printcolumn = r#"{"name":"Last sync","type":"string","format":"date-time","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.lastSyncDuration"}"#,
    printcolumn = r#"{"name":"Next sync","type":"string","format":"date-time","jsonPath":".status.nextSyncTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceSpec {
    /// The PersistentVolumeClaim to back up.
    #[serde(rename = "sourcePVC", default, skip_serializing_if = "Option::is_none")]
    pub source_pvc: Option<String>,
    /// When to sync; omitted means continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// The restic-compatible mover: what Arca runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<ReplicationSourceResticSpec>,
    /// VolSync's rsync mover (accepted, not run by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<OpaqueSection>,
    /// VolSync's rsync-over-TLS mover (accepted, not run by Arca).
    #[serde(rename = "rsyncTLS", default, skip_serializing_if = "Option::is_none")]
    pub rsync_tls: Option<OpaqueSection>,
    /// VolSync's rclone mover (accepted, not run by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rclone: Option<OpaqueSection>,
    /// VolSync's syncthing mover (accepted, not run by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncthing: Option<OpaqueSection>,
    /// Replication by another controller; Arca leaves such objects alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
    /// Stop starting syncs, and hold a running one (its Job gets `parallelism: 0`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Arca's additions; never change what the fields above mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arca: Option<ArcaSourceSpec>,
}

impl ReplicationSourceSpec {
    /// `spec.arca.dataClass`, or the default class (`important`).
    pub fn data_class(&self) -> super::DataClass {
        self.arca
            .as_ref()
            .and_then(|a| a.data_class)
            .unwrap_or_default()
    }

    /// Which mover this object asks for (the first section present, in VolSync's catalog order).
    pub fn mover_kind(&self) -> MoverKind {
        if self.restic.is_some() {
            MoverKind::Restic
        } else if self.external.is_some() {
            MoverKind::External
        } else if self.rsync.is_some() {
            MoverKind::Unsupported("rsync")
        } else if self.rsync_tls.is_some() {
            MoverKind::Unsupported("rsyncTLS")
        } else if self.rclone.is_some() {
            MoverKind::Unsupported("rclone")
        } else if self.syncthing.is_some() {
            MoverKind::Unsupported("syncthing")
        } else {
            MoverKind::Missing
        }
    }
}

/// Restic retention (`restic.retain`): each field becomes one `--keep-*` option of `forget`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResticRetainPolicy {
    /// Keep the last snapshot of this many hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<i32>,
    /// Keep the last snapshot of this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<i32>,
    /// Keep the last snapshot of this many weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<i32>,
    /// Keep the last snapshot of this many months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<i32>,
    /// Keep the last snapshot of this many years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<i32>,
    /// Keep every snapshot within this period of the newest (`1y2m3d4h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    /// Keep this many most recent snapshots (a string, as VolSync has it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

impl ResticRetainPolicy {
    /// The `forget` options in restic's syntax (the agent's `FORGET_OPTIONS`); VolSync's
    /// `--keep-last 1` when nothing is set.
    pub fn forget_options(policy: Option<&Self>) -> String {
        let mut options = Vec::new();
        if let Some(p) = policy {
            let counts = [
                ("hourly", p.hourly),
                ("daily", p.daily),
                ("weekly", p.weekly),
                ("monthly", p.monthly),
                ("yearly", p.yearly),
            ];
            for (name, value) in counts {
                if let Some(n) = value {
                    options.push(format!("--keep-{name} {n}"));
                }
            }
            if let Some(within) = p.within.as_deref().filter(|s| !s.is_empty()) {
                options.push(format!("--keep-within {within}"));
            }
            if let Some(last) = p.last.as_deref().filter(|s| !s.is_empty()) {
                options.push(format!("--keep-last {last}"));
            }
        }
        if options.is_empty() {
            "--keep-last 1".to_owned()
        } else {
            options.join(" ")
        }
    }
}

/// `spec.restic` of a ReplicationSource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceResticSpec {
    /// Name of the Secret holding `RESTIC_REPOSITORY`, `RESTIC_PASSWORD` and the backend's
    /// credentials.
    pub repository: String,
    /// Days between prunes of the repository (default 7, counted from the object's creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_interval_days: Option<i32>,
    /// Retention applied after each backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain: Option<ResticRetainPolicy>,
    /// Custom CA for the repository's endpoint.
    #[serde(rename = "customCA", default, skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<CustomCaSpec>,
    /// How the point-in-time copy is made. VolSync has no default and rejects an empty value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_method: Option<CopyMethod>,
    /// Size of the point-in-time copy (default: the snapshot's restore size, else the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the point-in-time copy (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access modes of the point-in-time copy (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub access_modes: Option<Vec<String>>,
    /// VolumeSnapshotClass for `copyMethod: Snapshot` (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Size of the cache volume (default 1Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_capacity: Option<Quantity>,
    /// StorageClass of the cache volume (default: `storageClassName`, then the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_storage_class_name: Option<String>,
    /// Access modes of the cache volume (default: `accessModes`, then the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_access_modes: Option<Vec<String>>,
    /// When this differs from `status.restic.lastUnlocked`, the next sync unlocks the repository
    /// first. Does not trigger a sync by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock: Option<String>,
    /// The mover pod's settings.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

impl ReplicationSourceResticSpec {
    /// `pruneIntervalDays` with VolSync's default.
    pub fn prune_interval_days_or_default(&self) -> i32 {
        self.prune_interval_days
            .unwrap_or(DEFAULT_PRUNE_INTERVAL_DAYS)
    }
}

/// `status.restic` of a ReplicationSource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceResticStatus {
    /// When the repository was last pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pruned: Option<Time>,
    /// The `spec.restic.unlock` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unlocked: Option<String>,
}

/// The observed state of a ReplicationSource (VolSync's fields, plus `arca`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceStatus {
    /// End of the most recent successful sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Start of the sync in progress; absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// How long the most recent successful sync took (a Go duration string, `1m30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// When the next scheduled sync starts (schedule triggers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// The `spec.trigger.manual` value of the most recent completed manual sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    /// The most recent mover run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
    /// Conditions; Arca, like VolSync, sets one of type `Synchronizing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// Restic mover state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<ReplicationSourceResticStatus>,
    /// VolSync's rsync status (kept, not written by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<OpaqueSection>,
    /// VolSync's rsyncTLS status (kept, not written by Arca).
    #[serde(rename = "rsyncTLS", default, skip_serializing_if = "Option::is_none")]
    pub rsync_tls: Option<OpaqueSection>,
    /// VolSync's syncthing status (kept, not written by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syncthing: Option<OpaqueSection>,
    /// Status of an external provider (kept, not written by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<BTreeMap<String, String>>,
    /// Arca's own status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arca: Option<ArcaSourceStatus>,
}
