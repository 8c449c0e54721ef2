//! Turning `lstat` results into tree [`Node`]s.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{FileType, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};

use crate::tree::{FileName, Node, NodeType, Xattr};

/// The node type of a file type from `lstat`.
pub(crate) fn node_type(file_type: FileType) -> NodeType {
    if file_type.is_dir() {
        NodeType::Dir
    } else if file_type.is_symlink() {
        NodeType::Symlink
    } else if file_type.is_fifo() {
        NodeType::Fifo
    } else if file_type.is_socket() {
        NodeType::Socket
    } else if file_type.is_char_device() {
        NodeType::CharDevice
    } else if file_type.is_block_device() {
        NodeType::BlockDevice
    } else {
        NodeType::File
    }
}

/// Nanoseconds since the epoch, saturating far outside ±292 years.
pub(crate) fn nanos(seconds: i64, nanoseconds: i64) -> i64 {
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(nanoseconds)
}

/// What must match for a file's content to count as unchanged: a file
/// rewritten in place keeps its inode but not its ctime, one replaced by
/// rename keeps neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// The stamp recorded in a node.
    pub(crate) fn of_node(node: &Node) -> Self {
        FileStamp {
            size: node.size,
            mtime_ns: node.mtime_ns,
            ctime_ns: node.ctime_ns,
            inode: node.inode,
            device: node.device,
        }
    }

    /// The file's size in bytes.
    pub(crate) fn size(self) -> u64 {
        self.size
    }

    /// The file's modification time (ns since the epoch).
    pub(crate) fn mtime_ns(self) -> i64 {
        self.mtime_ns
    }

    /// The stamp of an `lstat` result (as [`node_from_metadata`] records it).
    pub(crate) fn of_metadata(metadata: &Metadata) -> Self {
        FileStamp {
            size: metadata.size(),
            mtime_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }
}

