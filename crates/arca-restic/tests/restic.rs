//! arca-restic against repositories restic itself wrote: snapshots, listings,
//! restores and check compared with restic's own output.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use arca_repo::check::{CheckError, CheckOptions, ReadData};
use arca_repo::progress::NoProgress;
use arca_repo::restore::RestoreOptions;
use arca_repo::tree::NodeType;
use arca_restic::{Error, ResticRepository, is_restic_repository};
use arca_store::{Backend, LocalBackend};
use common::{Fixture, PASSWORD, describe_tree, restic_available};

async fn open(fixture: &Fixture) -> ResticRepository {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(fixture.repo()));
    assert!(is_restic_repository(backend.as_ref()).await.unwrap());
    ResticRepository::open(backend, PASSWORD.as_bytes())
        .await
        .unwrap()
}

/// Every node below the snapshot root as (path, node), depth first.
async fn walk(
    repo: &ResticRepository,
    tree: &arca_repo::Id,
) -> Vec<(PathBuf, arca_repo::tree::Node)> {
    let index = repo.load_index().await.unwrap();
    let mut out = Vec::new();
    let mut pending = vec![(PathBuf::from("/"), *tree)];
    while let Some((dir, tree)) = pending.pop() {
        for node in repo.tree(&index, &tree).await.unwrap().to_arca().unwrap() {
            let path = dir.join(node.name.as_os_str());
            if let Some(subtree) = node.subtree {
                pending.push((path.clone(), subtree));
            }
            out.push((path, node));
        }
    }
    out
}

/// Snapshots as restic lists them; every node as `restic ls --json` lists it;
/// a full restore byte for byte and metadata as `restic restore`.
async fn compare_everything(version: u32, compression: &str) {
    if !restic_available() {
        return;
    }
    let fixture = Fixture::new(version, compression);
    let repo = open(&fixture).await;
    assert_eq!(repo.config().version, version);

    // snapshots
    let theirs: serde_json::Value =
        serde_json::from_slice(&fixture.restic(&["snapshots".as_ref(), "--json".as_ref()]))
            .unwrap();
    let ours = repo.snapshots().await.unwrap();
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), 3);
    assert_eq!(ours.len(), theirs.len());
    for ((id, snapshot), restic) in ours.iter().zip(theirs) {
        let arca = snapshot.to_arca().unwrap();
        assert_eq!(id.to_hex(), restic["id"].as_str().unwrap());
        assert_eq!(arca.tree.to_hex(), restic["tree"].as_str().unwrap());
        assert_eq!(arca.hostname, restic["hostname"].as_str().unwrap());
        let time: jiff::Timestamp = restic["time"].as_str().unwrap().parse().unwrap();
        assert_eq!(arca.time, time);
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map_or_else(Vec::new, |a| {
                a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()
            })
        };
        assert_eq!(arca.tags, strings(&restic["tags"]));
        assert_eq!(arca.paths, strings(&restic["paths"]));
    }
    assert_eq!(
        ours.iter()
            .map(|(_, s)| s.to_arca().unwrap().tags.join(","))
            .collect::<Vec<_>>(),
        ["daily", "daily,weekly", "monthly"]
    );

    // ls of the last snapshot
    let (last_id, last) = ours.last().unwrap();
    let listing = fixture.restic(&["ls".as_ref(), "--json".as_ref(), last_id.to_hex().as_ref()]);
    let mut theirs = BTreeSet::new();
    for line in listing.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let node: serde_json::Value = serde_json::from_slice(line).unwrap();
        if node["struct_type"] != "node" {
            continue;
        }
        let mtime: jiff::Timestamp = node["mtime"].as_str().unwrap().parse().unwrap();
        theirs.insert((
            node["path"].as_str().unwrap().to_owned(),
            node["type"].as_str().unwrap().to_owned(),
            node["size"].as_u64().unwrap_or(0),
            node["mode"].as_u64().unwrap() as u32 & 0o777,
            mtime.as_nanosecond() as i64,
            node["uid"].as_u64().unwrap() as u32,
        ));
    }
    let ours: BTreeSet<_> = walk(&repo, &last.tree)
        .await
        .into_iter()
        .map(|(path, node)| {
            let kind = match node.node_type {
                NodeType::File => "file",
                NodeType::Dir => "dir",
                NodeType::Symlink => "symlink",
                NodeType::Fifo => "fifo",
                NodeType::Socket => "socket",
                NodeType::CharDevice => "chardev",
                NodeType::BlockDevice => "dev",
            };
            // restic prints names as Go strings; a non-UTF-8 byte shows as U+FFFD.
            (
                path.to_string_lossy().into_owned(),
                kind.to_owned(),
                node.size,
                node.mode & 0o777,
                node.mtime_ns,
                node.uid,
            )
        })
        .collect();
    assert!(ours.len() > 15, "the fixture has many nodes: {ours:?}");
    assert_eq!(ours, theirs);

    // restore: everything, compared with restic's restore
    let ours_dir = fixture.dir.path().join("restore-arca");
    let theirs_dir = fixture.dir.path().join("restore-restic");
    fixture.restic(&[
        "restore".as_ref(),
        last_id.to_hex().as_ref(),
        "--target".as_ref(),
        theirs_dir.as_os_str(),
    ]);
    let mut options = RestoreOptions::new(&ours_dir);
    options.verify = true;
    let summary = arca_restic::restore::restore(&repo, last, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(summary.files >= 10, "{summary:?}");
    assert_eq!(summary.hardlinks, 1);
    assert_eq!(summary.symlinks, 2);
    assert_eq!(summary.special, 1, "the fifo");
    assert_eq!(summary.files_verified, summary.files);
    let ours_tree = describe_tree(&ours_dir);
    let theirs_tree = describe_tree(&theirs_dir);
    assert_eq!(ours_tree, theirs_tree);
    let changed = ours_tree
        .iter()
        .find(|(p, _)| p.ends_with("changed.txt"))
        .unwrap()
        .1;
    if fixture.xattrs {
        assert!(changed.contains("xattr \"user.arca.test\""), "{changed}");
    }
    let source = fixture.source();
    let restored_source = ours_dir.join(source.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored_source.join("large.bin")).unwrap(),
        std::fs::read(source.join("large.bin")).unwrap()
    );
}

