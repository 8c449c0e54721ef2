//! Repositories written by restic itself (Debian's `restic`, which `cargo
//! xtask test` installs), with a source tree of special files. Tests skip
//! with a message when `restic` is not on PATH.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PASSWORD: &str = "correct horse battery staple";

/// Whether the restic binary runs; prints why a test skips if not.
pub fn restic_available() -> bool {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: `restic` is not installed (cargo xtask test installs it)");
    }
    ok
}

/// A restic repository and the source tree its snapshots were taken of.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub version: u32,
    /// Whether the filesystem took the user xattr we set.
    pub xattrs: bool,
}

impl Fixture {
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn source(&self) -> PathBuf {
        self.dir.path().join("source")
    }

    /// Runs restic on this repository; panics with its stderr on failure.
    pub fn restic(&self, args: &[&OsStr]) -> Vec<u8> {
        let output = Command::new("restic")
            .arg("--repo")
            .arg(self.repo())
            .args(["--no-cache", "--quiet"])
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_REPOSITORY")
            .output()
            .expect("restic runs");
        assert!(
            output.status.success(),
            "restic {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// `restic init --repository-version <version>`, a source tree of special
    /// files, and three snapshots (different tags and hosts, the tree changed
    /// between them) backed up with `--compression <compression>` (v2 only).
    pub fn new(version: u32, compression: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Fixture {
            dir,
            version,
            xattrs: false,
        };
        let version_arg = version.to_string();
        fixture.restic(&[
            "init".as_ref(),
            "--repository-version".as_ref(),
            version_arg.as_ref(),
        ]);
        let xattrs = make_source(&fixture.source());
        let fixture = Fixture { xattrs, ..fixture };
        let backup = |host: &str, tags: &str| {
            let mut args: Vec<&OsStr> = vec![
                "backup".as_ref(),
                "--host".as_ref(),
                host.as_ref(),
                "--tag".as_ref(),
                tags.as_ref(),
            ];
            if version >= 2 {
                args.push("--compression".as_ref());
                args.push(compression.as_ref());
            }
            let source = fixture.source();
            args.push(source.as_os_str());
            fixture.restic(&args);
        };
        backup("alpha", "daily");
        std::fs::write(fixture.source().join("changed.txt"), b"second version\n").unwrap();
        backup("beta", "daily,weekly");
        std::fs::write(fixture.source().join("dir/new.txt"), b"new in the third\n").unwrap();
        backup("alpha", "monthly");
        fixture
    }

    /// restic's snapshot IDs, oldest first.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let json: serde_json::Value =
            serde_json::from_slice(&self.restic(&["snapshots".as_ref(), "--json".as_ref()]))
                .unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so the large file chunks
/// into several blobs and compresses poorly.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Fills `source` with the special cases; returns whether user xattrs work here.
fn make_source(source: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = source.join("dir");
    std::fs::create_dir_all(dir.join("deeper/deepest")).unwrap();
    std::fs::write(source.join("changed.txt"), b"first version\n").unwrap();
    std::fs::write(source.join("empty"), b"").unwrap();
    std::fs::write(source.join("large.bin"), noise(6 << 20, 7)).unwrap();
    // Compressible and sparse-looking: zeros then text.
    let mut zeros = vec![0u8; 3 << 20];
    zeros.extend_from_slice(b"tail after zeros");
    std::fs::write(dir.join("zeros.bin"), zeros).unwrap();
    std::fs::write(dir.join("deeper/deepest/leaf.txt"), b"leaf").unwrap();
    std::fs::write(dir.join("hardlink-a"), b"linked content").unwrap();
    std::fs::hard_link(dir.join("hardlink-a"), dir.join("hardlink-b")).unwrap();
    std::os::unix::fs::symlink("deeper/deepest/leaf.txt", dir.join("symlink")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", source.join("dangling")).unwrap();
    nix::unistd::mkfifo(
        &source.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    for name in [
        &b"with space"[..],
        "caf\u{e9} \u{1f600}".as_bytes(),
        b"quote\"back\\slash",
        b"new\nline",
        b"not-utf8-\xff\xfe",
    ] {
        std::fs::write(source.join(OsStr::from_bytes(name)), name).unwrap();
    }
    let script = source.join("script.sh");
    std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(dir.join("deeper"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let old = filetime::FileTime::from_unix_time(1_500_000_000, 123_456_789);
    filetime::set_file_mtime(source.join("empty"), old).unwrap();
    xattr::set(
        source.join("changed.txt"),
        "user.arca.test",
        b"value \x00\xff",
    )
    .is_ok()
}

/// Every entry below `root` (relative path → description), for comparing two
/// restores: type, mode, size, content hash, symlink target, mtime, xattrs
/// and which entries are hard links of each other.
pub fn describe_tree(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = std::collections::BTreeMap::new();
    let mut inodes: std::collections::HashMap<u64, PathBuf> = Default::default();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = meta.file_type();
            let mut text = format!(
                "mode={:o} mtime={}.{}",
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            if kind.is_file() {
                let content = std::fs::read(&path).unwrap();
                text += &format!(
                    " size={} sha={}",
                    content.len(),
                    hex::encode(ring::digest::digest(&ring::digest::SHA256, &content))
                );
                if meta.nlink() > 1 {
                    let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone());
                    text += &format!(" linkgroup={}", first.display());
                }
            } else if kind.is_symlink() {
                text += &format!(" -> {:?}", std::fs::read_link(&path).unwrap());
            } else if kind.is_dir() {
                pending.push(path.clone());
            }
            let mut names: Vec<_> = xattr::list(&path).map(|l| l.collect()).unwrap_or_default();
            names.sort();
            for name in names {
                let value = xattr::get(&path, &name).ok().flatten().unwrap_or_default();
                text += &format!(" xattr {name:?}={}", hex::encode(value));
            }
            out.insert(rel, text);
        }
    }
    out
}