/// Caches uid → user name and gid → group name: a backup asks about the same
/// few owners millions of times, and each lookup may read `/etc/passwd` or
/// ask NSS.
#[derive(Debug, Default)]
pub(crate) struct OwnerNames {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl OwnerNames {
    /// The name of user `uid`, if it resolves.
    pub(crate) fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                User::from_uid(Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The name of group `gid`, if it resolves.
    pub(crate) fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                Group::from_gid(Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// What [`node_from_metadata`] could not read; the node is still usable.
#[derive(Debug)]
pub(crate) struct PartialNode {
    /// The node with everything that could be read.
    pub(crate) node: Node,
    /// Problems worth a warning (unreadable xattrs or symlink target).
    pub(crate) problems: Vec<String>,
}

/// Builds the node for `path` (named `name` in its directory) from its
/// `lstat` metadata, plus its symlink target and extended attributes; the
/// attributes are read unless `known_xattrs` gives them (see
/// `Walker::unchanged_xattrs`).
///
/// Without `with_atime` the access time is recorded as the modification
/// time, as restic does by default: reading files during a backup updates
/// their atime, so storing it would make every directory tree differ from
/// the previous snapshot's and defeat tree deduplication.
pub(crate) fn node_from_metadata(
    path: &Path,
    name: &OsStr,
    metadata: &Metadata,
    owners: &mut OwnerNames,
    with_atime: bool,
    known_xattrs: Option<&[Xattr]>,
) -> PartialNode {
    let node_type = node_type(metadata.file_type());
    let mut problems = Vec::new();
    let link_target = if node_type == NodeType::Symlink {
        match std::fs::read_link(path) {
            Ok(target) => Some(FileName::from(target.into_os_string())),
            Err(e) => {
                problems.push(format!("cannot read symlink target: {e}"));
                Some(FileName::default())
            }
        }
    } else {
        None
    };
    let xattrs = match known_xattrs {
        Some(known) => known.to_vec(),
        None => read_xattrs(path).unwrap_or_else(|e| {
            problems.push(format!("cannot read extended attributes: {e}"));
            Vec::new()
        }),
    };
    let mtime_ns = nanos(metadata.mtime(), metadata.mtime_nsec());
    let is_device = matches!(node_type, NodeType::CharDevice | NodeType::BlockDevice);
    let node = Node {
        name: FileName::from(name),
        node_type,
        mode: metadata.mode() & 0o7777,
        uid: metadata.uid(),
        gid: metadata.gid(),
        user: owners.user(metadata.uid()),
        group: owners.group(metadata.gid()),
        mtime_ns,
        atime_ns: if with_atime {
            nanos(metadata.atime(), metadata.atime_nsec())
        } else {
            mtime_ns
        },
        ctime_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
        size: if node_type == NodeType::Dir {
            0
        } else {
            metadata.size()
        },
        inode: metadata.ino(),
        device: metadata.dev(),
        links: metadata.nlink(),
        rdev: if is_device { metadata.rdev() } else { 0 },
        link_target,
        xattrs,
        content: Vec::new(),
        subtree: None,
    };
    PartialNode { node, problems }
}

/// Whether an xattr call failed only because the file system has no xattrs.
fn unsupported(error: &io::Error) -> bool {
    error
        .raw_os_error()
        .is_some_and(|code| matches!(Errno::from_raw(code), Errno::ENOTSUP | Errno::ENODATA))
}

/// The extended attributes of `path` itself (never of a symlink's target),
/// sorted by name; none where the file system does not support them. An
/// attribute removed between listing and reading is skipped.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut xattrs = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => xattrs.push(Xattr {
                name: FileName::from(name),
                value,
            }),
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    xattrs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(xattrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_saturates_instead_of_overflowing() {
        assert_eq!(nanos(1, 5), 1_000_000_005);
        assert_eq!(nanos(-1, 0), -1_000_000_000);
        assert_eq!(nanos(i64::MAX / 2, 0), i64::MAX);
    }

    #[test]
    fn file_node_records_lstat_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let PartialNode { node, problems } = node_from_metadata(
            &path,
            OsStr::new("f"),
            &metadata,
            &mut OwnerNames::default(),
            false,
            None,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(node.node_type, NodeType::File);
        assert_eq!(node.size, 5);
        assert_eq!(node.inode, metadata.ino());
        assert_eq!(node.mode, metadata.mode() & 0o7777);
        assert_eq!(
            node.mtime_ns,
            nanos(metadata.mtime(), metadata.mtime_nsec())
        );
        assert_eq!(
            node.atime_ns, node.mtime_ns,
            "atime is recorded as mtime by default"
        );
        assert_eq!(node.links, 1);
    }

    #[test]
    fn with_atime_records_the_access_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let times = std::fs::FileTimes::new()
            .set_accessed(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000))
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(2000));
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(times)
            .unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let node = node_from_metadata(
            &path,
            OsStr::new("f"),
            &metadata,
            &mut OwnerNames::default(),
            true,
            None,
        )
        .node;
        assert_eq!(node.atime_ns, 1000 * 1_000_000_000);
        assert_eq!(node.mtime_ns, 2000 * 1_000_000_000);
    }

    #[test]
    fn symlink_node_has_its_target_not_the_targets_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link");
        std::os::unix::fs::symlink("../some/where", &path).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        let node = node_from_metadata(
            &path,
            OsStr::new("link"),
            &metadata,
            &mut OwnerNames::default(),
            false,
            None,
        )
        .node;
        assert_eq!(node.node_type, NodeType::Symlink);
        assert_eq!(node.link_target, Some(FileName::from("../some/where")));
    }

    #[test]
    fn owner_names_resolve_the_current_user() {
        let mut owners = OwnerNames::default();
        let uid = nix::unistd::geteuid().as_raw();
        let expected = User::from_uid(Uid::from_raw(uid)).unwrap().map(|u| u.name);
        assert_eq!(owners.user(uid), expected);
        assert_eq!(owners.users.len(), 1, "cached");
        assert_eq!(owners.user(uid), expected);
    }

    #[test]
    fn xattrs_are_read_sorted_where_supported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        if xattr::set(&path, "user.b", b"2").is_err() {
            return; // This file system has no user xattrs; nothing to check here.
        }
        xattr::set(&path, "user.a", b"1").unwrap();
        let xattrs = read_xattrs(&path).unwrap();
        let user: Vec<_> = xattrs
            .iter()
            .filter(|x| x.name.as_bytes().starts_with(b"user."))
            .collect();
        assert_eq!(user.len(), 2);
        assert_eq!(
            (user[0].name.as_bytes(), user[0].value.as_slice()),
            (&b"user.a"[..], &b"1"[..])
        );
        assert_eq!(
            (user[1].name.as_bytes(), user[1].value.as_slice()),
            (&b"user.b"[..], &b"2"[..])
        );
    }
}
