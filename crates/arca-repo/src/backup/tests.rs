//! Tests of the whole backup pipeline that need the crate's internals: an
//! in-memory backend to inspect and a backend that fails part-way.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arca_chunk::ChunkerParams;
use arca_crypto::KdfParams;
use arca_store::{Backend, ObjectMeta};
use bytes::Bytes;

use super::{BackupOptions, IndexFlush, backup_with};
use crate::blob::BlobType;
use crate::progress::NoProgress;
use crate::repository::InitOptions;
use crate::testing::MemoryBackend;
use crate::tree::NodeType;
use crate::{Error, Repository};

/// Forwards to a backend until `puts_left` writes have succeeded, then fails
/// every write permanently (a full disk, revoked credentials, a killed process).
#[derive(Debug)]
struct FailAfterPuts {
    inner: Arc<MemoryBackend>,
    puts_left: AtomicUsize,
}

impl std::fmt::Display for FailAfterPuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fail-after-puts:")
    }
}

#[async_trait::async_trait]
impl Backend for FailAfterPuts {
    async fn get(&self, path: &str) -> arca_store::Result<Bytes> {
        self.inner.get(path).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> arca_store::Result<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn put(&self, path: &str, data: Bytes) -> arca_store::Result<()> {
        let allowed = self
            .puts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if allowed.is_err() {
            return Err(arca_store::Error::Permanent {
                location: path.into(),
                message: "injected failure".into(),
            });
        }
        self.inner.put(path, data).await
    }
    async fn delete(&self, path: &str) -> arca_store::Result<()> {
        self.inner.delete(path).await
    }
    async fn list(&self, prefix: &str) -> arca_store::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn head(&self, path: &str) -> arca_store::Result<ObjectMeta> {
        self.inner.head(path).await
    }
}

/// Forwards to a backend, except that pack uploads never finish (a hung
/// connection); says when the first one started, and when it is dropped.
#[derive(Debug)]
struct StallPacks {
    inner: Arc<MemoryBackend>,
    upload_started: Arc<tokio::sync::Notify>,
    dropped: std::sync::mpsc::Sender<()>,
}

impl Drop for StallPacks {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

impl std::fmt::Display for StallPacks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stall-packs:")
    }
}

