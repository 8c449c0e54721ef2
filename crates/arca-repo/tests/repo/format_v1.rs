//! Pack format 1 read by this build, from real bytes: `tests/fixtures/v1`
//! is a repository an `arca` from before pack format 2 wrote (every blob
//! its own envelope, pack headers and index files of version 1; see its
//! README). This build must list, restore and check it, add format-2 packs
//! and index files to it, and prune it into format 2 without losing a byte.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arca_repo::blob::BlobEnvelope;
use arca_repo::check::ReadData;
use arca_repo::index::{INDEX_VERSION, IndexFile};
use arca_repo::prune::{MaxUnused, PruneOptions, prune};
use arca_repo::snapshot::Snapshot;
use arca_repo::{Id, Repository};
use arca_store::LocalBackend;

use crate::repo_fixtures::{
    assert_same_files, backup_dir, check_reading, noise, restore_into, restored,
};

const PASSWORD: &[u8] = b"fixture-v1";
/// Where the fixture's snapshots were taken.
const SOURCE: &str = "/tmp/envelope2-fix/content";
const GRACE: Duration = Duration::from_millis(300);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name)
}

/// A copy of the fixture repository in `dir`, opened.
async fn open_copy(dir: &Path) -> Repository {
    copy_dir(&fixture("repo"), dir);
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD)
        .await
        .unwrap()
        .with_grace_floor(GRACE)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The fixture's snapshot tagged `tag`.
async fn tagged(repo: &Repository, tag: &str) -> (Id, Snapshot) {
    let snapshots = repo.list_snapshots().await.unwrap();
    snapshots
        .into_iter()
        .find(|(_, snapshot)| snapshot.tags == [tag])
        .unwrap_or_else(|| panic!("no snapshot tagged {tag}"))
}

/// Every index file as stored: its plaintext version byte and content.
async fn index_files(repo: &Repository) -> Vec<(u8, IndexFile)> {
    let mut files = Vec::new();
    for meta in repo.list_index_files().await.unwrap() {
        let id: Id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        let plaintext = repo
            .read_file(arca_crypto::ObjectKind::Index, &meta.path)
            .await
            .unwrap();
        files.push((plaintext[0], repo.load_index_file(&id).await.unwrap()));
    }
    files
}

/// The envelope of every pack in `data/`, from its header.
async fn stored_pack_envelopes(repo: &Repository) -> Vec<BlobEnvelope> {
    let mut envelopes = Vec::new();
    for meta in repo.backend().list("data/").await.unwrap() {
        let id: Id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        envelopes.push(repo.load_pack_header(&id).await.unwrap().envelope);
    }
    envelopes
}

async fn assert_check_passes(repo: &Repository) {
    let report = check_reading(repo, ReadData::All).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// Restores both snapshots and compares them with what was backed up.
async fn assert_restores_both(repo: &Repository, target: &Path) {
    let _ = fs::remove_dir_all(target);
    let (_, second) = tagged(repo, "second").await;
    restore_into(repo, &second, &target.join("second"))
        .await
        .unwrap();
    assert_same_files(
        &fixture("content"),
        &restored(&target.join("second"), Path::new(SOURCE)),
    );
    let (_, first) = tagged(repo, "first").await;
    restore_into(repo, &first, &target.join("first"))
        .await
        .unwrap();
    let first = restored(&target.join("first"), Path::new(SOURCE));
    for name in ["compressible.txt", "incompressible.bin", "sub/empty"] {
        assert_eq!(
            fs::read(first.join(name)).unwrap(),
            fs::read(fixture("content").join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        fs::read(first.join("sub/small.txt")).unwrap(),
        b"a tiny file\n"
    );
    assert!(!first.join("sub/added.txt").exists());
}

#[tokio::test]
async fn a_format_1_repository_lists_restores_and_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = open_copy(&tmp.path().join("repo")).await;
    let snapshots = repo.list_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 2);
    assert!(
        snapshots
            .iter()
            .all(|(_, s)| s.hostname == "fixture" && s.paths == [PathBuf::from(SOURCE)])
    );
    let files = index_files(&repo).await;
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|(version, file)| {
        *version == 1
            && file
                .packs
                .iter()
                .all(|pack| pack.envelope == BlobEnvelope::PerBlob)
    }));
    assert!(
        stored_pack_envelopes(&repo)
            .await
            .iter()
            .all(|envelope| *envelope == BlobEnvelope::PerBlob)
    );
    assert_restores_both(&repo, &tmp.path().join("restored")).await;
    assert_check_passes(&repo).await;
}

#[tokio::test]
async fn backups_add_format_2_and_prune_repacks_format_1_blobs_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = open_copy(&tmp.path().join("repo")).await;

    // A new backup beside the old packs: format 2 packs and index files.
    let source = tmp.path().join("new");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("noise"), noise(200_000, 7)).unwrap();
    fs::write(source.join("text"), "format two\n".repeat(5000)).unwrap();
    let before = index_files(&repo).await.len();
    let (_, new) = backup_dir(&repo, &source).await;
    let files = index_files(&repo).await;
    let added: Vec<_> = files.iter().filter(|(version, _)| *version != 1).collect();
    assert_eq!(added.len(), files.len() - before);
    assert!(!added.is_empty());
    for (version, file) in added {
        assert_eq!(*version, INDEX_VERSION);
        assert!(
            file.packs
                .iter()
                .all(|pack| matches!(pack.envelope, BlobEnvelope::Pack(_)))
        );
    }
    assert_check_passes(&repo).await;

    // Forget the first snapshot (its packs of blobs only it used are
    // marked) and repack every small pack: the format-1 packs' blobs still
    // used go into format-2 packs, sealed again (and so do the new
    // backup's, under this prune's salt).
    let (first, _) = tagged(&repo, "first").await;
    repo.backend()
        .delete(&format!("snapshots/{first}"))
        .await
        .unwrap();
    let opts = PruneOptions {
        grace: GRACE,
        max_unused: MaxUnused::Percent(0.0),
        ..PruneOptions::default()
    };
    let report = prune(
        &repo,
        &PruneOptions {
            repack_small: true,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert!(report.blobs_repacked > 0, "{report:?}");
    assert_check_passes(&repo).await;

    // Once the grace is over the next prune deletes the old packs: every
    // pack left is format 2, every index file version 2.
    tokio::time::sleep(GRACE * 2).await;
    let report = prune(&repo, &opts).await.unwrap();
    assert!(report.packs_deleted > 0, "{report:?}");
    assert!(
        stored_pack_envelopes(&repo)
            .await
            .iter()
            .all(|envelope| matches!(envelope, BlobEnvelope::Pack(_)))
    );
    assert!(index_files(&repo).await.iter().all(|(version, file)| {
        *version == INDEX_VERSION
            && file
                .packs
                .iter()
                .all(|pack| matches!(pack.envelope, BlobEnvelope::Pack(_)))
    }));
    assert_check_passes(&repo).await;
    let target = tmp.path().join("restored");
    let (_, second) = tagged(&repo, "second").await;
    restore_into(&repo, &second, &target.join("second"))
        .await
        .unwrap();
    assert_same_files(
        &fixture("content"),
        &restored(&target.join("second"), Path::new(SOURCE)),
    );
    restore_into(&repo, &new, &target.join("new"))
        .await
        .unwrap();
    assert_same_files(&source, &restored(&target.join("new"), &source));
}
