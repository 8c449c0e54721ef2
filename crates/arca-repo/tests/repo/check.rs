//! `check` against real repositories (local backend in a temp dir) damaged on
//! disk the way disks and interrupted uploads damage them: flipped bits,
//! truncated packs, garbled index and snapshot files, missing and stray packs.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arca_crypto::BlobKeyId;
use arca_repo::blob::{BlobEnvelope, BlobType};
use arca_repo::check::{CheckError, CheckOptions, CheckReport, CheckWarning, ReadData, check};
use arca_repo::index::{BlobLocation, IndexFile, IndexPack};
use arca_repo::progress::{NoProgress, Progress};
use arca_repo::{Error, Id, Repository};

use crate::repo_fixtures::{
    backup_dir, check_reading, new_repo, node_named, noise, restore_into, restored, tree_at,
};

/// A repository with one snapshot of a few MiB spread over several packs.
struct Fixture {
    tmp: tempfile::TempDir,
    repo: Repository,
    snapshot_id: Id,
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        for i in 0..6 {
            fs::write(src.join(format!("file-{i}")), noise(700_000, i)).unwrap();
        }
        fs::write(src.join("sub/small"), b"small file").unwrap();
        let repo = new_repo(&tmp.path().join("repo")).await;
        let (snapshot_id, _) = backup_dir(&repo, &src).await;
        Fixture {
            tmp,
            repo,
            snapshot_id,
        }
    }

    fn repo_dir(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    /// The on-disk file of a repository path.
    fn file(&self, repo_path: &str) -> PathBuf {
        self.repo_dir().join(repo_path)
    }

    /// Some data blob and where it is.
    async fn a_data_blob(&self) -> (Id, BlobLocation) {
        let index = self.repo.load_index().await.unwrap();
        index
            .iter()
            .find(|(t, _, _)| *t == BlobType::Data)
            .map(|(_, id, loc)| (id, loc))
            .unwrap()
    }

    async fn check(&self, read_data: ReadData) -> CheckReport {
        check_reading(&self.repo, read_data).await
    }
}

/// Records which packs `check` read (it reports each as a finished "file").
#[derive(Default)]
struct PacksRead(Mutex<BTreeSet<PathBuf>>);

impl Progress for PacksRead {
    fn add_file(&self, path: &Path) {
        self.0.lock().unwrap().insert(path.to_owned());
    }
}

fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

