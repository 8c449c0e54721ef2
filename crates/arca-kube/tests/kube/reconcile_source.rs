//! Table tests of `reconcile_source`: one observed state per branch of VolSync's state machine
//! and of Arca's additions, and what the decision must be.

use arca_kube::api::{
    ArcaSourceSpec, BackupWindow, CopyMethod, DataClass, Hook, Hooks, MoverResult, RpoState,
    TriggerSpec, VerifySpec,
};
use arca_kube::reconcile::{
    AgentResult, ErrorClass, FINALIZER, HookPhase, JobPhase, ObjectKind, Requeue, SyncOutcome,
    cache_pvc_name, copy_name, job_name,
};
use arca_kube::{Action, reconcile_source};
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use crate::common::*;

const NAME: &str = "example-app-backup";

fn t0() -> jiff::Timestamp {
    ts("2026-01-02T02:00:30Z")
}

#[test]
fn a_new_object_gets_the_finalizer_and_syncs_at_once_with_a_snapshot() {
    let mut source = seed_source();
    source.metadata.finalizers = None;
    let decision = reconcile_source(&source_observed(source), t0(), &config());
    assert_eq!(decision.actions[0], Action::AddFinalizer);
    assert_eq!(
        applied(&decision.actions),
        vec![format!("VolumeSnapshot/{}", copy_name(NAME))]
    );
    let snapshot = decision
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apply(arca_kube::reconcile::Object::VolumeSnapshot(s)) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        snapshot.spec.source.persistent_volume_claim_name.as_deref(),
        Some("example-app-data")
    );
    assert_eq!(
        snapshot.spec.volume_snapshot_class_name.as_deref(),
        Some("ceph-block")
    );
    let labels = snapshot.metadata.labels.as_ref().unwrap();
    assert_eq!(
        labels.get("volsync.backube/cleanup").map(String::as_str),
        Some("uid-src")
    );
    assert_eq!(
        snapshot.metadata.owner_references.as_ref().unwrap()[0].uid,
        "uid-src"
    );
    assert_eq!(decision.status.last_sync_start_time, Some(Time(t0())));
    assert_eq!(condition_reason(&decision.status), "SyncInProgress");
    assert_eq!(decision.requeue, Requeue::After(config().poll_interval));
    assert!(decision.out_of_sync, "never synced");
    assert!(
        decision
            .events
            .iter()
            .any(|e| e.reason == "VolumeSnapshotCreated")
    );
}

fn syncing(source: &mut arca_kube::api::ReplicationSource) {
    source
        .status
        .get_or_insert_with(Default::default)
        .last_sync_start_time = Some(Time(t0()));
}

#[test]
fn an_unready_snapshot_is_waited_for() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), false));
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(
        applied(&decision.actions).is_empty(),
        "{:?}",
        decision.actions
    );
    assert_eq!(decision.requeue, Requeue::After(config().poll_interval));
}

#[test]
fn a_ready_snapshot_gets_a_volume_cache_rbac_and_the_job() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    let decision = reconcile_source(&observed, t0(), &config());
    assert_eq!(
        applied(&decision.actions),
        vec![
            format!("PersistentVolumeClaim/{}", copy_name(NAME)),
            format!("PersistentVolumeClaim/{}", cache_pvc_name(true, NAME)),
            format!("ServiceAccount/volsync-src-{NAME}"),
            format!("Role/volsync-src-{NAME}"),
            format!("RoleBinding/volsync-src-{NAME}"),
            format!("Job/{}", job_name(true, NAME)),
        ]
    );
    let jobs = applied_jobs(&decision.actions);
    let job = jobs[0];
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(8));
    assert_eq!(spec.parallelism, Some(1));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("volsync-src-example-app-backup")
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.command.as_deref(),
        Some(&["arca-agent".to_owned()][..])
    );
    // A seed object created 2026-01-01: the first prune falls due seven days later, not yet.
    assert_eq!(container.args.as_deref(), Some(&["backup".to_owned()][..]));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.privileged, Some(false));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_owned()][..])
    );
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    let claim = data.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(claim.claim_name, copy_name(NAME));
    assert_eq!(claim.read_only, Some(true));
    assert_eq!(env_value(job, "DATA_DIR").as_deref(), Some("/data"));
    assert_eq!(
        env_value(job, "RESTIC_CACHE_DIR").as_deref(),
        Some("/cache")
    );
    assert_eq!(
        env_value(job, "FORGET_OPTIONS").as_deref(),
        Some("--keep-daily 7 --keep-weekly 4 --keep-monthly 12")
    );
    assert_eq!(
        env_value(job, "RESTIC_REPOSITORY").as_deref(),
        Some("secret:RESTIC_REPOSITORY")
    );
    assert_eq!(
        env_value(job, "RESTIC_PASSWORD").as_deref(),
        Some("secret:RESTIC_PASSWORD")
    );
    assert_eq!(
        env_value(job, "AWS_ACCESS_KEY_ID").as_deref(),
        Some("secret:AWS_ACCESS_KEY_ID")
    );
    assert_eq!(
        env_value(job, "RCLONE_X").as_deref(),
        Some("secret:RCLONE_X")
    );
    // Optional keys the Secret lacks are not referenced (the pod would not start).
    assert_eq!(env_value(job, "B2_ACCOUNT_ID"), None);
    assert_eq!(condition_reason(&decision.status), "SyncInProgress");
}

