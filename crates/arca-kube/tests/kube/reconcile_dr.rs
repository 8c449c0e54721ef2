//! Table tests of the disaster-recovery parts of `reconcile_source`: replication targets on the
//! backup Job and their status, and scheduled recovery drills.

use arca_kube::api::{ArcaSourceSpec, DrillSpec, ReplicationSource, ReplicationTarget};
use arca_kube::reconcile::{
    AgentResult, DrillResult, JobPhase, Object, ObjectKind, REPORT_JSON_KEY, REPORT_MARKDOWN_KEY,
    ReplicaResult, ReportResult, Requeue, copy_name, job_name, report_config_map_name,
};
use arca_kube::{Action, reconcile_source};
use jiff::SignedDuration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::common::*;

const NAME: &str = "example-app-backup";

fn with_arca(arca: ArcaSourceSpec) -> ReplicationSource {
    let mut source = seed_source();
    source.spec.arca = Some(arca);
    source
}

fn replicated() -> ReplicationSource {
    with_arca(ArcaSourceSpec {
        replication: Some(vec![
            ReplicationTarget {
                repository: "dr-site-secret".to_owned(),
                schedule: None,
            },
            ReplicationTarget {
                repository: "nfs-secret".to_owned(),
                schedule: None,
            },
        ]),
        ..ArcaSourceSpec::default()
    })
}

/// The seed's source mid-sync, its snapshot ready: the next decision makes the Job.
fn ready_to_run(source: ReplicationSource) -> arca_kube::SourceObserved {
    let mut source = source;
    source
        .status
        .get_or_insert_with(Default::default)
        .last_sync_start_time = Some(Time(ts("2026-01-02T02:00:00Z")));
    let mut observed = source_observed(source);
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    observed.replica_secrets = vec![secret("dr-site-secret"), secret("nfs-secret")];
    observed
}

