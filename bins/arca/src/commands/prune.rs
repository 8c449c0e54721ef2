//! `arca prune`: delete data no snapshot uses, beside running backups;
//! with `--erase`, then destroy the old data keys (cryptographic erasure).

use std::time::Duration;

use arca_crypto::{KdfParams, KeyAccess};
use arca_repo::erase::{EraseOptions, EraseReport, erase};
use arca_repo::keys::NewKey;
use arca_repo::prune::{MaxUnused, PruneOptions, PruneReport, parse_size, prune};
use serde::Serialize;

use crate::Exit;
use crate::context::{Context, hostname, username};
use crate::output::{self, Output};
use crate::password::Purpose;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    options: PruneFlags,
    /// Print what would be marked, repacked and deleted; change nothing
    #[arg(long, short = 'n', conflicts_with = "erase")]
    dry_run: bool,
    /// Then re-encrypt what is still under an old data key and, once the
    /// old packs are deleted (after the grace period: run it again then),
    /// destroy every data key but the current one: the key file in use is
    /// rewritten, the old keyrings deleted (docs/FORMAT.md §20)
    #[arg(long)]
    erase: bool,
    /// With --erase: also delete the other key files, which hold the old
    /// keys and cannot be rewritten without their passwords
    #[arg(long, requires = "erase")]
    remove_other_keys: bool,
}

/// How to prune (shared with `forget --prune`).
#[derive(Debug, clap::Args)]
pub(crate) struct PruneFlags {
    /// Unused space to tolerate in partly used packs: a percentage of the
    /// used data (5%) or a size (500M); packs beyond it are repacked
    #[arg(long, value_name = "LIMIT", default_value = "5%", value_parser = parse_max_unused)]
    max_unused: MaxUnused,
    /// Repack at most this much per run (e.g. 1G)
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    max_repack_size: Option<u64>,
    /// Repack only tree packs (those a cache holds)
    #[arg(long)]
    repack_cacheable_only: bool,
    /// Also repack packs smaller than half the target pack size
    #[arg(long)]
    repack_small: bool,
    /// How long marked packs wait before a later prune deletes them (e.g.
    /// 2h, 30m); at least 10m
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = parse_duration)]
    grace: Duration,
}

fn parse_max_unused(text: &str) -> Result<MaxUnused, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

