//! Metadata prefetch: threads that list directories and `lstat` their
//! entries ahead of the walker.
//!
//! The walker must go one entry at a time, in name order, and on a cold cache
//! each `lstat` waits for the kernel to read an inode. A few threads doing the
//! same reads in parallel, in about the walker's order, keep the kernel's
//! dentry and inode caches warm ahead of it, and keep what they listed for
//! the walker to take ([`Listings::take`]) instead of listing and statting
//! again, which on a warm cache was a third of the walker's CPU time. What
//! they keep is bounded ([`MAX_KEPT_ENTRIES`]): once half of it waits for
//! the walker, they wait for the walker to take some before listing more,
//! rather than list on and throw away what does not fit, which the walker
//! would then list a second time (issue 23: in an unchanged re-backup of
//! 100 k tiny files two thirds of the directories were listed twice, 154 k
//! `statx` calls). Listings of directories the walker has passed are
//! dropped, so none waits for a walker that will never take it. They apply
//! the backup's excludes and stay on each target's file system, so they
//! never read what the walker will not, and they stop when the walk ends.
//!
//! They also hand the large regular files they find to the read-ahead
//! ([`Prefetch::large_files`], see `ahead`), as many as its queue holds.
//!
//! A kept listing is a little older than one the walker would make itself;
//! a backup is not a point-in-time copy either way (files that change while
//! read are reported), and the next backup sees whatever changed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::ahead::READ_AHEAD_MIN_BYTES;
use super::exclude::{Excludes, is_cache_dir};

/// Running prefetch threads; dropping this stops and joins them.
pub(crate) struct Prefetch {
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
    large_files: Receiver<LargeFile>,
}

/// A regular file of [`READ_AHEAD_MIN_BYTES`] or more, with its `lstat` result.
pub(crate) type LargeFile = (PathBuf, std::fs::Metadata);

/// Large files found and not yet taken by the read-ahead, at most; more are
/// left for the walker to queue. Each is a path and an `lstat` result.
const LARGE_FILES_QUEUED: usize = 4096;

/// Entries of kept listings not yet taken, at most: about 200 bytes each,
/// so a few MiB however large the tree.
const MAX_KEPT_ENTRIES: usize = 16 * 1024;

/// A directory's entries in name-byte order with their `lstat` results.
pub(crate) type Listing = Vec<(OsString, std::fs::Metadata)>;

/// Listings the prefetch kept for the walker, by directory path.
#[derive(Default)]
pub(crate) struct Listings {
    kept: Mutex<KeptListings>,
    /// Signalled when the walker takes a listing, when a listing the walker
    /// waits for is done, and when the prefetch stops.
    changed: Condvar,
}

#[derive(Default)]
struct KeptListings {
    /// In walk order: a depth-first walk in name order visits directories
    /// in the order of their paths' components, which is `Path`'s order.
    by_dir: BTreeMap<PathBuf, Listing>,
    /// Entries in `by_dir`.
    entries: usize,
    /// Directories a prefetch thread is listing.
    listing: Vec<PathBuf>,
    /// The directory the walker asked for last: it has passed every
    /// directory before it and will not ask for those again.
    walker_at: Option<PathBuf>,
    /// The directory the walker waits for a prefetch thread to list.
    walker_waits_for: Option<PathBuf>,
    /// Prefetch threads waiting for room.
    threads_waiting: usize,
    /// The prefetch is stopping: nobody waits any more.
    stopped: bool,
}

impl KeptListings {
    /// Whether the walker has passed (or is at) `dir`.
    fn passed(&self, dir: &Path) -> bool {
        self.walker_at.as_deref().is_some_and(|at| dir <= at)
    }

    fn is_listing(&self, dir: &Path) -> bool {
        self.listing.iter().any(|listing| listing == dir)
    }
}

impl Listings {
    /// The listing of `dir` if the prefetch kept one (each is taken once),
    /// after waiting for a prefetch thread that is listing it: on a cold
    /// cache the walker catches up with them, and listing it too would cost
    /// the same wait for the disk and the CPU twice. The walker asks for
    /// every directory it lists, in walk order, so the listings before `dir`
    /// are of directories it passed: they go too.
    pub(crate) fn take(&self, dir: &Path) -> Option<Listing> {
        let mut kept = self.lock();
        if kept.is_listing(dir) && !kept.stopped {
            kept.walker_waits_for = Some(dir.to_owned());
            kept = self
                .changed
                .wait_while(kept, |kept| kept.is_listing(dir) && !kept.stopped)
                .expect("prefetch listings lock poisoned");
            kept.walker_waits_for = None;
        }
        let mut ahead = kept.by_dir.split_off(dir);
        let listing = ahead.remove(dir);
        let passed = std::mem::replace(&mut kept.by_dir, ahead);
        kept.entries -= passed.values().map(Vec::len).sum::<usize>();
        kept.entries -= listing.as_ref().map_or(0, Vec::len);
        kept.walker_at = Some(dir.to_owned());
        let wake = kept.threads_waiting > 0;
        drop(kept);
        if wake {
            self.changed.notify_all();
        }
        // Dropped outside the lock.
        drop(passed);
        listing
    }

