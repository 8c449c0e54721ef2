//! Property tests: random histories of a simulated cluster (Jobs that succeed, fail or run on,
//! snapshots that become ready, time that passes, pause toggled, manual tags changed), with
//! every decision carried out as the controller would, and the invariants checked after each:
//! never two Jobs for one object; paused objects start no work; status times never go
//! backwards; a failed restore never sets `latestImage`; a drill mounts no claim (it never
//! touches the source volume) and never moves the sync's status.

use std::collections::BTreeSet;

use arca_kube::api::{
    ArcaSourceSpec, CopyMethod, DrillSpec, ReplicationDestination, ReplicationSource, TriggerSpec,
};
use arca_kube::reconcile::{
    AgentResult, ErrorClass, FINALIZER, JobObserved, JobPhase, Object, ObjectKind, OwnedObserved,
    PvcObserved, SnapshotObserved,
};
use arca_kube::{Action, reconcile_destination, reconcile_source};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use crate::common::*;

/// What happens between two reconciles.
#[derive(Clone, Debug)]
enum Step {
    Advance(i64),
    SnapshotsReady,
    JobSucceeds { restored: bool },
    JobFails { fatal: bool },
    JobSucceedsWithoutResult,
    TogglePause,
    NewManualTag(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0i64..4 * 3600).prop_map(Step::Advance),
        2 => Just(Step::SnapshotsReady),
        2 => any::<bool>().prop_map(|restored| Step::JobSucceeds { restored }),
        1 => any::<bool>().prop_map(|fatal| Step::JobFails { fatal }),
        1 => Just(Step::JobSucceedsWithoutResult),
        1 => Just(Step::TogglePause),
        1 => (0u8..3).prop_map(Step::NewManualTag),
    ]
}

fn trigger() -> impl Strategy<Value = Option<TriggerSpec>> {
    prop_oneof![
        Just(None),
        Just(Some(TriggerSpec {
            schedule: Some("*/30 * * * *".to_owned()),
            manual: None
        })),
        Just(Some(TriggerSpec {
            schedule: Some("0 2 * * *".to_owned()),
            manual: None
        })),
        Just(Some(TriggerSpec {
            schedule: None,
            manual: Some("tag-0".to_owned())
        })),
    ]
}

fn copy_method() -> impl Strategy<Value = CopyMethod> {
    prop_oneof![
        Just(CopyMethod::Direct),
        Just(CopyMethod::Clone),
        Just(CopyMethod::Snapshot)
    ]
}

/// The objects the simulated cluster holds for one owner.
#[derive(Default)]
struct Cluster {
    owned: OwnedObserved,
    /// Names of PVCs and VolumeSnapshots carrying the cleanup label.
    temporary: BTreeSet<String>,
    finalized: bool,
}

impl Cluster {
    /// Carries out a decision's actions the way the controller would.
    fn carry_out(&mut self, actions: &[Action], now: Timestamp) {
        for action in actions {
            match action {
                Action::AddFinalizer => self.finalized = true,
                Action::RemoveFinalizer => self.finalized = false,
                Action::Apply(object) => self.apply(object, now),
                Action::Delete { kind, name } => self.delete(*kind, |n| n == name),
                Action::DeleteAllOf { kind, .. } => {
                    let temporary = self.temporary.clone();
                    self.delete(*kind, |n| temporary.contains(n));
                }
                Action::SetJobParallelism { name, parallelism } => {
                    for job in self.owned.jobs.iter_mut().filter(|j| &j.name == name) {
                        job.parallelism = *parallelism;
                    }
                }
                Action::RunHook(_) => {}
            }
        }
    }

    fn apply(&mut self, object: &Object, _now: Timestamp) {
        let temporary = |labels: &Option<std::collections::BTreeMap<String, String>>| {
            labels
                .as_ref()
                .is_some_and(|l| l.contains_key("volsync.backube/cleanup"))
        };
        match object {
            Object::Job(job) => {
                let name = job.metadata.name.clone().unwrap();
                let spec = job.spec.as_ref().unwrap();
                let args = spec.template.spec.as_ref().unwrap().containers[0]
                    .args
                    .clone()
                    .unwrap_or_default();
                // Server-side apply of an existing name updates it; it never makes a second.
                self.owned.jobs.retain(|j| j.name != name);
                self.owned.jobs.push(JobObserved {
                    name,
                    phase: JobPhase::Active,
                    parallelism: spec.parallelism.unwrap_or(1),
                    actions: args,
                    finished_at: None,
                    result: None,
                    logs: None,
                    progress: None,
                });
            }
            Object::PersistentVolumeClaim(pvc) => {
                let name = pvc.metadata.name.clone().unwrap();
                if temporary(&pvc.metadata.labels) {
                    self.temporary.insert(name.clone());
                }
                self.owned.pvcs.retain(|p| p.name != name);
                self.owned.pvcs.push(PvcObserved {
                    name,
                    ..PvcObserved::default()
                });
            }
            Object::VolumeSnapshot(snapshot) => {
                let name = snapshot.metadata.name.clone().unwrap();
                if temporary(&snapshot.metadata.labels) {
                    self.temporary.insert(name.clone());
                }
                if self.owned.snapshot_named(&name).is_none() {
                    self.owned.snapshots.push(SnapshotObserved {
                        name,
                        ..SnapshotObserved::default()
                    });
                }
            }
            Object::ServiceAccount(o) => {
                self.owned
                    .service_accounts
                    .insert(o.metadata.name.clone().unwrap());
            }
            Object::Role(o) => {
                self.owned.roles.insert(o.metadata.name.clone().unwrap());
            }
            Object::RoleBinding(o) => {
                self.owned
                    .role_bindings
                    .insert(o.metadata.name.clone().unwrap());
            }
            // A report is owned by the source but never read back by a decision.
            Object::ConfigMap(_) => {}
        }
    }

