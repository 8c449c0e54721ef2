//! Prune's protocol against real repositories in temp dirs: marking, the
//! sweep after the grace, resurrection, the writer's rescue, repacking,
//! leases, and the states a crash leaves.
//!
//! The repositories use a grace floor of a fraction of a second
//! ([`Repository::with_grace_floor`]); where a test needs a mark to become
//! due it waits out the grace, which is the protocol's own clock.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use arca_repo::blob::BlobType;
use arca_repo::lease;
use arca_repo::marks::{list_marks, pending_packs};
use arca_repo::pack::PackWriter;
use arca_repo::prune::{MaxUnused, PruneOptions, PruneReport, prune};
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::FileName;
use arca_repo::{Error, Id, Repository};

use crate::repo_fixtures::{
    assert_same_files, backup_dir, check_reading, new_repo, noise, restore_into, restored,
};

const GRACE: Duration = Duration::from_millis(300);

fn opts() -> PruneOptions {
    PruneOptions {
        grace: GRACE,
        ..PruneOptions::default()
    }
}

async fn repo_in(dir: &Path) -> Repository {
    new_repo(dir).await.with_grace_floor(GRACE)
}

/// Writes `files` (name, length, seed) into a fresh directory `dir`.
fn fill<Name: AsRef<Path>>(dir: &Path, files: &[(Name, usize, u64)]) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    for (name, len, seed) in files {
        fs::write(dir.join(name), noise(*len, *seed)).unwrap();
    }
}

/// Every pack in `data/`.
async fn stored_packs(repo: &Repository) -> BTreeSet<Id> {
    repo.backend()
        .list("data/")
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.path.rsplit('/').next().unwrap().parse().unwrap())
        .collect()
}

/// The packs holding the blobs of `snapshot` (trees and data), preferring
/// copies outside packs pending deletion.
async fn packs_of(repo: &Repository, snapshot: &Snapshot) -> BTreeSet<Id> {
    let (index, _) = repo.load_index_for_writing().await.unwrap();
    let mut packs = BTreeSet::new();
    let mut trees = vec![snapshot.tree];
    while let Some(tree_id) = trees.pop() {
        packs.insert(index.get(BlobType::Tree, &tree_id).unwrap().pack);
        let tree = repo.load_tree(&index, &tree_id).await.unwrap();
        for node in &tree.nodes {
            for blob in &node.content {
                packs.insert(index.get(BlobType::Data, blob).unwrap().pack);
            }
            trees.extend(node.subtree);
        }
    }
    packs
}

async fn forget(repo: &Repository, id: &Id) {
    repo.backend()
        .delete(&format!("snapshots/{id}"))
        .await
        .unwrap();
}

async fn assert_check_passes(repo: &Repository) {
    let report = check_reading(repo, arca_repo::check::ReadData::All).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}

async fn assert_restores(repo: &Repository, snapshot: &Snapshot, source: &Path, target: &Path) {
    let _ = fs::remove_dir_all(target);
    restore_into(repo, snapshot, target).await.unwrap();
    assert_same_files(source, &restored(target, source));
}

/// Two snapshots sharing nothing but the repository: `a` and `b`.
struct TwoSnapshots {
    tmp: tempfile::TempDir,
    repo: Repository,
    a: (Id, Snapshot),
    b: (Id, Snapshot),
}

impl TwoSnapshots {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo_in(&tmp.path().join("repo")).await;
        fill(
            &tmp.path().join("a"),
            &[("one", 900_000, 1), ("two", 700_000, 2)],
        );
        fill(&tmp.path().join("b"), &[("three", 800_000, 3)]);
        let a = backup_dir(&repo, &tmp.path().join("a")).await;
        let b = backup_dir(&repo, &tmp.path().join("b")).await;
        TwoSnapshots { tmp, repo, a, b }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.tmp.path().join(name)
    }

    /// Packs only `a` uses.
    async fn packs_only_a_uses(&self) -> BTreeSet<Id> {
        let of_b = packs_of(&self.repo, &self.b.1).await;
        packs_of(&self.repo, &self.a.1)
            .await
            .difference(&of_b)
            .copied()
            .collect()
    }
}

