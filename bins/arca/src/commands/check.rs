//! `arca check`: verify the repository; exit 1 naming everything damaged.

use anyhow::bail;
use arca_repo::check::{CheckOptions, CheckReport, ReadData, check};
use serde::Serialize;

use crate::Exit;
use crate::context::{AnyRepository, Context};
use crate::output::{self, Output};
use crate::progress::Reporter;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also download every pack and verify every blob in it
    #[arg(long)]
    read_data: bool,
    /// Like --read-data for a subset of packs: "n/m" (the n-th of m slices) or "P%" (random)
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data", value_parser = parse_subset)]
    read_data_subset: Option<ReadData>,
}

fn parse_subset(text: &str) -> Result<ReadData, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

/// The check report as printed by `--json` (schema in docs/CLI.md; keep it stable).
#[derive(Debug, Serialize)]
struct ReportJson {
    message_type: &'static str,
    ok: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
    index_files_checked: u64,
    packs_checked: u64,
    packs_read: u64,
    blobs_checked: u64,
    snapshots_checked: u64,
    trees_checked: u64,
    bytes_read: u64,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let repository = context.open_any_repository().await?;
    let read_data = match (args.read_data, args.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(subset)) => subset,
        (false, None) => ReadData::None,
    };
    let reporter = Reporter::start(context.output);
    let options = CheckOptions { read_data };
    let report = match &repository {
        AnyRepository::Arca(opened) => check(&opened.repository, &options, reporter.progress())
            .await
            .map_err(anyhow::Error::from),
        AnyRepository::Restic(restic) => {
            arca_restic::check::check(restic, &options, reporter.progress())
                .await
                .map_err(anyhow::Error::from)
        }
    };
    reporter.finish();
    let report = report?;
    print_report(context.output, &report)?;
    if !report.is_ok() {
        bail!(
            "check found {} problem(s) in the repository (listed above)",
            report.errors.len()
        );
    }
    Ok(Exit::Success)
}

fn print_report(output: Output, report: &CheckReport) -> anyhow::Result<()> {
    if output.is_json() {
        return output.json(&ReportJson {
            message_type: "summary",
            ok: report.is_ok(),
            errors: report.errors.iter().map(ToString::to_string).collect(),
            warnings: report.warnings.iter().map(ToString::to_string).collect(),
            index_files_checked: report.index_files_checked,
            packs_checked: report.packs_checked,
            packs_read: report.packs_read,
            blobs_checked: report.blobs_checked,
            snapshots_checked: report.snapshots_checked,
            trees_checked: report.trees_checked,
            bytes_read: report.bytes_read,
        });
    }
    for warning in &report.warnings {
        output.info(format_args!("warning: {warning}"))?;
    }
    for error in &report.errors {
        output.result(format_args!("error: {error}"))?;
    }
    output.info(format_args!(
        "checked {} index files, {} packs, {} snapshots, {} trees",
        report.index_files_checked,
        report.packs_checked,
        report.snapshots_checked,
        report.trees_checked
    ))?;
    if report.packs_read > 0 {
        output.info(format_args!(
            "read and verified {} packs ({}), {} blobs",
            report.packs_read,
            output::bytes(report.bytes_read),
            report.blobs_checked
        ))?;
    }
    if report.is_ok() {
        output.info("no errors were found")?;
    }
    Ok(())
}