#[tokio::test]
async fn version_1_matches_restic() {
    compare_everything(1, "auto").await;
}

#[tokio::test]
async fn version_2_uncompressed_matches_restic() {
    compare_everything(2, "off").await;
}

#[tokio::test]
async fn version_2_compressed_matches_restic() {
    compare_everything(2, "auto").await;
}

#[tokio::test]
async fn version_2_max_compression_matches_restic() {
    compare_everything(2, "max").await;
}

#[tokio::test]
async fn include_and_exclude_restore_what_restic_restores() {
    if !restic_available() {
        return;
    }
    let fixture = Fixture::new(2, "auto");
    let repo = open(&fixture).await;
    let (id, snapshot) = repo.find_snapshot("latest").await.unwrap();
    for (flag, pattern) in [
        ("--include", "dir"),
        ("--exclude", "*.bin"),
        ("--include", "/**/deepest"),
    ] {
        let ours_dir = fixture.dir.path().join(format!("ours{flag}"));
        let theirs_dir = fixture.dir.path().join(format!("theirs{flag}"));
        fixture.restic(&[
            "restore".as_ref(),
            id.to_hex().as_ref(),
            "--target".as_ref(),
            theirs_dir.as_os_str(),
            flag.as_ref(),
            pattern.as_ref(),
        ]);
        let mut options = RestoreOptions::new(&ours_dir);
        if flag == "--include" {
            options.includes = vec![pattern.into()];
        } else {
            options.excludes = vec![pattern.into()];
        }
        arca_restic::restore::restore(&repo, &snapshot, &options, Arc::new(NoProgress))
            .await
            .unwrap();
        let ours = describe_tree(&ours_dir);
        let theirs = describe_tree(&theirs_dir);
        // Directories restic creates only as parents carry no restored metadata
        // there; compare which paths exist and the content of every file.
        let files = |tree: &std::collections::BTreeMap<PathBuf, String>| -> Vec<(PathBuf, String)> {
            tree.iter()
                .map(|(p, d)| {
                    (
                        p.clone(),
                        d.split(' ')
                            .filter(|w| w.starts_with("sha=") || w.starts_with("size="))
                            .collect::<Vec<_>>()
                            .join(" "),
                    )
                })
                .collect()
        };
        assert_eq!(files(&ours), files(&theirs), "{flag} {pattern}");
        assert!(!ours.is_empty());
    }
}