#[test]
fn the_volume_from_a_snapshot_is_sized_from_its_restore_size() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    let mut snap = snapshot(&copy_name(NAME), true);
    snap.restore_size = Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
        "7Gi".to_owned(),
    ));
    observed.owned.snapshots.push(snap);
    let decision = reconcile_source(&observed, t0(), &config());
    let pvc = decision
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Apply(arca_kube::reconcile::Object::PersistentVolumeClaim(p))
                if p.metadata.name.as_deref() == Some(copy_name(NAME).as_str()) =>
            {
                Some(p)
            }
            _ => None,
        })
        .unwrap();
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "7Gi"
    );
    let source = spec.data_source.as_ref().unwrap();
    assert_eq!(
        (source.kind.as_str(), source.name.as_str()),
        ("VolumeSnapshot", copy_name(NAME).as_str())
    );
}

#[test]
fn direct_backs_up_the_source_volume_itself() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    let decision = reconcile_source(&source_observed(source), t0(), &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1);
    let pod = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        "example-app-data"
    );
    assert!(
        !applied(&decision.actions)
            .iter()
            .any(|a| a.starts_with("VolumeSnapshot"))
    );
}

#[test]
fn clone_makes_a_clone_of_the_source_then_the_job() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Clone);
    let decision = reconcile_source(&source_observed(source), t0(), &config());
    let names = applied(&decision.actions);
    assert_eq!(
        names[0],
        format!("PersistentVolumeClaim/{}", copy_name(NAME))
    );
    assert_eq!(
        names.last().unwrap(),
        &format!("Job/{}", job_name(true, NAME))
    );
    let Action::Apply(arca_kube::reconcile::Object::PersistentVolumeClaim(clone)) =
        &decision.actions[0]
    else {
        panic!("{:?}", decision.actions[0]);
    };
    let data_source = clone.spec.as_ref().unwrap().data_source.as_ref().unwrap();
    assert_eq!(
        (data_source.kind.as_str(), data_source.name.as_str()),
        ("PersistentVolumeClaim", "example-app-data")
    );
}

#[test]
fn a_running_job_is_waited_for_and_never_doubled() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    observed.owned.pvcs.push(pvc(&copy_name(NAME)));
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.requeue, Requeue::After(config().poll_interval));
}

#[test]
fn a_leftover_second_job_is_deleted() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    observed
        .owned
        .jobs
        .push(job("volsync-src-old", JobPhase::Active, &["backup"], None));
    let decision = reconcile_source(&observed, t0(), &config());
    assert_eq!(
        decision.actions,
        vec![Action::Delete {
            kind: ObjectKind::Job,
            name: "volsync-src-old".to_owned()
        }]
    );
}

#[test]
fn a_successful_job_completes_the_sync() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(backup_success("abc123")),
    ));
    let now = ts("2026-01-02T02:10:30Z");
    let decision = reconcile_source(&observed, now, &config());
    let status = &decision.status;
    assert_eq!(status.last_sync_time, Some(Time(now)));
    assert_eq!(status.last_sync_start_time, None);
    assert_eq!(status.last_sync_duration.as_deref(), Some("10m0s"));
    assert_eq!(
        status.next_sync_time,
        Some(Time(ts("2026-01-03T02:00:00Z")))
    );
    let mover = status.latest_mover_status.as_ref().unwrap();
    assert_eq!(mover.result, Some(MoverResult::Successful));
    let arca = status.arca.as_ref().unwrap();
    assert_eq!(arca.last_snapshot_id.as_deref(), Some("abc123"));
    assert_eq!(arca.files_new, Some(10));
    assert_eq!(arca.bytes_added, Some(4096));
    assert_eq!(arca.repository_size_bytes, Some(1 << 30));
    assert_eq!(arca.rpo.as_ref().unwrap().state, RpoState::Met);
    assert_eq!(condition_reason(status), "WaitingForSchedule");
    assert_eq!(
        decision.actions,
        vec![
            Action::Delete {
                kind: ObjectKind::Job,
                name: job_name(true, NAME)
            },
            Action::DeleteAllOf {
                kind: ObjectKind::PersistentVolumeClaim,
                label_selector: "volsync.backube/cleanup=uid-src,!volsync.backube/do-not-delete"
                    .to_owned()
            },
            Action::DeleteAllOf {
                kind: ObjectKind::VolumeSnapshot,
                label_selector: "volsync.backube/cleanup=uid-src,!volsync.backube/do-not-delete"
                    .to_owned()
            },
        ]
    );
    let report = decision.report.unwrap();
    assert_eq!(report.outcome, SyncOutcome::Succeeded);
    assert_eq!(report.duration, SignedDuration::from_mins(10));
    assert!(!report.missed_interval);
    assert!(!decision.out_of_sync);
    // Requeued at the next run (the RPO breach of the default class, 4 h, comes later than
    // nothing: the sooner of the two).
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_hours(4))
    );
}

