//! Metadata prefetch: threads that list directories and `lstat` their
//! entries ahead of the walker.
//!
//! The walker must go one entry at a time, in name order, and on a cold cache
//! each `lstat` waits for the kernel to read an inode. A few threads doing the
//! same reads in any order, in parallel, keep the kernel's dentry and inode
//! caches warm ahead of it; what they learn is thrown away. They apply the
//! backup's excludes and stay on each target's file system, so they never
//! read what the walker will not, and they stop when the walk ends.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::exclude::Excludes;

/// Running prefetch threads; dropping this stops and joins them.
pub(crate) struct Prefetch {
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

struct State {
    queue: Mutex<Queue>,
    changed: Condvar,
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
        });
        let threads = (0..threads)
            .filter_map(|n| {
                let (state, excludes) = (Arc::clone(&state), excludes.clone());
                // Prefetching is an optimisation: a thread that cannot start is not an error.
                std::thread::Builder::new()
                    .name(format!("arca-prefetch-{n}"))
                    .spawn(move || prefetch(&state, &excludes))
                    .ok()
            })
            .collect();
        Prefetch { state, threads }
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

    /// Queues `subdirs` of a directory this thread finished listing.
    fn listed(&self, subdirs: Vec<(PathBuf, u64)>) {
        let mut queue = self.lock();
        queue.listing -= 1;
        queue.dirs.extend(subdirs);
        drop(queue);
        self.changed.notify_all();
    }
}

fn prefetch(state: &State, excludes: &Excludes) {
    while let Some((dir, device)) = state.next() {
        let mut subdirs = Vec::new();
        // Errors are the walker's to report; here they only end the listing.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if excludes.is_excluded(&path) {
                    continue;
                }
                // `DirEntry::metadata` is an lstat: symlinks are not followed.
                if let Ok(metadata) = entry.metadata()
                    && metadata.is_dir()
                    && metadata.dev() == device
                {
                    subdirs.push((path, device));
                }
            }
        }
        state.listed(subdirs);
    }
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
        drop(prefetch);
    }
}
