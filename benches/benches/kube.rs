//! criterion bench: the operator's reconcile decisions, per object.
//!
//! 1,000 ReplicationSources in the states a controller meets most (idle and waiting for their
//! schedule, a Job running, a Job just succeeded) decided one after the other, and 1,000
//! ReplicationDestinations starting a restore. Throughput is per object, so criterion's
//! "elem/s" is the controller's decisions per second on one core, without the API round trips.

use std::collections::BTreeSet;
use std::hint::black_box;

use arca_kube::api::{
    CopyMethod, ReplicationDestination, ReplicationDestinationResticSpec,
    ReplicationDestinationSpec, ReplicationSource, ReplicationSourceResticSpec,
    ReplicationSourceSpec, ReplicationSourceStatus, ResticRetainPolicy, TriggerSpec,
};
use arca_kube::reconcile::{
    AgentResult, DestinationObserved, FINALIZER, JobObserved, JobPhase, OwnedObserved, PvcObserved,
    SecretObserved, SourceObserved, job_name,
};
use arca_kube::{ControllerConfig, reconcile_destination, reconcile_source};
use criterion::{Criterion, Throughput, criterion_main};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

const OBJECTS: usize = 1_000;

fn meta(n: usize, now: Timestamp) -> ObjectMeta {
    ObjectMeta {
        name: Some(format!("volume-{n}")),
        namespace: Some(format!("ns-{}", n % 50)),
        uid: Some(format!("uid-{n}")),
        generation: Some(1),
        creation_timestamp: Some(Time(now - jiff::SignedDuration::from_hours(48))),
        finalizers: Some(vec![FINALIZER.to_owned()]),
        ..ObjectMeta::default()
    }
}

fn secret() -> Option<SecretObserved> {
    Some(SecretObserved {
        name: "repo".to_owned(),
        keys: BTreeSet::from(["RESTIC_REPOSITORY".to_owned(), "RESTIC_PASSWORD".to_owned()]),
    })
}

fn sources(now: Timestamp) -> Vec<SourceObserved> {
    (0..OBJECTS)
        .map(|n| {
            let mut status = ReplicationSourceStatus {
                last_sync_time: Some(Time(now - jiff::SignedDuration::from_hours(3))),
                ..ReplicationSourceStatus::default()
            };
            let mut owned = OwnedObserved::default();
            let name = format!("volume-{n}");
            match n % 3 {
                0 => {}
                phase => {
                    status.last_sync_start_time =
                        Some(Time(now - jiff::SignedDuration::from_mins(5)));
                    owned.jobs.push(JobObserved {
                        name: job_name(true, &name),
                        phase: if phase == 1 {
                            JobPhase::Active
                        } else {
                            JobPhase::Succeeded
                        },
                        parallelism: 1,
                        actions: vec!["backup".to_owned()],
                        finished_at: Some(now),
                        result: Some(AgentResult {
                            success: true,
                            snapshot_id: Some(format!("{n:064x}")),
                            ..AgentResult::default()
                        }),
                        logs: None,
                        progress: None,
                    });
                }
            }
            SourceObserved {
                source: ReplicationSource {
                    metadata: meta(n, now),
                    spec: ReplicationSourceSpec {
                        source_pvc: Some(format!("data-{n}")),
                        trigger: Some(TriggerSpec {
                            schedule: Some(format!("{} 2 * * *", n % 60)),
                            manual: None,
                        }),
                        restic: Some(ReplicationSourceResticSpec {
                            repository: "repo".to_owned(),
                            retain: Some(ResticRetainPolicy {
                                daily: Some(7),
                                ..ResticRetainPolicy::default()
                            }),
                            copy_method: Some(CopyMethod::Direct),
                            ..ReplicationSourceResticSpec::default()
                        }),
                        ..ReplicationSourceSpec::default()
                    },
                    status: Some(status),
                },
                source_pvc: Some(PvcObserved {
                    name: format!("data-{n}"),
                    ..PvcObserved::default()
                }),
                repository_secret: secret(),
                replica_secrets: Vec::new(),
                custom_ca_found: false,
                owned,
            }
        })
        .collect()
}

fn destinations(now: Timestamp) -> Vec<DestinationObserved> {
    (0..OBJECTS)
        .map(|n| DestinationObserved {
            destination: ReplicationDestination {
                metadata: meta(n, now),
                spec: ReplicationDestinationSpec {
                    trigger: Some(TriggerSpec {
                        schedule: None,
                        manual: Some("restore".to_owned()),
                    }),
                    restic: Some(ReplicationDestinationResticSpec {
                        repository: "repo".to_owned(),
                        destination_pvc: Some(format!("restore-{n}")),
                        ..ReplicationDestinationResticSpec::default()
                    }),
                    ..ReplicationDestinationSpec::default()
                },
                status: None,
            },
            destination_pvc: Some(PvcObserved {
                name: format!("restore-{n}"),
                ..PvcObserved::default()
            }),
            repository_secret: secret(),
            custom_ca_found: false,
            owned: OwnedObserved::default(),
        })
        .collect()
}

fn kube(c: &mut Criterion) {
    let now: Timestamp = "2026-03-29T12:30:00Z".parse().unwrap();
    let config = ControllerConfig::default();
    let sources = sources(now);
    let destinations = destinations(now);
    let mut group = c.benchmark_group("kube");
    group.throughput(Throughput::Elements(OBJECTS as u64));
    group.bench_function("reconcile_1k_sources", |b| {
        b.iter(|| {
            sources
                .iter()
                .map(|o| reconcile_source(black_box(o), now, &config).actions.len())
                .sum::<usize>()
        })
    });
    group.bench_function("reconcile_1k_destinations_starting", |b| {
        b.iter(|| {
            destinations
                .iter()
                .map(|o| {
                    reconcile_destination(black_box(o), now, &config)
                        .actions
                        .len()
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    kube(&mut criterion);
}

criterion_main!(benches);