#[test]
fn a_succeeded_job_without_a_result_is_a_failure() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        None,
    ));
    let decision = reconcile_source(&observed, ts("2026-01-02T02:10:30Z"), &config());
    assert_eq!(decision.report.unwrap().outcome, SyncOutcome::Failed);
    assert_eq!(decision.status.last_sync_time, None);
    assert!(decision.status.last_sync_start_time.is_some());
}

#[test]
fn a_failed_job_is_recorded_deleted_and_retried_with_backoff() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    observed.owned.pvcs.push(pvc(&copy_name(NAME)));
    let failure = AgentResult {
        success: false,
        error_class: Some(ErrorClass::Retryable),
        message: Some("storage unreachable".to_owned()),
        ..AgentResult::default()
    };
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Failed,
        &["backup"],
        Some(failure),
    ));
    let now = ts("2026-01-02T02:10:30Z");
    let decision = reconcile_source(&observed, now, &config());
    assert_eq!(
        decision.actions,
        vec![Action::Delete {
            kind: ObjectKind::Job,
            name: job_name(true, NAME)
        }]
    );
    let status = &decision.status;
    assert_eq!(
        status.latest_mover_status.as_ref().unwrap().result,
        Some(MoverResult::Failed)
    );
    assert!(
        status
            .latest_mover_status
            .as_ref()
            .unwrap()
            .logs
            .as_deref()
            .unwrap()
            .contains("storage unreachable")
    );
    assert_eq!(
        status.last_sync_start_time,
        Some(Time(t0())),
        "still in the sync"
    );
    assert_eq!(status.last_sync_time, None);
    let arca = status.arca.as_ref().unwrap();
    assert_eq!(arca.consecutive_failures, Some(1));
    assert_eq!(arca.retry_after, Some(Time(ts("2026-01-02T02:11:30Z"))));
    assert_eq!(condition_reason(status), "Error");
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_mins(1))
    );
    assert!(decision.events.iter().any(|e| e.reason == "TransferFailed"));

    // Before the backoff ends nothing is recreated; after it the Job is.
    let mut again = observed.clone();
    again.source.status = Some(decision.status.clone());
    again.owned.jobs.clear();
    let waiting = reconcile_source(&again, ts("2026-01-02T02:11:00Z"), &config());
    assert!(applied_jobs(&waiting.actions).is_empty());
    assert_eq!(
        waiting.requeue,
        Requeue::After(SignedDuration::from_secs(30))
    );
    let retry = reconcile_source(&again, ts("2026-01-02T02:11:30Z"), &config());
    assert_eq!(applied_jobs(&retry.actions).len(), 1);

    // A second failure doubles the delay; a fatal one waits the maximum.
    let mut second = again.clone();
    second.owned.jobs.push(observed.owned.jobs[0].clone());
    let decision = reconcile_source(&second, ts("2026-01-02T02:20:00Z"), &config());
    assert_eq!(
        decision.status.arca.as_ref().unwrap().consecutive_failures,
        Some(2)
    );
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_mins(2))
    );
    let mut fatal = second.clone();
    fatal.owned.jobs[0].result.as_mut().unwrap().error_class = Some(ErrorClass::Fatal);
    let decision = reconcile_source(&fatal, ts("2026-01-02T02:20:00Z"), &config());
    assert_eq!(decision.requeue, Requeue::After(config().retry_max));
}

