//! The [`Repository`] handle: opening and creating repositories, and reading
//! and writing every kind of repository file.
//!
//! Every file except `keys/*` is sealed with the master key; every file except
//! `config` and `keys/*` is named by the storage ID of its stored bytes, and
//! readers check that name before trusting the content. Index and snapshot
//! files are zstd-compressed before sealing. Decryption, decompression and
//! decoding run on tokio's blocking pool, never on async worker threads.

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use arca_chunk::{Chunker, ChunkerParams};
use arca_crypto::{KdfParams, KeyFile, MasterKey, ObjectKind};
use arca_store::{Backend, ObjectMeta};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::blob::{BlobType, Compression, decode_blob};
use crate::config::{Config, DEFAULT_PACK_SIZE};
use crate::index::{Index, IndexFile, TARGET_BLOBS_PER_FILE};
use crate::pack::{FinishedPack, PackEntry, TRAILER_LEN, header_len_from_trailer, open_header};
use crate::snapshot::Snapshot;
use crate::tree::Tree;
use crate::{Error, Id, Result};

/// Path of the config file.
pub const CONFIG_PATH: &str = "config";
/// Directory of key files.
pub const KEYS_DIR: &str = "keys";
/// Directory of snapshot files.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory of index files.
pub const INDEX_DIR: &str = "index";
/// Directory of packs.
pub const DATA_DIR: &str = "data";

/// zstd level for index and snapshot files (small, written rarely).
const FILE_COMPRESSION_LEVEL: i32 = 3;
/// Decoded index and snapshot files larger than this are rejected as corrupt,
/// so a malicious file cannot make a reader allocate without bound.
const MAX_FILE_PLAINTEXT: u64 = 1 << 30;
/// How many files are fetched and decoded at once when loading many.
const LOAD_CONCURRENCY: usize = 8;
/// How many bytes at the end of a pack are read first when only its header is
/// wanted; enough for ~1500 blobs, so most packs need one request.
const HEADER_READ_AHEAD: u64 = 64 * 1024;

/// Parameters of a new repository.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Argon2id cost of the first key file.
    pub kdf: KdfParams,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level for blobs (0 = off).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Recorded in the first key file.
    pub hostname: String,
    /// Recorded in the first key file.
    pub username: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf: KdfParams {
                m_cost_kib: 64 * 1024,
                t_cost: 3,
                p_cost: 1,
            },
            chunker: ChunkerParams::default(),
            compression_level: Compression::DEFAULT_LEVEL,
            pack_size: DEFAULT_PACK_SIZE,
            hostname: String::new(),
            username: String::new(),
        }
    }
}

