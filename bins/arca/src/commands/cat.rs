//! `arca cat`: print one repository file, decrypted and decoded, as JSON.
//! For debugging and for people curious about the format (docs/FORMAT.md).

use anyhow::{Context as _, bail};
use arca_repo::blob::BlobType;
use arca_repo::pack::PackEntry;
use arca_repo::repository::{INDEX_DIR, KEYS_DIR};
use arca_repo::{Id, Repository};
use serde::Serialize;

use crate::Exit;
use crate::commands::snapshots::SnapshotJson;
use crate::context::Context;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    /// The repository config
    Config,
    /// A snapshot (ID, prefix or "latest")
    Snapshot,
    /// An index file (ID or prefix)
    Index,
    /// A pack's header: the blobs it holds (ID or prefix)
    Pack,
    /// A key file (ID or prefix); it holds the master key encrypted under a password
    Key,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to print
    #[arg(value_enum)]
    kind: Kind,
    /// Which one (not for config)
    #[arg(value_name = "ID")]
    id: Option<String>,
}

pub(crate) async fn run(args: Args, context: &Context) -> anyhow::Result<Exit> {
    let opened = context.open_repository().await?;
    let repository = &opened.repository;
    let output = context.output;
    if matches!(args.kind, Kind::Config) && args.id.is_some() {
        bail!("`cat config` takes no ID");
    }
    let spec = || {
        args.id
            .as_deref()
            .context("give the ID of the file to print (or a unique prefix of it)")
    };
    match args.kind {
        Kind::Config => output.json_pretty(repository.config())?,
        Kind::Snapshot => {
            let (id, snapshot) = repository.find_snapshot(spec()?).await?;
            output.json_pretty(&SnapshotJson::new(&id, &snapshot))?;
        }
        Kind::Index => {
            let id = resolve(repository, INDEX_DIR, spec()?).await?;
            let file = repository.load_index_file(&id).await?;
            let packs: Vec<_> = file
                .packs
                .iter()
                .map(|pack| PackJson {
                    id: pack.id,
                    blobs: blobs_json(&pack.blobs),
                })
                .collect();
            output.json_pretty(&serde_json::json!({ "packs": packs }))?;
        }
        Kind::Pack => {
            // Packs are sharded by their first two hex digits; list only the shard when we can.
            let spec = spec()?;
            let shard = spec.get(..2).map_or_else(
                || "data".to_string(),
                |first| format!("data/{}", first.to_ascii_lowercase()),
            );
            let id = resolve(repository, &shard, spec).await?;
            let entries = repository.load_pack_header(&id).await?;
            output.json_pretty(&PackJson {
                id,
                blobs: blobs_json(&entries),
            })?;
        }
        Kind::Key => {
            let id = resolve(repository, KEYS_DIR, spec()?).await?;
            let bytes = repository.read_raw(&format!("{KEYS_DIR}/{id}")).await?;
            let key: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{KEYS_DIR}/{id} is not JSON"))?;
            output.json_pretty(&key)?;
        }
    }
    Ok(Exit::Success)
}

/// The one file under `dir` whose name starts with `spec`.
async fn resolve(repository: &Repository, dir: &str, spec: &str) -> anyhow::Result<Id> {
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is not a hex ID or ID prefix");
    }
    let spec = spec.to_ascii_lowercase();
    let listing = repository.backend().list(&format!("{dir}/")).await?;
    let mut matches = listing
        .iter()
        .filter_map(|meta| meta.path.rsplit('/').next())
        .filter(|name| name.starts_with(&spec))
        .filter_map(|name| name.parse::<Id>().ok());
    match (matches.next(), matches.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => bail!("no file in {dir}/ matches {spec:?}"),
        (Some(_), Some(_)) => {
            bail!("{spec:?} matches several files in {dir}/; give more hex digits")
        }
    }
}

#[derive(Serialize)]
struct PackJson {
    id: Id,
    blobs: Vec<BlobJson>,
}

/// One blob in a pack (schema in docs/CLI.md).
#[derive(Serialize)]
struct BlobJson {
    #[serde(rename = "type")]
    blob_type: BlobType,
    id: Id,
    offset: u32,
    length: u32,
    uncompressed_length: Option<u32>,
}

fn blobs_json(entries: &[PackEntry]) -> Vec<BlobJson> {
    entries
        .iter()
        .map(|entry| BlobJson {
            blob_type: entry.blob_type,
            id: entry.id,
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: entry.uncompressed_length,
        })
        .collect()
}
