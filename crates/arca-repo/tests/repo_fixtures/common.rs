//! Fixtures the crate's unit tests share with its integration tests: small
//! repository options, deterministic content, walking a snapshot's trees and
//! a backend that lets a test take over writes.
//!
//! This file is compiled twice: as `repo_fixtures::common` of `tests/repo` and, by
//! path, as `src/testing.rs`'s `common` (the `testing` module exists only in
//! unit-test builds, so integration tests cannot reach it). The crate's own
//! types are therefore named through `super`, which imports them from
//! `arca_repo` in one build and from `crate` in the other.

use std::ffi::OsStr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arca_chunk::ChunkerParams;
use arca_crypto::KdfParams;
use arca_store::{Backend, ObjectMeta};
use bytes::Bytes;

use super::{Id, Index, InitOptions, Node, Repository, Tree};

/// Cheap key derivation, small chunks (16/64/256 KiB) and the smallest packs
/// (1 MiB), so tests span several chunks and packs with little data.
pub(crate) fn small_repo_options() -> InitOptions {
    InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_size: 1024 * 1024,
        ..InitOptions::default()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so content neither
/// compresses nor deduplicates across seeds.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The tree of the directory at absolute `path` in the snapshot whose root
/// tree is `root`.
pub(crate) async fn tree_at(repo: &Repository, index: &Index, root: &Id, path: &Path) -> Tree {
    let mut tree = repo.load_tree(index, root).await.unwrap();
    for component in path.strip_prefix("/").unwrap().components() {
        let node = node_named(&tree, component.as_os_str());
        tree = repo
            .load_tree(index, &node.subtree.expect("a directory"))
            .await
            .unwrap();
    }
    tree
}

/// The node called `name` in `tree`.
pub(crate) fn node_named<'t>(tree: &'t Tree, name: &OsStr) -> &'t Node {
    tree.nodes
        .iter()
        .find(|n| n.name.as_os_str() == name)
        .unwrap_or_else(|| panic!("no node {name:?} in {:?}", names(tree)))
}

/// The names of `tree`'s nodes, in order.
pub(crate) fn names(tree: &Tree) -> Vec<String> {
    tree.nodes.iter().map(|n| n.name.to_string()).collect()
}

/// What an [`InterceptWrites`] backend does with a write or a delete.
#[async_trait::async_trait]
pub(crate) trait WriteHook: std::fmt::Debug + Send + Sync + 'static {
    /// Handles a `put` of `data` at `path`; `inner` is the real backend.
    async fn put(&self, inner: &dyn Backend, path: &str, data: Bytes) -> arca_store::Result<()>;

    /// Handles a `delete` of `path`; by default passes it on.
    async fn delete(&self, inner: &dyn Backend, path: &str) -> arca_store::Result<()> {
        inner.delete(path).await
    }
}

/// Forwards every request to `inner`, except writes and deletes, which
/// `hook` handles: a store that fails, stalls or tears writes on the test's
/// terms.
#[derive(Debug)]
pub(crate) struct InterceptWrites<H> {
    pub(crate) inner: Arc<dyn Backend>,
    pub(crate) hook: H,
}

impl<H> std::fmt::Display for InterceptWrites<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl<H: WriteHook> Backend for InterceptWrites<H> {
    async fn get(&self, path: &str) -> arca_store::Result<Bytes> {
        self.inner.get(path).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> arca_store::Result<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn put(&self, path: &str, data: Bytes) -> arca_store::Result<()> {
        self.hook.put(self.inner.as_ref(), path, data).await
    }
    async fn delete(&self, path: &str) -> arca_store::Result<()> {
        self.hook.delete(self.inner.as_ref(), path).await
    }
    async fn list(&self, prefix: &str) -> arca_store::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn head(&self, path: &str) -> arca_store::Result<ObjectMeta> {
        self.inner.head(path).await
    }
    fn put_requests(&self, size: u64) -> u64 {
        self.inner.put_requests(size)
    }
    fn connections(&self) -> Option<usize> {
        self.inner.connections()
    }
}
