//! Backups of real directories into real repositories (local backend in a
//! temp dir), checked by reading the snapshot's trees and blobs back: every
//! file type and its metadata, absolute-path trees, incremental backups,
//! files that vanish or grow while being read, excludes and parent selection.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use arca_repo::backup::{BackupOptions, BackupOutcome, backup};
use arca_repo::blob::BlobType;
use arca_repo::check::{CheckOptions, check};
use arca_repo::index::Index;
use arca_repo::progress::{NoProgress, Progress};
use arca_repo::tree::{Node, NodeType, Tree};
use arca_repo::{Id, Repository};

use crate::repo_fixtures::{names, new_repo, node_named, noise, tree_at};

fn options(paths: &[&Path]) -> BackupOptions {
    BackupOptions {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        hostname: "test-host".into(),
        ..BackupOptions::default()
    }
}

async fn run(repo: &Repository, opts: &BackupOptions) -> BackupOutcome {
    backup(repo, opts, Arc::new(NoProgress)).await.unwrap()
}

/// The subtree ID of the directory at absolute `path`.
async fn subtree_id(repo: &Repository, index: &Index, root: &Id, path: &Path) -> Id {
    let parent = tree_at(repo, index, root, path.parent().unwrap()).await;
    node_named(&parent, path.file_name().unwrap())
        .subtree
        .unwrap()
}

/// Concatenated content of a file node.
async fn content(repo: &Repository, index: &Index, node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    for id in &node.content {
        out.extend_from_slice(&repo.read_blob(index, BlobType::Data, id).await.unwrap());
    }
    out
}

fn ns(seconds: i64, nanoseconds: i64) -> i64 {
    seconds * 1_000_000_000 + nanoseconds
}

/// Checks that the snapshot's tree for directory `dir` matches the file
/// system, recursively: entries, types, metadata and file contents.
async fn assert_matches(repo: &Repository, index: &Index, tree: &Tree, dir: &Path) -> usize {
    let mut on_disk: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    on_disk.sort();
    let in_tree: Vec<_> = tree
        .nodes
        .iter()
        .map(|n| n.name.as_bytes().to_vec())
        .collect();
    assert_eq!(in_tree, on_disk, "entries of {}", dir.display());
    let mut checked = 0;
    for node in &tree.nodes {
        let path = dir.join(node.name.as_os_str());
        let meta = fs::symlink_metadata(&path).unwrap();
        let at = path.display();
        assert_eq!(node.mode, meta.mode() & 0o7777, "{at}: mode");
        assert_eq!(
            (node.uid, node.gid),
            (meta.uid(), meta.gid()),
            "{at}: owner"
        );
        assert_eq!(
            node.mtime_ns,
            ns(meta.mtime(), meta.mtime_nsec()),
            "{at}: mtime"
        );
        assert_eq!(
            node.atime_ns, node.mtime_ns,
            "{at}: atime is recorded as mtime by default"
        );
        assert_eq!(
            node.ctime_ns,
            ns(meta.ctime(), meta.ctime_nsec()),
            "{at}: ctime"
        );
        assert_eq!(
            (node.inode, node.device, node.links),
            (meta.ino(), meta.dev(), meta.nlink()),
            "{at}"
        );
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&path)
            .unwrap()
            .map(|name| {
                (
                    name.as_bytes().to_vec(),
                    xattr::get(&path, &name).unwrap().unwrap(),
                )
            })
            .collect();
        xattrs.sort();
        let stored: Vec<_> = node
            .xattrs
            .iter()
            .map(|x| (x.name.as_bytes().to_vec(), x.value.clone()))
            .collect();
        assert_eq!(stored, xattrs, "{at}: xattrs");
        let file_type = meta.file_type();
        match node.node_type {
            NodeType::Dir => {
                assert!(file_type.is_dir(), "{at}");
                let subtree = repo.load_tree(index, &node.subtree.unwrap()).await.unwrap();
                checked += Box::pin(assert_matches(repo, index, &subtree, &path)).await;
            }
            NodeType::File => {
                assert!(file_type.is_file(), "{at}");
                assert_eq!(node.size, meta.size(), "{at}: size");
                assert_eq!(
                    content(repo, index, node).await,
                    fs::read(&path).unwrap(),
                    "{at}: content"
                );
            }
            NodeType::Symlink => {
                assert!(file_type.is_symlink(), "{at}");
                let target = fs::read_link(&path).unwrap();
                assert_eq!(
                    node.link_target.as_ref().unwrap().as_os_str(),
                    target.as_os_str(),
                    "{at}"
                );
            }
            other => {
                use std::os::unix::fs::FileTypeExt;
                let expected = match () {
                    _ if file_type.is_fifo() => NodeType::Fifo,
                    _ if file_type.is_socket() => NodeType::Socket,
                    _ if file_type.is_char_device() => NodeType::CharDevice,
                    _ if file_type.is_block_device() => NodeType::BlockDevice,
                    _ => panic!("{at}: unexpected file type {file_type:?}"),
                };
                assert_eq!(other, expected, "{at}");
                assert_eq!(
                    node.rdev,
                    if expected == NodeType::CharDevice {
                        meta.rdev()
                    } else {
                        0
                    },
                    "{at}"
                );
            }
        }
        if node.node_type != NodeType::File {
            assert!(node.content.is_empty(), "{at}: only files have content");
        }
        checked += 1;
    }
    checked
}