    fn delete(&mut self, kind: ObjectKind, matches: impl Fn(&String) -> bool) {
        match kind {
            ObjectKind::Job => self.owned.jobs.retain(|j| !matches(&j.name)),
            ObjectKind::PersistentVolumeClaim => self.owned.pvcs.retain(|p| !matches(&p.name)),
            ObjectKind::VolumeSnapshot => self.owned.snapshots.retain(|s| !matches(&s.name)),
        }
    }

    /// Applies a step to the cluster; returns whether the object's spec changed (pause, tag).
    fn happen(&mut self, step: &Step, now: &mut Timestamp, restore: bool) {
        match step {
            Step::Advance(secs) => {
                *now = now.checked_add(SignedDuration::from_secs(*secs)).unwrap()
            }
            Step::SnapshotsReady => {
                for snapshot in &mut self.owned.snapshots {
                    snapshot.ready_to_use = true;
                }
            }
            Step::JobSucceeds { restored } => {
                self.finish(*now, JobPhase::Succeeded, Some(success(restore, *restored)))
            }
            Step::JobFails { fatal } => {
                let class = if *fatal {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::Retryable
                };
                let result = AgentResult {
                    success: false,
                    error_class: Some(class),
                    message: Some("failed".to_owned()),
                    ..AgentResult::default()
                };
                self.finish(*now, JobPhase::Failed, Some(result));
            }
            Step::JobSucceedsWithoutResult => self.finish(*now, JobPhase::Succeeded, None),
            Step::TogglePause | Step::NewManualTag(_) => {}
        }
    }

    fn finish(&mut self, now: Timestamp, phase: JobPhase, result: Option<AgentResult>) {
        for job in self
            .owned
            .jobs
            .iter_mut()
            .filter(|j| j.phase == JobPhase::Active && j.parallelism > 0)
        {
            job.phase = phase;
            job.finished_at = Some(now);
            job.result = result.clone();
        }
    }
}

trait SnapshotNamed {
    fn snapshot_named(&self, name: &str) -> Option<&SnapshotObserved>;
}

impl SnapshotNamed for OwnedObserved {
    fn snapshot_named(&self, name: &str) -> Option<&SnapshotObserved> {
        self.snapshots.iter().find(|s| s.name == name)
    }
}

fn success(restore: bool, restored: bool) -> AgentResult {
    if restore {
        AgentResult {
            success: true,
            snapshot_id: restored.then(|| "r".to_owned()),
            ..AgentResult::default()
        }
    } else {
        backup_success("b")
    }
}