#[tokio::test]
async fn check_passes_then_finds_a_corrupted_pack() {
    if !restic_available() {
        return;
    }
    let fixture = Fixture::new(2, "auto");
    let repo = open(&fixture).await;
    let all = CheckOptions {
        read_data: ReadData::All,
    };
    let report = arca_restic::check::check(&repo, &all, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
    assert_eq!(report.snapshots_checked, 3);
    assert!(
        report.packs_read >= 2 && report.blobs_checked > 10,
        "{report:?}"
    );
    assert_eq!(report.packs_read, report.packs_checked);

    // Flip one byte in the middle of a data blob of large.bin, which every snapshot holds.
    let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
    let index = repo.load_index().await.unwrap();
    let (_, large) = walk(&repo, &snapshot.tree)
        .await
        .into_iter()
        .find(|(path, _)| path.ends_with("large.bin"))
        .unwrap();
    let location = index
        .get(arca_repo::blob::BlobType::Data, &large.content[0])
        .unwrap();
    let pack_id = location.pack;
    let path = fixture
        .repo()
        .join(arca_restic::repository::pack_path(&pack_id));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(location.offset + location.length / 2) as usize] ^= 0x40;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(&path, &bytes).unwrap();

    let structural =
        arca_restic::check::check(&repo, &CheckOptions::default(), Arc::new(NoProgress))
            .await
            .unwrap();
    assert!(
        structural.is_ok(),
        "the structure is intact: {:?}",
        structural.errors
    );
    let report = arca_restic::check::check(&repo, &all, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .errors
            .iter()
            .any(|e| matches!(e, CheckError::PackDamaged { pack, .. } if *pack == pack_id)),
        "{:?}",
        report.errors
    );
    // restic agrees that the repository is damaged.
    let restic = std::process::Command::new("restic")
        .args(["--no-cache", "--quiet", "check", "--read-data", "--repo"])
        .arg(fixture.repo())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!restic.status.success());

    // A restore of a file in that pack fails loudly instead of writing wrong bytes.
    let target = fixture.dir.path().join("after-damage");
    let result = arca_restic::restore::restore(
        &repo,
        &snapshot,
        &RestoreOptions::new(&target),
        Arc::new(NoProgress),
    )
    .await;
    match result {
        Err(Error::RestoreFailed { failures }) => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(failures[0].path.ends_with("large.bin"), "{failures:?}");
            assert!(
                failures[0].reason.contains("authentication"),
                "{failures:?}"
            );
        }
        other => panic!("expected a failed restore, got {other:?}"),
    }
}

