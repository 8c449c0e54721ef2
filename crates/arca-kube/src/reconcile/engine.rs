//! The parts of VolSync's state machine both kinds share: triggers, conditions, completion,
//! failure and backoff, over the status fields the two kinds have in common.

use arca_sched::{BackupWindow, Placement, Schedule, Trigger};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::names::mover_account_name;
use super::objects::{self, Owner, REQUIRED_SECRET_KEYS};
use super::observed::{ErrorClass, JobObserved, OwnedObserved, SecretObserved};
use super::{
    Action, ControllerConfig, Event, EventType, Object, ObjectKind, Requeue, SyncOutcome,
    SyncReport, format_go_duration, parse_go_duration, time,
};
use crate::Error;
use crate::api::{self, MoverResult, MoverStatus, SyncProgress, TriggerSpec};

/// The condition type VolSync sets.
pub(crate) const CONDITION_SYNCHRONIZING: &str = "Synchronizing";

/// Reasons of the `Synchronizing` condition (VolSync's, plus `Paused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    SyncInProgress,
    WaitingForSchedule,
    WaitingForManual,
    WaitingForSlot,
    CleaningUp,
    Paused,
    Error,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::SyncInProgress => "SyncInProgress",
            Reason::WaitingForSchedule => "WaitingForSchedule",
            Reason::WaitingForManual => "WaitingForManual",
            Reason::WaitingForSlot => "WaitingForSlot",
            Reason::CleaningUp => "CleaningUp",
            Reason::Paused => "Paused",
            Reason::Error => "Error",
        }
    }
}

/// The status fields both kinds share, as plain values.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SyncState {
    pub(crate) last_sync_time: Option<Timestamp>,
    pub(crate) last_sync_start_time: Option<Timestamp>,
    pub(crate) last_sync_duration: Option<String>,
    pub(crate) next_sync_time: Option<Timestamp>,
    pub(crate) last_manual_sync: Option<String>,
    pub(crate) latest_mover_status: Option<MoverStatus>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) retry_after: Option<Timestamp>,
    pub(crate) progress: Option<SyncProgress>,
}

pub(crate) fn ts(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

pub(crate) fn opt_time(t: Option<Timestamp>) -> Option<Time> {
    t.map(time)
}

/// What the controller collects while deciding.
#[derive(Default)]
pub(crate) struct Out {
    pub(crate) actions: Vec<super::Action>,
    pub(crate) events: Vec<Event>,
    pub(crate) report: Option<SyncReport>,
}

impl Out {
    pub(crate) fn event(
        &mut self,
        type_: EventType,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        self.events.push(Event {
            type_,
            reason,
            action,
            note,
        });
    }
}

/// When an object syncs: its trigger, in its time zone, spread by its jitter, inside its window.
pub(crate) struct Timing {
    manual: Option<String>,
    schedule: Option<Schedule>,
    jitter: SignedDuration,
    window: Option<BackupWindow>,
}

/// What an idle object should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    Start,
    /// Wait; look again at this time (`None`: only on a change).
    Wait(Option<Timestamp>),
}

