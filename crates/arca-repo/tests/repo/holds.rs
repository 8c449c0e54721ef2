//! Legal holds on the real local backend: placing, listing, releasing,
//! expiry, the history kept, and the refusals.

use std::path::Path;
use std::sync::Arc;

use arca_crypto::{KdfParams, KeyAccess};
use arca_repo::hold::{self, Actor, HoldAction};
use arca_repo::keys::{self, NewKey};
use arca_repo::repository::InitOptions;
use arca_repo::snapshot::Snapshot;
use arca_repo::{Error, Id, Repository};
use arca_store::{Backend, StoreOptions};

use crate::repo_fixtures;

const PASSWORD: &[u8] = b"hold test password";

fn backend(dir: &Path) -> Arc<dyn Backend> {
    arca_store::open(dir.to_str().unwrap(), &StoreOptions::default())
        .unwrap()
        .backend
}

fn cheap() -> KdfParams {
    KdfParams::new(8 * 1024, 1, 1).unwrap()
}

async fn new_repo(dir: &Path) -> Repository {
    let options = InitOptions {
        kdf: cheap(),
        ..InitOptions::default()
    };
    Repository::init(backend(dir), PASSWORD, options)
        .await
        .unwrap()
}

async fn snapshot(repo: &Repository, second: i64) -> Id {
    // Built from JSON, so the test names only the fields it needs.
    let json = serde_json::json!({
        "time": jiff::Timestamp::from_second(second).unwrap(),
        "tree": Id([1; 32]),
        "paths": ["/data"],
        "hostname": "db-1",
        "username": "root",
        "uid": 0,
        "gid": 0,
        "program_version": "test",
    });
    let snapshot = Snapshot::decode(&serde_json::to_vec(&json).unwrap()).unwrap();
    repo.save_snapshot(&snapshot).await.unwrap()
}

fn actor(second: i64) -> Actor {
    Actor {
        hostname: "legal".into(),
        username: "counsel".into(),
        now: jiff::Timestamp::from_second(second).unwrap(),
    }
}

fn at(second: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(second).unwrap()
}

#[tokio::test]
async fn place_list_release_and_keep_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let (a, b) = (snapshot(&repo, 1000).await, snapshot(&repo, 2000).await);
    assert!(
        hold::active_holds(&repo, at(5000))
            .await
            .unwrap()
            .is_empty()
    );

    let placed = hold::place(&repo, &[a, b], "case 2026-17", None, &actor(5000))
        .await
        .unwrap();
    assert_eq!(placed.len(), 2);
    // Another client sees them: the holds live in the repository.
    let other = Repository::open(backend(dir.path()), PASSWORD)
        .await
        .unwrap();
    let active = hold::active_holds(&other, at(6000)).await.unwrap();
    assert_eq!(active.keys().copied().collect::<Vec<_>>(), {
        let mut both = vec![a, b];
        both.sort();
        both
    });
    assert_eq!(active[&a].record.reason, "case 2026-17");
    assert_eq!(active[&a].record.username, "counsel");
    assert_eq!(active[&a].id, placed[0]);

    hold::release(&repo, &[a], "case closed", &actor(7000))
        .await
        .unwrap();
    let active = hold::active_holds(&repo, at(8000)).await.unwrap();
    assert_eq!(active.keys().copied().collect::<Vec<_>>(), [b]);
    // The history keeps both placements and the release.
    let history = hold::history(&repo).await.unwrap();
    assert_eq!(history.len(), 3);
    let release = history
        .values()
        .find(|r| r.action == HoldAction::Release)
        .unwrap();
    assert_eq!(
        (release.snapshot, release.ends.as_slice()),
        (a, &placed[..1])
    );
    assert_eq!(release.reason, "case closed");
    assert_eq!(dir.path().join("holds").read_dir().unwrap().count(), 3);
}

#[tokio::test]
async fn a_hold_until_a_time_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let a = snapshot(&repo, 1000).await;
    hold::place(&repo, &[a], "audit 2026", Some(at(9000)), &actor(5000))
        .await
        .unwrap();
    assert!(
        hold::active_holds(&repo, at(8999))
            .await
            .unwrap()
            .contains_key(&a)
    );
    assert!(
        hold::active_holds(&repo, at(9000))
            .await
            .unwrap()
            .is_empty()
    );
    // An expired hold has nothing left to release.
    assert!(matches!(
        hold::release(&repo, &[a], "late", &actor(9500)).await,
        Err(Error::NotHeld { snapshot }) if snapshot == a
    ));
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let (a, b) = (snapshot(&repo, 1000).await, snapshot(&repo, 2000).await);
    assert!(matches!(
        hold::place(&repo, &[a], "case", Some(at(4000)), &actor(5000)).await,
        Err(Error::HoldExpired { until }) if until == at(4000)
    ));
    assert!(matches!(
        hold::place(&repo, &[a], "case", Some(at(5000)), &actor(5000)).await,
        Err(Error::HoldExpired { .. })
    ));
    assert!(matches!(
        hold::place(&repo, &[a], "  ", None, &actor(5000)).await,
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        hold::place(&repo, &[Id([9; 32])], "case", None, &actor(5000)).await,
        Err(Error::SnapshotNotFound { .. })
    ));
    // Releasing a hold that does not exist; with one held snapshot among
    // the named ones, nothing is released.
    hold::place(&repo, &[a], "case", None, &actor(5000))
        .await
        .unwrap();
    assert!(matches!(
        hold::release(&repo, &[a, b], "done", &actor(6000)).await,
        Err(Error::NotHeld { snapshot }) if snapshot == b
    ));
    assert!(
        hold::active_holds(&repo, at(7000))
            .await
            .unwrap()
            .contains_key(&a)
    );
    assert_eq!(hold::history(&repo).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_append_only_key_places_holds_but_cannot_release_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let a = snapshot(&repo, 1000).await;
    keys::add(
        &repo,
        NewKey {
            password: b"limited",
            hostname: "h".into(),
            username: "u".into(),
            access: KeyAccess::AppendOnly,
            kdf: cheap(),
        },
    )
    .await
    .unwrap();
    let client = Repository::open(backend(dir.path()), b"limited")
        .await
        .unwrap();
    hold::place(&client, &[a], "preserve", None, &actor(5000))
        .await
        .unwrap();
    assert!(matches!(
        hold::release(&client, &[a], "undo", &actor(6000)).await,
        Err(Error::AppendOnlyKey {
            operation: "hold release"
        })
    ));
    assert!(
        hold::active_holds(&repo, at(7000))
            .await
            .unwrap()
            .contains_key(&a)
    );
}

