//! The restore plan: which items to create, and where every data blob goes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arca_crypto::SEAL_OVERHEAD;
use futures::StreamExt;

use super::filter::{Decision, PathFilter};
use crate::blob::BlobType;
use crate::index::{BlobLocation, Index};
use crate::tree::{FileName, Node, NodeType, Tree, Xattr};
use crate::{Id, Repository, Result};

/// Everything a restore will do, decided before touching the target.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Items in creation order: every directory comes before its contents.
    pub(crate) items: Vec<Item>,
    /// Regular files whose content is written (not the extra names of hardlinks).
    pub(crate) files: Vec<FilePlan>,
    /// Every needed data blob, once.
    pub(crate) blobs: Vec<BlobJob>,
    /// Items that cannot be restored at all, by path relative to the target.
    pub(crate) failures: Vec<(PathBuf, String)>,
}

/// One entry of the snapshot to restore.
#[derive(Debug)]
pub(crate) struct Item {
    /// Path relative to the target directory.
    pub(crate) path: PathBuf,
    /// The directory item this one lives in (`None` at the top level).
    pub(crate) parent: Option<usize>,
    /// The metadata restore applies.
    pub(crate) meta: Meta,
    /// What creating it means.
    pub(crate) action: Action,
}

/// The part of a snapshot [`Node`] that restore applies: kept instead of the
/// whole node so that plans of millions of files stay small.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) node_type: NodeType,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime_ns: i64,
    pub(crate) atime_ns: i64,
    pub(crate) rdev: u64,
    pub(crate) link_target: Option<FileName>,
    pub(crate) xattrs: Vec<Xattr>,
}

impl From<Node> for Meta {
    fn from(node: Node) -> Self {
        Meta {
            node_type: node.node_type,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime_ns: node.mtime_ns,
            atime_ns: node.atime_ns,
            rdev: node.rdev,
            link_target: node.link_target,
            xattrs: node.xattrs,
        }
    }
}

/// An entry of the snapshot found while walking, before the filter's final say.
struct Candidate {
    path: PathBuf,
    parent: Option<usize>,
    /// Whether the filter selected it (parents of selected items are added later).
    selected: bool,
    /// `(device, inode)` of a regular file with more than one link.
    hardlink: Option<(u64, u64)>,
    /// Content blobs of a regular file.
    content: Vec<Id>,
    meta: Meta,
}

/// How an item is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// A directory.
    Dir,
    /// A regular file; the index into [`Plan::files`].
    File(usize),
    /// Another name of a hardlinked file: link to this item.
    HardLink(usize),
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character or block device.
    Device,
    /// A socket: not restorable, skipped with a note.
    Socket,
}

/// A regular file's content.
#[derive(Debug)]
pub(crate) struct FilePlan {
    /// Index into [`Plan::items`].
    pub(crate) item: usize,
    /// Length of the restored file: the sum of its blobs' plaintext lengths.
    pub(crate) size: u64,
    /// The file's blobs in order.
    pub(crate) extents: Vec<Extent>,
}

/// One blob of a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extent {
    /// Content ID.
    pub(crate) id: Id,
    /// Offset of the blob in the file.
    pub(crate) offset: u64,
    /// Plaintext length.
    pub(crate) len: u64,
}

/// A data blob and every place it is written to.
#[derive(Debug)]
pub(crate) struct BlobJob {
    /// Content ID.
    pub(crate) id: Id,
    /// Where it is stored.
    pub(crate) location: BlobLocation,
    /// `(index into Plan::files, offset in that file)`.
    pub(crate) targets: Vec<(usize, u64)>,
}

/// The blobs to read from one pack, sorted by offset.
#[derive(Debug)]
pub(crate) struct PackJob {
    /// The pack's storage ID.
    pub(crate) pack: Id,
    /// Blobs to read from it, as indices into [`Plan::blobs`].
    pub(crate) blobs: Vec<usize>,
}

/// Trees loaded at once while planning.
const TREE_LOADS: usize = 8;