#[test]
fn an_idle_scheduled_object_waits_for_its_next_run() {
    let mut source = seed_source();
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-02T02:05:00Z")));
    let now = ts("2026-01-02T10:00:00Z");
    let decision = reconcile_source(&source_observed(source.clone()), now, &config());
    assert!(decision.actions.is_empty());
    assert_eq!(
        decision.status.next_sync_time,
        Some(Time(ts("2026-01-03T02:00:00Z")))
    );
    assert_eq!(condition_reason(&decision.status), "WaitingForSchedule");
    // The default class's RPO (4 h from 02:05) has passed at 10:00.
    assert_eq!(
        decision
            .status
            .arca
            .as_ref()
            .unwrap()
            .rpo
            .as_ref()
            .unwrap()
            .state,
        RpoState::Breached
    );
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_hours(16))
    );

    // Past the next run, it starts.
    let decision = reconcile_source(
        &source_observed(source),
        ts("2026-01-03T02:00:01Z"),
        &config(),
    );
    assert_eq!(
        decision.status.last_sync_start_time,
        Some(Time(ts("2026-01-03T02:00:01Z")))
    );
    assert!(!decision.actions.is_empty());
}

#[test]
fn missed_intervals_are_reported_at_completion_and_mark_out_of_sync() {
    let mut source = seed_source();
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-01T02:05:00Z")));
    status.last_sync_start_time = Some(Time(ts("2026-01-04T02:00:00Z")));
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    let running = reconcile_source(&observed, ts("2026-01-04T02:05:00Z"), &config());
    assert!(
        running.out_of_sync,
        "next(next(Jan 1 02:05)) = Jan 3 02:00 has passed"
    );
    observed.owned.jobs[0] = job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(backup_success("x")),
    );
    let done = reconcile_source(&observed, ts("2026-01-04T02:10:00Z"), &config());
    assert!(done.report.unwrap().missed_interval);
    assert!(!done.out_of_sync, "a completed sync clears it");
}

#[test]
fn manual_triggers_follow_the_handshake_and_beat_the_schedule() {
    let mut source = seed_source();
    source.spec.trigger = Some(TriggerSpec {
        schedule: Some("0 2 * * *".to_owned()),
        manual: Some("first".to_owned()),
    });
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-02T02:05:00Z")));
    status.last_manual_sync = Some("first".to_owned());
    // Done already: waits for a new tag, even past the schedule's run.
    let decision = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-05T00:00:00Z"),
        &config(),
    );
    assert!(decision.actions.is_empty());
    assert_eq!(condition_reason(&decision.status), "WaitingForManual");
    assert_eq!(decision.status.next_sync_time, None);
    assert_eq!(decision.requeue, Requeue::AwaitChange);
    // A new tag starts a sync, and completing it records the tag.
    source.spec.trigger.as_mut().unwrap().manual = Some("second".to_owned());
    let decision = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-02T03:00:00Z"),
        &config(),
    );
    assert!(decision.status.last_sync_start_time.is_some());
    source.status = Some(decision.status);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(backup_success("y")),
    ));
    let decision = reconcile_source(&observed, ts("2026-01-02T03:10:00Z"), &config());
    assert_eq!(decision.status.last_manual_sync.as_deref(), Some("second"));
    assert_eq!(condition_reason(&decision.status), "WaitingForManual");
}

#[test]
fn without_a_trigger_it_syncs_continuously() {
    let mut source = seed_source();
    source.spec.trigger = None;
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-02T02:05:00Z")));
    let decision = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-02T02:05:01Z"),
        &config(),
    );
    assert!(
        decision.status.last_sync_start_time.is_some(),
        "starts again at once"
    );
    source.status = Some(decision.status);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(backup_success("z")),
    ));
    let decision = reconcile_source(&observed, ts("2026-01-02T02:06:00Z"), &config());
    assert_eq!(condition_reason(&decision.status), "CleaningUp");
    assert_eq!(decision.requeue, Requeue::After(SignedDuration::ZERO));
}

#[test]
fn paused_objects_start_nothing_and_hold_a_running_job() {
    let mut source = seed_source();
    source.spec.paused = true;
    let decision = reconcile_source(&source_observed(source.clone()), t0(), &config());
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(decision.status.last_sync_start_time, None);
    assert_eq!(condition_reason(&decision.status), "Paused");

    syncing(&mut source);
    let mut observed = source_observed(source.clone());
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    let decision = reconcile_source(&observed, t0(), &config());
    assert_eq!(
        decision.actions,
        vec![Action::SetJobParallelism {
            name: job_name(true, NAME),
            parallelism: 0
        }]
    );

    // Unpaused, a held Job is released.
    observed.source.spec.paused = false;
    observed.owned.jobs[0].parallelism = 0;
    let decision = reconcile_source(&observed, t0(), &config());
    assert_eq!(
        decision.actions,
        vec![Action::SetJobParallelism {
            name: job_name(true, NAME),
            parallelism: 1
        }]
    );

    // Paused in the middle of a sync with no Job yet: no Job is made.
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(applied(&decision.actions).is_empty());
}