#[test]
fn replication_targets_reach_the_backup_job_as_prefixed_secrets() {
    let observed = ready_to_run(replicated());
    let decision = reconcile_source(&observed, ts("2026-01-02T02:01:00Z"), &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    let container = &jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let from: Vec<(String, String)> = container
        .env_from
        .iter()
        .flatten()
        .map(|f| {
            (
                f.prefix.clone().unwrap(),
                f.secret_ref.as_ref().unwrap().name.clone(),
            )
        })
        .collect();
    assert_eq!(
        from,
        [
            ("ARCA_REPLICA_0_".to_owned(), "dr-site-secret".to_owned()),
            ("ARCA_REPLICA_1_".to_owned(), "nfs-secret".to_owned()),
        ]
    );
    assert_eq!(
        env_value(jobs[0], "ARCA_REPLICA_0_NAME").as_deref(),
        Some("dr-site-secret")
    );
    assert_eq!(
        env_value(jobs[0], "ARCA_REPLICA_1_NAME").as_deref(),
        Some("nfs-secret")
    );
    // The primary is still read key by key; the replicas only through envFrom.
    assert_eq!(
        env_value(jobs[0], "RESTIC_REPOSITORY").as_deref(),
        Some("secret:RESTIC_REPOSITORY")
    );

    // A partial success (exit 3: a replica failed) ends the Job at once: a retry would back up
    // again.
    let policy = jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .pod_failure_policy
        .as_ref()
        .unwrap();
    assert_eq!(policy.rules[0].action, "FailJob");
    let codes = policy.rules[0].on_exit_codes.as_ref().unwrap();
    assert_eq!(
        (
            codes.container_name.as_deref(),
            codes.operator.as_str(),
            &codes.values[..]
        ),
        (Some("restic"), "In", &[3][..])
    );

    // Without targets the Job has no envFrom at all.
    let decision = reconcile_source(
        &ready_to_run(seed_source()),
        ts("2026-01-02T02:01:00Z"),
        &config(),
    );
    let jobs = applied_jobs(&decision.actions);
    assert!(
        jobs[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env_from
            .is_none()
    );
}

#[test]
fn bad_replication_targets_stop_the_sync_with_an_error_naming_them() {
    let now = ts("2026-01-02T02:01:00Z");
    let message = |observed: &arca_kube::SourceObserved| {
        let decision = reconcile_source(observed, now, &config());
        assert!(applied_jobs(&decision.actions).is_empty());
        assert_eq!(condition_reason(&decision.status), "Error");
        let value = serde_json::to_value(&decision.status).unwrap();
        value["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut missing = ready_to_run(replicated());
    missing.replica_secrets.remove(1);
    assert_eq!(message(&missing), "Secret nfs-secret not found");

    let mut keyless = ready_to_run(replicated());
    keyless.replica_secrets[0].keys.remove("RESTIC_PASSWORD");
    assert_eq!(
        message(&keyless),
        "Secret dr-site-secret lacks the required key RESTIC_PASSWORD"
    );

    let mut itself = replicated();
    itself
        .spec
        .arca
        .as_mut()
        .unwrap()
        .replication
        .as_mut()
        .unwrap()[1]
        .repository = "example-app-volsync-secret".to_owned();
    assert!(message(&ready_to_run(itself)).contains("must differ from spec.restic.repository"));
}

#[test]
fn replica_status_follows_the_result_document() {
    let mut source = replicated();
    source
        .status
        .get_or_insert_with(Default::default)
        .last_sync_start_time = Some(Time(ts("2026-01-02T02:00:00Z")));
    let mut observed = source_observed(source);
    let mut result = backup_success("s1");
    result.replicas = vec![
        ReplicaResult {
            name: "dr-site-secret".to_owned(),
            copied: 1,
            lag_snapshots: Some(0),
            lag_seconds: Some(0.0),
            error: None,
        },
        ReplicaResult {
            name: "nfs-secret".to_owned(),
            copied: 0,
            lag_snapshots: None,
            lag_seconds: None,
            error: Some("nfs: unreachable".to_owned()),
        },
    ];
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(result.clone()),
    ));
    let done = ts("2026-01-02T02:20:00Z");
    let decision = reconcile_source(&observed, done, &config());
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0].name, "dr-site-secret");
    assert_eq!(replicas[0].last_copy_time, Some(Time(done)));
    assert_eq!(
        (replicas[0].lag_snapshots, replicas[0].lag_seconds),
        (Some(0), Some(0))
    );
    assert_eq!(replicas[0].error, None);
    assert_eq!(replicas[1].last_copy_time, None);
    assert_eq!(replicas[1].error.as_deref(), Some("nfs: unreachable"));

    // The next backup: the first target fails now and keeps its last copy time; the second
    // catches up, two snapshots and an hour behind no more.
    let mut source = observed.source.clone();
    source.status = Some(decision.status);
    source.status.as_mut().unwrap().last_sync_start_time = Some(Time(ts("2026-01-03T02:00:00Z")));
    let mut observed = source_observed(source);
    result.replicas[0].error = Some("s3: 503".to_owned());
    result.replicas[0].lag_snapshots = Some(1);
    result.replicas[0].lag_seconds = Some(86400.4);
    result.replicas[1] = ReplicaResult {
        name: "nfs-secret".to_owned(),
        copied: 2,
        lag_snapshots: Some(0),
        lag_seconds: Some(0.0),
        error: None,
    };
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["backup"],
        Some(result),
    ));
    let later = ts("2026-01-03T02:20:00Z");
    let decision = reconcile_source(&observed, later, &config());
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    assert_eq!(replicas[0].last_copy_time, Some(Time(done)));
    assert_eq!(replicas[0].error.as_deref(), Some("s3: 503"));
    assert_eq!(
        (replicas[0].lag_snapshots, replicas[0].lag_seconds),
        (Some(1), Some(86400))
    );
    assert_eq!(replicas[1].last_copy_time, Some(Time(later)));
    assert_eq!(replicas[1].error, None);
}

fn drilled(drill: DrillSpec) -> ReplicationSource {
    let mut source = with_arca(ArcaSourceSpec {
        drill: Some(drill),
        ..ArcaSourceSpec::default()
    });
    // Idle: synced at 02:10 today, the next backup tomorrow at 02:00.
    let status = source.status.get_or_insert_with(Default::default);
    status.last_sync_time = Some(Time(ts("2026-01-02T02:10:00Z")));
    source
}

fn manual_drill() -> DrillSpec {
    DrillSpec {
        manual: Some("drill-1".to_owned()),
        command: Some("test -f app.db".to_owned()),
        rto: Some("10m".to_owned()),
        ..DrillSpec::default()
    }
}

