//! The decision for a ReplicationSource: back the volume up when the trigger says so.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::engine::{
    self, Idle, Out, Reason, SyncState, Timing, opt_time, requeue_at, set_condition, sooner, ts,
};
use super::names::{FINALIZER, cache_pvc_name, copy_name, job_name};
use super::objects::{self, DEFAULT_CACHE_CAPACITY, MoverJob, Owner, PvcShape};
use super::observed::{AgentResult, JobObserved, JobPhase, SourceObserved};
use super::{
    Action, ControllerConfig, EventType, HookPhase, Object, ObjectKind, Requeue, SourceDecision,
    time,
};
use super::{dr_job, replication};
use crate::Error;
use crate::api::{
    ArcaSourceStatus, CopyMethod, DataClass, MoverKind, ReplicationSource,
    ReplicationSourceResticSpec, ReplicationSourceResticStatus, ReplicationSourceStatus,
    ResticRetainPolicy, RpoState, RpoStatus,
};

/// Decides what to do about a ReplicationSource (see the [module docs](super)).
pub fn reconcile_source(
    observed: &SourceObserved,
    now: Timestamp,
    config: &ControllerConfig,
) -> SourceDecision {
    let source = &observed.source;
    let meta = &source.metadata;
    let status = source.status.clone().unwrap_or_default();
    let mut state = state_of(&status);
    let mut out = Out::default();
    let name = meta.name.as_deref().unwrap_or_default();
    let owner = Owner {
        kind: "ReplicationSource",
        plural: "replicationsources",
        name,
        namespace: meta.namespace.as_deref(),
        uid: meta.uid.as_deref().unwrap_or_default(),
    };
    let has_finalizer = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    let mover = source.spec.mover_kind();

    // Another controller's object: not ours to touch.
    if mover == MoverKind::External {
        return finish(status, state, out, Requeue::AwaitChange, false);
    }

    if meta.deletion_timestamp.is_some() {
        engine::finalize(&owner, &observed.owned, has_finalizer, &mut out);
        return finish(status, state, out, Requeue::AwaitChange, false);
    }
    if !has_finalizer {
        out.actions.push(Action::AddFinalizer);
    }

    let generation = meta.generation;
    let restic = match (&source.spec.restic, mover) {
        (Some(restic), _) => restic,
        (None, kind) => {
            let error = match kind {
                MoverKind::Missing => Error::MissingField {
                    field: "spec.restic",
                    reason: " (Arca runs the restic mover)",
                },
                other => Error::Unsupported {
                    field: "spec",
                    value: other.name().to_owned(),
                    reason: "Arca runs only the restic mover",
                },
            };
            engine::report_error(&mut state, &mut out, &error, generation, now, config);
            return finish(status, state, out, Requeue::AwaitChange, true);
        }
    };
    let arca = source.spec.arca.clone().unwrap_or_default();
    let timing = match Timing::new(
        source.spec.trigger.as_ref(),
        arca.time_zone.as_deref(),
        arca.jitter.as_deref(),
        arca.backup_window.as_ref(),
        owner.namespace.unwrap_or_default(),
        name,
    ) {
        Ok(timing) => timing,
        Err(error) => {
            let requeue =
                engine::report_error(&mut state, &mut out, &error, generation, now, config);
            return finish(status, state, out, requeue, true);
        }
    };
    let paused = source.spec.paused;

    // Never two Jobs: any beyond the first (by name) are leftovers and go.
    let mut jobs: Vec<&JobObserved> = observed.owned.jobs.iter().collect();
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    let expected_job = job_name(true, name);
    let job = jobs.iter().find(|j| j.name == expected_job).copied();
    for extra in jobs.iter().filter(|j| j.name != expected_job) {
        out.actions.push(Action::Delete {
            kind: ObjectKind::Job,
            name: extra.name.clone(),
        });
    }

    // DR work is not a sync: its Job is followed apart and touches no sync field.
    if let Some(job) = job.filter(|j| dr_job::is_dr_job(&j.actions)) {
        let mut status = status;
        let requeue = dr_job::follow(observed, &owner, job, &mut status, &mut out, now, config);
        return finish_with_rpo(status, state, out, requeue, &timing, arca.data_class, now);
    }

    // Idle: start a sync or wait.
    if state.last_sync_start_time.is_none() {
        if job.is_some() {
            // A Job without a sync in progress (status lost): adopt it as the sync.
            state.last_sync_start_time = Some(now);
        } else if paused {
            set_condition(
                &mut state,
                Reason::Paused,
                "paused: no sync will start".to_owned(),
                generation,
                now,
            );
            state.next_sync_time = timing.next_sync_time(state.last_sync_time);
            return finish_with_rpo(
                status,
                state,
                out,
                Requeue::AwaitChange,
                &timing,
                arca.data_class,
                now,
            );
        } else {
            match timing.idle(&state, now) {
                Idle::Wait(at) => {
                    set_condition(
                        &mut state,
                        timing.waiting_reason(),
                        waiting_message(&timing),
                        generation,
                        now,
                    );
                    state.next_sync_time = timing.next_sync_time(state.last_sync_time);
                    let requeue = at.map_or(Requeue::AwaitChange, |t| requeue_at(t, now));
                    let mut status = status;
                    let requeue = dr_job::start_if_due(
                        observed,
                        restic,
                        &owner,
                        &mut status,
                        &mut out,
                        requeue,
                        now,
                        config,
                    );
                    return finish_with_rpo(
                        status,
                        state,
                        out,
                        requeue,
                        &timing,
                        arca.data_class,
                        now,
                    );
                }
                Idle::Start => {
                    state.last_sync_start_time = Some(now);
                    state.next_sync_time = None;
                }
            }
        }
    }

    let requeue = match job {
        Some(job) => running(
            observed, job, &mut state, &mut out, &timing, restic, &owner, paused, now, config,
        ),
        None => prepare(
            observed, &mut state, &mut out, restic, &owner, paused, now, config,
        ),
    };
    let mut status = status;
    apply_result_side_effects(&mut status, job, &state, restic, now);
    let targets = replication::targets(&observed.source);
    replication::record(
        &mut status,
        targets,
        job,
        state.last_sync_time.unwrap_or(now),
        &mut out,
    );
    finish_with_rpo(status, state, out, requeue, &timing, arca.data_class, now)
}

