//! `arca drill`: a recovery drill of one snapshot (arca-dr): restore into
//! scratch space, verify, run the application's check, compare the time with
//! the RTO, clean up, record the result in the audit trail.

use std::path::PathBuf;

use arca_dr::{DrillOptions, drill};

use crate::Exit;
use crate::commands::forget::FilterArgs;
use crate::context::{Context, hostname, username};
use crate::output;
use crate::progress::Reporter;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshot ID, unique ID prefix, or "latest" [default: the latest matching the filter]
    #[arg(value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Restore into this missing or empty directory [default: a fresh
    /// directory under $TMPDIR]
    #[arg(short, long, value_name = "DIR")]
    target: Option<PathBuf>,
    /// Leave the restored copy in place
    #[arg(long)]
    keep: bool,
    /// Hold the drill to this data class's RTO (critical 15 min, important 1 h, archival 4 h)
    #[arg(long, value_name = "CLASS", value_parser = parse_class, conflicts_with = "rto")]
    class: Option<arca_sched::DataClass>,
    /// Hold the drill to this RTO (900, 15m, 1h30m, PT4H)
    #[arg(long, value_name = "DURATION", value_parser = arca_dr::parse_duration)]
    rto: Option<jiff::SignedDuration>,
    /// The application's consistency check, run with `sh -c` in the restored
    /// tree ($ARCA_DRILL_DIR); a non-zero exit fails the drill
    #[arg(long, value_name = "CMD")]
    command: Option<String>,
    /// Drill only paths matching this pattern, plus their parent directories (repeatable)
    #[arg(short, long = "include", value_name = "PATTERN")]
    includes: Vec<String>,
    #[command(flatten)]
    filter: FilterArgs,
}

pub(crate) fn parse_class(text: &str) -> Result<arca_sched::DataClass, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a data class (critical, important, archival)"))
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let output = context.output;
    let options = DrillOptions {
        snapshot: args.snapshot,
        filter: args.filter.to_filter(),
        target: args.target,
        keep: args.keep,
        rto: args.rto.or(args.class.map(arca_sched::DataClass::rto)),
        command: args.command,
        includes: args.includes,
        record: true,
        hostname: hostname(),
        username: username(),
        ..DrillOptions::default()
    };
    let reporter = Reporter::start(output);
    let report = drill(&opened.repository, &options, reporter.progress()).await;
    reporter.finish();
    let report = report?;
    // The drill appended its own record, with its measurements.
    context.audit.forget_repository();
    if output.is_json() {
        output.json(&report)?;
    } else {
        output.result(format_args!(
            "drill of snapshot {} ({}): {}",
            report.snapshot.short(),
            report.snapshot_time,
            if report.passed { "PASSED" } else { "FAILED" }
        ))?;
        output.result(format_args!(
            "  verified {} items, {} in {}{}",
            report.files_verified,
            output::bytes(report.bytes_verified),
            output::duration(std::time::Duration::from_secs_f64(report.measured_seconds)),
            report.rto_seconds.map_or(String::new(), |rto| format!(
                " (RTO {})",
                output::duration(std::time::Duration::from_secs_f64(rto))
            ))
        ))?;
        if let Some(command) = &report.command {
            output.result(format_args!(
                "  command {:?} exited with {}",
                command.command,
                command
                    .exit_code
                    .map_or("no status (killed or not started)".to_owned(), |c| c
                        .to_string())
            ))?;
            for line in &command.output_tail {
                output.result(format_args!("    | {line}"))?;
            }
        }
        for failure in &report.failures {
            output.result(format_args!("  failure: {failure}"))?;
            if let arca_dr::DrillFailure::Verification { sample, .. } = failure {
                for item in sample {
                    output.result(format_args!("    {item}"))?;
                }
            }
        }
        if report.kept {
            output.result(format_args!(
                "  restored copy kept in {}",
                report.target.display()
            ))?;
        }
    }
    Ok(exit_code(&report))
}

/// 0 passed; 5 only the RTO was missed; 4 any other failure.
fn exit_code(report: &arca_dr::DrillReport) -> Exit {
    use arca_dr::DrillFailure;
    if report.passed {
        Exit::Success
    } else if report
        .failures
        .iter()
        .all(|failure| matches!(failure, DrillFailure::RtoMissed { .. }))
    {
        Exit::RtoMissed
    } else {
        Exit::DrillFailed
    }
}
