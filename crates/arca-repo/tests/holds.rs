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
