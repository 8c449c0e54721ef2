//! Read-ahead: large files read before the walker reaches them.
//!
//! The walker goes in name order, and the reads it queues follow it. So a
//! tree runs its parts one after the other: many small files (CPU bound:
//! system calls and compression), then large incompressible ones (disk
//! bound, the CPUs idle), then large compressible ones (CPU bound, the disk
//! idle); and after a change the encoders wait while the walker crosses
//! unchanged directories on a cold cache before it reaches the changed
//! database files. The metadata prefetch lists the tree well ahead of the
//! walker; the large regular files it finds come to the [`Scout`], which
//! queues a read of those the parent snapshot does not hold unchanged on a
//! queue of their own. The large-file readers serve it whenever the walker's
//! queue is empty, so that disk and CPUs overlap.
//!
//! The scout does not queue them in walk order alone: a tree keeps alike
//! files together (a database's segments in one directory, photos in
//! another), so walk order would have every large-file reader on one class of
//! file at a time. One read at a time is of the largest file the scout knows
//! of instead ([`Candidates::next`]): one reader works through the biggest,
//! usually CPU-bound, files while the others follow the walk, and the biggest
//! files start early rather than leaving one reader streaming a large file
//! alone at the end of the backup. The scout hands each read over only when
//! a reader takes it (a rendezvous channel), so it decides with what is
//! running then. (First backup of the 2 GiB benchmark tree, cold cache, 11
//! interleaved runs each: 4.59–5.30 s, median 4.82, against 4.79–5.56 s,
//! median 5.02, in walk order; faster in 9 of the 11 pairs.)
//!
//! When the walker reaches such a file it takes the pending result
//! ([`ReadAhead::take`]) instead of queueing a read, if the file still has
//! the stamp that was read; if not, it reads the file again, and the blobs
//! read ahead stay unreferenced until a prune, like those of an interrupted
//! backup. Files read ahead and not taken yet are bounded in number and
//! bytes ([`Limits`]), and the scout never queues a file the walker has
//! passed.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};

use super::metadata::FileStamp;
use super::parent::ParentTrees;
use super::prefetch::LargeFile;
use super::walk::{may_reuse, previous_node};
use super::workers::{FileJob, FileResult, Shared};
use crate::tree::Tree;

/// Files at least this large are read ahead: several chunks each, so the
/// bookkeeping is small beside the read.
pub(crate) const READ_AHEAD_MIN_BYTES: u64 = 1 << 20;

/// How much may be read ahead and not yet taken by the walker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Files at most.
    files: usize,
    /// Bytes at most (one file may exceed it alone). A file read ahead
    /// holds its content IDs until taken, 32 bytes per chunk, so with the
    /// default chunks (128 KiB at least) this bounds that memory to 16 MiB.
    bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            files: 1024,
            bytes: 64 << 30,
        }
    }
}

/// Files read ahead, shared by the scout (which adds them) and the walker
/// (which takes them).
pub(crate) struct ReadAhead {
    state: Mutex<State>,
    changed: Condvar,
    limits: Limits,
}

#[derive(Default)]
struct State {
    /// Reads queued or done and not taken yet, by path.
    pending: HashMap<PathBuf, Pending>,
    /// Bytes of the files in `pending`.
    bytes: u64,
    /// The last large file the walker reached: files up to it in walk order
    /// (the order of [`Path`]'s components) are too late to read ahead.
    walker_at: Option<PathBuf>,
    /// The walk ended: nothing more will be taken.
    finished: bool,
}

/// A file read ahead (or queued for it) whose result the walker has not
/// taken. Dropped unused, it cancels the read: nobody would take the result.
pub(crate) struct Pending {
    stamp: FileStamp,
    result: Option<Receiver<FileResult>>,
    cancelled: Arc<AtomicBool>,
}