/// A directory waiting to be walked.
struct PendingDir {
    tree: Id,
    /// Absolute path inside the snapshot, for the filter.
    snapshot_path: PathBuf,
    /// Path relative to the target.
    path: PathBuf,
    /// The directory's own item (`None` for the snapshot root).
    item: Option<usize>,
    decision: Decision,
}

/// Plaintext length of a stored blob.
pub(crate) fn plaintext_len(location: &BlobLocation) -> Option<u64> {
    match location.uncompressed_length {
        Some(len) => Some(u64::from(len)),
        None => u64::from(location.length).checked_sub(SEAL_OVERHEAD as u64),
    }
}

/// Walks the snapshot's trees from `root` and builds the plan.
///
/// A root tree that cannot be loaded is an error; a damaged subtree or a file
/// with a blob missing from the index becomes a failure in the plan, and
/// everything else is still restored.
pub(crate) async fn build(
    repo: &Repository,
    index: &Index,
    root: &Id,
    filter: &PathFilter,
) -> Result<Plan> {
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut failures = Vec::new();
    // Breadth-first, one level at a time, loading the trees of a level
    // concurrently; parents still come before their children.
    let mut frontier = vec![PendingDir {
        tree: *root,
        snapshot_path: PathBuf::from("/"),
        path: PathBuf::new(),
        item: None,
        decision: filter.root_decision(),
    }];
    while !frontier.is_empty() {
        let mut level = futures::stream::iter(std::mem::take(&mut frontier))
            .map(|dir| async move {
                let tree = repo.load_tree(index, &dir.tree).await;
                (dir, tree)
            })
            .buffered(TREE_LOADS);
        while let Some((dir, tree)) = level.next().await {
            match tree {
                Ok(tree) => add_nodes(
                    tree,
                    &dir,
                    filter,
                    &mut candidates,
                    &mut failures,
                    &mut frontier,
                ),
                Err(e) if dir.item.is_none() => return Err(e),
                Err(e) => {
                    failures.push((
                        dir.path,
                        format!("cannot read its listing (tree {}): {e}", dir.tree),
                    ));
                }
            }
        }
    }
    // Keep the parents of everything selected: children come after parents,
    // so one backward pass propagates all the way up.
    for i in (0..candidates.len()).rev() {
        if candidates[i].selected
            && let Some(parent) = candidates[i].parent
        {
            candidates[parent].selected = true;
        }
    }
    let mut plan = Plan {
        failures,
        ..Plan::default()
    };
    let mut new_index: Vec<Option<usize>> = Vec::with_capacity(candidates.len());
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    let mut blob_jobs: HashMap<Id, usize> = HashMap::new();
    for candidate in candidates {
        if !candidate.selected {
            new_index.push(None);
            continue;
        }
        let this = plan.items.len();
        let action = match candidate.meta.node_type {
            NodeType::Dir => Action::Dir,
            NodeType::Symlink => Action::Symlink,
            NodeType::Fifo => Action::Fifo,
            NodeType::CharDevice | NodeType::BlockDevice => Action::Device,
            NodeType::Socket => Action::Socket,
            NodeType::File => match candidate.hardlink.and_then(|key| first_link.get(&key)) {
                Some(&first) => Action::HardLink(first),
                None => match plan_file(index, &candidate.content, this, &mut plan, &mut blob_jobs)
                {
                    Ok(file) => {
                        if let Some(key) = candidate.hardlink {
                            first_link.insert(key, this);
                        }
                        Action::File(file)
                    }
                    Err(reason) => {
                        plan.failures.push((candidate.path, reason));
                        new_index.push(None);
                        continue;
                    }
                },
            },
        };
        new_index.push(Some(this));
        plan.items.push(Item {
            path: candidate.path,
            parent: candidate.parent.and_then(|p| new_index[p]),
            meta: candidate.meta,
            action,
        });
    }
    Ok(plan)
}