    /// Waits while half of [`MAX_KEPT_ENTRIES`] or more are kept, so that
    /// what the threads list next fits in the other half; returns at once
    /// once the prefetch stops.
    fn wait_for_room(&self) {
        let mut kept = self.lock();
        kept.threads_waiting += 1;
        let mut kept = self
            .changed
            .wait_while(kept, |kept| {
                !kept.stopped && kept.entries >= MAX_KEPT_ENTRIES / 2
            })
            .expect("prefetch listings lock poisoned");
        kept.threads_waiting -= 1;
    }

    /// Marks `dir` as being listed until the returned guard is given the
    /// listing or dropped.
    fn start_listing(&self, dir: PathBuf) -> ListingGuard<'_> {
        self.lock().listing.push(dir.clone());
        ListingGuard {
            listings: self,
            dir,
        }
    }

    /// Wakes every thread waiting, for good.
    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeptListings> {
        self.kept.lock().expect("prefetch listings lock poisoned")
    }
}

/// A directory a prefetch thread is listing; dropped without a listing
/// (the listing failed) it only stops the walker from waiting for one.
struct ListingGuard<'l> {
    listings: &'l Listings,
    dir: PathBuf,
}

impl ListingGuard<'_> {
    /// Keeps `listing` unless that would exceed [`MAX_KEPT_ENTRIES`] (but
    /// always if the walker waits for it) or the walker has passed the
    /// directory already.
    fn keep(self, listing: Listing) {
        let mut kept = self.listings.lock();
        let waited_for = kept.walker_waits_for.as_ref() == Some(&self.dir);
        let fits = kept.entries + listing.len() <= MAX_KEPT_ENTRIES;
        if (fits || waited_for) && !kept.passed(&self.dir) {
            kept.entries += listing.len();
            // A directory listed twice (a target inside another) is kept once.
            if let Some(replaced) = kept.by_dir.insert(self.dir.clone(), listing) {
                kept.entries -= replaced.len();
            }
        }
    }
}

impl Drop for ListingGuard<'_> {
    fn drop(&mut self) {
        let mut kept = self.listings.lock();
        if let Some(i) = kept.listing.iter().position(|dir| *dir == self.dir) {
            kept.listing.swap_remove(i);
        }
        let wake = kept.walker_waits_for.as_ref() == Some(&self.dir);
        drop(kept);
        if wake {
            self.listings.changed.notify_all();
        }
    }
}

struct State {
    queue: Mutex<Queue>,
    changed: Condvar,
    listings: Arc<Listings>,
}

#[derive(Default)]
struct Queue {
    /// Directories to list, with the device they must be on.
    dirs: Vec<(PathBuf, u64)>,
    /// Threads listing a directory (and so maybe about to queue more).
    listing: usize,
    /// No more work: everything was listed or the walk ended.
    done: bool,
}

impl Prefetch {
    /// Starts `threads` threads prefetching below each of `roots`.
    pub(crate) fn start(roots: &[PathBuf], excludes: &Excludes, threads: usize) -> Self {
        let state = Arc::new(State {
            queue: Mutex::new(Queue {
                dirs: root_stack(roots, excludes),
                ..Queue::default()
            }),
            changed: Condvar::new(),
            listings: Arc::default(),
        });
        let (large_sender, large_files) = crossbeam_channel::bounded(LARGE_FILES_QUEUED);
        let threads = (0..threads)
            .filter_map(|n| {
                let (state, excludes) = (Arc::clone(&state), excludes.clone());
                let large_files = large_sender.clone();
                // Prefetching is an optimisation: a thread that cannot start is not an error.
                std::thread::Builder::new()
                    .name(format!("arca-prefetch-{n}"))
                    .spawn(move || prefetch(&state, &excludes, &large_files))
                    .ok()
            })
            .collect();
        Prefetch {
            state,
            threads,
            large_files,
        }
    }