#[test]
fn deletion_cleans_up_and_releases_the_finalizer() {
    let mut source = seed_source();
    source.metadata.deletion_timestamp = Some(Time(t0()));
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    let decision = reconcile_source(&observed, t0(), &config());
    assert_eq!(
        decision.actions[0],
        Action::Delete {
            kind: ObjectKind::Job,
            name: job_name(true, NAME)
        }
    );
    assert!(matches!(
        decision.actions[1],
        Action::DeleteAllOf {
            kind: ObjectKind::PersistentVolumeClaim,
            ..
        }
    ));
    assert!(matches!(
        decision.actions[2],
        Action::DeleteAllOf {
            kind: ObjectKind::VolumeSnapshot,
            ..
        }
    ));
    assert_eq!(decision.actions.last(), Some(&Action::RemoveFinalizer));
    assert_eq!(decision.requeue, Requeue::AwaitChange);

    // Without our finalizer there is nothing to do.
    let mut gone = observed.clone();
    gone.source.metadata.finalizers = Some(vec!["someone-else".to_owned()]);
    assert!(reconcile_source(&gone, t0(), &config()).actions.is_empty());
    assert_ne!(FINALIZER, "someone-else");
}

#[test]
fn other_movers_are_left_alone_or_reported() {
    let external: arca_kube::api::ReplicationSource = serde_json::from_value(serde_json::json!({
        "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
        "metadata": {"name": "ext", "namespace": "a", "uid": "u"},
        "spec": {"sourcePVC": "data", "external": {"provider": "example.com/x"}}
    }))
    .unwrap();
    let decision = reconcile_source(&source_observed(external), t0(), &config());
    assert!(
        decision.actions.is_empty(),
        "not even a finalizer on another controller's object"
    );
    assert_eq!(decision.status, Default::default());

    let rsync: arca_kube::api::ReplicationSource = serde_norway::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/volsync-rsync-tls-source.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let decision = reconcile_source(&source_observed(rsync), t0(), &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    assert_eq!(condition_reason(&decision.status), "Error");
    assert!(decision.events.iter().any(|e| e.note.contains("rsyncTLS")));
}

#[test]
fn what_the_sync_needs_is_checked_first() {
    type Break = fn(&mut arca_kube::SourceObserved);
    let cases: Vec<(&str, Break)> = vec![
        ("Secret example-app-volsync-secret not found", |o| {
            o.repository_secret = None
        }),
        ("lacks the required key RESTIC_PASSWORD", |o| {
            o.repository_secret
                .as_mut()
                .unwrap()
                .keys
                .remove("RESTIC_PASSWORD");
        }),
        ("PersistentVolumeClaim example-app-data not found", |o| {
            o.source_pvc = None
        }),
        ("spec.restic.copyMethod is required", |o| {
            o.source.spec.restic.as_mut().unwrap().copy_method = None
        }),
        ("spec.trigger.schedule: invalid schedule", |o| {
            o.source.spec.trigger.as_mut().unwrap().schedule = Some("61 * * * *".to_owned());
        }),
        ("spec.arca.timeZone", |o| {
            o.source.spec.arca = Some(ArcaSourceSpec {
                time_zone: Some("Mars/Olympus".to_owned()),
                ..Default::default()
            });
        }),
        ("custom CA", |o| {
            o.source.spec.restic.as_mut().unwrap().custom_ca = Some(arca_kube::api::CustomCaSpec {
                secret_name: Some("ca".to_owned()),
                config_map_name: None,
                key: Some("ca.crt".to_owned()),
            });
        }),
    ];
    for (message, mutate) in cases {
        let mut observed = source_observed(seed_source());
        mutate(&mut observed);
        let decision = reconcile_source(&observed, t0(), &config());
        assert!(
            applied(&decision.actions).is_empty(),
            "{message}: {:?}",
            decision.actions
        );
        assert_eq!(condition_reason(&decision.status), "Error", "{message}");
        let warning = decision
            .events
            .iter()
            .find(|e| e.reason == "SyncError")
            .expect(message);
        assert!(
            warning.note.contains(message),
            "{message} not in {:?}",
            warning.note
        );
        assert!(!warning.note.contains("RESTIC_PASSWORD="), "no values");
        // The same error again: no second event.
        let mut again = observed.clone();
        again.source.status = Some(decision.status.clone());
        let repeat = reconcile_source(&again, t0(), &config());
        assert!(repeat.events.is_empty(), "{message}: {:?}", repeat.events);
    }
}

#[test]
fn prune_and_unlock_join_the_job_and_are_recorded() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    source.spec.restic.as_mut().unwrap().unlock = Some("u1".to_owned());
    // Created Jan 1: with the default 7 days, prune is due from Jan 8.
    let now = ts("2026-01-08T02:00:30Z");
    let decision = reconcile_source(&source_observed(source.clone()), now, &config());
    let jobs = applied_jobs(&decision.actions);
    let args = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args, vec!["unlock", "backup", "prune"]);

    source.status = Some(decision.status);
    let mut observed = source_observed(source.clone());
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["unlock", "backup", "prune"],
        Some(backup_success("p")),
    ));
    let done = reconcile_source(&observed, ts("2026-01-08T02:30:00Z"), &config());
    let restic = done.status.restic.as_ref().unwrap();
    assert_eq!(restic.last_pruned, Some(Time(ts("2026-01-08T02:30:00Z"))));
    assert_eq!(restic.last_unlocked.as_deref(), Some("u1"));

    // The next sync neither unlocks again nor prunes before another 7 days.
    let mut next = source;
    next.status = Some(done.status);
    let decision = reconcile_source(
        &source_observed(next),
        ts("2026-01-09T02:00:30Z"),
        &config(),
    );
    let jobs = applied_jobs(&decision.actions);
    let args = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args, vec!["backup"]);
}

