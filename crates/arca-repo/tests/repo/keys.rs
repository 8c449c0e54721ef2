//! Key management on the real local backend: adding, listing, removing and
//! re-passwording key files, and what an append-only key may not do.

use std::path::Path;
use std::sync::Arc;

use arca_crypto::{KdfParams, KeyAccess};
use arca_repo::keys::{self, NewKey};
use arca_repo::repository::InitOptions;
use arca_repo::{Error, Repository};
use arca_store::{Backend, StoreOptions};

const PASSWORD: &[u8] = b"first password";

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
        hostname: "init-host".into(),
        username: "init-user".into(),
        ..InitOptions::default()
    };
    Repository::init(backend(dir), PASSWORD, options)
        .await
        .unwrap()
}

fn new_key(password: &[u8], access: KeyAccess) -> NewKey<'_> {
    NewKey {
        password,
        hostname: "laptop".into(),
        username: "alice".into(),
        access,
        kdf: cheap(),
    }
}

#[tokio::test]
async fn add_list_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let first = repo.key_file_id();
    let second = keys::add(&repo, new_key(b"second password", KeyAccess::Full))
        .await
        .unwrap();

    let listed = keys::list(&repo).await.unwrap();
    assert_eq!(listed.len(), 2);
    let current: Vec<_> = listed.iter().filter(|k| k.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].id, first);
    assert_eq!(current[0].hostname, "init-host");
    let added = listed.iter().find(|k| k.id == second).unwrap();
    assert_eq!(
        (added.hostname.as_str(), added.username.as_str()),
        ("laptop", "alice")
    );
    assert!(!added.append_only);

    // Both passwords open the same repository.
    let by_second = Repository::open(backend(dir.path()), b"second password")
        .await
        .unwrap();
    assert_eq!(by_second.key_file_id(), second);
    assert_eq!(by_second.config().id, repo.config().id);

    // The key in use is kept unless forced; another key can be removed.
    assert!(matches!(
        keys::remove(&repo, &first, false).await,
        Err(Error::KeyInUse { id }) if id == first
    ));
    keys::remove(&repo, &second, false).await.unwrap();
    assert!(matches!(
        Repository::open(backend(dir.path()), b"second password").await,
        Err(Error::WrongPassword)
    ));
    // The last key never goes, even forced.
    assert!(matches!(
        keys::remove(&repo, &first, true).await,
        Err(Error::LastKey { id }) if id == first
    ));
    assert!(
        Repository::open(backend(dir.path()), PASSWORD)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn passwd_replaces_the_key_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let old = repo.key_file_id();
    let new = keys::change_password(&repo, new_key(b"new password", KeyAccess::Full))
        .await
        .unwrap();
    assert_ne!(old, new);
    let listed = keys::list(&repo).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), [new]);
    assert!(matches!(
        Repository::open(backend(dir.path()), PASSWORD).await,
        Err(Error::WrongPassword)
    ));
    let reopened = Repository::open(backend(dir.path()), b"new password")
        .await
        .unwrap();
    assert_eq!(reopened.key().content_id(b"x"), repo.key().content_id(b"x"));
}

#[tokio::test]
async fn key_ids_are_found_by_prefix_and_wrong_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let id = repo.key_file_id();
    assert_eq!(keys::find(&repo, &id.to_hex()[..8]).await.unwrap(), id);
    assert_eq!(
        keys::find(&repo, &id.to_hex().to_uppercase())
            .await
            .unwrap(),
        id
    );
    let wrong = if id.to_hex().starts_with('0') {
        "1"
    } else {
        "0"
    };
    for spec in [wrong, "", "not-hex", &"a".repeat(65)] {
        assert!(
            matches!(
                keys::find(&repo, spec).await,
                Err(Error::KeyNotFound { .. })
            ),
            "{spec:?}"
        );
    }
    let missing = arca_repo::Id([0; 32]);
    assert!(matches!(
        keys::remove(&repo, &missing, true).await,
        Err(Error::KeyNotFound { .. })
    ));
}

