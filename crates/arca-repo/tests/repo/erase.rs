//! Cryptographic erasure (`erase::erase`, what `arca prune --erase` runs) on
//! the real local backend: a copy of the data storage taken before the
//! erasure, combined with all key material that exists after it (kept in a
//! separate key location), decrypts nothing sealed under the destroyed key,
//! while the snapshots that were not erased still restore; a run cut off
//! at any write (a store that stops accepting writes and deletes, as a
//! killed process stops sending them) leaves a repository that opens with
//! the password in use, and the next run finishes; afterwards no object is
//! under the old key and a copy of the old key file no longer opens the
//! repository. Bad input: nothing to erase, an append-only key, other key
//! files, and a run before the grace period has passed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arca_crypto::{AUDIT_KEY_ID, KeyAccess, KeyFile, MasterKey, ObjectKind};
use arca_repo::audit::{self, AuditRecord, Entry, Outcome};
use arca_repo::backup::{BackupOptions, backup};
use arca_repo::blob::{BlobEnvelope, BlobType, open_stored};
use arca_repo::erase::{EraseOptions, EraseReport, erase};
use arca_repo::keys::{self, NewKey};
use arca_repo::lease::unlock;
use arca_repo::progress::NoProgress;
use arca_repo::prune::PruneOptions;
use arca_repo::{Error, Id, Repository};
use arca_store::{Backend, KeyLocationBackend, LocalBackend};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::repo_fixtures::{
    InterceptWrites, PASSWORD, PowerCut, WriteHook, assert_same_files, backup_dir, noise,
    restore_into, restored, small_repo_options,
};

/// The grace floor of these repositories: a mark becomes due after it,
/// which the tests wait out (the protocol's own clock), as prune's do.
const GRACE: Duration = Duration::from_millis(300);

fn options(remove_other_keys: bool) -> EraseOptions<'static> {
    EraseOptions {
        prune: PruneOptions {
            grace: GRACE,
            ..PruneOptions::default()
        },
        new_key: NewKey {
            password: PASSWORD,
            hostname: "eraser".into(),
            username: "root".into(),
            access: KeyAccess::Full,
            kdf: small_repo_options().kdf,
        },
        remove_other_keys,
    }
}

async fn open(backend: Arc<dyn Backend>) -> Repository {
    Repository::open(backend, PASSWORD)
        .await
        .unwrap()
        .with_grace_floor(GRACE)
}

