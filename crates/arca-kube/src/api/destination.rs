//! `ReplicationDestination`: restore a volume from a repository on a trigger.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ArcaDestinationSpec, ArcaDestinationStatus, CopyMethod, CustomCaSpec, ExternalSpec,
    MoverConfig, MoverKind, MoverStatus, OpaqueSection, TriggerSpec,
};

/// The desired state of a ReplicationDestination.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "volsync.backube",
    version = "v1alpha1",
    kind = "ReplicationDestination",
    namespaced,
    derive = "PartialEq",
    status = "ReplicationDestinationStatus",
    printcolumn = r#"{"name":"Last sync","type":"string","format":"date-time","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.lastSyncDuration"}"#,
    printcolumn = r#"{"name":"Next sync","type":"string","format":"date-time","jsonPath":".status.nextSyncTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationSpec {
    /// When to restore; omitted means continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerSpec>,
    /// The restic-compatible mover: what Arca runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic: Option<ReplicationDestinationResticSpec>,
    /// VolSync's rsync mover (accepted, not run by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<OpaqueSection>,
    /// VolSync's rsync-over-TLS mover (accepted, not run by Arca).
    #[serde(rename = "rsyncTLS", default, skip_serializing_if = "Option::is_none")]
    pub rsync_tls: Option<OpaqueSection>,
    /// VolSync's rclone mover (accepted, not run by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rclone: Option<OpaqueSection>,
    /// Replication by another controller; Arca leaves such objects alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
    /// Stop starting restores, and hold a running one (its Job gets `parallelism: 0`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Arca's additions; never change what the fields above mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arca: Option<ArcaDestinationSpec>,
}

impl ReplicationDestinationSpec {
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
        } else {
            MoverKind::Missing
        }
    }
}

/// `spec.restic` of a ReplicationDestination.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationResticSpec {
    /// Name of the Secret holding `RESTIC_REPOSITORY`, `RESTIC_PASSWORD` and the backend's
    /// credentials.
    pub repository: String,
    /// Custom CA for the repository's endpoint.
    #[serde(rename = "customCA", default, skip_serializing_if = "Option::is_none")]
    pub custom_ca: Option<CustomCaSpec>,
    /// `Direct` (the volume is the image) or `Snapshot` (a VolumeSnapshot of it after each restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_method: Option<CopyMethod>,
    /// Size of the provisioned volume; required without `destinationPVC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Quantity>,
    /// StorageClass of the provisioned volume (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Access modes of the provisioned volume; required without `destinationPVC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub access_modes: Option<Vec<String>>,
    /// VolumeSnapshotClass for `copyMethod: Snapshot` (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot_class_name: Option<String>,
    /// Restore into this existing PVC instead of provisioning one.
    #[serde(
        rename = "destinationPVC",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub destination_pvc: Option<String>,
    /// Delete the provisioned volume after each successful restore.
    #[serde(
        rename = "cleanupTempPVC",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cleanup_temp_pvc: bool,
    /// Size of the cache volume (default 1Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_capacity: Option<Quantity>,
    /// StorageClass of the cache volume (default: `storageClassName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_storage_class_name: Option<String>,
    /// Access modes of the cache volume (default: `accessModes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_access_modes: Option<Vec<String>>,
    /// Delete the cache volume after each successful restore.
    #[serde(
        rename = "cleanupCachePVC",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cleanup_cache_pvc: bool,
    /// Skip this many snapshots (after the `restoreAsOf` cut-off); default 0, the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub previous: Option<i32>,
    /// Ignore snapshots newer than this RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub restore_as_of: Option<String>,
    /// Delete files on the volume that are not in the snapshot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_file_deletion: bool,
    /// The mover pod's settings.
    #[serde(flatten)]
    pub mover: MoverConfig,
}

/// The observed state of a ReplicationDestination (VolSync's fields, plus `arca`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationStatus {
    /// End of the most recent successful restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Start of the restore in progress; absent when none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,
    /// How long the most recent successful restore took (a Go duration string, `1m30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,
    /// When the next scheduled restore starts (schedule triggers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// The `spec.trigger.manual` value of the most recent completed manual restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_sync: Option<String>,
    /// The most recent mover run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_mover_status: Option<MoverStatus>,
    /// Conditions; Arca, like VolSync, sets one of type `Synchronizing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Condition>>,
    /// The newest restored image: the VolumeSnapshot (`copyMethod: Snapshot`) or the PVC
    /// (`Direct`). Set only by a successful restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<TypedLocalObjectReference>,
    /// VolSync's rsync status (kept, not written by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync: Option<OpaqueSection>,
    /// VolSync's rsyncTLS status (kept, not written by Arca).
    #[serde(rename = "rsyncTLS", default, skip_serializing_if = "Option::is_none")]
    pub rsync_tls: Option<OpaqueSection>,
    /// Status of an external provider (kept, not written by Arca).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<BTreeMap<String, String>>,
    /// Arca's own status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arca: Option<ArcaDestinationStatus>,
}
