//! `drill`: a recovery drill of the selected snapshot into `DATA_DIR`
//! (scratch space the Job mounts), with `arca_dr::drill`: verify, run
//! `ARCA_DRILL_COMMAND`, compare with the RTO (`ARCA_RTO` or the
//! `ARCA_DATA_CLASS`'s), clean up, record in the audit trail.

use arca_dr::{DrillFailure, DrillOptions};

use super::{Mover, username};
use crate::report::DrillSummary;
use crate::{Action, Error, Result};

/// Runs the drill; its summary goes into `mover.drill` whether it passed
/// or not. A failed drill is [`Error::DrillFailed`].
pub(super) async fn run(mover: &mut Mover<'_>) -> Result<()> {
    let repository = mover.repository().await?;
    let config = mover.config;
    let options = DrillOptions {
        filter: mover.host_filter(),
        as_of: config.restore_as_of,
        skip_previous: config.select_previous,
        target: Some(config.data_dir.clone()),
        rto: config.drill.rto(),
        command: config.drill.command.clone(),
        record: true,
        hostname: config.host.clone(),
        username: username(),
        ..DrillOptions::default()
    };
    let ticker = mover.ticker(Action::Drill);
    let result = arca_dr::drill(&repository, &options, ticker.progress()).await;
    ticker.finish();
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            mover.drill = Some(DrillSummary {
                passed: false,
                rto_seconds: options.rto.map(|rto| rto.as_secs_f64()),
                reason: Some(err.to_string()),
                ..DrillSummary::default()
            });
            return Err(err.into());
        }
    };
    let reason = report.reason();
    tracing::info!(
        snapshot = %report.snapshot.short(),
        passed = report.passed,
        measured_seconds = report.measured_seconds,
        rto_seconds = ?report.rto_seconds,
        files_verified = report.files_verified,
        bytes_verified = report.bytes_verified,
        "drill finished"
    );
    if let Some(command) = &report.command {
        for line in &command.output_tail {
            tracing::info!(exit_code = ?command.exit_code, "drill command: {line}");
        }
    }
    mover.drill = Some(DrillSummary {
        passed: report.passed,
        measured_seconds: report.measured_seconds,
        rto_seconds: report.rto_seconds,
        bytes_verified: report.bytes_verified,
        files_verified: report.files_verified,
        snapshot: Some(report.snapshot),
        reason: reason.clone(),
    });
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::DrillFailed {
            reason,
            damaged: report
                .failures
                .iter()
                .any(|failure| matches!(failure, DrillFailure::Verification { .. })),
        }),
    }
}
