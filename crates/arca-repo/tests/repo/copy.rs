//! `copy` between real repositories with different passwords and master
//! keys: local directories always, and S3 (moto) and Azure (Azurite) when
//! `ARCA_TEST_S3_ENDPOINT` / `ARCA_TEST_AZURE_ENDPOINT` are set (`cargo
//! xtask test` sets both; GCS too with `ARCA_TEST_GCS_ENDPOINT`). Copies
//! must restore byte for byte, pass `check --read-data`, record their
//! origin, skip what was copied before and, interrupted, upload only what is
//! still missing when run again.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use arca_repo::audit::{self, AuditRecord, Entry, Outcome, RecordOrigin};
use arca_repo::blob::BlobType;
use arca_repo::check::ReadData;
use arca_repo::copy::{CopyReport, copy, select};
use arca_repo::select::SnapshotFilter;
use arca_repo::snapshot::Snapshot;
use arca_repo::{Error, Id, Repository};
use arca_store::{
    Backend, CountingBackend, LocalBackend, ObjectMeta, RequestCounters, SpoolDir, SpoolFile,
    StoreOptions,
};
use bytes::Bytes;

use crate::repo_fixtures;
use crate::repo_fixtures::{
    InterceptWrites, WriteHook, assert_same_files, backup_dir, check_reading, new_repo, node_named,
    noise, restore_into, restored, small_repo_options, tree_at,
};

const OTHER_PASSWORD: &[u8] = b"another password entirely";

/// A tree with large files (several chunks), a file twice (dedup), small
/// files, an empty file, a symlink and nested directories.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::write(root.join("big.bin"), noise(700 * 1024, 1)).unwrap();
    fs::write(root.join("a/copy-of-big.bin"), noise(700 * 1024, 1)).unwrap();
    fs::write(root.join("a/b/medium.bin"), noise(150 * 1024, 2)).unwrap();
    for i in 0..20u64 {
        fs::write(
            root.join(format!("a/b/c/small-{i}.txt")),
            format!("file {i}\n").repeat(i as usize + 1),
        )
        .unwrap();
    }
    fs::write(root.join("a/empty"), b"").unwrap();
    std::os::unix::fs::symlink("b/medium.bin", root.join("a/link")).unwrap();
}

async fn init_with(backend: Arc<dyn Backend>, password: &[u8]) -> Repository {
    Repository::init(backend, password, small_repo_options())
        .await
        .unwrap()
}

fn counting(dir: &Path) -> (Arc<dyn Backend>, Arc<RequestCounters>) {
    let requests = Arc::new(RequestCounters::default());
    let backend = CountingBackend::new(Arc::new(LocalBackend::new(dir)), Arc::clone(&requests));
    (Arc::new(backend), requests)
}

async fn copy_all(source: &Repository, destination: &Repository) -> CopyReport {
    let snapshots = select(source, &[], &SnapshotFilter::default())
        .await
        .unwrap();
    copy(source, destination, &snapshots).await.unwrap()
}