/// Sum of the sizes of the files below `dir`.
fn bytes_below(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_below(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Flips a bit in the middle of data blob `id` in its pack; returns the
/// pack's path and its bytes as they were, to repair it with.
fn damage_blob(
    fixture: &Fixture,
    index: &arca_restic::index::Index,
    id: &arca_repo::Id,
) -> (PathBuf, Vec<u8>) {
    let location = index.get(arca_repo::blob::BlobType::Data, id).unwrap();
    let pack = fixture
        .repo()
        .join(arca_restic::repository::pack_path(&location.pack));
    let whole = std::fs::read(&pack).unwrap();
    let mut bytes = whole.clone();
    bytes[(location.offset + location.length / 2) as usize] ^= 0x40;
    std::fs::set_permissions(&pack, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::write(&pack, &bytes).unwrap();
    (pack, whole)
}

#[tokio::test]
async fn a_blob_in_many_files_is_read_once_and_a_damaged_one_fails_every_file_holding_it() {
    if !restic_available() {
        return;
    }
    let fixture = Fixture {
        dir: tempfile::tempdir().unwrap(),
        version: 2,
        xattrs: false,
    };
    fixture.restic(&[
        "init".as_ref(),
        "--repository-version".as_ref(),
        "2".as_ref(),
    ]);
    let source = fixture.source();
    // The same content in three directories, and one block many times over
    // in one file (restic's chunker cuts each repetition alike, so one blob
    // lands at many offsets).
    let copy = common::noise(2 << 20, 12);
    for dir in ["a", "b", "c"] {
        std::fs::create_dir_all(source.join(dir)).unwrap();
        std::fs::write(source.join(dir).join("copy"), &copy).unwrap();
    }
    std::fs::write(
        source.join("repeated"),
        common::noise(3 << 20, 11).repeat(6),
    )
    .unwrap();
    fixture.restic(&["backup".as_ref(), source.as_os_str()]);

    let repo = open(&fixture).await;
    let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
    let target = fixture.dir.path().join("restored");
    let mut options = RestoreOptions::new(&target);
    options.verify = true;
    let summary = arca_restic::restore::restore(&repo, &snapshot, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    let restored = target.join(source.strip_prefix("/").unwrap());
    for name in ["a/copy", "b/copy", "c/copy", "repeated"] {
        assert!(
            std::fs::read(restored.join(name)).unwrap()
                == std::fs::read(source.join(name)).unwrap(),
            "{name} differs"
        );
    }
    assert_eq!(summary.files_verified, 4);
    assert_eq!(summary.bytes_restored, 3 * (2 << 20) + 6 * (3 << 20));
    // Each blob fetched once: never more than the packs hold, although the
    // files hold four times as much.
    let packs = bytes_below(&fixture.repo().join("data"));
    assert!(summary.bytes_read <= packs, "{summary:?}, packs {packs}");

    // Damage the first blob of the copies: every copy fails, naming it;
    // the other file still restores.
    let index = repo.load_index().await.unwrap();
    let (_, node) = walk(&repo, &snapshot.tree)
        .await
        .into_iter()
        .find(|(path, _)| path.ends_with("a/copy"))
        .unwrap();
    let damaged = node.content[0];
    damage_blob(&fixture, &index, &damaged);
    let target = fixture.dir.path().join("after-damage");
    let result = arca_restic::restore::restore(
        &repo,
        &snapshot,
        &RestoreOptions::new(&target),
        Arc::new(NoProgress),
    )
    .await;
    let Err(Error::RestoreFailed { failures }) = result else {
        panic!("expected a failed restore, got {result:?}");
    };
    let restored = target.join(source.strip_prefix("/").unwrap());
    let failed: Vec<PathBuf> = failures.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        failed,
        vec![
            restored.join("a/copy"),
            restored.join("b/copy"),
            restored.join("c/copy")
        ]
    );
    for failure in &failures {
        assert!(
            failure.reason.contains(&damaged.to_string())
                && failure.reason.contains("authentication"),
            "{failure:?}"
        );
    }
    assert!(
        std::fs::read(restored.join("repeated")).unwrap()
            == std::fs::read(source.join("repeated")).unwrap()
    );
}

#[tokio::test]
async fn wrong_password_is_a_clear_error() {
    if !restic_available() {
        return;
    }
    let fixture = Fixture::new(1, "auto");
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(fixture.repo()));
    let err = ResticRepository::open(backend, b"not the password")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongPassword), "{err}");
    assert!(!err.to_string().contains("not the password"));
}

#[tokio::test]
async fn an_empty_directory_is_not_a_restic_repository() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    assert!(!is_restic_repository(backend.as_ref()).await.unwrap());
    let err = ResticRepository::open(backend, b"x").await.unwrap_err();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");
}

#[tokio::test]
async fn blobs_are_verified_and_cat_shows_restics_structures() {
    if !restic_available() {
        return;
    }
    let fixture = Fixture::new(2, "max");
    let repo = open(&fixture).await;
    let index = repo.load_index().await.unwrap();
    let (data, trees) = index.len();
    assert!(data > 3 && trees > 3, "{data} {trees}");
    // Every pack header agrees with the index, and every blob reads.
    for meta in repo.list_packs().await.unwrap() {
        let id: arca_repo::Id = meta.path.rsplit('/').next().unwrap().parse().unwrap();
        for blob in repo.pack_header(&id, None).await.unwrap() {
            let location = index.get(blob.blob_type, &blob.id).unwrap();
            assert_eq!(
                (location.pack, location.offset, location.length),
                (id, blob.offset, blob.length)
            );
            let plain = repo
                .read_blob(&index, blob.blob_type, &blob.id)
                .await
                .unwrap();
            assert_eq!(plain.len() as u64, location.plaintext_len());
        }
    }
    // --read-data-subset n/m: the three slices together read every pack once.
    let mut read = 0;
    for n in 1..=3 {
        let subset = CheckOptions {
            read_data: ReadData::Nth { n, m: 3 },
        };
        let report = arca_restic::check::check(&repo, &subset, Arc::new(NoProgress))
            .await
            .unwrap();
        assert!(report.is_ok(), "{:?}", report.errors);
        read += report.packs_read;
        assert_eq!(
            report.packs_checked,
            repo.list_packs().await.unwrap().len() as u64
        );
    }
    assert_eq!(read, repo.list_packs().await.unwrap().len() as u64);
    // restic's `cat config` shows the same config.
    let theirs: serde_json::Value =
        serde_json::from_slice(&fixture.restic(&["cat".as_ref(), "config".as_ref()])).unwrap();
    assert_eq!(theirs["id"].as_str().unwrap(), repo.config().id);
    assert_eq!(theirs["version"], 2);
}