    /// The large regular files the threads find, in about the walk's order;
    /// closes when they are done.
    pub(crate) fn large_files(&self) -> Receiver<LargeFile> {
        self.large_files.clone()
    }

    /// What the threads list, for the walker to take.
    pub(crate) fn listings(&self) -> Arc<Listings> {
        Arc::clone(&self.state.listings)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.state.lock().done = true;
        self.state.changed.notify_all();
        self.state.listings.stop();
        for thread in self.threads.drain(..) {
            // A panic here only lost some prefetching.
            let _ = thread.join();
        }
    }
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("prefetch queue lock poisoned")
    }

    /// The next directory to list, once there is one; `None` when done.
    fn next(&self) -> Option<(PathBuf, u64)> {
        let mut queue = self
            .changed
            .wait_while(self.lock(), |queue| {
                !queue.done && queue.dirs.is_empty() && queue.listing > 0
            })
            .expect("prefetch queue lock poisoned");
        if queue.done {
            return None;
        }
        let Some(dir) = queue.dirs.pop() else {
            // Nothing queued and nobody listing: the whole tree is done.
            queue.done = true;
            drop(queue);
            self.changed.notify_all();
            return None;
        };
        queue.listing += 1;
        Some(dir)
    }

    /// Queues `subdirs` (in name order) of a directory this thread
    /// finished listing.
    fn listed(&self, subdirs: Vec<(PathBuf, u64)>) {
        let mut queue = self.lock();
        queue.listing -= 1;
        // Popped from the end: the first name next, as the walker goes.
        queue.dirs.extend(subdirs.into_iter().rev());
        drop(queue);
        self.changed.notify_all();
    }
}

/// The directories of `roots` to list first, with their devices, as a
/// stack: in the walker's order with the first on top, since kept listings of
/// a later root would hold the budget until the walker got there. A root
/// inside another is listed with it; excluded ones are not listed.
fn root_stack(roots: &[PathBuf], excludes: &Excludes) -> Vec<(PathBuf, u64)> {
    let mut roots: Vec<&PathBuf> = roots
        .iter()
        .filter(|root| !excludes.is_excluded_with_ancestors(root))
        .collect();
    roots.sort();
    roots.dedup_by(|inner, outer| inner.starts_with(outer));
    roots
        .into_iter()
        .rev()
        .filter_map(|root| {
            let metadata = std::fs::symlink_metadata(root).ok()?;
            metadata.is_dir().then(|| (root.clone(), metadata.dev()))
        })
        .collect()
}

fn prefetch(state: &State, excludes: &Excludes, large_files: &Sender<LargeFile>) {
    loop {
        state.listings.wait_for_room();
        let Some((dir, device)) = state.next() else {
            return;
        };
        let mut subdirs = Vec::new();
        let guard = state.listings.start_listing(dir.clone());
        if let Some(listing) = list(&dir, excludes) {
            // The walker keeps only the tag of a cache directory it leaves out.
            let mut cache_dir = None;
            for (name, metadata) in &listing {
                if metadata.is_dir() && metadata.dev() == device {
                    subdirs.push((dir.join(name), device));
                } else if metadata.is_file()
                    && metadata.size() >= READ_AHEAD_MIN_BYTES
                    && !*cache_dir
                        .get_or_insert_with(|| excludes.exclude_caches && is_cache_dir(&dir))
                {
                    // A full queue only leaves the file to the walker.
                    let _ = large_files.try_send((dir.join(name), metadata.clone()));
                }
            }
            guard.keep(listing);
        }
        state.listed(subdirs);
    }
}

