//! Compliance reports from the operator: the source's DR Job (`dr_job.rs`) runs the agent's
//! `report` action after every drill and, with `spec.arca.report`, on its schedule (daily by
//! default); its summary figures become
//! `status.arca.report` and the ConfigMap `<name>-arca-report` the source owns, which holds them
//! as JSON (`report.json`) and as a Markdown table (`report.md`). The figures are a few hundred
//! bytes, far below a ConfigMap's 1 MiB; the full report with its per-backup history stays
//! `arca report`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;

use super::dr_job::next_on_schedule;
use super::engine::{Out, opt_time, ts};
use super::names::report_config_map_name;
use super::objects::Owner;
use super::observed::ReportResult;
use super::{Action, EventType, Object, time};
use crate::api::{
    ArcaSourceStatus, DEFAULT_REPORT_SCHEDULE, ReplicationSource, ReplicationSourceStatus,
    ReportStatus,
};

/// The agent's action that makes the report.
pub const REPORT_ACTION: &str = "report";
/// The ConfigMap key of the figures as JSON.
pub const REPORT_JSON_KEY: &str = "report.json";
/// The ConfigMap key of the figures as a Markdown table.
pub const REPORT_MARKDOWN_KEY: &str = "report.md";

/// When the next scheduled report falls due after the last report (or the object's creation),
/// with `spec.arca.report`; `None` without it. An invalid schedule is a Warning and no report.
fn next_scheduled(
    source: &ReplicationSource,
    status: &ReplicationSourceStatus,
    out: &mut Out,
) -> Option<Timestamp> {
    let spec = source.spec.arca.as_ref()?.report.as_ref()?;
    let expression = spec
        .schedule
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_REPORT_SCHEDULE);
    let last = status
        .arca
        .as_ref()
        .and_then(|a| a.report.as_ref())
        .and_then(|r| ts(&r.last_report_time));
    next_on_schedule(source, "spec.arca.report.schedule", expression, last)
        .inspect_err(|error| {
            out.event(
                EventType::Warning,
                "ReportNotStarted",
                "CreateMover",
                format!("the compliance report cannot start: {error}"),
            );
        })
        .ok()
        .flatten()
}

/// Whether an idle source's scheduled report is due; keeps `status.arca.report.nextReportTime`
/// current. `Err(next)` when it is not: when it falls due.
pub(super) fn due(
    source: &ReplicationSource,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
    now: Timestamp,
) -> Result<(), Option<Timestamp>> {
    let next = next_scheduled(source, status, out);
    set_next(status, next);
    match next {
        Some(at) if at <= now => Ok(()),
        next => Err(next),
    }
}

/// Sets `nextReportTime`, leaving no empty report status behind.
fn set_next(status: &mut ReplicationSourceStatus, next: Option<Timestamp>) {
    let has_report = status.arca.as_ref().is_some_and(|a| a.report.is_some());
    if next.is_none() && !has_report {
        return;
    }
    status
        .arca
        .get_or_insert_with(ArcaSourceStatus::default)
        .report
        .get_or_insert_with(ReportStatus::default)
        .next_report_time = opt_time(next);
}

/// Records the figures of a finished report (made at `ended`) in `status.arca.report` and
/// writes the ConfigMap. Without figures (the Job ended before its report) the last report
/// stands.
pub(crate) fn record(
    source: &ReplicationSource,
    owner: &Owner<'_>,
    result: Option<&ReportResult>,
    ended: Timestamp,
    status: &mut ReplicationSourceStatus,
    out: &mut Out,
) {
    let Some(figures) = result else {
        return;
    };
    let report = status_of(figures, ended, report_config_map_name(owner.name));
    out.actions
        .push(Action::Apply(Object::ConfigMap(Box::new(config_map(
            owner, &report,
        )))));
    status
        .arca
        .get_or_insert_with(ArcaSourceStatus::default)
        .report = Some(report);
    let next = next_scheduled(source, status, out);
    set_next(status, next);
}

fn status_of(figures: &ReportResult, ended: Timestamp, config_map: String) -> ReportStatus {
    ReportStatus {
        last_report_time: Some(time(ended)),
        config_map: Some(config_map),
        window_days: Some(figures.window_days),
        compliant: Some(figures.compliant),
        backups: Some(figures.backups),
        failures: Some(figures.failures),
        success_rate: figures.success_rate,
        longest_gap_seconds: figures.longest_gap_seconds,
        rpo_met: figures.rpo_met,
        retention_conforms: figures.retention_conforms,
        audit_intact: figures.audit_intact,
        holds: Some(figures.holds),
        key_age_days: figures.key_age_days,
        rotation_overdue: Some(figures.rotation_overdue),
        repository_bytes: Some(figures.repository_bytes),
        next_report_time: None,
    }
}

fn config_map(owner: &Owner<'_>, report: &ReportStatus) -> ConfigMap {
    let name = report.config_map.clone().unwrap_or_default();
    let json = serde_json::to_string_pretty(report).expect("a report status serialises");
    ConfigMap {
        metadata: owner.meta(&name, false),
        data: Some(BTreeMap::from([
            (REPORT_JSON_KEY.to_owned(), json),
            (REPORT_MARKDOWN_KEY.to_owned(), markdown(owner, report)),
        ])),
        ..ConfigMap::default()
    }
}

/// The figures as a Markdown table; a figure not judged reads "not judged".
fn markdown(owner: &Owner<'_>, report: &ReportStatus) -> String {
    let judged = |value: Option<bool>, yes: &str, no: &str| match value {
        Some(true) => yes.to_owned(),
        Some(false) => format!("**{no}**"),
        None => "not judged".to_owned(),
    };
    let number = |value: Option<f64>, unit: &str| {
        value.map_or_else(|| "none".to_owned(), |v| format!("{v:.1}{unit}"))
    };
    let count = |value: Option<u64>| value.unwrap_or_default().to_string();
    let mut text = format!(
        "# Compliance report: {}/{}\n\n",
        owner.namespace.unwrap_or_default(),
        owner.name
    );
    let rows = [
        (
            "Made",
            report
                .last_report_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        ),
        ("Window", format!("{} days", count(report.window_days))),
        ("Compliant", judged(report.compliant, "yes", "no")),
        ("Backups", count(report.backups)),
        ("Failed backups", count(report.failures)),
        (
            "Success rate",
            number(report.success_rate.map(|r| r * 100.0), " %"),
        ),
        ("Longest gap", number(report.longest_gap_seconds, " s")),
        ("RPO", judged(report.rpo_met, "met", "missed")),
        (
            "Retention",
            judged(report.retention_conforms, "conforms", "does not conform"),
        ),
        (
            "Audit chain",
            judged(report.audit_intact, "intact", "broken"),
        ),
        ("Holds in force", count(report.holds)),
        ("Data key age", number(report.key_age_days, " days")),
        (
            "Key rotation",
            judged(report.rotation_overdue.map(|o| !o), "on time", "overdue"),
        ),
        ("Repository bytes", count(report.repository_bytes)),
    ];
    text.push_str("| Figure | Value |\n|---|---|\n");
    for (figure, value) in rows {
        let _ = writeln!(text, "| {figure} | {value} |");
    }
    text
}
