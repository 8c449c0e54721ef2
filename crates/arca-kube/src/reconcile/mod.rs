//! The reconcile decision: from what the controller observed and the time, what to do.
//!
//! [`reconcile_source`] and [`reconcile_destination`] are pure functions. The controller lists
//! the object's surroundings into a [`SourceObserved`] / [`DestinationObserved`], calls them,
//! and carries out the returned [`Decision`]: the [`Action`]s in order (stopping at the first
//! that fails, and at a [`Action::RunHook`] whose hook fails with policy `Fail`), then the status
//! (through the status subresource), the events, and the requeue.
//!
//! The state machine is VolSync's (`internal/controller/statemachine`): an object is idle or
//! synchronizing, and `status.lastSyncStartTime` says which. Idle objects start a sync when their
//! trigger says so (manual tag > schedule > continuously); a sync prepares the data volume (the
//! source itself, a clone, or a snapshot and a volume from it; or the destination volume), the
//! cache volume and the mover's RBAC objects, runs one Job, and completes by recording the
//! result and deleting what it made for that sync.

mod agent;
mod destination;
mod dr_job;
mod drill;
mod engine;
mod hooks;
mod names;
mod objects;
mod observe;
mod observed;
mod replication;
mod report;
mod source;

pub use destination::reconcile_destination;
pub use dr_job::{DR_ACTIONS, REPLICATE_ACTION, is_dr_job};
pub use drill::DRILL_ACTION;
pub use hooks::{
    DEFAULT_HOOK_TIMEOUT, HookPlan, HookVerdict, PodOutcome, PodRun, hook_failed, judge,
    target_pods,
};
pub use names::{
    CLEANUP_LABEL, CREATED_BY_LABEL, CREATED_BY_VALUE, DO_NOT_DELETE_LABEL, FINALIZER, OWNER_LABEL,
    cache_pvc_name, copy_name, destination_pvc_name, image_snapshot_name, job_name,
    mover_account_name, report_config_map_name,
};
pub use observed::{
    AgentResult, DestinationObserved, ErrorClass, JobObserved, JobPhase, OwnedObserved,
    PvcObserved, SecretObserved, SnapshotObserved, SourceObserved,
};
pub use observed::{DrillResult, ReplicaResult, ReportResult};
pub use replication::{REPLICA_NAME_SUFFIX, replica_env_prefix};
pub use report::{REPORT_ACTION, REPORT_JSON_KEY, REPORT_MARKDOWN_KEY};
pub use source::{hold_for_slot, reconcile_source, starts_sync};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use crate::api::{ReplicationDestinationStatus, ReplicationSourceStatus, VolumeSnapshot};

/// The controller's settings that decisions depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerConfig {
    /// The mover image (runs `arca-agent`).
    pub mover_image: String,
    /// The mover Job's `backoffLimit` (VolSync: 8).
    pub job_backoff_limit: i32,
    /// How often a running sync is looked at again (VolSync: one minute).
    pub poll_interval: SignedDuration,
    /// First retry delay after a failed mover run; doubles with each further failure.
    pub retry_base: SignedDuration,
    /// Longest retry delay, and the delay after a fatal failure (wrong password, corrupt
    /// repository) that needs a person.
    pub retry_max: SignedDuration,
    /// Environment copied into every mover (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, both cases),
    /// as VolSync copies its own.
    pub proxy_env: Vec<(String, String)>,
    /// Where movers push live progress (`ARCA_PROGRESS_URL` = this + `/<namespace>/<kind>/<name>`).
    pub progress_url: Option<String>,
    /// Every mover must use TLS 1.3 for storage (`ARCA_REQUIRE_TLS13=1` on every Job; a
    /// repository Secret can still allow plain http with `ARCA_ALLOW_HTTP`).
    pub require_tls13: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            mover_image: "arca-agent:latest".to_owned(),
            job_backoff_limit: 8,
            poll_interval: SignedDuration::from_mins(1),
            retry_base: SignedDuration::from_mins(1),
            retry_max: SignedDuration::from_hours(1),
            proxy_env: Vec::new(),
            progress_url: None,
            require_tls13: false,
        }
    }
}

