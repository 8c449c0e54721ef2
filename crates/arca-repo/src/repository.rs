//! The [`Repository`] handle: opening and creating repositories, and reading
//! and writing every kind of repository file.
//!
//! Every file except `keys/*` is sealed with the master key; every file except
//! `config` and `keys/*` is named by the storage ID of its stored bytes, and
//! readers check that name before trusting the content. Index and snapshot
//! files are zstd-compressed before sealing. Decryption, decompression and
//! decoding run on tokio's blocking pool, never on async worker threads.
//! With [`Repository::with_cache`], index files, snapshots and tree packs are
//! also kept in a local [`DiskCache`] (see `cache.rs`).

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arca_chunk::{Chunker, ChunkerParams};
use arca_crypto::{Adopted, BlobKey, KdfParams, KeyAccess, KeyFile, MasterKey, ObjectKind};
use arca_store::{Backend, DiskCache, ObjectMeta};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::blob::{BlobType, Compression, decode_blob};
use crate::cache::MetadataCache;
use crate::config::{Config, DEFAULT_PACK_SIZE};
use crate::fence::FenceState;
use crate::index::{Index, IndexFile, IndexPack, TARGET_BLOBS_PER_FILE};
use crate::pack::{
    FinishedPack, PackContents, PackHeader, TRAILER_LEN, header_len_from_trailer, open_header,
};
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
/// Directory of data keyrings written by `key rotate` (docs/FORMAT.md §20).
pub const KEYRING_DIR: &str = "keyring";

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
            kdf: KdfParams::default(),
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
    /// Local copies of metadata files; `None` reads everything from the backend.
    cache: Option<MetadataCache>,
    /// Overrides [`crate::marks::grace_floor`] (see [`Repository::with_grace_floor`]).
    pub(crate) grace_floor: Option<std::time::Duration>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    key: MasterKey,
    /// The key file that opened the repository: its storage ID and access.
    key_file: (Id, KeyAccess),
    config: Config,
    chunker: Chunker,
    compression: Compression,
    /// What this handle knows about an erasure of its key (`fence.rs`).
    fence: FenceState,
    /// The blob key new packs are sealed under (docs/FORMAT.md §4): one
    /// salt for every pack this handle writes, until it is worn.
    blob_key: std::sync::Mutex<Option<Arc<BlobKey>>>,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.backend.to_string())
            .field("id", &self.inner.config.id)
            .field("cache", &self.cache_dir())
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
        let key_file_id = Id::storage_id(&key_file_bytes);
        let key_path = format!("{KEYS_DIR}/{key_file_id}");
        backend.put(&key_path, Bytes::from(key_file_bytes)).await?;
        backend.put(CONFIG_PATH, Bytes::from(sealed_config)).await?;
        let config =
            Config::decode(&key.open(ObjectKind::Config, &backend.get(CONFIG_PATH).await?)?)?;
        Repository::assemble(backend, key, (key_file_id, KeyAccess::Full), config)
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
        let keyrings = Arc::new(Repository::load_keyrings(&backend).await?);
        let (key, key_file, config) =
            Repository::unlock(&backend, password, sealed_config, keyrings).await?;
        Repository::assemble(backend, key, key_file, config)
    }

    /// Tries the key files one by one until one opens with `password` and its
    /// master key, with the data keys of `keyrings` added (re-encryption may
    /// have sealed the config under a rotated key), opens the config. A key
    /// file whose key does not open the config is an orphan of an
    /// interrupted `init` (it wraps a master key of a repository that was
    /// never completed) and is skipped.
    async fn unlock(
        backend: &Arc<dyn Backend>,
        password: &[u8],
        sealed_config: Bytes,
        keyrings: Arc<Vec<(Bytes, String)>>,
    ) -> Result<(MasterKey, (Id, KeyAccess), Config)> {
        let key_files = backend.list(&format!("{KEYS_DIR}/")).await?;
        let mut config_error = None;
        for meta in key_files {
            let bytes = backend.get(&meta.path).await?;
            let password = password.to_vec();
            let path = meta.path.clone();
            let sealed_config = sealed_config.clone();
            let keyrings = Arc::clone(&keyrings);
            let attempt = blocking(move || {
                let key_file_id = id_from_path(&path)?;
                let key_file = KeyFile::from_bytes(&bytes).map_err(|e| Error::corrupt(&path, e))?;
                let key = match key_file.open(&password) {
                    Ok(key) => key,
                    Err(e) => return Ok(Err(e)),
                };
                // A damaged keyring is the error to report, not a reason
                // to try the next key file.
                let (key, adopted) = match adopt_loaded_keyrings(key, &keyrings) {
                    Ok(adopted) => adopted,
                    Err(e) => return Ok(Ok(Err(e))),
                };
                let config = key
                    .open(ObjectKind::Config, &sealed_config)
                    .map_err(|e| match e {
                        // Its keyrings were replaced and the config is
                        // under a key it does not hold: an erasure
                        // destroyed this key file's keys.
                        arca_crypto::Error::Malformed { .. } if adopted.foreign > 0 => {
                            Error::KeyFileSuperseded { path: path.clone() }
                        }
                        e => Error::corrupt(CONFIG_PATH, e),
                    })
                    .and_then(|plaintext| {
                        Config::decode(&plaintext).map_err(|e| e.in_file(CONFIG_PATH))
                    });
                let opened_by = (key_file_id, key_file.access());
                Ok(Ok(config.map(|config| (key, opened_by, config))))
            })
            .await;
            match attempt {
                Ok(Ok(Ok(unlocked))) => return Ok(unlocked),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(path = %meta.path, "key file opens but its key does not open the config");
                    config_error = Some(e);
                }
                Ok(Err(arca_crypto::Error::WrongPassword)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(path = %meta.path, error = %e, "skipping key file that cannot be opened")
                }
                Err(e) => {
                    tracing::warn!(path = %meta.path, error = %e, "skipping damaged key file")
                }
            }
        }
        // The password matched a key but no key opened the config: the
        // config is damaged (or every matching key is an orphan).
        Err(config_error.unwrap_or(Error::WrongPassword))
    }

    /// Adds the data keys of every keyring in `keyring/` to `key` (the
    /// rotations made after its key file was written). A keyring that does
    /// not open is an error naming it: data sealed under its keys would not
    /// open either.
    async fn adopt_keyrings(backend: &Arc<dyn Backend>, key: MasterKey) -> Result<MasterKey> {
        let keyrings = Repository::load_keyrings(backend).await?;
        if keyrings.is_empty() {
            return Ok(key);
        }
        blocking(move || Ok(adopt_loaded_keyrings(key, &keyrings)?.0)).await
    }

    /// The stored bytes and path of every keyring in `keyring/`.
    async fn load_keyrings(backend: &Arc<dyn Backend>) -> Result<Vec<(Bytes, String)>> {
        let metas = backend.list(&format!("{KEYRING_DIR}/")).await?;
        let mut keyrings = Vec::with_capacity(metas.len());
        for meta in metas {
            if id_from_path(&meta.path).is_ok() {
                keyrings.push((backend.get(&meta.path).await?, meta.path));
            }
        }
        Ok(keyrings)
    }

    /// This repository with the keyrings in `keyring/` read again: after a
    /// `key rotate`, its data key becomes the current one here too (a
    /// repository otherwise seals with the key current when it was opened).
    pub async fn reload_keyrings(&self) -> Result<Repository> {
        let key = self.key().duplicate()?;
        let key = Repository::adopt_keyrings(self.backend(), key).await?;
        let mut reloaded = Repository::assemble(
            Arc::clone(self.backend()),
            key,
            self.inner.key_file,
            self.config().clone(),
        )?;
        reloaded.cache = self.cache.clone();
        reloaded.grace_floor = self.grace_floor;
        Ok(reloaded)
    }

    fn assemble(
        backend: Arc<dyn Backend>,
        key: MasterKey,
        key_file: (Id, KeyAccess),
        config: Config,
    ) -> Result<Repository> {
        let chunker = Chunker::new(config.chunker, &key.chunker_key())
            .map_err(|e| Error::corrupt(CONFIG_PATH, e))?;
        let compression = Compression::new(config.compression_level)?;
        Ok(Repository {
            inner: Arc::new(Inner {
                backend,
                key,
                key_file,
                config,
                chunker,
                compression,
                fence: FenceState::default(),
                blob_key: std::sync::Mutex::new(None),
            }),
            cache: None,
            grace_floor: None,
        })
    }

    /// This repository reading index files, snapshots and tree packs through
    /// `cache` (conventionally in `DiskCache::default_dir(&config().id.to_hex())`),
    /// and writing the ones it saves there too. Every cached file is verified
    /// when read, and a damaged or missing cache entry is read from the
    /// backend again, so the cache directory may be deleted at any time.
    #[must_use]
    pub fn with_cache(mut self, cache: DiskCache) -> Repository {
        self.cache = Some(MetadataCache::new(cache));
        self
    }

    /// This repository reading tree blobs through `scratch`, a cache of
    /// whole tree packs only, and everything else from the backend (`check`:
    /// one fetch per tree pack, and nothing read from earlier local copies
    /// when `scratch` starts empty).
    #[must_use]
    pub(crate) fn with_tree_pack_cache(&self, scratch: DiskCache) -> Repository {
        Repository {
            inner: Arc::clone(&self.inner),
            cache: Some(MetadataCache::tree_packs(scratch)),
            grace_floor: self.grace_floor,
        }
    }

    /// This repository reading everything from the backend (as `check`
    /// does, so that it verifies the stored files rather than local copies).
    #[must_use]
    pub fn without_cache(&self) -> Repository {
        Repository {
            inner: Arc::clone(&self.inner),
            cache: None,
            grace_floor: self.grace_floor,
        }
    }

    /// This handle's knowledge of an erasure of its key (`fence.rs`).
    pub(crate) fn fence_state(&self) -> &FenceState {
        &self.inner.fence
    }

    /// The local cache directory, if the repository uses one.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(|cache| cache.disk().dir())
    }

    /// The repository's parameters.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The master key.
    pub fn key(&self) -> &MasterKey {
        &self.inner.key
    }

    /// The blob key to seal the blobs of new packs under: the same for every
    /// pack this handle writes (writers seal blobs before they know which
    /// pack takes them), drawn afresh once it has sealed
    /// [`arca_crypto::BLOB_KEY_SEAL_LIMIT`] blobs.
    pub fn blob_key(&self) -> Result<Arc<BlobKey>> {
        let mut slot = self.inner.blob_key.lock().expect("blob key lock poisoned");
        match &*slot {
            Some(key)
                if !key.is_worn() && key.id().key_id == self.inner.key.current_data_key_id() =>
            {
                Ok(Arc::clone(key))
            }
            _ => {
                let key = Arc::new(self.inner.key.fresh_blob_key()?);
                *slot = Some(Arc::clone(&key));
                Ok(key)
            }
        }
    }

    /// ID of the key file (`keys/<id>`) the repository was opened with.
    pub fn key_file_id(&self) -> Id {
        self.inner.key_file.0
    }

    /// What the key file the repository was opened with allows.
    pub fn access(&self) -> KeyAccess {
        self.inner.key_file.1
    }

    /// [`Error::AppendOnlyKey`] when the repository was opened with an
    /// append-only key: every operation that deletes, rewrites or releases
    /// calls this first.
    pub fn require_full_access(&self, operation: &'static str) -> Result<()> {
        match self.access() {
            KeyAccess::Full => Ok(()),
            KeyAccess::AppendOnly => Err(Error::AppendOnlyKey { operation }),
        }
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

    /// Uploads a pack (one request: backends check that a write landed
    /// whole, see `arca_store::WriteCheck`) and returns its index entry. A
    /// pack of tree blobs is also written to the cache.
    ///
    /// The pack's bytes go to the backend without a copy kept here (but for
    /// the cache), so a backend that drops them once written frees a
    /// recycled pack buffer before the upload is over.
    pub async fn save_pack(&self, mut pack: FinishedPack) -> Result<IndexPack> {
        let path = Repository::pack_path(&pack.id);
        let is_tree_pack = pack
            .entries
            .first()
            .is_some_and(|entry| entry.blob_type == BlobType::Tree);
        let backend = &self.inner.backend;
        // Taken out of `pack`, so a backend that drops the bytes once written
        // frees a recycled buffer before the upload ends.
        match std::mem::replace(&mut pack.contents, PackContents::Memory(Bytes::new())) {
            PackContents::Memory(bytes) => {
                let cached = self
                    .cache
                    .as_ref()
                    .filter(|_| is_tree_pack)
                    .map(|cache| (cache, bytes.clone()));
                backend.put(&path, bytes).await?;
                if let Some((cache, bytes)) = cached {
                    cache.disk().put(&path, &bytes).await;
                }
            }
            // Only data packs are spooled, and data packs are not cached.
            PackContents::Spooled(file) => backend.put_file(&path, file).await?,
        }
        Ok(IndexPack {
            id: pack.id,
            envelope: pack.envelope,
            blobs: std::mem::take(&mut pack.entries),
        })
    }

    /// Reads a stored pack's header (ranged reads only).
    pub async fn load_pack_header(&self, id: &Id) -> Result<PackHeader> {
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
        self.load_named_file(format!("{INDEX_DIR}/{id}"), |repo, path, stored| {
            let plaintext = repo.open_file(ObjectKind::Index, path, stored)?;
            IndexFile::decode(&plaintext).map_err(|e| e.in_file(path))
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
        let loaded = self
            .load_named_file(format!("{SNAPSHOTS_DIR}/{id}"), |repo, path, stored| {
                let plaintext = repo.open_file(ObjectKind::Snapshot, path, stored)?;
                Snapshot::decode(&plaintext).map_err(|e| e.in_file(path))
            })
            .await;
        match loaded {
            Err(Error::Store(arca_store::Error::NotFound { .. })) => {
                Err(Error::SnapshotNotFound { spec: id.to_hex() })
            }
            other => other,
        }
    }

    /// Reads a file named by its storage ID and decodes it with `decode` on
    /// the blocking pool, through the cache if there is one: a cached copy
    /// that does not decode is dropped and the backend's read instead, and a
    /// copy read from the backend is cached once it decodes.
    pub(crate) async fn load_named_file<T: Send + 'static>(
        &self,
        path: String,
        decode: fn(&Repository, &str, &[u8]) -> Result<T>,
    ) -> Result<T> {
        let decode_on_pool = |stored: Bytes| {
            let (repo, path) = (self.clone(), path.clone());
            blocking(move || decode(&repo, &path, &stored))
        };
        let cache = self
            .cache
            .as_ref()
            .filter(|cache| cache.keeps_named_files());
        if let Some(cache) = cache
            && let Some(cached) = cache.disk().get(&path).await
        {
            match decode_on_pool(cached).await {
                Ok(decoded) => return Ok(decoded),
                Err(error) => {
                    tracing::warn!(path, %error, "dropping a cached copy that does not decode");
                    cache.disk().remove(&path).await;
                }
            }
        }
        let stored = self.inner.backend.get(&path).await?;
        let decoded = decode_on_pool(stored.clone()).await?;
        if let Some(cache) = cache {
            cache.disk().put(&path, &stored).await;
        }
        Ok(decoded)
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
    /// all on the blocking pool. Tree blobs are read through the cache, if
    /// any; when a cached blob fails, the cached pack is dropped and the blob
    /// read from the backend, whose answer stands.
    async fn read_blob_then<T, F>(
        &self,
        index: &Index,
        blob_type: BlobType,
        id: &Id,
        then: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Vec<u8>) -> Result<T> + Clone + Send + 'static,
    {
        let location = index
            .get(blob_type, id)
            .ok_or(Error::BlobNotFound { blob_type, id: *id })?;
        let path = Repository::pack_path(&location.pack);
        let start = u64::from(location.offset);
        let end = start + u64::from(location.length);
        let decode_on_pool = |stored: Bytes, then: F| {
            let (repo, path, id) = (self.clone(), path.clone(), *id);
            blocking(move || {
                let plaintext = decode_blob(
                    repo.key(),
                    location.envelope,
                    blob_type,
                    &stored,
                    location.uncompressed_length,
                    &id,
                )
                .map_err(|e| e.in_file(&path))?;
                then(plaintext)
            })
        };
        if let Some(cache) = &self.cache
            && blob_type == BlobType::Tree
            && let Some(cached) = cache
                .tree_pack_range(&self.inner.backend, &path, &location.pack, start..end)
                .await
        {
            match decode_on_pool(cached, then.clone()).await {
                Ok(decoded) => return Ok(decoded),
                Err(error) => {
                    tracing::warn!(path, %error, "dropping a cached pack whose blob does not decode");
                    cache.disk().remove(&path).await;
                }
            }
        }
        let stored = match self.inner.backend.get_range(&path, start..end).await {
            Ok(stored) => stored,
            Err(error) => return Err(self.explain_failed_read(&path, end, error).await),
        };
        check_len(&path, &stored, u64::from(location.length))?;
        decode_on_pool(stored, then).await
    }

    /// Turns a failed ranged read of a pack that the index points into into
    /// [`Error::Corrupt`] when the pack is missing or shorter than the index
    /// says (backends report those differently); other failures pass through.
    async fn explain_failed_read(&self, path: &str, end: u64, error: arca_store::Error) -> Error {
        if error.is_transient() {
            return error.into();
        }
        match self.inner.backend.head(path).await {
            Err(arca_store::Error::NotFound { .. }) => {
                Error::corrupt(path, "the pack is missing but the index lists blobs in it")
            }
            Ok(meta) if meta.size < end => Error::corrupt(
                path,
                format!(
                    "the pack has {} bytes but the index locates a blob up to byte {end} (truncated?)",
                    meta.size
                ),
            ),
            _ => error.into(),
        }
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
    pub(crate) async fn save_file(
        &self,
        kind: ObjectKind,
        dir: &str,
        plaintext: Vec<u8>,
    ) -> Result<Id> {
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
        let (path, sealed) = (format!("{dir}/{id}"), Bytes::from(sealed));
        self.fenced_put(kind, &path, sealed.clone()).await?;
        if let Some(cache) = &self.cache {
            cache.disk().put(&path, &sealed).await;
        }
        Ok(id)
    }

    /// Verifies the name, opens and decompresses a file saved by `save_file`.
    /// Blocking: call from the blocking pool.
    pub(crate) fn open_file(&self, kind: ObjectKind, path: &str, stored: &[u8]) -> Result<Vec<u8>> {
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

/// `key` with the data keys of `keyrings` (bytes and path) added, the
/// newest generation's current key current, and what was adopted.
/// Blocking: call from the blocking pool.
fn adopt_loaded_keyrings(
    mut key: MasterKey,
    keyrings: &[(Bytes, String)],
) -> Result<(MasterKey, Adopted)> {
    if keyrings.is_empty() {
        return Ok((key, Adopted::default()));
    }
    for (bytes, path) in keyrings {
        key.adopt_keyrings(&[bytes])
            .map_err(|e| Error::corrupt(path, e))?;
    }
    // Once more, all together: the newest generation's key is current.
    let all: Vec<&[u8]> = keyrings.iter().map(|(bytes, _)| &bytes[..]).collect();
    let adopted = key.adopt_keyrings(&all)?;
    Ok((key, adopted))
}

/// The ID a file is named by (the last path component).
pub(crate) fn id_from_path(path: &str) -> Result<Id> {
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
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking repository task panicked")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::encode_blob;
    use crate::pack::PackWriter;
    use crate::testing::MemoryBackend;
    use crate::tree::{Node, NodeType};

    const PASSWORD: &[u8] = b"correct horse";

    fn cheap_options() -> InitOptions {
        InitOptions {
            kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
            ..InitOptions::default()
        }
    }

    async fn new_repo() -> (Arc<MemoryBackend>, Repository) {
        let backend = MemoryBackend::new();
        let repo = Repository::init(backend.clone(), PASSWORD, cheap_options())
            .await
            .unwrap();
        (backend, repo)
    }

    fn snapshot_at(seconds: i64, tree: Id) -> Snapshot {
        Snapshot {
            time: jiff::Timestamp::from_second(seconds).unwrap(),
            time_offset_seconds: 0,
            parent: None,
            original: None,
            tree,
            paths: vec!["/data".into()],
            hostname: "host".into(),
            username: "user".into(),
            uid: 0,
            gid: 0,
            tags: vec![],
            excludes: vec![],
            program_version: "test".into(),
            summary: None,
        }
    }

    fn corrupt_what<T: fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::Corrupt { what, .. }) => what,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Stores `plaintexts` as data blobs in one pack, plus its index file.
    async fn store_blobs(
        repo: &Repository,
        blob_type: BlobType,
        plaintexts: &[&[u8]],
    ) -> (IndexPack, Id) {
        let key = repo.blob_key().unwrap();
        let mut writer = PackWriter::new(blob_type, Arc::clone(&key));
        for plaintext in plaintexts {
            let id = repo.key().content_id(plaintext);
            writer
                .add(&encode_blob(&key, blob_type, id, plaintext, repo.compression()).unwrap())
                .unwrap();
        }
        let pack = repo
            .save_pack(writer.finish(repo.key()).unwrap())
            .await
            .unwrap();
        let index_file = IndexFile {
            packs: vec![pack.clone()],
        };
        let index_id = repo.save_index(&index_file).await.unwrap();
        (pack, index_id)
    }

    #[test]
    fn repositories_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Repository>();
    }

    #[tokio::test]
    async fn init_then_open() {
        let (backend, repo) = new_repo().await;
        assert_eq!(backend.paths("keys/").len(), 1);
        assert_eq!(repo.compression(), Compression::default());
        let reopened = Repository::open(backend.clone(), PASSWORD).await.unwrap();
        assert_eq!(reopened.config(), repo.config());
        assert_eq!(reopened.key().content_id(b"x"), repo.key().content_id(b"x"));
        assert!(format!("{reopened:?}").contains("memory:"));
    }

    #[tokio::test]
    async fn open_failures_are_specific() {
        let (backend, _repo) = new_repo().await;
        assert!(matches!(
            Repository::open(backend.clone(), b"wrong").await,
            Err(Error::WrongPassword)
        ));
        let empty = MemoryBackend::new();
        assert!(matches!(
            Repository::open(empty, PASSWORD).await,
            Err(Error::NotARepository { location }) if location == "memory:"
        ));
        assert!(matches!(
            Repository::init(backend.clone(), PASSWORD, cheap_options()).await,
            Err(Error::AlreadyInitialized { .. })
        ));
        backend.tamper("config", |bytes| bytes[40] ^= 1);
        assert_eq!(
            corrupt_what(Repository::open(backend, PASSWORD).await),
            "config"
        );
    }

    #[tokio::test]
    async fn orphan_keys_of_an_interrupted_init_are_skipped() {
        let backend = MemoryBackend::new();
        // An init that wrote its key file and crashed before the config.
        let orphan = Repository::init(backend.clone(), PASSWORD, cheap_options())
            .await
            .unwrap();
        backend.delete(CONFIG_PATH).await.unwrap();
        // Make sure the orphan is the key file tried first.
        let orphan_path = backend.paths("keys/").pop().unwrap();
        let orphan_bytes = backend.get(&orphan_path).await.unwrap();
        backend.delete(&orphan_path).await.unwrap();
        backend.put("keys/0", orphan_bytes).await.unwrap();
        let repo = Repository::init(backend.clone(), PASSWORD, cheap_options())
            .await
            .unwrap();
        assert_eq!(backend.paths("keys/").len(), 2);
        let reopened = Repository::open(backend.clone(), PASSWORD).await.unwrap();
        assert_eq!(reopened.config().id, repo.config().id);
        assert_ne!(reopened.config().id, orphan.config().id);
        assert_eq!(reopened.key().content_id(b"x"), repo.key().content_id(b"x"));
    }

    #[tokio::test]
    async fn damaged_key_files_are_skipped() {
        let (backend, _repo) = new_repo().await;
        backend
            .put("keys/0000", Bytes::from_static(b"not json"))
            .await
            .unwrap();
        assert!(Repository::open(backend.clone(), PASSWORD).await.is_ok());
        assert!(matches!(
            Repository::open(backend, b"wrong").await,
            Err(Error::WrongPassword)
        ));
    }

    #[tokio::test]
    async fn invalid_options_are_refused_before_writing() {
        let backend = MemoryBackend::new();
        let opts = InitOptions {
            pack_size: 1,
            ..cheap_options()
        };
        assert!(matches!(
            Repository::init(backend.clone(), PASSWORD, opts).await,
            Err(Error::InvalidOptions(_))
        ));
        assert!(backend.paths("").is_empty());
    }

    #[tokio::test]
    async fn blobs_round_trip_through_packs_and_index() {
        let (_backend, repo) = new_repo().await;
        let text = b"hello world ".repeat(1000);
        let (pack, _) = store_blobs(&repo, BlobType::Data, &[b"first", &text]).await;
        let tree = Tree::new(vec![Node {
            name: "file".into(),
            node_type: NodeType::File,
            mode: 0o600,
            uid: 1,
            gid: 2,
            user: None,
            group: None,
            mtime_ns: 1,
            atime_ns: 2,
            ctime_ns: 3,
            size: 5,
            inode: 4,
            device: 5,
            links: 1,
            rdev: 0,
            link_target: None,
            xattrs: vec![],
            content: vec![repo.key().content_id(b"first")],
            subtree: None,
        }]);
        let tree_bytes = tree.encode();
        store_blobs(&repo, BlobType::Tree, &[&tree_bytes]).await;

        let index = repo.load_index().await.unwrap();
        assert_eq!(index.len(), 3);
        assert_eq!(index.pack_ids().count(), 2);
        let first = repo
            .read_blob(&index, BlobType::Data, &repo.key().content_id(b"first"))
            .await
            .unwrap();
        assert_eq!(&first[..], b"first");
        let second = repo
            .read_blob(&index, BlobType::Data, &repo.key().content_id(&text))
            .await
            .unwrap();
        assert_eq!(&second[..], &text[..]);
        assert_eq!(
            repo.load_tree(&index, &repo.key().content_id(&tree_bytes))
                .await
                .unwrap(),
            tree
        );
        let header = repo.load_pack_header(&pack.id).await.unwrap();
        assert_eq!(
            (header.envelope, header.entries),
            (pack.envelope, pack.blobs)
        );

        let missing = repo.key().content_id(b"missing");
        assert!(matches!(
            repo.read_blob(&index, BlobType::Data, &missing).await,
            Err(Error::BlobNotFound { blob_type: BlobType::Data, id }) if id == missing
        ));
        // A data blob is not a tree blob, even with the same ID.
        assert!(matches!(
            repo.load_tree(&index, &repo.key().content_id(b"first"))
                .await,
            Err(Error::BlobNotFound {
                blob_type: BlobType::Tree,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn pack_headers_beyond_the_read_ahead_are_fetched() {
        let (_backend, repo) = new_repo().await;
        let plaintexts: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = plaintexts.iter().map(Vec::as_slice).collect();
        let (pack, _) = store_blobs(&repo, BlobType::Data, &refs).await;
        assert!((2000 * crate::pack::HEADER_ENTRY_LEN) as u64 > HEADER_READ_AHEAD);
        let header = repo.load_pack_header(&pack.id).await.unwrap();
        assert_eq!(
            (header.envelope, header.entries),
            (pack.envelope, pack.blobs)
        );
    }

    #[tokio::test]
    async fn damaged_packs_and_index_files_are_named() {
        let (backend, repo) = new_repo().await;
        let (pack, index_id) = store_blobs(&repo, BlobType::Data, &[b"alpha", b"beta"]).await;
        let pack_path = Repository::pack_path(&pack.id);
        let index = repo.load_index().await.unwrap();

        backend.tamper(&pack_path, |bytes| bytes[20] ^= 1);
        let what = corrupt_what(
            repo.read_blob(&index, BlobType::Data, &repo.key().content_id(b"alpha"))
                .await,
        );
        assert!(
            what.contains(&pack_path) && what.contains("data blob"),
            "{what}"
        );
        // The other blob in the same pack is intact.
        assert!(
            repo.read_blob(&index, BlobType::Data, &repo.key().content_id(b"beta"))
                .await
                .is_ok()
        );

        backend.tamper(&pack_path, |bytes| bytes.truncate(bytes.len() - 1));
        let what = corrupt_what(repo.load_pack_header(&pack.id).await);
        assert!(what.contains(&pack_path), "{what}");
        backend.tamper(&pack_path, |bytes| bytes.truncate(10));
        let what = corrupt_what(
            repo.read_blob(&index, BlobType::Data, &repo.key().content_id(b"beta"))
                .await,
        );
        assert!(what.contains(&pack_path), "{what}");

        backend.delete(&pack_path).await.unwrap();
        let what = corrupt_what(
            repo.read_blob(&index, BlobType::Data, &repo.key().content_id(b"beta"))
                .await,
        );
        assert_eq!(what, pack_path);

        let index_path = format!("index/{index_id}");
        backend.tamper(&index_path, |bytes| bytes[50] ^= 1);
        let what = corrupt_what(repo.load_index().await);
        assert!(what.contains(&index_path), "{what}");
    }

    #[tokio::test]
    async fn files_must_hash_to_their_names() {
        let (backend, repo) = new_repo().await;
        let id = repo
            .save_snapshot(&snapshot_at(1, Id([1; 32])))
            .await
            .unwrap();
        let bytes = backend.get(&format!("snapshots/{id}")).await.unwrap();
        let renamed = format!("snapshots/{}", Id([7; 32]));
        backend.put(&renamed, bytes).await.unwrap();
        let what = corrupt_what(repo.load_snapshot(&Id([7; 32])).await);
        assert_eq!(what, renamed);
    }

    #[tokio::test]
    async fn packs_cut_short_by_the_store_are_detected_on_read() {
        // save_pack trusts the backend to check its writes (one request per
        // pack); a store that truncates silently is caught by the reader.
        let (backend, repo) = new_repo().await;
        backend.break_writes();
        let (pack, _) = store_blobs(&repo, BlobType::Data, &[b"alpha"]).await;
        let what = corrupt_what(repo.load_pack_header(&pack.id).await);
        assert!(what.contains(&Repository::pack_path(&pack.id)), "{what}");
    }

    #[tokio::test]
    async fn snapshots_are_listed_and_found() {
        let (backend, repo) = new_repo().await;
        let mut ids = Vec::new();
        for i in 0..17 {
            // Save out of time order; listing sorts by time.
            let seconds = 1_700_000_000 + (i * 7919) % 17;
            ids.push((
                seconds,
                repo.save_snapshot(&snapshot_at(seconds, Id([i as u8; 32])))
                    .await
                    .unwrap(),
            ));
        }
        let listed = repo.list_snapshots().await.unwrap();
        assert_eq!(listed.len(), 17);
        assert!(listed.windows(2).all(|w| w[0].1.time < w[1].1.time));

        let (newest_seconds, newest_id) = *ids.iter().max().unwrap();
        let (latest_id, latest) = repo.find_snapshot("latest").await.unwrap();
        assert_eq!(
            (latest_id, latest.time.as_second()),
            (newest_id, newest_seconds)
        );

        let (_, some_id) = ids[3];
        assert_eq!(
            repo.find_snapshot(&some_id.to_hex()).await.unwrap().0,
            some_id
        );
        assert_eq!(
            repo.find_snapshot(&some_id.to_hex()[..12].to_uppercase())
                .await
                .unwrap()
                .0,
            some_id
        );

        // 17 IDs over 16 hex digits: some first digit is shared.
        let shared = (0..16)
            .map(|d| format!("{d:x}"))
            .find(|d| {
                ids.iter()
                    .filter(|(_, id)| id.to_hex().starts_with(d.as_str()))
                    .count()
                    > 1
            })
            .unwrap();
        assert!(
            matches!(repo.find_snapshot(&shared).await, Err(Error::AmbiguousSnapshot { spec }) if spec == shared)
        );
        for spec in ["", "xyz", &"f".repeat(65)] {
            assert!(
                matches!(
                    repo.find_snapshot(spec).await,
                    Err(Error::SnapshotNotFound { .. })
                ),
                "{spec:?}"
            );
        }
        let unused = (0..=255u8)
            .map(|b| hex::encode([b]))
            .find(|p| {
                !ids.iter()
                    .any(|(_, id)| id.to_hex().starts_with(p.as_str()))
            })
            .unwrap();
        assert!(matches!(
            repo.find_snapshot(&unused).await,
            Err(Error::SnapshotNotFound { .. })
        ));

        let damaged = format!("snapshots/{some_id}");
        backend.tamper(&damaged, |bytes| bytes[45] ^= 1);
        let what = corrupt_what(repo.list_snapshots().await);
        assert_eq!(what, damaged);
        let (good, bad) = repo.list_snapshots_lenient().await.unwrap();
        assert_eq!(good.len(), 16);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, some_id);
    }

    #[tokio::test]
    async fn empty_repository_has_no_latest() {
        let (_backend, repo) = new_repo().await;
        assert!(repo.list_snapshots().await.unwrap().is_empty());
        assert!(repo.load_index().await.unwrap().is_empty());
        assert!(matches!(
            repo.find_snapshot("latest").await,
            Err(Error::SnapshotNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn read_file_returns_plaintext() {
        let (_backend, repo) = new_repo().await;
        let config = repo
            .read_file(ObjectKind::Config, CONFIG_PATH)
            .await
            .unwrap();
        assert_eq!(Config::decode(&config).unwrap(), *repo.config());
        let snapshot = snapshot_at(5, Id([5; 32]));
        let id = repo.save_snapshot(&snapshot).await.unwrap();
        let path = format!("snapshots/{id}");
        let plaintext = repo.read_file(ObjectKind::Snapshot, &path).await.unwrap();
        assert_eq!(Snapshot::decode(&plaintext).unwrap(), snapshot);
        // The wrong kind does not open.
        assert_eq!(
            corrupt_what(repo.read_file(ObjectKind::Index, &path).await),
            path
        );
        assert_eq!(
            repo.read_raw(&path).await.unwrap().len() as u64,
            repo.backend().head(&path).await.unwrap().size
        );
    }

    /// A handle seals every pack it writes under one blob key (one salt),
    /// named in the pack's index entry; another handle draws its own.
    #[tokio::test]
    async fn a_handle_writes_its_packs_under_one_blob_key() {
        let (backend, repo) = new_repo().await;
        let key = repo.blob_key().unwrap();
        assert!(Arc::ptr_eq(&key, &repo.clone().blob_key().unwrap()));
        assert_eq!(key.id().key_id, repo.key().current_data_key_id());
        let (first, _) = store_blobs(&repo, BlobType::Data, &[b"one"]).await;
        let (second, _) = store_blobs(&repo, BlobType::Tree, &[b"two"]).await;
        let envelope = crate::blob::BlobEnvelope::Pack(key.id());
        assert_eq!((first.envelope, second.envelope), (envelope, envelope));
        let other = Repository::open(backend, PASSWORD).await.unwrap();
        assert_ne!(other.blob_key().unwrap().id(), key.id());
    }

    #[tokio::test]
    async fn large_indexes_are_split() {
        let (backend, repo) = new_repo().await;
        let blob = |i: u32| crate::pack::PackEntry {
            blob_type: BlobType::Data,
            id: Id::storage_id(&i.to_le_bytes()),
            offset: i * 10,
            length: 10,
            uncompressed_length: None,
        };
        let packs = (0..4u32)
            .map(|p| IndexPack {
                id: Id([p as u8; 32]),
                envelope: crate::blob::BlobEnvelope::PerBlob,
                blobs: (0..(TARGET_BLOBS_PER_FILE as u32 / 2))
                    .map(|i| blob(p * 1_000_000 + i))
                    .collect(),
            })
            .collect();
        let ids = repo.save_indexes(IndexFile { packs }).await.unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(backend.paths("index/").len(), 2);
        let index = repo.load_index().await.unwrap();
        assert_eq!(index.len(), 2 * TARGET_BLOBS_PER_FILE);
        assert!(index.contains(BlobType::Data, &Id::storage_id(&3_000_005u32.to_le_bytes())));
    }
}
