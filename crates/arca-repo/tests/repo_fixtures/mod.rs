//! Shared by the integration tests: small real repositories in temp dirs,
//! deterministic test content, walking snapshots, restoring, checking and
//! comparing trees.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arca_repo::backup::{BackupOptions, backup};
use arca_repo::check::{CheckOptions, CheckReport, ReadData, check};
use arca_repo::progress::NoProgress;
use arca_repo::restore::{RestoreOptions, RestoreSummary, restore};
use arca_repo::snapshot::Snapshot;
use arca_repo::{Id, Repository};
// What `common` names through its parent module (see there).
use arca_repo::{index::Index, repository::InitOptions, tree::Node, tree::Tree};
use arca_store::{Backend, LocalBackend};
use bytes::Bytes;

mod common;
pub(crate) mod tree_diff;

// Re-exported for the tests.
pub(crate) use common::{
    InterceptWrites, WriteHook, names, node_named, noise, small_repo_options, tree_at,
};
pub(crate) use tree_diff::assert_same_files;

/// The password of every repository `new_repo` creates.
pub(crate) const PASSWORD: &[u8] = b"test password";

/// A fresh repository in `dir` with [`small_repo_options`].
pub(crate) async fn new_repo(dir: &Path) -> Repository {
    Repository::init(
        Arc::new(LocalBackend::new(dir)),
        PASSWORD,
        small_repo_options(),
    )
    .await
    .unwrap()
}

/// Backs up `source` and returns the snapshot's ID and the snapshot.
pub(crate) async fn backup_dir(repo: &Repository, source: &Path) -> (Id, Snapshot) {
    let opts = BackupOptions {
        paths: vec![source.to_owned()],
        ..BackupOptions::default()
    };
    let outcome = backup(repo, &opts, Arc::new(NoProgress)).await.unwrap();
    assert!(outcome.unreadable.is_empty(), "{:?}", outcome.unreadable);
    (outcome.snapshot_id, outcome.snapshot)
}

/// Restores `snapshot` into `target` with the default options.
pub(crate) async fn restore_into(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
) -> arca_repo::Result<RestoreSummary> {
    restore(
        repo,
        snapshot,
        &RestoreOptions::new(target),
        Arc::new(NoProgress),
    )
    .await
}

/// Where `source` (an absolute path that was backed up) lands under `target`.
pub(crate) fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Runs `check`, reading `read_data` of the packs.
pub(crate) async fn check_reading(repo: &Repository, read_data: ReadData) -> CheckReport {
    check(repo, &CheckOptions { read_data }, Arc::new(NoProgress))
        .await
        .unwrap()
}

/// Lets `budget` writes and deletes through, then refuses all of them.
#[derive(Debug)]
pub(crate) struct PowerCut {
    budget: AtomicI64,
}

impl PowerCut {
    /// `inner` behind a power cut after `budget` writes and deletes.
    pub(crate) fn new(inner: Arc<dyn Backend>, budget: i64) -> InterceptWrites<Self> {
        InterceptWrites {
            inner,
            hook: PowerCut {
                budget: AtomicI64::new(budget),
            },
        }
    }

    fn spend(&self, path: &str) -> arca_store::Result<()> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err(arca_store::Error::Permanent {
                location: path.to_owned(),
                message: "power cut".into(),
            })
        }
    }
}

#[async_trait::async_trait]
impl WriteHook for PowerCut {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        self.spend(path)?;
        inner.put(path, data).await
    }
    async fn delete(&self, inner: &dyn Backend, path: &str) -> arca_store::Result<()> {
        self.spend(path)?;
        inner.delete(path).await
    }
}