impl Timing {
    pub(crate) fn new(
        trigger: Option<&TriggerSpec>,
        time_zone: Option<&str>,
        jitter: Option<&str>,
        window: Option<&api::BackupWindow>,
        namespace: &str,
        name: &str,
    ) -> Result<Timing, Error> {
        let zone = match time_zone.filter(|z| !z.is_empty()) {
            None => None,
            Some(z) => Some(TimeZone::get(z).map_err(|_| Error::Unsupported {
                field: "spec.arca.timeZone",
                value: z.to_owned(),
                reason: "not an IANA time zone",
            })?),
        };
        let schedule = match trigger
            .and_then(|t| t.schedule.as_deref())
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(expression) => {
                let parsed = Schedule::parse(expression).map_err(|e| Error::InvalidSchedule {
                    field: "spec.trigger.schedule",
                    expression: expression.to_owned(),
                    reason: e.to_string(),
                })?;
                Some(match &zone {
                    Some(zone) => parsed.with_time_zone(zone.clone()),
                    None => parsed,
                })
            }
        };
        let jitter = match jitter.filter(|j| !j.is_empty()) {
            None => SignedDuration::ZERO,
            Some(text) => {
                let window = parse_go_duration(text).ok_or_else(|| Error::InvalidDuration {
                    field: "spec.arca.jitter",
                    value: text.to_owned(),
                })?;
                arca_sched::jitter(namespace, name, window)
            }
        };
        let window = match window {
            None => None,
            Some(w) => {
                let parse = |text: &str| {
                    jiff::civil::Time::strptime("%H:%M", text).map_err(|_| Error::InvalidTime {
                        field: "spec.arca.backupWindow",
                        value: text.to_owned(),
                    })
                };
                Some(BackupWindow {
                    start: parse(&w.start)?,
                    end: parse(&w.end)?,
                    tz: zone.clone().unwrap_or(TimeZone::UTC),
                })
            }
        };
        Ok(Timing {
            manual: trigger
                .and_then(|t| t.manual.clone())
                .filter(|m| !m.is_empty()),
            schedule,
            jitter,
            window,
        })
    }

    fn trigger(&self) -> Trigger<'_> {
        Trigger::select(self.manual.as_deref(), self.schedule.as_ref())
    }

    /// The manual tag, when the manual trigger is in force.
    pub(crate) fn manual(&self) -> Option<&str> {
        self.manual.as_deref()
    }

    /// `status.nextSyncTime` for a last sync at `last_sync`: the schedule's next run after it,
    /// delayed by the jitter and moved into the backup window. `None` for manual and continuous
    /// triggers, and before the first sync (which starts at once, as in VolSync).
    pub(crate) fn next_sync_time(&self, last_sync: Option<Timestamp>) -> Option<Timestamp> {
        let Trigger::Schedule(schedule) = self.trigger() else {
            return None;
        };
        let mut base = last_sync?;
        // A window may skip a run; bounded so an impossible window cannot loop for long.
        for _ in 0..1000 {
            let run = schedule.next_after(base)?;
            let due = run.saturating_add(self.jitter).ok()?;
            let Some(window) = &self.window else {
                return Some(due);
            };
            let following = schedule
                .next_after(run)
                .and_then(|r| r.saturating_add(self.jitter).ok());
            match window.place(due, following) {
                Placement::Run(at) => return Some(at),
                Placement::Skip { .. } => base = run,
            }
        }
        None
    }

    /// Whether an idle object starts a sync now (VolSync's trigger rules).
    pub(crate) fn idle(&self, state: &SyncState, now: Timestamp) -> Idle {
        let trigger = self.trigger();
        let next = self.next_sync_time(state.last_sync_time);
        if trigger.should_sync(next, state.last_manual_sync.as_deref(), now) {
            // Before the first sync a window still applies.
            if let (Trigger::Schedule(_), None, Some(window)) = (trigger, next, &self.window)
                && !window.contains(now)
            {
                return Idle::Wait(window.next_open(now));
            }
            Idle::Start
        } else {
            match trigger {
                Trigger::Schedule(_) => Idle::Wait(next),
                Trigger::Manual(_) | Trigger::Continuous => Idle::Wait(None),
            }
        }
    }

    /// The condition of an idle object.
    pub(crate) fn waiting_reason(&self) -> Reason {
        match self.trigger() {
            Trigger::Manual(_) => Reason::WaitingForManual,
            Trigger::Schedule(_) => Reason::WaitingForSchedule,
            Trigger::Continuous => Reason::CleaningUp,
        }
    }

    /// VolSync's missed-interval rule at completion.
    pub(crate) fn missed_interval(&self, previous_sync: Option<Timestamp>, now: Timestamp) -> bool {
        match (self.trigger(), previous_sync) {
            (Trigger::Schedule(schedule), Some(last)) => {
                arca_sched::missed_interval(schedule, last, now)
            }
            _ => false,
        }
    }

    /// Out of sync: never synced, or (scheduled) the missed-interval rule holds now.
    pub(crate) fn out_of_sync(&self, state: &SyncState, now: Timestamp) -> bool {
        match state.last_sync_time {
            None => true,
            Some(_) => self.missed_interval(state.last_sync_time, now),
        }
    }
}

/// Sets the `Synchronizing` condition, keeping its transition time while its status holds.
pub(crate) fn set_condition(
    state: &mut SyncState,
    reason: Reason,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if reason == Reason::SyncInProgress {
        "True"
    } else {
        "False"
    };
    let previous = state
        .conditions
        .iter()
        .position(|c| c.type_ == CONDITION_SYNCHRONIZING);
    let transition = match previous.map(|i| &state.conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => time(now),
    };
    let condition = Condition {
        type_: CONDITION_SYNCHRONIZING.to_owned(),
        status: status.to_owned(),
        reason: reason.as_str().to_owned(),
        message,
        last_transition_time: transition,
        observed_generation: generation,
    };
    match previous {
        Some(i) => state.conditions[i] = condition,
        None => state.conditions.push(condition),
    }
}