/// Forty small files backed up, then every other one of them, and the
/// first snapshot forgotten: many small files shared packs, so each pack
/// is left about half used.
struct HalfForgotten {
    tmp: tempfile::TempDir,
    repo: Repository,
    src: std::path::PathBuf,
    /// The forgotten snapshot (all forty files).
    first: Snapshot,
    /// The kept one (every other file).
    second: Snapshot,
    /// The files of `second`: name, length, seed.
    kept: Vec<(String, usize, u64)>,
}

impl HalfForgotten {
    async fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo_in(&tmp.path().join("repo")).await;
        let files: Vec<(String, usize, u64)> = (0..40)
            .map(|i| (format!("f{i:02}"), 40_000, 100 + i))
            .collect();
        let src = tmp.path().join("src");
        fill(&src, &files);
        let (first_id, first) = backup_dir(&repo, &src).await;
        let kept: Vec<(String, usize, u64)> = files.iter().step_by(2).cloned().collect();
        fill(&src, &kept);
        let (_, second) = backup_dir(&repo, &src).await;
        forget(&repo, &first_id).await;
        HalfForgotten {
            tmp,
            repo,
            src,
            first,
            second,
            kept,
        }
    }
}

async fn marked_packs(repo: &Repository) -> BTreeSet<Id> {
    let marks = list_marks(repo).await.unwrap();
    pending_packs(marks.iter().map(|(_, m)| m))
        .into_iter()
        .collect()
}

#[tokio::test]
async fn unused_packs_are_marked_then_deleted_after_the_grace() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    assert!(only_a.len() >= 2, "{only_a:?}");
    let before = stored_packs(&f.repo).await;
    forget(&f.repo, &f.a.0).await;

    let first = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(first.packs_marked, only_a.len() as u64, "{first:?}");
    assert_eq!((first.packs_deleted, first.marks_swept), (0, 0));
    assert_eq!(marked_packs(&f.repo).await, only_a);
    // Marking deletes nothing and changes no index file.
    assert_eq!(stored_packs(&f.repo).await, before);
    assert_check_passes(&f.repo).await;

    // A second prune within the grace neither deletes nor marks again.
    let early = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(
        (early.packs_deleted, early.packs_marked),
        (0, 0),
        "{early:?}"
    );
    assert_eq!(early.packs_pending, only_a.len() as u64);

    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.marks_swept, 1);
    assert_eq!(swept.packs_deleted, only_a.len() as u64);
    assert_eq!(swept.packs_resurrected, 0);
    assert_eq!(swept.packs_marked, 0, "{swept:?}");
    assert!(list_marks(&f.repo).await.unwrap().is_empty());
    let expected: BTreeSet<Id> = before.difference(&only_a).copied().collect();
    assert_eq!(stored_packs(&f.repo).await, expected);
    let index = f.repo.load_index().await.unwrap();
    assert!(index.pack_ids().all(|pack| !only_a.contains(&pack)));
    assert_check_passes(&f.repo).await;
    assert_restores(&f.repo, &f.b.1, &f.path("b"), &f.path("out")).await;
}

#[tokio::test]
async fn a_snapshot_that_appears_before_the_sweep_resurrects_its_packs() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    forget(&f.repo, &f.a.0).await;
    prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(marked_packs(&f.repo).await, only_a);
    // A writer that deduplicated against these packs before the mark and
    // committed without seeing it.
    let again = f.repo.save_snapshot(&f.a.1).await.unwrap();

    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_resurrected, only_a.len() as u64, "{swept:?}");
    assert_eq!(swept.packs_deleted, 0);
    assert!(list_marks(&f.repo).await.unwrap().is_empty());
    assert!(only_a.is_subset(&stored_packs(&f.repo).await));
    assert_check_passes(&f.repo).await;
    let (_, snapshot) = f.repo.find_snapshot(&again.to_hex()).await.unwrap();
    assert_restores(&f.repo, &snapshot, &f.path("a"), &f.path("out")).await;
}

