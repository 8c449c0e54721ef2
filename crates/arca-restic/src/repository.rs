//! [`ResticRepository`]: an opened restic repository over any
//! [`arca_store::Backend`], read-only.

use std::sync::Arc;

use arca_repo::Id;
use arca_repo::blob::BlobType;
use arca_store::{Backend, ObjectMeta};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::compression::{decompress, unpacked_json};
use crate::config::Config;
use crate::crypto::{KeyFile, MasterKey};
use crate::index::{BlobLocation, Index, IndexFile};
use crate::pack::{PackBlob, TRAILER_LEN, header_range, parse_header};
use crate::snapshot::ResticSnapshot;
use crate::tree::ResticTree;
use crate::{Error, Result};

/// The config file's path.
pub const CONFIG_PATH: &str = "config";
/// Key files.
pub const KEYS_DIR: &str = "keys";
/// Snapshot files.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Index files.
pub const INDEX_DIR: &str = "index";
/// Packs, sharded by the first two hex digits of their ID.
pub const DATA_DIR: &str = "data";

/// How many files (snapshots, index files, pack headers) load at once.
const LOAD_CONCURRENCY: usize = 8;
/// Bytes read from a pack's end in the hope that the header fits (one request).
const HEADER_GUESS: u64 = 16 * 1024;

/// SHA-256, restic's ID of blobs (over plaintext) and files (over stored bytes).
pub fn sha256(bytes: &[u8]) -> Id {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    Id(digest.as_ref().try_into().expect("SHA-256 is 32 bytes"))
}

/// The path of pack `id`.
pub fn pack_path(id: &Id) -> String {
    let hex = id.to_hex();
    format!("{DATA_DIR}/{}/{hex}", &hex[..2])
}

/// Whether `backend` holds a restic repository: a `config` and a first key
/// file that is restic's (scrypt). Arca's own key files use Argon2id.
pub async fn is_restic_repository(backend: &dyn Backend) -> Result<bool> {
    match backend.head(CONFIG_PATH).await {
        Err(arca_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let keys = backend.list(&format!("{KEYS_DIR}/")).await?;
    let Some(first) = keys.first() else {
        return Ok(false);
    };
    let bytes = backend.get(&first.path).await?;
    #[derive(serde::Deserialize)]
    struct Kdf {
        kdf: String,
    }
    Ok(serde_json::from_slice::<Kdf>(&bytes).is_ok_and(|key| key.kdf == "scrypt"))
}

/// An open restic repository. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ResticRepository {
    backend: Arc<dyn Backend>,
    key: Arc<MasterKey>,
    config: Config,
}

/// Runs CPU-heavy work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task cancelled: {e}"),
    }
}

