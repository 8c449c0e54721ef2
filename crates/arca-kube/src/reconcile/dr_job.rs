//! The DR Job: a source's scheduled disaster-recovery work (copies to scheduled replication
//! targets, recovery drills, compliance reports) in one Job that runs the agent's
//! `replicate`, `drill` and `report` actions, those due, in that order.
//!
//! It takes the object's one mover Job name, so it never runs beside a backup (and work that
//! falls due together shares one Job): it starts only while the source is idle (no sync in
//! progress, none starting, not paused), and a backup that falls due meanwhile waits for it.
//! Its data and cache volumes are `emptyDir`s: it mounts no claim, so it never touches the
//! source volume (a drill restores into scratch space, with a cold cache as after a cluster
//! loss). It runs once (`backoffLimit: 0`): what failed is recorded and falls due again on its
//! schedule, not retried at once. The order lets a drill's report include the drill, and the
//! agent runs `report` even after a failed drill. DR Jobs do not change the sync's status
//! fields.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use super::engine::{self, Out, requeue_at, sooner, ts};
use super::names::job_name;
use super::objects::{self, MoverJob, Owner};
use super::observed::{JobObserved, JobPhase, SourceObserved};
use super::report::REPORT_ACTION;
use super::{Action, ControllerConfig, EventType, Object, ObjectKind, Requeue};
use super::{drill, replication, report};
use crate::Error;
use crate::api::{
    ReplicationSource, ReplicationSourceResticSpec, ReplicationSourceStatus, ResticRetainPolicy,
};

/// The agent's action that copies to the replication targets of its Job.
pub const REPLICATE_ACTION: &str = "replicate";

/// The agent's actions a DR Job runs (a backup Job runs none of them).
pub const DR_ACTIONS: [&str; 3] = [REPLICATE_ACTION, drill::DRILL_ACTION, REPORT_ACTION];

/// Whether a Job with these agent actions (its container's arguments) is a DR Job.
pub fn is_dr_job<S: AsRef<str>>(actions: &[S]) -> bool {
    actions.iter().any(|a| DR_ACTIONS.contains(&a.as_ref()))
}