#[test]
fn verification_joins_the_first_sync_after_it_falls_due() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    source.spec.arca = Some(ArcaSourceSpec {
        verify: Some(VerifySpec {
            schedule: "0 4 * * *".to_owned(),
            read_data_subset: Some("5%".to_owned()),
        }),
        ..Default::default()
    });
    // Created Jan 1 00:00; the first verification fell due Jan 1 04:00.
    let decision = reconcile_source(&source_observed(source.clone()), t0(), &config());
    let jobs = applied_jobs(&decision.actions);
    let container = &jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.args.clone().unwrap(), vec!["backup", "check"]);
    assert_eq!(
        env_value(jobs[0], "ARCA_CHECK_READ_DATA_SUBSET").as_deref(),
        Some("5%")
    );

    source.status = Some(decision.status);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup", "check"],
        Some(backup_success("v")),
    ));
    let done = reconcile_source(&observed, ts("2026-01-02T02:20:00Z"), &config());
    assert_eq!(
        done.status.arca.unwrap().last_verified,
        Some(Time(ts("2026-01-02T02:20:00Z")))
    );
}

#[test]
fn hooks_surround_the_point_in_time_copy() {
    let hook = Hook {
        selector: LabelSelector::default(),
        container: None,
        command: vec!["sync".to_owned()],
        timeout: None,
        failure_policy: None,
    };
    let mut source = seed_source();
    source.spec.arca = Some(ArcaSourceSpec {
        hooks: Some(Hooks {
            pre_backup: Some(hook.clone()),
            post_backup: Some(hook),
        }),
        ..Default::default()
    });
    let order = |decision: &arca_kube::SourceDecision| -> Vec<String> {
        decision
            .actions
            .iter()
            .map(|a| match a {
                Action::RunHook(HookPhase::PreBackup) => "pre".to_owned(),
                Action::RunHook(HookPhase::PostBackup) => "post".to_owned(),
                Action::Apply(_) => "apply".to_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let decision = reconcile_source(&source_observed(source.clone()), t0(), &config());
    assert_eq!(order(&decision), vec!["pre", "apply"]);
    // Snapshot: the post hook runs once the snapshot is taken (ready), with the volume from it,
    // and never while it is pending.
    let mut taking = source.clone();
    syncing(&mut taking);
    let mut observed = source_observed(taking);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), false));
    let pending = reconcile_source(&observed, ts("2026-01-02T02:01:00Z"), &config());
    assert!(!order(&pending).iter().any(|a| a == "pre" || a == "post"));
    observed.owned.snapshots[0].ready_to_use = true;
    let ready = reconcile_source(&observed, ts("2026-01-02T02:02:00Z"), &config());
    assert_eq!(order(&ready)[0], "post");
    assert!(!order(&ready).contains(&"pre".to_owned()));

    // Direct: pre before the Job, post after the backup.
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    let decision = reconcile_source(&source_observed(source.clone()), t0(), &config());
    assert_eq!(decision.actions[0], Action::RunHook(HookPhase::PreBackup));
    assert!(
        !decision
            .actions
            .contains(&Action::RunHook(HookPhase::PostBackup))
    );
    syncing(&mut source);
    let mut observed = source_observed(source);
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(backup_success("h")),
    ));
    let done = reconcile_source(&observed, ts("2026-01-02T02:20:00Z"), &config());
    assert!(
        done.actions
            .contains(&Action::RunHook(HookPhase::PostBackup))
    );
}

