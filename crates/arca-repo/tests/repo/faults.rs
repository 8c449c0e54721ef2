//! Backup, restore and check on a real local repository behind injected
//! storage faults ([`FaultBackend`] under the standard decorators, as
//! `arca_store::open` stacks them): transient failures and torn writes are
//! retried away; a permanent outage mid-backup fails the backup cleanly,
//! leaves a repository that checks clean, and the next backup reuses what was
//! indexed before the outage. On S3 (moto, when `ARCA_TEST_S3_ENDPOINT` is
//! set) a backup spooling its packs rides out the same faults.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arca_repo::Repository;
use arca_repo::backup::{BackupOptions, BackupOutcome, backup};
use arca_repo::check::ReadData;
use arca_repo::progress::NoProgress;
use arca_store::{
    Backend, FaultBackend, FaultConfig, LocalBackend, OutageSwitch, RetryPolicy, StoreOptions,
};
use bytes::Bytes;

use crate::repo_fixtures::{
    InterceptWrites, PASSWORD, WriteHook, assert_same_files, check_reading, new_repo, noise,
    restore_into, restored, small_repo_options,
};

/// Quick retries, so tests spend their time working rather than backing off.
fn fast_retries() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry = RetryPolicy::new(10, Duration::from_millis(1), Duration::from_millis(20));
    options
}

/// A repository in a temp dir, a source tree to back up, and a plain
/// (fault-free) handle on the repository for looking at the aftermath.
struct Setup {
    tmp: tempfile::TempDir,
    clean: Repository,
}

impl Setup {
    /// `files` incompressible files of `file_len` bytes in a few directories.
    async fn new(files: usize, file_len: usize) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..files {
            let dir = tmp.path().join(format!("source/dir{}", i % 4));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("file{i}")), noise(file_len, i as u64 + 1)).unwrap();
        }
        let clean = new_repo(&tmp.path().join("repo")).await;
        Setup { tmp, clean }
    }

    fn source(&self) -> PathBuf {
        self.tmp.path().join("source")
    }

    fn base(&self) -> Arc<dyn Backend> {
        Arc::new(LocalBackend::new(self.tmp.path().join("repo")))
    }

    /// The repository opened through `faulty` wrapped in the standard decorators.
    async fn open_through(&self, faulty: Arc<dyn Backend>) -> Repository {
        let opened = arca_store::decorate(faulty, &fast_retries());
        Repository::open(opened.backend, PASSWORD).await.unwrap()
    }

    async fn backup(&self, repo: &Repository) -> arca_repo::Result<BackupOutcome> {
        let opts = BackupOptions {
            paths: vec![self.source()],
            ..BackupOptions::default()
        };
        backup(repo, &opts, Arc::new(NoProgress)).await
    }

    /// Restores the latest snapshot through `repo` and compares it with the source.
    async fn restore_and_compare(&self, repo: &Repository, name: &str) {
        let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
        let target = self.tmp.path().join(name);
        restore_into(repo, &snapshot, &target).await.unwrap();
        assert_same_files(&self.source(), &restored(&target, &self.source()));
    }

    /// `check --read-data` through `repo`, which must pass.
    async fn assert_checks_clean(&self, repo: &Repository) {
        let report = check_reading(repo, ReadData::All).await;
        assert!(report.is_ok(), "{report:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_and_torn_writes_are_ridden_out() {
    let setup = Setup::new(12, 300 * 1024).await;
    let fault = Arc::new(FaultBackend::new(
        setup.base(),
        FaultConfig::seeded(7)
            .transient_failures(0.1)
            .torn_writes(0.05),
    ));
    let repo = setup.open_through(fault.clone()).await;
    let outcome = setup.backup(&repo).await.unwrap();
    assert!(outcome.unreadable.is_empty());
    setup.restore_and_compare(&repo, "restored").await;
    setup.assert_checks_clean(&repo).await;
    assert!(
        fault.injected_faults() >= 5,
        "faults injected: {}",
        fault.injected_faults()
    );
    setup.assert_checks_clean(&setup.clean).await;
}

/// A fresh bucket on the S3 server of `ARCA_TEST_S3_ENDPOINT` (moto accepts
/// an unsigned `PUT /<bucket>`): its URL, or `None` (said) without a server.
fn s3_bucket(test: &str) -> Option<String> {
    use std::io::{Read, Write};
    let Some(endpoint) = std::env::var("ARCA_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!("skipping: ARCA_TEST_S3_ENDPOINT is not set (cargo xtask test sets it)");
        }
        return None;
    };
    let bucket = format!("arca-{test}-{}", std::process::id());
    let authority = endpoint
        .strip_prefix("http://")
        .expect("a plain http test server");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    Some(format!("s3:{endpoint}/{bucket}/repo"))
}

