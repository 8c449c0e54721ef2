//! The repository's use of a local [`DiskCache`]: which files go through it
//! and how whole tree packs are fetched into it.
//!
//! Index and snapshot files are cached whole and checked against their name
//! on every read (by [`DiskCache::get`]). Packs of tree blobs are cached
//! whole, but read by range: every tree blob is authenticated when decoded,
//! so the repository drops the cached pack when a blob read from it does not
//! decode and reads the blob from the backend instead. Data packs are never
//! cached (they are most of the repository and are read once per restore).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arca_store::{Backend, DiskCache};
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::Id;

/// Whole tree packs downloaded at the same time at most, so concurrent tree
/// loads hold at most this many packs in memory while they fill the cache.
const CONCURRENT_PACK_FETCHES: usize = 4;

/// A [`DiskCache`] as the repository uses it. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct MetadataCache {
    disk: DiskCache,
    /// Whether index and snapshot files go through it too, or only tree
    /// packs (`check`'s scratch cache, which reads each file once).
    named_files: bool,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// One lock per tree pack path, so concurrent misses of one pack fetch it
    /// once; the flag says it was fetched already in this process (if the
    /// cache still misses, writing to the cache failed or its directory was
    /// deleted, and the pack is read by range instead of fetched again).
    packs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
    fetches: Semaphore,
}

impl MetadataCache {
    pub(crate) fn new(disk: DiskCache) -> Self {
        MetadataCache::with_named_files(disk, true)
    }

    /// A cache of tree packs only: index and snapshot files are read from
    /// the backend and not kept.
    pub(crate) fn tree_packs(disk: DiskCache) -> Self {
        MetadataCache::with_named_files(disk, false)
    }

    fn with_named_files(disk: DiskCache, named_files: bool) -> Self {
        MetadataCache {
            disk,
            named_files,
            shared: Arc::new(Shared {
                packs: Mutex::new(HashMap::new()),
                fetches: Semaphore::new(CONCURRENT_PACK_FETCHES),
            }),
        }
    }

    /// Whether index and snapshot files are cached too.
    pub(crate) fn keeps_named_files(&self) -> bool {
        self.named_files
    }

    /// The cache directory.
    pub(crate) fn disk(&self) -> &DiskCache {
        &self.disk
    }

    /// `range` of the tree pack at `path`, from the cache, filling the cache
    /// with the whole pack on a miss. `None` when the pack cannot be fetched
    /// whole or does not hash to its name: the caller then reads the range
    /// from the backend, which reports what is wrong.
    pub(crate) async fn tree_pack_range(
        &self,
        backend: &Arc<dyn Backend>,
        path: &str,
        pack: &Id,
        range: Range<u64>,
    ) -> Option<Bytes> {
        if let Some(hit) = self.disk.get_range(path, range.clone()).await {
            return Some(hit);
        }
        let slot = {
            let mut packs = self
                .shared
                .packs
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            Arc::clone(packs.entry(path.to_owned()).or_default())
        };
        let mut fetched = slot.lock().await;
        // Another task may have filled the cache while this one waited.
        if let Some(hit) = self.disk.get_range(path, range.clone()).await {
            return Some(hit);
        }
        if *fetched {
            return None;
        }
        *fetched = true;
        let whole = {
            let _permit = self.shared.fetches.acquire().await.ok()?;
            backend.get(path).await.ok()?
        };
        let checked = whole.clone();
        let expected = *pack;
        let intact = tokio::task::spawn_blocking(move || Id::storage_id(&checked) == expected)
            .await
            .unwrap_or(false);
        if !intact {
            tracing::warn!(path, "not caching a pack that does not hash to its name");
            return None;
        }
        self.disk.put(path, &whole).await;
        let (start, end) = (
            usize::try_from(range.start).ok()?,
            usize::try_from(range.end).ok()?,
        );
        (end <= whole.len() && start <= end).then(|| whole.slice(start..end))
    }
}