/// The kinds of object an [`Action`] deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `batch/v1` Job (deleted with its pods, background propagation).
    Job,
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// `snapshot.storage.k8s.io/v1` VolumeSnapshot.
    VolumeSnapshot,
}

/// An object to server-side apply (field manager: the controller's).
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A mover Job.
    Job(Box<Job>),
    /// A PVC: point-in-time copy, provisioned destination or cache.
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
    /// A VolumeSnapshot.
    VolumeSnapshot(Box<VolumeSnapshot>),
    /// The mover's ServiceAccount.
    ServiceAccount(Box<ServiceAccount>),
    /// The mover's Role.
    Role(Box<Role>),
    /// The mover's RoleBinding.
    RoleBinding(Box<RoleBinding>),
    /// A source's compliance report.
    ConfigMap(Box<ConfigMap>),
}

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookPhase {
    /// Before the point-in-time copy.
    PreBackup,
    /// After the point-in-time copy (or the backup, for `Direct`).
    PostBackup,
}

/// One thing for the controller to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Add [`FINALIZER`] to the object.
    AddFinalizer,
    /// Remove [`FINALIZER`] from the object (its cleanup is done).
    RemoveFinalizer,
    /// Server-side apply this object.
    Apply(Object),
    /// Delete one object by name (absent is fine).
    Delete {
        /// Its kind.
        kind: ObjectKind,
        /// Its name, in the object's namespace.
        name: String,
    },
    /// Delete every object of a kind matching a label selector (absent is fine).
    DeleteAllOf {
        /// The kind.
        kind: ObjectKind,
        /// A label selector, in the API's syntax.
        label_selector: String,
    },
    /// Patch a running Job's `spec.parallelism` (0 holds it while paused).
    SetJobParallelism {
        /// The Job.
        name: String,
        /// The new parallelism.
        parallelism: i32,
    },
    /// Run `spec.arca.hooks.<phase>` in the selected pods; with `failurePolicy: Fail`, a failure
    /// stops the remaining actions of this decision.
    RunHook(HookPhase),
}

/// An Event's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Informational.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An Event to publish about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// Machine-readable reason (VolSync's where one exists).
    pub reason: &'static str,
    /// What the controller did (VolSync's action names where one exists).
    pub action: &'static str,
    /// For people.
    pub note: String,
}

/// When to look at the object again (besides watch events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After this long.
    After(SignedDuration),
    /// Only when something it watches changes.
    AwaitChange,
}

/// How a sync attempt ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The mover succeeded and the sync completed.
    Succeeded,
    /// The mover failed; the sync will be retried.
    Failed,
}

/// A sync attempt that ended in this reconcile (for the controller's metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncReport {
    /// Success or failure.
    pub outcome: SyncOutcome,
    /// From the sync's start to now.
    pub duration: SignedDuration,
    /// VolSync's missed-interval rule held at completion (`volsync_missed_intervals_total`).
    pub missed_interval: bool,
}

/// What to do about one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<S> {
    /// Things to do, in order.
    pub actions: Vec<Action>,
    /// The status to write (unchanged when nothing changed).
    pub status: S,
    /// Events to publish.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue: Requeue,
    /// A sync attempt that ended now.
    pub report: Option<SyncReport>,
    /// Whether the object is out of sync (`volsync_volume_out_of_sync`): never synced, or a
    /// scheduled deadline missed.
    pub out_of_sync: bool,
}

impl<S> Decision<S> {
    /// Whether carrying the decision out changes anything besides the object itself: an apply,
    /// a delete, a parallelism patch, a hook. Such a decision may only be carried out if it was
    /// taken on the object's current version: one taken on a stale copy (a watch cache that has
    /// not seen the last status write yet) would, for instance, start a sync that has just
    /// finished once more. Finalizer patches and the status write need no such check: they
    /// carry the object's resourceVersion, so the API server refuses a stale one.
    pub fn touches_other_objects(&self) -> bool {
        self.actions
            .iter()
            .any(|a| !matches!(a, Action::AddFinalizer | Action::RemoveFinalizer))
    }
}