#[tokio::test]
async fn backups_store_again_what_is_only_in_pending_packs() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    forget(&f.repo, &f.a.0).await;
    prune(&f.repo, &opts()).await.unwrap();

    let (index, _) = f.repo.load_index_for_writing().await.unwrap();
    let full = f.repo.load_index().await.unwrap();
    for (blob_type, id, location) in full.iter() {
        assert_eq!(
            index.contains(blob_type, &id),
            !only_a.contains(&location.pack),
            "{blob_type} {id}"
        );
        // Still readable.
        assert_eq!(index.get(blob_type, &id).unwrap().pack, location.pack);
    }

    let (_, again) = backup_dir(&f.repo, &f.path("a")).await;
    let summary = again.summary.as_ref().unwrap();
    assert!(summary.data_added >= 1_600_000, "{summary:?}");
    assert!(packs_of(&f.repo, &again).await.is_disjoint(&only_a));

    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_deleted, only_a.len() as u64, "{swept:?}");
    assert_check_passes(&f.repo).await;
    assert_restores(&f.repo, &again, &f.path("a"), &f.path("out")).await;
}

#[tokio::test]
async fn a_commit_copies_blobs_that_are_only_in_pending_packs() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    forget(&f.repo, &f.a.0).await;
    // A writer loads its index before the prune marks...
    let (_, start) = f.repo.load_index_for_writing().await.unwrap();
    prune(&f.repo, &opts()).await.unwrap();
    // ...and commits a snapshot of the data it found there afterwards.
    let rescued = f.repo.commit_snapshot(&f.a.1, start).await.unwrap();
    let (index, _) = f.repo.load_index_for_writing().await.unwrap();
    let full = f.repo.load_index().await.unwrap();
    for (blob_type, id, location) in full.iter() {
        if only_a.contains(&location.pack) {
            assert!(
                index.contains(blob_type, &id),
                "{blob_type} {id} not rescued"
            );
        }
    }

    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_deleted, only_a.len() as u64, "{swept:?}");
    assert_eq!(swept.packs_resurrected, 0);
    assert_check_passes(&f.repo).await;
    let (_, snapshot) = f.repo.find_snapshot(&rescued.to_hex()).await.unwrap();
    assert_restores(&f.repo, &snapshot, &f.path("a"), &f.path("out")).await;
}

#[tokio::test]
async fn a_commit_after_its_data_was_swept_fails_and_writes_no_snapshot() {
    let f = TwoSnapshots::new().await;
    forget(&f.repo, &f.a.0).await;
    let (_, start) = f.repo.load_index_for_writing().await.unwrap();
    prune(&f.repo, &opts()).await.unwrap();
    tokio::time::sleep(GRACE).await;
    prune(&f.repo, &opts()).await.unwrap();
    let result = f.repo.commit_snapshot(&f.a.1, start).await;
    assert!(
        matches!(result, Err(Error::BackupIncomplete { .. })),
        "{result:?}"
    );
    assert_eq!(f.repo.list_snapshots().await.unwrap().len(), 1);
    assert_check_passes(&f.repo).await;
}

#[tokio::test]
async fn partly_used_packs_are_repacked() {
    let HalfForgotten {
        tmp,
        repo,
        src,
        second,
        ..
    } = HalfForgotten::new().await;

    let options = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        ..opts()
    };
    let dry = prune(
        &repo,
        &PruneOptions {
            dry_run: true,
            ..options.clone()
        },
    )
    .await
    .unwrap();
    assert!(dry.packs_repacked >= 1, "{dry:?}");
    assert!(list_marks(&repo).await.unwrap().is_empty());

    let report = prune(&repo, &options).await.unwrap();
    assert_eq!(report.packs_repacked, dry.packs_repacked);
    // How many kept blobs share packs with dropped ones depends on how the
    // parallel encoders filled the packs; what must hold is that some were
    // repacked and (below) none of the snapshot's blobs stays behind.
    assert!(report.blobs_repacked > 0, "{report:?}");
    assert_eq!(report.bytes_unused_kept, 0);
    // Every blob the snapshot uses has a copy outside the marked packs.
    let marked = marked_packs(&repo).await;
    assert_eq!(marked.len() as u64, report.packs_marked);
    assert!(packs_of(&repo, &second).await.is_disjoint(&marked));
    tokio::time::sleep(GRACE).await;
    let swept = prune(&repo, &options).await.unwrap();
    assert_eq!(swept.packs_deleted, report.packs_marked, "{swept:?}");
    // Everything left is used: nothing more to mark or repack.
    assert_eq!((swept.packs_marked, swept.packs_repacked), (0, 0));
    assert!(stored_packs(&repo).await.is_disjoint(&marked));
    assert!(
        packs_of(&repo, &second)
            .await
            .is_subset(&stored_packs(&repo).await)
    );
    assert_check_passes(&repo).await;
    assert_restores(&repo, &second, &src, &tmp.path().join("out")).await;
}