/// A backup to a real S3 server writes its data packs into unnamed files in
/// the spool directory and uploads them from there in parts, through
/// transient failures and torn writes: it restores byte for byte, checks
/// clean, and leaves the spool directory empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_backup_spools_its_packs_through_faults() {
    let Some(url) = s3_bucket("spooled-faults") else {
        return;
    };
    let setup = Setup::new(2, 12 << 20).await;
    let spool = setup.tmp.path().join("spool");
    let mut options = StoreOptions::default();
    options.spool_dir = Some(spool.clone());
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("test".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("test-secret".to_owned()),
        "AWS_DEFAULT_REGION" => Some("us-east-1".to_owned()),
        _ => None,
    };
    let s3 = arca_store::open_with_env(&url, &options, &env).unwrap();
    let fault = Arc::new(FaultBackend::new(
        s3.backend,
        FaultConfig::seeded(11)
            .transient_failures(0.1)
            .torn_writes(0.1),
    ));
    let decorated = arca_store::decorate(fault.clone(), &fast_retries()).backend;
    let repo = Repository::init(decorated, PASSWORD, small_repo_options())
        .await
        .unwrap();
    let outcome = setup.backup(&repo).await.unwrap();
    assert!(outcome.unreadable.is_empty());
    assert!(spool.is_dir(), "the packs were spooled");
    assert_eq!(fs::read_dir(&spool).unwrap().count(), 0, "nothing left");
    setup.restore_and_compare(&repo, "restored").await;
    setup.assert_checks_clean(&repo).await;
}

/// Turns a permanent outage on, once, at the first write to `data/` after
/// `index_files` index files and `packs_first` packs were written through it.
#[derive(Debug)]
struct Tripwire {
    outage: OutageSwitch,
    index_files: u64,
    packs_first: u64,
    index_written: AtomicU64,
    packs_written: AtomicU64,
    tripped: AtomicBool,
}

