//! The restore plan: which items to create, and where every data blob goes.
//!
//! A plan holds every item of the restore at once, so it is kept compact (at a
//! million tiny files its size is the restore's peak memory): items keep their
//! name and their directory's number rather than a path (paths are rebuilt
//! when a file is opened, see [`Items::path_under`]), a file's blobs and a
//! blob's destinations are slices of shared vectors rather than a vector each,
//! and blobs are positions in the repository index, which the plan keeps,
//! rather than copies of their locations.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

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
    pub(crate) items: Items,
    /// Regular files whose content is written (not the extra names of hardlinks).
    pub(crate) files: Vec<FilePlan>,
    /// Where the content goes, blob by blob.
    content: Content,
    /// The repository's index, which [`Content::blobs`] point into.
    index: Index,
    /// Items that cannot be restored at all, by path relative to the target.
    pub(crate) failures: Vec<(PathBuf, String)>,
}

/// The items of a plan with their names, which [`Items::path_under`] joins
/// into paths.
#[derive(Debug, Default)]
pub(crate) struct Items {
    items: Vec<Item>,
    /// Every item's name, back to back (see [`Item::name_start`]).
    names: Vec<u8>,
}

/// One entry of the snapshot to restore.
#[derive(Debug)]
pub(crate) struct Item {
    /// Where the item's name starts in [`Items::names`].
    name_start: usize,
    name_len: u32,
    /// The directory item this one lives in, [`NO_PARENT`] at the top level.
    parent: u32,
    /// What creating it means.
    pub(crate) action: Action,
    /// The metadata restore applies.
    pub(crate) meta: Meta,
}

/// [`Item::parent`] of a top-level item.
const NO_PARENT: u32 = u32::MAX;

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
    /// What few items have, boxed so that the many that have none of it
    /// pay 8 bytes instead of 56.
    rare: Option<Box<RareMeta>>,
}

/// The metadata of device nodes, symlinks and items with xattrs.
#[derive(Debug)]
struct RareMeta {
    rdev: u64,
    link_target: Option<FileName>,
    xattrs: Vec<Xattr>,
}

impl Meta {
    /// Device number of a device node.
    pub(crate) fn rdev(&self) -> u64 {
        self.rare.as_ref().map_or(0, |rare| rare.rdev)
    }

    /// Target of a symlink.
    pub(crate) fn link_target(&self) -> Option<&FileName> {
        self.rare
            .as_ref()
            .and_then(|rare| rare.link_target.as_ref())
    }

    pub(crate) fn xattrs(&self) -> &[Xattr] {
        self.rare.as_ref().map_or(&[], |rare| &rare.xattrs)
    }
}

impl From<Node> for Meta {
    fn from(node: Node) -> Self {
        let rare =
            (node.rdev != 0 || node.link_target.is_some() || !node.xattrs.is_empty()).then(|| {
                Box::new(RareMeta {
                    rdev: node.rdev,
                    link_target: node.link_target,
                    xattrs: node.xattrs,
                })
            });
        Meta {
            node_type: node.node_type,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime_ns: node.mtime_ns,
            atime_ns: node.atime_ns,
            rare,
        }
    }
}

/// How an item is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// A directory.
    Dir,
    /// A regular file; the index into [`Plan::files`].
    File(u32),
    /// Another name of a hardlinked file: link to this item.
    HardLink(u32),
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
    pub(crate) item: u32,
    /// Number of blobs (see `first_blob`).
    blob_count: u32,
    /// Where the file's blobs start in [`Content::file_blobs`].
    first_blob: usize,
    /// Length of the restored file: the sum of its blobs' plaintext lengths.
    pub(crate) size: u64,
}

/// Which blobs each file holds and where each blob goes.
#[derive(Debug, Default)]
struct Content {
    /// Every file's blobs in order, file after file, as indices into `blobs`.
    file_blobs: Vec<u32>,
    /// Every needed data blob once, as its position in the index.
    blobs: Vec<u32>,
    /// The places blob `b` is written to are
    /// `targets[target_starts[b]..target_starts[b + 1]]`.
    target_starts: Vec<u32>,
    targets: Vec<Target>,
}

/// One place a blob is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// Index into [`Plan::files`].
    pub(crate) file: u32,
    /// Offset of the blob in that file.
    pub(crate) offset: u64,
}

