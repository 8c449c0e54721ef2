//! `arca unlock`: remove leases left by prunes that died.

use arca_repo::lease::unlock;
use serde::Serialize;

use crate::Exit;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Remove every lease, also those of prunes still running
    #[arg(long)]
    remove_all: bool,
}

#[derive(Debug, Serialize)]
struct SummaryJson {
    message_type: &'static str,
    removed: Vec<String>,
    kept: Vec<String>,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let report = unlock(&opened.repository, args.remove_all).await?;
    let output = context.output;
    if output.is_json() {
        output.json(&SummaryJson {
            message_type: "summary",
            removed: report.removed.iter().map(ToString::to_string).collect(),
            kept: report.kept.iter().map(ToString::to_string).collect(),
        })?;
    } else {
        output.info(format_args!(
            "removed {} lease(s){}",
            report.removed.len(),
            if report.kept.is_empty() {
                String::new()
            } else {
                format!(
                    ", kept {} of prunes still running (--remove-all removes them too)",
                    report.kept.len()
                )
            }
        ))?;
    }
    Ok(Exit::Success)
}
