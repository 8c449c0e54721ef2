//! Re-encryption under the current data key (`rekey::reencrypt_data`) on
//! the real local backend: after a rotation, every pack and index file is
//! sealed under the new key once the old packs' marks are swept; snapshots
//! from before and after restore byte for byte; and a run cut off at any
//! write (a store that stops accepting writes and deletes, as a killed
//! process stops sending them) is finished by the next run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arca_repo::blob::BlobEnvelope;
use arca_repo::hold::{self, Actor, active_holds};
use arca_repo::keys;
use arca_repo::lease::unlock;
use arca_repo::prune::{PruneOptions, prune};
use arca_repo::rekey::reencrypt_data;
use arca_repo::{Error, Repository};
use arca_store::LocalBackend;

use crate::repo_fixtures::{
    PASSWORD, PowerCut, assert_same_files, backup_dir, check_reading, new_repo, noise,
    restore_into, restored,
};

/// The data key id every envelope names (bytes 1..5): of snapshot and index
/// files, and of each blob in the packs the index lists (a format-2 pack's
/// blobs: the key id its index entry names).
async fn key_ids(repo: &Repository) -> Vec<(String, u32)> {
    let mut ids = Vec::new();
    let envelope = |bytes: &[u8]| u32::from_le_bytes(bytes[1..5].try_into().unwrap());
    let config = repo.read_raw("config").await.unwrap();
    ids.push(("config".to_owned(), envelope(&config)));
    for dir in ["holds/", "marks/"] {
        for meta in repo.backend().list(dir).await.unwrap() {
            let sealed = repo.read_raw(&meta.path).await.unwrap();
            ids.push((meta.path.clone(), envelope(&sealed)));
        }
    }
    for id in repo.list_snapshot_ids().await.unwrap() {
        let path = format!("snapshots/{id}");
        let sealed = repo.read_raw(&path).await.unwrap();
        ids.push((path, envelope(&sealed)));
    }
    for meta in repo.list_index_files().await.unwrap() {
        let sealed = repo.read_raw(&meta.path).await.unwrap();
        ids.push((meta.path.clone(), envelope(&sealed)));
        let id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        for pack in repo.load_index_file(&id).await.unwrap().packs {
            let path = Repository::pack_path(&pack.id);
            let Ok(bytes) = repo.read_raw(&path).await else {
                continue; // swept after this index file was listed: not stored
            };
            for blob in &pack.blobs {
                let start = blob.offset as usize;
                let key_id = match pack.envelope {
                    BlobEnvelope::Pack(key) => key.key_id,
                    BlobEnvelope::PerBlob => envelope(&bytes[start..]),
                };
                ids.push((format!("{path}#{}", blob.id), key_id));
            }
        }
    }
    ids
}

fn write_source(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..6u64 {
        std::fs::write(dir.join(format!("f{i}")), noise(40_000, seed + i)).unwrap();
    }
    std::fs::write(dir.join("sub/small"), format!("small {seed}")).unwrap();
}

/// The grace floor of these repositories: a mark becomes due after it,
/// which the tests wait out (the protocol's own clock), as prune's do.
const GRACE: Duration = Duration::from_millis(300);

/// A repository with a snapshot under the first data key and one under a
/// rotated key; returned reopened (so it seals with the new key), with a
/// short grace floor.
async fn rotated_repo(
    dir: &Path,
    source: &Path,
) -> (Repository, Vec<arca_repo::snapshot::Snapshot>) {
    let repo = new_repo(dir).await;
    write_source(source, 1);
    let (first_id, first) = backup_dir(&repo, source).await;
    // Hold records under the first key: a placement released again, and
    // one still in force (ending before the one `hold_first` places).
    let actor = Actor {
        hostname: "counsel-host".into(),
        username: "counsel".into(),
        now: jiff::Timestamp::now(),
    };
    hold::place(&repo, &[first_id], "case 6", None, &actor)
        .await
        .unwrap();
    hold::release(&repo, &[first_id], "case 6 closed", &actor)
        .await
        .unwrap();
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    hold::place(&repo, &[first_id], "audit 2026", Some(soon), &actor)
        .await
        .unwrap();
    keys::rotate(&repo).await.unwrap();
    let repo = Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD)
        .await
        .unwrap()
        .with_grace_floor(GRACE);
    std::fs::write(source.join("f0"), noise(40_000, 99)).unwrap();
    let (_, second) = backup_dir(&repo, source).await;
    (repo, vec![first, second])
}

/// Sweeps the re-encryption's marks once their grace has passed.
async fn sweep(repo: &Repository) {
    tokio::time::sleep(GRACE).await;
    let options = PruneOptions {
        grace: GRACE,
        ..PruneOptions::default()
    };
    prune(repo, &options).await.unwrap();
}

async fn assert_all_under(repo: &Repository, key: u32) {
    let ids = key_ids(repo).await;
    assert!(!ids.is_empty());
    let old: Vec<_> = ids.iter().filter(|(_, id)| *id != key).collect();
    assert!(old.is_empty(), "still under an older key: {old:?}");
}

/// Places a hold (ending in a day) on the snapshot other than `second`;
/// returns its ID and the hold's end.
async fn hold_first(
    repo: &Repository,
    second: &arca_repo::snapshot::Snapshot,
) -> (arca_repo::Id, jiff::Timestamp) {
    let second_id = repo
        .list_snapshots()
        .await
        .unwrap()
        .into_iter()
        .find(|(_, snapshot)| *snapshot == *second)
        .unwrap()
        .0;
    let first_id = repo
        .list_snapshot_ids()
        .await
        .unwrap()
        .into_iter()
        .find(|id| *id != second_id)
        .unwrap();
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let actor = Actor {
        hostname: "counsel-host".into(),
        username: "counsel".into(),
        now: jiff::Timestamp::now(),
    };
    hold::place(repo, &[first_id], "case 7", Some(until), &actor)
        .await
        .unwrap();
    (first_id, until)
}

