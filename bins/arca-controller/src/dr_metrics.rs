//! The disaster-recovery metrics: per replication target and per drill, set from the source's
//! `status.arca` after every reconcile (so they survive a controller restart). Labels are the
//! object's (`ObjectLabels`) plus `replica`, the target's Secret name: never a URL or credential.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use arca_kube::api::{ReplicationSourceStatus, ReportStatus};
use arca_kube::compliance::{ClusterReport, Standing};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::ObjectLabels;

/// The labels of a replica's metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReplicaLabels {
    #[prometheus(flatten)]
    pub(crate) object: ObjectLabels,
    pub(crate) replica: String,
}

/// The label of the cluster-wide count of sources per standing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StandingLabels {
    pub(crate) standing: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Replication and drill gauges.
#[derive(Default)]
pub(crate) struct DrMetrics {
    replica_last_copy: Family<ReplicaLabels, FloatGauge>,
    replica_lag_seconds: Family<ReplicaLabels, Gauge>,
    replica_lag_snapshots: Family<ReplicaLabels, Gauge>,
    replica_failing: Family<ReplicaLabels, Gauge>,
    drill_last: Family<ObjectLabels, FloatGauge>,
    drill_passed: Family<ObjectLabels, Gauge>,
    drill_measured: Family<ObjectLabels, FloatGauge>,
    drill_rto: Family<ObjectLabels, FloatGauge>,
    drill_bytes_verified: Family<ObjectLabels, Gauge>,
    drill_next_due: Family<ObjectLabels, FloatGauge>,
    report_last: Family<ObjectLabels, FloatGauge>,
    report_compliant: Family<ObjectLabels, Gauge>,
    report_success_ratio: Family<ObjectLabels, FloatGauge>,
    report_longest_gap: Family<ObjectLabels, FloatGauge>,
    report_rpo_met: Family<ObjectLabels, Gauge>,
    report_retention_conforms: Family<ObjectLabels, Gauge>,
    report_audit_intact: Family<ObjectLabels, Gauge>,
    report_key_age_days: Family<ObjectLabels, FloatGauge>,
    report_rotation_overdue: Family<ObjectLabels, Gauge>,
    compliance_sources: Family<StandingLabels, Gauge>,
    compliance_drills_failed: Gauge,
    compliance_replicas_failing: Gauge,
    /// The replica names each object's series were last set for.
    replicas: Mutex<HashMap<ObjectLabels, BTreeSet<String>>>,
}

fn seconds(time: &Time) -> f64 {
    time.0.as_millisecond() as f64 / 1000.0
}

