//! `arca cat`: print one repository file, decrypted and decoded, as JSON.
//! For debugging and for people curious about the format (docs/FORMAT.md).

use anyhow::{Context as _, bail};
use arca_repo::Id;
use arca_repo::blob::{BlobEnvelope, BlobType};
use arca_repo::pack::PackEntry;
use arca_repo::repository::{INDEX_DIR, KEYS_DIR};
use serde::Serialize;

use crate::Exit;
use crate::commands::snapshots::SnapshotJson;
use crate::context::{AnyRepository, Context};
use crate::output::Output;

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
    if matches!(args.kind, Kind::Config) && args.id.is_some() {
        bail!("`cat config` takes no ID");
    }
    let output = context.output;
    let opened = match context.open_any_repository().await? {
        AnyRepository::Arca(opened) => opened,
        AnyRepository::Restic(restic) => return cat_restic(&args, &restic, output).await,
    };
    let repository = &opened.repository;
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
            let id = resolve(repository.backend().as_ref(), INDEX_DIR, spec()?).await?;
            let file = repository.load_index_file(&id).await?;
            let packs: Vec<_> = file
                .packs
                .iter()
                .map(|pack| PackJson::new(pack.id, pack.envelope, &pack.blobs))
                .collect();
            output.json_pretty(&serde_json::json!({ "packs": packs }))?;
        }
        Kind::Pack => {
            let spec = spec()?;
            let id = resolve(repository.backend().as_ref(), &pack_shard(spec), spec).await?;
            let header = repository.load_pack_header(&id).await?;
            output.json_pretty(&PackJson::new(id, header.envelope, &header.entries))?;
        }
        Kind::Key => {
            let id = resolve(repository.backend().as_ref(), KEYS_DIR, spec()?).await?;
            let bytes = repository.read_raw(&format!("{KEYS_DIR}/{id}")).await?;
            let key: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{KEYS_DIR}/{id} is not JSON"))?;
            output.json_pretty(&key)?;
        }
    }
    Ok(Exit::Success)
}

/// `cat` of a restic repository: restic's own structures, decrypted (a
/// snapshot as Arca prints its own).
async fn cat_restic(
    args: &Args,
    restic: &arca_restic::ResticRepository,
    output: Output,
) -> anyhow::Result<Exit> {
    let spec = || {
        args.id
            .as_deref()
            .context("give the ID of the file to print (or a unique prefix of it)")
    };
    let backend = restic.backend().as_ref();
    match args.kind {
        Kind::Config => output.json_pretty(restic.config())?,
        Kind::Snapshot => {
            let (id, snapshot) = restic.find_snapshot(spec()?).await?;
            output.json_pretty(&SnapshotJson::new(&id, &snapshot.to_arca()?))?;
        }
        Kind::Index => {
            let id = resolve(backend, INDEX_DIR, spec()?).await?;
            output.json_pretty(&restic.load_index_file(&id).await?)?;
        }
        Kind::Pack => {
            let spec = spec()?;
            let id = resolve(backend, &pack_shard(spec), spec).await?;
            let blobs = restic.pack_header(&id, None).await?;
            output.json_pretty(&serde_json::json!({ "id": id, "blobs": blobs }))?;
        }
        Kind::Key => {
            let id = resolve(backend, KEYS_DIR, spec()?).await?;
            let bytes = backend.get(&format!("{KEYS_DIR}/{id}")).await?;
            let key: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{KEYS_DIR}/{id} is not JSON"))?;
            output.json_pretty(&key)?;
        }
    }
    Ok(Exit::Success)
}

/// Packs are sharded by their first two hex digits; list only the shard when we can.
fn pack_shard(spec: &str) -> String {
    spec.get(..2).map_or_else(
        || "data".to_string(),
        |first| format!("data/{}", first.to_ascii_lowercase()),
    )
}

/// The one file under `dir` whose name starts with `spec`.
async fn resolve(backend: &dyn arca_store::Backend, dir: &str, spec: &str) -> anyhow::Result<Id> {
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{spec:?} is not a hex ID or ID prefix");
    }
    let spec = spec.to_ascii_lowercase();
    let listing = backend.list(&format!("{dir}/")).await?;
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

/// A pack as the index or its header describes it (schema in docs/CLI.md).
#[derive(Serialize)]
struct PackJson {
    id: Id,
    /// Pack format: 1 (each blob sealed on its own) or 2 (one blob key).
    format: u8,
    /// Format 2: the data key the blob key derives from, and its salt (hex;
    /// public, as in the pack header).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    blobs: Vec<BlobJson>,
}

impl PackJson {
    fn new(id: Id, envelope: BlobEnvelope, entries: &[PackEntry]) -> Self {
        let (format, key_id, salt) = match envelope {
            BlobEnvelope::PerBlob => (1, None, None),
            BlobEnvelope::Pack(key) => (2, Some(key.key_id), Some(hex::encode(key.salt))),
        };
        PackJson {
            id,
            format,
            key_id,
            salt,
            blobs: entries.iter().map(BlobJson::from).collect(),
        }
    }
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

impl From<&PackEntry> for BlobJson {
    fn from(entry: &PackEntry) -> Self {
        BlobJson {
            blob_type: entry.blob_type,
            id: entry.id,
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: entry.uncompressed_length,
        }
    }
}
