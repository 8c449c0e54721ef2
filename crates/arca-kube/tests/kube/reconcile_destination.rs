//! Table tests of `reconcile_destination`.

use arca_kube::api::{CopyMethod, MoverResult, ReplicationDestination};
use arca_kube::reconcile::{
    AgentResult, ErrorClass, JobPhase, Object, ObjectKind, Requeue, SyncOutcome, cache_pvc_name,
    destination_pvc_name, image_snapshot_name, job_name,
};
use arca_kube::{Action, reconcile_destination};
use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::common::*;

const NAME: &str = "example-app-dr";

fn t0() -> jiff::Timestamp {
    ts("2026-01-02T06:00:30Z")
}

fn restore_success(snapshot: &str) -> AgentResult {
    AgentResult {
        success: true,
        snapshot_id: Some(snapshot.to_owned()),
        files_restored: Some(42),
        bytes_processed: Some(4242),
        ..AgentResult::default()
    }
}

fn syncing(destination: &mut ReplicationDestination) {
    destination
        .status
        .get_or_insert_with(Default::default)
        .last_sync_start_time = Some(Time(t0()));
}

#[test]
fn the_seed_destination_restores_into_its_existing_volume() {
    let decision =
        reconcile_destination(&destination_observed(seed_destination()), t0(), &config());
    assert_eq!(
        applied(&decision.actions),
        vec![
            format!("PersistentVolumeClaim/{}", cache_pvc_name(false, NAME)),
            format!("ServiceAccount/volsync-dst-{NAME}"),
            format!("Role/volsync-dst-{NAME}"),
            format!("RoleBinding/volsync-dst-{NAME}"),
            format!("Job/{}", job_name(false, NAME)),
        ]
    );
    let jobs = applied_jobs(&decision.actions);
    let job = jobs[0];
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].args.clone().unwrap(), vec!["restore"]);
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "data")
        .unwrap();
    let claim = data.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("example-app-dr-data", Some(false))
    );
    assert_eq!(env_value(job, "SELECT_PREVIOUS").as_deref(), Some("0"));
    assert_eq!(env_value(job, "RESTORE_OPTIONS").as_deref(), Some(""));
    assert_eq!(env_value(job, "RESTORE_AS_OF"), None);
    assert_eq!(
        env_value(job, "RESTIC_REPOSITORY").as_deref(),
        Some("secret:RESTIC_REPOSITORY")
    );
    // The cache takes the destination's class and modes.
    let Action::Apply(Object::PersistentVolumeClaim(cache)) = &decision.actions[0] else {
        panic!("{:?}", decision.actions);
    };
    let spec = cache.spec.as_ref().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("ceph-block"));
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
}

#[test]
fn restore_options_come_from_the_spec() {
    let mut destination = seed_destination();
    let restic = destination.spec.restic.as_mut().unwrap();
    restic.restore_as_of = Some("2022-03-01T00:00:00-05:00".to_owned());
    restic.previous = Some(2);
    restic.enable_file_deletion = true;
    let decision = reconcile_destination(&destination_observed(destination), t0(), &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(
        env_value(jobs[0], "RESTORE_AS_OF").as_deref(),
        Some("2022-03-01T05:00:00Z")
    );
    assert_eq!(env_value(jobs[0], "SELECT_PREVIOUS").as_deref(), Some("2"));
    assert_eq!(
        env_value(jobs[0], "RESTORE_OPTIONS").as_deref(),
        Some("--delete")
    );
}

#[test]
fn a_destination_naming_its_source_restores_only_that_sources_snapshots() {
    let destination = seed_destination();
    let decision =
        reconcile_destination(&destination_observed(destination.clone()), t0(), &config());
    assert_eq!(
        env_value(applied_jobs(&decision.actions)[0], "ARCA_SOURCE"),
        None,
        "VolSync's behaviour: any snapshot of the host"
    );
    let mut naming = destination;
    naming.spec.arca = Some(arca_kube::api::ArcaDestinationSpec {
        source: Some("shop/db-backup".to_owned()),
        ..Default::default()
    });
    let decision = reconcile_destination(&destination_observed(naming), t0(), &config());
    assert_eq!(
        env_value(applied_jobs(&decision.actions)[0], "ARCA_SOURCE").as_deref(),
        Some("shop/db-backup")
    );
}

#[test]
fn bad_specs_are_reported_not_run() {
    type Break = fn(&mut arca_kube::DestinationObserved);
    let cases: Vec<(&str, Break)> = vec![
        ("PersistentVolumeClaim example-app-dr-data not found", |o| {
            o.destination_pvc = None
        }),
        ("spec.restic.restoreAsOf: invalid time", |o| {
            o.destination.spec.restic.as_mut().unwrap().restore_as_of =
                Some("yesterday".to_owned());
        }),
        ("spec.restic.previous", |o| {
            o.destination.spec.restic.as_mut().unwrap().previous = Some(-1)
        }),
        ("a destination takes Direct or Snapshot", |o| {
            o.destination.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Clone);
        }),
        (
            "spec.restic.capacity and spec.restic.accessModes is required",
            |o| {
                let restic = o.destination.spec.restic.as_mut().unwrap();
                restic.destination_pvc = None;
                restic.capacity = None;
            },
        ),
        ("Secret example-app-dr-secret not found", |o| {
            o.repository_secret = None
        }),
    ];
    for (message, mutate) in cases {
        let mut observed = destination_observed(seed_destination());
        mutate(&mut observed);
        let decision = reconcile_destination(&observed, t0(), &config());
        assert!(applied_jobs(&decision.actions).is_empty(), "{message}");
        assert_eq!(condition_reason(&decision.status), "Error", "{message}");
        let note = &decision
            .events
            .iter()
            .find(|e| e.reason == "SyncError")
            .expect(message)
            .note;
        assert!(note.contains(message), "{message} not in {note}");
    }
}

