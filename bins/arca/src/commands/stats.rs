//! `arca stats`: how big the repository's snapshots are (restic's modes).

use arca_repo::forget::snapshots_for;
use arca_repo::stats::{StatsMode, stats};

use crate::Exit;
use crate::commands::forget::FilterArgs;
use crate::context::{AnyRepository, Context, restic_error};
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Snapshots to count (IDs, unique prefixes or "latest") [default: all matching the filters]
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// What to count: restore-size, files-by-contents, raw-data or blobs-per-file
    #[arg(long, value_name = "MODE", default_value = "restore-size", value_parser = parse_mode)]
    mode: StatsMode,
    #[command(flatten)]
    filter: FilterArgs,
}

fn parse_mode(text: &str) -> Result<StatsMode, String> {
    text.parse().map_err(|e: arca_repo::Error| e.to_string())
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let filter = args.filter.to_filter();
    let result = match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => {
            let repository = &opened.repository;
            let snapshots = snapshots_for(repository, &args.snapshots, &filter).await?;
            let index = repository.load_index().await?;
            stats(repository, &index, &snapshots, args.mode).await?
        }
        AnyRepository::Restic(restic) => {
            let snapshots = arca_restic::migrate::select(&restic, &args.snapshots, &filter)
                .await
                .map_err(restic_error)?;
            let index = restic.load_index().await.map_err(restic_error)?;
            stats(&restic, &index, &snapshots, args.mode).await?
        }
    };
    let out = context.output;
    if out.is_json() {
        out.json(&result)?;
        return Ok(Exit::Success);
    }
    out.result(format_args!("Stats in {} mode:", args.mode))?;
    out.result(format_args!(
        "     Snapshots processed:  {}",
        result.snapshots_count
    ))?;
    if result.total_blob_count > 0 {
        out.result(format_args!(
            "        Total Blob Count:  {}",
            result.total_blob_count
        ))?;
    }
    if result.total_file_count > 0 {
        out.result(format_args!(
            "        Total File Count:  {}",
            result.total_file_count
        ))?;
    }
    if result.total_uncompressed_size > 0 {
        out.result(format_args!(
            " Total Uncompressed Size:  {}",
            output::bytes(result.total_uncompressed_size)
        ))?;
    }
    out.result(format_args!(
        "              Total Size:  {}",
        output::bytes(result.total_size)
    ))?;
    if result.compression_progress > 0.0 {
        out.result(format_args!(
            "    Compression Progress:  {:.2}%",
            result.compression_progress
        ))?;
    }
    if result.compression_ratio > 0.0 {
        out.result(format_args!(
            "       Compression Ratio:  {:.2}x",
            result.compression_ratio
        ))?;
    }
    if result.compression_space_saving > 0.0 {
        out.result(format_args!(
            "Compression Space Saving:  {:.2}%",
            result.compression_space_saving
        ))?;
    }
    Ok(Exit::Success)
}