fn only_file_in(dir: &Path) -> PathBuf {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_repository_checks_clean() {
    let fx = Fixture::new().await;
    let report = fx.check(ReadData::None).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.snapshots_checked, 1);
    assert!(report.packs_checked >= 3, "{report:?}");
    // src, sub, and the directories above src.
    assert!(report.trees_checked >= 3, "{report:?}");
    assert_eq!((report.packs_read, report.bytes_read), (0, 0));

    let report = fx.check(ReadData::All).await;
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.packs_read, report.packs_checked);
    let index = fx.repo.load_index().await.unwrap();
    assert_eq!(report.blobs_checked, index.len() as u64);
    let on_disk: u64 = index
        .pack_ids()
        .collect::<BTreeSet<_>>()
        .iter()
        .map(|p| {
            fs::metadata(fx.file(&Repository::pack_path(p)))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(report.bytes_read, on_disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_found_by_read_data_naming_pack_and_blob() {
    let fx = Fixture::new().await;
    let (blob, location) = fx.a_data_blob().await;
    let pack_file = fx.file(&Repository::pack_path(&location.pack));
    flip_bit(
        &pack_file,
        u64::from(location.offset) + u64::from(location.length) / 2,
    );

    // Same size, so the structural check cannot see it.
    let report = fx.check(ReadData::None).await;
    assert!(report.is_ok(), "{:?}", report.errors);

    let report = fx.check(ReadData::All).await;
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    assert!(
        matches!(&report.errors[0], CheckError::PackDamaged { pack, reason } if *pack == location.pack && reason.contains("hashes to")),
        "{:?}",
        report.errors[0]
    );
    assert!(
        matches!(&report.errors[1], CheckError::BlobDamaged { pack, blob_type: BlobType::Data, blob: b, .. } if *pack == location.pack && *b == blob),
        "{:?}",
        report.errors[1]
    );
    let message = report.errors[1].to_string();
    assert!(
        message.contains(&blob.to_string()) && message.contains(&location.pack.to_string()),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_is_reported_even_when_blobs_are_intact() {
    let fx = Fixture::new().await;
    let (_, location) = fx.a_data_blob().await;
    let pack_file = fx.file(&Repository::pack_path(&location.pack));
    let len = fs::metadata(&pack_file).unwrap().len();
    // Inside the sealed header, just before the 4-byte trailer.
    flip_bit(&pack_file, len - 10);

    let report = fx.check(ReadData::All).await;
    let damaged: Vec<&CheckError> = report.errors.iter().collect();
    assert_eq!(damaged.len(), 2, "{damaged:#?}");
    assert!(
        damaged
            .iter()
            .all(|e| matches!(e, CheckError::PackDamaged { pack, .. } if *pack == location.pack))
    );
    assert!(
        damaged.iter().any(|e| e.to_string().contains("header")),
        "{damaged:?}"
    );
}

/// A format-2 pack's header names its blob key; an index naming another
/// (a wrong salt here) opens none of its blobs and is reported against
/// the header, and index files that disagree on it are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_naming_another_salt_than_the_pack_header_is_reported() {
    let fx = Fixture::new().await;
    let (_, location) = fx.a_data_blob().await;
    let BlobEnvelope::Pack(key) = location.envelope else {
        panic!("new packs are format 2");
    };
    let wrong = BlobEnvelope::Pack(BlobKeyId {
        salt: [0x5a; 16],
        ..key
    });
    let mut listing = None;
    for meta in fx.repo.list_index_files().await.unwrap() {
        let id: Id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        let mut file = fx.repo.load_index_file(&id).await.unwrap();
        for pack in &mut file.packs {
            if pack.id == location.pack {
                pack.envelope = wrong;
                listing = Some(IndexFile {
                    packs: vec![IndexPack {
                        envelope: location.envelope,
                        ..pack.clone()
                    }],
                });
            }
        }
        fx.repo.save_index(&file).await.unwrap();
        fx.repo.backend().delete(&meta.path).await.unwrap();
    }

    let report = fx.check(ReadData::All).await;
    assert!(
        report.errors.iter().any(|e| matches!(
            e,
            CheckError::PackDamaged { pack, reason }
                if *pack == location.pack && reason.contains("salt")
        )),
        "{:#?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| matches!(e, CheckError::BlobDamaged { pack, .. } if *pack == location.pack)),
        "blobs do not open under the wrong salt"
    );

    fx.repo.save_index(&listing.unwrap()).await.unwrap();
    let report = fx.check(ReadData::None).await;
    assert!(
        report.errors.iter().any(|e| matches!(
            e,
            CheckError::IndexFile { reason, .. } if reason.contains(&location.pack.to_hex())
        )),
        "{:#?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_pack_fails_the_structural_check() {
    let fx = Fixture::new().await;
    let (_, location) = fx.a_data_blob().await;
    let pack_file = fx.file(&Repository::pack_path(&location.pack));
    let len = fs::metadata(&pack_file).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&pack_file)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();

    let report = fx.check(ReadData::None).await;
    assert_eq!(
        report.errors,
        vec![CheckError::PackSize {
            pack: location.pack,
            expected: len,
            actual: len - 1000
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_stray_packs_are_reported() {
    let fx = Fixture::new().await;
    let (_, location) = fx.a_data_blob().await;
    let pack_file = fx.file(&Repository::pack_path(&location.pack));
    let bytes = fs::read(&pack_file).unwrap();
    fs::remove_file(&pack_file).unwrap();
    // The same bytes under another (valid) name: in no index.
    let stray = Id([0xab; 32]);
    let stray_file = fx.file(&Repository::pack_path(&stray));
    fs::create_dir_all(stray_file.parent().unwrap()).unwrap();
    fs::write(&stray_file, &bytes).unwrap();

    let report = fx.check(ReadData::All).await;
    assert_eq!(
        report.errors,
        vec![CheckError::PackMissing {
            pack: location.pack
        }]
    );
    assert_eq!(
        report.warnings,
        vec![CheckWarning::PackUnreferenced {
            pack: stray,
            size: bytes.len() as u64
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_index_and_snapshot_files_are_named() {
    let fx = Fixture::new().await;
    let index_file = only_file_in(&fx.repo_dir().join("index"));
    let index_name = format!(
        "index/{}",
        index_file.file_name().unwrap().to_str().unwrap()
    );
    flip_bit(&index_file, 40);
    let snapshot_path = format!("snapshots/{}", fx.snapshot_id);
    fs::write(fx.file(&snapshot_path), b"not a sealed snapshot").unwrap();

    let report = fx.check(ReadData::None).await;
    assert!(
        report
            .errors
            .iter()
            .any(|e| matches!(e, CheckError::IndexFile { path, .. } if *path == index_name)),
        "{:#?}",
        report.errors
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| matches!(e, CheckError::SnapshotFile { path, .. } if *path == snapshot_path)),
        "{:#?}",
        report.errors
    );
    // With the only index file unreadable, every pack is unreferenced.
    assert!(
        report
            .warnings
            .iter()
            .all(|w| matches!(w, CheckWarning::PackUnreferenced { .. }))
    );
    let pack_files: usize = fs::read_dir(fx.repo_dir().join("data"))
        .unwrap()
        .map(|shard| fs::read_dir(shard.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(report.warnings.len(), pack_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_data_subset_n_of_m_reads_exactly_its_slice() {
    let fx = Fixture::new().await;
    let index = fx.repo.load_index().await.unwrap();
    let all: BTreeSet<Id> = index.pack_ids().collect();
    assert!(all.len() >= 4, "want several packs, got {}", all.len());
    let m = 3;
    let mut union = BTreeSet::new();
    for n in 1..=m {
        let progress = Arc::new(PacksRead::default());
        let opts = CheckOptions {
            read_data: format!("{n}/{m}").parse().unwrap(),
        };
        let report = check(&fx.repo, &opts, progress.clone()).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        let read = progress.0.lock().unwrap().clone();
        let expected: BTreeSet<PathBuf> = all
            .iter()
            .filter(|p| u32::from(p.0[0]) % m == n - 1)
            .map(|p| PathBuf::from(Repository::pack_path(p)))
            .collect();
        assert_eq!(read, expected, "slice {n}/{m}");
        assert_eq!(report.packs_read, expected.len() as u64);
        union.extend(read);
    }
    assert_eq!(union.len(), all.len());

    // A tiny percentage still reads one pack.
    let progress = Arc::new(PacksRead::default());
    let opts = CheckOptions {
        read_data: "1%".parse().unwrap(),
    };
    let report = check(&fx.repo, &opts, progress.clone()).await.unwrap();
    assert_eq!(report.packs_read, 1);
    assert_eq!(progress.0.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_pack_only_breaks_the_snapshots_that_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir).await;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    fs::write(a.join("fa"), noise(400_000, 11)).unwrap();
    fs::write(b.join("fb"), noise(400_000, 12)).unwrap();
    let (_, snapshot_a) = backup_dir(&repo, &a).await;
    let packs_after_a: BTreeSet<Id> = repo.load_index().await.unwrap().pack_ids().collect();
    let (_, snapshot_b) = backup_dir(&repo, &b).await;
    let index = repo.load_index().await.unwrap();
    // A data blob that only snapshot b's backup wrote.
    let (blob, location) = index
        .iter()
        .find(|(t, _, loc)| *t == BlobType::Data && !packs_after_a.contains(&loc.pack))
        .map(|(_, id, loc)| (id, loc))
        .unwrap();
    flip_bit(
        &repo_dir.join(Repository::pack_path(&location.pack)),
        u64::from(location.offset) + 5,
    );

    let target_a = tmp.path().join("restore-a");
    restore_into(&repo, &snapshot_a, &target_a).await.unwrap();
    assert_eq!(
        fs::read(restored(&target_a, &a).join("fa")).unwrap(),
        noise(400_000, 11)
    );

    let target_b = tmp.path().join("restore-b");
    let err = restore_into(&repo, &snapshot_b, &target_b)
        .await
        .unwrap_err();
    let Error::RestoreFailed { failures } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].path, restored(&target_b, &b).join("fb"));
    let reason = &failures[0].reason;
    assert!(
        reason.contains(&blob.to_string()) && reason.contains(&location.pack.to_string()),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_tree_is_reported_and_only_its_directory_fails_to_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("kept"), b"outside the damaged directory").unwrap();
    fs::write(src.join("sub/lost"), b"inside the damaged directory").unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    // Find the tree of src/sub and damage it in its pack.
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &snapshot.tree, &src).await;
    let sub_tree = node_named(&tree, OsStr::new("sub")).subtree.unwrap();
    let location = index.get(BlobType::Tree, &sub_tree).unwrap();
    flip_bit(
        &repo_dir.join(Repository::pack_path(&location.pack)),
        u64::from(location.offset) + 3,
    );

    let report = check(&repo, &CheckOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(report.errors.len(), 1, "{:#?}", report.errors);
    assert!(
        matches!(&report.errors[0], CheckError::TreeDamaged { tree, .. } if *tree == sub_tree),
        "{:?}",
        report.errors[0]
    );

    let target = tmp.path().join("target");
    let err = restore_into(&repo, &snapshot, &target).await.unwrap_err();
    let Error::RestoreFailed { failures } = &err else {
        panic!("{err}")
    };
    let out = restored(&target, &src);
    assert_eq!(failures.len(), 1, "{err}");
    assert_eq!(failures[0].path, out.join("sub"));
    assert!(failures[0].reason.contains(&sub_tree.to_string()), "{err}");
    assert_eq!(
        fs::read(out.join("kept")).unwrap(),
        b"outside the damaged directory"
    );
}