impl Pending {
    /// Where the read's result arrives.
    pub(crate) fn into_result(mut self) -> Receiver<FileResult> {
        self.result
            .take()
            .expect("a pending read ahead has its result until taken")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.result.is_some() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

impl State {
    fn passed(&self, path: &Path) -> bool {
        self.walker_at.as_deref().is_some_and(|at| path <= at)
    }
}

impl ReadAhead {
    pub(crate) fn new(limits: Limits) -> Self {
        ReadAhead {
            state: Mutex::default(),
            changed: Condvar::new(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("read-ahead lock poisoned")
    }

    /// The walker reached the regular file `path`, which has `stamp` now:
    /// its read ahead, if one was made of this very stamp (dropping that
    /// cancels it). Either way the file no longer counts as read ahead.
    pub(crate) fn take(&self, path: &Path, stamp: FileStamp) -> Option<Pending> {
        if stamp.size() < READ_AHEAD_MIN_BYTES {
            return None;
        }
        let mut state = self.lock();
        state.walker_at = Some(path.to_owned());
        let pending = state.pending.remove(path)?;
        state.bytes -= pending.stamp.size();
        drop(state);
        self.changed.notify_all();
        (pending.stamp == stamp).then_some(pending)
    }

    /// The walk ended: drops every result not taken and wakes the scout.
    pub(crate) fn finish(&self) {
        let mut state = self.lock();
        state.finished = true;
        state.pending.clear();
        state.bytes = 0;
        drop(state);
        self.changed.notify_all();
    }

    /// Records a read ahead of `path` once the limits leave room for it;
    /// the sender for its result and the flag that cancels it.
    /// `Err(Finished)` once the walk ended; `Ok(None)` if the walker has
    /// passed `path` by then.
    fn add(&self, path: &Path, stamp: FileStamp) -> Result<Option<Queued>, Finished> {
        let size = stamp.size();
        let full = |state: &mut State| {
            !state.pending.is_empty()
                && (state.pending.len() >= self.limits.files
                    || state.bytes + size > self.limits.bytes)
        };
        let mut state = self
            .changed
            .wait_while(self.lock(), |state| {
                !state.finished && !state.passed(path) && full(state)
            })
            .expect("read-ahead lock poisoned");
        if state.finished {
            return Err(Finished);
        }
        if state.passed(path) {
            return Ok(None);
        }
        let (sender, result) = crossbeam_channel::bounded(1);
        let cancelled = Arc::new(AtomicBool::new(false));
        state.bytes += size;
        state.pending.insert(
            path.to_owned(),
            Pending {
                stamp,
                result: Some(result),
                cancelled: Arc::clone(&cancelled),
            },
        );
        Ok(Some((sender, cancelled)))
    }
}

/// The result sender and cancel flag of a read ahead.
type Queued = (Sender<FileResult>, Arc<AtomicBool>);

/// The walk ended.
#[derive(Debug)]
struct Finished;

/// Queues reads of the large files the prefetch finds, unless the parent
/// snapshot holds them unchanged (see the module docs).
pub(crate) struct Scout {
    pub(crate) shared: Arc<Shared>,
    pub(crate) read_ahead: Arc<ReadAhead>,
    /// Large regular files as the prefetch lists them; closes when it ends.
    pub(crate) candidates: Receiver<LargeFile>,
    /// The read-ahead queue of the large-file readers: a rendezvous channel,
    /// so that each read is chosen when a reader is ready for it.
    pub(crate) jobs: Sender<FileJob>,
    pub(crate) parent: ParentLookup,
    /// Read every file (see `BackupOptions::force`).
    pub(crate) force: bool,
}

impl Scout {
    pub(crate) fn run(mut self) {
        let mut candidates = Candidates::default();
        let largest_running = Arc::new(AtomicBool::new(false));
        loop {
            if !self.gather(&mut candidates) {
                return;
            }
            let Some((path, stamp, largest_first)) = candidates.next(&largest_running) else {
                continue;
            };
            let (result, cancelled) = match self.read_ahead.add(&path, stamp) {
                Ok(Some(queued)) => queued,
                Ok(None) => continue,
                Err(Finished) => return,
            };
            let job = FileJob {
                path,
                size: stamp.size(),
                mtime_ns: stamp.mtime_ns(),
                result,
                cancelled: Some(cancelled),
                largest_first,
            };
            if self.jobs.send(job).is_err() {
                return;
            }
        }
    }

    /// Adds the files the prefetch found since the last call to
    /// `candidates` (waiting for one if it holds none), leaving out those the
    /// parent snapshot holds unchanged. `false` once there is nothing left to
    /// read or the backup is stopping.
    fn gather(&mut self, candidates: &mut Candidates) -> bool {
        if candidates.files.is_empty() {
            match self.candidates.recv() {
                Ok(file) => self.consider(candidates, file),
                Err(_) => return false,
            }
        }
        while candidates.files.len() < CANDIDATES_KEPT {
            match self.candidates.try_recv() {
                Ok(file) => self.consider(candidates, file),
                Err(_) => break,
            }
        }
        !self.shared.stopping()
    }

    fn consider(&mut self, candidates: &mut Candidates, (path, metadata): LargeFile) {
        let stamp = FileStamp::of_metadata(&metadata);
        if self.force || !self.parent.holds_unchanged(&self.shared, &path, stamp) {
            candidates.files.push_back((path, stamp));
        }
    }
}

/// Files the scout keeps to choose from, at most; more wait in the
/// prefetch's queue (each is a path and a stamp).
const CANDIDATES_KEPT: usize = 4096;

/// Large files to read ahead, in walk order, not yet queued.
#[derive(Default)]
struct Candidates {
    files: VecDeque<(PathBuf, FileStamp)>,
}

impl Candidates {
    /// The file to read next: the largest (the first of equals) if no read
    /// of a largest file is running, with the marker that says one is until
    /// it is dropped; else the next in walk order.
    fn next(
        &mut self,
        largest_running: &Arc<AtomicBool>,
    ) -> Option<(PathBuf, FileStamp, Option<LargestFirst>)> {
        if self.files.is_empty() {
            return None;
        }
        if largest_running.swap(true, Ordering::AcqRel) {
            let (path, stamp) = self.files.pop_front()?;
            return Some((path, stamp, None));
        }
        let largest = self
            .files
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, stamp))| (stamp.size(), std::cmp::Reverse(*i)))
            .map(|(i, _)| i)?;
        let (path, stamp) = self.files.remove(largest)?;
        Some((path, stamp, Some(LargestFirst(Arc::clone(largest_running)))))
    }
}

/// Held by the job of a read chosen largest-first (see the module docs):
/// while it exists, the other reads follow the walk. Dropped with the job,
/// once the read ended, was cancelled or never started.
#[derive(Debug)]
pub(crate) struct LargestFirst(Arc<AtomicBool>);

impl Drop for LargestFirst {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Trees looked up lately: candidates come directory by directory.
const RECENT_TREES: usize = 16;

/// The parent snapshot's nodes by path, for the scout.
pub(crate) struct ParentLookup {
    trees: ParentTrees,
    /// The parent snapshot's tree of `/`, if there is a parent.
    root: Option<Arc<Tree>>,
    recent: VecDeque<(PathBuf, Option<Arc<Tree>>)>,
}

impl ParentLookup {
    pub(crate) fn new(trees: ParentTrees, root: Option<Tree>) -> Self {
        ParentLookup {
            trees,
            root: root.map(Arc::new),
            recent: VecDeque::with_capacity(RECENT_TREES),
        }
    }