fn waiting_message(timing: &Timing) -> String {
    match timing.waiting_reason() {
        Reason::WaitingForManual => "waiting for a new spec.trigger.manual".to_owned(),
        Reason::WaitingForSchedule => "waiting for the next scheduled sync".to_owned(),
        _ => "cleaning up before the next sync".to_owned(),
    }
}

/// No Job yet: make the point-in-time copy, the cache, the mover's RBAC, then the Job.
#[allow(clippy::too_many_arguments)]
fn prepare(
    observed: &SourceObserved,
    state: &mut SyncState,
    out: &mut Out,
    restic: &ReplicationSourceResticSpec,
    owner: &Owner<'_>,
    paused: bool,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let generation = observed.source.metadata.generation;
    if let Some(at) = state.retry_after.filter(|at| *at > now) {
        return requeue_at(at, now);
    }
    if paused {
        set_condition(
            state,
            Reason::Paused,
            "paused: the sync resumes when unpaused".to_owned(),
            generation,
            now,
        );
        return Requeue::AwaitChange;
    }
    let plan = match plan(observed, restic) {
        Ok(plan) => plan,
        Err(error) => return engine::report_error(state, out, &error, generation, now, config),
    };
    let hooks = observed
        .source
        .spec
        .arca
        .as_ref()
        .and_then(|a| a.hooks.as_ref());
    let has_pre = hooks.is_some_and(|h| h.pre_backup.is_some());
    let has_post = hooks.is_some_and(|h| h.post_backup.is_some());
    let owned = &observed.owned;
    let copy = copy_name(owner.name);

    // The point-in-time copy.
    let data_pvc = match plan.copy_method {
        CopyMethod::Direct | CopyMethod::None => {
            if has_pre {
                out.actions.push(Action::RunHook(HookPhase::PreBackup));
            }
            plan.source_pvc.clone()
        }
        CopyMethod::Clone => {
            if owned.pvc(&copy).is_none() {
                if has_pre {
                    out.actions.push(Action::RunHook(HookPhase::PreBackup));
                }
                let shape = PvcShape {
                    capacity: restic.capacity.clone().or_else(|| plan.source_size.clone()),
                    storage_class_name: restic
                        .storage_class_name
                        .clone()
                        .or_else(|| plan.source_class.clone()),
                    access_modes: restic
                        .access_modes
                        .clone()
                        .unwrap_or_else(|| plan.source_modes.clone()),
                    data_source: Some(TypedLocalObjectReference {
                        api_group: None,
                        kind: "PersistentVolumeClaim".to_owned(),
                        name: plan.source_pvc.clone(),
                    }),
                };
                out.actions
                    .push(Action::Apply(Object::PersistentVolumeClaim(Box::new(
                        objects::pvc(owner, &copy, shape, true),
                    ))));
                if has_post {
                    out.actions.push(Action::RunHook(HookPhase::PostBackup));
                }
                out.event(
                    EventType::Normal,
                    "PersistentVolumeClaimCreated",
                    "CreatePersistentVolumeClaim",
                    format!("clone {copy} of {} created", plan.source_pvc),
                );
            }
            copy.clone()
        }
        CopyMethod::Snapshot => {
            let Some(snapshot) = owned.snapshot(&copy) else {
                if has_pre {
                    out.actions.push(Action::RunHook(HookPhase::PreBackup));
                }
                let snapshot = objects::volume_snapshot(
                    owner,
                    &copy,
                    &plan.source_pvc,
                    restic.volume_snapshot_class_name.clone(),
                    true,
                );
                out.actions
                    .push(Action::Apply(Object::VolumeSnapshot(Box::new(snapshot))));
                out.event(
                    EventType::Normal,
                    "VolumeSnapshotCreated",
                    "CreateVolumeSnapshot",
                    format!("snapshot {copy} of {} created", plan.source_pvc),
                );
                set_condition(
                    state,
                    Reason::SyncInProgress,
                    "taking a snapshot of the source".to_owned(),
                    generation,
                    now,
                );
                return Requeue::After(config.poll_interval);
            };
            if !snapshot.ready_to_use {
                set_condition(
                    state,
                    Reason::SyncInProgress,
                    format!("waiting for VolumeSnapshot {copy} to be ready"),
                    generation,
                    now,
                );
                return Requeue::After(config.poll_interval);
            }
            if owned.pvc(&copy).is_none() {
                // The snapshot is taken (ready): release the application, once per sync (the
                // volume from the snapshot is made in the same step).
                if has_post {
                    out.actions.push(Action::RunHook(HookPhase::PostBackup));
                }
                let shape = PvcShape {
                    capacity: restic
                        .capacity
                        .clone()
                        .or_else(|| snapshot.restore_size.clone())
                        .or_else(|| plan.source_size.clone()),
                    storage_class_name: restic
                        .storage_class_name
                        .clone()
                        .or_else(|| plan.source_class.clone()),
                    access_modes: restic
                        .access_modes
                        .clone()
                        .unwrap_or_else(|| plan.source_modes.clone()),
                    data_source: Some(TypedLocalObjectReference {
                        api_group: Some("snapshot.storage.k8s.io".to_owned()),
                        kind: "VolumeSnapshot".to_owned(),
                        name: copy.clone(),
                    }),
                };
                out.actions
                    .push(Action::Apply(Object::PersistentVolumeClaim(Box::new(
                        objects::pvc(owner, &copy, shape, true),
                    ))));
                out.event(
                    EventType::Normal,
                    "PersistentVolumeClaimCreated",
                    "CreatePersistentVolumeClaim",
                    format!("volume {copy} created from snapshot {copy}"),
                );
            }
            copy.clone()
        }
    };

    // The cache.
    let cache = cache_pvc_name(true, owner.name);
    if owned.pvc(&cache).is_none() {
        let shape = PvcShape {
            capacity: Some(
                restic
                    .cache_capacity
                    .clone()
                    .unwrap_or_else(|| Quantity(DEFAULT_CACHE_CAPACITY.to_owned())),
            ),
            storage_class_name: restic
                .cache_storage_class_name
                .clone()
                .or_else(|| restic.storage_class_name.clone())
                .or_else(|| plan.source_class.clone()),
            access_modes: restic
                .cache_access_modes
                .clone()
                .or_else(|| restic.access_modes.clone())
                .unwrap_or_else(|| plan.source_modes.clone()),
            data_source: None,
        };
        out.actions
            .push(Action::Apply(Object::PersistentVolumeClaim(Box::new(
                objects::pvc(owner, &cache, shape, false),
            ))));
    }

    let account = engine::ensure_rbac(
        owner,
        true,
        restic.mover.mover_service_account.as_deref(),
        owned,
        out,
    );

    // The Job.
    let mut actions = Vec::new();
    let unlock = restic.unlock.as_deref().filter(|u| !u.is_empty());
    let last_unlocked = observed
        .source
        .status
        .as_ref()
        .and_then(|s| s.restic.as_ref())
        .and_then(|r| r.last_unlocked.as_deref());
    if unlock.is_some() && unlock != last_unlocked {
        actions.push("unlock");
    }
    actions.push("backup");
    let mut env = vec![(
        "FORGET_OPTIONS",
        ResticRetainPolicy::forget_options(restic.retain.as_ref()),
    )];
    if prune_due(&observed.source, restic, now) {
        actions.push("prune");
    }
    if let Some(verify) = verify_due(&observed.source, now) {
        match verify {
            Some(subset) => {
                actions.push("check");
                env.push(("ARCA_CHECK_READ_DATA_SUBSET", subset));
            }
            None => actions.push("verify"),
        }
    }
    let mut job = objects::job(
        owner,
        MoverJob {
            name: job_name(true, owner.name),
            actions,
            env,
            data_pvc,
            data_read_only: true,
            cache_pvc: cache,
            service_account: account,
            mover: &restic.mover,
            custom_ca: restic.custom_ca.as_ref(),
            secret: plan.secret,
            paused,
        },
        config,
    );
    replication::add_to_job(
        &mut job,
        &replication::per_backup(replication::targets(&observed.source)),
    );
    out.actions.push(Action::Apply(Object::Job(Box::new(job))));
    out.event(
        EventType::Normal,
        "TransferStarted",
        "CreateMover",
        format!("mover Job {} created", job_name(true, owner.name)),
    );
    set_condition(
        state,
        Reason::SyncInProgress,
        "Synchronization in-progress".to_owned(),
        generation,
        now,
    );
    Requeue::After(config.poll_interval)
}