/// A directory with every kind of entry the backup must handle.
fn populate_every_kind(src: &Path) {
    fs::write(src.join("regular"), b"hello, world\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    fs::write(src.join("large"), noise(1_500_000, 1)).unwrap();
    fs::create_dir_all(src.join("dir/nested")).unwrap();
    fs::write(src.join("dir/nested/file"), b"nested").unwrap();
    fs::create_dir(src.join("empty-dir")).unwrap();
    symlink("regular", src.join("symlink")).unwrap();
    symlink("/nonexistent/target", src.join("dangling")).unwrap();
    fs::hard_link(src.join("regular"), src.join("hardlink")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap());
    if nix::unistd::geteuid().is_root() {
        let kind = nix::sys::stat::SFlag::S_IFCHR;
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
        nix::sys::stat::mknod(&src.join("null"), kind, mode, nix::sys::stat::makedev(1, 3))
            .unwrap();
    }
    fs::write(src.join("setuid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("ünïcödé 文件 🎉"), b"unicode").unwrap();
    fs::write(src.join("x".repeat(255)), b"long name").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"latin1-\xe9")), b"not utf-8").unwrap();
    let mut deep = src.join("deep");
    for level in 0..60 {
        deep.push(format!("d{level}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"bottom").unwrap();
    // user.* xattrs where the file system supports them.
    if xattr::set(src.join("regular"), "user.comment", b"backed up").is_ok() {
        xattr::set(src.join("dir"), "user.binary", &[0, 159, 255]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_type_and_its_metadata_is_stored() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    populate_every_kind(&src);
    let repo = new_repo(repo_dir.path()).await;

    let outcome = run(&repo, &options(&[&src])).await;
    assert!(outcome.unreadable.is_empty(), "{:?}", outcome.unreadable);

    let snapshot = &outcome.snapshot;
    assert_eq!(snapshot.paths, vec![src.display().to_string()]);
    assert_eq!(snapshot.hostname, "test-host");
    assert_eq!(snapshot.parent, None);
    assert!(snapshot.program_version.starts_with("arca "));
    let (id, listed) = repo.find_snapshot("latest").await.unwrap();
    assert_eq!((id, &listed), (outcome.snapshot_id, snapshot));

    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &snapshot.tree, &src).await;
    let checked = assert_matches(&repo, &index, &tree, &src).await;
    assert!(checked > 70, "checked {checked} entries");

    let summary = snapshot.summary.as_ref().unwrap();
    // regular, empty, large, dir/nested/file, hardlink, setuid, three odd names, deep/…/bottom.
    assert_eq!(summary.files_new, 10, "{summary:?}");
    assert_eq!(summary.total_files_processed, 10);
    assert_eq!(
        (
            summary.files_changed,
            summary.files_unmodified,
            summary.files_unreadable
        ),
        (0, 0, 0)
    );
    assert!(
        summary.data_blobs >= 1_500_000 / (256 * 1024),
        "the large file has several chunks"
    );
    assert!(summary.data_added >= 1_500_000 && summary.data_added_packed > 0);
}

/// The walker takes an unchanged inode's xattrs from the parent snapshot
/// (same inode, same ctime) instead of reading them; a changed xattr
/// changes the ctime and must be read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xattrs_of_unchanged_files_are_kept_and_changed_ones_read_again() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    populate_every_kind(&src);
    if xattr::get(src.join("regular"), "user.comment").is_err() {
        return; // This file system has no user xattrs; nothing to check here.
    }
    let repo = new_repo(repo_dir.path()).await;
    run(&repo, &options(&[&src])).await;

    xattr::set(src.join("regular"), "user.comment", b"changed").unwrap();
    xattr::remove(src.join("dir"), "user.binary").unwrap();
    xattr::set(src.join("dir/nested"), "user.added", b"new").unwrap();
    let second = run(&repo, &options(&[&src])).await;
    let summary = second.snapshot.summary.as_ref().unwrap();
    assert_eq!(summary.files_new, 0, "{summary:?}");
    assert!(summary.files_unmodified >= 8, "{summary:?}");
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &second.snapshot.tree, &src).await;
    // Every entry's stored xattrs equal what is on disk now: the changed
    // ones and the unchanged ones taken from the parent.
    assert_matches(&repo, &index, &tree, &src).await;
    let regular = node_named(&tree, OsStr::new("regular"));
    assert_eq!(regular.xattrs.len(), 1);
    assert_eq!(regular.xattrs[0].value, b"changed");
}

#[tokio::test]
async fn snapshot_tree_reproduces_absolute_paths_with_real_intermediate_metadata() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (work.path().join("top/a"), work.path().join("top/b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(work.path().join("top/not-a-target")).unwrap();
    fs::write(a.join("f"), b"a").unwrap();
    fs::write(b.join("g"), b"b").unwrap();
    let repo = new_repo(repo_dir.path()).await;

    // Given out of order, twice, and once below another target: recorded
    // sorted and once each, as given (parent selection compares them).
    let snapshot = run(&repo, &options(&[&b, &a, &a.join("f"), &a]))
        .await
        .snapshot;
    let recorded = [
        a.display().to_string(),
        a.join("f").display().to_string(),
        b.display().to_string(),
    ];
    assert_eq!(snapshot.paths, recorded);

    let index = repo.load_index().await.unwrap();
    let root = repo.load_tree(&index, &snapshot.tree).await.unwrap();
    let first = work
        .path()
        .components()
        .nth(1)
        .unwrap()
        .as_os_str()
        .to_owned();
    assert_eq!(
        names(&root),
        vec![first.to_string_lossy().into_owned()],
        "only the way to the targets"
    );
    let top = tree_at(&repo, &index, &snapshot.tree, &work.path().join("top")).await;
    assert_eq!(
        names(&top),
        vec!["a", "b"],
        "intermediate directories hold only the way to the targets"
    );
    let work_tree = tree_at(&repo, &index, &snapshot.tree, work.path()).await;
    let top_node = node_named(&work_tree, OsStr::new("top"));
    let meta = fs::metadata(work.path().join("top")).unwrap();
    assert_eq!(top_node.node_type, NodeType::Dir);
    assert_eq!(
        (top_node.inode, top_node.mode),
        (meta.ino(), meta.mode() & 0o7777)
    );
    assert_eq!(top_node.mtime_ns, ns(meta.mtime(), meta.mtime_nsec()));
    assert_eq!(
        names(&tree_at(&repo, &index, &snapshot.tree, &a).await),
        vec!["f"]
    );
}

#[tokio::test]
async fn unchanged_backup_reads_nothing_and_a_change_reads_only_that_file() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for n in 0..20 {
        fs::write(
            src.join(format!("f{n:02}")),
            noise(10_000 + n * 1000, n as u64),
        )
        .unwrap();
    }
    fs::write(src.join("sub/big"), noise(700_000, 99)).unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let opts = options(&[&src]);

    let first = run(&repo, &opts).await;
    let first_summary = first.snapshot.summary.clone().unwrap();
    assert_eq!(first_summary.files_new, 21);

    let second = run(&repo, &opts).await;
    assert_eq!(second.snapshot.parent, Some(first.snapshot_id));
    let summary = second.snapshot.summary.clone().unwrap();
    assert_eq!(
        (
            summary.files_new,
            summary.files_changed,
            summary.files_unmodified
        ),
        (0, 0, 21),
        "{summary:?}"
    );
    // Directories above the target (like /tmp) may change under other processes.
    assert_eq!(
        (summary.dirs_new, summary.dirs_unmodified.min(2)),
        (0, 2),
        "{summary:?}"
    );
    assert_eq!(summary.data_blobs, 0, "nothing is read or stored again");
    assert_eq!(
        summary.total_bytes_processed,
        first_summary.total_bytes_processed
    );
    let index = repo.load_index().await.unwrap();
    assert_eq!(
        subtree_id(&repo, &index, &second.snapshot.tree, &src).await,
        subtree_id(&repo, &index, &first.snapshot.tree, &src).await,
        "an unchanged directory has the same tree"
    );

    fs::write(src.join("f07"), b"changed").unwrap();
    let third = run(&repo, &opts).await;
    assert_eq!(third.snapshot.parent, Some(second.snapshot_id));
    let summary = third.snapshot.summary.clone().unwrap();
    assert_eq!(
        (
            summary.files_new,
            summary.files_changed,
            summary.files_unmodified
        ),
        (0, 1, 20),
        "{summary:?}"
    );
    assert_eq!(summary.data_blobs, 1);
    let index = repo.load_index().await.unwrap();
    let (before, after) = (&second.snapshot.tree, &third.snapshot.tree);
    assert_ne!(
        subtree_id(&repo, &index, after, &src).await,
        subtree_id(&repo, &index, before, &src).await
    );
    let sub = src.join("sub");
    assert_eq!(
        subtree_id(&repo, &index, after, &sub).await,
        subtree_id(&repo, &index, before, &sub).await
    );
    let tree = tree_at(&repo, &index, &third.snapshot.tree, &src).await;
    assert_matches(&repo, &index, &tree, &src).await;

    let forced = run(
        &repo,
        &BackupOptions {
            force: true,
            ..opts.clone()
        },
    )
    .await;
    let summary = forced.snapshot.summary.unwrap();
    assert_eq!(
        summary.files_changed, 21,
        "--force reads every file: {summary:?}"
    );
    assert_eq!(summary.data_blobs, 0, "but stores nothing new");
}

/// Calls `on_first_read` (once, on a reader thread) after the walk has
/// finished, holding up every read until it returns.
struct HookAfterWalk {
    files: u64,
    walked: Mutex<(bool, bool)>,
    changed: Condvar,
    on_first_read: Box<dyn Fn() + Send + Sync>,
    warnings: Mutex<Vec<(PathBuf, String)>>,
}

impl HookAfterWalk {
    fn new(files: u64, on_first_read: impl Fn() + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(HookAfterWalk {
            files,
            walked: Mutex::new((false, false)),
            changed: Condvar::new(),
            on_first_read: Box::new(on_first_read),
            warnings: Mutex::new(Vec::new()),
        })
    }
}

impl Progress for HookAfterWalk {
    fn set_total(&self, files: u64, _bytes: u64) {
        if files == self.files {
            self.walked.lock().unwrap().0 = true;
            self.changed.notify_all();
        }
    }

    fn add_bytes(&self, _bytes: u64) {
        let mut state = self.walked.lock().unwrap();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
        if !state.1 {
            state.1 = true;
            (self.on_first_read)();
        }
    }

    fn warn(&self, path: &Path, message: &str) {
        self.warnings
            .lock()
            .unwrap()
            .push((path.to_owned(), message.to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_vanishing_before_it_is_read_is_reported_and_skipped() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    // One file per reader thread ahead of the victim (small files have four
    // readers per core): every reader is held up on its first file until the
    // victim is gone, so none can open it early.
    let readers = 4 * std::thread::available_parallelism().unwrap().get();
    for n in 0..=readers {
        fs::write(src.join(format!("a{n:03}")), noise(1000, n as u64)).unwrap();
    }
    let victim = src.join("z-victim");
    fs::write(&victim, b"gone soon").unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let remove = victim.clone();
    let progress = HookAfterWalk::new(readers as u64 + 2, move || {
        fs::remove_file(&remove).unwrap()
    });

    let outcome = backup(&repo, &options(&[&src]), progress.clone())
        .await
        .unwrap();

    assert_eq!(outcome.unreadable.len(), 1, "{:?}", outcome.unreadable);
    assert_eq!(outcome.unreadable[0].0, victim);
    assert!(
        outcome.unreadable[0].1.contains("No such file"),
        "{:?}",
        outcome.unreadable
    );
    assert!(
        progress
            .warnings
            .lock()
            .unwrap()
            .iter()
            .any(|(path, _)| *path == victim)
    );
    let summary = outcome.snapshot.summary.as_ref().unwrap();
    assert_eq!(
        (summary.files_unreadable, summary.files_new),
        (1, readers as u64 + 1)
    );
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &outcome.snapshot.tree, &src).await;
    assert!(!names(&tree).contains(&"z-victim".to_owned()));
    assert_matches(&repo, &index, &tree, &src).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_growing_while_read_is_stored_as_read_with_a_warning() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    let file = src.join("growing");
    let original = noise(2_000_000, 5);
    fs::write(&file, &original).unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let append_to = file.clone();
    let progress = HookAfterWalk::new(1, move || {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&append_to)
            .unwrap();
        f.write_all(&noise(300_000, 6)).unwrap();
    });

    let outcome = backup(&repo, &options(&[&src]), progress.clone())
        .await
        .unwrap();

    assert!(outcome.unreadable.is_empty(), "{:?}", outcome.unreadable);
    let warnings = progress.warnings.lock().unwrap().clone();
    assert!(
        warnings
            .iter()
            .any(|(path, message)| *path == file && message.contains("changed while it was read")),
        "{warnings:?}"
    );
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &outcome.snapshot.tree, &src).await;
    let node = node_named(&tree, OsStr::new("growing"));
    let stored = content(&repo, &index, node).await;
    assert_eq!(node.size, stored.len() as u64, "the size is what was read");
    assert_eq!(
        stored,
        fs::read(&file).unwrap(),
        "the chunker read up to the new end"
    );
    assert_eq!(&stored[..original.len()], &original[..]);
}

/// An unchanged directory keeps its parent's tree without re-encoding it,
/// but only if it holds the same entries: a newly excluded file changes no
/// time stamp, yet its directory's tree must lose it.
#[tokio::test]
async fn unchanged_trees_are_reused_only_with_the_same_entries() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for file in ["sub/a.txt", "sub/b.tmp", "sub/deeper/c", "top"] {
        fs::write(src.join(file), file).unwrap();
    }
    let repo = new_repo(repo_dir.path()).await;
    let first = run(&repo, &options(&[&src])).await.snapshot;
    let second = run(&repo, &options(&[&src])).await.snapshot;
    let index = repo.load_index().await.unwrap();
    let sub = src.join("sub");
    assert_eq!(
        subtree_id(&repo, &index, &second.tree, &src).await,
        subtree_id(&repo, &index, &first.tree, &src).await
    );

    let excluding = BackupOptions {
        excludes: vec!["*.tmp".into()],
        ..options(&[&src])
    };
    let third = run(&repo, &excluding).await.snapshot;
    let index = repo.load_index().await.unwrap();
    assert_eq!(
        names(&tree_at(&repo, &index, &third.tree, &sub).await),
        vec!["a.txt", "deeper"]
    );
    assert_eq!(
        subtree_id(&repo, &index, &third.tree, &sub.join("deeper")).await,
        subtree_id(&repo, &index, &first.tree, &sub.join("deeper")).await,
        "the untouched directory below keeps its tree"
    );
    let summary = third.summary.unwrap();
    assert_eq!(
        (summary.dirs_changed.min(1), summary.files_unmodified),
        (1, 3),
        "{summary:?}"
    );
}

#[tokio::test]
async fn excludes_follow_restic_semantics() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    for dir in [
        "keep",
        "logs/old",
        "node_modules/x",
        "cache",
        "fake-cache",
        "anchored",
    ] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    for file in [
        "keep/a.txt",
        "keep/b.tmp",
        "logs/old/1.log",
        "logs/keep.txt",
        "node_modules/x/y",
        "anchored/z",
    ] {
        fs::write(src.join(file), file).unwrap();
    }
    let mut tag = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n".to_vec();
    fs::write(src.join("cache/CACHEDIR.TAG"), &tag).unwrap();
    fs::write(src.join("cache/blob"), b"cached").unwrap();
    tag[11] = b'0';
    fs::write(src.join("fake-cache/CACHEDIR.TAG"), &tag).unwrap();
    fs::write(src.join("fake-cache/blob"), b"kept").unwrap();
    let exclude_file = work.path().join("excludes");
    fs::write(&exclude_file, "# logs\nlogs/old\n\n*.log\n").unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let opts = BackupOptions {
        excludes: vec![
            "*.tmp".into(),
            "node_modules".into(),
            format!("{}/anchored", src.display()),
            "/anchored".into(),
        ],
        exclude_files: vec![exclude_file],
        exclude_caches: true,
        ..options(&[&src])
    };

    let snapshot = run(&repo, &opts).await.snapshot;

    assert_eq!(snapshot.excludes, opts.excludes);
    let index = repo.load_index().await.unwrap();
    let tree_of = |dir: &str| {
        let path = src.join(dir);
        let (repo, index, root) = (&repo, &index, snapshot.tree);
        async move { names(&tree_at(repo, index, &root, &path).await) }
    };
    assert_eq!(
        tree_of("").await,
        vec!["cache", "fake-cache", "keep", "logs"]
    );
    assert_eq!(tree_of("keep").await, vec!["a.txt"]);
    assert_eq!(tree_of("logs").await, vec!["keep.txt"]);
    assert_eq!(
        tree_of("cache").await,
        vec!["CACHEDIR.TAG"],
        "a tagged cache keeps only its tag"
    );
    assert_eq!(
        tree_of("fake-cache").await,
        vec!["CACHEDIR.TAG", "blob"],
        "a wrong signature is no cache"
    );
}