#[test]
fn a_failed_hook_under_fail_stops_the_sync_and_is_retried() {
    let source = seed_source();
    let started = reconcile_source(&source_observed(source.clone()), t0(), &config());
    let observed = source_observed(source);
    let stopped = arca_kube::reconcile::hook_failed(
        &observed,
        &started,
        "the pre-backup hook failed: pod db-0: exit code 7",
        t0(),
        &config(),
    );
    // Nothing of the sync is made; what it may have made is cleaned up by label.
    assert!(stopped.actions.iter().all(|a| matches!(
        a,
        Action::DeleteAllOf { label_selector, .. } if label_selector.contains("uid-src")
    )));
    assert!(!stopped.actions.is_empty());
    let status = &stopped.status;
    assert_eq!(condition_reason(status), "Error");
    assert_eq!(
        status.latest_mover_status.as_ref().unwrap().result,
        Some(MoverResult::Failed)
    );
    let arca = status.arca.as_ref().unwrap();
    assert_eq!(arca.consecutive_failures, Some(1));
    let retry = config().retry_base;
    assert_eq!(arca.retry_after, Some(Time(t0() + retry)));
    assert_eq!(stopped.requeue, Requeue::After(retry));
    assert_eq!(
        status.last_sync_start_time,
        Some(Time(t0())),
        "still in progress"
    );
    assert_eq!(status.last_sync_time, None);
    assert_eq!(stopped.report.unwrap().outcome, SyncOutcome::Failed);
    assert!(stopped.events.iter().any(|e| e.reason == "HookFailed"));

    // Until the retry time the sync waits; then it starts over (the snapshot again).
    let mut waiting = observed.source.clone();
    waiting.status = Some(stopped.status.clone());
    let before = reconcile_source(
        &source_observed(waiting.clone()),
        t0() + SignedDuration::from_secs(30),
        &config(),
    );
    assert!(applied(&before.actions).is_empty());
    let after = reconcile_source(&source_observed(waiting), t0() + retry, &config());
    assert_eq!(
        applied(&after.actions),
        vec![format!("VolumeSnapshot/{}", copy_name(NAME))]
    );
}

#[test]
fn time_zone_jitter_and_window_place_the_next_run() {
    let mut source = seed_source();
    source.spec.arca = Some(ArcaSourceSpec {
        data_class: Some(DataClass::Critical),
        time_zone: Some("Europe/Berlin".to_owned()),
        ..Default::default()
    });
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-02T01:05:00Z")));
    let decision = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-02T05:00:00Z"),
        &config(),
    );
    // 02:00 in Berlin in January is 01:00 UTC.
    assert_eq!(
        decision.status.next_sync_time,
        Some(Time(ts("2026-01-03T01:00:00Z")))
    );
    let rpo = decision.status.arca.as_ref().unwrap().rpo.clone().unwrap();
    assert_eq!(
        (rpo.data_class, rpo.state),
        (DataClass::Critical, RpoState::Breached)
    );

    // Jitter: a stable delay inside the window, the same every time.
    source.spec.arca.as_mut().unwrap().jitter = Some("30m".to_owned());
    let a = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-02T05:00:00Z"),
        &config(),
    );
    let b = reconcile_source(
        &source_observed(source.clone()),
        ts("2026-01-02T06:00:00Z"),
        &config(),
    );
    let next = a.status.next_sync_time.clone().unwrap().0;
    assert_eq!(Some(Time(next)), b.status.next_sync_time);
    assert!(
        next >= ts("2026-01-03T01:00:00Z") && next < ts("2026-01-03T01:30:00Z"),
        "{next}"
    );

    // A window that opens at 03:00 Berlin moves the run there.
    source.spec.arca.as_mut().unwrap().jitter = None;
    source.spec.arca.as_mut().unwrap().backup_window = Some(BackupWindow {
        start: "03:00".to_owned(),
        end: "05:00".to_owned(),
    });
    let decision = reconcile_source(
        &source_observed(source),
        ts("2026-01-02T05:00:00Z"),
        &config(),
    );
    assert_eq!(
        decision.status.next_sync_time,
        Some(Time(ts("2026-01-03T02:00:00Z")))
    );
}

#[test]
fn a_job_without_a_recorded_sync_is_adopted() {
    let mut observed = source_observed(seed_source());
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    ));
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    assert_eq!(decision.status.last_sync_start_time, Some(Time(t0())));
}

#[test]
fn partial_and_empty_backups_are_reported() {
    let mut source = seed_source();
    syncing(&mut source);
    let mut observed = source_observed(source);
    let mut partial = backup_success("q");
    partial.partial = true;
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(partial),
    ));
    let decision = reconcile_source(&observed, ts("2026-01-02T02:20:00Z"), &config());
    assert!(decision.status.arca.as_ref().unwrap().partial);
    assert!(decision.events.iter().any(|e| e.reason == "PartialBackup"));

    let empty = AgentResult {
        success: true,
        source_empty: true,
        ..AgentResult::default()
    };
    observed.owned.jobs[0].result = Some(empty);
    let decision = reconcile_source(&observed, ts("2026-01-02T02:20:00Z"), &config());
    assert!(decision.status.arca.as_ref().unwrap().source_empty);
    assert!(decision.events.iter().any(|e| e.reason == "SourceEmpty"));
}