#[test]
fn a_due_drill_runs_in_scratch_space_under_the_mover_job_name() {
    let now = ts("2026-01-02T05:00:00Z");
    let observed = source_observed(drilled(manual_drill()));
    let decision = reconcile_source(&observed, now, &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    let job = jobs[0];
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(job_name(true, NAME).as_str())
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0), "a drill runs once");
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].args.as_deref(),
        Some(&["drill".to_owned(), "report".to_owned()][..]),
        "every drill also reports"
    );
    for volume in pod.volumes.iter().flatten() {
        assert!(
            volume.persistent_volume_claim.is_none(),
            "a drill mounts no claim: {volume:?}"
        );
    }
    let data = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .unwrap();
    assert!(data.empty_dir.is_some());
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "data");
    assert_eq!(mount.unwrap().read_only, Some(false));
    assert_eq!(env_value(job, "DATA_DIR").as_deref(), Some("/data"));
    assert_eq!(
        env_value(job, "ARCA_DATA_CLASS").as_deref(),
        Some("important")
    );
    assert_eq!(env_value(job, "ARCA_RTO").as_deref(), Some("600"));
    assert_eq!(
        env_value(job, "ARCA_DRILL_COMMAND").as_deref(),
        Some("test -f app.db")
    );
    // Not a sync: nothing of the sync's status moves.
    assert_eq!(decision.status.last_sync_start_time, None);
    assert_eq!(
        decision.status.last_sync_time,
        observed.source.status.as_ref().unwrap().last_sync_time
    );
    assert!(decision.report.is_none());
    assert!(decision.events.iter().any(|e| e.reason == "DrillStarted"));
    assert!(!arca_kube::reconcile::starts_sync(&observed, &decision));
}

#[test]
fn a_drill_never_starts_beside_a_sync_or_while_paused() {
    let now = ts("2026-01-02T05:00:00Z");
    // A sync in progress, its snapshot not ready: no Job at all.
    let mut syncing = drilled(manual_drill());
    syncing.status.as_mut().unwrap().last_sync_start_time = Some(Time(now));
    let decision = reconcile_source(&source_observed(syncing), now, &config());
    assert!(applied_jobs(&decision.actions).is_empty());

    let mut paused = drilled(manual_drill());
    paused.spec.paused = true;
    let decision = reconcile_source(&source_observed(paused), now, &config());
    assert!(applied_jobs(&decision.actions).is_empty());

    // A backup that falls due while the drill runs waits for it.
    let mut observed = source_observed(drilled(manual_drill()));
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Active,
        &["drill"],
        None,
    ));
    let tomorrow = ts("2026-01-03T02:05:00Z");
    let decision = reconcile_source(&observed, tomorrow, &config());
    assert!(
        applied(&decision.actions).is_empty(),
        "{:?}",
        decision.actions
    );
    assert_eq!(decision.status.last_sync_start_time, None);
    assert_eq!(decision.requeue, Requeue::After(config().poll_interval));
}

#[test]
fn a_finished_drill_is_recorded_and_its_job_removed() {
    let now = ts("2026-01-02T05:10:00Z");
    let mut observed = source_observed(drilled(manual_drill()));
    let figures = DrillResult {
        passed: true,
        measured_seconds: 42.5,
        rto_seconds: Some(600.0),
        bytes_verified: 1 << 20,
        files_verified: 12,
        snapshot_id: Some("ab12".to_owned()),
        reason: None,
    };
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["drill"],
        Some(AgentResult {
            success: true,
            drill: Some(figures.clone()),
            ..AgentResult::default()
        }),
    ));
    let decision = reconcile_source(&observed, now, &config());
    assert!(decision.actions.contains(&Action::Delete {
        kind: ObjectKind::Job,
        name: job_name(true, NAME),
    }));
    let drill = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .drill
        .clone()
        .unwrap();
    assert_eq!(drill.last_drill_time, Some(Time(now)));
    assert_eq!(drill.passed, Some(true));
    assert_eq!(drill.measured_seconds, Some(42.5));
    assert_eq!(drill.rto_seconds, Some(600.0));
    assert_eq!(drill.bytes_verified, Some(1 << 20));
    assert_eq!(drill.files_verified, Some(12));
    assert_eq!(drill.snapshot_id.as_deref(), Some("ab12"));
    assert_eq!(drill.reason, None);
    assert_eq!(drill.last_manual_drill.as_deref(), Some("drill-1"));
    // The default schedule, the seed's monthly DR test: next 1 February, 03:00.
    assert_eq!(
        drill.next_drill_time,
        Some(Time(ts("2026-02-01T03:00:00Z")))
    );
    assert_eq!(
        decision.status.last_sync_time,
        observed.source.status.as_ref().unwrap().last_sync_time
    );
    assert!(decision.report.is_none());
    assert!(decision.events.iter().any(|e| e.reason == "DrillPassed"));
    assert_eq!(decision.requeue, Requeue::After(SignedDuration::ZERO));

    // Done: the manual request is satisfied, the next reconcile starts nothing.
    let mut source = observed.source.clone();
    source.status = Some(decision.status);
    let decision = reconcile_source(&source_observed(source), now, &config());
    assert!(applied_jobs(&decision.actions).is_empty());

    // A failed drill (RTO missed) is recorded with its reason, as a Warning.
    observed.owned.jobs[0].phase = JobPhase::Failed;
    observed.owned.jobs[0].result = Some(AgentResult {
        success: false,
        message: Some("drill failed: RTO missed".to_owned()),
        drill: Some(DrillResult {
            passed: false,
            reason: Some("RTO missed: 700 s > 600 s".to_owned()),
            ..figures
        }),
        ..AgentResult::default()
    });
    let decision = reconcile_source(&observed, now, &config());
    let drill = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .drill
        .clone()
        .unwrap();
    assert_eq!(drill.passed, Some(false));
    assert_eq!(drill.reason.as_deref(), Some("RTO missed: 700 s > 600 s"));
    assert!(decision.events.iter().any(|e| e.reason == "DrillFailed"));

    // A drill Job that ended without a document failed, and says so.
    observed.owned.jobs[0].result = None;
    let decision = reconcile_source(&observed, now, &config());
    let drill = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .drill
        .clone()
        .unwrap();
    assert_eq!(drill.passed, Some(false));
    assert_eq!(
        drill.reason.as_deref(),
        Some("the drill Job ended without a result")
    );
}