/// The reason of the current `Synchronizing` condition and its message.
pub(crate) fn condition(state: &SyncState) -> Option<(&str, &str)> {
    state
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_SYNCHRONIZING)
        .map(|c| (c.reason.as_str(), c.message.as_str()))
}

/// Reports a spec or environment error: condition `Error`, a Warning event when the message is
/// new, and a retry after the base delay (a fix to the spec reconciles at once anyway).
pub(crate) fn report_error(
    state: &mut SyncState,
    out: &mut Out,
    error: &Error,
    generation: Option<i64>,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let message = error.to_string();
    if condition(state) != Some((Reason::Error.as_str(), message.as_str())) {
        out.event(
            EventType::Warning,
            "SyncError",
            "Reconcile",
            message.clone(),
        );
    }
    set_condition(state, Reason::Error, message, generation, now);
    Requeue::After(config.retry_base)
}

/// `later` unless it is before `earlier` (status times never go backwards, even if clocks do).
pub(crate) fn not_before(earlier: Option<Timestamp>, later: Timestamp) -> Timestamp {
    earlier.map_or(later, |e| e.max(later))
}

/// Records a completed sync: VolSync's completion (times, duration, manual handshake, mover
/// status), the next run, the report for the metrics.
pub(crate) fn complete(
    state: &mut SyncState,
    out: &mut Out,
    timing: &Timing,
    logs: Option<String>,
    now: Timestamp,
) {
    let started = state.last_sync_start_time.unwrap_or(now);
    let finished = not_before(state.last_sync_time, now.max(started));
    let duration = finished.duration_since(started);
    let missed = timing.missed_interval(state.last_sync_time, now);
    state.last_sync_time = Some(finished);
    state.last_sync_start_time = None;
    state.last_sync_duration = Some(format_go_duration(duration));
    state.next_sync_time = timing.next_sync_time(Some(finished));
    if let Some(tag) = timing.manual() {
        state.last_manual_sync = Some(tag.to_owned());
    }
    state.latest_mover_status = Some(MoverStatus {
        result: Some(MoverResult::Successful),
        logs,
    });
    state.consecutive_failures = None;
    state.retry_after = None;
    state.progress = None;
    out.report = Some(SyncReport {
        outcome: SyncOutcome::Succeeded,
        duration,
        missed_interval: missed,
    });
}

/// Records a failed mover run: the mover status, the failure count, the backoff, the event and
/// the report. The sync stays in progress (VolSync retries it); the Job is deleted by the caller.
pub(crate) fn fail(
    state: &mut SyncState,
    out: &mut Out,
    job: &JobObserved,
    generation: Option<i64>,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let result = job.result.as_ref();
    let class = result
        .and_then(|r| r.error_class)
        .unwrap_or(ErrorClass::Retryable);
    let message = result
        .and_then(|r| r.message.clone())
        .unwrap_or_else(|| match job.result {
            Some(_) => "the mover failed".to_owned(),
            None => "the mover ended without a result".to_owned(),
        });
    let failures = state.consecutive_failures.unwrap_or(0).saturating_add(1);
    let delay = backoff(config, failures, class);
    let started = state.last_sync_start_time.unwrap_or(now);
    state.consecutive_failures = Some(failures);
    state.retry_after = Some(now.saturating_add(delay).unwrap_or(now));
    state.latest_mover_status = Some(MoverStatus {
        result: Some(MoverResult::Failed),
        logs: Some(job.logs.clone().unwrap_or_else(|| message.clone())),
    });
    state.progress = None;
    let note = format!(
        "mover Job {} failed ({failures} in a row): {message}; retrying in {}",
        job.name,
        format_go_duration(delay)
    );
    out.event(
        EventType::Warning,
        "TransferFailed",
        "DeleteMover",
        note.clone(),
    );
    set_condition(state, Reason::Error, note, generation, now);
    out.report = Some(SyncReport {
        outcome: SyncOutcome::Failed,
        duration: now.duration_since(started).max(SignedDuration::ZERO),
        missed_interval: false,
    });
    Requeue::After(delay)
}

