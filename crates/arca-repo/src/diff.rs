//! `diff`: what changed between two snapshots, as restic reports it.
//!
//! Paths are compared in name order; a subtree with the same ID on both
//! sides is skipped, so a diff of two snapshots that share most of their
//! trees reads little. Modifiers are restic's: `+` added, `-` removed, `T`
//! type changed, `M` content changed, `U` metadata changed (only when asked).

use std::collections::HashSet;

use crate::blob::BlobType;
use crate::find::TreeReader;
use crate::find::join;
use crate::tree::{Node, NodeType};
use crate::{Id, Result};

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Absolute path; directories end in `/`.
    pub path: String,
    /// `+`, `-`, or a combination of `T`, `M`, `U`.
    pub modifier: String,
}

/// Counts of one side of a diff (restic's `DiffStat`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffStat {
    /// Files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Other nodes (symlinks, devices, …).
    pub others: u64,
    /// Data blobs only on this side.
    pub data_blobs: u64,
    /// Tree blobs only on this side.
    pub tree_blobs: u64,
    /// Plaintext bytes of those blobs.
    pub bytes: u64,
}

/// The whole diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Changes in path order.
    pub changes: Vec<Change>,
    /// Files whose content changed.
    pub changed_files: u64,
    /// What the second snapshot adds.
    pub added: DiffStat,
    /// What the first snapshot had that the second lacks.
    pub removed: DiffStat,
}

impl DiffStat {
    fn count(&mut self, node: &Node) {
        match node.node_type {
            NodeType::File => self.files += 1,
            NodeType::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

fn display_path(dir: &str, node: &Node) -> String {
    let path = join(dir, &node.name.to_string());
    if node.node_type == NodeType::Dir {
        format!("{path}/")
    } else {
        path
    }
}

/// Compares the trees `from` and `to` (two snapshots' root trees).
/// `metadata` also reports nodes whose metadata alone changed (`U`).
pub async fn diff<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    from: &Id,
    to: &Id,
    metadata: bool,
) -> Result<Diff> {
    let mut result = Diff::default();
    // Pairs of trees to compare, next one last, with their directory path.
    let mut pending: Vec<(String, Option<Id>, Option<Id>)> =
        vec![("/".to_owned(), Some(*from), Some(*to))];
    while let Some((dir, left, right)) = pending.pop() {
        if left == right {
            continue;
        }
        let load = |id: Option<Id>| async move {
            match id {
                Some(id) => repo.load_tree(index, &id).await.map(|t| t.nodes),
                None => Ok(Vec::new()),
            }
        };
        let (old, new) = (load(left).await?, load(right).await?);
        let (mut i, mut j) = (0, 0);
        let mut subdirs = Vec::new();
        while i < old.len() || j < new.len() {
            let order = match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) => a.name.cmp(&b.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let node = &old[i];
                    result.removed.count(node);
                    result.changes.push(Change {
                        path: display_path(&dir, node),
                        modifier: "-".into(),
                    });
                    if node.subtree.is_some() {
                        subdirs.push((join(&dir, &node.name.to_string()), node.subtree, None));
                    }
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    let node = &new[j];
                    result.added.count(node);
                    result.changes.push(Change {
                        path: display_path(&dir, node),
                        modifier: "+".into(),
                    });
                    if node.subtree.is_some() {
                        subdirs.push((join(&dir, &node.name.to_string()), None, node.subtree));
                    }
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let (a, b) = (&old[i], &new[j]);
                    let mut modifier = String::new();
                    if a.node_type != b.node_type {
                        modifier.push('T');
                    }
                    if b.node_type != NodeType::Dir
                        && (a.content != b.content || a.link_target != b.link_target)
                    {
                        modifier.push('M');
                        if b.node_type == NodeType::File {
                            result.changed_files += 1;
                        }
                    }
                    if metadata && !modifier.contains('T') && metadata_differs(a, b) {
                        modifier.push('U');
                    }
                    if !modifier.is_empty() {
                        result.changes.push(Change {
                            path: display_path(&dir, b),
                            modifier,
                        });
                    }
                    if a.subtree.is_some() || b.subtree.is_some() {
                        subdirs.push((join(&dir, &b.name.to_string()), a.subtree, b.subtree));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    let (old_blobs, new_blobs) = (
        blobs_of(repo, index, from).await?,
        blobs_of(repo, index, to).await?,
    );
    for (stat, only) in [
        (&mut result.added, new_blobs.difference(&old_blobs)),
        (&mut result.removed, old_blobs.difference(&new_blobs)),
    ] {
        for (blob_type, id) in only {
            match blob_type {
                BlobType::Data => stat.data_blobs += 1,
                BlobType::Tree => stat.tree_blobs += 1,
            }
            if let Some(location) = R::locate(index, *blob_type, id) {
                stat.bytes += R::plaintext_len(&location).unwrap_or(0);
            }
        }
    }
    Ok(result)
}

/// Whether anything but the content differs (restic's `U`).
fn metadata_differs(a: &Node, b: &Node) -> bool {
    (
        a.mode, a.uid, a.gid, a.mtime_ns, a.size, &a.user, &a.group, &a.xattrs,
    ) != (
        b.mode, b.uid, b.gid, b.mtime_ns, b.size, &b.user, &b.group, &b.xattrs,
    )
}

/// Every blob the tree `root` references, each tree read once.
async fn blobs_of<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    root: &Id,
) -> Result<HashSet<(BlobType, Id)>> {
    let mut blobs = HashSet::from([(BlobType::Tree, *root)]);
    crate::find::walk(repo, index, root, "/", |_, node| {
        if let Some(subtree) = node.subtree {
            return Ok(blobs.insert((BlobType::Tree, subtree)));
        }
        blobs.extend(node.content.iter().map(|id| (BlobType::Data, *id)));
        Ok(true)
    })
    .await?;
    Ok(blobs)
}
