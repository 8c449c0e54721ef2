//! The disaster-recovery metrics: per replication target and per drill, set from the source's
//! `status.arca` after every reconcile (so they survive a controller restart). Labels are the
//! object's (`ObjectLabels`) plus `replica`, the target's Secret name: never a URL or credential.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use arca_kube::api::ReplicationSourceStatus;
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
    /// The replica names each object's series were last set for.
    replicas: Mutex<HashMap<ObjectLabels, BTreeSet<String>>>,
}

fn seconds(time: &Time) -> f64 {
    time.0.as_millisecond() as f64 / 1000.0
}

fn count(value: u64) -> i64 {
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
        metrics
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
                replica.lag_seconds.map(count),
            );
            set_int(
                &self.replica_lag_snapshots,
                &key,
                replica.lag_snapshots.map(count),
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
            drill.bytes_verified.map(count),
        );
        set_float(
            &self.drill_next_due,
            labels,
            drill.next_drill_time.as_ref().map(seconds),
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
}
