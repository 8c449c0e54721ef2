//! `spec.arca.replication`: secondary repositories every successful backup is copied to.
//!
//! Each target's Secret reaches the backup Job as an `envFrom` entry with the prefix
//! `ARCA_REPLICA_<i>_`, plus `ARCA_REPLICA_<i>_NAME` set to the Secret's name. The kubelet
//! resolves `envFrom`, so the mover's Role needs no access to the replica Secrets, and the
//! controller never reads their values. The agent copies the new snapshots after the backup
//! (docs/AGENT.md, `replicate`); the result document's `replicas` become `status.arca.replicas`.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, SecretEnvSource};

use super::EventType;
use super::engine::{self, Out};
use super::observed::{JobObserved, JobPhase, SourceObserved};
use super::time;
use crate::Error;
use crate::api::{
    ArcaSourceStatus, ReplicaStatus, ReplicationSource, ReplicationSourceStatus, ReplicationTarget,
};

/// The variable (after the prefix) that names a replica in the agent's result document.
pub const REPLICA_NAME_SUFFIX: &str = "NAME";

/// The prefix of replica `index`'s variables: `ARCA_REPLICA_<index>_`.
pub fn replica_env_prefix(index: usize) -> String {
    format!("ARCA_REPLICA_{index}_")
}

/// `spec.arca.replication`, empty when absent.
pub(crate) fn targets(source: &ReplicationSource) -> &[ReplicationTarget] {
    source
        .spec
        .arca
        .as_ref()
        .and_then(|a| a.replication.as_deref())
        .unwrap_or_default()
}

/// Every target names a Secret that exists with the keys the agent needs, differs from the
/// primary's, and is named once.
pub(crate) fn check_targets(observed: &SourceObserved, primary: &str) -> Result<(), Error> {
    let targets = targets(&observed.source);
    for (index, target) in targets.iter().enumerate() {
        let name = target.repository.as_str();
        if name.is_empty() {
            return Err(Error::MissingField {
                field: "spec.arca.replication[].repository",
                reason: "",
            });
        }
        if name == primary || targets[..index].iter().any(|t| t.repository == name) {
            return Err(Error::Unsupported {
                field: "spec.arca.replication[].repository",
                value: name.to_owned(),
                reason: "a target must differ from spec.restic.repository and from the other targets",
            });
        }
        let secret = observed.replica_secrets.iter().find(|s| s.name == name);
        engine::check_secret(secret, name)?;
    }
    Ok(())
}

/// Adds every target to the backup Job's container: its Secret with the target's prefix, and
/// its name.
pub(crate) fn add_to_job(job: &mut Job, targets: &[ReplicationTarget]) {
    let Some(container) = job
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
    else {
        return;
    };
    for (index, target) in targets.iter().enumerate() {
        let prefix = replica_env_prefix(index);
        container
            .env_from
            .get_or_insert_with(Vec::new)
            .push(EnvFromSource {
                prefix: Some(prefix.clone()),
                secret_ref: Some(SecretEnvSource {
                    name: target.repository.clone(),
                    optional: Some(false),
                }),
                config_map_ref: None,
            });
        container.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: format!("{prefix}{REPLICA_NAME_SUFFIX}"),
            value: Some(target.repository.clone()),
            value_from: None,
        });
    }
}

/// Writes a successful backup's replication figures into `status.arca.replicas`: one entry per
/// target, in spec order (entries of removed targets go). A target the agent copied to gets
/// `done` (the sync's completion) as its last copy time and its lag; one that failed keeps its
/// last copy time and gets the error; one the agent did not report stays as it was.
pub(crate) fn record(
    status: &mut ReplicationSourceStatus,
    targets: &[ReplicationTarget],
    job: Option<&JobObserved>,
    done: Timestamp,
    out: &mut Out,
) {
    let Some(result) = job
        .filter(|j| j.phase != JobPhase::Active)
        .and_then(|j| j.result.as_ref())
        .filter(|r| r.success)
    else {
        return;
    };
    if targets.is_empty() && status.arca.as_ref().is_none_or(|a| a.replicas.is_none()) {
        return;
    }
    let arca = status.arca.get_or_insert_with(ArcaSourceStatus::default);
    let previous = arca.replicas.take().unwrap_or_default();
    let replicas: Vec<ReplicaStatus> = targets
        .iter()
        .map(|target| {
            let name = &target.repository;
            let old = previous
                .iter()
                .find(|r| &r.name == name)
                .cloned()
                .unwrap_or_else(|| ReplicaStatus {
                    name: name.clone(),
                    ..ReplicaStatus::default()
                });
            let Some(reported) = result.replicas.iter().find(|r| &r.name == name) else {
                return old;
            };
            let lag_seconds = reported
                .lag_seconds
                .filter(|s| s.is_finite())
                .map(|s| s.max(0.0).round() as u64);
            match &reported.error {
                None => ReplicaStatus {
                    name: name.clone(),
                    last_copy_time: Some(time(engine::not_before(
                        engine::ts(&old.last_copy_time),
                        done,
                    ))),
                    lag_snapshots: reported.lag_snapshots,
                    lag_seconds,
                    error: None,
                },
                Some(error) => {
                    out.event(
                        EventType::Warning,
                        "ReplicationFailed",
                        "DeleteMover",
                        format!("copying the snapshots to {name} failed: {error}"),
                    );
                    ReplicaStatus {
                        name: name.clone(),
                        last_copy_time: old.last_copy_time,
                        lag_snapshots: reported.lag_snapshots,
                        lag_seconds,
                        error: Some(error.clone()),
                    }
                }
            }
        })
        .collect();
    arca.replicas = (!replicas.is_empty()).then_some(replicas);
}