/// `--exclude-caches` still finds a cache whose tag file is itself excluded:
/// the directory is kept empty, as when the tag is kept and then excluded.
#[tokio::test]
async fn an_excluded_cache_tag_still_marks_the_cache() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir_all(src.join("cache")).unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .unwrap();
    fs::write(src.join("cache/blob"), b"cached").unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let opts = BackupOptions {
        excludes: vec!["CACHEDIR.TAG".into()],
        exclude_caches: true,
        ..options(&[&src])
    };
    let snapshot = run(&repo, &opts).await.snapshot;
    let index = repo.load_index().await.unwrap();
    let cache = tree_at(&repo, &index, &snapshot.tree, &src.join("cache")).await;
    assert!(names(&cache).is_empty(), "{:?}", names(&cache));
}

#[tokio::test]
async fn excluding_a_target_or_its_ancestor_leaves_it_out() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (kept, dropped) = (work.path().join("kept"), work.path().join("skip/inner"));
    fs::create_dir_all(&kept).unwrap();
    fs::create_dir_all(&dropped).unwrap();
    let repo = new_repo(repo_dir.path()).await;
    let opts = BackupOptions {
        excludes: vec!["skip".into()],
        ..options(&[&kept, &dropped])
    };

    let snapshot = run(&repo, &opts).await.snapshot;

    let index = repo.load_index().await.unwrap();
    assert_eq!(
        names(&tree_at(&repo, &index, &snapshot.tree, work.path()).await),
        vec!["kept"]
    );
}

