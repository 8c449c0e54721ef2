//! Metadata prefetch: threads that list directories and `lstat` their
//! entries ahead of the walker.
//!
//! The walker must go one entry at a time, in name order, and on a cold cache
//! each `lstat` waits for the kernel to read an inode. A few threads doing the
//! same reads in parallel, in about the walker's order, keep the kernel's
//! dentry and inode caches warm ahead of it, and keep what they listed for
//! the walker to take ([`Listings::take`]) instead of listing and statting
//! again, which on a warm cache was a third of the walker's CPU time. What
//! they keep is bounded ([`MAX_KEPT_ENTRIES`]); beyond that they only warm
//! the caches. They apply the backup's excludes and stay on each target's
//! file system, so they never read what the walker will not, and they stop
//! when the walk ends.
//!
//! They also hand the large regular files they find to the read-ahead
//! ([`Prefetch::large_files`], see `ahead`), as many as its queue holds.
//!
//! A kept listing is a little older than one the walker would make itself;
//! a backup is not a point-in-time copy either way (files that change while
//! read are reported), and the next backup sees whatever changed.

use std::collections::HashMap;
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
}

#[derive(Default)]
struct KeptListings {
    by_dir: HashMap<PathBuf, Listing>,
    entries: usize,
}

impl Listings {
    /// The listing of `dir` if the prefetch kept one (each is taken once).
    pub(crate) fn take(&self, dir: &Path) -> Option<Listing> {
        let mut kept = self.kept.lock().expect("prefetch listings lock poisoned");
        let listing = kept.by_dir.remove(dir)?;
        kept.entries -= listing.len();
        Some(listing)
    }

    /// Keeps `listing` unless that would exceed [`MAX_KEPT_ENTRIES`].
    fn keep(&self, dir: PathBuf, listing: Listing) {
        let mut kept = self.kept.lock().expect("prefetch listings lock poisoned");
        if kept.entries + listing.len() <= MAX_KEPT_ENTRIES {
            kept.entries += listing.len();
            kept.by_dir.insert(dir, listing);
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
        let dirs = roots
            .iter()
            .filter_map(|root| {
                let metadata = std::fs::symlink_metadata(root).ok()?;
                metadata.is_dir().then(|| (root.clone(), metadata.dev()))
            })
            .collect();
        let state = Arc::new(State {
            queue: Mutex::new(Queue {
                dirs,
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

fn prefetch(state: &State, excludes: &Excludes, large_files: &Sender<LargeFile>) {
    while let Some((dir, device)) = state.next() {
        let mut subdirs = Vec::new();
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
            state.listings.keep(dir, listing);
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

    /// Listings beyond the budget are not kept; taking one frees its share.
    #[test]
    fn kept_entries_are_bounded() {
        let metadata = std::fs::symlink_metadata(".").unwrap();
        let listing = |len: usize| -> Listing {
            (0..len)
                .map(|n| (OsString::from(n.to_string()), metadata.clone()))
                .collect()
        };
        let listings = Listings::default();
        listings.keep("/big".into(), listing(MAX_KEPT_ENTRIES - 10));
        listings.keep("/over".into(), listing(11));
        listings.keep("/fits".into(), listing(10));
        assert!(listings.take(Path::new("/over")).is_none());
        assert_eq!(listings.take(Path::new("/fits")).unwrap().len(), 10);
        assert_eq!(
            listings.take(Path::new("/big")).unwrap().len(),
            MAX_KEPT_ENTRIES - 10
        );
        listings.keep("/over".into(), listing(11));
        assert!(listings.take(Path::new("/over")).is_some());
    }
}
