//! The repository format end to end, on the real local backend: a file is
//! chunked, packed, indexed and snapshotted by hand through the public API,
//! then read back through a freshly opened repository; the on-disk layout,
//! file naming and confidentiality are checked on the actual files; damaged
//! files on disk produce errors naming them.

use std::path::Path;
use std::sync::Arc;

use arca_crypto::{Id, KdfParams};
use arca_repo::blob::{BlobType, encode_blob};
use arca_repo::index::IndexFile;
use arca_repo::pack::PackWriter;
use arca_repo::repository::InitOptions;
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::{FileName, Node, NodeType, Tree};
use arca_repo::{Error, Repository};
use arca_store::{Backend, StoreOptions};

const PASSWORD: &[u8] = b"format test password";
/// Appears in the backed-up file; must never appear in the repository.
const MARKER: &[u8] = b"ARCA-PLAINTEXT-MARKER-7f3c";

fn backend(dir: &Path) -> Arc<dyn Backend> {
    arca_store::open(dir.to_str().unwrap(), &StoreOptions::default())
        .unwrap()
        .backend
}

fn options() -> InitOptions {
    InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        chunker: arca_chunk::ChunkerParams {
            min: 4096,
            avg: 16384,
            max: 65536,
        },
        ..InitOptions::default()
    }
}

/// A fresh repository in `dir` with [`options`].
async fn new_repo(dir: &Path) -> Repository {
    Repository::init(backend(dir), PASSWORD, options())
        .await
        .unwrap()
}

/// 300 KiB: compressible lines with the marker, then incompressible bytes.
fn file_content() -> Vec<u8> {
    let mut content = Vec::new();
    for i in 0..2000 {
        content.extend_from_slice(format!("line {i} ").as_bytes());
        content.extend_from_slice(MARKER);
        content.push(b'\n');
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    while content.len() < 300 * 1024 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        content.extend_from_slice(&state.to_le_bytes());
    }
    content
}

fn node(name: &str, node_type: NodeType) -> Node {
    Node {
        name: FileName::from(name),
        node_type,
        mode: 0o640,
        uid: 1000,
        gid: 1000,
        user: Some("alice".into()),
        group: Some("staff".into()),
        mtime_ns: 1_763_935_740_000_000_001,
        atime_ns: 1_763_935_740_000_000_002,
        ctime_ns: 1_763_935_740_000_000_003,
        size: 0,
        inode: 12,
        device: 34,
        links: 1,
        rdev: 0,
        link_target: None,
        xattrs: vec![],
        content: vec![],
        subtree: None,
    }
}

/// Writes blobs of one type into one pack plus an index file for it.
async fn store(repo: &Repository, blob_type: BlobType, plaintexts: &[Vec<u8>]) -> Vec<Id> {
    let key = repo.blob_key().unwrap();
    let mut writer = PackWriter::new(blob_type, key.clone());
    let mut ids = Vec::new();
    for plaintext in plaintexts {
        let id = repo.key().content_id(plaintext);
        ids.push(id);
        writer
            .add(&encode_blob(&key, blob_type, id, plaintext, repo.compression()).unwrap())
            .unwrap();
    }
    let pack = repo
        .save_pack(writer.finish(repo.key()).unwrap())
        .await
        .unwrap();
    repo.save_index(&IndexFile { packs: vec![pack] })
        .await
        .unwrap();
    ids
}

/// `content` cut into chunks by the repository's chunker.
fn chunks_of(repo: &Repository, content: &[u8]) -> Vec<Vec<u8>> {
    let mut rest = content;
    let mut chunks = Vec::new();
    for len in repo.chunker().cut_points(content) {
        let (chunk, after) = rest.split_at(len);
        chunks.push(chunk.to_vec());
        rest = after;
    }
    chunks
}

/// Backs up `content` as `/data/file.txt` by hand; returns the snapshot ID.
async fn backup_by_hand(repo: &Repository, content: &[u8]) -> Id {
    let chunks = chunks_of(repo, content);
    assert!(chunks.len() > 3, "the test file spans several chunks");
    let content_ids = store(repo, BlobType::Data, &chunks).await;

    let mut file = node("file.txt", NodeType::File);
    file.size = content.len() as u64;
    file.content = content_ids;
    let mut odd = node("odd", NodeType::Symlink);
    odd.name = FileName::from_bytes(b"odd-\xff".to_vec());
    odd.link_target = Some(FileName::from_bytes(b"target-\xfe".to_vec()));
    let leaf = Tree::new(vec![file, odd]).encode();
    let mut dir = node("data", NodeType::Dir);
    dir.subtree = Some(repo.key().content_id(&leaf));
    let root = Tree::new(vec![dir]).encode();
    let tree_ids = store(repo, BlobType::Tree, &[leaf, root]).await;

    let snapshot = Snapshot {
        time: "2026-11-23T22:09:00Z".parse().unwrap(),
        time_offset_seconds: 3600,
        parent: None,
        original: None,
        tree: tree_ids[1],
        paths: vec!["/data".into()],
        hostname: "node-a".into(),
        username: "root".into(),
        uid: 0,
        gid: 0,
        tags: vec!["nightly".into()],
        excludes: vec![],
        program_version: "arca test".into(),
        summary: None,
    };
    repo.save_snapshot(&snapshot).await.unwrap()
}