fn write_source(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..4u64 {
        std::fs::write(dir.join(format!("f{i}")), noise(30_000, seed + i)).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An audit record as builds before the audit key wrote them: sealed under
/// the current data key (zstd-compressed JSON, named by its storage ID).
async fn legacy_record(repo: &Repository, previous: &[Id]) -> Id {
    let record = AuditRecord {
        time: jiff::Timestamp::now(),
        hostname: "h".into(),
        username: "u".into(),
        operation: "backup".into(),
        arguments: vec!["backup".into()],
        snapshots: vec![],
        outcome: Outcome::Success,
        error: None,
        bytes_written: 1,
        bytes_read: 2,
        previous: previous.to_vec(),
        resealed_from: None,
        copied_from: None,
    };
    let json = zstd::bulk::compress(&serde_json::to_vec(&record).unwrap(), 3).unwrap();
    let sealed = repo.key().seal_audit_record_under_data_key(&json).unwrap();
    let id = Id::storage_id(&sealed);
    repo.backend()
        .put(&format!("audit/{id}"), Bytes::from(sealed))
        .await
        .unwrap();
    id
}

async fn record(repo: &Repository, operation: &str) {
    let entry = Entry {
        time: jiff::Timestamp::now(),
        hostname: "h".into(),
        username: "u".into(),
        operation: operation.into(),
        arguments: vec![operation.into()],
        snapshots: vec![],
        outcome: Outcome::Success,
        error: None,
        bytes_written: 0,
        bytes_read: 0,
    };
    audit::append(repo, entry).await.unwrap();
}

/// The snapshots of a repository ready to be erased.
struct Prepared {
    /// The stored file of the snapshot backed up under the first data key,
    /// then forgotten: to be erased (a versioned bucket keeps the file).
    erased_file: Bytes,
    /// Backed up under the first data key and kept: re-encrypted, restores.
    kept: arca_repo::snapshot::Snapshot,
    /// Backed up under the rotated key.
    after: arca_repo::snapshot::Snapshot,
    /// The first data key's id.
    first_key: u32,
}

/// Two snapshots and two audit records under the first data key (as older
/// builds sealed them), a rotation, a record linking to them, a snapshot
/// under the new key, the first snapshot forgotten.
/// Returns the repository reopened (sealing with the new key).
async fn prepare(backend: Arc<dyn Backend>, sources: &Path) -> (Repository, Prepared) {
    let repo = Repository::init(backend.clone(), PASSWORD, small_repo_options())
        .await
        .unwrap();
    let first_key = repo.key().current_data_key_id();
    write_source(&sources.join("erased"), 1);
    write_source(&sources.join("kept"), 100);
    write_source(&sources.join("after"), 200);
    let (erased, _) = backup_dir(&repo, &sources.join("erased")).await;
    let first = legacy_record(&repo, &[]).await;
    let (_, kept) = backup_dir(&repo, &sources.join("kept")).await;
    legacy_record(&repo, &[first]).await;
    keys::rotate(&repo).await.unwrap();
    let repo = open(backend).await;
    // Links to a record under the first key, so it is sealed again too.
    record(&repo, "key rotate").await;
    let (_, after) = backup_dir(&repo, &sources.join("after")).await;
    let erased_file = repo.read_raw(&format!("snapshots/{erased}")).await.unwrap();
    arca_repo::forget::remove(&repo, &[erased], jiff::Timestamp::now())
        .await
        .unwrap();
    (
        repo,
        Prepared {
            erased_file,
            kept,
            after,
            first_key,
        },
    )
}

/// Every blob envelope in the packs `repo`'s index lists: its pack path,
/// offset and length (positions that stay valid in a copy of `data/`).
async fn blob_positions(repo: &Repository) -> Vec<BlobPosition> {
    let mut positions = Vec::new();
    for meta in repo.list_index_files().await.unwrap() {
        let id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        for pack in repo.load_index_file(&id).await.unwrap().packs {
            for blob in pack.blobs {
                positions.push(BlobPosition {
                    path: Repository::pack_path(&pack.id),
                    offset: blob.offset as usize,
                    length: blob.length as usize,
                    envelope: pack.envelope,
                });
            }
        }
    }
    positions
}

/// Where a blob is stored and how its pack seals it.
#[derive(Debug, Clone)]
struct BlobPosition {
    path: String,
    offset: usize,
    length: usize,
    envelope: BlobEnvelope,
}

impl BlobPosition {
    /// The id of the data key the blob is sealed under, in the copy `data`.
    fn key_id(&self, data: &Path) -> u32 {
        match self.envelope {
            BlobEnvelope::Pack(key) => key.key_id,
            BlobEnvelope::PerBlob => {
                let pack = std::fs::read(data.join(&self.path)).unwrap();
                u32::from_le_bytes(pack[self.offset + 1..self.offset + 5].try_into().unwrap())
            }
        }
    }
}

/// All the key material under `keys` (a key location): every key file
/// that opens with the password, with every keyring adopted.
fn key_material(keys: &Path) -> Vec<MasterKey> {
    let keyrings: Vec<Vec<u8>> = std::fs::read_dir(keys.join("keyring"))
        .map(|dir| {
            dir.map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    let all: Vec<&[u8]> = keyrings.iter().map(Vec::as_slice).collect();
    std::fs::read_dir(keys.join("keys"))
        .unwrap()
        .filter_map(|entry| {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let mut key = KeyFile::from_bytes(&bytes).unwrap().open(PASSWORD).ok()?;
            key.adopt_keyrings(&all).unwrap();
            Some(key)
        })
        .collect()
}

/// How many of the blob envelopes at `positions` in the copy `data` some
/// key of `keys` opens.
fn openable(data: &Path, positions: &[BlobPosition], keys: &[MasterKey]) -> usize {
    positions
        .iter()
        .filter(|position| {
            let pack = std::fs::read(data.join(&position.path)).unwrap();
            let sealed = &pack[position.offset..position.offset + position.length];
            keys.iter().any(|key| {
                [BlobType::Data, BlobType::Tree]
                    .into_iter()
                    .any(|blob_type| open_stored(key, position.envelope, blob_type, sealed).is_ok())
            })
        })
        .count()
}

#[tokio::test]
async fn a_copy_of_the_data_from_before_with_the_keys_from_after_decrypts_nothing_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (data, keys) = (dir.path().join("data"), dir.path().join("keys"));
    let backend: Arc<dyn Backend> = Arc::new(KeyLocationBackend::new(
        Arc::new(LocalBackend::new(&data)),
        Arc::new(LocalBackend::new(&keys)),
    ));
    let (repo, prepared) = prepare(backend.clone(), &dir.path().join("src")).await;
    // What a versioned bucket or a replica keeps: the data storage and
    // its blob positions as they were before the erasure.
    let positions = blob_positions(&repo).await;
    let data_before = dir.path().join("data-before");
    copy_dir(&data, &data_before);
    let keys_before = dir.path().join("keys-before");
    copy_dir(&keys, &keys_before);

    // The first run re-encrypts and marks the old packs, then waits.
    let first = erase(&repo, &options(false)).await.unwrap();
    let waiting = first
        .waiting
        .as_ref()
        .expect("old packs wait for the grace");
    assert!(waiting.packs > 0 && waiting.due.is_some(), "{waiting:?}");
    assert!(first.destroyed.is_empty() && first.key_file.is_none());
    assert!(first.reencrypt.packs_rewritten > 0);
    tokio::time::sleep(GRACE).await;
    let second = erase(&repo, &options(false)).await.unwrap();
    assert_eq!(second.waiting, None);
    assert_eq!(second.destroyed, [prepared.first_key]);
    assert_eq!(second.kept, repo.key().current_data_key_id());
    assert_eq!(second.keyrings_deleted, 1);
    assert_eq!(second.key_files_removed, [repo.key_file_id()]);
    assert_eq!(second.audit_records_resealed, 3);

    // Everything the keys from before open in the old copy, the keys from
    // after open none of it that was under the destroyed key.
    let before = key_material(&keys_before);
    let after = key_material(&keys);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].data_key_ids(), [second.kept]);
    assert_eq!(openable(&data_before, &positions, &before), positions.len());
    let under_first: Vec<_> = positions
        .iter()
        .filter(|position| position.key_id(&data_before) == prepared.first_key)
        .cloned()
        .collect();
    assert!(!under_first.is_empty());
    assert_eq!(openable(&data_before, &under_first, &after), 0);
    // The erased snapshot's file in the copy does not open either.
    let erased_file = &prepared.erased_file;
    assert!(before[0].open(ObjectKind::Snapshot, erased_file).is_ok());
    assert!(after[0].open(ObjectKind::Snapshot, erased_file).is_err());

    // What was not erased restores, through the new key file.
    let repo = open(backend.clone()).await;
    for (snapshot, source) in [(&prepared.kept, "kept"), (&prepared.after, "after")] {
        let target = dir.path().join(format!("restored-{source}"));
        restore_into(&repo, snapshot, &target).await.unwrap();
        let source = dir.path().join("src").join(source);
        assert_same_files(&source, &restored(&target, &source));
    }
    // The audit trail survives, sealed under the audit key, still intact.
    let verification = audit::verify(&repo).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.records, 3);
    for entry in std::fs::read_dir(data.join("audit")).unwrap() {
        let sealed = std::fs::read(entry.unwrap().path()).unwrap();
        assert_eq!(sealed[1..5], AUDIT_KEY_ID.to_le_bytes());
    }
    // A third run has nothing left to do.
    assert!(matches!(
        erase(&repo, &options(false)).await,
        Err(Error::NothingToErase { .. })
    ));
}