fn later_or_equal(old: Option<Timestamp>, new: Option<Timestamp>) -> bool {
    match (old, new) {
        (Some(old), Some(new)) => new >= old,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn starts_work(actions: &[Action]) -> bool {
    actions.iter().any(|a| match a {
        Action::Apply(
            Object::Job(_) | Object::VolumeSnapshot(_) | Object::PersistentVolumeClaim(_),
        ) => true,
        Action::SetJobParallelism { parallelism, .. } => *parallelism > 0,
        Action::RunHook(_) => true,
        _ => false,
    })
}

fn toggle(step: &Step, paused: &mut bool, trigger: &mut Option<TriggerSpec>) {
    match step {
        Step::TogglePause => *paused = !*paused,
        Step::NewManualTag(n) => {
            if let Some(t) = trigger.as_mut().filter(|t| t.manual.is_some()) {
                t.manual = Some(format!("tag-{n}"));
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn source_histories_keep_the_invariants(
        trigger in trigger(),
        method in copy_method(),
        paused in any::<bool>(),
        drills in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let config = config();
        let mut source: ReplicationSource = seed_source();
        source.metadata.finalizers = None;
        if drills {
            source.spec.arca = Some(ArcaSourceSpec {
                drill: Some(DrillSpec {
                    schedule: Some("*/20 * * * *".to_owned()),
                    manual: Some("drill-0".to_owned()),
                    ..DrillSpec::default()
                }),
                ..ArcaSourceSpec::default()
            });
        }
        source.spec.trigger = trigger;
        source.spec.paused = paused;
        source.spec.restic.as_mut().unwrap().copy_method = Some(method);
        let mut cluster = Cluster::default();
        let mut now = ts("2026-01-01T00:00:00Z");
        for step in &steps {
            cluster.happen(step, &mut now, false);
            toggle(step, &mut source.spec.paused, &mut source.spec.trigger);
            source.metadata.finalizers = cluster.finalized.then(|| vec![FINALIZER.to_owned()]);
            let mut observed = source_observed(source.clone());
            observed.owned = cluster.owned.clone();
            let before = source.status.clone().unwrap_or_default();
            let decision = reconcile_source(&observed, now, &config);

            let new_jobs = decision.actions.iter().filter(|a| matches!(a, Action::Apply(Object::Job(_)))).count();
            prop_assert!(new_jobs <= 1);
            prop_assert!(new_jobs == 0 || cluster.owned.jobs.is_empty(), "a Job applied while one exists");
            if source.spec.paused {
                prop_assert!(!starts_work(&decision.actions), "paused but {:?}", decision.actions);
                prop_assert!(before.last_sync_start_time.is_some() || decision.status.last_sync_start_time.is_none());
            }
            let status = &decision.status;
            prop_assert!(later_or_equal(before.last_sync_time.as_ref().map(|t| t.0), status.last_sync_time.as_ref().map(|t| t.0)));
            let pruned = |s: &arca_kube::api::ReplicationSourceStatus| s.restic.as_ref().and_then(|r| r.last_pruned.as_ref()).map(|t| t.0);
            prop_assert!(later_or_equal(pruned(&before), pruned(status)));
            if let Some(start) = &status.last_sync_start_time {
                prop_assert!(start.0 <= now);
            }
            let drill_running = cluster
                .owned
                .jobs
                .iter()
                .any(|j| arca_kube::reconcile::is_dr_job(&j.actions));
            for job in applied_jobs(&decision.actions) {
                let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
                if pod.containers[0].args.as_ref().is_some_and(|a| arca_kube::reconcile::is_dr_job(a)) {
                    prop_assert!(
                        pod.volumes.iter().flatten().all(|v| v.persistent_volume_claim.is_none()),
                        "a drill mounts a claim: {:?}", pod.volumes
                    );
                    prop_assert!(before.last_sync_start_time.is_none() && status.last_sync_start_time.is_none(),
                        "a drill started beside a sync");
                }
            }
            if drill_running {
                prop_assert_eq!(&before.last_sync_time, &status.last_sync_time);
                prop_assert_eq!(&before.last_sync_start_time, &status.last_sync_start_time);
                prop_assert_eq!(
                    before.arca.as_ref().and_then(|a| a.last_snapshot_id.clone()),
                    status.arca.as_ref().and_then(|a| a.last_snapshot_id.clone())
                );
            }

            cluster.carry_out(&decision.actions, now);
            prop_assert!(cluster.owned.jobs.len() <= 1, "two Jobs: {:?}", cluster.owned.jobs);
            source.status = Some(decision.status);
        }
    }

    #[test]
    fn destination_histories_keep_the_invariants(
        trigger in trigger(),
        snapshot_method in any::<bool>(),
        paused in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let config = config();
        let mut destination: ReplicationDestination = seed_destination();
        destination.metadata.finalizers = None;
        destination.spec.trigger = trigger;
        destination.spec.paused = paused;
        if snapshot_method {
            destination.spec.restic.as_mut().unwrap().copy_method = Some(CopyMethod::Snapshot);
        }
        let mut cluster = Cluster::default();
        let mut now = ts("2026-01-01T00:00:00Z");
        for step in &steps {
            cluster.happen(step, &mut now, true);
            toggle(step, &mut destination.spec.paused, &mut destination.spec.trigger);
            destination.metadata.finalizers = cluster.finalized.then(|| vec![FINALIZER.to_owned()]);
            let mut observed = destination_observed(destination.clone());
            observed.owned = cluster.owned.clone();
            let before = destination.status.clone().unwrap_or_default();
            let restored_ok = cluster.owned.jobs.iter().any(|j| {
                j.phase == JobPhase::Succeeded && j.result.as_ref().is_some_and(|r| r.success && r.snapshot_id.is_some())
            });
            let decision = reconcile_destination(&observed, now, &config);

            let new_jobs = decision.actions.iter().filter(|a| matches!(a, Action::Apply(Object::Job(_)))).count();
            prop_assert!(new_jobs <= 1);
            prop_assert!(new_jobs == 0 || cluster.owned.jobs.is_empty());
            if destination.spec.paused {
                prop_assert!(!starts_work(&decision.actions), "paused but {:?}", decision.actions);
            }
            if decision.status.latest_image != before.latest_image {
                prop_assert!(restored_ok, "latestImage moved without a successful restore");
            }
            prop_assert!(later_or_equal(
                before.last_sync_time.as_ref().map(|t| t.0),
                decision.status.last_sync_time.as_ref().map(|t| t.0)
            ));

            cluster.carry_out(&decision.actions, now);
            prop_assert!(cluster.owned.jobs.len() <= 1);
            destination.status = Some(decision.status);
        }
    }
}
