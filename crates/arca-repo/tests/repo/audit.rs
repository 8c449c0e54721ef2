//! The audit trail on the real local backend: records are appended, listed
//! and filtered; concurrent writers fork and join without breaking the
//! chain; a removed or altered record is detected.

use std::path::Path;
use std::sync::Arc;

use arca_crypto::KdfParams;
use arca_repo::audit::{self, Entry, Filter, Outcome};
use arca_repo::repository::InitOptions;
use arca_repo::{Id, Repository};
use arca_store::{Backend, StoreOptions};

const PASSWORD: &[u8] = b"audit test password";

fn backend(dir: &Path) -> Arc<dyn Backend> {
    arca_store::open(dir.to_str().unwrap(), &StoreOptions::default())
        .unwrap()
        .backend
}

async fn new_repo(dir: &Path) -> Repository {
    let options = InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        ..InitOptions::default()
    };
    Repository::init(backend(dir), PASSWORD, options)
        .await
        .unwrap()
}

fn entry(second: i64, operation: &str) -> Entry {
    Entry {
        time: jiff::Timestamp::from_second(second).unwrap(),
        hostname: "node-1".into(),
        username: "root".into(),
        operation: operation.into(),
        arguments: vec![
            operation.into(),
            "--password-command".into(),
            "echo hunter2".into(),
        ],
        snapshots: vec![Id([second as u8; 32])],
        outcome: Outcome::Success,
        error: None,
        bytes_written: 10,
        bytes_read: 20,
    }
}

async fn trail(dir: &Path, operations: &[&str]) -> (Repository, Vec<Id>) {
    let repo = new_repo(dir).await;
    let mut ids = Vec::new();
    for (i, operation) in operations.iter().enumerate() {
        ids.push(
            audit::append(&repo, entry(1000 * (i as i64 + 1), operation))
                .await
                .unwrap(),
        );
    }
    (repo, ids)
}

#[tokio::test]
async fn records_are_listed_filtered_and_free_of_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids) = trail(dir.path(), &["backup", "key add", "restore", "key remove"]).await;
    let all = audit::list(&repo, &Filter::default()).await.unwrap();
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert_eq!(all[1].1.previous, [ids[0]]);
    assert_eq!(all[0].1.previous, []);
    assert_eq!(all[0].1.bytes_read, 20);
    for (_, record) in &all {
        assert!(record.arguments.iter().all(|a| !a.contains("hunter2")));
        assert_eq!(record.arguments[2], "<redacted>");
    }
    let keys = Filter {
        operation: Some("key".into()),
        since: None,
    };
    let listed = audit::list(&repo, &keys).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|(_, r)| r.operation.as_str())
            .collect::<Vec<_>>(),
        ["key add", "key remove"]
    );
    let since = Filter {
        since: Some(jiff::Timestamp::from_second(3000).unwrap()),
        operation: None,
    };
    assert_eq!(audit::list(&repo, &since).await.unwrap().len(), 2);
    // Nothing of the records is readable in storage.
    for file in dir.path().join("audit").read_dir().unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"backup" || w == b"node-1"));
    }
    let verification = audit::verify(&repo).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.heads, [ids[3]]);
}

#[tokio::test]
async fn concurrent_writers_fork_and_the_next_record_joins_them() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids) = trail(dir.path(), &["init"]).await;
    // Two clients (on two hosts, say) each see only the first record.
    let other = Repository::open(backend(dir.path()), PASSWORD)
        .await
        .unwrap();
    let (left, right) = tokio::join!(
        audit::append(&repo, entry(2000, "backup")),
        audit::append(&other, entry(2001, "backup")),
    );
    let (left, right) = (left.unwrap(), right.unwrap());
    let verification = audit::verify(&repo).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    let joined = audit::append(&repo, entry(3000, "forget")).await.unwrap();
    let records = audit::list(&repo, &Filter::default()).await.unwrap();
    let last = &records.iter().find(|(id, _)| *id == joined).unwrap().1;
    let heads_before: Vec<Id> = last.previous.clone();
    // Whether the two writes raced or not, every earlier head is joined.
    assert!(
        heads_before.contains(&left) || records.iter().any(|(_, r)| r.previous.contains(&left))
    );
    assert!(
        heads_before.contains(&right) || records.iter().any(|(_, r)| r.previous.contains(&right))
    );
    let verification = audit::verify(&repo).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");
    assert_eq!(verification.heads, [joined]);
    assert_eq!(verification.roots, [ids[0]]);
}

#[tokio::test]
async fn a_removed_record_is_reported_as_a_gap_between_two_times() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids) = trail(dir.path(), &["backup", "restore", "forget", "prune"]).await;
    std::fs::remove_file(dir.path().join("audit").join(ids[2].to_hex())).unwrap();
    let verification = audit::verify(&repo).await.unwrap();
    assert!(!verification.is_intact());
    assert_eq!(verification.gaps.len(), 1);
    let gap = &verification.gaps[0];
    assert_eq!(gap.missing, ids[2]);
    assert_eq!(gap.referenced_by, ids[3]);
    assert_eq!(gap.after, Some(jiff::Timestamp::from_second(2000).unwrap()));
    assert_eq!(gap.before, jiff::Timestamp::from_second(4000).unwrap());
}

#[tokio::test]
async fn an_altered_or_replaced_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids) = trail(dir.path(), &["backup", "restore", "forget"]).await;
    // A flipped byte: the record no longer hashes to its name.
    let path = dir.path().join("audit").join(ids[1].to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let verification = audit::verify(&repo).await.unwrap();
    assert!(!verification.is_intact());
    assert_eq!(
        verification
            .damaged
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [ids[1]]
    );
    // A record replaced by a well-formed one (someone with the key rewrote
    // it under its new name): the successor's link to the old name breaks.
    let dir = tempfile::tempdir().unwrap();
    let (repo, ids) = trail(dir.path(), &["backup", "restore", "forget"]).await;
    std::fs::remove_file(dir.path().join("audit").join(ids[1].to_hex())).unwrap();
    let mut forged = entry(2000, "nothing to see");
    forged.snapshots.clear();
    let forged_id = audit::append(&repo, forged).await.unwrap();
    let verification = audit::verify(&repo).await.unwrap();
    assert!(!verification.is_intact());
    assert!(
        verification
            .gaps
            .iter()
            .any(|g| g.missing == ids[1] && g.referenced_by == ids[2])
    );
    assert!(verification.heads.contains(&forged_id));
}
