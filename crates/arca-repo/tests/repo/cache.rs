//! The local metadata cache on a real local repository, with every backend
//! request counted: index files, snapshots and tree packs are read from the
//! cache once it holds them, damaged cache entries are noticed and fetched
//! again, deleting the cache is harmless, and `check` ignores the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_repo::Repository;
use arca_repo::check::ReadData;
use arca_store::{Backend, DiskCache, LocalBackend, RequestCounters, RequestCounts, StoreOptions};

use crate::repo_fixtures::{
    PASSWORD, assert_same_files, backup_dir, check_reading, new_repo, noise, restore_into, restored,
};

/// A backed-up source tree in a repository reached through a request counter.
struct Fixture {
    tmp: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    requests: Arc<RequestCounters>,
}

impl Fixture {
    /// A repository holding one backup (made without a cache) of a source
    /// tree of 30 directories, small files and one file of several chunks.
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("source");
        for dir in 0..30 {
            let dir_path = source.join(format!("d{dir}/sub"));
            fs::create_dir_all(&dir_path).unwrap();
            fs::write(dir_path.join("small"), format!("file {dir}\n")).unwrap();
        }
        fs::write(source.join("big"), noise(700 * 1024, 1)).unwrap();
        let repo_dir = tmp.path().join("repo");
        // Created directly, then reopened through the counting decorator.
        let repo = new_repo(&repo_dir).await;
        backup_dir(&repo, &source).await;
        let opened = arca_store::decorate(
            Arc::new(LocalBackend::new(&repo_dir)),
            &StoreOptions::default(),
        );
        Fixture {
            tmp,
            backend: opened.backend,
            requests: opened.requests,
        }
    }

    fn source(&self) -> PathBuf {
        self.tmp.path().join("source")
    }

    fn cache_dir(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// Opens the repository as a new process would.
    async fn open(&self) -> Repository {
        Repository::open(Arc::clone(&self.backend), PASSWORD)
            .await
            .unwrap()
    }

    async fn open_cached(&self) -> Repository {
        self.open()
            .await
            .with_cache(DiskCache::new(self.cache_dir()))
    }

    /// [`Fixture::restore_latest`] through a newly opened, cached repository.
    async fn restore_cached(&self, name: &str) -> RequestCounts {
        self.restore_latest(&self.open_cached().await, name).await
    }

    /// Restores the latest snapshot into a fresh directory, checks it matches
    /// the source, and returns the requests that took (the snapshot lookup
    /// included).
    async fn restore_latest(&self, repo: &Repository, name: &str) -> RequestCounts {
        let before = self.requests.snapshot();
        let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
        let target = self.tmp.path().join(name);
        restore_into(repo, &snapshot, &target).await.unwrap();
        let used = since(before, self.requests.snapshot());
        assert_same_files(&self.source(), &restored(&target, &self.source()));
        used
    }
}

/// Requests sent between two counter snapshots.
fn since(before: RequestCounts, after: RequestCounts) -> RequestCounts {
    RequestCounts {
        get: after.get - before.get,
        get_range: after.get_range - before.get_range,
        put: after.put - before.put,
        list: after.list - before.list,
        delete: after.delete - before.delete,
        head: after.head - before.head,
        bytes_up: after.bytes_up - before.bytes_up,
        bytes_down: after.bytes_down - before.bytes_down,
    }
}

/// Every cached file (not the cache directory tag), by path.
fn cached_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "CACHEDIR.TAG" {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn cached_under(dir: &Path, kind: &str) -> usize {
    cached_files(dir)
        .iter()
        .filter(|path| path.strip_prefix(dir).unwrap().starts_with(kind))
        .count()
}

#[tokio::test]
async fn a_second_restore_reads_index_snapshots_and_trees_from_the_cache() {
    let fixture = Fixture::new().await;
    let uncached = fixture.restore_latest(&fixture.open().await, "plain").await;
    assert_eq!(uncached.get, 2, "index file and snapshot: {uncached:?}");
    assert!(uncached.get_range > 31, "trees and data: {uncached:?}");

    let first = fixture.restore_cached("first").await;
    let cache = fixture.cache_dir();
    assert_eq!(cached_under(&cache, "index"), 1);
    assert_eq!(cached_under(&cache, "snapshots"), 1);
    let tree_packs = cached_under(&cache, "data");
    assert!(tree_packs >= 1);
    // Trees come in whole packs now, not one range per tree.
    assert_eq!(first.get, 2 + tree_packs as u64, "{first:?}");
    assert!(first.get_range < uncached.get_range, "{first:?}");

    let second = fixture.restore_cached("second").await;
    assert_eq!(second.get, 0, "{second:?}");
    assert_eq!(
        second.get_range, first.get_range,
        "only data is read: {second:?}"
    );
    let listed = fixture.requests.snapshot();
    let snapshots = fixture.open_cached().await.list_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 1);
    let listing = since(listed, fixture.requests.snapshot());
    // Lists: keys/, keyring/ (rotated data keys) and snapshots/.
    assert_eq!(
        (listing.get, listing.list),
        (2, 3),
        "config and key only: {listing:?}"
    );
}

