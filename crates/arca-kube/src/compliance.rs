//! The operator's cluster-wide compliance report ("over all" the sources, issue 22): the
//! summary figures every ReplicationSource's last report left in `status.arca.report`, with
//! its drill and replication state, gathered into one ConfigMap ([`CLUSTER_REPORT_NAME`], in
//! the controller's namespace) as JSON and as a Markdown table, and counted for metrics.
//!
//! A pure function of the sources: the controller lists them, calls [`cluster_report`] and
//! applies [`config_map`]. The document holds no time of its own making, so it changes only
//! when a source's figures do. Per-source reports stay in each source's own ConfigMap
//! (`<name>-arca-report`); the full history is `arca report`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

use crate::api::{MoverKind, ReplicationSource};
use crate::reconcile::{CREATED_BY_LABEL, CREATED_BY_VALUE, REPORT_JSON_KEY, REPORT_MARKDOWN_KEY};

/// The cluster-wide report's ConfigMap.
pub const CLUSTER_REPORT_NAME: &str = "arca-compliance-report";

/// Where one source stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Standing {
    /// Its last report judged every figure compliant.
    Compliant,
    /// Its last report found something not compliant.
    NonCompliant,
    /// No report yet (no drill or `spec.arca.report`, or none has run).
    Unreported,
}

impl Standing {
    /// Every standing, in the order metrics and tables list them.
    pub const ALL: [Standing; 3] = [
        Standing::Compliant,
        Standing::NonCompliant,
        Standing::Unreported,
    ];

    /// The metric label and table text.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Compliant => "compliant",
            Standing::NonCompliant => "noncompliant",
            Standing::Unreported => "unreported",
        }
    }
}

/// One source's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its data class.
    pub data_class: &'static str,
    /// From its last report.
    pub standing: Standing,
    /// When its last report was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_report_time: Option<Time>,
    /// Successful over attempted backups in the report's window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// Every gap between backups was within the RPO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_met: Option<bool>,
    /// The audit chain verified intact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_intact: Option<bool>,
    /// Bytes in its repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_bytes: Option<u64>,
    /// Whether its last drill passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_passed: Option<bool>,
    /// Its last drill's restore-and-verify seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill_seconds: Option<f64>,
    /// Replication targets whose last copy failed.
    pub replicas_failing: u64,
    /// The largest lag of any replication target, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_lag_seconds: Option<u64>,
}

/// The cluster-wide report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// Sources per standing (every standing present, zero included).
    pub counts: BTreeMap<&'static str, u64>,
    /// Bytes over every reported repository (a repository shared by sources counts once per
    /// source).
    pub repository_bytes: u64,
    /// Sources whose last drill failed.
    pub drills_failed: u64,
    /// Replication targets whose last copy failed, over all sources.
    pub replicas_failing: u64,
    /// One row per source Arca moves, by namespace and name.
    pub sources: Vec<SourceRow>,
}

/// Gathers the report over `sources` (another controller's, `External`, are left out).
pub fn cluster_report(sources: &[ReplicationSource]) -> ClusterReport {
    let mut rows: Vec<SourceRow> = sources
        .iter()
        .filter(|s| s.spec.mover_kind() != MoverKind::External)
        .map(row)
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut counts: BTreeMap<&'static str, u64> =
        Standing::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for row in &rows {
        *counts.entry(row.standing.as_str()).or_default() += 1;
    }
    ClusterReport {
        counts,
        repository_bytes: rows.iter().filter_map(|r| r.repository_bytes).sum(),
        drills_failed: rows
            .iter()
            .filter(|r| r.drill_passed == Some(false))
            .count() as u64,
        replicas_failing: rows.iter().map(|r| r.replicas_failing).sum(),
        sources: rows,
    }
}