#[async_trait::async_trait]
impl WriteHook for Tripwire {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        if path.starts_with("data/") {
            let packs = self.packs_written.fetch_add(1, Ordering::SeqCst);
            let indexed = self.index_written.load(Ordering::SeqCst);
            // Once: the store comes back when the test switches the outage off.
            if indexed >= self.index_files
                && packs >= self.packs_first
                && !self.tripped.swap(true, Ordering::SeqCst)
            {
                self.outage.set(true);
            }
        }
        inner.put(path, data).await?;
        if path.starts_with("index/") {
            self.index_written.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// An outage during a backup of `files` x 1 MiB (about one pack per file):
/// the backup fails, no snapshot exists, the repository checks clean, and
/// once the store is back the next backup succeeds. Returns the number of
/// packs indexed before the outage and the bytes the second backup added.
async fn outage_mid_backup(setup: &Setup, index_files: u64, packs_first: u64) -> (usize, u64) {
    let fault = Arc::new(FaultBackend::new(setup.base(), FaultConfig::seeded(3)));
    let outage = fault.outage_switch();
    let tripwire = Arc::new(InterceptWrites {
        inner: fault,
        hook: Tripwire {
            outage: outage.clone(),
            index_files,
            packs_first,
            index_written: AtomicU64::new(0),
            packs_written: AtomicU64::new(0),
            tripped: AtomicBool::new(false),
        },
    });
    let repo = setup.open_through(tripwire.clone()).await;
    let failed = setup.backup(&repo).await;
    assert!(tripwire.hook.tripped.load(Ordering::SeqCst));
    let error = failed.expect_err("the backup fails during the outage");
    assert!(
        error.to_string().contains("simulated outage"),
        "the error names the cause: {error}"
    );
    assert!(setup.clean.list_snapshots().await.unwrap().is_empty());
    assert_eq!(
        setup.clean.list_index_files().await.unwrap().len() as u64,
        index_files
    );
    setup.assert_checks_clean(&setup.clean).await;
    let indexed_packs = setup.clean.load_index().await.unwrap().pack_ids().count();

    outage.set(false);
    let outcome = setup.backup(&repo).await.unwrap();
    setup.restore_and_compare(&repo, "restored").await;
    setup.assert_checks_clean(&setup.clean).await;
    (indexed_packs, outcome.snapshot.summary.unwrap().data_added)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_before_any_index_file_costs_a_full_upload_and_nothing_else() {
    let files = 6;
    let setup = Setup::new(files, 1024 * 1024).await;
    let (indexed_packs, added) = outage_mid_backup(&setup, 0, 2).await;
    assert_eq!(indexed_packs, 0);
    assert!(added >= (files as u64) << 20, "re-uploaded all: {added}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_after_an_outage_reuses_indexed_packs() {
    // The backup writes an index file every few packs (at most 32): 40
    // files of 1 MiB make it write one before the outage.
    let files = 40;
    let setup = Setup::new(files, 1024 * 1024).await;
    let (indexed_packs, added) = outage_mid_backup(&setup, 1, 0).await;
    assert!(indexed_packs >= 1);
    // Packs close at 1 MiB or more of blobs; allow one for overhead.
    let reused_at_least = (indexed_packs as u64 - 1) << 20;
    assert!(
        added <= ((files as u64) << 20) - reused_at_least,
        "{indexed_packs} indexed packs are reused: {added} bytes added"
    );
}

/// Stores half of every write to `data/` and fails it for good, like a
/// connection cut mid-upload to a store without atomic writes, after which
/// the store is unreachable.
#[derive(Debug)]
struct CutShort {
    on: AtomicBool,
}

#[async_trait::async_trait]
impl WriteHook for CutShort {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        if self.on.load(Ordering::SeqCst) && path.starts_with("data/") {
            inner.put(path, data.slice(..data.len() / 2)).await?;
            return Err(arca_store::Error::Permanent {
                location: path.to_owned(),
                message: "connection cut mid-upload (simulated)".into(),
            });
        }
        inner.put(path, data).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_cut_short_leaves_the_repository_readable() {
    let setup = Setup::new(3, 1024 * 1024).await;
    let cut = Arc::new(InterceptWrites {
        inner: setup.base(),
        hook: CutShort {
            on: AtomicBool::new(true),
        },
    });
    let repo = setup.open_through(cut.clone()).await;
    assert!(setup.backup(&repo).await.is_err());
    let stored = setup.clean.backend().list("data/").await.unwrap();
    assert!(!stored.is_empty(), "half-written packs are left behind");
    assert!(setup.clean.list_snapshots().await.unwrap().is_empty());
    setup.assert_checks_clean(&setup.clean).await;

    cut.hook.on.store(false, Ordering::SeqCst);
    setup.backup(&repo).await.unwrap();
    setup.restore_and_compare(&repo, "restored").await;
    // The packs cut short were written again whole (same content, same name).
    setup.assert_checks_clean(&setup.clean).await;
}