fn count_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl DrMetrics {
    /// Registers every gauge in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> DrMetrics {
        let metrics = DrMetrics::default();
        registry.register(
            "arca_replica_last_copy_timestamp",
            "Unix time of the last successful copy to the replication target",
            metrics.replica_last_copy.clone(),
        );
        registry.register(
            "arca_replica_lag_seconds",
            "The primary's newest snapshot time minus the target's newest, after the last copy",
            metrics.replica_lag_seconds.clone(),
        );
        registry.register(
            "arca_replica_lag_snapshots",
            "Snapshots of the primary the target lacks, after the last copy",
            metrics.replica_lag_snapshots.clone(),
        );
        registry.register(
            "arca_replica_failing",
            "1 while the last copy to the replication target failed",
            metrics.replica_failing.clone(),
        );
        registry.register(
            "arca_drill_last_timestamp",
            "Unix time the last recovery drill ended",
            metrics.drill_last.clone(),
        );
        registry.register(
            "arca_drill_passed",
            "1 if the last recovery drill passed, 0 if it failed",
            metrics.drill_passed.clone(),
        );
        registry.register(
            "arca_drill_measured_seconds",
            "Restore-and-verify time the last recovery drill measured",
            metrics.drill_measured.clone(),
        );
        registry.register(
            "arca_drill_rto_seconds",
            "The RTO the last recovery drill was held to",
            metrics.drill_rto.clone(),
        );
        registry.register(
            "arca_drill_bytes_verified",
            "Bytes the last recovery drill restored and verified",
            metrics.drill_bytes_verified.clone(),
        );
        registry.register(
            "arca_drill_next_due_timestamp",
            "Unix time the next scheduled recovery drill falls due",
            metrics.drill_next_due.clone(),
        );
        let report: [(&str, &str, &Family<ObjectLabels, Gauge>); 5] = [
            (
                "arca_report_compliant",
                "1 if every judged figure of the last compliance report was compliant",
                &metrics.report_compliant,
            ),
            (
                "arca_report_rpo_met",
                "1 if every gap between backups in the report's window was within the RPO",
                &metrics.report_rpo_met,
            ),
            (
                "arca_report_retention_conforms",
                "1 if the snapshots conform to the retention policy, as last reported",
                &metrics.report_retention_conforms,
            ),
            (
                "arca_report_audit_chain_intact",
                "1 if the repository's audit chain verified intact in the last report, 0 if broken",
                &metrics.report_audit_intact,
            ),
            (
                "arca_report_key_rotation_overdue",
                "1 if the data key's rotation was overdue in the last report",
                &metrics.report_rotation_overdue,
            ),
        ];
        for (name, help, family) in report {
            registry.register(name, help, family.clone());
        }
        let report: [(&str, &str, &Family<ObjectLabels, FloatGauge>); 4] = [
            (
                "arca_report_last_timestamp",
                "Unix time the last compliance report was made",
                &metrics.report_last,
            ),
            (
                "arca_report_success_ratio",
                "Successful over attempted backups in the last report's window (0-1)",
                &metrics.report_success_ratio,
            ),
            (
                "arca_report_longest_gap_seconds",
                "The longest gap between successive backups in the last report's window",
                &metrics.report_longest_gap,
            ),
            (
                "arca_report_key_age_days",
                "Age of the repository's data key in days, as last reported",
                &metrics.report_key_age_days,
            ),
        ];
        for (name, help, family) in report {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "arca_compliance_sources",
            "Sources per standing in the cluster-wide compliance report (compliant, noncompliant, unreported)",
            metrics.compliance_sources.clone(),
        );
        registry.register(
            "arca_compliance_drills_failed",
            "Sources whose last recovery drill failed, cluster-wide",
            metrics.compliance_drills_failed.clone(),
        );
        registry.register(
            "arca_compliance_replicas_failing",
            "Replication targets whose last copy failed, cluster-wide",
            metrics.compliance_replicas_failing.clone(),
        );
        metrics
    }

    /// Sets the cluster-wide summary gauges from the cluster report.
    pub(crate) fn record_cluster(&self, report: &ClusterReport) {
        for standing in Standing::ALL {
            let count = report.counts.get(standing.as_str()).copied().unwrap_or(0);
            self.compliance_sources
                .get_or_create(&StandingLabels {
                    standing: standing.as_str(),
                })
                .set(count_of(count));
        }
        self.compliance_drills_failed
            .set(count_of(report.drills_failed));
        self.compliance_replicas_failing
            .set(count_of(report.replicas_failing));
    }

    /// Sets the gauges of one source from its status; series whose value the status no longer
    /// has are removed.
    pub(crate) fn record(&self, labels: &ObjectLabels, status: &ReplicationSourceStatus) {
        let arca = status.arca.clone().unwrap_or_default();
        let current: BTreeSet<String> = arca
            .replicas
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .collect();
        let previous = {
            let mut known = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            known
                .insert(labels.clone(), current.clone())
                .unwrap_or_default()
        };
        // Targets removed from the spec leave the status, and their series go too.
        for gone in previous.difference(&current) {
            let key = ReplicaLabels {
                object: labels.clone(),
                replica: gone.clone(),
            };
            self.replica_last_copy.remove(&key);
            self.replica_lag_seconds.remove(&key);
            self.replica_lag_snapshots.remove(&key);
            self.replica_failing.remove(&key);
        }
        for replica in arca.replicas.iter().flatten() {
            let key = ReplicaLabels {
                object: labels.clone(),
                replica: replica.name.clone(),
            };
            set_float(
                &self.replica_last_copy,
                &key,
                replica.last_copy_time.as_ref().map(seconds),
            );
            set_int(
                &self.replica_lag_seconds,
                &key,
                replica.lag_seconds.map(count_of),
            );
            set_int(
                &self.replica_lag_snapshots,
                &key,
                replica.lag_snapshots.map(count_of),
            );
            set_int(
                &self.replica_failing,
                &key,
                Some(i64::from(replica.error.is_some())),
            );
        }
        let drill = arca.drill.unwrap_or_default();
        set_float(
            &self.drill_last,
            labels,
            drill.last_drill_time.as_ref().map(seconds),
        );
        set_int(&self.drill_passed, labels, drill.passed.map(i64::from));
        set_float(&self.drill_measured, labels, drill.measured_seconds);
        set_float(&self.drill_rto, labels, drill.rto_seconds);
        set_int(
            &self.drill_bytes_verified,
            labels,
            drill.bytes_verified.map(count_of),
        );
        set_float(
            &self.drill_next_due,
            labels,
            drill.next_drill_time.as_ref().map(seconds),
        );
        self.record_report(labels, &arca.report.unwrap_or_default());
    }

    fn record_report(&self, labels: &ObjectLabels, report: &ReportStatus) {
        let flag = |value: Option<bool>| value.map(i64::from);
        set_float(
            &self.report_last,
            labels,
            report.last_report_time.as_ref().map(seconds),
        );
        set_int(&self.report_compliant, labels, flag(report.compliant));
        set_float(&self.report_success_ratio, labels, report.success_rate);
        set_float(&self.report_longest_gap, labels, report.longest_gap_seconds);
        set_int(&self.report_rpo_met, labels, flag(report.rpo_met));
        set_int(
            &self.report_retention_conforms,
            labels,
            flag(report.retention_conforms),
        );
        set_int(&self.report_audit_intact, labels, flag(report.audit_intact));
        set_float(&self.report_key_age_days, labels, report.key_age_days);
        set_int(
            &self.report_rotation_overdue,
            labels,
            flag(report.rotation_overdue),
        );
    }
}

