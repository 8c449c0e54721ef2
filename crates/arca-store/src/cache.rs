//! A local cache of repository metadata files (index, snapshots, tree packs).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::{Backend, LocalBackend};

/// A directory of cached copies of repository files, keyed by their repository path.
///
/// Not a [`Backend`] decorator: the repository layer decides what is worth caching.
/// Entries whose name is a 64-digit hex BLAKE3 hash (the names of files in `data/`,
/// `index/` and `snapshots/`) are checked against their content on every read, and
/// a damaged entry is deleted and reported as a miss. The directory may be deleted
/// at any time; failures to read or write it are never errors, only misses.
#[derive(Debug, Clone)]
pub struct DiskCache {
    files: LocalBackend,
    dir: PathBuf,
    /// Whether this process already made sure `CACHEDIR.TAG` exists.
    tagged: Arc<AtomicBool>,
}

/// Name and required first line of a cache directory tag (<https://bford.info/cachedir/>):
/// backup tools, Arca's `--exclude-caches` included, skip tagged directories.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG";
const CACHEDIR_TAG_CONTENT: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
    # This file is a cache directory tag created by Arca.\n\
    # For information about cache directory tags see https://bford.info/cachedir/\n";

impl DiskCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        DiskCache {
            files: LocalBackend::new(&dir),
            dir,
            tagged: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `<user cache dir>/arca/<repo_id>` (e.g. `~/.cache/arca/<id>` on Linux), or
    /// `None` when the platform has no cache directory (no `$HOME`).
    pub fn default_dir(repo_id: &str) -> Option<PathBuf> {
        dirs::cache_dir().map(|cache| cache.join("arca").join(repo_id))
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached copy of `path`, if present and intact.
    pub async fn get(&self, path: &str) -> Option<Bytes> {
        let data = self.files.get(path).await.ok()?;
        let Some(expected) = content_hash_name(path) else {
            return Some(data);
        };
        let expected = expected.to_owned();
        let checked = data.clone();
        // Hashing a large index file is CPU work: keep it off the async workers.
        let intact = tokio::task::spawn_blocking(move || {
            blake3::hash(&checked).to_hex().as_str() == expected
        })
        .await
        .unwrap_or(false);
        if intact {
            Some(data)
        } else {
            tracing::warn!(cache = %self.dir.display(), path, "dropping a damaged cache entry");
            self.remove(path).await;
            None
        }
    }

    /// Bytes `range` of the cached copy of `path`, if present and long enough.
    /// Not checked against the name (that would mean hashing the whole file
    /// for every range): callers verify what they read, such as a blob's
    /// authentication tag, and [`DiskCache::remove`] an entry that fails.
    pub async fn get_range(&self, path: &str, range: Range<u64>) -> Option<Bytes> {
        let expected = range.end.checked_sub(range.start)?;
        let data = self.files.get_range(path, range).await.ok()?;
        (data.len() as u64 == expected).then_some(data)
    }

    /// Stores a copy of `path` atomically. Failures are logged, not returned: the
    /// cache is an optimisation.
    pub async fn put(&self, path: &str, data: &Bytes) {
        if let Err(err) = self.files.put(path, data.clone()).await {
            tracing::warn!(cache = %self.dir.display(), path, error = %err, "cannot write to the cache");
            return;
        }
        if !self.tagged.swap(true, Ordering::Relaxed)
            && self.files.head(CACHEDIR_TAG).await.is_err()
        {
            let tag = Bytes::from_static(CACHEDIR_TAG_CONTENT.as_bytes());
            if let Err(err) = self.files.put(CACHEDIR_TAG, tag).await {
                tracing::warn!(cache = %self.dir.display(), error = %err, "cannot tag the cache directory");
            }
        }
    }

    /// Drops the cached copy of `path`, if any.
    pub async fn remove(&self, path: &str) {
        if let Err(err) = self.files.delete(path).await {
            tracing::warn!(cache = %self.dir.display(), path, error = %err, "cannot remove a cache entry");
        }
    }
}

/// The file name if it is a lowercase hex BLAKE3 hash (of the content it names).
fn content_hash_name(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let is_hash = name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    is_hash.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(data: &[u8]) -> String {
        format!("index/{}", blake3::hash(data).to_hex())
    }

    #[tokio::test]
    async fn round_trip_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("c"));
        let data = Bytes::from_static(b"index contents");
        let path = named(&data);
        assert_eq!(cache.get(&path).await, None);
        cache.put(&path, &data).await;
        assert_eq!(cache.get(&path).await, Some(data));
        cache.remove(&path).await;
        assert_eq!(cache.get(&path).await, None);
    }

    #[tokio::test]
    async fn ranges_are_read_unchecked_and_within_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        let data = Bytes::from_static(b"0123456789");
        let path = named(&data);
        assert_eq!(cache.get_range(&path, 2..5).await, None);
        cache.put(&path, &data).await;
        assert_eq!(cache.get_range(&path, 2..5).await.unwrap(), "234");
        assert_eq!(cache.get_range(&path, 8..11).await, None);
        std::fs::write(dir.path().join(&path), b"0123456789").unwrap();
        assert_eq!(cache.get_range(&path, 0..1).await.unwrap(), "0");
    }

    #[tokio::test]
    async fn the_cache_directory_is_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("c"));
        cache.put("config", &Bytes::from_static(b"{}")).await;
        let tag = std::fs::read_to_string(dir.path().join("c").join(CACHEDIR_TAG)).unwrap();
        assert!(
            tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
            "{tag}"
        );
    }

    #[tokio::test]
    async fn damaged_entries_are_deleted_and_missed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        let data = Bytes::from_static(b"snapshot");
        let path = named(&data);
        cache.put(&path, &data).await;
        std::fs::write(dir.path().join(&path), b"snapshoT").unwrap();
        assert_eq!(cache.get(&path).await, None);
        assert!(!dir.path().join(&path).exists());
    }

    #[tokio::test]
    async fn names_that_are_not_hashes_are_not_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path());
        let data = Bytes::from_static(b"{}");
        cache.put("config", &data).await;
        assert_eq!(cache.get("config").await, Some(data));
    }

    #[tokio::test]
    async fn deleting_the_directory_is_just_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("c"));
        let data = Bytes::from_static(b"tree pack");
        let path = named(&data);
        cache.put(&path, &data).await;
        std::fs::remove_dir_all(dir.path().join("c")).unwrap();
        assert_eq!(cache.get(&path).await, None);
        cache.put(&path, &data).await;
        assert_eq!(cache.get(&path).await, Some(data));
    }

    #[test]
    fn default_dir_is_under_arca() {
        if let Some(dir) = DiskCache::default_dir("abc") {
            assert!(dir.ends_with("arca/abc"), "{}", dir.display());
        }
    }

    #[test]
    fn hash_names() {
        let hash = "0123456789abcdef".repeat(4);
        assert_eq!(
            content_hash_name(&format!("data/01/{hash}")),
            Some(hash.as_str())
        );
        assert_eq!(content_hash_name("config"), None);
        assert_eq!(
            content_hash_name(&format!("data/{}", hash.to_uppercase())),
            None
        );
    }
}
