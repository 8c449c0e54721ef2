//! Fixtures for the decision tests: the seed's objects, with the surroundings a cluster would
//! have, as plain observed data.

use std::collections::BTreeSet;

use arca_kube::api::{ReplicationDestination, ReplicationSource};
use arca_kube::reconcile::{
    AgentResult, DestinationObserved, FINALIZER, JobObserved, JobPhase, OwnedObserved, PvcObserved,
    SecretObserved, SnapshotObserved, SourceObserved,
};
use arca_kube::{Action, ControllerConfig, reconcile::Object};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub(crate) fn config() -> ControllerConfig {
    ControllerConfig::default()
}

fn data(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The seed's ReplicationSource as the API server returns it: namespace, uid, creation time,
/// generation, and the operator's finalizer already on it.
pub(crate) fn seed_source() -> ReplicationSource {
    let mut source: ReplicationSource =
        serde_norway::from_str(&data("seed-replicationsource.yaml")).unwrap();
    source.metadata.namespace = Some("apps".to_owned());
    source.metadata.uid = Some("uid-src".to_owned());
    source.metadata.generation = Some(1);
    source.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
    source.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    source
}

pub(crate) fn seed_destination() -> ReplicationDestination {
    let mut destination: ReplicationDestination =
        serde_norway::from_str(&data("seed-replicationdestination.yaml")).unwrap();
    destination.metadata.uid = Some("uid-dst".to_owned());
    destination.metadata.generation = Some(1);
    destination.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
    destination.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    destination
}

pub(crate) fn secret(name: &str) -> SecretObserved {
    SecretObserved {
        name: name.to_owned(),
        keys: [
            "RESTIC_REPOSITORY",
            "RESTIC_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "RCLONE_X",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<BTreeSet<_>>(),
    }
}

pub(crate) fn pvc(name: &str) -> PvcObserved {
    PvcObserved {
        name: name.to_owned(),
        phase: Some("Bound".to_owned()),
        capacity: Some(Quantity("10Gi".to_owned())),
        requested: Some(Quantity("10Gi".to_owned())),
        storage_class_name: Some("ceph-block".to_owned()),
        access_modes: vec!["ReadWriteOnce".to_owned()],
    }
}

pub(crate) fn snapshot(name: &str, ready: bool) -> SnapshotObserved {
    SnapshotObserved {
        name: name.to_owned(),
        ready_to_use: ready,
        restore_size: Some(Quantity("10Gi".to_owned())),
        do_not_delete: false,
    }
}

/// The seed's source in a cluster where its PVC and Secret exist and nothing was made yet.
pub(crate) fn source_observed(source: ReplicationSource) -> SourceObserved {
    let pvc_name = source.spec.source_pvc.clone().unwrap();
    let secret_name = source
        .spec
        .restic
        .as_ref()
        .map(|r| r.repository.clone())
        .unwrap_or_default();
    SourceObserved {
        source,
        source_pvc: Some(pvc(&pvc_name)),
        repository_secret: Some(secret(&secret_name)),
        replica_secrets: Vec::new(),
        custom_ca_found: false,
        owned: OwnedObserved::default(),
    }
}

pub(crate) fn destination_observed(destination: ReplicationDestination) -> DestinationObserved {
    let restic = destination.spec.restic.clone().unwrap();
    DestinationObserved {
        destination_pvc: restic.destination_pvc.as_deref().map(pvc),
        repository_secret: Some(secret(&restic.repository)),
        custom_ca_found: false,
        destination,
        owned: OwnedObserved::default(),
    }
}

/// A mover Job in the given phase, with the actions it was created with.
pub(crate) fn job(
    name: &str,
    phase: JobPhase,
    actions: &[&str],
    result: Option<AgentResult>,
) -> JobObserved {
    JobObserved {
        name: name.to_owned(),
        phase,
        parallelism: 1,
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        finished_at: (phase != JobPhase::Active).then(|| ts("2026-01-02T02:10:00Z")),
        result,
        logs: None,
        progress: None,
    }
}

pub(crate) fn backup_success(snapshot: &str) -> AgentResult {
    AgentResult {
        success: true,
        snapshot_id: Some(snapshot.to_owned()),
        files_new: Some(10),
        files_changed: Some(2),
        files_unmodified: Some(100),
        bytes_processed: Some(1 << 20),
        bytes_added: Some(4096),
        repository_size: Some(1 << 30),
        ..AgentResult::default()
    }
}

/// The Jobs a decision applies.
pub(crate) fn applied_jobs(actions: &[Action]) -> Vec<&Job> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply(Object::Job(job)) => Some(&**job),
            _ => None,
        })
        .collect()
}

/// Names of the objects of a kind a decision applies, in order.
pub(crate) fn applied(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply(object) => Some(match object {
                Object::Job(o) => format!("Job/{}", o.metadata.name.as_deref().unwrap()),
                Object::PersistentVolumeClaim(o) => {
                    format!(
                        "PersistentVolumeClaim/{}",
                        o.metadata.name.as_deref().unwrap()
                    )
                }
                Object::VolumeSnapshot(o) => {
                    format!("VolumeSnapshot/{}", o.metadata.name.as_deref().unwrap())
                }
                Object::ServiceAccount(o) => {
                    format!("ServiceAccount/{}", o.metadata.name.as_deref().unwrap())
                }
                Object::Role(o) => format!("Role/{}", o.metadata.name.as_deref().unwrap()),
                Object::ConfigMap(o) => {
                    format!("ConfigMap/{}", o.metadata.name.as_deref().unwrap())
                }
                Object::RoleBinding(o) => {
                    format!("RoleBinding/{}", o.metadata.name.as_deref().unwrap())
                }
            }),
            _ => None,
        })
        .collect()
}

/// The mover container of a Job (its only one).
pub(crate) fn mover_container(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// The environment of a Job's container as (name, literal value or `secret:<key>`).
pub(crate) fn job_env(job: &Job) -> Vec<(String, String)> {
    let container = mover_container(job);
    container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => {
                    format!("secret:{}", from.secret_key_ref.as_ref().unwrap().key)
                }
                (None, None) => String::new(),
            };
            (e.name.clone(), value)
        })
        .collect()
}

pub(crate) fn env_value(job: &Job, name: &str) -> Option<String> {
    job_env(job)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

pub(crate) fn condition_reason<S: serde::Serialize>(status: &S) -> String {
    let value = serde_json::to_value(status).unwrap();
    value["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Synchronizing"))
        .map(|c| c["reason"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}