#[tokio::test]
async fn parent_is_the_latest_snapshot_of_the_same_host_and_paths() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    let repo = new_repo(repo_dir.path()).await;

    let first_a = run(&repo, &options(&[&a])).await.snapshot_id;
    let first_b = run(&repo, &options(&[&b])).await;
    assert_eq!(first_b.snapshot.parent, None, "other paths");
    let both = run(&repo, &options(&[&a, &b])).await;
    assert_eq!(both.snapshot.parent, None, "a different set of paths");
    let second_a = run(&repo, &options(&[&a])).await;
    assert_eq!(second_a.snapshot.parent, Some(first_a));
    let other_host = run(
        &repo,
        &BackupOptions {
            hostname: "elsewhere".into(),
            ..options(&[&a])
        },
    )
    .await;
    assert_eq!(other_host.snapshot.parent, None, "other host");
    let explicit = run(
        &repo,
        &BackupOptions {
            parent: Some(first_b.snapshot_id),
            ..options(&[&a])
        },
    )
    .await;
    assert_eq!(explicit.snapshot.parent, Some(first_b.snapshot_id));
    let third_a = run(&repo, &options(&[&a])).await;
    assert_eq!(
        third_a.snapshot.parent,
        Some(explicit.snapshot_id),
        "the latest one"
    );
}