    /// Whether the parent snapshot has the file at the absolute `path` with
    /// this stamp and all its content stored (the walker will not read it).
    fn holds_unchanged(&mut self, shared: &Shared, path: &Path, stamp: FileStamp) -> bool {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let Some(tree) = self.dir(dir) else {
            return false;
        };
        previous_node(Some(&tree), name).is_some_and(|node| may_reuse(shared, node, stamp))
    }

    /// The parent snapshot's listing of the absolute directory `dir`.
    fn dir(&mut self, dir: &Path) -> Option<Arc<Tree>> {
        let Some(parent_dir) = dir.parent() else {
            return self.root.clone();
        };
        if let Some((_, tree)) = self.recent.iter().find(|(recent, _)| recent == dir) {
            return tree.clone();
        }
        let tree = self.load_child(parent_dir, dir.file_name()?);
        if self.recent.len() == RECENT_TREES {
            self.recent.pop_front();
        }
        self.recent.push_back((dir.to_owned(), tree.clone()));
        tree
    }

    fn load_child(&mut self, parent_dir: &Path, name: &std::ffi::OsStr) -> Option<Arc<Tree>> {
        let parent = self.dir(parent_dir)?;
        // Only directories have a subtree (as the walker relies on too).
        let subtree = previous_node(Some(&parent), name)?.subtree?;
        self.trees.load(subtree).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real file of `len` bytes (sparse) and its stamp.
    fn file(dir: &Path, name: &str, len: u64) -> (PathBuf, FileStamp) {
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        let stamp = FileStamp::of_metadata(&std::fs::symlink_metadata(&path).unwrap());
        (path, stamp)
    }

    const MIB: u64 = 1 << 20;

    fn unlimited() -> ReadAhead {
        ReadAhead::new(Limits::default())
    }

    #[test]
    fn the_walker_takes_a_read_of_the_same_stamp_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, stamp) = file(dir.path(), "a", 2 * MIB);
        let read_ahead = unlimited();
        let (sender, cancelled) = read_ahead.add(&path, stamp).unwrap().unwrap();
        let taken = read_ahead.take(&path, stamp).expect("read ahead");
        let result = taken.into_result();
        sender.send(FileResult::Unreadable("x".into())).unwrap();
        assert_eq!(result.recv().unwrap(), FileResult::Unreadable("x".into()));
        assert!(!cancelled.load(Ordering::Relaxed), "used, not cancelled");
        assert!(read_ahead.take(&path, stamp).is_none(), "taken once");
    }