#[test]
fn a_drills_report_becomes_status_and_a_configmap_the_source_owns() {
    let now = ts("2026-01-02T05:10:00Z");
    let mut observed = source_observed(drilled(manual_drill()));
    let figures = ReportResult {
        window_days: 30,
        compliant: false,
        backups: 29,
        failures: 1,
        success_rate: Some(29.0 / 30.0),
        longest_gap_seconds: Some(172_800.0),
        rpo_met: Some(false),
        retention_conforms: Some(true),
        audit_intact: Some(false),
        holds: 2,
        key_age_days: Some(12.5),
        rotation_overdue: false,
        repository_bytes: 1 << 30,
    };
    // A failed drill still brings its report (the agent runs `report` after a failed drill).
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Failed,
        &["drill", "report"],
        Some(AgentResult {
            success: false,
            drill: Some(DrillResult::default()),
            report: Some(figures.clone()),
            ..AgentResult::default()
        }),
    ));
    let decision = reconcile_source(&observed, now, &config());
    let report = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .report
        .clone()
        .unwrap();
    let name = report_config_map_name(NAME);
    assert_eq!(name, "example-app-backup-arca-report");
    assert_eq!(report.last_report_time, Some(Time(now)));
    assert_eq!(report.config_map.as_deref(), Some(name.as_str()));
    assert_eq!(report.compliant, Some(false));
    assert_eq!(report.backups, Some(29));
    assert_eq!(report.failures, Some(1));
    assert_eq!(report.success_rate, Some(29.0 / 30.0));
    assert_eq!(report.longest_gap_seconds, Some(172_800.0));
    assert_eq!(report.rpo_met, Some(false));
    assert_eq!(report.audit_intact, Some(false));
    assert_eq!(report.holds, Some(2));
    assert_eq!(report.repository_bytes, Some(1 << 30));
    let maps: Vec<_> = decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply(Object::ConfigMap(map)) => Some(map),
            _ => None,
        })
        .collect();
    assert_eq!(maps.len(), 1, "{:?}", decision.actions);
    let map = maps[0];
    assert_eq!(map.metadata.name.as_deref(), Some(name.as_str()));
    let owner = &map.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "ReplicationSource");
    assert_eq!(owner.name, NAME);
    let data = map.data.as_ref().unwrap();
    let json: arca_kube::api::ReportStatus = serde_json::from_str(&data[REPORT_JSON_KEY]).unwrap();
    assert_eq!(json, report);
    let markdown = &data[REPORT_MARKDOWN_KEY];
    assert!(
        markdown.contains("| Audit chain | **broken** |"),
        "{markdown}"
    );
    assert!(markdown.contains("| Success rate | 96.7 % |"), "{markdown}");
    assert!(markdown.contains("| RPO | **missed** |"), "{markdown}");
    assert!(markdown.contains("| Retention | conforms |"), "{markdown}");
    assert!(markdown.len() < 4096, "far below a ConfigMap's 1 MiB");

    // A drill Job that ended before its report leaves the last report standing, no ConfigMap.
    let mut source = observed.source.clone();
    source.status = Some(decision.status.clone());
    let mut again = source_observed(source);
    again.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Failed,
        &["drill", "report"],
        None,
    ));
    let later = ts("2026-02-01T04:00:00Z");
    let decision = reconcile_source(&again, later, &config());
    assert_eq!(
        decision.status.arca.as_ref().unwrap().report.as_ref(),
        Some(&report)
    );
    assert!(
        !decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Apply(Object::ConfigMap(_))))
    );
}