#[tokio::test]
async fn missing_path_fails_before_anything_is_written() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = new_repo(repo_dir.path()).await;
    let missing = work.path().join("missing");

    let err = backup(&repo, &options(&[&missing]), Arc::new(NoProgress))
        .await
        .unwrap_err();

    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(repo.list_snapshots().await.unwrap().is_empty());
}

/// A tmpfs mounted for the life of the value (unmounted on drop, also when a test fails).
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) at `dir`, or
    /// `None` where mounting is not permitted.
    fn new(dir: &Path, size: &str) -> Option<Self> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "arca-test"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| TmpfsMount(dir.to_owned()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Data packs are written to the repository's disk as they fill; when that
/// disk fills up, the backup fails with the reason, adds no snapshot, leaves
/// no partial pack behind, and the repository checks clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_backup_and_leaves_the_repository_as_it_was() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let Some(_mount) = TmpfsMount::new(repo_dir.path(), "3m") else {
        // Mounting needs CAP_SYS_ADMIN; without it there is no small disk to fill.
        return;
    };
    let repo = new_repo(repo_dir.path()).await;
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("small"), b"fits").unwrap();
    run(&repo, &options(&[&src])).await;

    fs::write(src.join("large"), noise(8 << 20, 1)).unwrap();
    let err = backup(&repo, &options(&[&src]), Arc::new(NoProgress))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert_eq!(repo.list_snapshots().await.unwrap().len(), 1);
    let leftovers: Vec<_> = walkdir(repo_dir.path())
        .into_iter()
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let report = check(&repo, &CheckOptions::default(), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.errors);
}

