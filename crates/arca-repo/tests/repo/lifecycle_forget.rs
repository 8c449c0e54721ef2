//! forget, tag and the read-only verbs against real repositories (local
//! backend in a temp dir) and real backups: what forget removes and keeps,
//! that a failed forget removes nothing, that holds are respected, and that
//! what remains still restores and checks.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use arca_repo::backup::{BackupOptions, backup};
use arca_repo::check::ReadData;
use arca_repo::forget::{self, ForgetOptions, HELD_REASON};
use arca_repo::hold::{self, Actor};
use arca_repo::progress::NoProgress;
use arca_repo::retention::{Count, RetentionPolicy};
use arca_repo::rewrite::{TagChange, change_tags};
use arca_repo::select::{GroupBy, SnapshotFilter};
use arca_repo::snapshot::Snapshot;
use arca_repo::{Error, Id, Repository};

use crate::repo_fixtures::{check_reading, new_repo, noise, restore_into, restored};

/// Backs up `source` as `host` at `time` with `tags`.
async fn backup_at(repo: &Repository, source: &Path, time: &str, host: &str, tags: &[&str]) -> Id {
    let opts = BackupOptions {
        paths: vec![source.to_owned()],
        hostname: host.into(),
        time: Some(time.parse().unwrap()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..BackupOptions::default()
    };
    backup(repo, &opts, Arc::new(NoProgress))
        .await
        .unwrap()
        .snapshot_id
}

async fn ids(repo: &Repository) -> BTreeSet<Id> {
    repo.list_snapshot_ids()
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn keep_daily(n: u32) -> ForgetOptions {
    ForgetOptions {
        policy: RetentionPolicy {
            keep_daily: Some(Count::Limited(n)),
            ..Default::default()
        },
        group_by: GroupBy::HOST_PATHS,
        ..Default::default()
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

#[tokio::test]
async fn forget_removes_what_the_policy_does_not_keep_and_the_rest_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let source = tmp.path().join("data");
    fs::create_dir_all(&source).unwrap();
    let mut taken: Vec<(Id, Vec<u8>)> = Vec::new();
    for (day, time) in [
        "2026-05-01T09:00:00Z",
        "2026-05-01T18:00:00Z",
        "2026-05-02T09:00:00Z",
        "2026-05-03T09:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        let content = noise(200_000, day as u64);
        fs::write(source.join("file"), &content).unwrap();
        taken.push((backup_at(&repo, &source, time, "node", &[]).await, content));
    }
    let other_host = backup_at(&repo, &source, "2026-05-01T10:00:00Z", "other", &[]).await;
    let all = ids(&repo).await;
    assert_eq!(all.len(), 5);

    // Dry run: the plan, nothing removed.
    let plan = forget::forget(&repo, &keep_daily(2), now(), true)
        .await
        .unwrap();
    let expected_removed = BTreeSet::from([taken[0].0, taken[1].0]);
    assert_eq!(
        plan.to_remove().into_iter().collect::<BTreeSet<_>>(),
        expected_removed
    );
    assert_eq!(ids(&repo).await, all);
    let node_group = plan
        .groups
        .iter()
        .find(|g| g.key.host.as_deref() == Some("node"))
        .unwrap();
    assert_eq!(node_group.keep[0].0, taken[3].0, "newest first");
    assert_eq!(node_group.reasons[0].matches, ["daily snapshot"]);

    // The real run removes exactly the plan.
    forget::forget(&repo, &keep_daily(2), now(), false)
        .await
        .unwrap();
    let left = ids(&repo).await;
    assert_eq!(left, BTreeSet::from([taken[2].0, taken[3].0, other_host]));

    // What is left restores byte for byte, and the repository checks.
    for (id, content) in &taken[2..] {
        let snapshot = repo.load_snapshot(id).await.unwrap();
        let target = tmp.path().join(format!("restore-{}", id.short()));
        restore_into(&repo, &snapshot, &target).await.unwrap();
        assert_eq!(
            &fs::read(restored(&target, &source).join("file")).unwrap(),
            content
        );
    }
    let report = check_reading(&repo, ReadData::All).await;
    assert!(report.is_ok(), "{:?}", report.errors);

    // Applying the same policy again removes nothing more.
    let again = forget::forget(&repo, &keep_daily(2), now(), false)
        .await
        .unwrap();
    assert!(again.to_remove().is_empty());
}

#[tokio::test]
async fn unknown_ids_remove_nothing_and_held_snapshots_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let source = tmp.path().join("data");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("file"), b"content").unwrap();
    let first = backup_at(&repo, &source, "2026-05-01T09:00:00Z", "node", &[]).await;
    let second = backup_at(&repo, &source, "2026-05-02T09:00:00Z", "node", &[]).await;
    let all = ids(&repo).await;

    let specs = vec![first.to_hex(), "0123456789abcdef".to_string()];
    let error = forget::resolve(&repo, &specs).await.unwrap_err();
    assert!(
        matches!(&error, Error::SnapshotNotFound { spec } if spec == "0123456789abcdef"),
        "{error}"
    );
    assert_eq!(ids(&repo).await, all);

    // A held snapshot: the policy keeps it, removing it by ID is refused.
    let actor = Actor {
        hostname: "test".into(),
        username: "tester".into(),
        now: now(),
    };
    hold::place(&repo, &[first], "case 42", None, &actor)
        .await
        .unwrap();
    let plan = forget::plan(
        &repo,
        &ForgetOptions {
            policy: RetentionPolicy {
                keep_last: Some(Count::Limited(1)),
                ..Default::default()
            },
            ..Default::default()
        },
        now(),
    )
    .await
    .unwrap();
    assert!(plan.to_remove().is_empty());
    assert_eq!(plan.groups[0].reasons[1].matches, [HELD_REASON]);
    let error = forget::remove(&repo, &[first, second], now())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::SnapshotsHeld { snapshots } if snapshots == &[first]),
        "{error}"
    );
    assert_eq!(ids(&repo).await, all, "a refused removal removed something");

    // Tags of a held snapshot cannot be rewritten either (its ID would go).
    let change = TagChange {
        add: vec!["x".into()],
        ..Default::default()
    };
    let snapshot = repo.load_snapshot(&first).await.unwrap();
    let error = change_tags(&repo, &[(first, snapshot)], &change, now())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::SnapshotsHeld { .. }), "{error}");
    assert_eq!(ids(&repo).await, all);
}