/// The Job exists: hold it while paused, wait while it runs, finish when it ended.
#[allow(clippy::too_many_arguments)]
fn running(
    observed: &SourceObserved,
    job: &JobObserved,
    state: &mut SyncState,
    out: &mut Out,
    timing: &Timing,
    restic: &ReplicationSourceResticSpec,
    owner: &Owner<'_>,
    paused: bool,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let generation = observed.source.metadata.generation;
    match job.phase {
        JobPhase::Active => {
            let wanted = if paused { 0 } else { 1 };
            if job.parallelism != wanted {
                out.actions.push(Action::SetJobParallelism {
                    name: job.name.clone(),
                    parallelism: wanted,
                });
            }
            if job.progress.is_some() {
                state.progress = job.progress.clone();
            }
            let (reason, message) = if paused {
                (
                    Reason::Paused,
                    "paused: the mover is held (parallelism 0)".to_owned(),
                )
            } else {
                (
                    Reason::SyncInProgress,
                    "Synchronization in-progress".to_owned(),
                )
            };
            set_condition(state, reason, message, generation, now);
            if paused {
                Requeue::AwaitChange
            } else {
                Requeue::After(config.poll_interval)
            }
        }
        // A partial success (exit 3) ends the Job as failed, with a success result.
        JobPhase::Succeeded | JobPhase::Failed
            if job.result.as_ref().is_some_and(|r| r.success) =>
        {
            let result = job.result.as_ref().map(summary_logs);
            engine::complete(state, out, timing, job.logs.clone().or(result), now);
            out.actions.push(Action::Delete {
                kind: ObjectKind::Job,
                name: job.name.clone(),
            });
            let hooks = observed
                .source
                .spec
                .arca
                .as_ref()
                .and_then(|a| a.hooks.as_ref());
            let direct = matches!(
                restic.copy_method.map(CopyMethod::normalized),
                Some(CopyMethod::Direct)
            );
            if direct && hooks.is_some_and(|h| h.post_backup.is_some()) {
                out.actions.push(Action::RunHook(HookPhase::PostBackup));
            }
            engine::cleanup_temporaries(owner, out);
            if let Some(result) = &job.result {
                if result.partial {
                    out.event(
                        EventType::Warning,
                        "PartialBackup",
                        "CreateMover",
                        "some files could not be read; the snapshot was written without them"
                            .to_owned(),
                    );
                }
                if result.source_empty {
                    out.event(
                        EventType::Warning,
                        "SourceEmpty",
                        "CreateMover",
                        "the source volume is empty; no snapshot was written".to_owned(),
                    );
                }
            }
            out.event(
                EventType::Normal,
                "SyncCompleted",
                "DeleteMover",
                format!(
                    "sync completed in {}",
                    state.last_sync_duration.clone().unwrap_or_default()
                ),
            );
            set_condition(
                state,
                timing.waiting_reason(),
                waiting_message(timing),
                generation,
                now,
            );
            match (timing.waiting_reason(), state.next_sync_time) {
                (Reason::CleaningUp, _) => Requeue::After(SignedDuration::ZERO),
                (_, Some(next)) => requeue_at(next, now),
                (_, None) => Requeue::AwaitChange,
            }
        }
        JobPhase::Succeeded | JobPhase::Failed => {
            out.actions.push(Action::Delete {
                kind: ObjectKind::Job,
                name: job.name.clone(),
            });
            engine::fail(state, out, job, generation, now, config)
        }
    }
}