/// An open repository. Cheap to clone; all clones share one master key.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    config: Config,
    chunker: Chunker,
    compression: Compression,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.backend.to_string())
            .field("id", &self.inner.config.id)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// Creates a repository in an empty location: a master key, one key file
    /// wrapping it under `password`, and the config (written last, so a crash
    /// leaves a location that is not yet a repository rather than a broken one).
    pub async fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: InitOptions,
    ) -> Result<Repository> {
        match backend.head(CONFIG_PATH).await {
            Ok(_) => {
                return Err(Error::AlreadyInitialized {
                    location: backend.to_string(),
                });
            }
            Err(arca_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let config = Config::new(opts.chunker, opts.compression_level, opts.pack_size)?;
        let password = password.to_vec();
        let (key, key_file_bytes, sealed_config) = blocking(move || {
            let key = MasterKey::generate()?;
            let key_file =
                KeyFile::create(&key, &password, opts.kdf, &opts.hostname, &opts.username)?;
            let sealed_config = key.seal(ObjectKind::Config, &config.encode())?;
            Ok((key, key_file.to_bytes(), sealed_config))
        })
        .await?;
        let key_path = format!("{KEYS_DIR}/{}", Id::storage_id(&key_file_bytes));
        backend.put(&key_path, Bytes::from(key_file_bytes)).await?;
        backend.put(CONFIG_PATH, Bytes::from(sealed_config)).await?;
        let config =
            Config::decode(&key.open(ObjectKind::Config, &backend.get(CONFIG_PATH).await?)?)?;
        Repository::assemble(backend, key, config)
    }

    /// Opens an existing repository with any of its keys' passwords.
    pub async fn open(backend: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let sealed_config = match backend.get(CONFIG_PATH).await {
            Ok(bytes) => bytes,
            Err(arca_store::Error::NotFound { .. }) => {
                return Err(Error::NotARepository {
                    location: backend.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let key = Repository::unlock(&backend, password).await?;
        let (key, config) = blocking(move || {
            let plaintext = key
                .open(ObjectKind::Config, &sealed_config)
                .map_err(|e| Error::corrupt(CONFIG_PATH, e))?;
            let config = Config::decode(&plaintext).map_err(|e| e.in_file(CONFIG_PATH))?;
            Ok((key, config))
        })
        .await?;
        Repository::assemble(backend, key, config)
    }

    /// Tries the key files one by one until one opens with `password`.
    async fn unlock(backend: &Arc<dyn Backend>, password: &[u8]) -> Result<MasterKey> {
        let key_files = backend.list(&format!("{KEYS_DIR}/")).await?;
        for meta in key_files {
            let bytes = backend.get(&meta.path).await?;
            let password = password.to_vec();
            let path = meta.path.clone();
            let attempt = blocking(move || {
                let key_file = KeyFile::from_bytes(&bytes).map_err(|e| Error::corrupt(path, e))?;
                Ok(key_file.open(&password))
            })
            .await;
            match attempt {
                Ok(Ok(key)) => return Ok(key),
                Ok(Err(arca_crypto::Error::WrongPassword)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(path = %meta.path, error = %e, "skipping key file that cannot be opened")
                }
                Err(e) => {
                    tracing::warn!(path = %meta.path, error = %e, "skipping damaged key file")
                }
            }
        }
        Err(Error::WrongPassword)
    }

    fn assemble(backend: Arc<dyn Backend>, key: MasterKey, config: Config) -> Result<Repository> {
        let chunker = Chunker::new(config.chunker, &key.chunker_key())
            .map_err(|e| Error::corrupt(CONFIG_PATH, e))?;
        let compression = Compression::new(config.compression_level)?;
        Ok(Repository {
            inner: Arc::new(Inner {
                backend,
                key,
                config,
                chunker,
                compression,
            }),
        })
    }

    /// The repository's parameters.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.inner.key
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The keyed chunker for file content.
    pub fn chunker(&self) -> &Chunker {
        &self.inner.chunker
    }

    /// How blobs are compressed.
    pub fn compression(&self) -> Compression {
        self.inner.compression
    }

    /// Where a pack is stored: `data/<first two hex digits>/<hex>`.
    pub fn pack_path(id: &Id) -> String {
        let hex = id.to_hex();
        format!("{DATA_DIR}/{}/{hex}", &hex[..2])
    }

    /// Uploads a pack and checks it landed whole.
    pub async fn save_pack(&self, pack: &FinishedPack) -> Result<()> {
        let path = Repository::pack_path(&pack.id);
        self.inner.backend.put(&path, pack.bytes.clone()).await?;
        let meta = self.inner.backend.head(&path).await?;
        if meta.size != pack.bytes.len() as u64 {
            return Err(Error::corrupt(
                path,
                format!(
                    "stored {} bytes but the pack has {}",
                    meta.size,
                    pack.bytes.len()
                ),
            ));
        }
        Ok(())
    }

    /// Reads the entries of a stored pack from its header (ranged reads only).
    pub async fn load_pack_header(&self, id: &Id) -> Result<Vec<PackEntry>> {
        let path = Repository::pack_path(id);
        let backend = &self.inner.backend;
        let pack_len = backend.head(&path).await?.size;
        let read_start = pack_len.saturating_sub(HEADER_READ_AHEAD);
        let mut tail = backend.get_range(&path, read_start..pack_len).await?;
        check_len(&path, &tail, pack_len - read_start)?;
        if tail.len() < TRAILER_LEN {
            return Err(Error::corrupt(
                path,
                format!("pack of {pack_len} bytes is too short for a trailer"),
            ));
        }
        let trailer: [u8; TRAILER_LEN] = tail[tail.len() - TRAILER_LEN..]
            .try_into()
            .expect("TRAILER_LEN bytes");
        let header_len = u64::from(header_len_from_trailer(&trailer));
        let header_start = pack_len
            .checked_sub(TRAILER_LEN as u64 + header_len)
            .ok_or_else(|| {
                Error::corrupt(
                    &path,
                    format!("header length {header_len} exceeds the pack ({pack_len} bytes)"),
                )
            })?;
        if header_start < read_start {
            tail = backend.get_range(&path, header_start..pack_len).await?;
            check_len(&path, &tail, pack_len - header_start)?;
        }
        let skip = (header_start - read_start.min(header_start)) as usize;
        let repo = self.clone();
        blocking(move || {
            let sealed = &tail[skip..tail.len() - TRAILER_LEN];
            open_header(repo.key(), sealed, pack_len).map_err(|e| e.in_file(&path))
        })
        .await
    }

    /// Saves one index file (callers keep files near [`TARGET_BLOBS_PER_FILE`]
    /// blobs; see [`Repository::save_indexes`]).
    pub async fn save_index(&self, file: &IndexFile) -> Result<Id> {
        let plaintext = file.encode();
        self.save_file(ObjectKind::Index, INDEX_DIR, plaintext)
            .await
    }

    /// Saves an index of any size, split into files of at most
    /// [`TARGET_BLOBS_PER_FILE`] blobs.
    pub async fn save_indexes(&self, file: IndexFile) -> Result<Vec<Id>> {
        let mut ids = Vec::new();
        for part in file.split(TARGET_BLOBS_PER_FILE) {
            ids.push(self.save_index(&part).await?);
        }
        Ok(ids)
    }

    /// Every file in `index/`.
    pub async fn list_index_files(&self) -> Result<Vec<ObjectMeta>> {
        Ok(self.inner.backend.list(&format!("{INDEX_DIR}/")).await?)
    }

    /// Reads and decodes one index file; damage is [`Error::Corrupt`] naming it.
    pub async fn load_index_file(&self, id: &Id) -> Result<IndexFile> {
        let path = format!("{INDEX_DIR}/{id}");
        let repo = self.clone();
        let stored = self.inner.backend.get(&path).await?;
        blocking(move || {
            let plaintext = repo.open_file(ObjectKind::Index, &path, &stored)?;
            IndexFile::decode(&plaintext).map_err(|e| e.in_file(&path))
        })
        .await
    }

    /// Loads every index file into one finished [`Index`]. A damaged index
    /// file is an error naming it (`arca check` reports them all instead).
    pub async fn load_index(&self) -> Result<Index> {
        let files = self.list_index_files().await?;
        let mut index = Index::default();
        let mut loads = futures::stream::iter(files)
            .map(|meta| async move {
                let id = id_from_path(&meta.path)?;
                self.load_index_file(&id).await
            })
            .buffer_unordered(LOAD_CONCURRENCY);
        while let Some(file) = loads.try_next().await? {
            index.add_file(&file);
        }
        blocking(move || {
            index.finish();
            Ok(index)
        })
        .await
    }

    /// Saves a snapshot and returns its ID.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        self.save_file(ObjectKind::Snapshot, SNAPSHOTS_DIR, snapshot.encode())
            .await
    }

    /// Reads one snapshot; damage is [`Error::Corrupt`] naming the file.
    pub async fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let path = format!("{SNAPSHOTS_DIR}/{id}");
        let stored = match self.inner.backend.get(&path).await {
            Ok(stored) => stored,
            Err(arca_store::Error::NotFound { .. }) => {
                return Err(Error::SnapshotNotFound { spec: id.to_hex() });
            }
            Err(e) => return Err(e.into()),
        };
        let repo = self.clone();
        blocking(move || {
            let plaintext = repo.open_file(ObjectKind::Snapshot, &path, &stored)?;
            Snapshot::decode(&plaintext).map_err(|e| e.in_file(&path))
        })
        .await
    }

    /// IDs of all snapshots (file names only; nothing is decrypted).
    pub async fn list_snapshot_ids(&self) -> Result<Vec<Id>> {
        let metas = self
            .inner
            .backend
            .list(&format!("{SNAPSHOTS_DIR}/"))
            .await?;
        metas.iter().map(|meta| id_from_path(&meta.path)).collect()
    }

    /// All snapshots, oldest first. A damaged snapshot file is an error naming it.
    pub async fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let (snapshots, mut errors) = self.list_snapshots_lenient().await?;
        match errors.pop() {
            Some((_, error)) => Err(error),
            None => Ok(snapshots),
        }
    }

    /// All readable snapshots, oldest first, and the error for each snapshot
    /// file that could not be read (for `check`).
    pub async fn list_snapshots_lenient(&self) -> Result<(Vec<(Id, Snapshot)>, Vec<(Id, Error)>)> {
        let ids = self.list_snapshot_ids().await?;
        let results: Vec<(Id, Result<Snapshot>)> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load_snapshot(&id).await) })
            .buffer_unordered(LOAD_CONCURRENCY)
            .collect()
            .await;
        let mut snapshots = Vec::with_capacity(results.len());
        let mut errors = Vec::new();
        for (id, result) in results {
            match result {
                Ok(snapshot) => snapshots.push((id, snapshot)),
                Err(error) => errors.push((id, error)),
            }
        }
        snapshots.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        errors.sort_by_key(|(id, _)| *id);
        Ok((snapshots, errors))
    }

    /// Finds a snapshot by full ID, unique hex prefix, or `latest` (newest by time).
    pub async fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        let not_found = || Error::SnapshotNotFound {
            spec: spec.to_owned(),
        };
        if spec == "latest" {
            return self.list_snapshots().await?.pop().ok_or_else(not_found);
        }
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(not_found());
        }
        let mut matches = self
            .list_snapshot_ids()
            .await?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&prefix));
        let id = matches.next().ok_or_else(not_found)?;
        if matches.next().is_some() {
            return Err(Error::AmbiguousSnapshot {
                spec: spec.to_owned(),
            });
        }
        let snapshot = self.load_snapshot(&id).await?;
        Ok((id, snapshot))
    }

    /// Reads, decodes and verifies one blob via the index.
    pub async fn read_blob(&self, index: &Index, blob_type: BlobType, id: &Id) -> Result<Bytes> {
        self.read_blob_then(index, blob_type, id, |plaintext| Ok(Bytes::from(plaintext)))
            .await
    }

    /// Reads and decodes one tree.
    pub async fn load_tree(&self, index: &Index, id: &Id) -> Result<Tree> {
        let what = format!("tree {id}");
        self.read_blob_then(index, BlobType::Tree, id, move |plaintext| {
            Tree::decode(&plaintext).map_err(|e| e.in_file(&what))
        })
        .await
    }

    /// Fetches a blob's stored bytes and decodes them, then applies `then`,
    /// all on the blocking pool.
    async fn read_blob_then<T: Send + 'static>(
        &self,
        index: &Index,
        blob_type: BlobType,
        id: &Id,
        then: impl FnOnce(Vec<u8>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let location = index
            .get(blob_type, id)
            .ok_or(Error::BlobNotFound { blob_type, id: *id })?;
        let path = Repository::pack_path(&location.pack);
        let start = u64::from(location.offset);
        let stored = self
            .inner
            .backend
            .get_range(&path, start..start + u64::from(location.length))
            .await?;
        check_len(&path, &stored, u64::from(location.length))?;
        let repo = self.clone();
        let id = *id;
        blocking(move || {
            let plaintext = decode_blob(
                repo.key(),
                blob_type,
                &stored,
                location.uncompressed_length,
                &id,
            )
            .map_err(|e| e.in_file(&path))?;
            then(plaintext)
        })
        .await
    }

    /// The stored bytes of any file, unverified (for `arca cat` and `check`).
    pub async fn read_raw(&self, path: &str) -> Result<Bytes> {
        Ok(self.inner.backend.get(path).await?)
    }

    /// The verified plaintext of a sealed file: for `config` the JSON, for
    /// index and snapshot files the decompressed payload. Files named by
    /// storage ID must hash to their name.
    pub async fn read_file(&self, kind: ObjectKind, path: &str) -> Result<Vec<u8>> {
        let stored = self.inner.backend.get(path).await?;
        let repo = self.clone();
        let path = path.to_owned();
        blocking(move || {
            if path == CONFIG_PATH {
                repo.key()
                    .open(kind, &stored)
                    .map_err(|e| Error::corrupt(path, e))
            } else {
                repo.open_file(kind, &path, &stored)
            }
        })
        .await
    }

    /// Compresses, seals and stores a file named by its storage ID in `dir`.
    async fn save_file(&self, kind: ObjectKind, dir: &str, plaintext: Vec<u8>) -> Result<Id> {
        let repo = self.clone();
        let sealed = blocking(move || {
            let compressed =
                zstd::bulk::compress(&plaintext, FILE_COMPRESSION_LEVEL).map_err(|e| {
                    Error::Io {
                        path: "zstd".into(),
                        source: e,
                    }
                })?;
            Ok(repo.key().seal(kind, &compressed)?)
        })
        .await?;
        let id = Id::storage_id(&sealed);
        self.inner
            .backend
            .put(&format!("{dir}/{id}"), Bytes::from(sealed))
            .await?;
        Ok(id)
    }

    /// Verifies the name, opens and decompresses a file saved by `save_file`.
    /// Blocking: call from the blocking pool.
    fn open_file(&self, kind: ObjectKind, path: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let named = id_from_path(path)?;
        let actual = Id::storage_id(stored);
        if named != actual {
            return Err(Error::corrupt(
                path,
                format!("content hashes to {actual}, not to its name"),
            ));
        }
        let compressed = self
            .key()
            .open(kind, stored)
            .map_err(|e| Error::corrupt(path, e))?;
        let mut plaintext = Vec::new();
        zstd::stream::read::Decoder::new(compressed.as_slice())
            .and_then(|decoder| {
                decoder
                    .take(MAX_FILE_PLAINTEXT + 1)
                    .read_to_end(&mut plaintext)
            })
            .map_err(|e| Error::corrupt(path, format!("zstd: {e}")))?;
        if plaintext.len() as u64 > MAX_FILE_PLAINTEXT {
            return Err(Error::corrupt(
                path,
                format!("decompresses to more than {MAX_FILE_PLAINTEXT} bytes"),
            ));
        }
        Ok(plaintext)
    }
}

/// The ID a file is named by (the last path component).
fn id_from_path(path: &str) -> Result<Id> {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.parse()
        .map_err(|_| Error::corrupt(path, "file name is not a 64-digit hex ID"))
}

/// Checks a ranged read returned exactly the bytes asked for.
fn check_len(path: &str, bytes: &[u8], expected: u64) -> Result<()> {
    if bytes.len() as u64 != expected {
        return Err(Error::corrupt(
            path,
            format!(
                "read {} bytes where {expected} were expected (truncated?)",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// Runs CPU-bound work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking repository task panicked")
}
