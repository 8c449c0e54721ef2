//! The decision for a ReplicationDestination: restore the volume when the trigger says so.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::engine::{
    self, Idle, Out, Reason, SyncState, Timing, opt_time, requeue_at, set_condition, ts,
};
use super::names::{
    FINALIZER, cache_pvc_name, destination_pvc_name, image_snapshot_name, job_name,
};
use super::objects::{self, DEFAULT_CACHE_CAPACITY, MoverJob, Owner, PvcShape};
use super::observed::{DestinationObserved, JobObserved, JobPhase};
use super::{
    Action, ControllerConfig, DestinationDecision, EventType, Object, ObjectKind, Requeue,
};
use crate::Error;
use crate::api::{
    ArcaDestinationStatus, CopyMethod, MoverKind, ReplicationDestinationResticSpec,
    ReplicationDestinationStatus,
};

/// Decides what to do about a ReplicationDestination (see the [module docs](super)).
pub fn reconcile_destination(
    observed: &DestinationObserved,
    now: Timestamp,
    config: &ControllerConfig,
) -> DestinationDecision {
    let destination = &observed.destination;
    let meta = &destination.metadata;
    let status = destination.status.clone().unwrap_or_default();
    let mut state = state_of(&status);
    let mut out = Out::default();
    let name = meta.name.as_deref().unwrap_or_default();
    let owner = Owner {
        kind: "ReplicationDestination",
        plural: "replicationdestinations",
        name,
        namespace: meta.namespace.as_deref(),
        uid: meta.uid.as_deref().unwrap_or_default(),
    };
    let has_finalizer = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    let mover = destination.spec.mover_kind();
    let generation = meta.generation;

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
    let Some(restic) = &destination.spec.restic else {
        let error = match mover {
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
    };
    let arca = destination.spec.arca.clone().unwrap_or_default();
    let timing = match Timing::new(
        destination.spec.trigger.as_ref(),
        arca.time_zone.as_deref(),
        arca.jitter.as_deref(),
        None,
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
    let paused = destination.spec.paused;

    let expected_job = job_name(false, name);
    let job = observed.owned.jobs.iter().find(|j| j.name == expected_job);
    for extra in observed
        .owned
        .jobs
        .iter()
        .filter(|j| j.name != expected_job)
    {
        out.actions.push(Action::Delete {
            kind: ObjectKind::Job,
            name: extra.name.clone(),
        });
    }

    if state.last_sync_start_time.is_none() {
        if job.is_some() {
            state.last_sync_start_time = Some(now);
        } else if paused {
            set_condition(
                &mut state,
                Reason::Paused,
                "paused: no restore will start".to_owned(),
                generation,
                now,
            );
            state.next_sync_time = timing.next_sync_time(state.last_sync_time);
            let out_of_sync = timing.out_of_sync(&state, now);
            return finish(status, state, out, Requeue::AwaitChange, out_of_sync);
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
                    let out_of_sync = timing.out_of_sync(&state, now);
                    let requeue = at.map_or(Requeue::AwaitChange, |t| requeue_at(t, now));
                    return finish(status, state, out, requeue, out_of_sync);
                }
                Idle::Start => {
                    state.last_sync_start_time = Some(now);
                    state.next_sync_time = None;
                }
            }
        }
    }

    let mut status = status;
    let requeue = match job {
        None => prepare(
            observed, restic, &owner, &mut state, &mut out, paused, now, config,
        ),
        Some(job) => running(
            observed,
            restic,
            job,
            &owner,
            &mut state,
            &mut status,
            &mut out,
            &timing,
            paused,
            now,
            config,
        ),
    };
    let out_of_sync = timing.out_of_sync(&state, now);
    finish(status, state, out, requeue, out_of_sync)
}

fn waiting_message(timing: &Timing) -> String {
    match timing.waiting_reason() {
        Reason::WaitingForManual => "waiting for a new spec.trigger.manual".to_owned(),
        Reason::WaitingForSchedule => "waiting for the next scheduled restore".to_owned(),
        _ => "cleaning up before the next restore".to_owned(),
    }
}