#[test]
fn scheduled_drills_fall_due_on_their_schedule() {
    // The default schedule counts from the object's creation (2026-01-01T00:00Z): due at 03:00.
    let before = ts("2026-01-01T02:30:00Z");
    let mut source = drilled(DrillSpec::default());
    source.status.as_mut().unwrap().last_sync_time = Some(Time(ts("2026-01-01T02:00:00Z")));
    let decision = reconcile_source(&source_observed(source.clone()), before, &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    let drill = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .drill
        .clone()
        .unwrap();
    assert_eq!(
        drill.next_drill_time,
        Some(Time(ts("2026-01-01T03:00:00Z")))
    );
    assert_eq!(drill.last_drill_time, None);
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_mins(30)),
        "looks again when the drill falls due"
    );
    let due = ts("2026-01-01T03:00:00Z");
    let decision = reconcile_source(&source_observed(source.clone()), due, &config());
    assert_eq!(applied_jobs(&decision.actions).len(), 1);

    // An invalid schedule starts nothing and says why.
    source
        .spec
        .arca
        .as_mut()
        .unwrap()
        .drill
        .as_mut()
        .unwrap()
        .schedule = Some("61 * * * *".to_owned());
    let decision = reconcile_source(&source_observed(source), due, &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    let warning = decision
        .events
        .iter()
        .find(|e| e.reason == "DrillNotStarted")
        .unwrap();
    assert!(
        warning.note.contains("spec.arca.drill.schedule"),
        "{}",
        warning.note
    );
}

#[test]
fn a_failed_replica_completes_the_backup_and_is_reported() {
    // The agent exits 3 (partial): the pod failure policy fails the Job at once, with the
    // document's success result and the replica's error.
    let mut source = replicated();
    source
        .status
        .get_or_insert_with(Default::default)
        .last_sync_start_time = Some(Time(ts("2026-01-02T02:00:00Z")));
    let mut observed = source_observed(source);
    let mut result = backup_success("s1");
    result.replicas = vec![
        ReplicaResult {
            name: "dr-site-secret".to_owned(),
            copied: 0,
            lag_snapshots: None,
            lag_seconds: None,
            error: Some("s3: 503 Slow Down".to_owned()),
        },
        ReplicaResult {
            name: "nfs-secret".to_owned(),
            copied: 1,
            lag_snapshots: Some(0),
            lag_seconds: Some(0.0),
            error: None,
        },
    ];
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Failed,
        &["backup"],
        Some(result),
    ));
    let done = ts("2026-01-02T02:20:00Z");
    let decision = reconcile_source(&observed, done, &config());
    let status = &decision.status;
    assert_eq!(status.last_sync_time, Some(Time(done)));
    assert_eq!(status.last_sync_start_time, None);
    assert_eq!(
        status.latest_mover_status.as_ref().unwrap().result,
        Some(arca_kube::api::MoverResult::Successful)
    );
    let arca = status.arca.as_ref().unwrap();
    assert_eq!(arca.last_snapshot_id.as_deref(), Some("s1"));
    assert_eq!(arca.retry_after, None, "nothing to retry");
    let replicas = arca.replicas.as_ref().unwrap();
    assert_eq!(replicas[0].error.as_deref(), Some("s3: 503 Slow Down"));
    assert_eq!(replicas[1].last_copy_time, Some(Time(done)));
    let warning = decision
        .events
        .iter()
        .find(|e| e.reason == "ReplicationFailed")
        .unwrap();
    assert!(warning.note.contains("dr-site-secret"), "{}", warning.note);
    assert_eq!(
        decision.report.map(|r| r.outcome),
        Some(arca_kube::reconcile::SyncOutcome::Succeeded)
    );
}