/// The delay before retrying after `failures` failures in a row: doubling from the base, capped;
/// fatal failures wait the cap at once.
pub(crate) fn backoff(
    config: &ControllerConfig,
    failures: u32,
    class: ErrorClass,
) -> SignedDuration {
    if class == ErrorClass::Fatal {
        return config.retry_max;
    }
    let doublings = failures.saturating_sub(1).min(30);
    let delay = config
        .retry_base
        .checked_mul(1 << doublings)
        .unwrap_or(config.retry_max);
    delay.min(config.retry_max)
}

/// The earlier of two requeues.
pub(crate) fn sooner(a: Requeue, b: Requeue) -> Requeue {
    match (a, b) {
        (Requeue::After(x), Requeue::After(y)) => Requeue::After(x.min(y)),
        (Requeue::After(x), Requeue::AwaitChange) | (Requeue::AwaitChange, Requeue::After(x)) => {
            Requeue::After(x)
        }
        (Requeue::AwaitChange, Requeue::AwaitChange) => Requeue::AwaitChange,
    }
}

/// A requeue at `at` (immediately if it has passed).
pub(crate) fn requeue_at(at: Timestamp, now: Timestamp) -> Requeue {
    Requeue::After(at.duration_since(now).max(SignedDuration::ZERO))
}

/// Applies the mover's ServiceAccount, Role and RoleBinding that are missing (unless the spec
/// names its own ServiceAccount) and returns the account the Job runs as.
pub(crate) fn ensure_rbac(
    owner: &Owner<'_>,
    source: bool,
    given: Option<&str>,
    owned: &OwnedObserved,
    out: &mut Out,
) -> String {
    if let Some(given) = given.filter(|g| !g.is_empty()) {
        return given.to_owned();
    }
    let account = mover_account_name(source, owner.name);
    if !owned.service_accounts.contains(&account) {
        out.actions
            .push(Action::Apply(Object::ServiceAccount(Box::new(
                objects::service_account(owner, &account),
            ))));
    }
    if !owned.roles.contains(&account) {
        out.actions
            .push(Action::Apply(Object::Role(Box::new(objects::role(
                owner, &account,
            )))));
    }
    if !owned.role_bindings.contains(&account) {
        out.actions.push(Action::Apply(Object::RoleBinding(Box::new(
            objects::role_binding(owner, &account),
        ))));
    }
    account
}

pub(crate) fn describe_ca(ca: Option<&crate::api::CustomCaSpec>) -> String {
    let Some(ca) = ca else { return String::new() };
    let holder = ca
        .secret_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!("Secret {s}"))
        .or_else(|| {
            ca.config_map_name
                .as_deref()
                .map(|c| format!("ConfigMap {c}"))
        })
        .unwrap_or_default();
    format!("{holder} key {}", ca.key.as_deref().unwrap_or_default())
}

/// The repository Secret exists and has the keys the mover needs.
pub(crate) fn check_secret<'a>(
    secret: Option<&'a SecretObserved>,
    name: &str,
) -> Result<&'a SecretObserved, Error> {
    let secret = secret
        .filter(|s| s.name == name)
        .ok_or_else(|| Error::NotFound {
            kind: "Secret",
            name: name.to_owned(),
        })?;
    for key in REQUIRED_SECRET_KEYS {
        if !secret.keys.contains(key) {
            return Err(Error::SecretKeyMissing {
                secret: name.to_owned(),
                key,
            });
        }
    }
    Ok(secret)
}

/// Deletes the sync's temporary objects (VolSync's cleanup label; kept snapshots excepted).
pub(crate) fn cleanup_temporaries(owner: &Owner<'_>, out: &mut Out) {
    for kind in [
        ObjectKind::PersistentVolumeClaim,
        ObjectKind::VolumeSnapshot,
    ] {
        out.actions.push(Action::DeleteAllOf {
            kind,
            label_selector: owner.cleanup_selector(),
        });
    }
}

/// A deleted object: remove its Jobs and temporaries, then release the finalizer.
pub(crate) fn finalize(
    owner: &Owner<'_>,
    owned: &OwnedObserved,
    has_finalizer: bool,
    out: &mut Out,
) {
    if !has_finalizer {
        return;
    }
    for job in &owned.jobs {
        out.actions.push(Action::Delete {
            kind: ObjectKind::Job,
            name: job.name.clone(),
        });
    }
    cleanup_temporaries(owner, out);
    out.actions.push(Action::RemoveFinalizer);
}