#[async_trait::async_trait]
impl Backend for StallPacks {
    async fn get(&self, path: &str) -> arca_store::Result<Bytes> {
        self.inner.get(path).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> arca_store::Result<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn put(&self, path: &str, data: Bytes) -> arca_store::Result<()> {
        if path.starts_with("data/") {
            self.upload_started.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.put(path, data).await
    }
    async fn delete(&self, path: &str) -> arca_store::Result<()> {
        self.inner.delete(path).await
    }
    async fn list(&self, prefix: &str) -> arca_store::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn head(&self, path: &str) -> arca_store::Result<ObjectMeta> {
        self.inner.head(path).await
    }
}

/// Deterministic bytes that neither compress nor deduplicate.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

const PASSWORD: &[u8] = b"interrupted";

/// A repository in memory with small chunks and packs.
async fn memory_repo() -> Arc<MemoryBackend> {
    let memory = MemoryBackend::new();
    let init = InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_size: 1024 * 1024,
        ..InitOptions::default()
    };
    Repository::init(memory.clone(), PASSWORD, init)
        .await
        .unwrap();
    memory
}

/// A directory of `files` files of 2 MiB of noise each; returns it and the total size.
fn noise_dir(files: u64) -> (tempfile::TempDir, u64) {
    let src = tempfile::tempdir().unwrap();
    let mut total = 0;
    for n in 0..files {
        let data = noise(2 * 1024 * 1024, n);
        total += data.len() as u64;
        std::fs::write(src.path().join(format!("file{n}")), data).unwrap();
    }
    (src, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backup_leaves_no_snapshot_and_the_next_one_reuses_indexed_packs() {
    let memory = memory_repo().await;
    let (src, total) = noise_dir(6);
    let opts = BackupOptions {
        paths: vec![src.path().to_owned()],
        ..BackupOptions::default()
    };
    let flush = IndexFlush {
        packs: 2,
        age: Duration::from_secs(3600),
    };

    // At most 4 uploads run at once, so an index file follows within the
    // first 5 writes; the 7th write fails.
    let failing = Arc::new(FailAfterPuts {
        inner: memory.clone(),
        puts_left: AtomicUsize::new(6),
    });
    let repo = Repository::open(failing, PASSWORD).await.unwrap();
    let err = backup_with(&repo, &opts, Arc::new(NoProgress), flush)
        .await
        .unwrap_err();

    assert!(
        matches!(err, Error::Store(arca_store::Error::Permanent { .. })),
        "{err}"
    );
    assert!(
        memory.paths("snapshots/").is_empty(),
        "no snapshot without a complete backup"
    );
    assert!(
        !memory.paths("index/").is_empty(),
        "index files were written along the way"
    );
    let repo = Repository::open(memory.clone(), PASSWORD).await.unwrap();
    let index = repo.load_index().await.unwrap();
    let stored_packs = memory.paths("data/");
    for pack in index.pack_ids() {
        assert!(
            stored_packs.contains(&Repository::pack_path(&pack)),
            "indexed pack {pack} is stored"
        );
    }
    let indexed_before = index.len();
    assert!(indexed_before >= 2);

    let outcome = backup_with(&repo, &opts, Arc::new(NoProgress), flush)
        .await
        .unwrap();

    let summary = outcome.snapshot.summary.unwrap();
    assert!(
        summary.data_added + 2 * 1024 * 1024 - 2 * 256 * 1024 <= total,
        "at least two packs of data were reused: {summary:?}"
    );
    let index = repo.load_index().await.unwrap();
    let root = repo
        .load_tree(&index, &outcome.snapshot.tree)
        .await
        .unwrap();
    let mut tree = root;
    for component in src.path().strip_prefix("/").unwrap().components() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name.as_os_str() == component.as_os_str())
            .unwrap();
        tree = repo
            .load_tree(&index, &node.subtree.unwrap())
            .await
            .unwrap();
    }
    assert_eq!(tree.nodes.len(), 6);
    for node in &tree.nodes {
        assert_eq!(node.node_type, NodeType::File);
        let mut content = Vec::new();
        for id in &node.content {
            content.extend_from_slice(&repo.read_blob(&index, BlobType::Data, id).await.unwrap());
        }
        assert_eq!(
            content,
            std::fs::read(src.path().join(node.name.as_os_str())).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backup_future_stops_every_thread_and_writes_no_snapshot() {
    let memory = memory_repo().await;
    let (src, _) = noise_dir(6);
    let opts = BackupOptions {
        paths: vec![src.path().to_owned()],
        ..BackupOptions::default()
    };
    let upload_started = Arc::new(tokio::sync::Notify::new());
    let (dropped, backend_dropped) = std::sync::mpsc::channel();
    let stalling = StallPacks {
        inner: memory.clone(),
        upload_started: upload_started.clone(),
        dropped,
    };
    let repo = Repository::open(Arc::new(stalling), PASSWORD)
        .await
        .unwrap();

    tokio::select! {
        result = backup_with(&repo, &opts, Arc::new(NoProgress), IndexFlush::default()) => {
            panic!("the backup finished although no pack upload can: {result:?}")
        }
        () = upload_started.notified() => {}
    }
    drop(repo);

    // Every pipeline thread holds the repository and with it the backend, so
    // the backend is dropped exactly when the last thread has stopped. (The
    // timeout only turns a hang into a failure.)
    let stopped =
        tokio::task::spawn_blocking(move || backend_dropped.recv_timeout(Duration::from_secs(120)));
    stopped
        .await
        .unwrap()
        .expect("the pipeline threads stopped after the backup was dropped");
    assert!(memory.paths("snapshots/").is_empty());

    let repo = Repository::open(memory.clone(), PASSWORD).await.unwrap();
    backup_with(&repo, &opts, Arc::new(NoProgress), IndexFlush::default())
        .await
        .unwrap();
    assert_eq!(memory.paths("snapshots/").len(), 1);
}

/// Regression: with few storage connections, an index write used to wait for
/// a connection held by an upload that nobody polled while the index was
/// being written, and the backup hung (seen at 2 GiB with 2 connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_index_writes_share_one_connection_without_deadlock() {
    let memory = memory_repo().await;
    let (src, _) = noise_dir(6);
    let slow = arca_store::FaultBackend::new(
        memory.clone(),
        arca_store::FaultConfig::seeded(7).delay(Duration::from_millis(5)),
    );
    let one_connection = Arc::new(arca_store::ConcurrencyLimitBackend::new(Arc::new(slow), 1));
    let repo = Repository::open(one_connection, PASSWORD).await.unwrap();
    let opts = BackupOptions {
        paths: vec![src.path().to_owned()],
        ..BackupOptions::default()
    };
    let flush = IndexFlush {
        packs: 1,
        age: Duration::from_secs(3600),
    };
    // A hang guard, not synchronisation: the backup takes well under a second.
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        backup_with(&repo, &opts, Arc::new(NoProgress), flush),
    )
    .await
    .expect("backup deadlocked")
    .unwrap();
    assert!(outcome.snapshot.summary.unwrap().data_blobs > 0);
    assert!(memory.paths("index/").len() > 1, "an index file per pack");
}