    /// A read the walker cannot use (the file changed since) or does not
    /// (the parent holds the file unchanged) is cancelled.
    #[test]
    fn an_unused_read_is_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let (changed, before) = file(dir.path(), "changed", 2 * MIB);
        let (_, grown) = file(dir.path(), "changed", 3 * MIB);
        let (unused, stamp) = file(dir.path(), "unused", 2 * MIB);
        let read_ahead = unlimited();
        let (_sender, changed_cancelled) = read_ahead.add(&changed, before).unwrap().unwrap();
        let (_sender, unused_cancelled) = read_ahead.add(&unused, stamp).unwrap().unwrap();
        assert!(read_ahead.take(&changed, grown).is_none());
        assert!(changed_cancelled.load(Ordering::Relaxed));
        let taken = read_ahead.take(&unused, stamp).expect("same stamp");
        assert!(!unused_cancelled.load(Ordering::Relaxed));
        drop(taken);
        assert!(unused_cancelled.load(Ordering::Relaxed));
    }

    #[test]
    fn files_the_walker_passed_are_not_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_stamp) = file(dir.path(), "a", 2 * MIB);
        let (b, b_stamp) = file(dir.path(), "b", 2 * MIB);
        let (c, c_stamp) = file(dir.path(), "c", 2 * MIB);
        let (small, small_stamp) = file(dir.path(), "d", MIB - 1);
        let read_ahead = unlimited();
        assert!(read_ahead.take(&b, b_stamp).is_none());
        assert!(read_ahead.add(&a, a_stamp).unwrap().is_none(), "before b");
        assert!(read_ahead.add(&b, b_stamp).unwrap().is_none(), "b itself");
        assert!(read_ahead.add(&c, c_stamp).unwrap().is_some(), "after b");
        // Small files are never read ahead, so they do not move the walker's mark.
        assert!(read_ahead.take(&small, small_stamp).is_none());
        assert!(read_ahead.take(&c, c_stamp).is_some());
    }

    #[test]
    fn the_limits_hold_the_scout_until_the_walker_takes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|name| file(dir.path(), name, 2 * MIB))
            .collect();
        // Two files, or 5 MiB: the third file of 2 MiB waits on both counts.
        let read_ahead = ReadAhead::new(Limits {
            files: 2,
            bytes: 5 * MIB,
        });
        for (path, stamp) in &files[..2] {
            assert!(read_ahead.add(path, *stamp).unwrap().is_some());
        }
        std::thread::scope(|scope| {
            let waiting =
                scope.spawn(|| read_ahead.add(&files[2].0, files[2].1).map(|q| q.is_some()));
            let (path, stamp) = &files[0];
            assert!(read_ahead.take(path, *stamp).is_some());
            assert!(matches!(waiting.join().unwrap(), Ok(true)));
        });
        assert_eq!(read_ahead.lock().pending.len(), 2);
        assert_eq!(read_ahead.lock().bytes, 4 * MIB);
    }

    /// One read at a time is of the largest file known (the first of
    /// equals); while it runs the others follow the walk, and once it ends
    /// the next read is of the largest file left.
    #[test]
    fn one_read_at_a_time_is_of_the_largest_file_the_others_follow_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let mut candidates = Candidates::default();
        for (name, size) in [("a", 2), ("b", 9), ("c", 3), ("d", 9), ("e", 4)] {
            candidates
                .files
                .push_back(file(dir.path(), name, size * MIB));
        }
        let running = Arc::new(AtomicBool::new(false));
        let mut next = || {
            let (path, _, largest_first) = candidates.next(&running).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, largest_first)
        };
        let (first, largest) = next();
        assert_eq!(first, "b", "the largest, the first of equals");
        assert!(largest.is_some() && running.load(Ordering::Acquire));
        let walk: Vec<_> = [next(), next()]
            .into_iter()
            .map(|(p, l)| (p, l.is_some()))
            .collect();
        assert_eq!(walk, [("a".into(), false), ("c".into(), false)]);
        drop(largest);
        assert!(!running.load(Ordering::Acquire), "the read ended");
        let (second, largest) = next();
        assert_eq!(second, "d");
        assert!(largest.is_some());
        drop(largest);
        let (last, largest) = next();
        assert_eq!(
            (last.as_str(), largest.is_some()),
            ("e", true),
            "alone, it is the largest"
        );
        drop(largest);
        assert!(candidates.next(&running).is_none());
        assert!(
            !running.load(Ordering::Acquire),
            "nothing chosen, nothing marked"
        );
    }

    #[test]
    fn one_file_larger_than_the_byte_limit_is_read_ahead_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, stamp) = file(dir.path(), "huge", 8 * MIB);
        let read_ahead = ReadAhead::new(Limits {
            files: 4,
            bytes: 2 * MIB,
        });
        assert!(read_ahead.add(&path, stamp).unwrap().is_some());
    }

    #[test]
    fn finishing_the_walk_cancels_what_was_not_taken_and_releases_the_scout() {
        let dir = tempfile::tempdir().unwrap();
        let (a, a_stamp) = file(dir.path(), "a", 2 * MIB);
        let (b, b_stamp) = file(dir.path(), "b", 2 * MIB);
        let read_ahead = ReadAhead::new(Limits {
            files: 1,
            bytes: 64 * MIB,
        });
        let (_sender, cancelled) = read_ahead.add(&a, a_stamp).unwrap().unwrap();
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| read_ahead.add(&b, b_stamp).map(|q| q.is_some()));
            read_ahead.finish();
            assert!(matches!(waiting.join().unwrap(), Err(Finished)));
        });
        assert!(cancelled.load(Ordering::Relaxed));
        assert!(read_ahead.take(&a, a_stamp).is_none());
    }
}
