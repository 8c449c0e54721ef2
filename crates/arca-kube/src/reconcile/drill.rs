//! `spec.arca.drill`: scheduled recovery drills of a source's repository (the seed's monthly DR
//! test).
//!
//! A drill is a Job running the agent's `drill` action, then its `report` (`report.rs`). It takes the object's one mover Job
//! name, so it never runs beside a backup: it starts only while the source is idle (no sync in
//! progress, none starting, not paused), and a backup that falls due meanwhile waits for it. Its
//! data and cache volumes are `emptyDir`s (scratch space, a cold cache as after a cluster loss):
//! it mounts no claim, so it never touches the source volume. It runs once (`backoffLimit: 0`);
//! a failed drill is a result, recorded in `status.arca.drill`, not retried before its next due
//! time. Drills do not change the sync's status fields.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use super::engine::{self, Out, opt_time, requeue_at, sooner, ts};
use super::names::job_name;
use super::objects::{self, MoverJob, Owner};
use super::observed::{JobObserved, JobPhase, SourceObserved};
use super::report::{self, REPORT_ACTION};
use super::{
    Action, ControllerConfig, EventType, Object, ObjectKind, Requeue, format_go_duration,
    parse_go_duration, time,
};
use crate::Error;
use crate::api::{
    ArcaSourceStatus, DEFAULT_DRILL_SCHEDULE, DrillSpec, DrillStatus, ReplicationSource,
    ReplicationSourceResticSpec, ReplicationSourceStatus,
};

/// The agent's action a drill Job runs.
pub const DRILL_ACTION: &str = "drill";

/// Whether an owned Job is a drill (its arguments are the agent's actions).
pub fn is_drill_job(job: &JobObserved) -> bool {
    job.actions.iter().any(|a| a == DRILL_ACTION)
}

fn spec(source: &ReplicationSource) -> Option<&DrillSpec> {
    source.spec.arca.as_ref()?.drill.as_ref()
}

fn drill_status(status: &ReplicationSourceStatus) -> Option<&DrillStatus> {
    status.arca.as_ref()?.drill.as_ref()
}

/// When the next scheduled drill falls due: the schedule's first run after the last drill (or
/// after the object's creation), in `spec.arca.timeZone`.
fn next_scheduled(
    source: &ReplicationSource,
    drill: &DrillSpec,
    status: &ReplicationSourceStatus,
) -> Result<Option<Timestamp>, Error> {
    let expression = drill
        .schedule
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_DRILL_SCHEDULE);
    let mut schedule =
        arca_sched::Schedule::parse(expression).map_err(|e| Error::InvalidSchedule {
            field: "spec.arca.drill.schedule",
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
    // An invalid zone is reported by the sync's own timing before a drill is considered.
    let zone = source
        .spec
        .arca
        .as_ref()
        .and_then(|a| a.time_zone.as_deref());
    if let Some(zone) = zone.and_then(|z| TimeZone::get(z).ok()) {
        schedule = schedule.with_time_zone(zone);
    }
    let last = drill_status(status)
        .and_then(|d| ts(&d.last_drill_time))
        .or_else(|| ts(&source.metadata.creation_timestamp));
    Ok(last.and_then(|last| schedule.next_after(last)))
}

/// A manual drill request that has not been carried out yet.
fn manual_pending<'a>(drill: &'a DrillSpec, status: &ReplicationSourceStatus) -> Option<&'a str> {
    let manual = drill.manual.as_deref().filter(|m| !m.is_empty())?;
    let done = drill_status(status).and_then(|d| d.last_manual_drill.as_deref());
    (done != Some(manual)).then_some(manual)
}

/// The environment of the agent's `drill` action: the data class (whose RTO applies unless
/// `rto` is given), the RTO in seconds, the application's command.
fn drill_env(
    source: &ReplicationSource,
    drill: &DrillSpec,
) -> Result<Vec<(&'static str, String)>, Error> {
    let mut env = vec![(
        "ARCA_DATA_CLASS",
        source.spec.data_class().as_str().to_owned(),
    )];
    if let Some(text) = drill.rto.as_deref().filter(|r| !r.is_empty()) {
        let rto = parse_go_duration(text)
            .filter(|d| d.is_positive())
            .ok_or_else(|| Error::InvalidDuration {
                field: "spec.arca.drill.rto",
                value: text.to_owned(),
            })?;
        env.push(("ARCA_RTO", rto.as_secs().max(1).to_string()));
    }
    if let Some(command) = drill.command.as_deref().filter(|c| !c.is_empty()) {
        env.push(("ARCA_DRILL_COMMAND", command.to_owned()));
    }
    Ok(env)
}

