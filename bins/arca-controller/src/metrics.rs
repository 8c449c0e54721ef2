//! The operator's Prometheus metrics: the seed's names and VolSync's, with
//! VolSync's labels (see deploy/helm/arca/files/MONITORING.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::dr_metrics::DrMetrics;

/// Labels of every per-object metric. `repository` is the Secret's name,
/// never its URL or credentials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ObjectLabels {
    pub(crate) obj_name: String,
    pub(crate) obj_namespace: String,
    pub(crate) role: &'static str,
    pub(crate) method: &'static str,
    pub(crate) app: String,
    pub(crate) repository: String,
    pub(crate) data_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) obj_name: String,
    pub(crate) obj_namespace: String,
    pub(crate) role: &'static str,
    pub(crate) method: &'static str,
    pub(crate) app: String,
    pub(crate) repository: String,
    pub(crate) data_class: &'static str,
    pub(crate) status: &'static str,
}

fn duration_histogram() -> Histogram {
    // 10 s to ~11 h.
    Histogram::new(exponential_buckets(10.0, 2.0, 13))
}

/// Every metric the controller exports.
pub struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) backup_jobs: Family<ObjectLabels, Counter>,
    pub(crate) backup_jobs_completed: Family<StatusLabels, Counter>,
    pub(crate) backup_duration: Family<ObjectLabels, Histogram, fn() -> Histogram>,
    pub(crate) last_backup: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    pub(crate) repository_size: Family<ObjectLabels, Gauge>,
    pub(crate) connection_failures: Family<ObjectLabels, Gauge>,
    pub(crate) pending_backups: Family<ObjectLabels, Gauge>,
    pub(crate) missed_intervals: Family<ObjectLabels, Counter>,
    pub(crate) out_of_sync: Family<ObjectLabels, Gauge>,
    pub(crate) sync_duration: Family<ObjectLabels, Histogram, fn() -> Histogram>,
    /// Shards this replica holds (`arca_controller_shards_held`; 1 without Leases).
    pub(crate) shards_held: Gauge,
    /// Backups waiting for a mover slot in this replica's queue (`arca_controller_queue_length`).
    pub(crate) queue_length: Gauge,
    /// Replication targets and recovery drills.
    pub(crate) dr: DrMetrics,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            backup_jobs: Family::default(),
            backup_jobs_completed: Family::default(),
            backup_duration: Family::new_with_constructor(duration_histogram),
            last_backup: Family::default(),
            repository_size: Family::default(),
            connection_failures: Family::default(),
            pending_backups: Family::default(),
            missed_intervals: Family::default(),
            out_of_sync: Family::default(),
            sync_duration: Family::new_with_constructor(duration_histogram),
            shards_held: Gauge::default(),
            queue_length: Gauge::default(),
            dr: DrMetrics::default(),
            registry: Registry::default(),
        };
        // OpenMetrics adds `_total` to counters itself.
        registry.register(
            "volsync_backup_jobs",
            "Backup Jobs started",
            metrics.backup_jobs.clone(),
        );
        registry.register(
            "volsync_backup_jobs_completed",
            "Backup Jobs finished, by result",
            metrics.backup_jobs_completed.clone(),
        );
        registry.register(
            "volsync_backup_duration_seconds",
            "Durations of backups",
            metrics.backup_duration.clone(),
        );
        registry.register(
            "volsync_last_backup_timestamp",
            "Unix time of the last successful backup",
            metrics.last_backup.clone(),
        );
        registry.register(
            "volsync_repository_size_bytes",
            "Repository size reported by the last mover run",
            metrics.repository_size.clone(),
        );
        registry.register(
            "volsync_repository_connection_failures",
            "Consecutive mover runs that could not reach the repository",
            metrics.connection_failures.clone(),
        );
        registry.register(
            "volsync_pending_backup_jobs",
            "Backups due but not started",
            metrics.pending_backups.clone(),
        );
        registry.register(
            "volsync_missed_intervals",
            "Scheduled intervals missed",
            metrics.missed_intervals.clone(),
        );
        registry.register(
            "volsync_volume_out_of_sync",
            "1 while the object is out of sync",
            metrics.out_of_sync.clone(),
        );
        registry.register(
            "volsync_sync_duration_seconds",
            "Durations of synchronizations",
            metrics.sync_duration.clone(),
        );
        registry.register(
            "arca_controller_shards_held",
            "Shard Leases this replica holds (1 when it runs without Leases)",
            metrics.shards_held.clone(),
        );
        registry.register(
            "arca_controller_queue_length",
            "Backups due and waiting for a mover slot in this replica's queue",
            metrics.queue_length.clone(),
        );
        let dr = DrMetrics::register(&mut registry);
        Metrics {
            registry,
            dr,
            ..metrics
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