/// The one-line summary of a result, when the pod's log is not at hand.
fn summary_logs(result: &AgentResult) -> String {
    match &result.snapshot_id {
        Some(id) => format!("snapshot {id} saved"),
        None if result.source_empty => "Directory is empty skipping backup".to_owned(),
        None => "no snapshot".to_owned(),
    }
}

/// What a sync needs that must exist before anything is made.
struct Plan<'a> {
    copy_method: CopyMethod,
    source_pvc: String,
    source_size: Option<Quantity>,
    source_class: Option<String>,
    source_modes: Vec<String>,
    secret: &'a super::SecretObserved,
}

fn plan<'a>(
    observed: &'a SourceObserved,
    restic: &ReplicationSourceResticSpec,
) -> Result<Plan<'a>, Error> {
    let copy_method =
        restic
            .copy_method
            .map(CopyMethod::normalized)
            .ok_or(Error::MissingField {
                field: "spec.restic.copyMethod",
                reason: " (Direct, Clone or Snapshot)",
            })?;
    let source_name = observed
        .source
        .spec
        .source_pvc
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or(Error::MissingField {
            field: "spec.sourcePVC",
            reason: "",
        })?;
    let source = observed
        .source_pvc
        .as_ref()
        .filter(|p| p.name == source_name)
        .ok_or_else(|| Error::NotFound {
            kind: "PersistentVolumeClaim",
            name: source_name.clone(),
        })?;
    if restic.repository.is_empty() {
        return Err(Error::MissingField {
            field: "spec.restic.repository",
            reason: "",
        });
    }
    let secret = engine::check_secret(observed.repository_secret.as_ref(), &restic.repository)?;
    replication::check_targets(observed, &restic.repository)?;
    if restic
        .custom_ca
        .as_ref()
        .is_some_and(|ca| ca.is_configured())
        && !observed.custom_ca_found
    {
        return Err(Error::NotFound {
            kind: "custom CA",
            name: engine::describe_ca(restic.custom_ca.as_ref()),
        });
    }
    Ok(Plan {
        copy_method,
        source_pvc: source_name,
        source_size: source.capacity.clone().or_else(|| source.requested.clone()),
        source_class: source.storage_class_name.clone(),
        source_modes: source.access_modes.clone(),
        secret,
    })
}