/// Every path under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        }
        found.push(path);
    }
    found
}

#[tokio::test]
async fn one_file_system_keeps_mount_points_as_empty_directories() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    let mount_point = src.join("mnt");
    fs::create_dir_all(&mount_point).unwrap();
    fs::write(src.join("a"), b"same file system").unwrap();
    let Some(_mount) = TmpfsMount::new(&mount_point, "1m") else {
        // Mounting needs CAP_SYS_ADMIN; without it there is nothing to cross.
        return;
    };
    fs::write(mount_point.join("inner"), b"another file system").unwrap();
    let repo = new_repo(repo_dir.path()).await;

    let crossing = run(&repo, &options(&[&src])).await.snapshot;
    let staying = run(
        &repo,
        &BackupOptions {
            one_file_system: true,
            ..options(&[&src])
        },
    )
    .await
    .snapshot;

    let index = repo.load_index().await.unwrap();
    assert_eq!(
        names(&tree_at(&repo, &index, &crossing.tree, &mount_point).await),
        vec!["inner"]
    );
    assert_eq!(
        names(&tree_at(&repo, &index, &staying.tree, &src).await),
        vec!["a", "mnt"]
    );
    assert!(
        tree_at(&repo, &index, &staying.tree, &mount_point)
            .await
            .nodes
            .is_empty()
    );
}