impl ResticRepository {
    /// Opens the repository with `password`: tries each key file until one
    /// opens and its master key opens `config`. [`Error::WrongPassword`] if none does.
    pub async fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Self> {
        let sealed_config = match backend.get(CONFIG_PATH).await {
            Err(arca_store::Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: backend.to_string(),
                });
            }
            other => other?,
        };
        let keys = backend.list(&format!("{KEYS_DIR}/")).await?;
        for meta in keys {
            let bytes = backend.get(&meta.path).await?;
            let key_file = match KeyFile::decode(&bytes) {
                Ok(key_file) => key_file,
                Err(e) => {
                    tracing::warn!(key = %meta.path, error = %e, "skipping a key file that does not parse");
                    continue;
                }
            };
            let password = zeroize::Zeroizing::new(password.to_vec());
            let opened = blocking(move || key_file.open(&password)).await;
            let key = match opened {
                Ok(key) => key,
                Err(Error::WrongPassword) => continue,
                Err(e) => {
                    tracing::warn!(key = %meta.path, error = %e, "skipping a key file");
                    continue;
                }
            };
            let Ok(json) = key.open(&CONFIG_PATH, &sealed_config) else {
                tracing::warn!(key = %meta.path, "key file opens but its key does not open the config");
                continue;
            };
            let config = Config::decode(&json)?;
            tracing::debug!(key = %meta.path, version = config.version, "opened restic repository");
            return Ok(ResticRepository {
                backend,
                key: Arc::new(key),
                config,
            });
        }
        Err(Error::WrongPassword)
    }

    /// The decrypted config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The master key (for decrypting blobs off the async runtime).
    pub fn key(&self) -> &Arc<MasterKey> {
        &self.key
    }

    /// Reads, checks against its name, decrypts and decompresses an unpacked
    /// file (`index/<id>`, `snapshots/<id>`); returns its JSON.
    pub async fn read_unpacked(&self, dir: &str, id: &Id) -> Result<Vec<u8>> {
        let path = format!("{dir}/{id}");
        let stored = self.backend.get(&path).await?;
        let (key, version, id) = (self.key.clone(), self.config.version, *id);
        blocking(move || {
            if sha256(&stored) != id {
                return Err(Error::corrupt(&path, "its bytes do not hash to its name"));
            }
            let plaintext = key.open(&path, &stored)?;
            unpacked_json(&path, version, plaintext)
        })
        .await
    }

    /// The IDs of the files in `dir` (names that are not IDs are skipped).
    pub async fn list_ids(&self, dir: &str) -> Result<Vec<Id>> {
        let listing = self.backend.list(&format!("{dir}/")).await?;
        Ok(listing
            .iter()
            .filter_map(|meta| meta.path.rsplit('/').next()?.parse().ok())
            .collect())
    }

    /// One snapshot file.
    pub async fn load_snapshot(&self, id: &Id) -> Result<ResticSnapshot> {
        ResticSnapshot::decode(&self.read_unpacked(SNAPSHOTS_DIR, id).await?)
    }

    /// Every snapshot, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<(Id, ResticSnapshot)>> {
        let ids = self.list_ids(SNAPSHOTS_DIR).await?;
        let mut snapshots: Vec<(Id, ResticSnapshot, jiff::Timestamp)> = futures::stream::iter(ids)
            .map(|id| async move {
                let snapshot = self.load_snapshot(&id).await?;
                let time = snapshot.timestamp()?;
                Ok::<_, Error>((id, snapshot, time))
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        snapshots.sort_by_key(|a| (a.2, a.0));
        Ok(snapshots.into_iter().map(|(id, s, _)| (id, s)).collect())
    }

    /// The snapshot `spec` names: a full ID, a unique ID prefix or `latest`.
    pub async fn find_snapshot(&self, spec: &str) -> Result<(Id, ResticSnapshot)> {
        let not_found = || Error::SnapshotNotFound { spec: spec.into() };
        if spec == "latest" {
            return self.snapshots().await?.pop().ok_or_else(not_found);
        }
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let matches: Vec<Id> = self
            .list_ids(SNAPSHOTS_DIR)
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [id] => Ok((*id, self.load_snapshot(id).await?)),
            [] => Err(not_found()),
            several => Err(Error::AmbiguousSnapshot {
                spec: spec.into(),
                count: several.len(),
            }),
        }
    }

    /// Every snapshot as Arca's type, oldest first (for printing with Arca's code).
    pub async fn arca_snapshots(&self) -> Result<Vec<(Id, arca_repo::snapshot::Snapshot)>> {
        self.snapshots()
            .await?
            .into_iter()
            .map(|(id, snapshot)| Ok((id, snapshot.to_arca()?)))
            .collect()
    }

    /// One tree as Arca's type, validated (see [`ResticTree::to_arca`]).
    pub async fn arca_tree(&self, index: &Index, id: &Id) -> Result<arca_repo::tree::Tree> {
        Ok(arca_repo::tree::Tree {
            nodes: self.tree(index, id).await?.to_arca()?,
        })
    }

    /// One index file.
    pub async fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        IndexFile::decode(&self.read_unpacked(INDEX_DIR, id).await?)
    }

    /// Every index file merged.
    pub async fn load_index(&self) -> Result<Index> {
        let ids = self.list_ids(INDEX_DIR).await?;
        let mut files = futures::stream::iter(ids)
            .map(|id| async move { self.load_index_file(&id).await })
            .buffer_unordered(LOAD_CONCURRENCY);
        let mut index = Index::default();
        while let Some(file) = files.next().await {
            index.add(&file?);
        }
        Ok(index)
    }

    /// Authenticates, decrypts, decompresses and verifies one blob's stored
    /// bytes (CPU work: call it off the async runtime).
    pub fn open_blob(
        &self,
        blob_type: BlobType,
        id: &Id,
        stored: &[u8],
        uncompressed_length: Option<u32>,
    ) -> Result<Vec<u8>> {
        open_blob(&self.key, blob_type, id, stored, uncompressed_length)
    }

    /// Reads one blob, verified by SHA-256.
    pub async fn read_blob(&self, index: &Index, blob_type: BlobType, id: &Id) -> Result<Vec<u8>> {
        let location = index
            .get(blob_type, id)
            .ok_or(Error::BlobNotFound { blob_type, id: *id })?;
        self.read_located_blob(blob_type, id, &location).await
    }

    /// Reads one blob at a known location, verified by SHA-256.
    pub async fn read_located_blob(
        &self,
        blob_type: BlobType,
        id: &Id,
        location: &BlobLocation,
    ) -> Result<Vec<u8>> {
        let stored = self.fetch_located_blob(location).await?;
        let (key, id, uncompressed) = (self.key.clone(), *id, location.uncompressed_length);
        blocking(move || open_blob(&key, blob_type, &id, &stored, uncompressed)).await
    }

    /// The stored (sealed) bytes of the blob at `location`, for
    /// [`ResticRepository::open_blob`].
    pub async fn fetch_located_blob(&self, location: &BlobLocation) -> Result<bytes::Bytes> {
        let start = u64::from(location.offset);
        Ok(self
            .backend
            .get_range(
                &pack_path(&location.pack),
                start..start + u64::from(location.length),
            )
            .await?)
    }

    /// One tree.
    pub async fn tree(&self, index: &Index, id: &Id) -> Result<ResticTree> {
        let json = self.read_blob(index, BlobType::Tree, id).await?;
        ResticTree::decode(&json)
    }

    /// Every pack in `data/` with its size.
    pub async fn list_packs(&self) -> Result<Vec<ObjectMeta>> {
        Ok(self.backend.list(&format!("{DATA_DIR}/")).await?)
    }

    /// Reads and decodes a pack's header (`size`: the pack's size if known).
    pub async fn pack_header(&self, id: &Id, size: Option<u64>) -> Result<Vec<PackBlob>> {
        let path = pack_path(id);
        let size = match size {
            Some(size) => size,
            None => self.backend.head(&path).await?.size,
        };
        if size < TRAILER_LEN {
            return Err(Error::corrupt(&path, "shorter than a pack trailer"));
        }
        let tail_start = size - size.min(HEADER_GUESS);
        let tail = self.backend.get_range(&path, tail_start..size).await?;
        let trailer: [u8; 4] = tail[tail.len() - 4..].try_into().expect("4 bytes");
        let range = header_range(size, trailer).map_err(|e| Error::corrupt(&path, e))?;
        let sealed = if range.start >= tail_start {
            tail.slice((range.start - tail_start) as usize..(range.end - tail_start) as usize)
        } else {
            self.backend.get_range(&path, range.clone()).await?
        };
        let key = self.key.clone();
        blocking(move || {
            let what = format!("header of pack {path}");
            let plaintext = key.open(&what, &sealed)?;
            parse_header(&plaintext, range.start).map_err(|e| Error::corrupt(what, e))
        })
        .await
    }
}

