//! The `volsync.backube/v1alpha1` API: VolSync's fields as VolSync defines them, plus Arca's optional
//! `arca:` sections.
//!
//! Field names, JSON shapes and validation follow VolSync's Go types (`api/v1alpha1`) so a manifest
//! written for VolSync's restic mover applies unchanged. VolSync applies its defaults in code, not in
//! the CRD, and so does Arca: the schema carries no `default:` values, and the `*_or_default`
//! accessors below are where each default lives.

mod arca;
mod destination;
mod snapshot;
mod source;

pub use arca::{
    ArcaDestinationSpec, ArcaDestinationStatus, ArcaSourceSpec, ArcaSourceStatus, BackupWindow,
    DataClass, Hook, HookFailurePolicy, Hooks, ReplicationTarget, RpoState, RpoStatus,
    SyncProgress, VerifySpec,
};
pub use arca::{
    DEFAULT_DRILL_SCHEDULE, DEFAULT_REPORT_SCHEDULE, DrillSpec, DrillStatus, ReplicaStatus,
    ReportSpec, ReportStatus,
};
pub use destination::{
    ReplicationDestination, ReplicationDestinationResticSpec, ReplicationDestinationSpec,
    ReplicationDestinationStatus,
};
pub use snapshot::{
    VolumeSnapshot, VolumeSnapshotSource, VolumeSnapshotSpec, VolumeSnapshotStatus,
};
pub use source::{
    DEFAULT_PRUNE_INTERVAL_DAYS, ReplicationSource, ReplicationSourceResticSpec,
    ReplicationSourceResticStatus, ReplicationSourceSpec, ReplicationSourceStatus,
    ResticRetainPolicy,
};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, NFSVolumeSource, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    ResourceRequirements, SecretVolumeSource,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group both kinds live in (VolSync's, so existing manifests apply as they are).
pub const GROUP: &str = "volsync.backube";
/// The API version both kinds live in.
pub const VERSION: &str = "v1alpha1";

/// VolSync's validation pattern for `trigger.schedule` (VolSync 0.17, kept with its quirks: the `^`
/// anchors only the descriptor branch, so a prefix such as `CRON_TZ=Europe/Berlin ` is accepted too).
pub const SCHEDULE_PATTERN: &str = r"^(@(annually|yearly|monthly|weekly|daily|hourly))|((((\d+,)*\d+|(\d+(\/|-)\d+)|\*(\/\d+)?)\s?){5})$";

/// Pattern for Go-style durations (`90s`, `10m`, `1h30m`) used by Arca's fields.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// When a volume is synchronized (`spec.trigger`). Omitted or empty: continuously.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSpec {
    /// A cron specification (5 fields or an `@daily`-style descriptor) for time-based syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// Sync once whenever this value differs from `status.lastManualSync`, which is set to it when
    /// the sync completes. Takes precedence over `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

/// How the point-in-time copy of a volume is made (`copyMethod`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CopyMethod {
    /// Use the volume itself, no copy.
    Direct,
    /// Deprecated alias of `Direct`.
    None,
    /// A CSI clone of the source volume.
    Clone,
    /// A VolumeSnapshot, then a volume provisioned from it.
    Snapshot,
}

impl CopyMethod {
    /// `None` is VolSync's deprecated spelling of `Direct`.
    pub fn normalized(self) -> Self {
        match self {
            Self::None => Self::Direct,
            other => other,
        }
    }
}

/// Where a custom CA certificate for the repository's endpoint comes from (`customCA`): one of a
/// Secret or a ConfigMap, and the key holding the PEM data.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomCaSpec {
    /// Secret holding the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// ConfigMap holding the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_name: Option<String>,
    /// Key in the Secret or ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl CustomCaSpec {
    /// Whether a CA is configured at all (VolSync accepts an empty `customCA: {}`).
    pub fn is_configured(&self) -> bool {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        (set(&self.secret_name) || set(&self.config_map_name)) && set(&self.key)
    }
}

/// An extra volume mounted into the mover at `/mnt/<mountPath>` (`moverVolumes`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverVolume {
    /// Directory under `/mnt` to mount at.
    pub mount_path: String,
    /// What to mount.
    pub volume_source: MoverVolumeSource,
}

/// The kinds of volume a mover volume may be (VolSync allows exactly these).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverVolumeSource {
    /// A Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// An NFS export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NFSVolumeSource>,
}

/// How the mover's pod runs (VolSync's `MoverConfig`, inlined into the mover sections).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverConfig {
    /// Pod security context, copied verbatim to the mover pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_security_context: Option<PodSecurityContext>,
    /// An existing ServiceAccount to run as, instead of the one the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_service_account: Option<String>,
    /// Extra labels on the mover pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_pod_labels: Option<BTreeMap<String, String>>,
    /// Resources of the mover container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_resources: Option<ResourceRequirements>,
    /// Affinity of the mover pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_affinity: Option<Affinity>,
    /// Extra volumes mounted under `/mnt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_volumes: Option<Vec<MoverVolume>>,
}

/// The mover's outcome (`status.latestMoverStatus.result`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MoverResult {
    /// The last mover run succeeded.
    Successful,
    /// The last mover run failed.
    Failed,
}

/// Summary of the most recent mover run (`status.latestMoverStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoverStatus {
    /// Whether it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<MoverResult>,
    /// The tail of its log (filtered to the informative lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<String>,
}

/// `spec.external` of either kind: another controller acts on the object; Arca leaves it alone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSpec {
    /// The provider, `domain.com/provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Provider-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<BTreeMap<String, String>>,
}

/// A section Arca accepts and stores but does not act on (VolSync's rsync, rsyncTLS, rclone and
/// syncthing movers): kept verbatim so such manifests still apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct OpaqueSection(pub serde_json::Map<String, serde_json::Value>);

impl JsonSchema for OpaqueSection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OpaqueSection".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// The mover sections of a spec, by name; Arca runs `restic` only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoverKind {
    /// Restic-compatible backup and restore: what Arca implements.
    Restic,
    /// Left to another controller.
    External,
    /// A VolSync mover Arca accepts but does not run (`rsync`, `rsyncTLS`, `rclone`, `syncthing`).
    Unsupported(&'static str),
    /// No mover section at all.
    Missing,
}

impl MoverKind {
    /// The name used in metrics' `method` label and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Restic => "restic",
            Self::External => "external",
            Self::Unsupported(name) => name,
            Self::Missing => "none",
        }
    }
}