#[test]
fn the_data_class_defaults_to_important_and_names_itself() {
    let mut source = seed_source();
    assert_eq!(source.spec.data_class(), DataClass::Important);
    source.spec.arca = Some(ArcaSourceSpec {
        data_class: Some(DataClass::Archival),
        ..Default::default()
    });
    assert_eq!(source.spec.data_class(), DataClass::Archival);
    let names: Vec<&str> = [
        DataClass::Critical,
        DataClass::Important,
        DataClass::Archival,
    ]
    .map(DataClass::as_str)
    .to_vec();
    assert_eq!(names, ["critical", "important", "archival"]);
}

#[test]
fn a_due_sync_without_a_mover_slot_waits_and_makes_nothing() {
    let mut source = seed_source();
    source.metadata.finalizers = None;
    let observed = source_observed(source);
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(arca_kube::reconcile::starts_sync(&observed, &decision));
    let held = arca_kube::reconcile::hold_for_slot(
        &observed,
        decision.clone(),
        t0(),
        SignedDuration::from_secs(10),
    );
    assert_eq!(held.actions, vec![Action::AddFinalizer]);
    assert_eq!(held.status.last_sync_start_time, None);
    assert_eq!(condition_reason(&held.status), "WaitingForSlot");
    assert_eq!(held.requeue, Requeue::After(SignedDuration::from_secs(10)));
    assert!(held.events.is_empty());
    assert_eq!(held.out_of_sync, decision.out_of_sync);
    assert!(held.status.arca.and_then(|a| a.rpo).is_some());

    // Once it gets its slot, the next decision starts the sync as before.
    let mut waiting = seed_source();
    waiting.status = Some(arca_kube::api::ReplicationSourceStatus {
        conditions: None,
        ..Default::default()
    });
    let observed = source_observed(waiting);
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(arca_kube::reconcile::starts_sync(&observed, &decision));
    assert!(!applied(&decision.actions).is_empty());
}

#[test]
fn a_running_sync_is_never_held_for_a_slot() {
    let mut source = seed_source();
    source.status = Some(arca_kube::api::ReplicationSourceStatus {
        last_sync_start_time: Some(Time(t0())),
        ..Default::default()
    });
    let mut observed = source_observed(source);
    observed.owned.jobs = vec![job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["backup"],
        None,
    )];
    let decision = reconcile_source(&observed, t0(), &config());
    assert!(!arca_kube::reconcile::starts_sync(&observed, &decision));
    let held = arca_kube::reconcile::hold_for_slot(
        &observed,
        decision.clone(),
        t0(),
        SignedDuration::from_secs(10),
    );
    assert_eq!(held, decision);
}

#[test]
fn a_sources_mover_job_names_the_source_so_shared_repositories_keep_sources_apart() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    let namespace = source.metadata.namespace.clone().unwrap();
    let name = source.metadata.name.clone().unwrap();
    let decision = reconcile_source(&source_observed(source), t0(), &config());
    let job = applied_jobs(&decision.actions)[0];
    assert_eq!(
        env_value(job, "ARCA_SOURCE"),
        Some(format!("{namespace}/{name}"))
    );
}

#[test]
fn require_tls13_is_set_on_every_mover_job_and_the_secret_cannot_relax_it() {
    let mut source = seed_source();
    source.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Direct);
    let mut observed = source_observed(source);
    let secret = observed.repository_secret.as_mut().unwrap();
    secret.keys.insert("ARCA_ALLOW_HTTP".to_owned());
    secret.keys.insert("ARCA_REQUIRE_TLS13".to_owned());

    let lax = reconcile_source(&observed, t0(), &config());
    let job = applied_jobs(&lax.actions)[0];
    assert_eq!(
        env_value(job, "ARCA_REQUIRE_TLS13").as_deref(),
        Some("secret:ARCA_REQUIRE_TLS13"),
        "without the flag the Secret decides"
    );

    let strict_config = arca_kube::ControllerConfig {
        require_tls13: true,
        ..config()
    };
    let strict = reconcile_source(&observed, t0(), &strict_config);
    let job = applied_jobs(&strict.actions)[0];
    let tls: Vec<_> = crate::common::job_env(job)
        .into_iter()
        .filter(|(name, _)| name == "ARCA_REQUIRE_TLS13")
        .collect();
    assert_eq!(tls, [("ARCA_REQUIRE_TLS13".to_owned(), "1".to_owned())]);
    assert_eq!(
        env_value(job, "ARCA_ALLOW_HTTP").as_deref(),
        Some("secret:ARCA_ALLOW_HTTP"),
        "plain http stays an explicit choice of the repository Secret"
    );
}
