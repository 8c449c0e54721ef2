//! `spec.arca.drill`: scheduled recovery drills of a source's repository (the seed's monthly DR
//! test), run by the source's DR Job (`dr_job.rs`: the agent's `drill` action, then its
//! `report`). The Job's data and cache volumes are `emptyDir`s (scratch space, a cold cache as
//! after a cluster loss): it never touches the source volume. A failed drill is a result,
//! recorded in `status.arca.drill`, not retried before its next due time. Drills do not change
//! the sync's status fields.

use jiff::{SignedDuration, Timestamp};

use super::dr_job::next_on_schedule;
use super::engine::{self, Out, opt_time, ts};
use super::observed::JobObserved;
use super::{EventType, format_go_duration, parse_go_duration, time};
use crate::Error;
use crate::api::{
    ArcaSourceStatus, DEFAULT_DRILL_SCHEDULE, DrillSpec, DrillStatus, ReplicationSource,
    ReplicationSourceStatus,
};

/// The agent's action that runs a drill.
pub const DRILL_ACTION: &str = "drill";

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
    let last = drill_status(status).and_then(|d| ts(&d.last_drill_time));
    next_on_schedule(source, "spec.arca.drill.schedule", expression, last)
}

/// Whether an idle source's drill is due (scheduled or manual), with the environment of the
/// agent's `drill` action; keeps `status.arca.drill.nextDrillTime` current. `Err(next)` when
/// none is due (or one cannot start, with a Warning): when the next falls due.
pub(super) fn due(
    source: &ReplicationSource,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
    now: Timestamp,
) -> Result<Vec<(&'static str, String)>, Option<Timestamp>> {
    let Some(drill) = spec(source) else {
        if let Some(arca) = status.arca.as_mut() {
            arca.drill = arca.drill.take().map(|d| DrillStatus {
                next_drill_time: None,
                ..d
            });
        }
        return Err(None);
    };
    let next = next_scheduled(source, drill, status).map_err(|error| {
        not_started(out, &error);
        None
    })?;
    status
        .arca
        .get_or_insert_with(ArcaSourceStatus::default)
        .drill
        .get_or_insert_with(DrillStatus::default)
        .next_drill_time = opt_time(next);
    let due = manual_pending(drill, status).is_some() || next.is_some_and(|at| at <= now);
    if !due {
        return Err(next);
    }
    drill_env(drill).map_err(|error| {
        not_started(out, &error);
        None
    })
}

fn not_started(out: &mut Out, error: &Error) {
    out.event(
        EventType::Warning,
        "DrillNotStarted",
        "CreateMover",
        format!("the recovery drill cannot start: {error}"),
    );
}

/// A manual drill request that has not been carried out yet.
fn manual_pending<'a>(drill: &'a DrillSpec, status: &ReplicationSourceStatus) -> Option<&'a str> {
    let manual = drill.manual.as_deref().filter(|m| !m.is_empty())?;
    let done = drill_status(status).and_then(|d| d.last_manual_drill.as_deref());
    (done != Some(manual)).then_some(manual)
}

/// The environment of the agent's `drill` action besides the data class (whose RTO applies
/// unless `rto` is given; the DR Job always sets it): the RTO in seconds, the application's
/// command.
fn drill_env(drill: &DrillSpec) -> Result<Vec<(&'static str, String)>, Error> {
    let mut env = Vec::new();
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

/// Records a finished DR Job's drill, which ended at `ended`, in `status.arca.drill` (with
/// the next scheduled time), and its event.
pub(super) fn record(
    source: &ReplicationSource,
    job: &JobObserved,
    ended: Timestamp,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
) {
    let previous = drill_status(status).cloned().unwrap_or_default();
    let ended = engine::not_before(ts(&previous.last_drill_time), ended);
    let figures = job.result.as_ref().and_then(|r| r.drill.as_ref());
    // A partial success (a scheduled replica failed in the same Job) ends the Job as failed
    // with a success result: the drill still passed.
    let passed =
        job.result.as_ref().is_some_and(|r| r.success) && figures.is_some_and(|d| d.passed);
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
}
