//! `arca backup`: save files and directories as a new snapshot.

use std::path::PathBuf;

use anyhow::Context as _;
use arca_repo::backup::{BackupOptions, BackupOutcome, PreparedBackup};
use arca_store::RequestCounts;
use serde::Serialize;

use crate::Exit;
use crate::context::{Context, hostname};
use crate::output::{self, Output};
use crate::progress::Reporter;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files and directories to back up
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable, or comma-separated)
    #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
    tags: Vec<String>,
    /// Hostname to record [default: this machine's]
    #[arg(long)]
    host: Option<String>,
    /// Time to record instead of now: "2026-01-02 03:04:05" (local time) or RFC 3339
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    time: Option<jiff::Timestamp>,
    /// Leave out paths matching this pattern (repeatable; restic semantics)
    #[arg(short = 'e', long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable)
    #[arg(long = "exclude-file", value_name = "FILE")]
    exclude_files: Vec<PathBuf>,
    /// Leave out directories containing a CACHEDIR.TAG file
    #[arg(long)]
    exclude_caches: bool,
    /// Do not cross filesystem boundaries
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Compare against this snapshot [default: latest with the same host and paths]
    #[arg(long, value_name = "SNAPSHOT")]
    parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot
    #[arg(short, long)]
    force: bool,
    /// Record access times too (they make otherwise unchanged trees differ)
    #[arg(long)]
    with_atime: bool,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let options = BackupOptions {
        paths: args.paths,
        tags: args.tags,
        hostname: args.host.unwrap_or_else(hostname),
        time: args.time,
        excludes: args.excludes,
        exclude_files: args.exclude_files,
        exclude_caches: args.exclude_caches,
        one_file_system: args.one_file_system,
        parent: None,
        parent_tags: Vec::new(),
        force: args.force,
        with_atime: args.with_atime,
    };
    // Checked before the password is asked for.
    let mut prepared = PreparedBackup::new(options)?;
    let opened = context.open_repository().await?;
    let repository = &opened.repository;
    if let Some(spec) = &args.parent {
        prepared.set_parent(Some(repository.find_snapshot(spec).await?.0));
    }
    let reporter = Reporter::start(context.output);
    let outcome = prepared.run(repository, reporter.progress()).await;
    reporter.finish();
    let outcome = outcome?;
    context.audit.note_snapshots(&[outcome.snapshot_id]);
    print_summary(context.output, &outcome, opened.requests.snapshot())?;
    if outcome.unreadable.is_empty() {
        Ok(Exit::Success)
    } else {
        let message = format!(
            "{} file(s) could not be read and are not in snapshot {} (see the warnings above)",
            outcome.unreadable.len(),
            outcome.snapshot_id.short()
        );
        output::error(
            context.output.is_json(),
            Exit::IncompleteBackup as u8,
            &anyhow::anyhow!(message),
        );
        Ok(Exit::IncompleteBackup)
    }
}

/// `--time`: restic's `YYYY-MM-DD HH:MM:SS` in the local time zone, or RFC 3339.
fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp);
    }
    let civil: jiff::civil::DateTime = text
        .parse()
        .map_err(|_| format!("{text:?} is not a time; use \"2026-01-02 03:04:05\" or RFC 3339"))?;
    civil
        .to_zoned(jiff::tz::TimeZone::system())
        .map(|zoned| zoned.timestamp())
        .map_err(|e| format!("{text:?} does not exist in the local time zone: {e}"))
}

/// The backup summary as printed by `--json` (schema in docs/CLI.md; keep it stable).
#[derive(Debug, Serialize)]
struct SummaryJson {
    message_type: &'static str,
    snapshot_id: arca_repo::Id,
    files_new: u64,
    files_changed: u64,
    files_unmodified: u64,
    files_unreadable: u64,
    dirs_new: u64,
    dirs_changed: u64,
    dirs_unmodified: u64,
    data_blobs: u64,
    tree_blobs: u64,
    data_added: u64,
    data_added_packed: u64,
    total_files_processed: u64,
    total_bytes_processed: u64,
    /// Seconds.
    total_duration: f64,
    requests: RequestCounts,
}

fn print_summary(
    output: Output,
    outcome: &BackupOutcome,
    requests: RequestCounts,
) -> anyhow::Result<()> {
    let summary = outcome
        .snapshot
        .summary
        .as_ref()
        .context("the backup engine saved a snapshot without a summary")?;
    let duration = summary
        .backup_end
        .duration_since(summary.backup_start)
        .unsigned_abs();
    if output.is_json() {
        return output.json(&SummaryJson {
            message_type: "summary",
            snapshot_id: outcome.snapshot_id,
            files_new: summary.files_new,
            files_changed: summary.files_changed,
            files_unmodified: summary.files_unmodified,
            files_unreadable: summary.files_unreadable,
            dirs_new: summary.dirs_new,
            dirs_changed: summary.dirs_changed,
            dirs_unmodified: summary.dirs_unmodified,
            data_blobs: summary.data_blobs,
            tree_blobs: summary.tree_blobs,
            data_added: summary.data_added,
            data_added_packed: summary.data_added_packed,
            total_files_processed: summary.total_files_processed,
            total_bytes_processed: summary.total_bytes_processed,
            total_duration: duration.as_secs_f64(),
            requests,
        });
    }
    output.info(format_args!(
        "Files:  {:>6} new, {:>6} changed, {:>6} unmodified",
        summary.files_new, summary.files_changed, summary.files_unmodified
    ))?;
    output.info(format_args!(
        "Dirs:   {:>6} new, {:>6} changed, {:>6} unmodified",
        summary.dirs_new, summary.dirs_changed, summary.dirs_unmodified
    ))?;
    output.info(format_args!(
        "Added to the repository: {} ({} stored)",
        output::bytes(summary.data_added),
        output::bytes(summary.data_added_packed)
    ))?;
    output.info(format_args!(
        "\nprocessed {} files, {} in {}",
        summary.total_files_processed,
        output::bytes(summary.total_bytes_processed),
        output::duration(duration)
    ))?;
    output.info(format_args!(
        "snapshot {} saved",
        outcome.snapshot_id.short()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_accepts_restic_format_and_rfc3339() {
        assert_eq!(
            parse_time("2026-01-02T03:04:05Z").unwrap().as_second(),
            1_767_323_045
        );
        let local = parse_time("2026-01-02 03:04:05").unwrap();
        let expected = jiff::civil::date(2026, 1, 2)
            .at(3, 4, 5, 0)
            .to_zoned(jiff::tz::TimeZone::system())
            .unwrap();
        assert_eq!(local, expected.timestamp());
        assert!(parse_time("yesterday").unwrap_err().contains("not a time"));
    }
}
