//! Compares two directory trees recursively and lists every difference:
//! entry sets, types, contents and, unless only contents are asked for,
//! permission bits, mtimes (ns), owners, symlink targets, device numbers,
//! xattrs and which names are hardlinked together. Access and change times
//! are never compared (reading changes the first, any metadata change the
//! second).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Everything `diff` looks at, for one entry.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    mtime_ns: i128,
    uid: u32,
    gid: u32,
    rdev: u64,
    link_target: Option<PathBuf>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

fn kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    match () {
        _ if t.is_dir() => "dir",
        _ if t.is_file() => "file",
        _ if t.is_symlink() => "symlink",
        _ if t.is_fifo() => "fifo",
        _ if t.is_socket() => "socket",
        _ if t.is_char_device() => "char device",
        _ if t.is_block_device() => "block device",
        _ => "unknown",
    }
}

fn entry(path: &Path) -> Entry {
    let meta = fs::symlink_metadata(path).unwrap();
    let kind = kind(&meta);
    let xattrs = match xattr::list(path) {
        Ok(names) => names
            .map(|name| {
                let value = xattr::get(path, &name).unwrap().unwrap_or_default();
                (name.as_bytes().to_vec(), value)
            })
            .collect(),
        Err(_) => BTreeMap::new(),
    };
    Entry {
        kind,
        // Symlink permission bits are meaningless on Linux.
        mode: if kind == "symlink" {
            0
        } else {
            meta.mode() & 0o7777
        },
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev(),
        link_target: (kind == "symlink").then(|| fs::read_link(path).unwrap()),
        xattrs,
    }
}

/// Relative paths of every entry below `root`, sorted.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for child in fs::read_dir(root.join(&rel)).unwrap() {
            let child = child.unwrap();
            let child_rel = rel.join(child.file_name());
            if child.file_type().unwrap().is_dir() {
                pending.push(child_rel.clone());
            }
            out.push(child_rel);
        }
    }
    out.sort();
    out
}

/// For each regular file with more than one link: the first (sorted)
/// relative path sharing its inode.
fn hardlink_groups(root: &Path, paths: &[PathBuf]) -> BTreeMap<PathBuf, PathBuf> {
    let mut first: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for rel in paths {
        let meta = fs::symlink_metadata(root.join(rel)).unwrap();
        if meta.is_file() && meta.nlink() > 1 {
            let leader = first
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone());
            groups.insert(rel.clone(), leader.clone());
        }
    }
    groups
}

/// How much of each entry [`differences`] compares.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Names, types and file contents.
    Contents,
    /// Contents and every piece of metadata restore brings back.
    Everything,
}

/// Differences between the trees below `expected` and `actual`; relative
/// paths in `ignore` are left out on both sides.
fn differences(expected: &Path, actual: &Path, ignore: &[&Path], compare: Compare) -> Vec<String> {
    let keep = |paths: Vec<PathBuf>| -> Vec<PathBuf> {
        paths
            .into_iter()
            .filter(|p| !ignore.iter().any(|i| p.starts_with(i)))
            .collect()
    };
    let (left, right) = (keep(walk(expected)), keep(walk(actual)));
    let mut out = Vec::new();
    for missing in left.iter().filter(|p| !right.contains(p)) {
        out.push(format!("{}: missing", missing.display()));
    }
    for extra in right.iter().filter(|p| !left.contains(p)) {
        out.push(format!("{}: unexpected", extra.display()));
    }
    for rel in left.iter().filter(|p| right.contains(p)) {
        let (a, b) = (expected.join(rel), actual.join(rel));
        let (ea, eb) = (entry(&a), entry(&b));
        if compare == Compare::Everything && ea != eb {
            out.push(format!("{}: metadata {ea:?} != {eb:?}", rel.display()));
        } else if ea.kind != eb.kind {
            out.push(format!("{}: {} != {}", rel.display(), ea.kind, eb.kind));
        }
        if ea.kind == "file" && eb.kind == "file" && fs::read(&a).unwrap() != fs::read(&b).unwrap()
        {
            out.push(format!("{}: content differs", rel.display()));
        }
    }
    if compare == Compare::Everything {
        let (ga, gb) = (
            hardlink_groups(expected, &left),
            hardlink_groups(actual, &right),
        );
        if ga != gb {
            out.push(format!("hardlink groups differ: {ga:?} != {gb:?}"));
        }
    }
    out
}

/// Every difference, metadata included, between the trees below `expected`
/// and `actual`; relative paths in `ignore` are left out on both sides.
pub(crate) fn diff(expected: &Path, actual: &Path, ignore: &[&Path]) -> Vec<String> {
    differences(expected, actual, ignore, Compare::Everything)
}

/// Asserts the trees below `expected` and `actual` hold the same names,
/// types and file contents.
pub(crate) fn assert_same_files(expected: &Path, actual: &Path) {
    let differences = differences(expected, actual, &[], Compare::Contents);
    assert!(
        differences.is_empty(),
        "{} differs from {}:\n{}",
        actual.display(),
        expected.display(),
        differences.join("\n")
    );
}
