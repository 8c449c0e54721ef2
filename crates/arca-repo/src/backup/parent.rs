//! The parent snapshot's trees, loaded for the walker a little ahead of time.
//!
//! The walker needs the parent's listing of every directory it enters. Loading
//! them one by one costs a storage round trip per directory, which dominates
//! an unchanged backup on a remote store. So the subdirectories of each
//! directory the walker enters join the front of a queue (the walk visits
//! them next, depth-first), and the queued listings load concurrently on the
//! async runtime, a bounded number at a time.
//!
//! What is loaded ahead is bounded in bytes as well as in trees: a directory of a
//! thousand tiny files is a ~250 KiB tree that decodes to ~375 KiB of nodes, and
//! 256 of them ahead held ~96 MiB, the largest part of an unchanged re-backup's
//! memory over a million such files (issue 23).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::workers::Shared;
use crate::blob::BlobType;
use crate::tree::{NodeType, Tree};
use crate::{Id, Result};

/// Tree loads running at once at most.
const MAX_LOADING: usize = 32;
/// Trees loading or loaded but not yet used at most (bounds memory when
/// directories are small).
const MAX_AHEAD: usize = 256;
/// Plaintext bytes of the trees loading or loaded but not yet used at most
/// (bounds memory when directories are large): 32 trees of a thousand files.
const MAX_AHEAD_BYTES: u64 = 8 << 20;

/// What is loading or loaded ahead of the walk, against [`MAX_AHEAD`] and
/// [`MAX_AHEAD_BYTES`].
#[derive(Debug, Default)]
struct Ahead {
    trees: usize,
    bytes: u64,
}

impl Ahead {
    /// Whether one more tree of `bytes` fits; one tree always does, so a
    /// tree larger than the budget still loads ahead (alone).
    fn admits(&self, bytes: u64, max_trees: usize, max_bytes: u64) -> bool {
        self.trees == 0 || (self.trees < max_trees && self.bytes + bytes <= max_bytes)
    }

    fn add(&mut self, bytes: u64) {
        self.trees += 1;
        self.bytes += bytes;
    }

    fn remove(&mut self, bytes: u64) {
        self.trees -= 1;
        self.bytes -= bytes;
    }
}

/// Loads trees of the parent snapshot, with prefetching.
pub(crate) struct ParentTrees {
    shared: Arc<Shared>,
    runtime: Handle,
    /// Trees loading (or loaded) ahead of the walk, with their plaintext size.
    loading: HashMap<Id, (JoinHandle<Result<Tree>>, u64)>,
    /// The count and bytes of `loading`.
    ahead: Ahead,
    /// Trees the walk will want, in the order it will want them.
    waiting: VecDeque<Id>,
    /// The entries of `waiting` still wanted (others were forgotten or loaded).
    wanted: HashSet<Id>,
}

impl ParentTrees {
    /// Loads through `shared.repo` on `runtime`.
    pub(crate) fn new(shared: Arc<Shared>, runtime: Handle) -> Self {
        ParentTrees {
            shared,
            runtime,
            loading: HashMap::new(),
            ahead: Ahead::default(),
            waiting: VecDeque::new(),
            wanted: HashSet::new(),
        }
    }

    /// The tree `id` (from a prefetch if one was started). A tree that cannot
    /// be loaded only costs re-reading the files below it, so it is logged,
    /// not fatal.
    pub(crate) fn load(&mut self, id: Id) -> Option<Tree> {
        self.wanted.remove(&id);
        let loaded = match self.loading.remove(&id) {
            Some((handle, bytes)) => {
                self.ahead.remove(bytes);
                match self.runtime.block_on(handle) {
                    Ok(loaded) => loaded.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => {
                let shared = &*self.shared;
                self.runtime
                    .block_on(shared.repo.load_tree(&shared.index, &id))
                    .map_err(|e| e.to_string())
            }
        };
        self.start_waiting();
        loaded
            .inspect_err(|e| {
                tracing::warn!(tree = %id, "cannot load a tree of the parent snapshot, its files will be read again: {e}");
            })
            .ok()
    }

    /// Queues the subtrees of `tree`'s directories ahead of everything else
    /// waiting; returns their IDs for [`ParentTrees::forget`].
    pub(crate) fn prefetch_children(&mut self, tree: &Tree) -> Vec<Id> {
        let children: Vec<Id> = tree
            .nodes
            .iter()
            .filter(|n| n.node_type == NodeType::Dir)
            .filter_map(|n| n.subtree)
            .filter(|id| !self.loading.contains_key(id) && self.wanted.insert(*id))
            .collect();
        for id in children.iter().rev() {
            self.waiting.push_front(*id);
        }
        self.start_waiting();
        children
    }

    /// Drops the prefetches among `ids` that were never used (directories
    /// that are gone or excluded now).
    pub(crate) fn forget(&mut self, ids: &[Id]) {
        for id in ids {
            self.wanted.remove(id);
            if let Some((unused, bytes)) = self.loading.remove(id) {
                self.ahead.remove(bytes);
                unused.abort();
            }
        }
    }

    /// Starts loading waiting trees, within the limits. Finished loads do
    /// not count against [`MAX_LOADING`], so trees loaded far ahead never
    /// keep the walk's next directory waiting for a slot.
    fn start_waiting(&mut self) {
        let mut running = self
            .loading
            .values()
            .filter(|(handle, _)| !handle.is_finished())
            .count();
        while running < MAX_LOADING {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            if !self.wanted.contains(&id) {
                self.waiting.pop_front();
                continue;
            }
            // The plaintext size stands for the decoded tree's; a tree the
            // index does not know fails to load, and costs nothing ahead.
            let bytes = self
                .shared
                .index
                .get(BlobType::Tree, &id)
                .map_or(0, |location| {
                    u64::from(location.uncompressed_length.unwrap_or(location.length))
                });
            if !self.ahead.admits(bytes, MAX_AHEAD, MAX_AHEAD_BYTES) {
                break;
            }
            self.waiting.pop_front();
            self.wanted.remove(&id);
            let shared = Arc::clone(&self.shared);
            let load = async move { shared.repo.load_tree(&shared.index, &id).await };
            self.loading.insert(id, (self.runtime.spawn(load), bytes));
            self.ahead.add(bytes);
            running += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_is_bounded_in_trees_and_bytes_but_always_admits_one() {
        let mut ahead = Ahead::default();
        // A tree larger than the whole budget still loads ahead, alone.
        assert!(ahead.admits(100, 3, 50));
        ahead.add(100);
        assert!(!ahead.admits(1, 3, 50));
        ahead.remove(100);
        // Bytes bound large trees.
        for _ in 0..2 {
            assert!(ahead.admits(20, 3, 50));
            ahead.add(20);
        }
        assert!(!ahead.admits(20, 3, 50));
        assert!(ahead.admits(10, 3, 50));
        ahead.add(10);
        // The count bounds small ones.
        assert!(!ahead.admits(0, 3, 50));
        ahead.remove(20);
        assert_eq!((ahead.trees, ahead.bytes), (2, 30));
        assert!(ahead.admits(20, 3, 50));
    }
}