#[test]
fn without_a_destination_pvc_one_is_provisioned() {
    let mut destination = seed_destination();
    destination.spec.restic.as_mut().unwrap().destination_pvc = None;
    let decision = reconcile_destination(&destination_observed(destination), t0(), &config());
    let names = applied(&decision.actions);
    assert_eq!(
        names[0],
        format!("PersistentVolumeClaim/{}", destination_pvc_name(NAME))
    );
    let Action::Apply(Object::PersistentVolumeClaim(pvc)) = &decision.actions[0] else {
        panic!("{:?}", decision.actions);
    };
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "50Gi"
    );
    assert_eq!(
        spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_owned()][..])
    );
    // Not a temporary: it is the restored image.
    assert!(
        !pvc.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("volsync.backube/cleanup")
    );
}

#[test]
fn a_direct_restore_makes_the_volume_the_latest_image() {
    let mut destination = seed_destination();
    syncing(&mut destination);
    let mut observed = destination_observed(destination);
    observed.owned.jobs.push(job(
        &job_name(false, NAME),
        JobPhase::Succeeded,
        &["restore"],
        Some(restore_success("s1")),
    ));
    let now = ts("2026-01-02T06:20:30Z");
    let decision = reconcile_destination(&observed, now, &config());
    let status = &decision.status;
    assert_eq!(
        status.latest_image,
        Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".to_owned(),
            name: "example-app-dr-data".to_owned()
        })
    );
    assert_eq!(status.last_sync_time, Some(Time(now)));
    assert_eq!(status.last_sync_duration.as_deref(), Some("20m0s"));
    assert_eq!(
        status.next_sync_time,
        Some(Time(ts("2026-01-02T12:00:00Z")))
    );
    assert_eq!(
        status.latest_mover_status.as_ref().unwrap().result,
        Some(MoverResult::Successful)
    );
    let arca = status.arca.as_ref().unwrap();
    assert_eq!(arca.last_snapshot_id.as_deref(), Some("s1"));
    assert_eq!(arca.files_restored, Some(42));
    assert_eq!(
        decision.actions[0],
        Action::Delete {
            kind: ObjectKind::Job,
            name: job_name(false, NAME)
        }
    );
    assert_eq!(decision.report.unwrap().outcome, SyncOutcome::Succeeded);
    assert_eq!(
        decision.requeue,
        Requeue::After(jiff::SignedDuration::from_secs(5 * 3600 + 39 * 60 + 30))
    );
}

#[test]
fn a_snapshot_restore_snapshots_the_volume_then_replaces_the_old_image() {
    let mut destination = seed_destination();
    destination.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Snapshot);
    destination.spec.restic.as_mut().unwrap().destination_pvc = None;
    destination.spec.restic.as_mut().unwrap().cleanup_temp_pvc = true;
    destination.spec.restic.as_mut().unwrap().cleanup_cache_pvc = true;
    syncing(&mut destination);
    let old_image = TypedLocalObjectReference {
        api_group: Some("snapshot.storage.k8s.io".to_owned()),
        kind: "VolumeSnapshot".to_owned(),
        name: "volsync-example-app-dr-dest-20260101000000".to_owned(),
    };
    destination.status.as_mut().unwrap().latest_image = Some(old_image.clone());
    let mut observed = destination_observed(destination);
    observed
        .owned
        .snapshots
        .push(snapshot(&old_image.name, true));
    let finished_job = job(
        &job_name(false, NAME),
        JobPhase::Succeeded,
        &["restore"],
        Some(restore_success("s2")),
    );
    let image = image_snapshot_name(
        &destination_pvc_name(NAME),
        finished_job.finished_at.unwrap(),
    );
    observed.owned.jobs.push(finished_job);

    // First: the image snapshot is taken; the Job stays until it is ready.
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(
        applied(&decision.actions),
        vec![format!("VolumeSnapshot/{image}")]
    );
    assert_eq!(decision.status.latest_image, Some(old_image.clone()));
    // Not ready yet: wait.
    observed.owned.snapshots.push(snapshot(&image, false));
    let decision = reconcile_destination(&observed, t0(), &config());
    assert!(decision.actions.is_empty());
    assert_eq!(decision.status.latest_image, Some(old_image.clone()));
    // Ready: the image moves, the old snapshot, the Job, the cache and the temporary volume go.
    observed.owned.snapshots[1].ready_to_use = true;
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(decision.status.latest_image.as_ref().unwrap().name, image);
    assert_eq!(
        decision.status.latest_image.as_ref().unwrap().kind,
        "VolumeSnapshot"
    );
    for expected in [
        Action::Delete {
            kind: ObjectKind::Job,
            name: job_name(false, NAME),
        },
        Action::Delete {
            kind: ObjectKind::VolumeSnapshot,
            name: old_image.name.clone(),
        },
        Action::Delete {
            kind: ObjectKind::PersistentVolumeClaim,
            name: cache_pvc_name(false, NAME),
        },
        Action::Delete {
            kind: ObjectKind::PersistentVolumeClaim,
            name: destination_pvc_name(NAME),
        },
    ] {
        assert!(
            decision.actions.contains(&expected),
            "{expected:?} missing from {:?}",
            decision.actions
        );
    }
    // A kept snapshot is not deleted.
    observed.owned.snapshots[0].do_not_delete = true;
    let decision = reconcile_destination(&observed, t0(), &config());
    assert!(!decision.actions.contains(&Action::Delete {
        kind: ObjectKind::VolumeSnapshot,
        name: old_image.name
    }));
}

