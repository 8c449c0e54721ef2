//! The parent snapshot's trees, loaded for the walker a little ahead of time.
//!
//! The walker needs the parent's listing of every directory it enters. Loading
//! them one by one costs a storage round trip per directory, which dominates
//! an unchanged backup on a remote store; so when the walker enters a
//! directory, the listings of its subdirectories start loading concurrently
//! on the async runtime.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::workers::Shared;
use crate::tree::{NodeType, Tree};
use crate::{Id, Result};

/// Trees loading ahead of the walk at most (bounds memory and requests).
const PREFETCH_LIMIT: usize = 64;

/// Loads trees of the parent snapshot, with prefetching.
pub(crate) struct ParentTrees {
    shared: Arc<Shared>,
    runtime: Handle,
    loading: HashMap<Id, JoinHandle<Result<Tree>>>,
}

impl ParentTrees {
    /// Loads through `shared.repo` on `runtime`.
    pub(crate) fn new(shared: Arc<Shared>, runtime: Handle) -> Self {
        ParentTrees {
            shared,
            runtime,
            loading: HashMap::new(),
        }
    }

    /// The tree `id` (from a prefetch if one was started). A tree that cannot
    /// be loaded only costs re-reading the files below it, so it is logged,
    /// not fatal.
    pub(crate) fn load(&mut self, id: Id) -> Option<Tree> {
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
        loaded
            .inspect_err(|e| {
                tracing::warn!(tree = %id, "cannot load a tree of the parent snapshot, its files will be read again: {e}");
            })
            .ok()
    }

    /// Starts loading the subtrees of `tree`'s directories, as many as the
    /// limit allows; returns their IDs for [`ParentTrees::forget`].
    pub(crate) fn prefetch_children(&mut self, tree: &Tree) -> Vec<Id> {
        let mut started = Vec::new();
        let subtrees = tree
            .nodes
            .iter()
            .filter(|n| n.node_type == NodeType::Dir)
            .filter_map(|n| n.subtree);
        for id in subtrees {
            if self.loading.len() >= PREFETCH_LIMIT {
                break;
            }
            if self.loading.contains_key(&id) {
                continue;
            }
            let shared = Arc::clone(&self.shared);
            let load = async move { shared.repo.load_tree(&shared.index, &id).await };
            self.loading.insert(id, self.runtime.spawn(load));
            started.push(id);
        }
        started
    }

    /// Cancels the prefetches among `ids` that were never used (directories
    /// that are gone or excluded now).
    pub(crate) fn forget(&mut self, ids: &[Id]) {
        for id in ids {
            if let Some(unused) = self.loading.remove(id) {
                unused.abort();
            }
        }
    }
}