/// Restores the destination's copy of `source_id` and compares it with `tree`.
async fn assert_restores(destination: &Repository, source_id: &Id, tree: &Path, scratch: &Path) {
    let (_, copied) = destination
        .list_snapshots()
        .await
        .unwrap()
        .into_iter()
        .find(|(_, snapshot)| snapshot.original == Some(*source_id))
        .expect("a snapshot copied from the source");
    let target = scratch.join(format!("restore-{}", source_id.short()));
    restore_into(destination, &copied, &target).await.unwrap();
    assert_same_files(tree, &restored(&target, tree));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_restore_byte_for_byte_and_a_second_copy_uploads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    let (source_id, source_snapshot) = backup_dir(&source, &tree).await;
    let (backend, requests) = counting(&dir.path().join("destination"));
    let destination = init_with(backend, OTHER_PASSWORD).await;

    // The source read through counters: blobs of one pack come in few requests.
    let (source_backend, source_requests) = counting(&dir.path().join("source"));
    let source = Repository::open(source_backend, repo_fixtures::PASSWORD)
        .await
        .unwrap();
    let report = copy_all(&source, &destination).await;
    assert_eq!(report.copied.len(), 1, "{report:?}");
    assert_eq!(report.copied[0].source, source_id);
    let ranged_reads = source_requests.snapshot().get_range;
    assert!(
        ranged_reads < report.data_blobs,
        "{ranged_reads} ranged reads for {} data blobs",
        report.data_blobs
    );
    assert!(report.skipped.is_empty());
    assert!(report.data_blobs > 0 && report.tree_blobs > 0, "{report:?}");
    let copied = destination
        .load_snapshot(&report.copied[0].destination)
        .await
        .unwrap();
    assert_eq!(copied.original, Some(source_id));
    assert_eq!(copied.parent, None);
    assert_eq!(
        (copied.hostname.as_str(), &copied.paths, copied.time),
        (
            source_snapshot.hostname.as_str(),
            &source_snapshot.paths,
            source_snapshot.time
        )
    );
    // Keyed content IDs differ between the repositories.
    assert_ne!(copied.tree, source_snapshot.tree);
    assert_restores(&destination, &source_id, &tree, dir.path()).await;
    let report = check_reading(&destination, ReadData::All).await;
    assert!(report.is_ok(), "{report:?}");

    let before = requests.snapshot();
    let again = copy_all(&source, &destination).await;
    assert!(again.copied.is_empty(), "{again:?}");
    assert_eq!(again.skipped, vec![source_id]);
    let after = requests.snapshot();
    assert_eq!(after.put, before.put, "a second copy writes nothing");
    assert_eq!(after.bytes_up, before.bytes_up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_snapshot_copies_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    backup_dir(&source, &tree).await;
    let destination = init_with(
        Arc::new(LocalBackend::new(dir.path().join("destination"))),
        OTHER_PASSWORD,
    )
    .await;
    let first = copy_all(&source, &destination).await;

    fs::write(tree.join("a/b/new.bin"), noise(100 * 1024, 9)).unwrap();
    let (second_id, second_snapshot) = backup_dir(&source, &tree).await;
    let second = copy_all(&source, &destination).await;
    assert_eq!(second.copied.len(), 1, "{second:?}");
    assert_eq!(second.copied[0].source, second_id);
    assert_eq!(second.skipped.len(), 1);
    // The new file's chunks, nothing of the rest. How many chunks 100 KiB
    // makes depends on the repository's random chunker key, so count them.
    let index = source.load_index().await.unwrap();
    let dir_b = tree_at(&source, &index, &second_snapshot.tree, &tree.join("a/b")).await;
    let new_chunks: HashSet<Id> = node_named(&dir_b, "new.bin".as_ref())
        .content
        .iter()
        .copied()
        .collect();
    assert!(!new_chunks.is_empty());
    assert_eq!(
        second.data_blobs,
        new_chunks.len() as u64,
        "first {first:?}, second {second:?}"
    );
    assert_restores(&destination, &second_id, &tree, dir.path()).await;
    assert!(check_reading(&destination, ReadData::All).await.is_ok());
}

/// A local repository that records which objects were stored from spool
/// files ([`Backend::put_file`]) rather than from memory.
#[derive(Debug)]
struct RecordsSpooled {
    inner: LocalBackend,
    spooled: std::sync::Mutex<HashSet<String>>,
}

impl std::fmt::Display for RecordsSpooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for RecordsSpooled {
    async fn get(&self, path: &str) -> arca_store::Result<Bytes> {
        self.inner.get(path).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> arca_store::Result<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn put(&self, path: &str, data: Bytes) -> arca_store::Result<()> {
        self.inner.put(path, data).await
    }
    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> arca_store::Result<()> {
        self.spooled.lock().unwrap().insert(path.to_owned());
        self.inner.put_file(path, file).await
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
    fn spool_dir(&self) -> Option<SpoolDir> {
        self.inner.spool_dir()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_packs_are_spooled_where_the_destination_takes_spool_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    let (source_id, _) = backup_dir(&source, &tree).await;
    let recording = Arc::new(RecordsSpooled {
        inner: LocalBackend::new(dir.path().join("destination")),
        spooled: std::sync::Mutex::default(),
    });
    let destination = init_with(Arc::clone(&recording) as Arc<dyn Backend>, OTHER_PASSWORD).await;
    let report = copy_all(&source, &destination).await;
    assert_eq!(report.copied.len(), 1, "{report:?}");

    // Every data pack came from a spool file; tree packs (cached, small)
    // are built in memory.
    let index = destination.load_index().await.unwrap();
    let mut data_packs = HashSet::new();
    let mut tree_packs = HashSet::new();
    for (blob_type, _, location) in index.iter() {
        let packs = match blob_type {
            BlobType::Data => &mut data_packs,
            BlobType::Tree => &mut tree_packs,
        };
        packs.insert(Repository::pack_path(&location.pack));
    }
    let spooled = recording.spooled.lock().unwrap().clone();
    assert!(!data_packs.is_empty() && !tree_packs.is_empty());
    assert_eq!(spooled, data_packs);
    assert_restores(&destination, &source_id, &tree, dir.path()).await;
    assert!(check_reading(&destination, ReadData::All).await.is_ok());
}

/// Fails every write under `prefix` after `allowed` of them succeeded.
#[derive(Debug)]
struct FailAfter {
    prefix: &'static str,
    allowed: usize,
    seen: AtomicUsize,
}

#[async_trait::async_trait]
impl WriteHook for FailAfter {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        if path.starts_with(self.prefix) && self.seen.fetch_add(1, Ordering::SeqCst) >= self.allowed
        {
            return Err(arca_store::Error::Permanent {
                location: path.to_owned(),
                message: "injected failure".into(),
            });
        }
        inner.put(path, data).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_uploads_only_what_is_missing_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    // Twelve more megabytes, so the copy spans more 1 MiB packs than it
    // uploads between two index files.
    for i in 0..12u64 {
        fs::write(
            tree.join(format!("more-{i}.bin")),
            noise(1024 * 1024, 20 + i),
        )
        .unwrap();
    }
    let source = new_repo(&dir.path().join("source")).await;
    let (source_id, _) = backup_dir(&source, &tree).await;
    let destination_dir = dir.path().join("destination");
    let plain: Arc<dyn Backend> = Arc::new(LocalBackend::new(&destination_dir));
    init_with(Arc::clone(&plain), OTHER_PASSWORD).await;

    // The snapshot write fails: everything else was stored and indexed.
    let failing = Arc::new(InterceptWrites {
        inner: Arc::clone(&plain),
        hook: FailAfter {
            prefix: "snapshots/",
            allowed: 0,
            seen: AtomicUsize::new(0),
        },
    });
    let destination = Repository::open(failing, OTHER_PASSWORD).await.unwrap();
    let snapshots = select(&source, &[], &SnapshotFilter::default())
        .await
        .unwrap();
    let err = copy(&source, &destination, &snapshots).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    let destination = Repository::open(Arc::clone(&plain), OTHER_PASSWORD)
        .await
        .unwrap();
    assert!(destination.list_snapshots().await.unwrap().is_empty());
    let rerun = copy_all(&source, &destination).await;
    assert_eq!(rerun.copied.len(), 1);
    assert_eq!(
        (rerun.data_blobs, rerun.tree_blobs, rerun.packs),
        (0, 0, 0),
        "everything was already there: {rerun:?}"
    );
    assert_restores(&destination, &source_id, &tree, dir.path()).await;

    // Now fail after nine packs (the index is written after eight), in a
    // fresh destination: the run again stores exactly the blobs the index
    // does not list yet.
    let destination_dir = dir.path().join("destination-2");
    let plain: Arc<dyn Backend> = Arc::new(LocalBackend::new(&destination_dir));
    init_with(Arc::clone(&plain), OTHER_PASSWORD).await;
    let failing = Arc::new(InterceptWrites {
        inner: Arc::clone(&plain),
        hook: FailAfter {
            prefix: "data/",
            allowed: 9,
            seen: AtomicUsize::new(0),
        },
    });
    let destination = Repository::open(failing, OTHER_PASSWORD).await.unwrap();
    copy(&source, &destination, &snapshots).await.unwrap_err();
    let destination = Repository::open(Arc::clone(&plain), OTHER_PASSWORD)
        .await
        .unwrap();
    let indexed = destination.load_index().await.unwrap().len() as u64;
    assert!(indexed > 0, "the packs before the failure were indexed");
    let full = copy_all(
        &source,
        &init_with(
            Arc::new(LocalBackend::new(dir.path().join("reference"))),
            OTHER_PASSWORD,
        )
        .await,
    )
    .await;
    let rerun = copy_all(&source, &destination).await;
    assert_eq!(
        rerun.data_blobs + rerun.tree_blobs + indexed,
        full.data_blobs + full.tree_blobs,
        "indexed before {indexed}, rerun {rerun:?}, full copy {full:?}"
    );
    assert!(rerun.data_blobs < full.data_blobs, "{rerun:?} vs {full:?}");
    assert_restores(&destination, &source_id, &tree, dir.path()).await;
    assert!(check_reading(&destination, ReadData::All).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_chosen_by_id_and_filter_and_unknown_ids_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    let (first, _) = backup_dir(&source, &tree).await;
    let (second, _) = backup_dir(&source, &tree).await;
    let by_prefix = select(
        &source,
        &[first.to_hex()[..10].to_owned()],
        &SnapshotFilter::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        by_prefix.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![first]
    );
    let latest = select(&source, &["latest".to_owned()], &SnapshotFilter::default())
        .await
        .unwrap();
    assert_eq!(latest[0].0, second);
    let nobody = SnapshotFilter {
        hosts: vec!["no-such-host".into()],
        ..SnapshotFilter::default()
    };
    assert!(select(&source, &[], &nobody).await.unwrap().is_empty());
    let err = select(
        &source,
        &["deadbeef".to_owned()],
        &SnapshotFilter::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::SnapshotNotFound { .. }), "{err}");

    // A copy of a copy keeps the first original, and copying back is skipped.
    let middle = init_with(
        Arc::new(LocalBackend::new(dir.path().join("middle"))),
        OTHER_PASSWORD,
    )
    .await;
    copy(&source, &middle, &by_prefix).await.unwrap();
    let last = new_repo(&dir.path().join("last")).await;
    copy_all(&middle, &last).await;
    let (_, in_last): (Id, Snapshot) = last.list_snapshots().await.unwrap().remove(0);
    assert_eq!(in_last.original, Some(first));
    let back = copy_all(&middle, &source).await;
    assert!(back.copied.is_empty(), "{back:?}");
}

/// Appends a record of `operation` on `snapshots` to `repo`'s trail.
async fn record(repo: &Repository, operation: &str, snapshots: &[Id]) -> Id {
    let entry = Entry {
        time: jiff::Timestamp::now(),
        hostname: format!("{operation}-host"),
        username: "auditor".into(),
        operation: operation.into(),
        arguments: vec![operation.into()],
        snapshots: snapshots.to_vec(),
        outcome: Outcome::Success,
        error: None,
        bytes_written: 7,
        bytes_read: 11,
    };
    audit::append(repo, entry).await.unwrap()
}

/// Every record of `repo`'s trail, oldest first, after checking the trail is intact.
async fn intact_trail(repo: &Repository) -> Vec<(Id, AuditRecord)> {
    let verification = audit::verify(repo).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.heads.len(), 1, "{verification:?}");
    audit::list(repo, &audit::Filter::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_records_of_copied_snapshots_come_along_once() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    let (first, _) = backup_dir(&source, &tree).await;
    let backed_up = record(&source, "backup", &[first]).await;
    record(&source, "key add", &[]).await;
    let (second, _) = backup_dir(&source, &tree).await;
    record(&source, "backup", &[second]).await;
    let restored = record(&source, "restore", &[first]).await;
    let source_trail: HashMap<Id, AuditRecord> = intact_trail(&source).await.into_iter().collect();

    let destination_dir = dir.path().join("destination");
    let plain: Arc<dyn Backend> = Arc::new(LocalBackend::new(&destination_dir));
    let destination = init_with(Arc::clone(&plain), OTHER_PASSWORD).await;
    let own = record(&destination, "init", &[]).await;
    let only_first = select(&source, &[first.to_hex()], &SnapshotFilter::default())
        .await
        .unwrap();

    // A run cut off after the first record it carries, then run again.
    let failing = Arc::new(InterceptWrites {
        inner: Arc::clone(&plain),
        hook: FailAfter {
            prefix: "audit/",
            allowed: 1,
            seen: AtomicUsize::new(0),
        },
    });
    let cut = Repository::open(failing, OTHER_PASSWORD).await.unwrap();
    let err = copy(&source, &cut, &only_first).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(intact_trail(&destination).await.len(), 2);
    let rerun = copy(&source, &destination, &only_first).await.unwrap();
    assert_eq!(
        (rerun.copied.len(), rerun.skipped.len()),
        (0, 1),
        "{rerun:?}"
    );
    assert_eq!(rerun.audit_records, 1, "{rerun:?}");

    // The first snapshot's backup and restore, as the source wrote them
    // (listed by their times, before the destination's own record), linked
    // after the destination's own record; nothing about the second
    // snapshot, nor the record that names no snapshot.
    let trail = intact_trail(&destination).await;
    assert_eq!(trail.len(), 3, "{trail:?}");
    assert_eq!(trail[2].0, own);
    for ((_, copied), original) in trail[..2].iter().zip([backed_up, restored]) {
        let expected = &source_trail[&original];
        assert_eq!(
            copied.copied_from,
            Some(RecordOrigin {
                repository: source.config().id,
                record: original
            })
        );
        assert_eq!(
            AuditRecord {
                previous: expected.previous.clone(),
                copied_from: None,
                ..copied.clone()
            },
            *expected
        );
    }
    assert_eq!(trail[0].1.previous, [own]);
    assert_eq!(trail[1].1.previous, [trail[0].0]);

    // Again: nothing new. A later record about the copied snapshot comes
    // along, and so do the second snapshot's once it is copied.
    let again = copy(&source, &destination, &only_first).await.unwrap();
    assert_eq!(again.audit_records, 0, "{again:?}");
    assert_eq!(intact_trail(&destination).await.len(), 3);
    let held = record(&source, "hold add", &[first]).await;
    let everything = copy_all(&source, &destination).await;
    assert_eq!(everything.copied.len(), 1, "{everything:?}");
    assert_eq!(everything.audit_records, 2, "{everything:?}");
    let trail = intact_trail(&destination).await;
    let origins: Vec<Id> = trail
        .iter()
        .filter_map(|(_, record)| record.copied_from.map(|origin| origin.record))
        .collect();
    assert_eq!(origins.len(), 4, "{trail:?}");
    assert!(origins.contains(&held));
    assert!(
        !trail
            .iter()
            .any(|(_, record)| record.operation == "key add")
    );

    // A copy of the copy keeps the first origin, so the records the next
    // repository gets from the source directly are not added twice.
    let last = new_repo(&dir.path().join("last")).await;
    let relayed = copy_all(&destination, &last).await;
    assert_eq!(relayed.audit_records, 4, "{relayed:?}");
    let direct = copy_all(&source, &last).await;
    assert_eq!(direct.audit_records, 0, "{direct:?}");
    let last_trail = intact_trail(&last).await;
    assert_eq!(last_trail.len(), 4);
    assert!(last_trail.iter().all(|(_, record)| {
        record
            .copied_from
            .is_some_and(|origin| origin.repository == source.config().id)
    }));
}

// ---- Cloud backends ----------------------------------------------------

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

fn unique(test: &str) -> String {
    format!(
        "{test}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh bucket on the moto server (unsigned `PUT /<bucket>`, which moto accepts).
fn s3_bucket(endpoint: &str, test: &str) -> String {
    use std::io::{Read, Write};
    let bucket = unique(&format!("arca-{test}"));
    let authority = endpoint.strip_prefix("http://").expect("plain http");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    bucket
}

/// Azurite's documented development key (public, not a secret).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn cloud_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("test".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
        "AWS_DEFAULT_REGION" => Some("us-east-1".into()),
        "ARCA_AZURE_ENDPOINT" => env("ARCA_TEST_AZURE_ENDPOINT"),
        "AZURE_ACCOUNT_NAME" => Some("devstoreaccount1".into()),
        "AZURE_ACCOUNT_KEY" => Some(AZURITE_KEY.into()),
        "ARCA_GCS_ENDPOINT" => env("ARCA_TEST_GCS_ENDPOINT"),
        _ => None,
    }
}

async fn init_url(url: &str, password: &[u8]) -> Repository {
    let opened = arca_store::open_with_env(url, &StoreOptions::default(), &cloud_env).unwrap();
    init_with(opened.backend, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_to_s3_and_back_and_across_clouds() {
    let Some(s3) = env("ARCA_TEST_S3_ENDPOINT") else {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!("skipping: set ARCA_TEST_S3_ENDPOINT to copy through S3");
        }
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("data");
    make_tree(&tree);
    let source = new_repo(&dir.path().join("source")).await;
    let (source_id, _) = backup_dir(&source, &tree).await;

    let mut chain = vec![
        init_url(
            &format!("s3:{s3}/{}", s3_bucket(&s3, "copy")),
            OTHER_PASSWORD,
        )
        .await,
    ];
    if env("ARCA_TEST_AZURE_ENDPOINT").is_some() {
        let url = format!("azure:arca-test:/{}", unique("copy"));
        chain.push(init_url(&url, b"azure password").await);
    }
    if env("ARCA_TEST_GCS_ENDPOINT").is_some() {
        let url = format!("gs:arca-test:/{}", unique("copy"));
        chain.push(init_url(&url, b"gcs password").await);
    }
    chain.push(
        init_with(
            Arc::new(LocalBackend::new(dir.path().join("back"))),
            b"back home",
        )
        .await,
    );

    let mut from = source.clone();
    for to in &chain {
        let report = copy_all(&from, to).await;
        assert_eq!(report.copied.len(), 1, "{to:?}: {report:?}");
        assert_restores(to, &source_id, &tree, dir.path()).await;
        let checked = check_reading(to, ReadData::All).await;
        assert!(checked.is_ok(), "{to:?}: {checked:?}");
        // Run again: nothing to do.
        let again = copy_all(&from, to).await;
        assert!(
            again.copied.is_empty() && again.data_blobs == 0,
            "{again:?}"
        );
        from = to.clone();
    }
}