/// A kept blob that no longer opens, in a pack prune would repack: prune
/// stops with an error naming the pack and the blob, before it marks or
/// deletes anything, and every other file still restores.
#[tokio::test]
async fn a_corrupt_blob_in_a_pack_to_repack_stops_prune_and_loses_nothing() {
    let HalfForgotten {
        tmp,
        repo,
        src,
        first: first_snapshot,
        second,
        kept,
    } = HalfForgotten::new().await;

    // A data blob of a kept file whose pack also holds a dropped file's.
    let (index, _) = repo.load_index_for_writing().await.unwrap();
    // (file name, content) of every file in a snapshot.
    let content = |snapshot: &Snapshot| {
        let index = &index;
        let repo = &repo;
        let root = snapshot.tree;
        async move {
            let mut files = Vec::new();
            let mut trees = vec![root];
            while let Some(tree_id) = trees.pop() {
                for node in repo.load_tree(index, &tree_id).await.unwrap().nodes {
                    trees.extend(node.subtree);
                    if !node.content.is_empty() {
                        files.push((node.name.clone(), node.content.clone()));
                    }
                }
            }
            files
        }
    };
    let kept_blobs = content(&second).await;
    let kept_names: BTreeSet<_> = kept_blobs.iter().map(|(name, _)| name.clone()).collect();
    let dropped_packs: BTreeSet<Id> = content(&first_snapshot)
        .await
        .iter()
        .filter(|(name, _)| !kept_names.contains(name))
        .flat_map(|(_, blobs)| {
            blobs
                .iter()
                .map(|id| index.get(BlobType::Data, id).unwrap().pack)
        })
        .collect();
    let (victim, location) = kept_blobs
        .iter()
        .flat_map(|(name, blobs)| blobs.iter().map(move |id| (name.clone(), *id)))
        .map(|(name, id)| (name, index.get(BlobType::Data, &id).unwrap()))
        .find(|(_, location)| dropped_packs.contains(&location.pack))
        .expect("some pack holds both kept and dropped files");
    let pack_file = tmp
        .path()
        .join("repo")
        .join(Repository::pack_path(&location.pack));
    let mut bytes = fs::read(&pack_file).unwrap();
    bytes[(location.offset + location.length / 2) as usize] ^= 0x40;
    fs::write(&pack_file, bytes).unwrap();
    let packs_before = stored_packs(&repo).await;

    let error = prune(
        &repo,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            ..opts()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&location.pack.to_hex()), "{message}");
    assert!(list_marks(&repo).await.unwrap().is_empty());
    assert_eq!(stored_packs(&repo).await, packs_before);
    // Every kept file but the damaged one restores byte for byte.
    let out = tmp.path().join("out");
    let _ = restore_into(&repo, &second, &out).await;
    let restored_dir = restored(&out, &src);
    for (name, _, _) in &kept {
        if FileName::from(name.as_str()) == victim {
            continue;
        }
        assert_eq!(
            fs::read(restored_dir.join(name)).unwrap(),
            fs::read(src.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn prunes_exclude_each_other_with_a_lease() {
    let f = TwoSnapshots::new().await;
    let held = lease::acquire(&f.repo, "prune").await.unwrap();
    let refused = prune(&f.repo, &opts()).await;
    assert!(
        matches!(&refused, Err(Error::PruneRunning { pid, .. }) if *pid == std::process::id()),
        "{refused:?}"
    );
    // The refused prune withdrew its own lease.
    assert_eq!(f.repo.backend().list("locks/").await.unwrap().len(), 1);
    // A dry run takes no lease.
    assert!(
        prune(
            &f.repo,
            &PruneOptions {
                dry_run: true,
                ..opts()
            }
        )
        .await
        .is_ok()
    );
    held.release().await.unwrap();
    assert!(prune(&f.repo, &opts()).await.is_ok());
    assert!(f.repo.backend().list("locks/").await.unwrap().is_empty());
}

#[tokio::test]
async fn unlock_removes_only_what_it_is_asked_to() {
    let f = TwoSnapshots::new().await;
    assert_eq!(
        lease::unlock(&f.repo, false).await.unwrap(),
        Default::default()
    );
    let held = lease::acquire(&f.repo, "prune").await.unwrap();
    let kept = lease::unlock(&f.repo, false).await.unwrap();
    assert_eq!((kept.removed.len(), kept.kept.len()), (0, 1));
    let all = lease::unlock(&f.repo, true).await.unwrap();
    assert_eq!((all.removed.len(), all.kept.len()), (1, 0));
    assert!(f.repo.backend().list("locks/").await.unwrap().is_empty());
    // Releasing a lease someone removed is not an error.
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_refreshed_lease_keeps_its_place_and_moves_its_expiry() {
    let f = TwoSnapshots::new().await;
    let mut held = lease::acquire(&f.repo, "prune").await.unwrap();
    let before = lease::list_leases(&f.repo).await.unwrap();
    let (first_id, first) = (before[0].0, before[0].1.as_ref().unwrap().clone());
    held.refresh().await.unwrap();
    held.ensure_valid().unwrap();
    let after = lease::list_leases(&f.repo).await.unwrap();
    assert_eq!(after.len(), 1);
    let (second_id, second) = (after[0].0, after[0].1.as_ref().unwrap().clone());
    assert_ne!(second_id, first_id);
    assert_eq!(second.time, first.time);
    assert!(second.expires >= first.expires);
    assert!(!second.is_stale(jiff::Timestamp::now()));
    // Another prune still backs off.
    assert!(matches!(
        prune(&f.repo, &opts()).await,
        Err(Error::PruneRunning { .. })
    ));
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_sweep_cut_short_leaves_a_checkable_repository_that_the_next_prune_finishes() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    forget(&f.repo, &f.a.0).await;
    prune(&f.repo, &opts()).await.unwrap();
    tokio::time::sleep(GRACE).await;
    // A sweep that deleted one pack and was killed before anything else.
    let first = *only_a.iter().next().unwrap();
    f.repo
        .backend()
        .delete(&Repository::pack_path(&first))
        .await
        .unwrap();
    assert_check_passes(&f.repo).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_deleted, only_a.len() as u64, "{swept:?}");
    assert!(list_marks(&f.repo).await.unwrap().is_empty());
    assert_check_passes(&f.repo).await;
    assert_eq!(
        check_reading(&f.repo, arca_repo::check::ReadData::None)
            .await
            .warnings,
        vec![]
    );
}

#[tokio::test]
async fn check_reports_a_snapshot_whose_marked_pack_is_gone() {
    let f = TwoSnapshots::new().await;
    let only_a = f.packs_only_a_uses().await;
    forget(&f.repo, &f.a.0).await;
    prune(&f.repo, &opts()).await.unwrap();
    let pack = *only_a.iter().next().unwrap();
    f.repo
        .backend()
        .delete(&Repository::pack_path(&pack))
        .await
        .unwrap();
    // Damage the protocol never causes: a snapshot needing the deleted pack.
    f.repo.save_snapshot(&f.a.1).await.unwrap();
    let report = check_reading(&f.repo, arca_repo::check::ReadData::None).await;
    assert!(!report.is_ok());
    assert!(
        report
            .errors
            .iter()
            .all(|e| matches!(e, arca_repo::check::CheckError::BlobMissing { .. })),
        "{:?}",
        report.errors
    );
}

#[tokio::test]
async fn packs_no_index_lists_are_marked_not_deleted() {
    let f = TwoSnapshots::new().await;
    // A backup interrupted after uploading a pack, before its index.
    let mut writer = PackWriter::new(BlobType::Data, f.repo.blob_key().unwrap());
    let plaintext = noise(10_000, 99);
    let id = f.repo.key().content_id(&plaintext);
    writer
        .add_encoding(BlobType::Data, id, &plaintext, f.repo.compression())
        .unwrap();
    let stray = f
        .repo
        .save_pack(writer.finish(f.repo.key()).unwrap())
        .await
        .unwrap()
        .id;
    let report = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(report.unindexed_packs_marked, 1, "{report:?}");
    assert_eq!(report.packs_marked, 1);
    assert_eq!(marked_packs(&f.repo).await, BTreeSet::from([stray]));
    assert!(stored_packs(&f.repo).await.contains(&stray));
    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_deleted, 1, "{swept:?}");
    assert!(!stored_packs(&f.repo).await.contains(&stray));
    assert_check_passes(&f.repo).await;
}

#[tokio::test]
async fn a_blob_missing_from_the_index_stops_prune_before_it_marks_anything() {
    let f = TwoSnapshots::new().await;
    forget(&f.repo, &f.a.0).await;
    for meta in f.repo.list_index_files().await.unwrap() {
        f.repo.backend().delete(&meta.path).await.unwrap();
    }
    let result = prune(&f.repo, &opts()).await;
    assert!(
        matches!(result, Err(Error::BlobNotFound { .. })),
        "{result:?}"
    );
    assert!(list_marks(&f.repo).await.unwrap().is_empty());
    assert!(f.repo.backend().list("locks/").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_grace_below_the_floor_is_refused() {
    let f = TwoSnapshots::new().await;
    let result = prune(
        &f.repo,
        &PruneOptions {
            grace: GRACE / 2,
            ..opts()
        },
    )
    .await;
    assert!(
        matches!(result, Err(Error::InvalidOptions(_))),
        "{result:?}"
    );
    let _: PruneReport = prune(&f.repo, &opts()).await.unwrap();
}

/// Stores `blobs` of one type in a new pack; indexes it only if `index`.
async fn store_pack(
    repo: &Repository,
    blob_type: BlobType,
    blobs: &[Vec<u8>],
    index: bool,
) -> arca_repo::index::IndexPack {
    let mut writer = PackWriter::new(blob_type, repo.blob_key().unwrap());
    for plaintext in blobs {
        let id = repo.key().content_id(plaintext);
        writer
            .add_encoding(blob_type, id, plaintext, repo.compression())
            .unwrap();
    }
    let pack = repo
        .save_pack(writer.finish(repo.key()).unwrap())
        .await
        .unwrap();
    if index {
        repo.save_index(&arca_repo::index::IndexFile {
            packs: vec![pack.clone()],
        })
        .await
        .unwrap();
    }
    pack
}

#[tokio::test]
async fn a_writer_that_stalled_past_a_sweep_of_its_own_pack_commits_nothing() {
    let f = TwoSnapshots::new().await;
    let (_, start) = f.repo.load_index_for_writing().await.unwrap();
    // The writer uploads a pack and stalls before indexing it...
    let content = noise(50_000, 77);
    let pack = store_pack(
        &f.repo,
        BlobType::Data,
        std::slice::from_ref(&content),
        false,
    )
    .await;
    // ...while a prune marks it (in no index) and a later one deletes it.
    prune(&f.repo, &opts()).await.unwrap();
    tokio::time::sleep(GRACE).await;
    let swept = prune(&f.repo, &opts()).await.unwrap();
    assert_eq!(swept.packs_deleted, 1, "{swept:?}");
    // The writer wakes up, indexes its pack and a tree using it, and commits.
    f.repo
        .save_index(&arca_repo::index::IndexFile {
            packs: vec![pack.clone()],
        })
        .await
        .unwrap();
    let mut node = f.a.1.clone();
    let tree = arca_repo::tree::Tree::new(vec![arca_repo::tree::Node {
        name: "file".into(),
        node_type: arca_repo::tree::NodeType::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        user: None,
        group: None,
        mtime_ns: 0,
        atime_ns: 0,
        ctime_ns: 0,
        size: content.len() as u64,
        inode: 1,
        device: 1,
        links: 1,
        rdev: 0,
        link_target: None,
        xattrs: vec![],
        content: vec![f.repo.key().content_id(&content)],
        subtree: None,
    }]);
    let encoded = tree.encode();
    store_pack(
        &f.repo,
        BlobType::Tree,
        std::slice::from_ref(&encoded),
        true,
    )
    .await;
    node.tree = f.repo.key().content_id(&encoded);
    let result = f.repo.commit_snapshot(&node, start).await;
    assert!(
        matches!(&result, Err(Error::BackupIncomplete { reason }) if reason.contains(&pack.id.to_string())),
        "{result:?}"
    );
    assert_eq!(f.repo.list_snapshots().await.unwrap().len(), 2);
}