/// The blobs to read from one pack, sorted by offset.
#[derive(Debug)]
pub(crate) struct PackJob {
    /// The pack's storage ID.
    pub(crate) pack: Id,
    /// Blobs to read from it (see [`Plan::blob_id`]).
    pub(crate) blobs: Vec<usize>,
}

/// A blob of the index no job reads yet (see [`Walk::plan_file`]).
const NO_JOB: u32 = u32::MAX;

/// Trees loaded at once while planning.
const TREE_LOADS: usize = 8;

/// What walking the trees found, before parents of selected items are added
/// and unselected directories dropped (see [`decide`]).
#[derive(Default)]
struct Walk {
    items: Items,
    /// Per item: whether the filter selected it (parents of selected items
    /// are added later).
    selected: Vec<bool>,
    files: Vec<FilePlan>,
    content: Content,
    /// Per index entry, its number in `content.blobs` or [`NO_JOB`]: 4 bytes
    /// per blob of the index instead of a hash map's ~80 per restored blob.
    blob_jobs: Vec<u32>,
    /// The first item of each hardlinked file, by `(device, inode)`.
    first_link: HashMap<(u64, u64), usize>,
    failures: Vec<(PathBuf, String)>,
}

/// A directory waiting to be walked.
struct PendingDir {
    tree: Id,
    /// Absolute path inside the snapshot, for the filter.
    snapshot_path: PathBuf,
    /// The directory's own item (`None` for the snapshot root).
    item: Option<usize>,
    decision: Decision,
}

/// Plaintext length of a stored blob.
pub(crate) fn plaintext_len(location: &BlobLocation) -> Option<u64> {
    match location.uncompressed_length {
        Some(len) => Some(u64::from(len)),
        None => u64::from(location.length).checked_sub(location.envelope.overhead() as u64),
    }
}

/// A count or index of the plan as the `u32` it is stored in.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("fewer than 2^32 items and blobs (the index holds fewer)")
}

/// Walks the snapshot's trees from `root` and builds the plan, which keeps
/// `index`.
///
/// A root tree that cannot be loaded is an error; a damaged subtree or a file
/// with a blob missing from the index becomes a failure in the plan, and
/// everything else is still restored.
pub(crate) async fn build(
    repo: &Repository,
    index: Index,
    root: &Id,
    filter: &PathFilter,
) -> Result<Plan> {
    let mut walk = Walk {
        blob_jobs: vec![NO_JOB; index.len()],
        ..Walk::default()
    };
    // Breadth-first, one level at a time, loading the trees of a level
    // concurrently; parents still come before their children.
    let mut frontier = vec![PendingDir {
        tree: *root,
        snapshot_path: PathBuf::from("/"),
        item: None,
        decision: filter.root_decision(),
    }];
    while !frontier.is_empty() {
        let index = &index;
        let mut level = futures::stream::iter(std::mem::take(&mut frontier))
            .map(|dir| async move {
                let tree = repo.load_tree(index, &dir.tree).await;
                (dir, tree)
            })
            .buffered(TREE_LOADS);
        while let Some((dir, tree)) = level.next().await {
            match (tree, dir.item) {
                (Ok(tree), _) => walk.add_nodes(index, tree, &dir, filter, &mut frontier),
                (Err(e), None) => return Err(e),
                (Err(e), Some(item)) => {
                    let reason = format!("cannot read its listing (tree {}): {e}", dir.tree);
                    let path = walk.items.path_under(Path::new(""), item);
                    walk.failures.push((path, reason));
                }
            }
        }
    }
    Ok(decide(index, walk))
}