/// Every file under `dir`, as (path relative to `dir`, bytes).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                out.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn corrupt_what<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Corrupt { what, .. }) => what,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_survives_the_round_trip_through_a_reopened_repository() {
    let dir = tempfile::tempdir().unwrap();
    let content = file_content();
    let snapshot_id = {
        let repo = new_repo(dir.path()).await;
        backup_by_hand(&repo, &content).await
    };

    let repo = Repository::open(backend(dir.path()), PASSWORD)
        .await
        .unwrap();
    let (id, snapshot) = repo.find_snapshot("latest").await.unwrap();
    assert_eq!(id, snapshot_id);
    assert_eq!(repo.find_snapshot(&id.short()).await.unwrap().0, id);
    assert_eq!(snapshot.tags, ["nightly"]);
    let index = repo.load_index().await.unwrap();
    let root = repo.load_tree(&index, &snapshot.tree).await.unwrap();
    assert_eq!(root.nodes.len(), 1);
    let leaf = repo
        .load_tree(&index, &root.nodes[0].subtree.unwrap())
        .await
        .unwrap();
    let file = leaf
        .nodes
        .iter()
        .find(|n| n.name == FileName::from("file.txt"))
        .unwrap();
    let mut restored = Vec::new();
    for id in &file.content {
        restored.extend_from_slice(&repo.read_blob(&index, BlobType::Data, id).await.unwrap());
    }
    assert_eq!(restored, content);
    let odd = leaf
        .nodes
        .iter()
        .find(|n| n.node_type == NodeType::Symlink)
        .unwrap();
    assert_eq!(odd.name.as_bytes(), b"odd-\xff");
    assert_eq!(odd.link_target.as_ref().unwrap().as_bytes(), b"target-\xfe");
}

#[tokio::test]
async fn files_are_laid_out_named_and_confidential_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let content = file_content();
    let repo = new_repo(dir.path()).await;
    backup_by_hand(&repo, &content).await;

    let files = files(dir.path());
    let count = |prefix: &str| files.iter().filter(|(p, _)| p.starts_with(prefix)).count();
    assert_eq!(count("config"), 1);
    assert_eq!(count("keys/"), 1);
    assert_eq!(count("snapshots/"), 1);
    assert_eq!(count("index/"), 2);
    assert_eq!(count("data/"), 2, "one data pack, one tree pack");
    assert_eq!(files.len(), 7, "{files:?}");

    let chunks = chunks_of(&repo, &content);
    for (path, bytes) in &files {
        if path != "config" {
            let name = path.rsplit('/').next().unwrap();
            assert_eq!(
                name,
                Id::storage_id(bytes).to_hex(),
                "{path} is named by its BLAKE3"
            );
        }
        if let Some(rest) = path.strip_prefix("data/") {
            assert_eq!(
                &rest[..3],
                &format!("{}/", &rest[3..5]),
                "{path} sits in its 2-hex-digit directory"
            );
        }
        assert!(!contains(bytes, MARKER), "{path} leaks plaintext");
        for chunk in &chunks {
            // A storage ID is exactly an unkeyed BLAKE3 hash.
            let unkeyed = Id::storage_id(chunk);
            assert!(
                !contains(bytes, &unkeyed.0),
                "{path} holds an unkeyed plaintext hash"
            );
            assert!(
                !contains(bytes, unkeyed.to_hex().as_bytes()),
                "{path} holds an unkeyed plaintext hash (hex)"
            );
        }
    }
    // The compressible first chunk was stored compressed.
    let index = repo.load_index().await.unwrap();
    let first = index
        .get(BlobType::Data, &repo.key().content_id(&chunks[0]))
        .unwrap();
    assert!(first.uncompressed_length.is_some());
    assert!(
        index
            .iter()
            .any(|(_, _, location)| location.uncompressed_length.is_none()),
        "random chunks stay plain"
    );
}

#[tokio::test]
async fn opening_needs_a_repository_and_the_password() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Repository::open(backend(dir.path()), PASSWORD).await,
        Err(Error::NotARepository { .. })
    ));
    new_repo(dir.path()).await;
    assert!(matches!(
        Repository::init(backend(dir.path()), PASSWORD, options()).await,
        Err(Error::AlreadyInitialized { .. })
    ));
    assert!(matches!(
        Repository::open(backend(dir.path()), b"not it").await,
        Err(Error::WrongPassword)
    ));
}

#[tokio::test]
async fn damaged_files_on_disk_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let content = file_content();
    let repo = new_repo(dir.path()).await;
    let snapshot_id = backup_by_hand(&repo, &content).await;
    let index = repo.load_index().await.unwrap();
    let (_, snapshot) = repo.find_snapshot("latest").await.unwrap();

    // A truncated tree pack: reading the root tree names the pack.
    let root = index.get(BlobType::Tree, &snapshot.tree).unwrap();
    let pack_path = Repository::pack_path(&root.pack);
    let on_disk = dir.path().join(&pack_path);
    let bytes = std::fs::read(&on_disk).unwrap();
    std::fs::write(&on_disk, &bytes[..root.offset as usize + 10]).unwrap();
    let what = corrupt_what(repo.load_tree(&index, &snapshot.tree).await);
    assert!(what.contains(&pack_path), "{what}");
    let what = corrupt_what(repo.load_pack_header(&root.pack).await);
    assert!(what.contains(&pack_path), "{what}");

    // A flipped byte in the snapshot: listing names the file.
    let snapshot_path = format!("snapshots/{snapshot_id}");
    let on_disk = dir.path().join(&snapshot_path);
    let mut bytes = std::fs::read(&on_disk).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&on_disk, &bytes).unwrap();
    assert_eq!(corrupt_what(repo.list_snapshots().await), snapshot_path);

    // A truncated index file: loading the index names it.
    let index_files = repo.list_index_files().await.unwrap();
    let index_path = index_files[0].path.clone();
    let on_disk = dir.path().join(&index_path);
    let bytes = std::fs::read(&on_disk).unwrap();
    std::fs::write(&on_disk, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(corrupt_what(repo.load_index().await), index_path);
}