/// The decision for a ReplicationSource.
pub type SourceDecision = Decision<ReplicationSourceStatus>;
/// The decision for a ReplicationDestination.
pub type DestinationDecision = Decision<ReplicationDestinationStatus>;

/// Formats a duration the way Go's `time.Duration.String` does (`metav1.Duration` in
/// `status.lastSyncDuration`): `1h2m3.5s`, `2m0s`, `45s`, `0s`; sub-second values as `ms`.
pub fn format_go_duration(duration: SignedDuration) -> String {
    let negative = duration.is_negative();
    let nanos = duration.as_nanos().unsigned_abs();
    let sign = if negative { "-" } else { "" };
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim_fraction(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let seconds = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::from(sign);
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// `value / scale` with the fraction's trailing zeros dropped (`1500, 1000` → `1.5`).
fn trim_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let text = format!("{fraction:0digits$}");
    format!("{whole}.{}", text.trim_end_matches('0'))
}

/// Parses a Go duration (`90s`, `1.5h`, `1h30m`, `250ms`) as Arca's fields accept it.
pub fn parse_go_duration(text: &str) -> Option<SignedDuration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    SignedDuration::try_from_secs_f64(total).ok()
}

/// `t` as the API's `Time`.
pub(crate) fn time(t: Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_format_like_go() {
        let cases = [
            (SignedDuration::ZERO, "0s"),
            (SignedDuration::from_secs(45), "45s"),
            (SignedDuration::from_secs(120), "2m0s"),
            (SignedDuration::from_secs(3600), "1h0m0s"),
            (SignedDuration::from_secs(3723), "1h2m3s"),
            (SignedDuration::from_millis(1500), "1.5s"),
            (SignedDuration::from_millis(250), "250ms"),
            (SignedDuration::from_micros(1500), "1.5ms"),
            (SignedDuration::from_secs(-90), "-1m30s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_go_duration(duration), text, "{duration:?}");
        }
    }

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("90s", Some(SignedDuration::from_secs(90))),
            ("15m", Some(SignedDuration::from_mins(15))),
            ("1h30m", Some(SignedDuration::from_mins(90))),
            ("1.5h", Some(SignedDuration::from_mins(90))),
            ("250ms", Some(SignedDuration::from_millis(250))),
            ("", None),
            ("10", None),
            ("5d", None),
            ("m", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), expected, "{text:?}");
        }
    }

    #[test]
    fn only_finalizer_patches_touch_nothing_but_the_object() {
        let job = || Object::Job(Box::default());
        let cases = [
            (vec![], false),
            (vec![Action::AddFinalizer], false),
            (vec![Action::RemoveFinalizer], false),
            (vec![Action::AddFinalizer, Action::Apply(job())], true),
            (vec![Action::Apply(job())], true),
            (
                vec![
                    Action::Delete {
                        kind: ObjectKind::Job,
                        name: "volsync-src-app".into(),
                    },
                    Action::RemoveFinalizer,
                ],
                true,
            ),
            (
                vec![Action::DeleteAllOf {
                    kind: ObjectKind::VolumeSnapshot,
                    label_selector: "a=b".into(),
                }],
                true,
            ),
            (
                vec![Action::SetJobParallelism {
                    name: "volsync-src-app".into(),
                    parallelism: 0,
                }],
                true,
            ),
            (vec![Action::RunHook(HookPhase::PreBackup)], true),
        ];
        for (actions, touches) in cases {
            let decision = Decision {
                actions: actions.clone(),
                status: (),
                events: Vec::new(),
                requeue: Requeue::AwaitChange,
                report: None,
                out_of_sync: false,
            };
            assert_eq!(decision.touches_other_objects(), touches, "{actions:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatted_whole_seconds_parse_back(secs in 0i64..10_000_000) {
            let d = SignedDuration::from_secs(secs);
            proptest::prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d));
        }
    }
}
