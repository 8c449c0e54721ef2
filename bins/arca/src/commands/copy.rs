//! `arca copy --from-repo SRC [SNAPSHOT...]`: copy snapshots from another
//! repository into the one given by `-r` (see `arca_repo::copy`).

use std::path::PathBuf;

use anyhow::bail;
use arca_repo::copy::{copy, select};

use crate::Exit;
use crate::commands::forget::FilterArgs;
use crate::context::{Context, env_either};
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
    // The source first: a wrong password for it stops the copy before
    // anything is written anywhere.
    let source = context
        .source_repository(from, passwords)
        .open_repository()
        .await?
        .repository;
    let snapshots = select(&source, &args.snapshots, &args.filter.to_filter()).await?;
    let destination = context.open_repository().await?.repository;
    let report = copy(&source, &destination, &snapshots).await?;
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
        "{} snapshot(s) copied, {} skipped; added {} data and {} tree blobs ({} bytes) in {} packs",
        report.copied.len(),
        report.skipped.len(),
        report.data_blobs,
        report.tree_blobs,
        report.bytes_added,
        report.packs
    ))?;
    Ok(Exit::Success)
}