/// VolSync's rule: prune every `pruneIntervalDays`, the first one that long after creation.
fn prune_due(
    source: &ReplicationSource,
    restic: &ReplicationSourceResticSpec,
    now: Timestamp,
) -> bool {
    let last = source
        .status
        .as_ref()
        .and_then(|s| s.restic.as_ref())
        .and_then(|r| ts(&r.last_pruned))
        .or_else(|| ts(&source.metadata.creation_timestamp));
    let days = i64::from(restic.prune_interval_days_or_default().max(1));
    last.is_some_and(|last| {
        last.saturating_add(SignedDuration::from_hours(24 * days))
            .is_ok_and(|due| due <= now)
    })
}

/// Whether `spec.arca.verify` has fallen due: `Some(read_data_subset)` if so.
fn verify_due(source: &ReplicationSource, now: Timestamp) -> Option<Option<String>> {
    let verify = source.spec.arca.as_ref()?.verify.as_ref()?;
    let schedule = arca_sched::Schedule::parse(&verify.schedule).ok()?;
    let last = source
        .status
        .as_ref()
        .and_then(|s| s.arca.as_ref())
        .and_then(|a| ts(&a.last_verified))
        .or_else(|| ts(&source.metadata.creation_timestamp))?;
    let due = schedule.next_after(last)?;
    (due <= now).then(|| verify.read_data_subset.clone())
}

