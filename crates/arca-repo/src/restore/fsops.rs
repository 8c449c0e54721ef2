//! Creating restored items and applying their metadata. Blocking filesystem
//! calls only; run on the blocking pool.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use nix::sys::stat::{Mode, SFlag};

use super::plan::{Action, Item, Meta, Plan};
use crate::progress::Progress;
use crate::tree::NodeType;

/// Mode of files and directories while they are being filled in; the real
/// mode is applied at the end (it may forbid writing).
const WORKING_MODE: u32 = 0o700;

/// What [`create_items`] did.
#[derive(Debug, Default)]
pub(crate) struct Created {
    pub(crate) dirs: u64,
    pub(crate) files: u64,
    pub(crate) symlinks: u64,
    pub(crate) hardlinks: u64,
    pub(crate) special: u64,
    pub(crate) skipped: Vec<(PathBuf, String)>,
    /// Per item, what happened to it.
    pub(crate) states: Vec<ItemState>,
}

/// What happened to one item of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemState {
    /// Created (and so far fine).
    Created,
    /// Deliberately not restored (see [`Created::skipped`]).
    Skipped,
    /// Could not be restored, and why. Items inside a directory that failed
    /// are marked too, with a reason pointing at it.
    Failed(String),
}

impl ItemState {
    /// Marks the item failed unless it already is (the first reason wins).
    pub(crate) fn fail(&mut self, reason: String) {
        if !matches!(self, ItemState::Failed(_)) {
            *self = ItemState::Failed(reason);
        }
    }
}

/// Creates every item of the plan below `target`, in plan order (directories
/// before their contents). Regular files are created empty at their final
/// length; [`super::content`] fills them in.
pub(crate) fn create_items(
    plan: &Plan,
    target: &Path,
    overwrite: bool,
    progress: &dyn Progress,
) -> Created {
    let mut created = Created {
        states: vec![ItemState::Created; plan.items.len()],
        ..Created::default()
    };
    let root = nix::unistd::geteuid().is_root();
    for (i, item) in plan.items.iter().enumerate() {
        if let Some(parent) = item.parent
            && created.states[parent] != ItemState::Created
        {
            let reason = format!(
                "not restored: its directory {} failed",
                plan.items[parent].path.display()
            );
            created.states[i] = ItemState::Failed(reason);
            continue;
        }
        let path = target.join(&item.path);
        let result = match item.action {
            Action::Dir => create_dir(&path, overwrite).map(|()| created.dirs += 1),
            Action::File(file) => {
                create_file(&path, plan.files[file].size, overwrite).map(|()| created.files += 1)
            }
            Action::HardLink(first) => match &created.states[first] {
                ItemState::Created => make_room(&path, overwrite)
                    .and_then(|()| {
                        fs::hard_link(target.join(&plan.items[first].path), &path)
                            .map_err(|e| e.to_string())
                    })
                    .map(|()| created.hardlinks += 1),
                _ => Err(format!(
                    "hardlink to {} which failed",
                    plan.items[first].path.display()
                )),
            },
            Action::Symlink => match &item.meta.link_target {
                None => Err("symlink without a target in the snapshot".to_owned()),
                Some(link) => make_room(&path, overwrite)
                    .and_then(|()| {
                        std::os::unix::fs::symlink(link.as_os_str(), &path)
                            .map_err(|e| e.to_string())
                    })
                    .map(|()| created.symlinks += 1),
            },
            Action::Fifo => make_room(&path, overwrite)
                .and_then(|()| {
                    nix::unistd::mkfifo(&path, Mode::from_bits_truncate(WORKING_MODE))
                        .map_err(|e| e.to_string())
                })
                .map(|()| created.special += 1),
            Action::Device if !root => {
                skip(
                    &mut created.skipped,
                    progress,
                    path,
                    "device node not restored: needs root",
                );
                created.states[i] = ItemState::Skipped;
                Ok(())
            }
            Action::Device => make_room(&path, overwrite)
                .and_then(|()| make_device(&path, &item.meta).map_err(|e| e.to_string()))
                .map(|()| created.special += 1),
            Action::Socket => {
                skip(
                    &mut created.skipped,
                    progress,
                    path,
                    "socket not restored (sockets belong to running programs)",
                );
                created.states[i] = ItemState::Skipped;
                Ok(())
            }
        };
        if let Err(reason) = result {
            created.states[i] = ItemState::Failed(reason);
        }
    }
    created
}

fn skip(skipped: &mut Vec<(PathBuf, String)>, progress: &dyn Progress, path: PathBuf, why: &str) {
    progress.warn(&path, why);
    skipped.push((path, why.to_owned()));
}

/// Makes sure nothing is at `path`: an existing non-directory entry is removed
/// when `overwrite` is on (it is in the snapshot, so replacing it is the
/// point), otherwise it is an error. Directories are never removed: they may
/// hold files that are not in the snapshot.
fn make_room(path: &Path, overwrite: bool) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_string()),
        Ok(meta) if meta.is_dir() => Err("a directory is in the way; not removing it".to_owned()),
        Ok(_) if !overwrite => Err("already exists and overwriting is off".to_owned()),
        Ok(_) => {
            fs::remove_file(path).map_err(|e| format!("cannot replace the existing entry: {e}"))
        }
    }
}