#[tokio::test]
async fn a_damaged_hold_record_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let a = snapshot(&repo, 1000).await;
    let placed = hold::place(&repo, &[a], "case", None, &actor(5000))
        .await
        .unwrap();
    let path = dir.path().join("holds").join(placed[0].to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    // Read from storage, not a cache: a hold that cannot be read stops forget.
    match hold::active_holds(&repo, at(6000)).await {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains(&placed[0].to_hex()), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Forget and prune with holds, on real backups: a hold placed while a
/// prune runs; forget by policy keeps the held snapshot (saying why) and
/// refuses to remove it by ID; after prunes that delete what the forgotten
/// snapshot alone used, the held snapshot still restores byte for byte.
#[tokio::test]
async fn forget_keeps_held_snapshots_and_prune_keeps_their_data() {
    use arca_repo::check::ReadData;
    use arca_repo::forget::{self, ForgetOptions, HELD_REASON};
    use arca_repo::prune::{PruneOptions, prune};
    use arca_repo::retention::{Count, RetentionPolicy};
    use repo_fixtures::{
        assert_same_files, backup_dir, check_reading, noise, restore_into, restored,
    };
    const GRACE: std::time::Duration = std::time::Duration::from_millis(300);

    let dir = tempfile::tempdir().unwrap();
    let repo = repo_fixtures::new_repo(&dir.path().join("repo"))
        .await
        .with_grace_floor(GRACE);
    let source = dir.path().join("source");
    let expected = dir.path().join("expected");
    let write_version = |seed: u64| {
        for path in [&source, &expected] {
            std::fs::create_dir_all(path).unwrap();
            for i in 0..3u64 {
                std::fs::write(path.join(format!("f{i}")), noise(300_000, seed * 10 + i)).unwrap();
            }
        }
    };
    write_version(1);
    let (held, held_snapshot) = backup_dir(&repo, &source).await;
    let kept_copy = dir.path().join("expected-held");
    std::fs::rename(&expected, &kept_copy).unwrap();
    write_version(2);
    let (forgotten, _) = backup_dir(&repo, &source).await;
    write_version(3);
    let (newest, _) = backup_dir(&repo, &source).await;

    let opts = PruneOptions {
        grace: GRACE,
        ..PruneOptions::default()
    };
    let now = jiff::Timestamp::now();
    let placing = Actor {
        hostname: "legal".into(),
        username: "counsel".into(),
        now,
    };
    let to_hold = [held];
    let (pruned, placed) = tokio::join!(
        prune(&repo, &opts),
        hold::place(&repo, &to_hold, "case 7", None, &placing)
    );
    pruned.unwrap();
    placed.unwrap();

    let policy = ForgetOptions {
        policy: RetentionPolicy {
            keep_last: Some(Count::Limited(1)),
            ..RetentionPolicy::default()
        },
        ..ForgetOptions::default()
    };
    let plan = forget::forget(&repo, &policy, now, false).await.unwrap();
    assert_eq!(plan.to_remove(), [forgotten]);
    let reasons = &plan.groups[0].reasons;
    let held_reason = reasons.iter().find(|r| r.id == held).unwrap();
    assert_eq!(held_reason.matches, [HELD_REASON]);
    assert!(reasons.iter().any(|r| r.id == newest));
    assert!(matches!(
        forget::remove(&repo, &[held], now).await,
        Err(Error::SnapshotsHeld { snapshots }) if snapshots == [held]
    ));

    // Mark, wait out the grace (the protocol's own clock), sweep.
    prune(&repo, &opts).await.unwrap();
    tokio::time::sleep(GRACE).await;
    let swept = prune(&repo, &opts).await.unwrap();
    assert!(swept.packs_deleted > 0, "{swept:?}");
    let target = dir.path().join("target");
    restore_into(&repo, &held_snapshot, &target).await.unwrap();
    assert_same_files(&kept_copy, &restored(&target, &source));
    let report = check_reading(&repo, ReadData::All).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}