#[tokio::test]
async fn unchanged_backup_of_many_directories_finds_every_parent_tree() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    // More directories than the walker loads ahead, each with a subdirectory.
    for d in 0..150 {
        let dir = src.join(format!("d{d:03}"));
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("a"), format!("a{d}")).unwrap();
        fs::write(dir.join("b"), format!("b{d}")).unwrap();
        fs::write(dir.join("sub/c"), format!("c{d}")).unwrap();
    }
    let repo = new_repo(repo_dir.path()).await;
    run(&repo, &options(&[&src])).await;
    // Some directories of the parent snapshot are gone, some excluded now:
    // their trees are loaded ahead and must not get in the way.
    for d in 20..30 {
        fs::remove_dir_all(src.join(format!("d{d:03}"))).unwrap();
    }
    let opts = BackupOptions {
        excludes: vec!["d03?".into()],
        ..options(&[&src])
    };

    let summary = run(&repo, &opts).await.snapshot.summary.unwrap();

    assert_eq!(
        (summary.files_new, summary.files_changed),
        (0, 0),
        "{summary:?}"
    );
    assert_eq!(summary.files_unmodified, 130 * 3);
    assert_eq!(summary.data_blobs, 0);
}

/// An unchanged re-backup opens no file and stores no tree below its
/// target: files keep their parent's content unread, directories their
/// parent's trees (issue 23). More entries than the metadata prefetch keeps
/// at once, so its threads wait for the walker to take their listings.
#[tokio::test]
async fn unchanged_rebackup_opens_no_file_and_stores_no_tree() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    let mut dirs = vec![src.clone()];
    for d in 0..24 {
        let dir = src.join(format!("d{d:02}"));
        dirs.push(dir.clone());
        if d % 4 == 0 {
            dirs.push(dir.join("deeper"));
        }
    }
    let mut files = 0;
    for dir in &dirs {
        fs::create_dir_all(dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(format!("f{f:03}")), format!("{f} in {dir:?}")).unwrap();
            files += 1;
        }
    }
    let repo = new_repo(repo_dir.path()).await;
    let first = run(&repo, &options(&[&src])).await.snapshot;
    assert_eq!(first.summary.unwrap().files_new, files);

    let opens = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    for dir in &dirs {
        opens.add_watch(dir, AddWatchFlags::IN_OPEN).unwrap();
    }
    let second = run(&repo, &options(&[&src])).await.snapshot;
    let mut opened_files = Vec::new();
    while let Ok(events) = opens.read_events() {
        opened_files.extend(
            events
                .into_iter()
                .filter(|event| !event.mask.contains(AddWatchFlags::IN_ISDIR))
                .filter_map(|event| event.name),
        );
    }
    assert!(
        opened_files.is_empty(),
        "no file is read, yet {} were opened, first {:?}",
        opened_files.len(),
        &opened_files[..opened_files.len().min(3)]
    );

    let summary = second.summary.unwrap();
    assert_eq!(
        (
            summary.files_new,
            summary.files_changed,
            summary.files_unmodified
        ),
        (0, 0, files),
        "{summary:?}"
    );
    assert_eq!(
        summary.dirs_unmodified.min(dirs.len() as u64),
        dirs.len() as u64
    );
    assert_eq!(summary.data_blobs, 0);
    // Only the listings above the target may be new: another process may
    // have changed /tmp since.
    let above = src.ancestors().count() as u64 - 1;
    assert!(summary.tree_blobs <= above, "{summary:?}");
    let index = repo.load_index().await.unwrap();
    assert_eq!(
        subtree_id(&repo, &index, &second.tree, &src).await,
        subtree_id(&repo, &index, &first.tree, &src).await,
    );
}