/// The first run of `expression` (in `spec.arca.timeZone`) after `last`, or after the
/// object's creation when it never ran; `field` names the schedule in the error.
pub(super) fn next_on_schedule(
    source: &ReplicationSource,
    field: &'static str,
    expression: &str,
    last: Option<Timestamp>,
) -> Result<Option<Timestamp>, Error> {
    let mut schedule =
        arca_sched::Schedule::parse(expression).map_err(|e| Error::InvalidSchedule {
            field,
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
    // An invalid zone is reported by the sync's own timing before DR work is considered.
    let zone = source
        .spec
        .arca
        .as_ref()
        .and_then(|a| a.time_zone.as_deref());
    if let Some(zone) = zone.and_then(|z| TimeZone::get(z).ok()) {
        schedule = schedule.with_time_zone(zone);
    }
    let last = last.or_else(|| ts(&source.metadata.creation_timestamp));
    Ok(last.and_then(|last| schedule.next_after(last)))
}

/// An idle source (no sync in progress or starting, no Job, not paused): starts the DR Job if
/// any of its work is due, and keeps the next due times in the status current. Returns the
/// requeue, sooner if DR work falls due before it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_if_due(
    observed: &SourceObserved,
    restic: &ReplicationSourceResticSpec,
    owner: &Owner<'_>,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
    requeue: Requeue,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let source = &observed.source;
    let (replicas, next_copy) = replication::scheduled_due(source, status, out, now);
    let drill = drill::due(source, status, out, now);
    let report = report::due(source, status, out, now);
    let later = |next: Option<Timestamp>, requeue: Requeue| {
        next.map_or(requeue, |at| sooner(requeue, requeue_at(at, now)))
    };
    let mut requeue = later(next_copy, requeue);
    let mut actions = Vec::new();
    // The class's RPO and RTO judge the drill and the report.
    let mut env = vec![(
        "ARCA_DATA_CLASS",
        source.spec.data_class().as_str().to_owned(),
    )];
    if !replicas.is_empty() {
        actions.push(REPLICATE_ACTION);
    }
    match drill {
        Ok(drill_env) => {
            actions.push(drill::DRILL_ACTION);
            env.extend(drill_env);
        }
        Err(next) => requeue = later(next, requeue),
    }
    match report {
        // A drill's Job reports anyway.
        Ok(()) => actions.push(REPORT_ACTION),
        Err(next) => requeue = later(next, requeue),
    }
    if actions.contains(&drill::DRILL_ACTION) && !actions.contains(&REPORT_ACTION) {
        actions.push(REPORT_ACTION);
    }
    if actions.is_empty() {
        return requeue;
    }
    // The report judges retention against the policy the backups are forgotten by.
    env.push((
        "FORGET_OPTIONS",
        ResticRetainPolicy::forget_options(restic.retain.as_ref()),
    ));
    let targets_ok = if replicas.is_empty() {
        Ok(())
    } else {
        replication::check_targets(observed, &restic.repository)
    };
    let secret = match targets_ok.and_then(|()| {
        engine::check_secret(observed.repository_secret.as_ref(), &restic.repository)
    }) {
        Ok(secret) => secret,
        Err(error) => {
            out.event(
                EventType::Warning,
                "DrJobNotStarted",
                "CreateMover",
                format!("the DR Job ({}) cannot start: {error}", actions.join(", ")),
            );
            return requeue;
        }
    };
    let account = engine::ensure_rbac(
        owner,
        true,
        restic.mover.mover_service_account.as_deref(),
        &observed.owned,
        out,
    );
    let name = job_name(true, owner.name);
    let mut job = objects::job(
        owner,
        MoverJob {
            name: name.clone(),
            actions: actions.clone(),
            env,
            // Both claims are replaced by scratch space below.
            data_pvc: String::new(),
            data_read_only: false,
            cache_pvc: String::new(),
            service_account: account,
            mover: &restic.mover,
            custom_ca: restic.custom_ca.as_ref(),
            secret,
            paused: false,
        },
        config,
    );
    into_scratch(&mut job);
    replication::add_to_job(&mut job, &replicas);
    replication::mark_attempted(status, &replicas, now);
    out.actions.push(Action::Apply(Object::Job(Box::new(job))));
    if actions.contains(&drill::DRILL_ACTION) {
        out.event(
            EventType::Normal,
            "DrillStarted",
            "CreateMover",
            format!("recovery drill Job {name} created"),
        );
    }
    out.event(
        EventType::Normal,
        "DrJobStarted",
        "CreateMover",
        format!("DR Job {name} created: {}", actions.join(", ")),
    );
    Requeue::After(config.poll_interval)
}

/// Makes a mover Job a DR Job: its data and cache volumes become `emptyDir`s (scratch space,
/// writable), and it runs once.
fn into_scratch(job: &mut Job) {
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    spec.backoff_limit = Some(0);
    let Some(pod) = spec.template.spec.as_mut() else {
        return;
    };
    for volume in pod.volumes.iter_mut().flatten() {
        if volume.name == "data" || volume.name == "cache" {
            volume.persistent_volume_claim = None;
            volume.empty_dir = Some(EmptyDirVolumeSource::default());
        }
    }
    for container in &mut pod.containers {
        for mount in container.volume_mounts.iter_mut().flatten() {
            if mount.name == "data" {
                mount.read_only = Some(false);
            }
        }
    }
}

/// A DR Job exists: hold it while paused, wait while it runs, and once it ended record what
/// each of its actions did (`replication::record_scheduled`, `drill::record`,
/// `report::record`), delete it and look again at once (a backup may be waiting).
pub(crate) fn follow(
    observed: &SourceObserved,
    owner: &Owner<'_>,
    job: &JobObserved,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let source = &observed.source;
    if job.phase == JobPhase::Active {
        let wanted = if source.spec.paused { 0 } else { 1 };
        if job.parallelism != wanted {
            out.actions.push(Action::SetJobParallelism {
                name: job.name.clone(),
                parallelism: wanted,
            });
        }
        return if source.spec.paused {
            Requeue::AwaitChange
        } else {
            Requeue::After(config.poll_interval)
        };
    }
    out.actions.push(Action::Delete {
        kind: ObjectKind::Job,
        name: job.name.clone(),
    });
    let ran = |action: &str| job.actions.iter().any(|a| a == action);
    if ran(REPLICATE_ACTION) {
        replication::record_scheduled(status, replication::targets(source), job, now, out);
    }
    if ran(drill::DRILL_ACTION) {
        drill::record(source, job, now, status, out);
    }
    report::record(
        source,
        owner,
        job.result.as_ref().and_then(|r| r.report.as_ref()),
        now,
        status,
        out,
    );
    Requeue::After(SignedDuration::ZERO)
}
