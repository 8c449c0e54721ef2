//! `arca diff`: what changed between two snapshots (restic's `+ - M T U`).

use arca_repo::diff::{DiffStat, diff};
use serde::Serialize;

use crate::Exit;
use crate::context::{AnyRepository, Context, restic_error};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The earlier snapshot (ID, unique prefix or "latest")
    #[arg(value_name = "SNAPSHOT1")]
    first: String,
    /// The later snapshot
    #[arg(value_name = "SNAPSHOT2")]
    second: String,
    /// Also print nodes whose metadata alone changed (U)
    #[arg(long)]
    metadata: bool,
}

#[derive(Debug, Serialize)]
struct ChangeJson<'a> {
    message_type: &'static str,
    path: &'a str,
    modifier: &'a str,
}

/// The closing `--json` line (restic's `statistics` message).
#[derive(Debug, Serialize)]
struct StatisticsJson<'a> {
    message_type: &'static str,
    source_snapshot: String,
    target_snapshot: String,
    changed_files: u64,
    added: &'a DiffStat,
    removed: &'a DiffStat,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let (first_id, second_id, result) = match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => {
            let repository = &opened.repository;
            let (first_id, first) = repository.find_snapshot(&args.first).await?;
            let (second_id, second) = repository.find_snapshot(&args.second).await?;
            let index = repository.load_index().await?;
            let result = diff(repository, &index, &first.tree, &second.tree, args.metadata).await?;
            (first_id, second_id, result)
        }
        AnyRepository::Restic(restic) => {
            let (first_id, first) = restic.find_snapshot(&args.first).await?;
            let (second_id, second) = restic.find_snapshot(&args.second).await?;
            let index = restic.load_index().await.map_err(restic_error)?;
            let result = diff(&restic, &index, &first.tree, &second.tree, args.metadata).await?;
            (first_id, second_id, result)
        }
    };
    let out = context.output;
    if out.is_json() {
        for change in &result.changes {
            out.json(&ChangeJson {
                message_type: "change",
                path: &change.path,
                modifier: &change.modifier,
            })?;
        }
        out.json(&StatisticsJson {
            message_type: "statistics",
            source_snapshot: first_id.to_hex(),
            target_snapshot: second_id.to_hex(),
            changed_files: result.changed_files,
            added: &result.added,
            removed: &result.removed,
        })?;
        return Ok(Exit::Success);
    }
    out.info(format_args!(
        "comparing snapshot {} to {}:",
        first_id.short(),
        second_id.short()
    ))?;
    out.info("")?;
    for change in &result.changes {
        out.result(format_args!("{:<5}{}", change.modifier, change.path))?;
    }
    out.info("")?;
    let line = |label: &str, stat: &DiffStat| {
        format!(
            "{label:<9}{} files, {} dirs, {} others; {} data blobs, {} tree blobs, {}",
            stat.files,
            stat.dirs,
            stat.others,
            stat.data_blobs,
            stat.tree_blobs,
            output::bytes(stat.bytes)
        )
    };
    out.info(format_args!("Changed files: {}", result.changed_files))?;
    out.info(line("Added:", &result.added))?;
    out.info(line("Removed:", &result.removed))?;
    Ok(Exit::Success)
}