/// Counts the bytes the backup reports as processed: a file's bytes once,
/// whether read or taken from the parent snapshot.
#[derive(Default)]
struct CountBytes(std::sync::atomic::AtomicU64);

impl Progress for CountBytes {
    fn add_bytes(&self, bytes: u64) {
        self.0
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Files of 1 MiB and more are read ahead of the walk (`backup::ahead`), in
/// another order than the walker's: the snapshot must still match the tree,
/// and a large file the parent snapshot holds unchanged must not be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_read_ahead_are_stored_in_place_and_unchanged_ones_are_not_read() {
    let (repo_dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = work.path().join("src");
    fs::create_dir_all(src.join("a-small")).unwrap();
    fs::create_dir_all(src.join("b-large/deeper")).unwrap();
    for n in 0..200 {
        let file = src.join(format!("a-small/{n:03}"));
        fs::write(file, noise(3000 + n * 10, n as u64)).unwrap();
    }
    for n in 0..6 {
        let file = src.join(format!("b-large/{n}"));
        fs::write(file, noise(1_200_000 + n * 100_000, 1000 + n as u64)).unwrap();
    }
    fs::write(src.join("b-large/deeper/last"), noise(2_500_000, 2000)).unwrap();
    let total: u64 = walkdir(&src)
        .iter()
        .filter_map(|path| fs::symlink_metadata(path).ok())
        .filter(|metadata| metadata.is_file())
        .map(|metadata| metadata.len())
        .sum();
    let repo = new_repo(repo_dir.path()).await;
    let opts = options(&[&src]);

    let counted = Arc::new(CountBytes::default());
    let first = backup(&repo, &opts, counted.clone()).await.unwrap();
    assert_eq!(counted.0.load(std::sync::atomic::Ordering::Relaxed), total);
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &first.snapshot.tree, &src).await;
    assert_matches(&repo, &index, &tree, &src).await;

    // A database-like rewrite in place: same inode, new content.
    let changed = src.join("b-large/3");
    let mut bytes = fs::read(&changed).unwrap();
    bytes[500_000..500_100].copy_from_slice(&[7; 100]);
    fs::write(&changed, &bytes).unwrap();

    let counted = Arc::new(CountBytes::default());
    let second = backup(&repo, &opts, counted.clone()).await.unwrap();
    assert_eq!(
        counted.0.load(std::sync::atomic::Ordering::Relaxed),
        total,
        "each file's bytes once: the unchanged large files were not read"
    );
    let summary = second.snapshot.summary.clone().unwrap();
    assert_eq!(
        (summary.files_changed, summary.files_unmodified),
        (1, 206),
        "{summary:?}"
    );
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &second.snapshot.tree, &src).await;
    assert_matches(&repo, &index, &tree, &src).await;
}