#[tokio::test]
async fn append_only_keys_open_but_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let limited = keys::add(&repo, new_key(b"backup only", KeyAccess::AppendOnly))
        .await
        .unwrap();
    let listed = keys::list(&repo).await.unwrap();
    assert!(listed.iter().find(|k| k.id == limited).unwrap().append_only);

    let client = Repository::open(backend(dir.path()), b"backup only")
        .await
        .unwrap();
    assert_eq!(client.access(), KeyAccess::AppendOnly);
    assert!(client.list_snapshots().await.unwrap().is_empty());
    let refused = [
        keys::add(&client, new_key(b"another", KeyAccess::Full))
            .await
            .map(drop),
        keys::remove(&client, &repo.key_file_id(), true).await,
        keys::change_password(&client, new_key(b"another", KeyAccess::AppendOnly))
            .await
            .map(drop),
        client.require_full_access("prune"),
    ];
    for result in refused {
        assert!(
            matches!(result, Err(Error::AppendOnlyKey { .. })),
            "{result:?}"
        );
    }
    // Nothing was written or removed.
    assert_eq!(keys::list(&repo).await.unwrap().len(), 2);
    assert_eq!(repo.access(), KeyAccess::Full);
}

#[tokio::test]
async fn damaged_key_files_are_left_out_of_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path()).await;
    let damaged = format!("keys/{}", arca_repo::Id([7; 32]));
    repo.backend()
        .put(&damaged, bytes::Bytes::from_static(b"{not a key file"))
        .await
        .unwrap();
    let listed = keys::list(&repo).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, repo.key_file_id());
}

/// Rotate, back up, rotate again, back up: every generation's snapshot
/// restores through any key file, new data is sealed with the newest data
/// key, and an append-only key cannot rotate.
#[tokio::test]
async fn rotation_keeps_every_generation_readable() {
    use crate::repo_fixtures::{assert_same_files, backup_dir, noise, restore_into, restored};

    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(&dir.path().join("repo")).await;
    let limited = keys::add(&repo, new_key(b"backup only", KeyAccess::AppendOnly))
        .await
        .unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let mut generations = Vec::new();
    let mut current = repo.clone();
    for generation in 0..3u64 {
        std::fs::write(source.join("file"), noise(200_000, generation)).unwrap();
        let copy = dir.path().join(format!("expected-{generation}"));
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(source.join("file"), copy.join("file")).unwrap();
        let (id, snapshot) = backup_dir(&current, &source).await;
        // The snapshot file is sealed with the data key current at the time.
        let stored = std::fs::read(dir.path().join("repo/snapshots").join(id.to_hex())).unwrap();
        assert_eq!(
            stored[1..5],
            current.key().current_data_key_id().to_le_bytes()
        );
        generations.push((snapshot, copy, current.key().current_data_key_id()));
        if generation < 2 {
            let (data_key, _) = keys::rotate(&current).await.unwrap();
            current = Repository::open(backend(&dir.path().join("repo")), PASSWORD)
                .await
                .unwrap();
            assert_eq!(current.key().current_data_key_id(), data_key);
        }
    }
    let key_ids: std::collections::BTreeSet<u32> = generations.iter().map(|g| g.2).collect();
    assert_eq!(key_ids.len(), 3);
    assert_eq!(
        std::fs::read_dir(dir.path().join("repo/keyring"))
            .unwrap()
            .count(),
        2
    );
    // The append-only key file predates both rotations and reads everything.
    let client = Repository::open(backend(&dir.path().join("repo")), b"backup only")
        .await
        .unwrap();
    assert_eq!(client.key_file_id(), limited);
    for (i, (snapshot, expected, _)) in generations.iter().enumerate() {
        let target = dir.path().join(format!("restored-{i}"));
        restore_into(&client, snapshot, &target).await.unwrap();
        assert_same_files(expected, &restored(&target, &source));
    }
    assert!(matches!(
        keys::rotate(&client).await,
        Err(Error::AppendOnlyKey {
            operation: "key rotate"
        })
    ));
    // A damaged keyring stops the repository from opening, naming it.
    let keyring = std::fs::read_dir(dir.path().join("repo/keyring"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&keyring).unwrap();
    // In the sealed part: a keyring whose keyring key id was changed is
    // taken for another keyring key's and left alone (docs/FORMAT.md §20).
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&keyring, bytes).unwrap();
    match Repository::open(backend(&dir.path().join("repo")), PASSWORD).await {
        Err(Error::Corrupt { what, .. }) => assert!(what.starts_with("keyring/"), "{what}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
