//! Trees the bench is done with, set aside instead of deleted right away.
//!
//! Deleting a tree right before a measured restore skews the restore: on ext4
//! without a journal (this machine's root file system), a new inode skips every
//! inode deleted in the last 60 s (360 s while the inode table block is dirty),
//! reading each one's inode to see when it was deleted (`recently_deleted` in
//! fs/ext4/ialloc.c). A restore of the dup mix spent 0.81, 2.93 or 3.87 s of system
//! time depending on what had been deleted just before (docs/PERFORMANCE.md,
//! "Restore CPU on the dup mix"); the RTO drill's restore came right after deleting
//! its `cp -a` copy. So finished trees are renamed into the trash, which is
//! emptied at the end, or early when the disk runs low; a restore measured within
//! the window after an early emptying waits for the window to pass first.

use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::scale::available_space;

/// How long after a deletion ext4 still skips the deleted inodes, once their
/// inode table blocks are written back (`sync`), plus a second of slack.
const RECENTLY_DELETED: Duration = Duration::from_secs(61);

/// Where finished trees wait until the bench is over.
#[derive(Debug)]
pub(crate) struct Trash {
    dir: PathBuf,
    /// Free space below which the trash is emptied at once.
    keep_free: u64,
    discarded: Cell<u64>,
    emptied_at: Cell<Option<Instant>>,
}

impl Trash {
    /// A trash in `dir`, emptying what a killed bench left there. It is emptied
    /// early whenever less than `keep_free` bytes stay free.
    pub(crate) fn new(dir: PathBuf, keep_free: u64) -> Result<Self> {
        let trash = Trash {
            dir,
            keep_free,
            discarded: Cell::new(0),
            emptied_at: Cell::new(None),
        };
        trash.empty()?;
        Ok(trash)
    }

    /// Moves `path` (if it exists) into the trash; empties the trash when the
    /// disk runs low. `path` must be on the trash's file system.
    pub(crate) fn discard(&self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Ok(());
        }
        let n = self.discarded.get();
        self.discarded.set(n + 1);
        let to = self.dir.join(n.to_string());
        fs::rename(path, &to)
            .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
        if available_space(&self.dir)? < self.keep_free {
            println!("bench: disk low, emptying {}", self.dir.display());
            self.empty()?;
        }
        Ok(())
    }

    /// Moves `dir` (if it exists) into the trash and creates it again, empty.
    pub(crate) fn reset(&self, dir: &Path) -> Result<()> {
        self.discard(dir)?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
    }

    /// Deletes what is in the trash and writes the inode tables back, so the
    /// deleted inodes stay in the way for [`RECENTLY_DELETED`] only.
    pub(crate) fn empty(&self) -> Result<()> {
        if self.dir.exists() && fs::read_dir(&self.dir)?.next().is_some() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
            super::measure::flush_dirty_pages()?;
            self.emptied_at.set(Some(Instant::now()));
        }
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))
    }

    /// Waits, before a measured restore, until the last emptying is out of
    /// ext4's window (a kernel timer, not another process, so there is
    /// nothing to wait on but the clock).
    pub(crate) fn settle(&self) {
        let Some(emptied) = self.emptied_at.get() else {
            return;
        };
        let left = RECENTLY_DELETED.saturating_sub(emptied.elapsed());
        if !left.is_zero() {
            println!(
                "bench: waiting {:.0} s for ext4 to stop skipping the inodes just deleted",
                left.as_secs_f64()
            );
            std::thread::sleep(left);
        }
    }
}

impl Drop for Trash {
    fn drop(&mut self) {
        if let Err(e) = self.empty() {
            eprintln!("bench: could not empty {}: {e:#}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("arca-xtask-trash-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn discarded_trees_wait_in_the_trash_until_it_is_emptied() {
        let dir = scratch("wait");
        let trash = Trash::new(dir.join("trash"), 0).unwrap();
        for name in ["a", "b"] {
            fs::create_dir_all(dir.join(name).join("sub")).unwrap();
            fs::write(dir.join(name).join("sub/file"), name).unwrap();
            trash.discard(&dir.join(name)).unwrap();
            assert!(!dir.join(name).exists());
        }
        trash.discard(&dir.join("never-there")).unwrap();
        assert_eq!(fs::read_dir(dir.join("trash")).unwrap().count(), 2);
        assert!(trash.emptied_at.get().is_none());
        trash.empty().unwrap();
        assert_eq!(fs::read_dir(dir.join("trash")).unwrap().count(), 0);
        assert!(trash.emptied_at.get().is_some());
        drop(trash);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_disk_running_low_empties_the_trash_at_once() {
        let dir = scratch("low");
        // No disk has this much free: every discard empties the trash.
        let trash = Trash::new(dir.join("trash"), u64::MAX).unwrap();
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::write(dir.join("a/file"), "a").unwrap();
        trash.discard(&dir.join("a")).unwrap();
        assert_eq!(fs::read_dir(dir.join("trash")).unwrap().count(), 0);
        assert!(trash.emptied_at.get().is_some());
        drop(trash);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_killed_bench_leaves_nothing_behind_in_a_new_trash() {
        let dir = scratch("leftover");
        fs::create_dir_all(dir.join("trash/0")).unwrap();
        let trash = Trash::new(dir.join("trash"), 0).unwrap();
        assert_eq!(fs::read_dir(dir.join("trash")).unwrap().count(), 0);
        drop(trash);
        fs::remove_dir_all(&dir).unwrap();
    }
}
