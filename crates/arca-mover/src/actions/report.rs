//! `report`: the compliance report (`arca_dr::report`) of the repository
//! over the last [`WINDOW_DAYS`] days, judged against `ARCA_DATA_CLASS` and
//! `FORGET_OPTIONS`, summed up for the run's host.

use arca_dr::report::{DEFAULT_ROTATION_PERIOD, Report, ReportOptions, collect};
use jiff::SignedDuration;

use super::Mover;
use crate::Result;
use crate::report::ComplianceSummary;

/// The report's window.
pub(super) const WINDOW_DAYS: u64 = 30;

/// Reads the repository and returns the host's summary figures.
pub(super) async fn run(mover: &mut Mover<'_>) -> Result<ComplianceSummary> {
    let repository = mover.repository().await?;
    let config = mover.config;
    let now = jiff::Timestamp::now();
    let window = SignedDuration::from_hours(24 * WINDOW_DAYS as i64);
    let options = ReportOptions {
        since: now.checked_sub(window).unwrap_or(now),
        now,
        class: config.drill.class,
        policy: config.forget.clone(),
        rotation_period: DEFAULT_ROTATION_PERIOD,
    };
    let report = collect(&repository, &options).await?;
    let summary = summarise(&report, &config.host);
    tracing::info!(
        compliant = summary.compliant,
        backups = summary.backups,
        failures = summary.failures,
        audit_intact = ?summary.audit_intact,
        "report finished"
    );
    Ok(summary)
}

/// The figures of `host`'s applications in `report`, combined.
fn summarise(report: &Report, host: &str) -> ComplianceSummary {
    let groups: Vec<_> = report
        .groups
        .iter()
        .filter(|group| group.hostname == host)
        .collect();
    let all =
        |judged: &mut dyn Iterator<Item = Option<bool>>| judged.flatten().reduce(|a, b| a && b);
    let rpo_met = all(&mut groups.iter().map(|g| g.rpo_met));
    let retention_conforms = all(&mut groups
        .iter()
        .map(|g| g.retention.as_ref().map(|r| r.conforms)));
    let drills_ok = all(&mut groups.iter().map(|g| g.drill_ok));
    let audit_intact = report.audit.intact;
    ComplianceSummary {
        window_days: WINDOW_DAYS,
        compliant: rpo_met != Some(false)
            && retention_conforms != Some(false)
            && drills_ok != Some(false)
            && audit_intact != Some(false)
            && !report.keys.rotation_overdue,
        backups: groups.iter().map(|g| g.backups_in_window).sum(),
        failures: groups.iter().map(|g| g.failures_recorded).sum(),
        success_rate: groups
            .iter()
            .filter_map(|g| g.success_rate)
            .reduce(f64::min),
        longest_gap_seconds: groups
            .iter()
            .filter_map(|g| g.longest_gap_seconds)
            .reduce(f64::max),
        rpo_met,
        retention_conforms,
        audit_intact,
        holds: groups.iter().map(|g| g.holds).sum(),
        key_age_days: report.keys.age_days,
        rotation_overdue: report.keys.rotation_overdue,
        repository_bytes: report.size.bytes,
    }
}