/// Writes what a finished Job's actions and result mean for `status.restic` and `status.arca`.
fn apply_result_side_effects(
    status: &mut ReplicationSourceStatus,
    job: Option<&JobObserved>,
    state: &SyncState,
    restic: &ReplicationSourceResticSpec,
    now: Timestamp,
) {
    let Some(job) = job else { return };
    let Some(result) = job
        .result
        .as_ref()
        .filter(|r| r.success && job.phase != JobPhase::Active)
    else {
        return;
    };
    // Completed in this decision: last_sync_time is now (or later, never earlier).
    let done = state.last_sync_time.unwrap_or(now);
    let restic_status = status
        .restic
        .get_or_insert_with(ReplicationSourceResticStatus::default);
    if job.actions.iter().any(|a| a == "prune") {
        restic_status.last_pruned = Some(time(engine::not_before(
            ts(&restic_status.last_pruned),
            done,
        )));
    }
    if job.actions.iter().any(|a| a == "unlock") {
        restic_status.last_unlocked = restic.unlock.clone();
    }
    if restic.unlock.as_deref().is_none_or(str::is_empty) {
        restic_status.last_unlocked = None;
    }
    if *restic_status == ReplicationSourceResticStatus::default() {
        status.restic = None;
    }
    let arca = status.arca.get_or_insert_with(ArcaSourceStatus::default);
    if job.actions.iter().any(|a| a == "verify" || a == "check") {
        arca.last_verified = Some(time(engine::not_before(ts(&arca.last_verified), done)));
    }
    if result.snapshot_id.is_some() || result.source_empty {
        arca.last_snapshot_id = result.snapshot_id.clone().or(arca.last_snapshot_id.take());
    }
    arca.files_new = result.files_new;
    arca.files_changed = result.files_changed;
    arca.files_unmodified = result.files_unmodified;
    arca.bytes_processed = result.bytes_processed;
    arca.bytes_added = result.bytes_added;
    arca.repository_size_bytes = result.repository_size.or(arca.repository_size_bytes);
    arca.partial = result.partial;
    arca.source_empty = result.source_empty;
}

pub(super) fn state_of(status: &ReplicationSourceStatus) -> SyncState {
    let arca = status.arca.as_ref();
    SyncState {
        last_sync_time: ts(&status.last_sync_time),
        last_sync_start_time: ts(&status.last_sync_start_time),
        last_sync_duration: status.last_sync_duration.clone(),
        next_sync_time: ts(&status.next_sync_time),
        last_manual_sync: status.last_manual_sync.clone(),
        latest_mover_status: status.latest_mover_status.clone(),
        conditions: status.conditions.clone().unwrap_or_default(),
        consecutive_failures: arca.and_then(|a| a.consecutive_failures),
        retry_after: arca.and_then(|a| ts(&a.retry_after)),
        progress: arca.and_then(|a| a.progress.clone()),
    }
}