/// The data key id of every envelope in `dir` (a repository with its keys
/// beside the data) but the packs': config, snapshots, index files, holds,
/// marks, audit records; and of every blob the index lists.
async fn envelope_keys(repo: &Repository, dir: &Path) -> Vec<(String, u32)> {
    let key_of = |bytes: &[u8]| u32::from_le_bytes(bytes[1..5].try_into().unwrap());
    let mut keys = vec![(
        "config".to_owned(),
        key_of(&std::fs::read(dir.join("config")).unwrap()),
    )];
    for sub in ["snapshots", "index", "holds", "marks", "audit"] {
        for entry in std::fs::read_dir(dir.join(sub)).into_iter().flatten() {
            let path = entry.unwrap().path();
            keys.push((
                path.display().to_string(),
                key_of(&std::fs::read(&path).unwrap()),
            ));
        }
    }
    for position in blob_positions(repo).await {
        if dir.join(&position.path).exists() {
            let name = format!("{}@{}", position.path, position.offset);
            keys.push((name, position.key_id(dir)));
        }
    }
    keys
}

#[tokio::test]
async fn an_erasure_cut_off_at_any_write_is_finished_by_the_next_run() {
    let template = tempfile::tempdir().unwrap();
    let repo_dir = template.path().join("repo");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(&repo_dir));
    let (repo, prepared) = prepare(backend, &template.path().join("src")).await;
    let old_key_file = repo.key_file_id();
    let old_key_bytes = std::fs::read(repo_dir.join("keys").join(old_key_file.to_hex())).unwrap();
    let first = erase(&repo, &options(false)).await.unwrap();
    assert!(first.waiting.is_some());
    // Bad input before anything is destroyed: the grace has not passed.
    let early = erase(&repo, &options(false)).await.unwrap();
    assert!(early.waiting.is_some() && early.destroyed.is_empty());
    tokio::time::sleep(GRACE).await;

    // Cut after 0, 1, 2, … writes until a run gets through whole: every
    // write of a run is a cut point once.
    for budget in 0.. {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo_dir, dir.path());
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        let cut: Arc<dyn Backend> = Arc::new(PowerCut::new(local.clone(), budget));
        let finished = match erase(&open(cut).await, &options(false)).await {
            Ok(report) => {
                assert_eq!(report.destroyed, [prepared.first_key], "budget {budget}");
                true
            }
            Err(Error::Store(_)) => false,
            Err(other) => panic!("budget {budget}: {other}"),
        };
        // The repository opens with the password in use whatever was cut.
        let reopened = open(local.clone()).await;
        // The dead run's lease is this process's, so not stale by itself.
        unlock(&reopened, true).await.unwrap();
        match erase(&reopened, &options(false)).await {
            Ok(report) => assert_eq!(report.waiting, None, "budget {budget}"),
            Err(Error::NothingToErase { .. }) => assert!(finished, "budget {budget}"),
            Err(other) => panic!("budget {budget}: rerun: {other}"),
        }
        let after = open(local.clone()).await;
        let current = after.key().current_data_key_id();
        assert_eq!(after.key().data_key_ids(), [current], "budget {budget}");
        let old: Vec<_> = envelope_keys(&after, dir.path())
            .await
            .into_iter()
            .filter(|(path, key)| {
                *key != current && !(path.contains("audit") && *key == AUDIT_KEY_ID)
            })
            .collect();
        assert!(old.is_empty(), "budget {budget}: under an old key: {old:?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("keys")).unwrap().count(),
            1
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("keyring"))
                .unwrap()
                .count(),
            1
        );
        let verification = audit::verify(&after).await.unwrap();
        assert!(
            verification.is_intact(),
            "budget {budget}: {verification:?}"
        );
        // A copy of the old key file, alone, no longer opens the repository.
        let alone = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), alone.path());
        std::fs::remove_dir_all(alone.path().join("keys")).unwrap();
        std::fs::create_dir_all(alone.path().join("keys")).unwrap();
        std::fs::write(
            alone.path().join("keys").join(old_key_file.to_hex()),
            &old_key_bytes,
        )
        .unwrap();
        let refused = Repository::open(Arc::new(LocalBackend::new(alone.path())), PASSWORD).await;
        assert!(
            matches!(refused, Err(Error::KeyFileSuperseded { .. })),
            "budget {budget}: {refused:?}"
        );
        if finished {
            assert!(budget > 4, "a whole run took only {budget} writes");
            let target = dir.path().join("restored");
            restore_into(&after, &prepared.kept, &target).await.unwrap();
            let source = template.path().join("src/kept");
            assert_same_files(&source, &restored(&target, &source));
            break;
        }
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let repo = Repository::init(backend.clone(), PASSWORD, small_repo_options())
        .await
        .unwrap()
        .with_grace_floor(GRACE);
    // Nothing to erase: only one data key.
    let nothing = erase(&repo, &options(false)).await.unwrap_err();
    assert!(matches!(nothing, Error::NothingToErase { .. }), "{nothing}");
    assert!(nothing.to_string().contains("key rotate"), "{nothing}");

    keys::rotate(&repo).await.unwrap();
    let mut limited = options(false).new_key;
    limited.password = b"backup only";
    limited.access = KeyAccess::AppendOnly;
    let other = keys::add(&repo, limited).await.unwrap();
    let repo = open(backend.clone()).await;
    let listing = |sub: &str| {
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let (keys_before, keyrings_before) = (listing("keys"), listing("keyring"));

    // Another key file holds the old keys: refused unless asked to remove it.
    let refused = erase(&repo, &options(false)).await.unwrap_err();
    match &refused {
        Error::OtherKeysHoldOldKeys { ids } => assert_eq!(ids, &[other]),
        _ => panic!("{refused}"),
    }
    assert!(refused.to_string().contains("--remove-other-keys"));
    // An append-only key may not erase.
    let client = Repository::open(backend.clone(), b"backup only")
        .await
        .unwrap();
    let append_only = erase(&client, &options(true)).await.unwrap_err();
    assert!(
        matches!(
            append_only,
            Error::AppendOnlyKey {
                operation: "prune --erase"
            }
        ),
        "{append_only}"
    );
    assert_eq!(listing("keys"), keys_before);
    assert_eq!(listing("keyring"), keyrings_before);

    // With --remove-other-keys it goes ahead (nothing waits: no data).
    let report: EraseReport = erase(&repo, &options(true)).await.unwrap();
    assert_eq!(report.waiting, None);
    assert_eq!(report.destroyed.len(), 1);
    assert!(report.key_files_removed.contains(&other));
    assert_eq!(listing("keys").len(), 1);
    assert!(matches!(
        Repository::open(backend, b"backup only").await,
        Err(Error::WrongPassword)
    ));
}