fn row(source: &ReplicationSource) -> SourceRow {
    let arca = source.status.as_ref().and_then(|s| s.arca.as_ref());
    let report = arca
        .and_then(|a| a.report.as_ref())
        .filter(|r| r.last_report_time.is_some());
    let drill = arca.and_then(|a| a.drill.as_ref());
    let replicas = arca.and_then(|a| a.replicas.as_deref()).unwrap_or_default();
    SourceRow {
        namespace: source.metadata.namespace.clone().unwrap_or_default(),
        name: source.metadata.name.clone().unwrap_or_default(),
        data_class: source.spec.data_class().as_str(),
        standing: match report.and_then(|r| r.compliant) {
            Some(true) => Standing::Compliant,
            Some(false) => Standing::NonCompliant,
            None => Standing::Unreported,
        },
        last_report_time: report.and_then(|r| r.last_report_time.clone()),
        success_rate: report.and_then(|r| r.success_rate),
        rpo_met: report.and_then(|r| r.rpo_met),
        audit_intact: report.and_then(|r| r.audit_intact),
        repository_bytes: report.and_then(|r| r.repository_bytes),
        drill_passed: drill.and_then(|d| d.passed),
        drill_seconds: drill.and_then(|d| d.measured_seconds),
        replicas_failing: replicas.iter().filter(|r| r.error.is_some()).count() as u64,
        max_replica_lag_seconds: replicas.iter().filter_map(|r| r.lag_seconds).max(),
    }
}

/// The ConfigMap [`CLUSTER_REPORT_NAME`] in `namespace`: the report as JSON
/// ([`REPORT_JSON_KEY`]) and Markdown ([`REPORT_MARKDOWN_KEY`]).
pub fn config_map(report: &ClusterReport, namespace: &str) -> ConfigMap {
    let json = serde_json::to_string_pretty(report).expect("a cluster report serialises");
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CLUSTER_REPORT_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                CREATED_BY_LABEL.to_owned(),
                CREATED_BY_VALUE.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (REPORT_JSON_KEY.to_owned(), json),
            (REPORT_MARKDOWN_KEY.to_owned(), markdown(report)),
        ])),
        ..ConfigMap::default()
    }
}

/// The report as Markdown: the counts, then one row per source; a figure not judged reads
/// "-".
fn markdown(report: &ClusterReport) -> String {
    let mut text = String::from("# Compliance report: every source\n\n");
    let count = |standing: Standing| report.counts.get(standing.as_str()).copied().unwrap_or(0);
    let _ = writeln!(
        text,
        "{} sources: {} compliant, {} not compliant, {} without a report; {} failed drills, {} failing replication targets.\n",
        report.sources.len(),
        count(Standing::Compliant),
        count(Standing::NonCompliant),
        count(Standing::Unreported),
        report.drills_failed,
        report.replicas_failing,
    );
    text.push_str(
        "| Source | Class | Standing | Report made | Success rate | RPO | Audit chain | Last drill | Replicas failing | Max replica lag | Repository bytes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let judged = |value: Option<bool>, yes: &str, no: &str| match value {
        Some(true) => yes.to_owned(),
        Some(false) => format!("**{no}**"),
        None => "-".to_owned(),
    };
    for row in &report.sources {
        let standing = match row.standing {
            Standing::NonCompliant => "**noncompliant**",
            other => other.as_str(),
        };
        let drill = match (row.drill_passed, row.drill_seconds) {
            (Some(true), Some(seconds)) => format!("passed in {seconds:.0} s"),
            (passed, _) => judged(passed, "passed", "failed"),
        };
        let _ = writeln!(
            text,
            "| {}/{} | {} | {standing} | {} | {} | {} | {} | {drill} | {} | {} | {} |",
            row.namespace,
            row.name,
            row.data_class,
            row.last_report_time
                .as_ref()
                .map_or_else(|| "-".to_owned(), |t| t.0.to_string()),
            row.success_rate
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1} %", r * 100.0)),
            judged(row.rpo_met, "met", "missed"),
            judged(row.audit_intact, "intact", "broken"),
            row.replicas_failing,
            row.max_replica_lag_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s} s")),
            row.repository_bytes
                .map_or_else(|| "-".to_owned(), |b| b.to_string()),
        );
    }
    text
}