/// Whether some snapshot that exists is under an active hold.
async fn some_snapshot_held(repo: &Repository) -> bool {
    let ids = repo.list_snapshot_ids().await.unwrap();
    let holds = active_holds(repo, jiff::Timestamp::now()).await.unwrap();
    holds.values().any(|h| ids.contains(&h.record.snapshot))
}

#[tokio::test]
async fn packs_and_index_files_end_up_under_the_current_key_and_everything_restores() {
    let (dir, source, target) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (repo, snapshots) = rotated_repo(dir.path(), source.path()).await;
    let current = repo.key().current_data_key_id();
    assert!(
        key_ids(&repo).await.iter().any(|(_, id)| *id != current),
        "the first backup is under the first key"
    );

    let (first_id, until) = hold_first(&repo, &snapshots[1]).await;
    let report = reencrypt_data(&repo).await.unwrap();
    assert_eq!(report.data_key, current);
    assert!(report.packs_rewritten > 0, "{report:?}");
    assert!(report.blobs_rewritten > 0, "{report:?}");
    assert!(report.index_files_resealed > 0, "{report:?}");
    assert!(!report.marks.is_empty(), "{report:?}");
    assert_eq!(report.snapshots.len(), 1, "{report:?}");
    // Both placements in force ("audit 2026" and "case 7") move, each with its own end.
    assert_eq!(report.holds_moved, 2, "{report:?}");
    assert_eq!(report.hold_records_resealed, 4, "{report:?}");
    assert!(report.config_resealed, "{report:?}");
    let moved = report.snapshots[0];
    assert_eq!(moved.old, first_id);
    let holds = active_holds(&repo, jiff::Timestamp::now()).await.unwrap();
    let held: Vec<_> = holds
        .values()
        .map(|h| (h.record.snapshot, h.record.until))
        .collect();
    assert_eq!(held, [(moved.new, Some(until))]);
    let history = hold::history(&repo).await.unwrap();
    let mut reasons: Vec<_> = hold::placements_in_force(&history, jiff::Timestamp::now())
        .map(|(_, record)| (record.snapshot, record.reason.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (
                moved.new,
                format!("audit 2026 (moved from {first_id} by key reencrypt)")
            ),
            (
                moved.new,
                format!("case 7 (moved from {first_id} by key reencrypt)")
            ),
        ]
    );
    let ids = repo.list_snapshot_ids().await.unwrap();
    assert!(
        ids.contains(&moved.new) && !ids.contains(&first_id),
        "{ids:?}"
    );
    assert_eq!(
        repo.load_snapshot(&moved.new).await.unwrap().original,
        Some(first_id)
    );
    sweep(&repo).await;
    assert_all_under(&repo, current).await;

    let again = reencrypt_data(&repo).await.unwrap();
    assert_eq!((again.packs_rewritten, again.index_files_resealed), (0, 0));
    assert!(again.marks.is_empty());

    assert!(
        check_reading(&repo, arca_repo::check::ReadData::All)
            .await
            .errors
            .is_empty()
    );
    // The last snapshot restores as the source is now; the first one's files
    // that did not change since restore as they are too.
    restore_into(&repo, &snapshots[1], target.path())
        .await
        .unwrap();
    assert_same_files(source.path(), &restored(target.path(), source.path()));
    let first_target = tempfile::tempdir().unwrap();
    restore_into(&repo, &snapshots[0], first_target.path())
        .await
        .unwrap();
    let first = restored(first_target.path(), source.path());
    assert_eq!(std::fs::read(first.join("f0")).unwrap(), noise(40_000, 1));
    assert_eq!(std::fs::read(first.join("f5")).unwrap(), noise(40_000, 6));
}

#[tokio::test]
async fn a_run_cut_off_at_any_write_is_finished_by_the_next_one() {
    // Cut after 0, 1, 2, … writes until a run gets through whole: every
    // write of a run is a cut point once.
    for budget in 0.. {
        let (dir, source, target) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (repo, snapshots) = rotated_repo(dir.path(), source.path()).await;
        let current = repo.key().current_data_key_id();
        let cut = Arc::new(PowerCut::new(
            Arc::new(LocalBackend::new(dir.path())),
            budget,
        ));
        hold_first(&repo, &snapshots[1]).await;
        let cut_repo = Repository::open(cut, PASSWORD).await.unwrap();
        let finished = match reencrypt_data(&cut_repo).await {
            Ok(_) => true,
            Err(Error::Store(_)) => false,
            Err(other) => panic!("budget {budget}: {other}"),
        };
        assert!(
            some_snapshot_held(&repo).await,
            "budget {budget}: the hold was lost"
        );
        // The dead run's lease is this process's, so not stale by itself.
        unlock(&repo, true).await.unwrap();
        assert!(
            check_reading(&repo, arca_repo::check::ReadData::None)
                .await
                .errors
                .is_empty(),
            "budget {budget}: the cut left damage"
        );
        reencrypt_data(&repo).await.unwrap();
        sweep(&repo).await;
        assert_all_under(&repo, current).await;
        assert!(
            some_snapshot_held(&repo).await,
            "budget {budget}: the hold was lost"
        );
        restore_into(&repo, &snapshots[1], target.path())
            .await
            .unwrap();
        assert_same_files(source.path(), &restored(target.path(), source.path()));
        if finished {
            assert!(budget > 4, "a whole run took only {budget} writes");
            break;
        }
    }
}