/// The entries of `dir` that are not excluded, in name-byte order, with
/// their `lstat` results; `None` if anything failed (the walker lists the
/// directory again and reports the error).
fn list(dir: &Path, excludes: &Excludes) -> Option<Listing> {
    let mut listing = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        if excludes.is_excluded(&entry.path()) {
            continue;
        }
        // `DirEntry::metadata` is an lstat relative to the open directory.
        listing.push((entry.file_name(), entry.metadata().ok()?));
    }
    listing.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
    Some(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every thread ends by itself once the tree is listed, excluded
    /// directories and all; dropping the handle then joins them.
    #[test]
    fn threads_end_when_the_tree_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a/b/c", "a/d", "e", "skip/deep"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("f"), b"x").unwrap();
        }
        let excludes = Excludes::new(&["skip".into()], &[], false).unwrap();
        let prefetch = Prefetch::start(&[dir.path().to_owned()], &excludes, 3);
        let done = prefetch
            .state
            .changed
            .wait_while(prefetch.state.lock(), |queue| !queue.done);
        let queue = done.unwrap();
        assert!(queue.dirs.is_empty());
        assert_eq!(queue.listing, 0);
        drop(queue);
        let listings = prefetch.listings();
        drop(prefetch);

        // Every listed directory was kept once, sorted, without excluded entries.
        let names = |listing: Listing| -> Vec<String> {
            listing
                .into_iter()
                .map(|(name, _)| name.into_string().unwrap())
                .collect()
        };
        let root = listings.take(dir.path()).unwrap();
        assert!(root.iter().all(|(_, metadata)| metadata.is_dir()));
        assert_eq!(names(root), ["a", "e"]);
        assert_eq!(
            names(listings.take(&dir.path().join("a")).unwrap()),
            ["b", "d"]
        );
        assert!(listings.take(dir.path()).is_none(), "taken once");
        assert!(listings.take(&dir.path().join("skip")).is_none());
    }

    /// Roots are listed in the walker's order, each once, excluded ones not.
    #[test]
    fn roots_are_listed_in_walk_order() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a/x", "a-b", "b", "skip"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let roots: Vec<PathBuf> = ["b", "a-b", "a/x", "skip", "a"]
            .iter()
            .map(|root| dir.path().join(root))
            .collect();
        let excludes = Excludes::new(&["skip".into()], &[], false).unwrap();
        let mut stack = root_stack(&roots, &excludes);
        let mut popped = Vec::new();
        while let Some((root, _)) = stack.pop() {
            popped.push(root.strip_prefix(dir.path()).unwrap().to_owned());
        }
        assert_eq!(popped, [Path::new("a"), Path::new("a-b"), Path::new("b")]);
    }

    fn listing(len: usize) -> Listing {
        let metadata = std::fs::symlink_metadata(".").unwrap();
        (0..len)
            .map(|n| (OsString::from(n.to_string()), metadata.clone()))
            .collect()
    }

    /// Listings beyond the budget are not kept; taking one frees its share,
    /// and the walker passing a directory drops what was kept before it.
    #[test]
    fn kept_entries_are_bounded_and_dropped_once_passed() {
        let listings = Listings::default();
        let keep = |dir: &str, len| listings.start_listing(dir.into()).keep(listing(len));
        keep("/a", MAX_KEPT_ENTRIES - 10);
        keep("/b", 11);
        keep("/c", 10);
        assert_eq!(
            listings.take(Path::new("/a")).unwrap().len(),
            MAX_KEPT_ENTRIES - 10
        );
        assert!(listings.take(Path::new("/b")).is_none(), "it did not fit");
        keep("/a/x", 5);
        keep("/d", 11);
        assert_eq!(listings.lock().entries, 21, "/a/x is behind the walker");
        assert_eq!(listings.take(Path::new("/d")).unwrap().len(), 11);
        let kept = listings.lock();
        assert!(kept.by_dir.is_empty(), "/c was passed");
        assert_eq!(kept.entries, 0);
    }

    /// Threads wait while half the budget is kept, until the walker takes
    /// some.
    #[test]
    fn threads_wait_for_room() {
        let listings = Listings::default();
        listings
            .start_listing("/a".into())
            .keep(listing(MAX_KEPT_ENTRIES / 2));
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| listings.wait_for_room());
            while listings.lock().threads_waiting == 0 {
                std::thread::yield_now();
            }
            assert!(!thread.is_finished());
            listings.take(Path::new("/a")).unwrap();
            thread.join().unwrap();
        });
        listings.lock().entries = MAX_KEPT_ENTRIES;
        listings.stop();
        listings.wait_for_room();
    }

    /// The walker waits for a directory a thread is listing instead of
    /// listing it too; a listing that fails lets it go on without one.
    #[test]
    fn the_walker_waits_for_a_listing_in_progress() {
        let listings = Listings::default();
        for result in [Some(listing(3)), None] {
            let guard = listings.start_listing("/d".into());
            std::thread::scope(|scope| {
                let walker = scope.spawn(|| listings.take(Path::new("/d")));
                while listings.lock().walker_waits_for.is_none() {
                    std::thread::yield_now();
                }
                let expected = result.as_ref().map(Vec::len);
                match result {
                    Some(listing) => guard.keep(listing),
                    None => drop(guard),
                }
                assert_eq!(walker.join().unwrap().map(|l| l.len()), expected);
            });
            listings.lock().walker_at = None;
        }
    }
}