/// An idle source (no sync in progress or starting, no Job, not paused): starts a drill if one
/// is due, and keeps `status.arca.drill.nextDrillTime` current. Returns the requeue, sooner if
/// the next drill falls due before it.
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
    let Some(drill) = spec(source) else {
        if let Some(arca) = status.arca.as_mut() {
            arca.drill = arca.drill.take().map(|d| DrillStatus {
                next_drill_time: None,
                ..d
            });
        }
        return requeue;
    };
    let next = match next_scheduled(source, drill, status) {
        Ok(next) => next,
        Err(error) => {
            not_started(out, &error);
            return requeue;
        }
    };
    let arca = status.arca.get_or_insert_with(ArcaSourceStatus::default);
    arca.drill
        .get_or_insert_with(DrillStatus::default)
        .next_drill_time = opt_time(next);
    let due = manual_pending(drill, status).is_some() || next.is_some_and(|at| at <= now);
    if !due {
        return next.map_or(requeue, |at| sooner(requeue, requeue_at(at, now)));
    }
    let env = match drill_env(source, drill) {
        Ok(env) => env,
        Err(error) => {
            not_started(out, &error);
            return requeue;
        }
    };
    let secret = match engine::check_secret(observed.repository_secret.as_ref(), &restic.repository)
    {
        Ok(secret) => secret,
        Err(error) => {
            not_started(out, &error);
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
            actions: vec![DRILL_ACTION, REPORT_ACTION],
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
    out.actions.push(Action::Apply(Object::Job(Box::new(job))));
    out.event(
        EventType::Normal,
        "DrillStarted",
        "CreateMover",
        format!("recovery drill Job {name} created"),
    );
    Requeue::After(config.poll_interval)
}

fn not_started(out: &mut Out, error: &Error) {
    out.event(
        EventType::Warning,
        "DrillNotStarted",
        "CreateMover",
        format!("the recovery drill cannot start: {error}"),
    );
}

/// Makes a mover Job a drill's: its data and cache volumes become `emptyDir`s (scratch space,
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

/// A drill Job exists: hold it while paused, wait while it runs, and once it ended record its
/// figures in `status.arca.drill` and its report's (`report::record`), delete it and look again at once (a backup may be waiting).
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
    let previous = drill_status(status).cloned().unwrap_or_default();
    let ended = engine::not_before(ts(&previous.last_drill_time), now);
    let figures = job.result.as_ref().and_then(|r| r.drill.as_ref());
    let passed = job.phase == JobPhase::Succeeded && figures.is_some_and(|d| d.passed);
    let reason = (!passed).then(|| {
        figures
            .and_then(|d| d.reason.clone())
            .or_else(|| job.result.as_ref().and_then(|r| r.message.clone()))
            .unwrap_or_else(|| "the drill Job ended without a result".to_owned())
    });
    let manual = spec(source)
        .and_then(|d| d.manual.clone())
        .filter(|m| !m.is_empty());
    let mut recorded = DrillStatus {
        last_drill_time: Some(time(ended)),
        passed: Some(passed),
        measured_seconds: figures.map(|d| d.measured_seconds),
        rto_seconds: figures.and_then(|d| d.rto_seconds),
        bytes_verified: figures.map(|d| d.bytes_verified),
        files_verified: figures.map(|d| d.files_verified),
        snapshot_id: figures.and_then(|d| d.snapshot_id.clone()),
        reason: reason.clone(),
        last_manual_drill: manual.or(previous.last_manual_drill),
        next_drill_time: None,
    };
    status
        .arca
        .get_or_insert_with(ArcaSourceStatus::default)
        .drill = Some(recorded.clone());
    if let Some(drill) = spec(source) {
        recorded.next_drill_time = next_scheduled(source, drill, status)
            .ok()
            .flatten()
            .map(time);
    }
    if let Some(arca) = status.arca.as_mut() {
        arca.drill = Some(recorded);
    }
    report::record(
        owner,
        job.result.as_ref().and_then(|r| r.report.as_ref()),
        ended,
        status,
        out,
    );
    match reason {
        None => out.event(
            EventType::Normal,
            "DrillPassed",
            "DeleteMover",
            format!(
                "recovery drill passed: restored and verified in {}",
                format_go_duration(
                    SignedDuration::try_from_secs_f64(figures.map_or(0.0, |d| d.measured_seconds))
                        .unwrap_or(SignedDuration::ZERO)
                )
            ),
        ),
        Some(reason) => out.event(
            EventType::Warning,
            "DrillFailed",
            "DeleteMover",
            format!("recovery drill failed: {reason}"),
        ),
    }
    Requeue::After(SignedDuration::ZERO)
}