fn set_float<L>(family: &Family<L, FloatGauge>, labels: &L, value: Option<f64>)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    match value {
        Some(value) => {
            family.get_or_create(labels).set(value);
        }
        None => {
            family.remove(labels);
        }
    }
}

fn set_int<L>(family: &Family<L, Gauge>, labels: &L, value: Option<i64>)
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    match value {
        Some(value) => {
            family.get_or_create(labels).set(value);
        }
        None => {
            family.remove(labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use arca_kube::api::{ArcaSourceStatus, DrillStatus, ReplicaStatus};

    use super::*;

    fn labels() -> ObjectLabels {
        ObjectLabels {
            obj_name: "db-backup".to_owned(),
            obj_namespace: "prod".to_owned(),
            role: "source",
            method: "restic",
            app: "db".to_owned(),
            repository: "db-volsync-secret".to_owned(),
            data_class: "critical",
        }
    }

    fn encode(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn gauges_follow_the_status_and_removed_targets_lose_their_series() {
        let mut registry = Registry::default();
        let metrics = DrMetrics::register(&mut registry);
        let time = |s: &str| Time(s.parse().unwrap());
        let replica = |name: &str, error: Option<&str>| ReplicaStatus {
            name: name.to_owned(),
            last_copy_time: Some(time("2026-01-02T02:00:00Z")),
            lag_snapshots: Some(2),
            lag_seconds: Some(3600),
            error: error.map(str::to_owned),
            ..ReplicaStatus::default()
        };
        let status = ReplicationSourceStatus {
            arca: Some(ArcaSourceStatus {
                replicas: Some(vec![replica("dr", None), replica("nfs", Some("down"))]),
                drill: Some(DrillStatus {
                    passed: Some(false),
                    measured_seconds: Some(1200.5),
                    rto_seconds: Some(900.0),
                    next_drill_time: Some(time("2026-02-01T03:00:00Z")),
                    ..DrillStatus::default()
                }),
                ..ArcaSourceStatus::default()
            }),
            ..ReplicationSourceStatus::default()
        };
        metrics.record(&labels(), &status);
        let text = encode(&registry);
        for line in [
            r#"arca_replica_lag_seconds{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical",replica="dr"} 3600"#,
            r#"arca_replica_failing{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical",replica="nfs"} 1"#,
            r#"arca_replica_last_copy_timestamp{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical",replica="dr"} 1767319200.0"#,
            r#"arca_drill_passed{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical"} 0"#,
            r#"arca_drill_measured_seconds{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical"} 1200.5"#,
            r#"arca_drill_next_due_timestamp{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical"} 1769914800.0"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("arca_drill_last_timestamp{"),
            "no drill ended yet"
        );

        // The nfs target is removed from the spec (and so from the status).
        let mut fewer = status.clone();
        fewer.arca.as_mut().unwrap().replicas = Some(vec![replica("dr", None)]);
        metrics.record(&labels(), &fewer);
        let text = encode(&registry);
        assert!(!text.contains(r#"replica="nfs""#), "{text}");
        assert!(text.contains(r#"replica="dr""#), "{text}");
    }

    #[test]
    fn report_gauges_follow_the_last_report() {
        let mut registry = Registry::default();
        let metrics = DrMetrics::register(&mut registry);
        let mut status = ReplicationSourceStatus::default();
        metrics.record(&labels(), &status);
        assert!(
            !encode(&registry).contains("arca_report_compliant{"),
            "no report made yet"
        );
        status.arca = Some(ArcaSourceStatus {
            report: Some(ReportStatus {
                last_report_time: Some(Time("2026-01-02T05:10:00Z".parse().unwrap())),
                compliant: Some(false),
                success_rate: Some(0.75),
                longest_gap_seconds: Some(172_800.0),
                rpo_met: Some(false),
                audit_intact: Some(false),
                rotation_overdue: Some(false),
                ..ReportStatus::default()
            }),
            ..ArcaSourceStatus::default()
        });
        metrics.record(&labels(), &status);
        let text = encode(&registry);
        let labels = r#"{obj_name="db-backup",obj_namespace="prod",role="source",method="restic",app="db",repository="db-volsync-secret",data_class="critical"}"#;
        for (name, value) in [
            ("arca_report_last_timestamp", "1767330600.0"),
            ("arca_report_compliant", "0"),
            ("arca_report_success_ratio", "0.75"),
            ("arca_report_longest_gap_seconds", "172800.0"),
            ("arca_report_rpo_met", "0"),
            ("arca_report_audit_chain_intact", "0"),
            ("arca_report_key_rotation_overdue", "0"),
        ] {
            let line = format!("{name}{labels} {value}");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        // Not judged (no retention policy, no key age): no series.
        assert!(!text.contains("arca_report_retention_conforms{"), "{text}");
        assert!(!text.contains("arca_report_key_age_days{"), "{text}");
    }

    #[test]
    fn cluster_gauges_count_every_standing() {
        let mut registry = Registry::default();
        let metrics = DrMetrics::register(&mut registry);
        let mut report = ClusterReport {
            drills_failed: 2,
            replicas_failing: 3,
            ..ClusterReport::default()
        };
        report.counts.insert("compliant", 4);
        report.counts.insert("noncompliant", 1);
        metrics.record_cluster(&report);
        let text = encode(&registry);
        for line in [
            r#"arca_compliance_sources{standing="compliant"} 4"#,
            r#"arca_compliance_sources{standing="noncompliant"} 1"#,
            r#"arca_compliance_sources{standing="unreported"} 0"#,
            "arca_compliance_drills_failed 2",
            "arca_compliance_replicas_failing 3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