/// An idle source (synced at 02:10 today) with one target copied after every backup and one
/// copied every six hours.
fn scheduled_replication() -> arca_kube::SourceObserved {
    let mut source = with_arca(ArcaSourceSpec {
        replication: Some(vec![
            ReplicationTarget {
                repository: "dr-site-secret".to_owned(),
                schedule: None,
            },
            ReplicationTarget {
                repository: "nfs-secret".to_owned(),
                schedule: Some("0 */6 * * *".to_owned()),
            },
        ]),
        ..ArcaSourceSpec::default()
    });
    source
        .status
        .get_or_insert_with(Default::default)
        .last_sync_time = Some(Time(ts("2026-01-02T02:10:00Z")));
    let mut observed = source_observed(source);
    observed.replica_secrets = vec![secret("dr-site-secret"), secret("nfs-secret")];
    observed
}

fn replica_prefixes(job: &k8s_openapi::api::batch::v1::Job) -> Vec<(String, String)> {
    mover_container(job)
        .env_from
        .iter()
        .flatten()
        .map(|f| {
            (
                f.prefix.clone().unwrap(),
                f.secret_ref.as_ref().unwrap().name.clone(),
            )
        })
        .collect()
}

fn args(job: &k8s_openapi::api::batch::v1::Job) -> Vec<String> {
    mover_container(job).args.clone().unwrap_or_default()
}

