//! The parent snapshot's trees, loaded for the walker a little ahead of time.
//!
//! The walker needs the parent's listing of every directory it enters. Loading
//! them one by one costs a storage round trip per directory, which dominates
//! an unchanged backup on a remote store. So the subdirectories of each
//! directory the walker enters join the front of a queue (the walk visits
//! them next, depth-first), and the queued listings load concurrently on the
//! async runtime, a bounded number at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::workers::Shared;
use crate::tree::{NodeType, Tree};
use crate::{Id, Result};

/// Tree loads running at once at most.
const MAX_LOADING: usize = 32;
/// Trees loading or loaded but not yet used at most (bounds memory).
const MAX_AHEAD: usize = 256;

/// Loads trees of the parent snapshot, with prefetching.
pub(crate) struct ParentTrees {
    shared: Arc<Shared>,
    runtime: Handle,
    /// Trees loading (or loaded) ahead of the walk.
    loading: HashMap<Id, JoinHandle<Result<Tree>>>,
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
            Some(handle) => match self.runtime.block_on(handle) {
                Ok(loaded) => loaded.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
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
            if let Some(unused) = self.loading.remove(id) {
                unused.abort();
            }
        }
    }

    /// Starts loading waiting trees, within the limits. Finished loads do
    /// not count against [`MAX_LOADING`], so trees loaded far ahead never
    /// keep the walk's next directory waiting for a slot.
    fn start_waiting(&mut self) {
        let mut running = self.loading.values().filter(|h| !h.is_finished()).count();
        while running < MAX_LOADING && self.loading.len() < MAX_AHEAD {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            if !self.wanted.remove(&id) {
                continue;
            }
            let shared = Arc::clone(&self.shared);
            let load = async move { shared.repo.load_tree(&shared.index, &id).await };
            self.loading.insert(id, self.runtime.spawn(load));
            running += 1;
        }
    }
}