/// [`ResticRepository::open_blob`] with the key passed in.
pub(crate) fn open_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: &Id,
    stored: &[u8],
    uncompressed_length: Option<u32>,
) -> Result<Vec<u8>> {
    let what = format!("{blob_type} blob {id}");
    let plaintext = key.open(&what, stored)?;
    let plaintext = match uncompressed_length {
        None => plaintext,
        Some(len) => {
            let out = decompress(&what, &plaintext, len as usize)?;
            if out.len() != len as usize {
                return Err(Error::corrupt(
                    what,
                    format!("decompresses to {} bytes, not {len}", out.len()),
                ));
            }
            out
        }
    };
    if sha256(&plaintext) != *id {
        return Err(Error::corrupt(
            what,
            "its plaintext does not hash to its ID",
        ));
    }
    Ok(plaintext)
}

/// restic's sealing: a 16-byte IV before and a 16-byte MAC after.
const RESTIC_SEAL_OVERHEAD: u64 = 32;

/// `find`, `diff`, `stats` and `dump` read a restic repository with the
/// same code as Arca's (see [`arca_repo::find::TreeReader`]).
impl arca_repo::find::TreeReader for ResticRepository {
    type Index = Index;

    fn seal_overhead(_: &arca_repo::index::BlobLocation) -> u64 {
        RESTIC_SEAL_OVERHEAD
    }

    async fn load_tree(&self, index: &Index, id: &Id) -> arca_repo::Result<arca_repo::tree::Tree> {
        self.arca_tree(index, id).await.map_err(Error::into_repo)
    }

    async fn read_data(&self, index: &Index, id: &Id) -> arca_repo::Result<bytes::Bytes> {
        self.read_blob(index, BlobType::Data, id)
            .await
            .map(bytes::Bytes::from)
            .map_err(Error::into_repo)
    }

    fn locate(
        index: &Index,
        blob_type: BlobType,
        id: &Id,
    ) -> Option<arca_repo::index::BlobLocation> {
        let location = index.get(blob_type, id)?;
        Some(arca_repo::index::BlobLocation {
            pack: location.pack,
            // Each restic blob is sealed on its own (IV, ciphertext, MAC),
            // as format-1 blobs are; what it adds is `seal_overhead`'s.
            envelope: arca_repo::blob::BlobEnvelope::PerBlob,
            blob_type,
            offset: location.offset,
            length: location.length,
            uncompressed_length: location.uncompressed_length,
        })
    }
}
