//! Walking a snapshot's trees by path, and `find`: the nodes whose name (or
//! full path) matches a glob.
//!
//! [`walk`] is the one depth-first, name-ordered walk that `find`, `stats`
//! and `dump` share; it loads each tree through the repository's cache.
//! These verbs and `diff` read through [`TreeReader`], which Arca's
//! [`Repository`] and `arca_restic`'s restic repository both implement, so
//! they work on either format with the same output.

use bytes::Bytes;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::blob::BlobType;
use crate::index::{BlobLocation, Index};
use crate::tree::{Node, NodeType, Tree};
use crate::{Error, Id, Repository, Result};

/// What the read-only verbs (`find`, `diff`, `stats`, `dump`) need from a
/// repository: trees and data blobs by ID through its loaded index, and
/// where a blob is stored.
pub trait TreeReader: Sync {
    /// The repository's loaded index.
    type Index: Sync;
    /// Bytes sealing added to a located blob's stored (and compressed) form.
    fn seal_overhead(location: &BlobLocation) -> u64;
    /// One tree, decoded and validated.
    fn load_tree(&self, index: &Self::Index, id: &Id) -> impl Future<Output = Result<Tree>> + Send;
    /// One data blob's plaintext, verified.
    fn read_data(&self, index: &Self::Index, id: &Id)
    -> impl Future<Output = Result<Bytes>> + Send;
    /// Where a blob is stored, with its stored and plaintext lengths.
    fn locate(index: &Self::Index, blob_type: BlobType, id: &Id) -> Option<BlobLocation>;
    /// A located blob's plaintext length (`None` if its stored length is
    /// shorter than sealing makes any blob).
    fn plaintext_len(location: &BlobLocation) -> Option<u64> {
        match location.uncompressed_length {
            Some(len) => Some(u64::from(len)),
            None => u64::from(location.length).checked_sub(Self::seal_overhead(location)),
        }
    }
}

impl TreeReader for Repository {
    type Index = Index;

    fn seal_overhead(location: &BlobLocation) -> u64 {
        location.envelope.overhead() as u64
    }

    fn load_tree(&self, index: &Index, id: &Id) -> impl Future<Output = Result<Tree>> + Send {
        Repository::load_tree(self, index, id)
    }

    fn read_data(&self, index: &Index, id: &Id) -> impl Future<Output = Result<Bytes>> + Send {
        self.read_blob(index, BlobType::Data, id)
    }

    fn locate(index: &Index, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        index.get(blob_type, id)
    }
}

/// The path of `name` inside the directory `dir` (`/` is the root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Visits every node under the tree `root`, depth first in name order, with
/// its absolute path (`/a/b`; names that are not UTF-8 are shown lossily).
/// `visit` returns whether to descend into a directory.
pub async fn walk<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    root: &Id,
    base: &str,
    mut visit: impl FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    let tree = repo.load_tree(index, root).await?;
    // Pending nodes, next one last, each with the path of its directory.
    let mut pending: Vec<(String, Node)> = tree
        .nodes
        .into_iter()
        .rev()
        .map(|node| (base.to_owned(), node))
        .collect();
    while let Some((dir, node)) = pending.pop() {
        let path = join(&dir, &node.name.to_string());
        let descend = visit(&path, &node)?;
        if let (true, NodeType::Dir, Some(subtree)) = (descend, node.node_type, node.subtree) {
            let tree = repo.load_tree(index, &subtree).await?;
            pending.extend(
                tree.nodes
                    .into_iter()
                    .rev()
                    .map(|child| (path.clone(), child)),
            );
        }
    }
    Ok(())
}

/// restic's `find` patterns: a pattern without `/` matches a node's name, one
/// with `/` its whole path; `*` does not cross `/`.
#[derive(Debug, Clone)]
pub struct Matcher {
    names: GlobSet,
    paths: GlobSet,
}

impl Matcher {
    /// Compiles `patterns` (any one must match), optionally ignoring case.
    pub fn new(patterns: &[String], ignore_case: bool) -> Result<Matcher> {
        if patterns.is_empty() {
            return Err(Error::InvalidOptions(
                "find needs at least one pattern".into(),
            ));
        }
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|e| Error::InvalidOptions(format!("pattern {pattern:?}: {e}")))?;
            if pattern.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |set: GlobSetBuilder| {
            set.build()
                .map_err(|e| Error::InvalidOptions(format!("patterns: {e}")))
        };
        Ok(Matcher {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether the node at `path` named `name` matches.
    pub fn matches(&self, path: &str, name: &str) -> bool {
        self.names.is_match(name) || self.paths.is_match(path)
    }
}

/// One node `find` found.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its absolute path in the snapshot.
    pub path: String,
    /// The node.
    pub node: Node,
}

/// The nodes of the snapshot tree `root` that `matcher` matches, in walk
/// order.
pub async fn find<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    root: &Id,
    matcher: &Matcher,
) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    walk(repo, index, root, "/", |path, node| {
        if matcher.matches(path, &node.name.to_string()) {
            found.push(Found {
                path: path.to_owned(),
                node: node.clone(),
            });
        }
        Ok(true)
    })
    .await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str], ignore_case: bool) -> Matcher {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Matcher::new(&patterns, ignore_case).unwrap()
    }

    #[test]
    fn names_or_whole_paths() {
        let m = matcher(&["*.txt"], false);
        assert!(m.matches("/a/b/c.txt", "c.txt"));
        assert!(!m.matches("/a/b.txt/c", "c"));
        let m = matcher(&["/a/*/c"], false);
        assert!(m.matches("/a/b/c", "c"));
        assert!(!m.matches("/a/b/x/c", "c"), "* does not cross /");
        let m = matcher(&["/a/**/c"], false);
        assert!(m.matches("/a/b/x/c", "c"));
    }

    #[test]
    fn case_and_bad_patterns() {
        assert!(!matcher(&["README*"], false).matches("/readme.md", "readme.md"));
        assert!(matcher(&["README*"], true).matches("/readme.md", "readme.md"));
        assert!(matches!(
            Matcher::new(&["a[".to_string()], false),
            Err(Error::InvalidOptions(_))
        ));
        assert!(Matcher::new(&[], false).is_err());
    }

    #[test]
    fn join_handles_the_root() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