#[test]
fn a_failed_restore_never_moves_the_latest_image() {
    let mut destination = seed_destination();
    syncing(&mut destination);
    let image = TypedLocalObjectReference {
        api_group: None,
        kind: "PersistentVolumeClaim".to_owned(),
        name: "example-app-dr-data".to_owned(),
    };
    destination.status.as_mut().unwrap().latest_image = Some(image.clone());
    let mut observed = destination_observed(destination);
    let failed = AgentResult {
        success: false,
        error_class: Some(ErrorClass::Fatal),
        message: Some("wrong password".to_owned()),
        ..AgentResult::default()
    };
    observed.owned.jobs.push(job(
        &job_name(false, NAME),
        JobPhase::Failed,
        &["restore"],
        Some(failed.clone()),
    ));
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(decision.status.latest_image, Some(image.clone()));
    assert_eq!(
        decision.status.latest_mover_status.as_ref().unwrap().result,
        Some(MoverResult::Failed)
    );
    assert_eq!(decision.status.last_sync_time, None);
    assert_eq!(decision.report.unwrap().outcome, SyncOutcome::Failed);
    assert_eq!(decision.requeue, Requeue::After(config().retry_max));

    // A Job that "succeeded" with a failed result is a failure too.
    observed.owned.jobs[0].phase = JobPhase::Succeeded;
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(decision.status.latest_image, Some(image));
    assert_eq!(decision.report.unwrap().outcome, SyncOutcome::Failed);
}

#[test]
fn no_eligible_snapshot_leaves_the_image_alone_and_warns() {
    let mut destination = seed_destination();
    syncing(&mut destination);
    let mut observed = destination_observed(destination);
    let nothing = AgentResult {
        success: true,
        ..AgentResult::default()
    };
    observed.owned.jobs.push(job(
        &job_name(false, NAME),
        JobPhase::Succeeded,
        &["restore"],
        Some(nothing),
    ));
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(decision.status.latest_image, None);
    assert!(decision.status.arca.as_ref().unwrap().no_eligible_snapshot);
    assert!(
        decision
            .events
            .iter()
            .any(|e| e.reason == "NoEligibleSnapshot")
    );
    assert!(
        decision.status.last_sync_time.is_some(),
        "the mover did its job"
    );
}

#[test]
fn a_manual_restore_runs_once_per_tag() {
    let destination: ReplicationDestination = serde_norway::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/volsync-docs-destination.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let mut destination = destination;
    destination.metadata.uid = Some("u".to_owned());
    destination.metadata.finalizers = Some(vec![arca_kube::reconcile::FINALIZER.to_owned()]);
    let mut observed = destination_observed(destination);
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(applied_jobs(&decision.actions).len(), 1);
    observed.destination.status = Some(decision.status);
    observed.owned.jobs.push(job(
        "volsync-dst-datavol-dest",
        JobPhase::Succeeded,
        &["restore"],
        Some(restore_success("m")),
    ));
    let decision = reconcile_destination(&observed, t0(), &config());
    assert_eq!(
        decision.status.last_manual_sync.as_deref(),
        Some("restore-once")
    );
    assert!(decision.actions.contains(&Action::Delete {
        kind: ObjectKind::PersistentVolumeClaim,
        name: cache_pvc_name(false, "datavol-dest")
    }));
    observed.destination.status = Some(decision.status);
    observed.owned.jobs.clear();
    let decision = reconcile_destination(&observed, ts("2026-02-01T00:00:00Z"), &config());
    assert!(decision.actions.is_empty(), "{:?}", decision.actions);
    assert_eq!(condition_reason(&decision.status), "WaitingForManual");
}
