//! Creating restored items and applying their metadata. Blocking filesystem
//! calls only; run on the blocking pool.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// What creating one item made.
enum Made {
    Dir,
    File,
    Symlink,
    HardLink,
    Special,
    /// Deliberately not restored, and why.
    Skipped(&'static str),
}

/// Creates every item of the plan below `target`. Regular files are created
/// empty at their final length; [`super::content`] fills them in.
///
/// Directories come first, in plan order (parents before children); then
/// everything else on several threads, since each needs only its directory
/// (creating tens of thousands of small files one after another was a third
/// of a restore's time); hard links last, since they need their file.
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
    let create =
        |states: &[ItemState], i: usize| create_one(plan, target, states, i, overwrite, root);
    // One pass sorts the plan into the three phases, each in plan order.
    let (mut dirs, mut others, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for (i, item) in plan.items.iter().enumerate() {
        match item.action {
            Action::Dir => dirs.push(i),
            Action::HardLink(_) => links.push(i),
            _ => others.push(i),
        }
    }
    for i in dirs {
        let made = create(&created.states, i);
        created.record(plan, target, i, made, progress);
    }
    let made = parallel_map(others.len(), |k| create(&created.states, others[k]));
    for (i, made) in others.into_iter().zip(made) {
        created.record(plan, target, i, made, progress);
    }
    for i in links {
        let made = create(&created.states, i);
        created.record(plan, target, i, made, progress);
    }
    created
}

impl Created {
    fn record(
        &mut self,
        plan: &Plan,
        target: &Path,
        i: usize,
        made: Result<Made, String>,
        progress: &dyn Progress,
    ) {
        match made {
            Ok(Made::Dir) => self.dirs += 1,
            Ok(Made::File) => self.files += 1,
            Ok(Made::Symlink) => self.symlinks += 1,
            Ok(Made::HardLink) => self.hardlinks += 1,
            Ok(Made::Special) => self.special += 1,
            Ok(Made::Skipped(why)) => {
                let path = plan.items.path_under(target, i);
                skip(&mut self.skipped, progress, path, why);
                self.states[i] = ItemState::Skipped;
            }
            Err(reason) => self.states[i] = ItemState::Failed(reason),
        }
    }
}

/// Creates item `i`, given the states of the items it depends on (its
/// directory, and a hard link's file).
fn create_one(
    plan: &Plan,
    target: &Path,
    states: &[ItemState],
    i: usize,
    overwrite: bool,
    root: bool,
) -> Result<Made, String> {
    let item = &plan.items[i];
    if let Some(parent) = item.parent()
        && states[parent] != ItemState::Created
    {
        return Err(format!(
            "not restored: its directory {} failed",
            plan.items.path_under(Path::new(""), parent).display()
        ));
    }
    let path = plan.items.path_under(target, i);
    match item.action {
        Action::Dir => create_dir(&path, overwrite).map(|()| Made::Dir),
        Action::File(file) => {
            create_file(&path, plan.files[file as usize].size, overwrite).map(|()| Made::File)
        }
        Action::HardLink(first) => match &states[first as usize] {
            ItemState::Created => make_room(&path, overwrite)
                .and_then(|()| {
                    fs::hard_link(plan.items.path_under(target, first as usize), &path)
                        .map_err(|e| e.to_string())
                })
                .map(|()| Made::HardLink),
            _ => Err(format!(
                "hardlink to {} which failed",
                plan.items
                    .path_under(Path::new(""), first as usize)
                    .display()
            )),
        },
        Action::Symlink => match item.meta.link_target() {
            None => Err("symlink without a target in the snapshot".to_owned()),
            Some(link) => make_room(&path, overwrite)
                .and_then(|()| {
                    std::os::unix::fs::symlink(link.as_os_str(), &path).map_err(|e| e.to_string())
                })
                .map(|()| Made::Symlink),
        },
        Action::Fifo => make_room(&path, overwrite)
            .and_then(|()| {
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(WORKING_MODE))
                    .map_err(|e| e.to_string())
            })
            .map(|()| Made::Special),
        Action::Device if !root => Ok(Made::Skipped("device node not restored: needs root")),
        Action::Device => make_room(&path, overwrite)
            .and_then(|()| make_device(&path, &item.meta).map_err(|e| e.to_string()))
            .map(|()| Made::Special),
        Action::Socket => Ok(Made::Skipped(
            "socket not restored (sockets belong to running programs)",
        )),
    }
}

/// Maps `f` over `0..count` on a few threads, returning the results in
/// index order.
///
/// Each thread takes a few large blocks of consecutive indices, so threads
/// work in distant parts of the tree: creating entries takes the directory's
/// lock and allocates inodes from its block group, and threads creating
/// side by side in one directory were slower than one thread (measured on
/// ext4 after a large delete, when inode allocation reads the inode table).
fn parallel_map<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    // At least two threads even on one core: the work is system calls that
    // may wait for the disk or the journal.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let block = count.div_ceil(threads * 4).max(64);
    if count <= block {
        return (0..count).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut blocks: Vec<(usize, Vec<T>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let start = next.fetch_add(block, Ordering::Relaxed);
                        if start >= count {
                            return done;
                        }
                        done.push((start, (start..count.min(start + block)).map(&f).collect()));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    blocks.sort_unstable_by_key(|&(start, _)| start);
    blocks
        .into_iter()
        .flat_map(|(_, results)| results)
        .collect()
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
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(WORKING_MODE)
            .open(path)
    };
    // Creating first and making room only if something is in the way saves
    // a system call per file in the common case, an empty target.
    let file = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            make_room(path, overwrite)?;
            create()
        }
        created => created,
    }
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
        meta.rdev() as nix::libc::dev_t,
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
    let apply = |i: usize| {
        let item = &plan.items[i];
        let path = plan.items.path_under(target, i);
        let mut skipped = Vec::new();
        let result = apply_one(&path, &item.meta, owner, &mut skipped, progress);
        if matches!(item.action, Action::File(_)) {
            progress.add_file(&path);
        }
        (result, skipped)
    };
    let others: Vec<usize> = plan
        .items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.action != Action::Dir)
        .filter(wanted)
        .map(|(i, _)| i)
        .collect();
    let dirs = plan
        .items
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, item)| item.action == Action::Dir)
        .filter(wanted)
        .map(|(i, _)| i);
    // Everything but directories on several threads (each item stands
    // alone); directories after them, deepest first, on one.
    let others_applied = parallel_map(others.len(), |k| apply(others[k]));
    let outcomes = others
        .into_iter()
        .zip(others_applied)
        .chain(dirs.map(|i| (i, apply(i))));
    for (i, (result, skipped)) in outcomes {
        applied.skipped.extend(skipped);
        if let Err(reason) = result {
            applied.failures.push((i, reason));
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
    for xattr in meta.xattrs() {
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
    fn parallel_map_returns_results_in_index_order() {
        for count in [0, 1, 63, 64, 65, 1000, 10_007] {
            let got = parallel_map(count, |i| i * 3);
            assert_eq!(
                got,
                (0..count).map(|i| i * 3).collect::<Vec<_>>(),
                "{count}"
            );
        }
    }

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