#[test]
fn a_scheduled_target_is_not_copied_by_the_backup_job() {
    let mut observed = scheduled_replication();
    let status = observed.source.status.as_mut().unwrap();
    status.last_sync_start_time = Some(Time(ts("2026-01-03T02:00:00Z")));
    observed
        .owned
        .snapshots
        .push(snapshot(&copy_name(NAME), true));
    let decision = reconcile_source(&observed, ts("2026-01-03T02:01:00Z"), &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    assert_eq!(args(jobs[0]), ["backup"]);
    assert_eq!(
        replica_prefixes(jobs[0]),
        [("ARCA_REPLICA_0_".to_owned(), "dr-site-secret".to_owned())],
        "only the target without a schedule, numbered from 0"
    );
    assert_eq!(
        env_value(jobs[0], "ARCA_REPLICA_1_NAME"),
        None,
        "the scheduled target is not in the backup Job"
    );
}

#[test]
fn a_scheduled_target_is_copied_by_the_dr_job_when_due() {
    // Created 2026-01-01T00:00Z, never copied: due at 06:00 on the first (the first run of
    // `0 */6 * * *` after the creation), so at once.
    let observed = scheduled_replication();
    let now = ts("2026-01-02T05:00:00Z");
    let decision = reconcile_source(&observed, now, &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    let job = jobs[0];
    assert_eq!(
        job.metadata.name.as_deref(),
        Some(job_name(true, NAME).as_str()),
        "the object's one Job name"
    );
    assert_eq!(args(job), ["replicate"]);
    assert_eq!(
        replica_prefixes(job),
        [("ARCA_REPLICA_0_".to_owned(), "nfs-secret".to_owned())]
    );
    assert_eq!(
        env_value(job, "ARCA_REPLICA_0_NAME").as_deref(),
        Some("nfs-secret")
    );
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .all(|v| v.persistent_volume_claim.is_none()),
        "a DR Job mounts no claim"
    );
    assert_eq!(job.spec.as_ref().unwrap().backoff_limit, Some(0));
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    let nfs = replicas.iter().find(|r| r.name == "nfs-secret").unwrap();
    assert_eq!(nfs.last_attempt_time, Some(Time(now)));
    assert_eq!(decision.status.last_sync_start_time, None, "not a sync");
    assert!(!arca_kube::reconcile::starts_sync(&observed, &decision));

    // Once attempted, the next copy falls due on the schedule after the attempt.
    let mut source = observed.source.clone();
    source.status = Some(decision.status.clone());
    let mut waiting = scheduled_replication();
    waiting.source = source;
    let decision = reconcile_source(&waiting, ts("2026-01-02T05:30:00Z"), &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    let nfs = replicas.iter().find(|r| r.name == "nfs-secret").unwrap();
    assert_eq!(nfs.next_copy_time, Some(Time(ts("2026-01-02T06:00:00Z"))));
    assert_eq!(
        decision.requeue,
        Requeue::After(SignedDuration::from_mins(30)),
        "looks again when the copy falls due"
    );
    let target = replicas.iter().find(|r| r.name == "dr-site-secret");
    assert!(
        target.is_none_or(|t| t.next_copy_time.is_none()),
        "a target without a schedule has no next copy time: {target:?}"
    );

    // Its schedule removed, the target is the backups' again: its own times go.
    let mut unscheduled = waiting.clone();
    unscheduled.source.status = Some(decision.status.clone());
    unscheduled
        .source
        .spec
        .arca
        .as_mut()
        .unwrap()
        .replication
        .as_mut()
        .unwrap()[1]
        .schedule = None;
    let decision = reconcile_source(&unscheduled, ts("2026-01-02T05:30:00Z"), &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    let nfs = replicas.iter().find(|r| r.name == "nfs-secret").unwrap();
    assert_eq!(
        (&nfs.last_attempt_time, &nfs.next_copy_time),
        (&None, &None)
    );
}

#[test]
fn a_finished_replication_job_is_recorded_per_target() {
    let started = ts("2026-01-02T05:00:00Z");
    let mut observed = scheduled_replication();
    let status = observed.source.status.as_mut().unwrap();
    status.arca = Some(arca_kube::api::ArcaSourceStatus {
        replicas: Some(vec![
            arca_kube::api::ReplicaStatus {
                name: "dr-site-secret".to_owned(),
                last_copy_time: Some(Time(ts("2026-01-02T02:10:00Z"))),
                lag_snapshots: Some(0),
                ..Default::default()
            },
            arca_kube::api::ReplicaStatus {
                name: "nfs-secret".to_owned(),
                last_attempt_time: Some(Time(started)),
                ..Default::default()
            },
        ]),
        ..Default::default()
    });
    let mut result = AgentResult {
        success: true,
        ..AgentResult::default()
    };
    result.replicas = vec![ReplicaResult {
        name: "nfs-secret".to_owned(),
        copied: 3,
        lag_snapshots: Some(0),
        lag_seconds: Some(0.0),
        error: None,
    }];
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["replicate"],
        Some(result),
    ));
    let done = ts("2026-01-02T05:04:00Z");
    let decision = reconcile_source(&observed, done, &config());
    assert!(decision.actions.contains(&Action::Delete {
        kind: ObjectKind::Job,
        name: job_name(true, NAME),
    }));
    assert_eq!(decision.requeue, Requeue::After(SignedDuration::ZERO));
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    assert_eq!(replicas[1].name, "nfs-secret");
    assert_eq!(replicas[1].last_copy_time, Some(Time(done)));
    assert_eq!(replicas[1].lag_snapshots, Some(0));
    assert_eq!(replicas[1].error, None);
    assert_eq!(replicas[1].last_attempt_time, Some(Time(started)));
    assert_eq!(
        replicas[0].last_copy_time,
        Some(Time(ts("2026-01-02T02:10:00Z"))),
        "the backup's target is untouched"
    );
    assert_eq!(
        decision.status.last_sync_time,
        observed.source.status.as_ref().unwrap().last_sync_time,
        "not a sync"
    );
    assert!(decision.report.is_none());

    // The Job failed before copying (no document): its target gets the failure, keeps its
    // last copy, and the backup's target is not blamed.
    observed.owned.jobs[0].phase = JobPhase::Failed;
    observed.owned.jobs[0].result = None;
    let decision = reconcile_source(&observed, done, &config());
    let replicas = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .replicas
        .clone()
        .unwrap();
    assert_eq!(
        replicas[1].error.as_deref(),
        Some("the replication Job ended without a result")
    );
    assert_eq!(replicas[1].last_copy_time, None);
    assert_eq!(replicas[0].error, None);
    assert!(
        decision
            .events
            .iter()
            .any(|e| e.reason == "ReplicationFailed" && e.note.contains("nfs-secret"))
    );
}

#[test]
fn scheduled_reports_run_alone_and_with_drills_in_one_job() {
    // Without spec.arca.report nothing reports on its own.
    let plain = drilled(DrillSpec {
        // The first drill falls due on 1 February.
        schedule: Some("0 3 1 2 *".to_owned()),
        ..DrillSpec::default()
    });
    let now = ts("2026-01-02T07:00:00Z");
    let decision = reconcile_source(&source_observed(plain.clone()), now, &config());
    assert!(applied_jobs(&decision.actions).is_empty());

    // With it (default schedule, daily at 06:00), the first report falls due at 06:00 after
    // the creation.
    let mut reporting = plain;
    reporting.spec.arca.as_mut().unwrap().report = Some(arca_kube::api::ReportSpec::default());
    let decision = reconcile_source(&source_observed(reporting.clone()), now, &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    assert_eq!(args(jobs[0]), ["report"]);
    assert!(decision.events.iter().all(|e| e.reason != "DrillStarted"));
    // Judged by the source's class and retention, as the backups are.
    assert_eq!(
        env_value(jobs[0], "ARCA_DATA_CLASS").as_deref(),
        Some("important")
    );
    assert_eq!(
        env_value(jobs[0], "FORGET_OPTIONS"),
        Some(arca_kube::api::ResticRetainPolicy::forget_options(
            reporting.spec.restic.as_ref().unwrap().retain.as_ref()
        ))
    );

    // A finished report: status, ConfigMap, and the next report tomorrow at 06:00.
    let mut observed = source_observed(reporting.clone());
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Succeeded,
        &["report"],
        Some(AgentResult {
            success: true,
            report: Some(ReportResult {
                window_days: 30,
                compliant: true,
                ..ReportResult::default()
            }),
            ..AgentResult::default()
        }),
    ));
    let done = ts("2026-01-02T07:02:00Z");
    let decision = reconcile_source(&observed, done, &config());
    let report = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .report
        .clone()
        .unwrap();
    assert_eq!(report.last_report_time, Some(Time(done)));
    assert_eq!(report.compliant, Some(true));
    assert_eq!(
        report.next_report_time,
        Some(Time(ts("2026-01-03T06:00:00Z")))
    );
    assert!(
        decision
            .actions
            .iter()
            .any(|a| matches!(a, Action::Apply(Object::ConfigMap(_))))
    );
    assert!(
        decision
            .status
            .arca
            .as_ref()
            .unwrap()
            .drill
            .as_ref()
            .is_none_or(|d| d.last_drill_time.is_none()),
        "a report alone is no drill"
    );

    // A drill and a report due together: one Job, the drill before the report, and a due
    // scheduled copy before both.
    let mut everything = reporting;
    let arca = everything.spec.arca.as_mut().unwrap();
    arca.drill = Some(manual_drill());
    arca.replication = Some(vec![ReplicationTarget {
        repository: "nfs-secret".to_owned(),
        schedule: Some("@daily".to_owned()),
    }]);
    let mut observed = source_observed(everything);
    observed.replica_secrets = vec![secret("nfs-secret")];
    let decision = reconcile_source(&observed, now, &config());
    let jobs = applied_jobs(&decision.actions);
    assert_eq!(jobs.len(), 1, "{:?}", decision.actions);
    assert_eq!(args(jobs[0]), ["replicate", "drill", "report"]);
    assert_eq!(env_value(jobs[0], "ARCA_RTO").as_deref(), Some("600"));
    assert_eq!(
        env_value(jobs[0], "ARCA_REPLICA_0_NAME").as_deref(),
        Some("nfs-secret")
    );

    // A scheduled target whose Secret is missing keeps the whole DR Job from starting, with
    // a Warning naming it.
    observed.replica_secrets.clear();
    let decision = reconcile_source(&observed, now, &config());
    assert!(applied_jobs(&decision.actions).is_empty());
    let warning = decision
        .events
        .iter()
        .find(|e| e.reason == "DrJobNotStarted")
        .unwrap();
    assert!(warning.note.contains("nfs-secret"), "{}", warning.note);
}

#[test]
fn a_drill_passes_in_a_job_a_failed_replica_made_partial() {
    // The agent exits 3 (a scheduled replica failed): the Job fails with a success result,
    // and the drill that passed in it is a pass.
    let mut observed = source_observed(drilled(manual_drill()));
    observed.owned.jobs.push(job(
        &job_name(true, NAME),
        JobPhase::Failed,
        &["replicate", "drill", "report"],
        Some(AgentResult {
            success: true,
            partial: true,
            drill: Some(DrillResult {
                passed: true,
                measured_seconds: 12.0,
                ..DrillResult::default()
            }),
            ..AgentResult::default()
        }),
    ));
    let decision = reconcile_source(&observed, ts("2026-01-02T05:10:00Z"), &config());
    let drill = decision
        .status
        .arca
        .as_ref()
        .unwrap()
        .drill
        .clone()
        .unwrap();
    assert_eq!(drill.passed, Some(true), "{drill:?}");
    assert!(decision.events.iter().any(|e| e.reason == "DrillPassed"));
}