/// A migration that meets a damaged restic blob in the middle of a large
/// file (the streaming path) or in a small one (migrated whole) fails,
/// naming the blob, and commits no snapshot; once the pack is whole again
/// the same migration finishes, and the migrated files restore byte for
/// byte.
#[tokio::test]
async fn a_damaged_blob_fails_the_migration_and_a_rerun_after_repair_finishes() {
    if !restic_available() {
        return;
    }
    for damaged_file in ["dir/large", "small"] {
        migrate_with_a_damaged_blob_in(damaged_file).await;
    }
}

async fn migrate_with_a_damaged_blob_in(damaged_file: &str) {
    use arca_repo::Repository;
    use arca_repo::repository::InitOptions;
    use arca_repo::select::SnapshotFilter;

    let fixture = Fixture {
        dir: tempfile::tempdir().unwrap(),
        version: 2,
        xattrs: false,
    };
    fixture.restic(&["init".as_ref()]);
    let source = fixture.source();
    std::fs::create_dir_all(source.join("dir")).unwrap();
    // Several restic blobs (about 1 MiB each) and many more Arca chunks.
    std::fs::write(source.join("dir/large"), common::noise(12 << 20, 21)).unwrap();
    std::fs::write(source.join("small"), b"small file\n").unwrap();
    fixture.restic(&["backup".as_ref(), source.as_os_str()]);

    let repo = open(&fixture).await;
    let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();
    let nodes = walk(&repo, &snapshot.tree).await;
    let content = |name: &str| {
        let (_, node) = nodes.iter().find(|(path, _)| path.ends_with(name)).unwrap();
        node.content.clone()
    };
    assert!(
        content("dir/large").len() >= 3,
        "{:?}",
        content("dir/large")
    );
    let damaged_content = content(damaged_file);
    let damaged = damaged_content[damaged_content.len() / 2];
    let index = repo.load_index().await.unwrap();
    let (pack, whole) = damage_blob(&fixture, &index, &damaged);

    let destination_dir = tempfile::tempdir().unwrap();
    let destination = Repository::init(
        Arc::new(LocalBackend::new(destination_dir.path())),
        b"arca password",
        InitOptions::default(),
    )
    .await
    .unwrap();
    let snapshots = arca_restic::migrate::select(&repo, &[], &SnapshotFilter::default())
        .await
        .unwrap();
    let result = arca_restic::migrate::migrate(&repo, &destination, &snapshots).await;
    match &result {
        Err(error @ Error::Unauthenticated { .. }) => {
            assert!(error.to_string().contains(&damaged.to_string()), "{error}");
        }
        other => panic!("expected a failed authentication, got {other:?}"),
    }
    assert!(destination.list_snapshots().await.unwrap().is_empty());

    std::fs::write(&pack, &whole).unwrap();
    let report = arca_restic::migrate::migrate(&repo, &destination, &snapshots)
        .await
        .unwrap();
    assert_eq!(report.copied.len(), 1);
    let migrated = destination.list_snapshots().await.unwrap();
    let [(_, migrated)] = migrated.as_slice() else {
        panic!("one snapshot expected, got {migrated:?}");
    };
    let target = fixture.dir.path().join("restored");
    let summary = arca_repo::restore::restore(
        &destination,
        migrated,
        &RestoreOptions::new(&target),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(summary.files, 2);
    let restored = target.join(source.strip_prefix("/").unwrap());
    for name in ["dir/large", "small"] {
        assert!(
            std::fs::read(restored.join(name)).unwrap()
                == std::fs::read(source.join(name)).unwrap(),
            "{name} differs"
        );
    }
}