/// Turns the nodes of one loaded directory into candidate items (with whether
/// the filter selected them) and queues its subdirectories.
fn add_nodes(
    tree: Tree,
    dir: &PendingDir,
    filter: &PathFilter,
    candidates: &mut Vec<Candidate>,
    failures: &mut Vec<(PathBuf, String)>,
    frontier: &mut Vec<PendingDir>,
) {
    for mut node in tree.nodes {
        let rel = dir.path.join(node.name.as_os_str());
        // Tree decoding already rejects such names; restore must never write
        // outside the target, so it does not rely on that alone.
        if !node.name.is_valid_component() {
            failures.push((
                rel,
                format!("invalid file name {:?} in tree {}", node.name, dir.tree),
            ));
            continue;
        }
        let snapshot_path = dir.snapshot_path.join(node.name.as_os_str());
        let decision = filter.decide(&snapshot_path, dir.decision);
        let is_dir = node.node_type == NodeType::Dir;
        if decision == Decision::Excluded || (decision == Decision::Undecided && !is_dir) {
            continue;
        }
        let subtree = if is_dir { node.subtree } else { None };
        if is_dir && subtree.is_none() {
            failures.push((
                rel,
                "directory without a listing in the snapshot".to_owned(),
            ));
            continue;
        }
        let is_file = node.node_type == NodeType::File;
        let hardlink = (is_file && node.links > 1).then_some((node.device, node.inode));
        let content = if is_file {
            std::mem::take(&mut node.content)
        } else {
            Vec::new()
        };
        candidates.push(Candidate {
            path: rel.clone(),
            parent: dir.item,
            selected: decision == Decision::Included,
            hardlink,
            content,
            meta: Meta::from(node),
        });
        if let Some(tree) = subtree {
            frontier.push(PendingDir {
                tree,
                snapshot_path,
                path: rel,
                item: Some(candidates.len() - 1),
                decision,
            });
        }
    }
}

/// Adds a file's blobs to the plan; `Err` names a blob the index does not have.
fn plan_file(
    index: &Index,
    content: &[Id],
    item: usize,
    plan: &mut Plan,
    blob_jobs: &mut HashMap<Id, usize>,
) -> std::result::Result<usize, String> {
    let mut extents = Vec::with_capacity(content.len());
    let mut locations = Vec::with_capacity(content.len());
    let mut offset = 0u64;
    for id in content {
        let location = index.get(BlobType::Data, id).ok_or_else(|| {
            format!("data blob {id} is not in the index; the repository is missing data")
        })?;
        let len = plaintext_len(&location).ok_or_else(|| {
            format!("index entry of data blob {id} is shorter than the encryption overhead")
        })?;
        extents.push(Extent {
            id: *id,
            offset,
            len,
        });
        locations.push(location);
        offset += len;
    }
    let file = plan.files.len();
    for (extent, location) in extents.iter().zip(locations) {
        let job = *blob_jobs.entry(extent.id).or_insert_with(|| {
            plan.blobs.push(BlobJob {
                id: extent.id,
                location,
                targets: Vec::new(),
            });
            plan.blobs.len() - 1
        });
        plan.blobs[job].targets.push((file, extent.offset));
    }
    plan.files.push(FilePlan {
        item,
        size: offset,
        extents,
    });
    Ok(file)
}

impl Plan {
    /// The blobs to read, grouped by pack (packs in ID order, blobs by
    /// offset), leaving out blobs none of whose files are `wanted`.
    pub(crate) fn pack_jobs(&self, wanted: impl Fn(usize) -> bool) -> Vec<PackJob> {
        let mut by_pack: BTreeMap<Id, Vec<usize>> = BTreeMap::new();
        for (i, job) in self.blobs.iter().enumerate() {
            if job.targets.iter().any(|&(file, _)| wanted(file)) {
                by_pack.entry(job.location.pack).or_default().push(i);
            }
        }
        by_pack
            .into_iter()
            .map(|(pack, mut blobs)| {
                blobs.sort_by_key(|&i| self.blobs[i].location.offset);
                PackJob { pack, blobs }
            })
            .collect()
    }

    /// Path of a file relative to the target.
    pub(crate) fn file_path(&self, file: usize) -> &Path {
        &self.items[self.files[file].item].path
    }
}
