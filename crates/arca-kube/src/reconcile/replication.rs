//! `spec.arca.replication`: secondary repositories the source's snapshots are copied to.
//!
//! A target without a schedule is copied after every successful backup, by the backup Job; a
//! target with one is copied when it falls due, by the source's DR Job (`dr_job.rs`: the
//! agent's `replicate` action, never beside a backup), and not after backups. Either way the
//! Job gets each of its targets' Secret as an `envFrom` entry with the prefix
//! `ARCA_REPLICA_<i>_` (numbered from 0 within the Job, as the agent wants them), plus
//! `ARCA_REPLICA_<i>_NAME` set to the Secret's name. The kubelet resolves `envFrom`, so the
//! mover's Role needs no access to the replica Secrets, and the controller never reads their
//! values. The result document's `replicas` become `status.arca.replicas`, matched by name.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, SecretEnvSource};

use super::EventType;
use super::dr_job::next_on_schedule;
use super::engine::{self, Out, opt_time, ts};
use super::observed::{JobObserved, JobPhase, ReplicaResult, SourceObserved};
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

/// A target's own schedule, if it has one.
fn schedule(target: &ReplicationTarget) -> Option<&str> {
    target.schedule.as_deref().filter(|s| !s.is_empty())
}

/// The targets the backup Job copies to: those without a schedule.
pub(crate) fn per_backup(targets: &[ReplicationTarget]) -> Vec<ReplicationTarget> {
    targets
        .iter()
        .filter(|t| schedule(t).is_none())
        .cloned()
        .collect()
}

/// The scheduled targets of an idle source: the due ones (to copy now), and when the next
/// falls due; keeps each one's `nextCopyTime` in `status.arca.replicas`. A schedule that does
/// not parse makes its target never due, with a Warning.
pub(crate) fn scheduled_due(
    source: &ReplicationSource,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
    now: Timestamp,
) -> (Vec<ReplicationTarget>, Option<Timestamp>) {
    let mut due = Vec::new();
    let mut soonest: Option<Timestamp> = None;
    for target in targets(source) {
        let Some(expression) = schedule(target) else {
            // A schedule removed: the target is the backups' again, with no times of its own.
            let entries = status.arca.as_mut().and_then(|a| a.replicas.as_mut());
            if let Some(entry) = entries
                .into_iter()
                .flatten()
                .find(|r| r.name == target.repository)
            {
                entry.last_attempt_time = None;
                entry.next_copy_time = None;
            }
            continue;
        };
        let entry = entry(status, &target.repository);
        let last = ts(&entry.last_attempt_time);
        let next =
            match next_on_schedule(source, "spec.arca.replication[].schedule", expression, last) {
                Ok(next) => next,
                Err(error) => {
                    out.event(
                        EventType::Warning,
                        "ReplicationNotStarted",
                        "CreateMover",
                        format!("copying to {} cannot start: {error}", target.repository),
                    );
                    None
                }
            };
        entry.next_copy_time = opt_time(next);
        match next {
            Some(at) if at <= now => due.push(target.clone()),
            Some(at) => soonest = Some(soonest.map_or(at, |s| s.min(at))),
            None => {}
        }
    }
    (due, soonest)
}

/// Marks `due` as attempted at `now` (the DR Job that copies them starts): the next copy of
/// each falls due on its schedule after `now`, and [`record_scheduled`] knows which targets
/// the Job had by this time.
pub(crate) fn mark_attempted(
    status: &mut ReplicationSourceStatus,
    due: &[ReplicationTarget],
    now: Timestamp,
) {
    for target in due {
        entry(status, &target.repository).last_attempt_time = Some(time(now));
    }
}

/// The status entry of target `name`, made (after the others) if missing.
fn entry<'a>(status: &'a mut ReplicationSourceStatus, name: &str) -> &'a mut ReplicaStatus {
    let replicas = status
        .arca
        .get_or_insert_with(ArcaSourceStatus::default)
        .replicas
        .get_or_insert_with(Vec::new);
    let index = match replicas.iter().position(|r| r.name == name) {
        Some(index) => index,
        None => {
            replicas.push(ReplicaStatus {
                name: name.to_owned(),
                ..ReplicaStatus::default()
            });
            replicas.len() - 1
        }
    };
    &mut replicas[index]
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

/// Records a finished DR Job that ran `replicate`: its targets (the scheduled ones marked
/// attempted when it started, [`mark_attempted`]) get the result's figures as after a backup;
/// one the result does not report (the Job failed before it, or without a document) gets the
/// Job's failure as its error.
pub(crate) fn record_scheduled(
    status: &mut ReplicationSourceStatus,
    targets: &[ReplicationTarget],
    job: &JobObserved,
    done: Timestamp,
    out: &mut Out,
) {
    let replicas = status.arca.as_ref().and_then(|a| a.replicas.as_deref());
    let started = replicas
        .into_iter()
        .flatten()
        .filter(|r| {
            targets
                .iter()
                .any(|t| t.repository == r.name && schedule(t).is_some())
        })
        .filter_map(|r| ts(&r.last_attempt_time))
        .max();
    let in_job: Vec<String> = replicas
        .into_iter()
        .flatten()
        .filter(|r| started.is_some() && ts(&r.last_attempt_time) == started)
        .map(|r| r.name.clone())
        .collect();
    let reported = job.result.as_ref().map_or(&[][..], |r| &r.replicas[..]);
    let failure = job
        .result
        .as_ref()
        .and_then(|r| r.message.clone())
        .unwrap_or_else(|| "the replication Job ended without a result".to_owned());
    let mut results: Vec<ReplicaResult> = reported.to_vec();
    for name in in_job {
        if !results.iter().any(|r| r.name == name) {
            results.push(ReplicaResult {
                name,
                error: Some(failure.clone()),
                ..ReplicaResult::default()
            });
        }
    }
    apply(status, targets, &results, done, out);
}

/// Writes a successful backup's replication figures into `status.arca.replicas`: see
/// [`apply`].
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
    apply(status, targets, &result.replicas, done, out);
}

/// One entry per target, in spec order (entries of removed targets go). A target the agent
/// copied to gets `done` (the Job's end) as its last copy time and its lag; one that failed
/// keeps its last copy time and gets the error; one the agent did not report stays as it was.
fn apply(
    status: &mut ReplicationSourceStatus,
    targets: &[ReplicationTarget],
    results: &[ReplicaResult],
    done: Timestamp,
    out: &mut Out,
) {
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
            let Some(reported) = results.iter().find(|r| &r.name == name) else {
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
                    ..old
                },
                Some(error) => {
                    out.event(
                        EventType::Warning,
                        "ReplicationFailed",
                        "DeleteMover",
                        format!("copying the snapshots to {name} failed: {error}"),
                    );
                    ReplicaStatus {
                        lag_snapshots: reported.lag_snapshots,
                        lag_seconds,
                        error: Some(error.clone()),
                        ..old
                    }
                }
            }
        })
        .collect();
    arca.replicas = (!replicas.is_empty()).then_some(replicas);
}