/// The volume restored into: the given `destinationPVC`, or the one the operator provisions.
fn data_pvc_name(restic: &ReplicationDestinationResticSpec, name: &str) -> (String, bool) {
    match restic.destination_pvc.as_deref().filter(|p| !p.is_empty()) {
        Some(given) => (given.to_owned(), false),
        None => (destination_pvc_name(name), true),
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    observed: &DestinationObserved,
    restic: &ReplicationDestinationResticSpec,
    owner: &Owner<'_>,
    state: &mut SyncState,
    out: &mut Out,
    paused: bool,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let generation = observed.destination.metadata.generation;
    if let Some(at) = state.retry_after.filter(|at| *at > now) {
        return requeue_at(at, now);
    }
    if paused {
        set_condition(
            state,
            Reason::Paused,
            "paused: the restore resumes when unpaused".to_owned(),
            generation,
            now,
        );
        return Requeue::AwaitChange;
    }
    let (secret, restore_as_of) = match validate(observed, restic) {
        Ok(checked) => checked,
        Err(error) => return engine::report_error(state, out, &error, generation, now, config),
    };
    let owned = &observed.owned;
    let (data_pvc, provisioned) = data_pvc_name(restic, owner.name);
    let data_modes;
    let data_class;
    if provisioned {
        let (Some(capacity), Some(modes)) = (restic.capacity.clone(), restic.access_modes.clone())
        else {
            let error = Error::MissingField {
                field: "spec.restic.capacity and spec.restic.accessModes",
                reason: " without spec.restic.destinationPVC",
            };
            return engine::report_error(state, out, &error, generation, now, config);
        };
        data_modes = modes.clone();
        data_class = restic.storage_class_name.clone();
        if owned.pvc(&data_pvc).is_none() {
            let shape = PvcShape {
                capacity: Some(capacity),
                storage_class_name: restic.storage_class_name.clone(),
                access_modes: modes,
                data_source: None,
            };
            out.actions
                .push(Action::Apply(Object::PersistentVolumeClaim(Box::new(
                    objects::pvc(owner, &data_pvc, shape, false),
                ))));
            out.event(
                EventType::Normal,
                "PersistentVolumeClaimCreated",
                "CreatePersistentVolumeClaim",
                format!("volume {data_pvc} provisioned for the restore"),
            );
        }
    } else {
        let Some(existing) = observed
            .destination_pvc
            .as_ref()
            .filter(|p| p.name == data_pvc)
        else {
            let error = Error::NotFound {
                kind: "PersistentVolumeClaim",
                name: data_pvc,
            };
            return engine::report_error(state, out, &error, generation, now, config);
        };
        data_modes = existing.access_modes.clone();
        data_class = existing.storage_class_name.clone();
    }

    let cache = cache_pvc_name(false, owner.name);
    if owned.pvc(&cache).is_none() {
        let modes = restic
            .cache_access_modes
            .clone()
            .or_else(|| restic.access_modes.clone())
            .unwrap_or(data_modes);
        let shape = PvcShape {
            capacity: Some(
                restic
                    .cache_capacity
                    .clone()
                    .unwrap_or_else(|| Quantity(DEFAULT_CACHE_CAPACITY.to_owned())),
            ),
            storage_class_name: restic.cache_storage_class_name.clone().or(data_class),
            access_modes: if modes.is_empty() {
                vec!["ReadWriteOnce".to_owned()]
            } else {
                modes
            },
            data_source: None,
        };
        out.actions
            .push(Action::Apply(Object::PersistentVolumeClaim(Box::new(
                objects::pvc(owner, &cache, shape, false),
            ))));
    }
    let account = engine::ensure_rbac(
        owner,
        false,
        restic.mover.mover_service_account.as_deref(),
        owned,
        out,
    );

    let mut env = Vec::new();
    if let Some(as_of) = restore_as_of {
        env.push(("RESTORE_AS_OF", as_of));
    }
    let source = observed
        .destination
        .spec
        .arca
        .as_ref()
        .and_then(|arca| arca.source.as_deref());
    if let Some(source) = source.filter(|s| !s.is_empty()) {
        env.push((objects::SOURCE_ENV, source.to_owned()));
    }
    env.push(("SELECT_PREVIOUS", restic.previous.unwrap_or(0).to_string()));
    env.push((
        "RESTORE_OPTIONS",
        if restic.enable_file_deletion {
            "--delete".to_owned()
        } else {
            String::new()
        },
    ));
    let job = objects::job(
        owner,
        MoverJob {
            name: job_name(false, owner.name),
            actions: vec!["restore"],
            env,
            data_pvc,
            data_read_only: false,
            cache_pvc: cache,
            service_account: account,
            mover: &restic.mover,
            custom_ca: restic.custom_ca.as_ref(),
            secret,
            paused,
        },
        config,
    );
    out.actions.push(Action::Apply(Object::Job(Box::new(job))));
    out.event(
        EventType::Normal,
        "TransferStarted",
        "CreateMover",
        format!("mover Job {} created", job_name(false, owner.name)),
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

/// The Secret, the CA and `restoreAsOf` (normalised to RFC 3339 in UTC).
fn validate<'a>(
    observed: &'a DestinationObserved,
    restic: &ReplicationDestinationResticSpec,
) -> Result<(&'a super::SecretObserved, Option<String>), Error> {
    if restic.repository.is_empty() {
        return Err(Error::MissingField {
            field: "spec.restic.repository",
            reason: "",
        });
    }
    let secret = engine::check_secret(observed.repository_secret.as_ref(), &restic.repository)?;
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
    if let Some(previous) = restic.previous.filter(|p| *p < 0) {
        return Err(Error::Unsupported {
            field: "spec.restic.previous",
            value: previous.to_string(),
            reason: "must not be negative",
        });
    }
    let as_of = match restic.restore_as_of.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => {
            let parsed: Timestamp = text.parse().map_err(|_| Error::InvalidTime {
                field: "spec.restic.restoreAsOf",
                value: text.to_owned(),
            })?;
            Some(parsed.to_string())
        }
    };
    if let Some(method) = restic
        .copy_method
        .map(CopyMethod::normalized)
        .filter(|m| *m == CopyMethod::Clone)
    {
        return Err(Error::Unsupported {
            field: "spec.restic.copyMethod",
            value: format!("{method:?}"),
            reason: "a destination takes Direct or Snapshot",
        });
    }
    Ok((secret, as_of))
}

#[allow(clippy::too_many_arguments)]
fn running(
    observed: &DestinationObserved,
    restic: &ReplicationDestinationResticSpec,
    job: &JobObserved,
    owner: &Owner<'_>,
    state: &mut SyncState,
    status: &mut ReplicationDestinationStatus,
    out: &mut Out,
    timing: &Timing,
    paused: bool,
    now: Timestamp,
    config: &ControllerConfig,
) -> Requeue {
    let generation = observed.destination.metadata.generation;
    let succeeded =
        job.phase == JobPhase::Succeeded && job.result.as_ref().is_some_and(|r| r.success);
    if job.phase == JobPhase::Active {
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
        if paused {
            set_condition(
                state,
                Reason::Paused,
                "paused: the mover is held (parallelism 0)".to_owned(),
                generation,
                now,
            );
            return Requeue::AwaitChange;
        }
        set_condition(
            state,
            Reason::SyncInProgress,
            "Synchronization in-progress".to_owned(),
            generation,
            now,
        );
        return Requeue::After(config.poll_interval);
    }
    if !succeeded {
        out.actions.push(Action::Delete {
            kind: ObjectKind::Job,
            name: job.name.clone(),
        });
        return engine::fail(state, out, job, generation, now, config);
    }
    let Some(result) = job.result.as_ref() else {
        return Requeue::After(config.poll_interval);
    };
    let (data_pvc, provisioned) = data_pvc_name(restic, owner.name);
    let snapshot_method =
        restic.copy_method.map(CopyMethod::normalized) == Some(CopyMethod::Snapshot);
    let restored = result.snapshot_id.is_some();

    // The image: a snapshot of the restored volume (taken before the Job is deleted, so its name,
    // from the Job's finish time, stays the same from one reconcile to the next), or the volume.
    let image = if !restored {
        None
    } else if snapshot_method {
        let finished = job
            .finished_at
            .or(state.last_sync_start_time)
            .unwrap_or(now);
        let snapshot_name = image_snapshot_name(&data_pvc, finished);
        match observed.owned.snapshot(&snapshot_name) {
            None => {
                let snapshot = objects::volume_snapshot(
                    owner,
                    &snapshot_name,
                    &data_pvc,
                    restic.volume_snapshot_class_name.clone(),
                    false,
                );
                out.actions
                    .push(Action::Apply(Object::VolumeSnapshot(Box::new(snapshot))));
                out.event(
                    EventType::Normal,
                    "VolumeSnapshotCreated",
                    "CreateVolumeSnapshot",
                    format!("snapshot {snapshot_name} of the restored volume created"),
                );
                set_condition(
                    state,
                    Reason::SyncInProgress,
                    format!("taking snapshot {snapshot_name} of the restored volume"),
                    generation,
                    now,
                );
                return Requeue::After(config.poll_interval);
            }
            Some(snapshot) if !snapshot.ready_to_use => {
                set_condition(
                    state,
                    Reason::SyncInProgress,
                    format!("waiting for VolumeSnapshot {snapshot_name} to be ready"),
                    generation,
                    now,
                );
                return Requeue::After(config.poll_interval);
            }
            Some(_) => Some(TypedLocalObjectReference {
                api_group: Some("snapshot.storage.k8s.io".to_owned()),
                kind: "VolumeSnapshot".to_owned(),
                name: snapshot_name,
            }),
        }
    } else {
        Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".to_owned(),
            name: data_pvc.clone(),
        })
    };

    engine::complete(
        state,
        out,
        timing,
        job.logs
            .clone()
            .or_else(|| summary(result.snapshot_id.as_deref())),
        now,
    );
    out.actions.push(Action::Delete {
        kind: ObjectKind::Job,
        name: job.name.clone(),
    });
    if let Some(image) = image {
        // Only the newest image snapshot is kept (unless the user labelled the old one to keep).
        let old = status
            .latest_image
            .as_ref()
            .filter(|old| old.kind == "VolumeSnapshot" && old.name != image.name);
        if let Some(old) = old
            && observed
                .owned
                .snapshot(&old.name)
                .is_some_and(|s| !s.do_not_delete)
        {
            out.actions.push(Action::Delete {
                kind: ObjectKind::VolumeSnapshot,
                name: old.name.clone(),
            });
        }
        status.latest_image = Some(image);
    } else {
        out.event(
            EventType::Warning,
            "NoEligibleSnapshot",
            "CreateMover",
            "no snapshot matched; the volume was left as it was and latestImage is unchanged"
                .to_owned(),
        );
    }
    engine::cleanup_temporaries(owner, out);
    if restic.cleanup_cache_pvc {
        out.actions.push(Action::Delete {
            kind: ObjectKind::PersistentVolumeClaim,
            name: cache_pvc_name(false, owner.name),
        });
    }
    if restic.cleanup_temp_pvc && provisioned && snapshot_method && restored {
        out.actions.push(Action::Delete {
            kind: ObjectKind::PersistentVolumeClaim,
            name: data_pvc,
        });
    }
    let arca = status
        .arca
        .get_or_insert_with(ArcaDestinationStatus::default);
    if restored {
        arca.last_snapshot_id = result.snapshot_id.clone();
        arca.files_restored = result.files_restored;
        arca.bytes_restored = result.bytes_processed;
    }
    arca.no_eligible_snapshot = !restored;
    out.event(
        EventType::Normal,
        "SyncCompleted",
        "DeleteMover",
        format!(
            "restore completed in {}",
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
        (Reason::CleaningUp, _) => Requeue::After(jiff::SignedDuration::ZERO),
        (_, Some(next)) => requeue_at(next, now),
        (_, None) => Requeue::AwaitChange,
    }
}

fn summary(snapshot: Option<&str>) -> Option<String> {
    Some(match snapshot {
        Some(id) => format!("restored snapshot {id}"),
        None => "No eligible snapshots found".to_owned(),
    })
}

fn state_of(status: &ReplicationDestinationStatus) -> SyncState {
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

fn finish(
    mut status: ReplicationDestinationStatus,
    state: SyncState,
    out: Out,
    requeue: Requeue,
    out_of_sync: bool,
) -> DestinationDecision {
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
        let arca = status
            .arca
            .get_or_insert_with(ArcaDestinationStatus::default);
        arca.consecutive_failures = state.consecutive_failures;
        arca.retry_after = opt_time(state.retry_after);
        arca.progress = state.progress;
    }
    DestinationDecision {
        actions: out.actions,
        status,
        events: out.events,
        requeue,
        report: out.report,
        out_of_sync,
    }
}
