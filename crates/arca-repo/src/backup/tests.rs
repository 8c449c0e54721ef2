//! Tests of the whole backup pipeline that need the crate's internals: an
//! in-memory backend to inspect and a backend that fails part-way.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arca_store::Backend;
use bytes::Bytes;

use super::{BackupOptions, IndexFlush, PreparedBackup, backup_with};
use crate::blob::BlobType;
use crate::progress::NoProgress;
use crate::testing::{
    InterceptWrites, MemoryBackend, WriteHook, noise, small_repo_options, tree_at,
};
use crate::tree::NodeType;
use crate::{Error, Repository};

/// A backup of `opts` that writes index files as `flush` says.
async fn backup_flushing(
    repo: &Repository,
    opts: &BackupOptions,
    flush: IndexFlush,
) -> crate::Result<super::BackupOutcome> {
    let prepared = PreparedBackup::new(opts.clone())?;
    backup_with(repo, prepared, Arc::new(NoProgress), flush).await
}

/// Lets `puts_left` writes through, then fails every write permanently (a
/// full disk, revoked credentials, a killed process).
#[derive(Debug)]
struct FailAfterPuts {
    puts_left: AtomicUsize,
}

#[async_trait::async_trait]
impl WriteHook for FailAfterPuts {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        let allowed = self
            .puts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if allowed.is_err() {
            return Err(arca_store::Error::Permanent {
                location: path.into(),
                message: "injected failure".into(),
            });
        }
        inner.put(path, data).await
    }
}

/// Pack uploads never finish (a hung connection); says when the first one
/// started, and when it is dropped.
#[derive(Debug)]
struct StallPacks {
    upload_started: Arc<tokio::sync::Notify>,
    dropped: std::sync::mpsc::Sender<()>,
}

impl Drop for StallPacks {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

#[async_trait::async_trait]
impl WriteHook for StallPacks {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        if path.starts_with("data/") {
            self.upload_started.notify_one();
            std::future::pending::<()>().await;
        }
        inner.put(path, data).await
    }
}

const PASSWORD: &[u8] = b"interrupted";

/// A repository in memory with small chunks and packs.
async fn memory_repo() -> Arc<MemoryBackend> {
    let memory = MemoryBackend::new();
    Repository::init(memory.clone(), PASSWORD, small_repo_options())
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

/// Options that back up `dir` and nothing else.
fn backup_of(dir: &Path) -> BackupOptions {
    BackupOptions {
        paths: vec![dir.to_owned()],
        ..BackupOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_backup_leaves_no_snapshot_and_the_next_one_reuses_indexed_packs() {
    let memory = memory_repo().await;
    let (src, total) = noise_dir(6);
    let opts = backup_of(src.path());
    let flush = IndexFlush {
        packs: 2,
        age: Duration::from_secs(3600),
    };

    // At most 4 uploads run at once, so an index file follows within the
    // first 5 writes; the 7th write fails.
    let failing = Arc::new(InterceptWrites {
        inner: memory.clone(),
        hook: FailAfterPuts {
            puts_left: AtomicUsize::new(6),
        },
    });
    let repo = Repository::open(failing, PASSWORD).await.unwrap();
    let err = backup_flushing(&repo, &opts, flush).await.unwrap_err();

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

    let outcome = backup_flushing(&repo, &opts, flush).await.unwrap();

    let summary = outcome.snapshot.summary.unwrap();
    assert!(
        summary.data_added + 2 * 1024 * 1024 - 2 * 256 * 1024 <= total,
        "at least two packs of data were reused: {summary:?}"
    );
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &outcome.snapshot.tree, src.path()).await;
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
    let opts = backup_of(src.path());
    let upload_started = Arc::new(tokio::sync::Notify::new());
    let (dropped, backend_dropped) = std::sync::mpsc::channel();
    let stalling = InterceptWrites {
        inner: memory.clone(),
        hook: StallPacks {
            upload_started: upload_started.clone(),
            dropped,
        },
    };
    let repo = Repository::open(Arc::new(stalling), PASSWORD)
        .await
        .unwrap();

    tokio::select! {
        result = backup_flushing(&repo, &opts, IndexFlush::default()) => {
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
    backup_flushing(&repo, &opts, IndexFlush::default())
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
    let opts = backup_of(src.path());
    let flush = IndexFlush {
        packs: 1,
        age: Duration::from_secs(3600),
    };
    // A hang guard, not synchronisation: the backup takes well under a second.
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        backup_flushing(&repo, &opts, flush),
    )
    .await
    .expect("backup deadlocked")
    .unwrap();
    assert!(outcome.snapshot.summary.unwrap().data_blobs > 0);
    assert!(memory.paths("index/").len() > 1, "an index file per pack");
}
