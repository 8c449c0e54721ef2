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

/// What walking the trees found: items (their action not yet decided) and,
/// in parallel vectors, what deciding needs, so that turning them into the
/// plan's items needs no second copy of every entry.
#[derive(Default)]
struct Walk {
    items: Vec<Item>,
    /// Per item: whether the filter selected it (parents of selected items
    /// are added later).
    selected: Vec<bool>,
    /// Per item: content blobs of a regular file.
    contents: Vec<Vec<Id>>,
    /// `(device, inode)` of regular files with more than one link, by item.
    hardlinks: HashMap<usize, (u64, u64)>,
    failures: Vec<(PathBuf, String)>,
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

/// A blob of the index no job reads yet (see `decide`).
const NO_JOB: u32 = u32::MAX;

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
    let mut walk = Walk::default();
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
                Ok(tree) => add_nodes(tree, &dir, filter, &mut walk, &mut frontier),
                Err(e) if dir.item.is_none() => return Err(e),
                Err(e) => {
                    let reason = format!("cannot read its listing (tree {}): {e}", dir.tree);
                    walk.failures.push((dir.path, reason));
                }
            }
        }
    }
    Ok(decide(index, walk))
}

/// Keeps the selected items and their parents, decides how each is created,
/// and lays out the content of regular files. Items are compacted in place.
fn decide(index: &Index, walk: Walk) -> Plan {
    let Walk {
        mut items,
        mut selected,
        mut contents,
        hardlinks,
        failures,
    } = walk;
    // Children come after parents, so one backward pass propagates all the way up.
    for i in (0..items.len()).rev() {
        if selected[i]
            && let Some(parent) = items[i].parent
        {
            selected[parent] = true;
        }
    }
    let mut plan = Plan {
        failures,
        ..Plan::default()
    };
    let mut new_index: Vec<Option<usize>> = vec![None; items.len()];
    let mut first_link: HashMap<(u64, u64), usize> = HashMap::new();
    // Per index entry, its job in `plan.blobs`: 4 bytes per blob of the index instead of a
    // hash map's ~80 per restored blob, which at millions of tiny files was the planning peak.
    let mut blob_jobs = vec![NO_JOB; index.len()];
    let mut kept = 0;
    for i in 0..items.len() {
        if !selected[i] {
            continue;
        }
        let hardlink = hardlinks.get(&i).copied();
        let action = match items[i].meta.node_type {
            NodeType::Dir => Action::Dir,
            NodeType::Symlink => Action::Symlink,
            NodeType::Fifo => Action::Fifo,
            NodeType::CharDevice | NodeType::BlockDevice => Action::Device,
            NodeType::Socket => Action::Socket,
            NodeType::File => match hardlink.and_then(|key| first_link.get(&key)) {
                Some(&first) => Action::HardLink(first),
                None => {
                    let content = std::mem::take(&mut contents[i]);
                    match plan_file(index, &content, kept, &mut plan, &mut blob_jobs) {
                        Ok(file) => {
                            if let Some(key) = hardlink {
                                first_link.insert(key, kept);
                            }
                            Action::File(file)
                        }
                        Err(reason) => {
                            plan.failures.push((items[i].path.clone(), reason));
                            continue;
                        }
                    }
                }
            },
        };
        new_index[i] = Some(kept);
        items[i].action = action;
        items[i].parent = items[i].parent.and_then(|p| new_index[p]);
        // Everything before `kept` is kept; what is at `kept` is not (or is `i`).
        items.swap(kept, i);
        kept += 1;
    }
    items.truncate(kept);
    plan.items = items;
    plan
}