pub(super) fn store(state: SyncState, status: &mut ReplicationSourceStatus) {
    status.last_sync_time = opt_time(state.last_sync_time);
    status.last_sync_start_time = opt_time(state.last_sync_start_time);
    status.last_sync_duration = state.last_sync_duration;
    status.next_sync_time = opt_time(state.next_sync_time);
    status.last_manual_sync = state.last_manual_sync;
    status.latest_mover_status = state.latest_mover_status;
    status.conditions = (!state.conditions.is_empty()).then_some(state.conditions);
    let touches_arca = state.consecutive_failures.is_some()
        || state.retry_after.is_some()
        || state.progress.is_some();
    if touches_arca || status.arca.is_some() {
        let arca = status.arca.get_or_insert_with(ArcaSourceStatus::default);
        arca.consecutive_failures = state.consecutive_failures;
        arca.retry_after = opt_time(state.retry_after);
        arca.progress = state.progress;
    }
}

fn finish(
    mut status: ReplicationSourceStatus,
    state: SyncState,
    out: Out,
    requeue: Requeue,
    out_of_sync: bool,
) -> SourceDecision {
    store(state, &mut status);
    SourceDecision {
        actions: out.actions,
        status,
        events: out.events,
        requeue,
        report: out.report,
        out_of_sync,
    }
}

/// Finishes a decision for a restic object: the RPO state (and a requeue when it will flip)
/// and whether the object is out of sync, from the final state.
fn finish_with_rpo(
    mut status: ReplicationSourceStatus,
    state: SyncState,
    out: Out,
    requeue: Requeue,
    timing: &Timing,
    class: Option<DataClass>,
    now: Timestamp,
) -> SourceDecision {
    let class = class.unwrap_or_default();
    let evaluated = arca_sched::RpoStatus::evaluate(
        arca_sched::DataClass::from(class),
        state.last_sync_time,
        now,
    );
    let arca = status.arca.get_or_insert_with(ArcaSourceStatus::default);
    arca.rpo = Some(RpoStatus {
        data_class: class,
        state: if evaluated.within {
            RpoState::Met
        } else {
            RpoState::Breached
        },
        breach_time: evaluated.breaches_at.map(time),
    });
    let requeue = match evaluated.breaches_at {
        Some(at) if evaluated.within => sooner(requeue, requeue_at(at, now)),
        _ => requeue,
    };
    let out_of_sync = timing.out_of_sync(&state, now);
    finish(status, state, out, requeue, out_of_sync)
}

/// Whether `decision` starts a new sync of the observed source: it was idle, no mover Job
/// exists, and the decision records a sync start. Such a decision needs a mover slot
/// ([`crate::queue::claim_slot`]) before it is carried out.
pub fn starts_sync(observed: &SourceObserved, decision: &SourceDecision) -> bool {
    let was_idle = observed
        .source
        .status
        .as_ref()
        .is_none_or(|s| s.last_sync_start_time.is_none());
    was_idle && observed.owned.jobs.is_empty() && decision.status.last_sync_start_time.is_some()
}

/// The decision for a source whose sync wants to start but got no mover slot: nothing is made
/// and the sync stays unstarted (the next decision asks again); the `Synchronizing` condition
/// says `WaitingForSlot`; the finalizer is still added; look again after `retry`. Any other
/// decision is returned unchanged.
pub fn hold_for_slot(
    observed: &SourceObserved,
    decision: SourceDecision,
    now: Timestamp,
    retry: SignedDuration,
) -> SourceDecision {
    if !starts_sync(observed, &decision) {
        return decision;
    }
    let mut status = observed.source.status.clone().unwrap_or_default();
    let mut state = state_of(&status);
    set_condition(
        &mut state,
        Reason::WaitingForSlot,
        "due, waiting for a free mover slot (the controller's concurrency limits)".to_owned(),
        observed.source.metadata.generation,
        now,
    );
    store(state, &mut status);
    if let Some(rpo) = decision.status.arca.as_ref().and_then(|a| a.rpo.clone()) {
        status
            .arca
            .get_or_insert_with(ArcaSourceStatus::default)
            .rpo = Some(rpo);
    }
    SourceDecision {
        actions: decision
            .actions
            .into_iter()
            .filter(|a| *a == Action::AddFinalizer)
            .collect(),
        status,
        events: Vec::new(),
        requeue: Requeue::After(retry),
        report: None,
        out_of_sync: decision.out_of_sync,
    }
}
