//! The cluster-wide compliance report: rows, counts, and the ConfigMap's two forms.

use arca_kube::api::{
    ArcaSourceSpec, ArcaSourceStatus, DataClass, DrillStatus, ReplicaStatus, ReplicationSource,
    ReportStatus,
};
use arca_kube::compliance::{CLUSTER_REPORT_NAME, Standing, cluster_report, config_map};
use arca_kube::reconcile::{REPORT_JSON_KEY, REPORT_MARKDOWN_KEY};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::common::*;

fn source(namespace: &str, name: &str, arca: Option<ArcaSourceStatus>) -> ReplicationSource {
    let mut source = seed_source();
    source.metadata.namespace = Some(namespace.to_owned());
    source.metadata.name = Some(name.to_owned());
    source.status.get_or_insert_with(Default::default).arca = arca;
    source
}

fn reported(compliant: bool, bytes: u64) -> ReportStatus {
    ReportStatus {
        last_report_time: Some(Time(ts("2026-01-02T06:00:00Z"))),
        compliant: Some(compliant),
        success_rate: Some(if compliant { 1.0 } else { 0.5 }),
        rpo_met: Some(compliant),
        audit_intact: Some(true),
        repository_bytes: Some(bytes),
        ..ReportStatus::default()
    }
}

fn replica(name: &str, lag: u64, error: Option<&str>) -> ReplicaStatus {
    ReplicaStatus {
        name: name.to_owned(),
        lag_seconds: Some(lag),
        error: error.map(str::to_owned),
        ..ReplicaStatus::default()
    }
}

fn sources() -> Vec<ReplicationSource> {
    let mut critical = source(
        "prod",
        "db",
        Some(ArcaSourceStatus {
            report: Some(reported(false, 1000)),
            drill: Some(DrillStatus {
                passed: Some(false),
                measured_seconds: Some(1200.0),
                ..DrillStatus::default()
            }),
            replicas: Some(vec![
                replica("dr", 7200, Some("s3: 503")),
                replica("nfs", 60, None),
            ]),
            ..ArcaSourceStatus::default()
        }),
    );
    critical.spec.arca = Some(ArcaSourceSpec {
        data_class: Some(DataClass::Critical),
        ..ArcaSourceSpec::default()
    });
    let mut external = source("prod", "rsync", None);
    external.spec.restic = None;
    external.spec.external = Some(Default::default());
    vec![
        source(
            "web",
            "app",
            Some(ArcaSourceStatus {
                report: Some(reported(true, 500)),
                drill: Some(DrillStatus {
                    passed: Some(true),
                    measured_seconds: Some(42.0),
                    ..DrillStatus::default()
                }),
                ..ArcaSourceStatus::default()
            }),
        ),
        critical,
        // Never reported (a report status with only its next time is no report).
        source(
            "web",
            "cache",
            Some(ArcaSourceStatus {
                report: Some(ReportStatus {
                    next_report_time: Some(Time(ts("2026-01-03T06:00:00Z"))),
                    ..ReportStatus::default()
                }),
                ..ArcaSourceStatus::default()
            }),
        ),
        external,
    ]
}

#[test]
fn every_source_arca_moves_gets_a_row_and_a_standing() {
    let report = cluster_report(&sources());
    let names: Vec<String> = report
        .sources
        .iter()
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect();
    assert_eq!(
        names,
        ["prod/db", "web/app", "web/cache"],
        "sorted; another controller's source is left out"
    );
    let standings: Vec<Standing> = report.sources.iter().map(|r| r.standing).collect();
    assert_eq!(
        standings,
        [
            Standing::NonCompliant,
            Standing::Compliant,
            Standing::Unreported
        ]
    );
    for (standing, count) in [("compliant", 1), ("noncompliant", 1), ("unreported", 1)] {
        assert_eq!(report.counts.get(standing), Some(&count), "{standing}");
    }
    assert_eq!(report.repository_bytes, 1500);
    assert_eq!(report.drills_failed, 1);
    assert_eq!(report.replicas_failing, 1);
    let db = &report.sources[0];
    assert_eq!(db.data_class, "critical");
    assert_eq!(db.max_replica_lag_seconds, Some(7200));
    assert_eq!(db.drill_seconds, Some(1200.0));
    assert_eq!(report.sources[2].last_report_time, None);

    // Nothing to report over: every count is there, at zero.
    let empty = cluster_report(&[]);
    assert_eq!(
        empty.counts.values().copied().collect::<Vec<_>>(),
        [0, 0, 0]
    );
}

#[test]
fn the_configmap_holds_json_and_markdown_and_changes_only_with_the_figures() {
    let report = cluster_report(&sources());
    let map = config_map(&report, "arca-system");
    assert_eq!(map.metadata.name.as_deref(), Some(CLUSTER_REPORT_NAME));
    assert_eq!(map.metadata.namespace.as_deref(), Some("arca-system"));
    let data = map.data.as_ref().unwrap();
    let json: serde_json::Value = serde_json::from_str(&data[REPORT_JSON_KEY]).unwrap();
    assert_eq!(json["counts"]["noncompliant"], 1);
    assert_eq!(json["sources"][0]["name"], "db");
    assert_eq!(json["sources"][0]["standing"], "nonCompliant");
    assert_eq!(json["sources"][0]["replicasFailing"], 1);
    assert!(json["sources"][2].get("successRate").is_none());
    let markdown = &data[REPORT_MARKDOWN_KEY];
    assert!(
        markdown.contains("3 sources: 1 compliant, 1 not compliant, 1 without a report; 1 failed drills, 1 failing replication targets."),
        "{markdown}"
    );
    assert!(
        markdown.contains("| prod/db | critical | **noncompliant** | 2026-01-02T06:00:00Z | 50.0 % | **missed** | intact | **failed** | 1 | 7200 s | 1000 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| web/app | important | compliant | 2026-01-02T06:00:00Z | 100.0 % | met | intact | passed in 42 s | 0 | - | 500 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| web/cache | important | unreported | - | - | - | - | - | 0 | - | - |"),
        "{markdown}"
    );

    // The same sources make the same document (no time of its own), so it is rewritten only
    // when a figure changes.
    assert_eq!(config_map(&cluster_report(&sources()), "arca-system"), map);
    let mut changed = sources();
    changed[0]
        .status
        .as_mut()
        .unwrap()
        .arca
        .as_mut()
        .unwrap()
        .report = Some(reported(false, 501));
    assert_ne!(config_map(&cluster_report(&changed), "arca-system"), map);
}