// ---- Writers, rotations and an erasure at once ---------------------------

/// Holds the first `put` (or, with `deletes`, the first `delete`) under
/// `prefix` until the test lets it go, after telling the test it got
/// there: an interleaving on the test's terms, without sleeps.
#[derive(Debug)]
struct PauseAt {
    prefix: &'static str,
    deletes: bool,
    gate: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

/// The test's end of a [`PauseAt`]: wait for the pause, then release it.
struct Pause {
    reached: oneshot::Receiver<()>,
    go: oneshot::Sender<()>,
}

impl PauseAt {
    fn new(
        inner: Arc<dyn Backend>,
        prefix: &'static str,
        deletes: bool,
    ) -> (Arc<InterceptWrites<Self>>, Pause) {
        let (reached_tx, reached) = oneshot::channel();
        let (go, go_rx) = oneshot::channel();
        let hook = PauseAt {
            prefix,
            deletes,
            gate: Mutex::new(Some((reached_tx, go_rx))),
        };
        (
            Arc::new(InterceptWrites { inner, hook }),
            Pause { reached, go },
        )
    }

    async fn pass(&self, path: &str, delete: bool) {
        if delete != self.deletes || !path.starts_with(self.prefix) {
            return;
        }
        let gate = self.gate.lock().unwrap().take();
        if let Some((reached, go)) = gate {
            reached.send(()).unwrap();
            go.await.unwrap();
        }
    }
}

#[async_trait::async_trait]
impl WriteHook for PauseAt {
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()> {
        self.pass(path, false).await;
        inner.put(path, data).await
    }
    async fn delete(&self, inner: &dyn Backend, path: &str) -> arca_store::Result<()> {
        self.pass(path, true).await;
        inner.delete(path).await
    }
}

/// A repository in `dir` with a snapshot of `dir/src/first` under its first
/// data key, and a handle on `stale` (the same storage) opened before the
/// rotation that follows, so it still seals with the first key. Returns the
/// storage, the handle opened after the rotation, the stale handle, the
/// first snapshot and the first key's id.
async fn rotated_with_a_stale_handle(
    dir: &Path,
    stale: Arc<dyn Backend>,
    storage: Arc<dyn Backend>,
) -> (Repository, Repository, arca_repo::snapshot::Snapshot, u32) {
    let repo = Repository::init(storage.clone(), PASSWORD, small_repo_options())
        .await
        .unwrap()
        .with_grace_floor(GRACE);
    write_source(&dir.join("src/first"), 1);
    let (_, first) = backup_dir(&repo, &dir.join("src/first")).await;
    let stale = open(stale).await;
    let first_key = stale.key().current_data_key_id();
    keys::rotate(&repo).await.unwrap();
    (open(storage).await, stale, first, first_key)
}

/// Runs `prune --erase` until it destroys something (the first run
/// re-encrypts and waits for the grace period); returns the last report.
async fn erase_until_done(repo: &Repository) -> EraseReport {
    for _ in 0..5 {
        let report = erase(repo, &options(false)).await.unwrap();
        if report.waiting.is_none() {
            return report;
        }
        tokio::time::sleep(GRACE).await;
    }
    panic!("the erasure never finished");
}

fn backup_of(dir: &Path) -> BackupOptions {
    BackupOptions {
        paths: vec![dir.to_owned()],
        ..BackupOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_from_before_the_rotation_commits_nothing_once_its_key_is_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let (paused, pause) = PauseAt::new(storage.clone(), "data/", false);
    let (repo, stale, first, first_key) =
        rotated_with_a_stale_handle(dir.path(), paused, storage.clone()).await;
    // A long backup under the first key: it loaded the index and is
    // uploading its first pack when the erasure starts.
    write_source(&dir.path().join("src/late"), 50);
    let late = backup_of(&dir.path().join("src/late"));
    let writer = tokio::spawn(async move { backup(&stale, &late, Arc::new(NoProgress)).await });
    pause.reached.await.unwrap();
    let report = erase_until_done(&repo).await;
    assert_eq!(report.destroyed, [first_key]);
    pause.go.send(()).unwrap();

    // Its next index file would be sealed under a key that no longer
    // exists (and break every later load of the index): it refuses, and
    // commits nothing.
    let result = writer.await.unwrap();
    let repo = open(storage).await;
    repo.load_index().await.unwrap();
    let snapshots = repo.list_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    match result {
        Err(Error::SealingKeyErased { key_id }) => assert_eq!(key_id, first_key),
        other => panic!("the stale writer went on: {other:?}"),
    }
    let target = dir.path().join("restored");
    restore_into(&repo, &first, &target).await.unwrap();
    let source = dir.path().join("src/first");
    assert_same_files(&source, &restored(&target, &source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_lands_after_the_erasure_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let (paused, pause) = PauseAt::new(storage.clone(), "snapshots/", false);
    let (repo, stale, first, first_key) =
        rotated_with_a_stale_handle(dir.path(), paused, storage.clone()).await;
    // The same files again: nothing new to store, only a snapshot under
    // the first key, whose write is under way during the whole erasure.
    let again = backup_of(&dir.path().join("src/first"));
    let writer = tokio::spawn(async move { backup(&stale, &again, Arc::new(NoProgress)).await });
    pause.reached.await.unwrap();
    assert_eq!(erase_until_done(&repo).await.destroyed, [first_key]);
    pause.go.send(()).unwrap();
    // Taken back (a snapshot written this late is also taken back by the
    // commit's own bound, §16; the fence says why).
    let result = writer.await.unwrap();
    let repo = open(storage).await;
    let snapshots = repo.list_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0].1.paths, first.paths);
    match result {
        Err(Error::SealingKeyErased { key_id }) => assert_eq!(key_id, first_key),
        other => panic!("the stale writer went on: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_writer_wrote_before_the_erasure_announced_itself_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let (paused_writer, writer_pause) = PauseAt::new(storage.clone(), "data/", false);
    let (repo, stale, _, first_key) =
        rotated_with_a_stale_handle(dir.path(), paused_writer, storage.clone()).await;
    write_source(&dir.path().join("src/late"), 50);
    let late = backup_of(&dir.path().join("src/late"));
    let writer = tokio::spawn(async move { backup(&stale, &late, Arc::new(NoProgress)).await });
    writer_pause.reached.await.unwrap();
    // The first run re-encrypts (before the writer has stored anything).
    let first = erase(&repo, &options(false)).await.unwrap();
    assert!(first.waiting.is_some());
    tokio::time::sleep(GRACE).await;

    // The second run is held just before it announces itself; meanwhile
    // the writer stores its packs and index under the first key.
    let (paused_eraser, eraser_pause) = PauseAt::new(storage.clone(), "keyring/", false);
    let eraser = open(paused_eraser).await;
    let opts = options(false);
    let (stopped, ()) = tokio::join!(erase(&eraser, &opts), async {
        eraser_pause.reached.await.unwrap();
        writer_pause.go.send(()).unwrap();
        // (It then fails to commit: it cannot read the re-encrypted index.)
        writer.await.unwrap().unwrap_err();
        let under_first: Vec<_> = std::fs::read_dir(dir.path().join("repo/index"))
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .filter(|sealed| sealed[1..5] == first_key.to_le_bytes())
            .collect();
        assert_eq!(under_first.len(), 1, "the writer's index file");
        eraser_pause.go.send(()).unwrap();
    });
    let stopped = stopped.unwrap();
    let waiting = stopped
        .waiting
        .expect("the late index file stops the erasure");
    assert!(waiting.files >= 1 && waiting.packs >= 1, "{waiting:?}");
    assert!(stopped.destroyed.is_empty() && stopped.key_file.is_none());
    // Its keyring is taken back: nothing stays announced.
    assert_eq!(
        std::fs::read_dir(dir.path().join("repo/keyring"))
            .unwrap()
            .count(),
        1
    );

    // Later runs re-encrypt what the writer left, and then destroy the key;
    // every index file still opens.
    let repo = open(storage.clone()).await;
    assert_eq!(erase_until_done(&repo).await.destroyed, [first_key]);
    let repo = open(storage).await;
    repo.load_index().await.unwrap();
    assert_eq!(repo.list_snapshots().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_during_an_erasure_is_refused_or_reported() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let (repo, _, _, first_key) =
        rotated_with_a_stale_handle(dir.path(), storage.clone(), storage.clone()).await;
    assert!(
        erase(&repo, &options(false))
            .await
            .unwrap()
            .waiting
            .is_some()
    );
    tokio::time::sleep(GRACE).await;

    // Held at its first deletion (the old key file): past its last look
    // at `keyring/`. A rotation now is refused before it writes.
    let (paused, pause) = PauseAt::new(storage.clone(), "keys/", true);
    let eraser = open(paused).await;
    let keyrings = |dir: &Path| std::fs::read_dir(dir.join("repo/keyring")).unwrap().count();
    let opts = options(false);
    let (done, ()) = tokio::join!(erase(&eraser, &opts), async {
        pause.reached.await.unwrap();
        let before = keyrings(dir.path());
        let refused = keys::rotate(&repo).await.unwrap_err();
        assert!(
            matches!(refused, Error::ErasureUnderWay { wrote: false }),
            "{refused}"
        );
        assert_eq!(keyrings(dir.path()), before);
        pause.go.send(()).unwrap();
    });
    let done = done.unwrap();
    assert_eq!(done.destroyed, [first_key]);

    // A rotation that looked before an erasure announced itself and wrote
    // its keyring after the erasure's last look: reported, and nothing can
    // be sealed under its key (see the writer tests above).
    let repo = open(storage.clone()).await;
    let second_key = repo.key().current_data_key_id();
    keys::rotate(&repo).await.unwrap();
    let repo = open(storage.clone()).await;
    let (paused, pause) = PauseAt::new(storage.clone(), "keyring/", false);
    let rotator = open(paused).await;
    let rotating = tokio::spawn(async move { keys::rotate(&rotator).await });
    pause.reached.await.unwrap();
    let kept = repo.key().current_data_key_id();
    let done = erase_until_done(&repo).await;
    assert_eq!(done.destroyed, [second_key]);
    pause.go.send(()).unwrap();
    let late = rotating.await.unwrap().unwrap_err();
    assert!(
        matches!(late, Error::ErasureUnderWay { wrote: true }),
        "{late}"
    );
    let after = open(storage).await;
    assert_eq!(after.key().data_key_ids(), [kept]);
}