/// Adds the nodes of one loaded directory to the walk and queues its
/// subdirectories.
fn add_nodes(
    tree: Tree,
    dir: &PendingDir,
    filter: &PathFilter,
    walk: &mut Walk,
    frontier: &mut Vec<PendingDir>,
) {
    for mut node in tree.nodes {
        let rel = dir.path.join(node.name.as_os_str());
        // Tree decoding already rejects such names; restore must never write
        // outside the target, so it does not rely on that alone.
        if !node.name.is_valid_component() {
            let reason = format!("invalid file name {:?} in tree {}", node.name, dir.tree);
            walk.failures.push((rel, reason));
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
            let reason = "directory without a listing in the snapshot".to_owned();
            walk.failures.push((rel, reason));
            continue;
        }
        let this = walk.items.len();
        if node.node_type == NodeType::File {
            if node.links > 1 {
                walk.hardlinks.insert(this, (node.device, node.inode));
            }
            walk.contents.push(std::mem::take(&mut node.content));
        } else {
            walk.contents.push(Vec::new());
        }
        walk.selected.push(decision == Decision::Included);
        walk.items.push(Item {
            path: rel.clone(),
            parent: dir.item,
            meta: Meta::from(node),
            action: Action::Dir,
        });
        if let Some(tree) = subtree {
            frontier.push(PendingDir {
                tree,
                snapshot_path,
                path: rel,
                item: Some(this),
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
    blob_jobs: &mut [u32],
) -> std::result::Result<usize, String> {
    let mut extents = Vec::with_capacity(content.len());
    let mut positions = Vec::with_capacity(content.len());
    let mut offset = 0u64;
    for id in content {
        let position = index.position(BlobType::Data, id).ok_or_else(|| {
            format!("data blob {id} is not in the index; the repository is missing data")
        })?;
        let location = index.location_at(position);
        let len = plaintext_len(&location).ok_or_else(|| {
            format!("index entry of data blob {id} is shorter than the encryption overhead")
        })?;
        extents.push(Extent {
            id: *id,
            offset,
            len,
        });
        positions.push(position);
        offset += len;
    }
    let file = plan.files.len();
    for (extent, position) in extents.iter().zip(positions) {
        if blob_jobs[position] == NO_JOB {
            blob_jobs[position] =
                u32::try_from(plan.blobs.len()).expect("fewer blobs than the index holds");
            plan.blobs.push(BlobJob {
                id: extent.id,
                location: index.location_at(position),
                targets: Vec::new(),
            });
        }
        plan.blobs[blob_jobs[position] as usize]
            .targets
            .push((file, extent.offset));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexFile, IndexPack};
    use crate::pack::PackEntry;

    fn meta(node_type: NodeType) -> Meta {
        Meta {
            node_type,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            atime_ns: 0,
            rdev: 0,
            link_target: None,
            xattrs: Vec::new(),
        }
    }

    fn item(path: &str, parent: Option<usize>, node_type: NodeType) -> Item {
        Item {
            path: PathBuf::from(path),
            parent,
            meta: meta(node_type),
            action: Action::Dir,
        }
    }

    #[test]
    fn decide_keeps_parents_pairs_hardlinks_and_reports_missing_blobs() {
        let (known, unknown, pack) = (Id([1; 32]), Id([2; 32]), Id([9; 32]));
        let mut index = Index::default();
        index.add_file(&IndexFile {
            packs: vec![IndexPack {
                id: pack,
                blobs: vec![PackEntry {
                    blob_type: BlobType::Data,
                    id: known,
                    offset: 0,
                    length: 100 + SEAL_OVERHEAD as u32,
                    uncompressed_length: None,
                }],
            }],
        });
        index.finish();
        let walk = Walk {
            items: vec![
                item("skipped", None, NodeType::File),
                item("a", None, NodeType::Dir),
                item("a/x", Some(1), NodeType::File),
                item("a/y", Some(1), NodeType::File),
                item("a/z", Some(1), NodeType::File),
                item("a/twice", Some(1), NodeType::File),
            ],
            // Only files below `a` were selected; `a` must be kept as their parent.
            selected: vec![false, false, true, true, true, true],
            contents: vec![
                vec![known],
                vec![],
                vec![known],
                vec![unknown],
                vec![known],
                vec![known, known],
            ],
            hardlinks: [(2, (7, 42)), (4, (7, 42))].into_iter().collect(),
            failures: Vec::new(),
        };
        let plan = decide(&index, walk);

        let kept: Vec<(&str, Option<usize>, Action)> = plan
            .items
            .iter()
            .map(|i| (i.path.to_str().unwrap(), i.parent, i.action))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("a", None, Action::Dir),
                ("a/x", Some(0), Action::File(0)),
                ("a/z", Some(0), Action::HardLink(1)),
                ("a/twice", Some(0), Action::File(1)),
            ]
        );
        assert_eq!(plan.failures.len(), 1);
        assert_eq!(plan.failures[0].0, PathBuf::from("a/y"));
        assert!(
            plan.failures[0].1.contains(&unknown.to_string()),
            "{}",
            plan.failures[0].1
        );
        // One blob, written three times: once into a/x, twice into a/twice.
        assert_eq!(plan.blobs.len(), 1);
        assert_eq!(plan.blobs[0].targets, vec![(0, 0), (1, 0), (1, 100)]);
        assert_eq!((plan.files[0].size, plan.files[1].size), (100, 200));
        assert_eq!(plan.files[1].item, 3);
        let jobs = plan.pack_jobs(|file| file == 1);
        assert_eq!(
            (jobs.len(), jobs[0].pack, jobs[0].blobs.clone()),
            (1, pack, vec![0])
        );
        assert!(plan.pack_jobs(|_| false).is_empty());
    }
}
