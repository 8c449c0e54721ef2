//! `arca copy --from-repo SRC [SNAPSHOT...]`: copy snapshots from another
//! repository into the one given by `-r` (see `arca_repo::copy`); from a
//! restic repository, migrate them (see `arca_restic::migrate`).

use std::path::PathBuf;

use anyhow::bail;
use arca_repo::Id;
use arca_repo::copy::{copy, select};
use arca_repo::snapshot::Snapshot;
use arca_restic::migrate;

use crate::Exit;
use crate::commands::forget::FilterArgs;
use crate::context::{AnyRepository, Context, env_either, restic_error};
use crate::password::PasswordSources;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The repository to copy from [env: ARCA_FROM_REPOSITORY, RESTIC_FROM_REPOSITORY]
    #[arg(long, value_name = "REPOSITORY")]
    from_repo: Option<String>,
    /// Read the source repository's password from this file
    /// [env: ARCA_FROM_PASSWORD_FILE, RESTIC_FROM_PASSWORD_FILE]
    #[arg(long, value_name = "FILE")]
    from_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the source repository's password
    /// [env: ARCA_FROM_PASSWORD_COMMAND, RESTIC_FROM_PASSWORD_COMMAND]
    #[arg(long, value_name = "COMMAND")]
    from_password_command: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Snapshots to copy (IDs, unique prefixes or `latest`); all if none are given
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let Some(from) = args
        .from_repo
        .or_else(|| env_either("ARCA_FROM_REPOSITORY", "RESTIC_FROM_REPOSITORY"))
    else {
        bail!("no source repository given: use --from-repo or set ARCA_FROM_REPOSITORY");
    };
    let passwords = PasswordSources {
        file: args.from_password_file.or_else(|| {
            env_either("ARCA_FROM_PASSWORD_FILE", "RESTIC_FROM_PASSWORD_FILE").map(PathBuf::from)
        }),
        command: args
            .from_password_command
            .or_else(|| env_either("ARCA_FROM_PASSWORD_COMMAND", "RESTIC_FROM_PASSWORD_COMMAND")),
    };
    // Both ends keep a record of the copy: the source its own, of what was read.
    let source_context = context.source_repository(from, passwords);
    source_context.audit.set_operation("copy".to_owned());
    let result = copy_between(&args.snapshots, &args.filter, &source_context, context).await;
    source_context
        .audit
        .finish(&result, context.output.is_json())
        .await;
    result
}

async fn copy_between(
    specs: &[String],
    filter: &FilterArgs,
    source_context: &Context,
    context: &Context,
) -> anyhow::Result<Exit> {
    // The source first: a wrong password for it stops the copy before
    // anything is written anywhere.
    let note_sources = |snapshots: &[(Id, Snapshot)]| {
        let source_ids: Vec<_> = snapshots.iter().map(|(id, _)| *id).collect();
        source_context.audit.note_snapshots(&source_ids);
    };
    let report = match source_context.open_any_repository().await? {
        AnyRepository::Arca(opened) => {
            let source = opened.repository;
            let snapshots = select(&source, specs, &filter.to_filter()).await?;
            note_sources(&snapshots);
            let destination = context.open_repository().await?.repository;
            copy(&source, &destination, &snapshots).await?
        }
        // Migration: restic's snapshots re-chunked into the Arca repository.
        AnyRepository::Restic(restic) => {
            let snapshots = migrate::select(&restic, specs, &filter.to_filter())
                .await
                .map_err(restic_error)?;
            note_sources(&snapshots);
            let destination = context.open_repository().await?.repository;
            migrate::migrate(&restic, &destination, &snapshots)
                .await
                .map_err(restic_error)?
        }
    };
    let destination_ids: Vec<_> = report.copied.iter().map(|c| c.destination).collect();
    context.audit.note_snapshots(&destination_ids);
    let output = context.output;
    if output.is_json() {
        output.json(&report)?;
        return Ok(Exit::Success);
    }
    for id in &report.skipped {
        output.info(format_args!(
            "skipped snapshot {} (already in the destination)",
            id.short()
        ))?;
    }
    for copied in &report.copied {
        output.result(format_args!(
            "copied snapshot {} as {}",
            copied.source.short(),
            copied.destination.short()
        ))?;
    }
    output.info(format_args!(
        "{} snapshot(s) copied, {} skipped; added {} data and {} tree blobs ({} bytes) in {} packs; {} audit record(s) carried",
        report.copied.len(),
        report.skipped.len(),
        report.data_blobs,
        report.tree_blobs,
        report.bytes_added,
        report.packs,
        report.audit_records
    ))?;
    Ok(Exit::Success)
}
