//! `arca restore`: write a snapshot (or part of it) into a directory.

use std::path::PathBuf;
use std::time::Instant;

use arca_repo::restore::{RestoreOptions, restore};
use serde::Serialize;

use crate::Exit;
use crate::commands::snapshots::local_time;
use crate::context::{AnyRepository, Context};
use crate::output;
use crate::progress::Reporter;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshot ID, unique ID prefix, or "latest"
    #[arg(value_name = "SNAPSHOT")]
    snapshot: String,
    /// Directory to restore into (created if missing); paths inside the
    /// snapshot are absolute and are recreated below it
    #[arg(short, long, value_name = "DIR")]
    target: PathBuf,
    /// Restore only paths matching this pattern, plus their parent directories (repeatable)
    #[arg(short, long = "include", value_name = "PATTERN")]
    includes: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(short, long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Read every restored file back and check it against the snapshot
    #[arg(long)]
    verify: bool,
}

/// The restore summary as printed by `--json` (schema in docs/CLI.md; keep it stable).
#[derive(Debug, Serialize)]
struct SummaryJson {
    message_type: &'static str,
    snapshot_id: arca_repo::Id,
    target: PathBuf,
    files_restored: u64,
    dirs_restored: u64,
    symlinks_restored: u64,
    hardlinks_restored: u64,
    special_restored: u64,
    bytes_restored: u64,
    bytes_read: u64,
    packs_read: u64,
    files_verified: u64,
    skipped: Vec<SkippedJson>,
    /// Seconds.
    total_duration: f64,
}

#[derive(Debug, Serialize)]
struct SkippedJson {
    path: PathBuf,
    reason: String,
}

/// The snapshot to restore and where it is: restic's snapshot type is kept
/// for restic's restore, Arca's (converted) for printing.
enum Source<'a> {
    Arca(&'a arca_repo::Repository),
    Restic(
        &'a arca_restic::ResticRepository,
        Box<arca_restic::ResticSnapshot>,
    ),
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let repository = context.open_any_repository().await?;
    let (id, snapshot, source) = match &repository {
        AnyRepository::Arca(opened) => {
            let (id, snapshot) = opened.repository.find_snapshot(&args.snapshot).await?;
            (id, snapshot, Source::Arca(&opened.repository))
        }
        AnyRepository::Restic(restic) => {
            let (id, snapshot) = restic.find_snapshot(&args.snapshot).await?;
            (
                id,
                snapshot.to_arca()?,
                Source::Restic(restic, Box::new(snapshot)),
            )
        }
    };
    context.audit.note_snapshots(&[id]);
    let output = context.output;
    if !output.is_json() {
        output.info(format_args!(
            "restoring snapshot {} of {} from {} to {}",
            id.short(),
            snapshot.paths.join(", "),
            local_time(&snapshot),
            args.target.display()
        ))?;
    }
    let mut options = RestoreOptions::new(&args.target);
    options.includes = args.includes;
    options.excludes = args.excludes;
    options.verify = args.verify;
    let started = Instant::now();
    let reporter = Reporter::start(output);
    let summary = match &source {
        Source::Arca(repository) => restore(repository, &snapshot, &options, reporter.progress())
            .await
            .map_err(anyhow::Error::from),
        Source::Restic(restic, restic_snapshot) => {
            arca_restic::restore::restore(restic, restic_snapshot, &options, reporter.progress())
                .await
                .map_err(anyhow::Error::from)
        }
    };
    reporter.finish();
    let summary = summary?;
    let took = started.elapsed();
    for (path, reason) in &summary.skipped {
        output::warning(output.is_json(), path, &format!("not restored: {reason}"));
    }
    if output.is_json() {
        output.json(&SummaryJson {
            message_type: "summary",
            snapshot_id: id,
            target: args.target,
            files_restored: summary.files,
            dirs_restored: summary.dirs,
            symlinks_restored: summary.symlinks,
            hardlinks_restored: summary.hardlinks,
            special_restored: summary.special,
            bytes_restored: summary.bytes_restored,
            bytes_read: summary.bytes_read,
            packs_read: summary.packs_read,
            files_verified: summary.files_verified,
            skipped: summary
                .skipped
                .into_iter()
                .map(|(path, reason)| SkippedJson { path, reason })
                .collect(),
            total_duration: took.as_secs_f64(),
        })?;
    } else {
        output.info(format_args!(
            "restored {} files, {} directories, {} in {}",
            summary.files + summary.hardlinks,
            summary.dirs,
            output::bytes(summary.bytes_restored),
            output::duration(took)
        ))?;
        if args.verify {
            output.info(format_args!(
                "verified {} files: all match the snapshot",
                summary.files_verified
            ))?;
        }
    }
    Ok(Exit::Success)
}
