//! Restore against real repositories (local backend in a temp dir), real
//! backups and real files: every file type round-trips, include/exclude,
//! sparse files, `--verify`, and restoring into an existing directory.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_repo::progress::NoProgress;
use arca_repo::restore::{RestoreOptions, restore, verify_file};
use arca_repo::{Error, Repository};
use filetime::FileTime;

use crate::repo_fixtures::{
    backup_dir, new_repo, node_named, noise, restore_into, restored, tree_at, tree_diff,
};

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Whether `dir`'s filesystem takes `user.*` xattrs.
fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    fs::remove_file(probe).unwrap();
    ok
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Builds a tree with every kind of entry. Returns the relative paths that
/// restore deliberately skips (sockets, devices when not root).
fn build_source(src: &Path) -> Vec<PathBuf> {
    let mut skipped = Vec::new();
    fs::create_dir_all(src.join("dir/sub")).unwrap();
    fs::create_dir(src.join("empty-dir")).unwrap();
    fs::write(src.join("small.txt"), b"hello, restore\n").unwrap();
    fs::write(src.join("empty"), b"").unwrap();
    // Several chunks and more than one pack.
    fs::write(src.join("dir/big.bin"), noise(2_500_000, 1)).unwrap();
    // The same content twice: deduplicated blobs written to two files.
    fs::write(src.join("dir/sub/copy-a"), noise(300_000, 2)).unwrap();
    fs::write(src.join("dir/sub/copy-b"), noise(300_000, 2)).unwrap();
    fs::write(
        src.join("compressible.txt"),
        "line of text\n".repeat(50_000),
    )
    .unwrap();
    // Hardlinks, across directories.
    fs::write(src.join("linked"), b"one inode, three names").unwrap();
    fs::hard_link(src.join("linked"), src.join("dir/linked-2")).unwrap();
    fs::hard_link(src.join("linked"), src.join("dir/sub/linked-3")).unwrap();
    symlink("small.txt", src.join("symlink-rel")).unwrap();
    symlink("/nonexistent/target", src.join("symlink-dangling")).unwrap();
    nix::unistd::mkfifo(
        &src.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(src.join("socket")).unwrap();
    skipped.push(PathBuf::from("socket"));
    if is_root() {
        let dev = nix::sys::stat::makedev(1, 3);
        nix::sys::stat::mknod(
            &src.join("null-dev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            dev,
        )
        .unwrap();
        // Ownership other than the restoring user's.
        std::os::unix::fs::lchown(src.join("small.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(src.join("symlink-rel"), Some(4321), Some(8765)).unwrap();
    }
    // Names: unicode, 255 bytes, not UTF-8.
    fs::write(src.join("ünïcødé ✓"), b"u").unwrap();
    fs::write(src.join("n".repeat(255)), b"long").unwrap();
    fs::write(src.join(OsStr::from_bytes(b"bad-\xff-utf8")), b"raw").unwrap();
    // Deep nesting.
    let mut deep = src.join("deep");
    for level in 0..40 {
        deep.push(format!("l{level}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"down here").unwrap();
    if xattrs_supported(src) {
        xattr::set(src.join("small.txt"), "user.note", b"kept").unwrap();
        xattr::set(src.join("dir"), "user.dir-note", b"\x00binary\xff").unwrap();
    }
    // Modes, including setuid and a read-only directory with content.
    fs::set_permissions(src.join("small.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(src.join("dir/big.bin"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(src.join("empty"), fs::Permissions::from_mode(0o000)).unwrap();
    // Times last (after all content), with nanoseconds; directories too.
    set_mtime(&src.join("small.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&src.join("symlink-rel"), 1_500_000_000, 1);
    set_mtime(&src.join("dir/sub"), 1_400_000_000, 999_999_999);
    fs::set_permissions(src.join("dir/sub"), fs::Permissions::from_mode(0o555)).unwrap();
    set_mtime(&src.join("dir"), 1_300_000_000, 42);
    set_mtime(&src.join("empty-dir"), 1_200_000_000, 7);
    skipped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_type_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let skipped = build_source(&src);
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    let target = tmp.path().join("target");
    let mut opts = RestoreOptions::new(&target);
    opts.verify = true;
    opts.owner = is_root();
    let summary = restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();

    let skipped_refs: Vec<&Path> = skipped.iter().map(PathBuf::as_path).collect();
    let differences = tree_diff::diff(&src, &restored(&target, &src), &skipped_refs);
    assert!(
        differences.is_empty(),
        "differences:\n{}",
        differences.join("\n")
    );
    assert!(
        summary
            .skipped
            .iter()
            .any(|(path, why)| path.ends_with("socket") && why.contains("socket")),
        "{:?}",
        summary.skipped
    );
    assert_eq!(summary.hardlinks, 2);
    assert!(summary.files_verified >= 10, "{summary:?}");
    assert!(summary.packs_read >= 2, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_select_by_snapshot_path() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("keep/inner")).unwrap();
    fs::create_dir_all(src.join("drop")).unwrap();
    fs::write(src.join("keep/a.txt"), b"a").unwrap();
    fs::write(src.join("keep/a.log"), b"log").unwrap();
    fs::write(src.join("keep/inner/b.txt"), b"b").unwrap();
    fs::write(src.join("drop/c.txt"), b"c").unwrap();
    fs::write(src.join("top.txt"), b"top").unwrap();
    set_mtime(&src.join("keep"), 1_000_000_000, 5);
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    // Include one directory by absolute snapshot path, exclude by basename glob.
    let target = tmp.path().join("t1");
    let mut opts = RestoreOptions::new(&target);
    opts.includes = vec![format!("{}/keep", src.display())];
    opts.excludes = vec!["*.log".to_owned()];
    restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    let out = restored(&target, &src);
    assert_eq!(fs::read(out.join("keep/a.txt")).unwrap(), b"a");
    assert_eq!(fs::read(out.join("keep/inner/b.txt")).unwrap(), b"b");
    assert!(!out.join("keep/a.log").exists());
    assert!(!out.join("drop").exists());
    assert!(!out.join("top.txt").exists());
    // The included directory keeps its own metadata.
    assert_eq!(fs::metadata(out.join("keep")).unwrap().mtime_nsec(), 5);

    // An unanchored include keeps the parent directories of what it matches.
    let target = tmp.path().join("t2");
    let mut opts = RestoreOptions::new(&target);
    opts.includes = vec!["b.txt".to_owned()];
    restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    let out = restored(&target, &src);
    assert_eq!(fs::read(out.join("keep/inner/b.txt")).unwrap(), b"b");
    assert!(!out.join("keep/a.txt").exists());
    assert!(!out.join("top.txt").exists());

    // Excluding a directory excludes everything below it.
    let target = tmp.path().join("t3");
    let mut opts = RestoreOptions::new(&target);
    opts.excludes = vec!["keep".to_owned()];
    restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    let out = restored(&target, &src);
    assert!(!out.join("keep").exists());
    assert_eq!(fs::read(out.join("drop/c.txt")).unwrap(), b"c");
    assert_eq!(fs::read(out.join("top.txt")).unwrap(), b"top");

    // A bad pattern is an error before anything is written.
    let target = tmp.path().join("t4");
    let mut opts = RestoreOptions::new(&target);
    opts.excludes = vec!["[".to_owned()];
    let err = restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_runs_restore_as_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    // 8 MiB of zeros between two runs of data.
    let mut content = noise(200_000, 3);
    content.extend(std::iter::repeat_n(0u8, 8 * 1024 * 1024));
    content.extend(noise(200_000, 4));
    fs::write(src.join("sparse"), &content).unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    let target = tmp.path().join("target");
    restore_into(&repo, &snapshot, &target).await.unwrap();
    let restored_file = restored(&target, &src).join("sparse");
    assert!(
        fs::read(&restored_file).unwrap() == content,
        "content differs"
    );
    let meta = fs::metadata(&restored_file).unwrap();
    assert_eq!(meta.len(), content.len() as u64);
    // Allocated bytes (512-byte blocks) well below the logical size: the zero
    // chunks inside the run were skipped. Chunk boundaries around the data are
    // not aligned to the zeros, so allow some allocated zeros at the edges.
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < content.len() as u64 / 2,
        "allocated {allocated} of {} bytes",
        content.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_file_changed_after_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let content = noise(700_000, 5);
    fs::write(src.join("f"), &content).unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;
    let target = tmp.path().join("target");
    restore_into(&repo, &snapshot, &target).await.unwrap();
    let file = restored(&target, &src).join("f");

    // The file's blobs, as the snapshot lists them.
    let index = repo.load_index().await.unwrap();
    let tree = tree_at(&repo, &index, &snapshot.tree, &src).await;
    let node = node_named(&tree, OsStr::new("f"));
    assert!(node.content.len() > 1, "want a multi-blob file");
    let mut blobs = Vec::new();
    for id in &node.content {
        let len = repo
            .read_blob(&index, arca_repo::blob::BlobType::Data, id)
            .await
            .unwrap()
            .len() as u64;
        blobs.push((*id, len));
    }
    verify_file(repo.key(), &file, &blobs).unwrap();

    // One flipped byte in the middle of the second blob.
    let mut tampered = content.clone();
    let second_start = blobs[0].1 as usize;
    tampered[second_start + 10] ^= 1;
    fs::write(&file, &tampered).unwrap();
    let err = verify_file(repo.key(), &file, &blobs).unwrap_err();
    let Error::VerifyFailed { path, reason } = &err else {
        panic!("{err}")
    };
    assert_eq!(path, &file);
    assert!(reason.contains(&blobs[1].0.to_string()), "{reason}");
    assert!(
        reason.contains(&format!("bytes {second_start}..")),
        "{reason}"
    );

    // Appended bytes and truncation are caught too.
    let mut longer = content.clone();
    longer.push(0);
    fs::write(&file, &longer).unwrap();
    let err = verify_file(repo.key(), &file, &blobs).unwrap_err();
    assert!(err.to_string().contains("longer"), "{err}");
    fs::write(&file, &content[..content.len() - 1]).unwrap();
    let err = verify_file(repo.key(), &file, &blobs).unwrap_err();
    assert!(err.to_string().contains("file ends at byte"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_an_existing_directory_replaces_only_snapshot_items() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/f"), b"from the snapshot").unwrap();
    fs::write(src.join("g"), b"also from the snapshot").unwrap();
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    let target = tmp.path().join("target");
    let out = restored(&target, &src);
    fs::create_dir_all(out.join("d")).unwrap();
    fs::write(
        out.join("d/f"),
        b"stale content that is longer than the snapshot's",
    )
    .unwrap();
    fs::write(out.join("d/unrelated"), b"mine").unwrap();
    // A symlink where the snapshot has a file must not be written through.
    let outside = tmp.path().join("outside");
    fs::write(&outside, b"do not touch").unwrap();
    symlink(&outside, out.join("g")).unwrap();

    let mut opts = RestoreOptions::new(&target);
    opts.overwrite = false;
    let err = restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap_err();
    let failures = failures_of(&err);
    let failed = failed_paths(failures);
    assert_eq!(
        failed,
        vec![out.join("d/f").as_path(), out.join("g").as_path()],
        "{err}"
    );
    assert!(err.to_string().contains("overwriting is off"), "{err}");
    assert_eq!(
        fs::read(out.join("d/f")).unwrap(),
        b"stale content that is longer than the snapshot's"
    );

    restore_into(&repo, &snapshot, &target).await.unwrap();
    assert_eq!(fs::read(out.join("d/f")).unwrap(), b"from the snapshot");
    assert_eq!(fs::read(out.join("g")).unwrap(), b"also from the snapshot");
    assert!(
        !fs::symlink_metadata(out.join("g"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&outside).unwrap(), b"do not touch");
    assert_eq!(fs::read(out.join("d/unrelated")).unwrap(), b"mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pack_fails_the_restore_naming_the_file_and_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("data"), noise(200_000, 6)).unwrap();
    fs::write(src.join("other"), b"small").unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;
    let index = repo.load_index().await.unwrap();
    // Delete every data pack.
    let data_packs: Vec<_> = index
        .iter()
        .filter(|(t, _, _)| *t == arca_repo::blob::BlobType::Data)
        .map(|(_, _, loc)| loc.pack)
        .collect();
    for pack in &data_packs {
        fs::remove_file(repo_dir.join(Repository::pack_path(pack))).ok();
    }
    let target = tmp.path().join("target");
    let err = restore_into(&repo, &snapshot, &target).await.unwrap_err();
    let failures = failures_of(&err);
    let out = restored(&target, &src);
    let failed = failed_paths(failures);
    assert_eq!(
        failed,
        vec![out.join("data").as_path(), out.join("other").as_path()],
        "{err}"
    );
    assert!(
        failures[0].reason.contains("data blob") && failures[0].reason.contains("pack"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_small_files_sharing_packs_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for dir in 0..20 {
        fs::create_dir_all(src.join(format!("d{dir}"))).unwrap();
        for file in 0..150 {
            let content = format!("file {file} in directory {dir}\n").repeat(file % 7 + 1);
            fs::write(src.join(format!("d{dir}/f{file}")), content).unwrap();
        }
    }
    let repo = new_repo(&tmp.path().join("repo")).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;
    let target = tmp.path().join("target");
    let mut opts = RestoreOptions::new(&target);
    opts.verify = true;
    let summary = restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((summary.files, summary.files_verified), (3000, 3000));
    let differences = tree_diff::diff(&src, &restored(&target, &src), &[]);
    assert!(
        differences.is_empty(),
        "differences:\n{}",
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_in_many_files_restores_everywhere_and_a_damaged_one_fails_each_file_holding_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    // The same content in three directories, and one block (larger than the
    // largest chunk, so each repetition is cut alike) many times in one file.
    let copy = noise(400_000, 31);
    for dir in ["a", "b", "c"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        fs::write(src.join(dir).join("copy"), &copy).unwrap();
    }
    fs::write(src.join("repeated"), noise(600_000, 32).repeat(8)).unwrap();
    let repo_dir = tmp.path().join("repo");
    let repo = new_repo(&repo_dir).await;
    let (_, snapshot) = backup_dir(&repo, &src).await;

    let target = tmp.path().join("target");
    let mut opts = RestoreOptions::new(&target);
    opts.verify = true;
    let summary = restore(&repo, &snapshot, &opts, Arc::new(NoProgress))
        .await
        .unwrap();
    let out = restored(&target, &src);
    for name in ["a/copy", "b/copy", "c/copy", "repeated"] {
        assert!(
            fs::read(out.join(name)).unwrap() == fs::read(src.join(name)).unwrap(),
            "{name} differs"
        );
    }
    assert_eq!(summary.files_verified, 4);
    assert_eq!(summary.bytes_restored, 3 * 400_000 + 8 * 600_000);
    // Every blob read once although the files hold it many times.
    let stored: u64 = fs::read_dir(repo_dir.join("data"))
        .unwrap()
        .flat_map(|dir| fs::read_dir(dir.unwrap().path()).unwrap())
        .map(|pack| pack.unwrap().metadata().unwrap().len())
        .sum();
    assert!(summary.bytes_read <= stored, "{summary:?}, packs {stored}");

    // Damage the first blob of the copies: all three fail, naming it, and
    // the other file is still restored.
    let index = repo.load_index().await.unwrap();
    let dir_a = tree_at(&repo, &index, &snapshot.tree, &src.join("a")).await;
    let damaged = node_named(&dir_a, OsStr::new("copy")).content[0];
    let location = index
        .get(arca_repo::blob::BlobType::Data, &damaged)
        .unwrap();
    let pack = repo_dir.join(Repository::pack_path(&location.pack));
    let mut bytes = fs::read(&pack).unwrap();
    bytes[(location.offset + location.length / 2) as usize] ^= 0x40;
    fs::set_permissions(&pack, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&pack, &bytes).unwrap();
    let target = tmp.path().join("after-damage");
    let err = restore_into(&repo, &snapshot, &target).await.unwrap_err();
    let failures = failures_of(&err);
    let out = restored(&target, &src);
    let failed = failed_paths(failures);
    assert_eq!(
        failed,
        vec![
            out.join("a/copy").as_path(),
            out.join("b/copy").as_path(),
            out.join("c/copy").as_path()
        ],
        "{err}"
    );
    assert!(
        failures
            .iter()
            .all(|f| f.reason.contains(&damaged.to_string())),
        "{err}"
    );
    assert!(fs::read(out.join("repeated")).unwrap() == fs::read(src.join("repeated")).unwrap());
}

/// The items a failed restore names, with their reasons; panics on any other error.
fn failures_of(err: &Error) -> &[arca_repo::restore::RestoreFailure] {
    let Error::RestoreFailed { failures } = err else {
        panic!("expected a failed restore: {err}")
    };
    failures
}

/// The paths of `failures`, in the order the restore reported them.
fn failed_paths(failures: &[arca_repo::restore::RestoreFailure]) -> Vec<&Path> {
    failures.iter().map(|f| f.path.as_path()).collect()
}