#[tokio::test]
async fn a_backup_with_a_cache_fills_it() {
    let fixture = Fixture::new().await;
    let repo = fixture.open_cached().await;
    fs::write(fixture.source().join("d0/new"), noise(1000, 2)).unwrap();
    backup_dir(&repo, &fixture.source()).await;
    let cache = fixture.cache_dir();
    // The backup read the first index and snapshot (its parent) and wrote
    // the second ones and a tree pack.
    assert_eq!(cached_under(&cache, "index"), 2);
    assert_eq!(cached_under(&cache, "snapshots"), 2);
    assert!(cached_under(&cache, "data") >= 1);
    let restored = fixture.restore_cached("after-backup").await;
    assert_eq!(restored.get, 0, "{restored:?}");
}

#[tokio::test]
async fn damaged_cache_entries_are_detected_and_fetched_again() {
    let fixture = Fixture::new().await;
    fixture.restore_cached("warm").await;
    let cache = fixture.cache_dir();
    let files = cached_files(&cache);
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let damaged: Vec<u8> = fs::read(file).unwrap().iter().map(|b| b ^ 0x55).collect();
        fs::write(file, damaged).unwrap();
    }
    let healing = fixture.restore_cached("healing").await;
    assert!(
        healing.get >= 2,
        "damaged entries are read again: {healing:?}"
    );
    let healed = fixture.restore_cached("healed").await;
    assert_eq!(
        healed.get, 0,
        "the cache holds good copies again: {healed:?}"
    );
    assert_eq!(cached_files(&cache), files);
}

#[tokio::test]
async fn a_truncated_cached_tree_pack_is_read_from_the_backend() {
    let fixture = Fixture::new().await;
    fixture.restore_cached("warm").await;
    let cache = fixture.cache_dir();
    for pack in cached_files(&cache.join("data")) {
        fs::write(&pack, b"short").unwrap();
    }
    let repo = fixture.open_cached().await;
    fixture.restore_latest(&repo, "from-backend").await;
    let again = fixture.restore_latest(&repo, "again").await;
    assert_eq!(again.get, 0, "refilled: {again:?}");
}

#[tokio::test]
async fn deleting_the_cache_directory_is_harmless() {
    let fixture = Fixture::new().await;
    let repo = fixture.open_cached().await;
    fixture.restore_latest(&repo, "warm").await;
    fs::remove_dir_all(fixture.cache_dir()).unwrap();
    // The same open repository (a long-running process) carries on.
    fixture.restore_latest(&repo, "after-delete").await;
    fs::remove_dir_all(fixture.cache_dir()).unwrap();
    fs::write(fixture.source().join("d1/new"), b"new file").unwrap();
    backup_dir(&repo, &fixture.source()).await;
    fixture.restore_latest(&repo, "after-backup").await;
    assert!(cached_under(&fixture.cache_dir(), "snapshots") >= 1);
}

#[tokio::test]
async fn check_reads_the_repository_not_the_cache() {
    let fixture = Fixture::new().await;
    let repo = fixture.open_cached().await;
    fixture.restore_latest(&repo, "warm").await;
    let index_dir = fixture.tmp.path().join("repo/index");
    let index_file = fs::read_dir(&index_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = fs::read(&index_file).unwrap();
    bytes[60] ^= 1;
    fs::write(&index_file, bytes).unwrap();
    // The cached copy is intact, but the stored file is what counts.
    let report = check_reading(&repo, ReadData::None).await;
    assert!(!report.is_ok(), "{report:?}");
    assert_eq!(report.index_files_checked, 0, "{report:?}");
}

/// `check` reads trees from a scratch cache of its own: each tree pack is
/// fetched whole once (31 directories of trees, no ranged read each), and
/// the scratch directory is gone afterwards, beside an untouched cache.
#[tokio::test]
async fn check_fetches_each_tree_pack_once_into_a_scratch_cache_it_removes() {
    let fixture = Fixture::new().await;
    let repo = fixture.open_cached().await;
    fixture.restore_latest(&repo, "warm").await;
    let cached_before = cached_files(&fixture.cache_dir());
    let before = fixture.requests.snapshot();
    let report = check_reading(&repo, ReadData::None).await;
    let used = since(before, fixture.requests.snapshot());
    assert!(report.is_ok(), "{report:?}");
    assert!(report.trees_checked > 60, "{report:?}");
    assert_eq!(used.get_range, 0, "{used:?}");
    // Config, key, index file, snapshot, tree pack (and a few more files),
    // never one request per tree.
    assert!(used.get < 10, "{used:?}");
    assert_eq!(cached_files(&fixture.cache_dir()), cached_before);
    let scratch_left: Vec<_> = fs::read_dir(fixture.tmp.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("arca-check-"))
        .collect();
    assert!(scratch_left.is_empty(), "{scratch_left:?}");
}