fn create_dir(path: &Path, overwrite: bool) -> Result<(), String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            // A directory left read-only by an earlier restore must take new
            // entries; its mode from the snapshot is applied at the end anyway.
            let mode = meta.permissions().mode();
            if mode & WORKING_MODE != WORKING_MODE {
                fs::set_permissions(path, fs::Permissions::from_mode(mode | WORKING_MODE))
                    .map_err(|e| format!("making the existing directory writable: {e}"))?;
            }
            return Ok(());
        }
        _ => make_room(path, overwrite)?,
    }
    fs::DirBuilder::new()
        .mode(WORKING_MODE)
        .create(path)
        .map_err(|e| e.to_string())
}

fn create_file(path: &Path, size: u64, overwrite: bool) -> Result<(), String> {
    make_room(path, overwrite)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(WORKING_MODE)
        .open(path)
        .map_err(|e| e.to_string())?;
    file.set_len(size)
        .map_err(|e| format!("setting the length to {size}: {e}"))
}

fn make_device(path: &Path, meta: &Meta) -> nix::Result<()> {
    let kind = if meta.node_type == NodeType::BlockDevice {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    nix::sys::stat::mknod(
        path,
        kind,
        Mode::from_bits_truncate(WORKING_MODE),
        meta.rdev as nix::libc::dev_t,
    )
}

/// What [`apply_metadata`] did.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub(crate) skipped: Vec<(PathBuf, String)>,
    /// `(item, reason)`.
    pub(crate) failures: Vec<(usize, String)>,
}

/// Applies ownership, xattrs, mode and times to every item in state
/// [`ItemState::Created`] (the extra names of a hardlinked file share its
/// inode and need nothing). Non-directories first, then directories deepest
/// first, so nothing written afterwards changes a directory's times.
pub(crate) fn apply_metadata(
    plan: &Plan,
    states: &[ItemState],
    target: &Path,
    owner: bool,
    progress: &dyn Progress,
) -> Applied {
    let mut applied = Applied::default();
    let wanted = |(i, item): &(usize, &Item)| {
        states[*i] == ItemState::Created && !matches!(item.action, Action::HardLink(_))
    };
    let others = plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action != Action::Dir);
    let dirs = plan
        .items
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, item)| item.action == Action::Dir);
    for (i, item) in others.chain(dirs).filter(wanted) {
        let path = target.join(&item.path);
        if let Err(reason) = apply_one(&path, &item.meta, owner, &mut applied.skipped, progress) {
            applied.failures.push((i, reason));
        }
        if matches!(item.action, Action::File(_)) {
            progress.add_file(&path);
        }
    }
    applied
}

fn apply_one(
    path: &Path,
    meta: &Meta,
    owner: bool,
    skipped: &mut Vec<(PathBuf, String)>,
    progress: &dyn Progress,
) -> Result<(), String> {
    let is_symlink = meta.node_type == NodeType::Symlink;
    // Ownership first: chown clears setuid/setgid bits, so the mode must come after it.
    if owner {
        std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(|e| format!("setting owner {}:{}: {e}", meta.uid, meta.gid))?;
    }
    // Xattrs before the mode: `user.*` xattrs need write permission.
    for xattr in &meta.xattrs {
        match xattr::set(path, xattr.name.as_os_str(), &xattr.value) {
            Ok(()) => {}
            Err(e) if is_unsupported(&e) => {
                let why = format!(
                    "xattr {} not restored: the filesystem does not support it",
                    xattr.name
                );
                skip(skipped, progress, path.to_owned(), &why);
            }
            Err(e) => return Err(format!("setting xattr {}: {e}", xattr.name)),
        }
    }
    if !is_symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
            .map_err(|e| format!("setting mode {:o}: {e}", meta.mode & 0o7777))?;
    }
    filetime::set_symlink_file_times(path, file_time(meta.atime_ns), file_time(meta.mtime_ns))
        .map_err(|e| format!("setting times: {e}"))
}

fn is_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(nix::libc::EOPNOTSUPP)
}

fn file_time(ns: i64) -> FileTime {
    const NS: i64 = 1_000_000_000;
    FileTime::from_unix_time(ns.div_euclid(NS), ns.rem_euclid(NS) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_time_splits_negative_nanoseconds_correctly() {
        let t = file_time(-1);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (-1, 999_999_999));
        let t = file_time(1_500_000_000);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (1, 500_000_000));
    }

    #[test]
    fn make_room_never_removes_directories_and_respects_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        assert!(
            make_room(&sub, true)
                .unwrap_err()
                .contains("directory is in the way")
        );
        assert!(sub.is_dir());

        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(
            make_room(&file, false)
                .unwrap_err()
                .contains("overwriting is off")
        );
        assert!(file.exists());
        make_room(&file, true).unwrap();
        assert!(!file.exists());
        make_room(&file, true).unwrap();
    }

    #[test]
    fn create_dir_reuses_an_existing_directory_and_replaces_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let link = dir.path().join("d");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        create_dir(&link, true).unwrap();
        assert!(
            fs::symlink_metadata(&link).unwrap().is_dir(),
            "the symlink was replaced by a real directory"
        );
        create_dir(&link, true).unwrap();
    }

    #[test]
    fn create_dir_makes_an_existing_read_only_directory_writable() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("ro");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o555)).unwrap();
        create_dir(&existing, false).unwrap();
        let mode = fs::metadata(&existing).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
    }
}
