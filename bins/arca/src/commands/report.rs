//! `arca report`: the repository's recovery and compliance report
//! (arca-dr) as Markdown, one self-contained HTML page, or JSON.

use std::path::PathBuf;

use arca_dr::render;
use arca_dr::report::{DEFAULT_ROTATION_PERIOD, ReportOptions, collect};

use crate::Exit;
use crate::commands::drill::parse_class;
use crate::commands::forget::PolicyArgs;
use crate::context::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Markdown,
    Html,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The window: backups, failures and gaps in the last DURATION (30d, 12h, 2w)
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = arca_dr::parse_duration)]
    since: jiff::SignedDuration,
    /// Output format [default: json with --json, else markdown]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write the report to FILE instead of stdout
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Judge RPO and RTO against this data class (critical, important, archival)
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    class: Option<arca_sched::DataClass>,
    /// The data key should rotate this often (90d)
    #[arg(long, value_name = "DURATION", value_parser = arca_dr::parse_duration)]
    rotation_period: Option<jiff::SignedDuration>,
    /// Retention conformance: what these --keep-* flags (as `forget`'s) would keep versus what exists
    #[command(flatten)]
    policy: PolicyArgs,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let now = jiff::Timestamp::now();
    let policy = args.policy.policy();
    let options = ReportOptions {
        since: now.checked_sub(args.since)?,
        now,
        class: args.class,
        policy: (!policy.is_empty()).then_some(policy),
        rotation_period: args.rotation_period.unwrap_or(DEFAULT_ROTATION_PERIOD),
    };
    let report = collect(&opened.repository, &options).await?;
    let format = args.format.unwrap_or(if context.output.is_json() {
        Format::Json
    } else {
        Format::Markdown
    });
    let text = match format {
        Format::Markdown => render::markdown(&report, now),
        Format::Html => render::html(&report, now),
        Format::Json => render::json(&report),
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?,
        None => context.output.result(text.trim_end())?,
    }
    Ok(Exit::Success)
}