impl Walk {
    /// Adds the nodes of one loaded directory to the walk and queues its
    /// subdirectories.
    fn add_nodes(
        &mut self,
        index: &Index,
        tree: Tree,
        dir: &PendingDir,
        filter: &PathFilter,
        frontier: &mut Vec<PendingDir>,
    ) {
        let path_of = |items: &Items, name: &FileName| match dir.item {
            Some(item) => items.path_under(Path::new(""), item).join(name.as_os_str()),
            None => PathBuf::from(name.as_os_str()),
        };
        for mut node in tree.nodes {
            // Tree decoding already rejects such names; restore must never write
            // outside the target, so it does not rely on that alone.
            if !node.name.is_valid_component() {
                let reason = format!("invalid file name {:?} in tree {}", node.name, dir.tree);
                self.failures
                    .push((path_of(&self.items, &node.name), reason));
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
                self.failures
                    .push((path_of(&self.items, &node.name), reason));
                continue;
            }
            let this = self.items.len();
            // Only directories can be undecided here, so every file is
            // selected: its content is planned now, while its blob IDs are
            // at hand, and a file that cannot be restored is not an item.
            let action = match node.node_type {
                NodeType::Dir => Action::Dir,
                NodeType::Symlink => Action::Symlink,
                NodeType::Fifo => Action::Fifo,
                NodeType::CharDevice | NodeType::BlockDevice => Action::Device,
                NodeType::Socket => Action::Socket,
                NodeType::File => {
                    let link = (node.links > 1).then_some((node.device, node.inode));
                    match link.and_then(|key| self.first_link.get(&key)) {
                        Some(&first) => Action::HardLink(to_u32(first)),
                        None => match self.plan_file(index, &node.content, this) {
                            Ok(file) => {
                                if let Some(key) = link {
                                    self.first_link.insert(key, this);
                                }
                                Action::File(to_u32(file))
                            }
                            Err(reason) => {
                                // Its directory is still made, as for any
                                // selected file.
                                if let Some(dir) = dir.item {
                                    self.selected[dir] = true;
                                }
                                self.failures
                                    .push((path_of(&self.items, &node.name), reason));
                                continue;
                            }
                        },
                    }
                }
            };
            let name = std::mem::replace(&mut node.name, FileName::from_bytes(Vec::new()));
            self.selected.push(decision == Decision::Included);
            self.items
                .push(name.as_bytes(), dir.item, action, Meta::from(node));
            if let Some(tree) = subtree {
                frontier.push(PendingDir {
                    tree,
                    snapshot_path,
                    item: Some(this),
                    decision,
                });
            }
        }
    }

    /// Adds the content of the file that will be item `item` to the plan and
    /// returns its number in [`Plan::files`]; `Err` names a blob the index
    /// does not have, and then nothing was added.
    fn plan_file(
        &mut self,
        index: &Index,
        content: &[Id],
        item: usize,
    ) -> std::result::Result<usize, String> {
        let first_blob = self.content.file_blobs.len();
        // Index positions first, replaced by job numbers once all are known
        // to be there, so that a failing file leaves nothing behind.
        let mut size = 0u64;
        for id in content {
            match locate(index, id) {
                Ok((position, len)) => {
                    self.content.file_blobs.push(to_u32(position));
                    size += len;
                }
                Err(reason) => {
                    self.content.file_blobs.truncate(first_blob);
                    return Err(reason);
                }
            }
        }
        for blob in &mut self.content.file_blobs[first_blob..] {
            let job = &mut self.blob_jobs[*blob as usize];
            if *job == NO_JOB {
                *job = to_u32(self.content.blobs.len());
                self.content.blobs.push(*blob);
            }
            *blob = *job;
        }
        self.files.push(FilePlan {
            item: to_u32(item),
            blob_count: to_u32(content.len()),
            first_blob,
            size,
        });
        Ok(self.files.len() - 1)
    }
}

/// Position in `index` and plaintext length of data blob `id`; `Err` says why
/// it cannot be restored.
fn locate(index: &Index, id: &Id) -> std::result::Result<(usize, u64), String> {
    let position = index.position(BlobType::Data, id).ok_or_else(|| {
        format!("data blob {id} is not in the index; the repository is missing data")
    })?;
    let len = plaintext_len(&index.location_at(position)).ok_or_else(|| {
        format!("index entry of data blob {id} is shorter than the encryption overhead")
    })?;
    Ok((position, len))
}

/// Keeps the selected items and their parents (dropping directories with
/// nothing selected in them), compacting the items in place, and lists each
/// blob's destinations.
fn decide(index: Index, walk: Walk) -> Plan {
    let Walk {
        mut items,
        mut selected,
        mut files,
        mut content,
        blob_jobs,
        first_link,
        failures,
    } = walk;
    // Freed before the destinations are listed, which is planning's peak.
    drop((blob_jobs, first_link));
    // Children come after parents, so one backward pass propagates all the way up.
    for i in (0..items.len()).rev() {
        if selected[i]
            && let Some(parent) = items.items[i].parent()
        {
            selected[parent] = true;
        }
    }
    let mut new_number = vec![NO_PARENT; items.len()];
    let mut kept = 0;
    for i in 0..items.len() {
        if !selected[i] {
            continue;
        }
        new_number[i] = to_u32(kept);
        let item = &mut items.items[i];
        if item.parent != NO_PARENT {
            item.parent = new_number[item.parent as usize];
        }
        match &mut item.action {
            Action::File(file) => files[*file as usize].item = to_u32(kept),
            Action::HardLink(first) => *first = new_number[*first as usize],
            _ => {}
        }
        // Everything before `kept` is kept; what is at `kept` is not (or is `i`).
        items.items.swap(kept, i);
        kept += 1;
    }
    items.items.truncate(kept);
    items.items.shrink_to_fit();
    drop((selected, new_number));
    content.list_targets(&index, &files);
    Plan {
        items,
        files,
        content,
        index,
        failures,
    }
}

