//! Small sealed JSON records named by their storage ID: the legal holds in
//! `holds/` and the audit trail in `audit/`. Stored like index and snapshot
//! files (zstd, then sealed as their own [`ObjectKind`]), and read through the
//! metadata cache when there is one: a record never changes once written.

use arca_crypto::ObjectKind;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::repository::id_from_path;
use crate::{Error, Id, Repository, Result};

/// How many records are fetched and decoded at once.
const LOAD_CONCURRENCY: usize = 8;

/// Seals `record` as `kind` and stores it in `dir`; returns its ID.
pub(crate) async fn save<T: Serialize>(
    repo: &Repository,
    kind: ObjectKind,
    dir: &str,
    record: &T,
) -> Result<Id> {
    let json = serde_json::to_vec(record).map_err(|e| Error::InvalidOptions(e.to_string()))?;
    repo.save_file(kind, dir, json).await
}

/// Every record in `dir`, each decoded by `decode` or with the error that
/// stopped it (so callers choose between failing and reporting). Names that
/// are not IDs are ignored, as every listing ignores what it does not know.
pub(crate) async fn load_all<T: Send + 'static>(
    repo: &Repository,
    dir: &str,
    decode: fn(&Repository, &str, &[u8]) -> Result<T>,
) -> Result<Vec<(Id, Result<T>)>> {
    let metas = repo.backend().list(&format!("{dir}/")).await?;
    let ids: Vec<Id> = metas
        .iter()
        .filter_map(|meta| id_from_path(&meta.path).ok())
        .collect();
    let mut loaded: Vec<(Id, Result<T>)> = futures::stream::iter(ids)
        .map(|id| async move {
            let result = repo.load_named_file(format!("{dir}/{id}"), decode).await;
            (id, result)
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .collect()
        .await;
    loaded.sort_by_key(|(id, _)| *id);
    Ok(loaded)
}

/// Opens a record sealed as `kind` at `path` and parses its JSON.
/// Blocking: call from the blocking pool (as `load_all`'s decoders are).
pub(crate) fn decode<T: DeserializeOwned>(
    repo: &Repository,
    kind: ObjectKind,
    path: &str,
    stored: &[u8],
) -> Result<T> {
    let plaintext = repo.open_file(kind, path, stored)?;
    serde_json::from_slice(&plaintext).map_err(|e| Error::corrupt(path, e))
}