fn parse_size_arg(text: &str) -> Result<u64, String> {
    parse_size(text).ok_or_else(|| format!("{text:?} is not a size like 500M or 2G"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 2h or 30m: {e}"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

/// The `--json` summary (schema in docs/CLI.md; keep it stable).
#[derive(Debug, Serialize)]
struct SummaryJson<'a> {
    message_type: &'static str,
    #[serde(flatten)]
    report: &'a PruneReport,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let opts = args.options.to_options(args.dry_run);
    if args.erase {
        // The key file in use is rewritten for the same password.
        let password = context.password(Purpose::Open).await?;
        let opts = EraseOptions {
            prune: opts,
            new_key: NewKey {
                password: password.as_bytes(),
                hostname: hostname(),
                username: username(),
                access: KeyAccess::Full,
                kdf: KdfParams::default(),
            },
            remove_other_keys: args.remove_other_keys,
        };
        let report = erase(&opened.repository, &opts).await?;
        print_erase_report(context.output, &report)?;
        return Ok(Exit::Success);
    }
    let report = prune(&opened.repository, &opts).await?;
    print_report(context.output, &report)?;
    Ok(Exit::Success)
}

/// The `--erase` summary (schema in docs/CLI.md).
#[derive(Debug, Serialize)]
struct EraseJson<'a> {
    message_type: &'static str,
    #[serde(flatten)]
    report: &'a EraseReport,
}

fn print_erase_report(output: Output, report: &EraseReport) -> anyhow::Result<()> {
    if output.is_json() {
        return output.json(&EraseJson {
            message_type: "erase_summary",
            report,
        });
    }
    print_report(output, &report.prune)?;
    let reencrypt = &report.reencrypt;
    if reencrypt.packs_rewritten > 0 {
        output.info(format_args!(
            "re-encrypted {} packs ({}) under data key {:08x}",
            reencrypt.packs_rewritten,
            output::bytes(reencrypt.bytes_rewritten),
            reencrypt.data_key
        ))?;
    }
    if let Some(waiting) = &report.waiting {
        let when = match waiting.due {
            Some(due) => format!(
                "a prune --erase after {} (the grace period) can finish",
                due.strftime("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => "some are not marked yet: run prune --erase again, and once more after the grace period".to_owned(),
        };
        output.result(format_args!(
            "nothing erased yet: {} packs ({}) under old data keys wait for deletion; {when}",
            waiting.packs,
            output::bytes(waiting.bytes)
        ))?;
        if waiting.files > 0 {
            output.result(format_args!(
                "{} files were written under an old data key while this ran (by a backup or other client that opened the repository before the last key rotation); the next prune --erase re-encrypts them",
                waiting.files
            ))?;
        }
        return Ok(());
    }
    if report.audit_records_resealed > 0 {
        output.info(format_args!(
            "sealed {} audit records again under the audit key (each names its old ID in resealed_from)",
            report.audit_records_resealed
        ))?;
    }
    let destroyed: Vec<String> = report
        .destroyed
        .iter()
        .map(|id| format!("{id:08x}"))
        .collect();
    if destroyed.is_empty() {
        output.result(format_args!(
            "finished an interrupted erasure: deleted {} old keyrings and {} key files; data key {:08x} kept",
            report.keyrings_deleted,
            report.key_files_removed.len(),
            report.kept
        ))?;
    } else {
        output.result(format_args!(
            "destroyed data keys {} (deleted {} keyrings, {} key files); data key {:08x} kept",
            destroyed.join(", "),
            report.keyrings_deleted,
            report.key_files_removed.len(),
            report.kept
        ))?;
    }
    if let Some(key_file) = report.key_file {
        output.info(format_args!(
            "the password in use now opens key file {} (copies of the old key files and keyrings still open what they held)",
            key_file.short()
        ))?;
    }
    Ok(())
}

impl PruneFlags {
    /// The library's options.
    pub(crate) fn to_options(&self, dry_run: bool) -> PruneOptions {
        PruneOptions {
            max_unused: self.max_unused,
            max_repack_bytes: self.max_repack_size,
            repack_cacheable_only: self.repack_cacheable_only,
            repack_small: self.repack_small,
            dry_run,
            grace: self.grace,
        }
    }
}

/// Prints a prune's report (also used by `forget --prune`).
pub(crate) fn print_report(output: Output, report: &PruneReport) -> anyhow::Result<()> {
    if output.is_json() {
        return output.json(&SummaryJson {
            message_type: "summary",
            report,
        });
    }
    let would = if report.dry_run { "would " } else { "" };
    if report.marks_swept > 0 {
        output.info(format_args!(
            "{would}delete {} packs ({}) marked at least a grace period ago; {} found in use again and kept",
            report.packs_deleted,
            output::bytes(report.bytes_deleted),
            report.packs_resurrected
        ))?;
    }
    output.info(format_args!(
        "{} snapshots use {} blobs",
        report.snapshots, report.blobs_used
    ))?;
    if report.packs_repacked > 0 {
        output.info(format_args!(
            "{would}repack {} blobs ({}) out of {} partly used packs",
            report.blobs_repacked,
            output::bytes(report.bytes_repacked),
            report.packs_repacked
        ))?;
    }
    output.info(format_args!(
        "{would}mark {} packs ({}) for deletion by a prune after the grace period{}",
        report.packs_marked,
        output::bytes(report.bytes_marked),
        if report.unindexed_packs_marked > 0 {
            format!(", {} of them in no index", report.unindexed_packs_marked)
        } else {
            String::new()
        }
    ))?;
    if report.bytes_unused_kept > 0 {
        output.info(format_args!(
            "{} unused left in partly used packs (within --max-unused)",
            output::bytes(report.bytes_unused_kept)
        ))?;
    }
    Ok(())
}