impl Content {
    /// Fills `targets` from the files' blobs (in file order, so each blob's
    /// destinations are in file and offset order).
    fn list_targets(&mut self, index: &Index, files: &[FilePlan]) {
        // Every blob of every file is one destination, numbered in `u32`s.
        let destinations = to_u32(self.file_blobs.len()) as usize;
        let mut starts = vec![0u32; self.blobs.len() + 1];
        for &blob in &self.file_blobs {
            starts[blob as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut next = starts.clone();
        let unset = Target { file: 0, offset: 0 };
        self.targets = vec![unset; destinations];
        for (file, plan) in files.iter().enumerate() {
            let mut offset = 0;
            for &blob in &self.file_blobs[plan.first_blob..][..plan.blob_count as usize] {
                let at = &mut next[blob as usize];
                self.targets[*at as usize] = Target {
                    file: to_u32(file),
                    offset,
                };
                *at += 1;
                let location = index.location_at(self.blobs[blob as usize] as usize);
                offset += plaintext_len(&location).expect("checked while planning");
            }
        }
        self.target_starts = starts;
    }
}

impl Items {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Item> {
        self.items.iter()
    }

    /// Adds an item named `name` in directory item `parent`.
    fn push(&mut self, name: &[u8], parent: Option<usize>, action: Action, meta: Meta) {
        self.items.push(Item {
            name_start: self.names.len(),
            name_len: to_u32(name.len()),
            parent: parent.map_or(NO_PARENT, to_u32),
            action,
            meta,
        });
        self.names.extend_from_slice(name);
    }

    fn name(&self, item: &Item) -> &[u8] {
        &self.names[item.name_start..][..item.name_len as usize]
    }

    /// Path of item `item` below `base` (as [`Path::join`] would make it;
    /// relative to the target for an empty `base`), in one allocation.
    pub(crate) fn path_under(&self, base: &Path, item: usize) -> PathBuf {
        let base = base.as_os_str().as_bytes();
        let separator = usize::from(!base.is_empty() && !base.ends_with(b"/"));
        let mut len = base.len() + separator;
        let mut at = Some(item);
        while let Some(i) = at {
            len += self.items[i].name_len as usize + usize::from(at != Some(item));
            at = self.items[i].parent();
        }
        // Filled from the end, name by name up to the top; what is left
        // between the names is the separators.
        let mut path = vec![b'/'; len];
        path[..base.len()].copy_from_slice(base);
        let mut end = len;
        let mut at = Some(item);
        while let Some(i) = at {
            let name = self.name(&self.items[i]);
            end -= name.len();
            path[end..end + name.len()].copy_from_slice(name);
            at = self.items[i].parent();
            if at.is_some() {
                end -= 1;
            }
        }
        PathBuf::from(OsString::from_vec(path))
    }
}

impl std::ops::Index<usize> for Items {
    type Output = Item;

    fn index(&self, item: usize) -> &Item {
        &self.items[item]
    }
}

impl Item {
    /// The directory item this one lives in (`None` at the top level).
    pub(crate) fn parent(&self) -> Option<usize> {
        (self.parent != NO_PARENT).then_some(self.parent as usize)
    }
}

impl Plan {
    /// Number of distinct blobs to read.
    pub(crate) fn blob_count(&self) -> usize {
        self.content.blobs.len()
    }

    /// Content ID of blob `blob` (a number from [`PackJob::blobs`]).
    pub(crate) fn blob_id(&self, blob: usize) -> Id {
        self.index.id_at(self.content.blobs[blob] as usize)
    }

    /// Where blob `blob` is stored.
    pub(crate) fn blob_location(&self, blob: usize) -> BlobLocation {
        self.index.location_at(self.content.blobs[blob] as usize)
    }

    /// Every place blob `blob` is written to, in file and offset order.
    pub(crate) fn blob_targets(&self, blob: usize) -> &[Target] {
        let starts = &self.content.target_starts;
        &self.content.targets[starts[blob] as usize..starts[blob + 1] as usize]
    }

    /// A file's blobs in order: content ID and plaintext length.
    pub(crate) fn file_content(&self, file: usize) -> Vec<(Id, u64)> {
        let plan = &self.files[file];
        self.content.file_blobs[plan.first_blob..][..plan.blob_count as usize]
            .iter()
            .map(|&blob| {
                let location = self.blob_location(blob as usize);
                let len = plaintext_len(&location).expect("checked while planning");
                (self.blob_id(blob as usize), len)
            })
            .collect()
    }

    /// The blobs to read, grouped by pack (packs in ID order, blobs by
    /// offset), leaving out blobs none of whose files are `wanted`.
    pub(crate) fn pack_jobs(&self, wanted: impl Fn(usize) -> bool) -> Vec<PackJob> {
        let mut by_pack: BTreeMap<Id, Vec<(u32, usize)>> = BTreeMap::new();
        for blob in 0..self.blob_count() {
            if self
                .blob_targets(blob)
                .iter()
                .any(|target| wanted(target.file as usize))
            {
                let location = self.blob_location(blob);
                by_pack
                    .entry(location.pack)
                    .or_default()
                    .push((location.offset, blob));
            }
        }
        by_pack
            .into_iter()
            .map(|(pack, mut blobs)| {
                blobs.sort_unstable();
                let blobs = blobs.into_iter().map(|(_, blob)| blob).collect();
                PackJob { pack, blobs }
            })
            .collect()
    }

    /// Path of a file below `target`.
    pub(crate) fn file_path_under(&self, target: &Path, file: usize) -> PathBuf {
        self.items
            .path_under(target, self.files[file].item as usize)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::index::{IndexFile, IndexPack};
    use crate::pack::PackEntry;

    fn node(name: &str, node_type: NodeType, content: Vec<Id>, inode: u64) -> Node {
        Node {
            name: FileName::from_bytes(name),
            node_type,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            atime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode,
            device: 7,
            links: if inode == 42 { 2 } else { 1 },
            rdev: 0,
            link_target: None,
            xattrs: Vec::new(),
            content,
            subtree: (node_type == NodeType::Dir).then_some(Id([inode as u8; 32])),
        }
    }

    fn pending(item: Option<usize>, snapshot_path: &str, decision: Decision) -> PendingDir {
        PendingDir {
            tree: Id::default(),
            snapshot_path: PathBuf::from(snapshot_path),
            item,
            decision,
        }
    }

    #[test]
    fn decide_keeps_parents_pairs_hardlinks_and_reports_missing_blobs() {
        let (known, unknown, pack) = (Id([1; 32]), Id([2; 32]), Id([9; 32]));
        let mut index = Index::default();
        index.add_file(&IndexFile {
            packs: vec![IndexPack {
                id: pack,
                envelope: crate::blob::BlobEnvelope::PerBlob,
                blobs: vec![PackEntry {
                    blob_type: BlobType::Data,
                    id: known,
                    offset: 0,
                    length: 100 + arca_crypto::SEAL_OVERHEAD as u32,
                    uncompressed_length: None,
                }],
            }],
        });
        index.finish();
        let filter = PathFilter::new(&["/a/*".to_owned(), "/c/v".to_owned()], &[]).unwrap();
        let mut walk = Walk {
            blob_jobs: vec![NO_JOB; index.len()],
            ..Walk::default()
        };
        let mut frontier = Vec::new();
        let root = Tree::new(vec![
            node("skipped", NodeType::File, vec![known], 1),
            node("a", NodeType::Dir, vec![], 2),
            node("b", NodeType::Dir, vec![], 3),
            node("c", NodeType::Dir, vec![], 4),
        ]);
        walk.add_nodes(
            &index,
            root,
            &pending(None, "/", filter.root_decision()),
            &filter,
            &mut frontier,
        );
        let queued: Vec<_> = frontier.iter().map(|d| (d.item, d.decision)).collect();
        assert_eq!(
            queued,
            vec![
                (Some(0), Decision::Undecided),
                (Some(1), Decision::Undecided),
                (Some(2), Decision::Undecided)
            ]
        );
        let a = Tree::new(vec![
            node("x", NodeType::File, vec![known], 42),
            node("y", NodeType::File, vec![known, unknown], 5),
            node("z", NodeType::File, vec![known], 42),
            node("zz_twice", NodeType::File, vec![known, known], 6),
        ]);
        let dir = pending(Some(0), "/a", Decision::Undecided);
        walk.add_nodes(&index, a, &dir, &filter, &mut Vec::new());
        let b = Tree::new(vec![node("w", NodeType::File, vec![known], 8)]);
        let dir = pending(Some(1), "/b", Decision::Undecided);
        walk.add_nodes(&index, b, &dir, &filter, &mut Vec::new());
        let c = Tree::new(vec![
            node("v", NodeType::File, vec![unknown], 9),
            node("w", NodeType::File, vec![known], 10),
        ]);
        let dir = pending(Some(2), "/c", Decision::Undecided);
        walk.add_nodes(&index, c, &dir, &filter, &mut Vec::new());
        let plan = decide(index, walk);

        let kept: Vec<(PathBuf, Option<usize>, Action)> = (0..plan.items.len())
            .map(|i| {
                let item = &plan.items[i];
                let path = plan.items.path_under(Path::new(""), i);
                (path, item.parent(), item.action)
            })
            .collect();
        let path = PathBuf::from;
        // `b` has nothing selected in it; `c` has only a file that cannot be
        // restored, and is still made.
        assert_eq!(
            kept,
            vec![
                (path("a"), None, Action::Dir),
                (path("c"), None, Action::Dir),
                (path("a/x"), Some(0), Action::File(0)),
                (path("a/z"), Some(0), Action::HardLink(2)),
                (path("a/zz_twice"), Some(0), Action::File(1)),
            ]
        );
        let failed: Vec<&Path> = plan.failures.iter().map(|(p, _)| p.as_path()).collect();
        assert_eq!(failed, vec![Path::new("a/y"), Path::new("c/v")]);
        for (_, reason) in &plan.failures {
            assert!(reason.contains(&unknown.to_string()), "{reason}");
        }
        // One blob, written three times: once into a/x, twice into a/zz_twice.
        assert_eq!(plan.blob_count(), 1);
        assert_eq!(plan.blob_id(0), known);
        let targets: Vec<(u32, u64)> = plan
            .blob_targets(0)
            .iter()
            .map(|t| (t.file, t.offset))
            .collect();
        assert_eq!(targets, vec![(0, 0), (1, 0), (1, 100)]);
        assert_eq!((plan.files[0].size, plan.files[1].size), (100, 200));
        assert_eq!(plan.files[1].item, 4);
        assert_eq!(plan.file_content(1), vec![(known, 100), (known, 100)]);
        assert_eq!(
            plan.file_path_under(Path::new("/t"), 1),
            path("/t/a/zz_twice")
        );
        let jobs = plan.pack_jobs(|file| file == 1);
        assert_eq!(
            (jobs.len(), jobs[0].pack, jobs[0].blobs.clone()),
            (1, pack, vec![0])
        );
        assert!(plan.pack_jobs(|_| false).is_empty());
    }

    fn meta() -> Meta {
        Meta::from(node("-", NodeType::Dir, vec![], 1))
    }

    /// A valid path component: no `/`, no NUL, not `.` or `..`.
    fn any_name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(1u8..=255, 1..12).prop_filter("valid component", |name| {
            FileName::from_bytes(name.clone()).is_valid_component()
        })
    }

    proptest! {
        /// Items pushed with a name and a parent give back the path that
        /// joining the names from the top would make.
        #[test]
        fn path_under_joins_the_names_from_the_top(
            tree in proptest::collection::vec((any_name(), any::<prop::sample::Index>(), any::<bool>()), 1..40),
            base in prop::sample::select(vec!["", "/", "/t", "t/", "/restore/here", "rel"]),
        ) {
            let mut items = Items::default();
            let mut expected: Vec<PathBuf> = Vec::new();
            for (i, (name, parent, top)) in tree.iter().enumerate() {
                let parent = (i > 0 && !top).then(|| parent.index(i));
                items.push(name, parent, Action::Dir, meta());
                let name = std::ffi::OsStr::from_bytes(name);
                expected.push(match parent {
                    Some(p) => expected[p].join(name),
                    None => PathBuf::from(name),
                });
            }
            for (i, relative) in expected.iter().enumerate() {
                prop_assert_eq!(items.path_under(Path::new(base), i), Path::new(base).join(relative));
            }
        }
    }

    #[test]
    fn items_stay_small() {
        // A plan holds every item at once: at a million files each byte here is a megabyte.
        assert!(
            std::mem::size_of::<Item>() <= 64,
            "{}",
            std::mem::size_of::<Item>()
        );
    }
}