#[tokio::test]
async fn tag_changes_write_a_new_snapshot_then_remove_the_old() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let source = tmp.path().join("data");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("file"), noise(50_000, 9)).unwrap();
    let old = backup_at(&repo, &source, "2026-05-01T09:00:00Z", "node", &["a"]).await;
    let old_snapshot = repo.load_snapshot(&old).await.unwrap();

    let change = TagChange {
        add: vec!["b".into()],
        ..Default::default()
    };
    let rewritten = change_tags(&repo, &[(old, old_snapshot.clone())], &change, now())
        .await
        .unwrap();
    assert_eq!(rewritten.len(), 1);
    assert_eq!(rewritten[0].old, old);
    let new = rewritten[0].new;
    assert_eq!(ids(&repo).await, BTreeSet::from([new]));
    let new_snapshot: Snapshot = repo.load_snapshot(&new).await.unwrap();
    assert_eq!(new_snapshot.tags, ["a", "b"]);
    assert_eq!(new_snapshot.original, Some(old));
    // Everything else is the same snapshot.
    assert_eq!(
        Snapshot {
            tags: old_snapshot.tags.clone(),
            original: None,
            ..new_snapshot.clone()
        },
        old_snapshot
    );
    // Filters see the new tags.
    let tagged = forget::snapshots_for(
        &repo,
        &[],
        &SnapshotFilter {
            tags: vec![vec!["b".into()]],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(tagged.len(), 1);
    let report = check_reading(&repo, ReadData::All).await;
    assert!(report.is_ok(), "{:?}", report.errors);
}
