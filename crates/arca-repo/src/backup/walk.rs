//! The walker: lists the backup paths depth-first in name order and tells
//! the assembler what it found, in order, while handing files that must be
//! read to the readers.
//!
//! The walker decides from the parent snapshot whether a file changed: if
//! type, size, mtime, ctime, inode and device all match and the parent's
//! content blobs are all in the index, the parent's content list is reused
//! and the file is not read at all.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::ahead::ReadAhead;
use super::exclude::{CACHEDIR_TAG, Excludes, is_cache_dir};
use super::metadata::{FileStamp, OwnerNames, nanos, node_from_metadata, node_type};
use super::parent::ParentTrees;
use super::prefetch::{Listing, Listings};
use super::targets::{TargetNode, name_os_str};
use super::workers::{FileJob, FileQueues, FileResult, Shared, Stopped};
use crate::blob::BlobType;
use crate::tree::{Node, NodeType, Tree, Xattr};

/// Walker → assembler messages, in depth-first name order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A directory starts; its entries follow until the matching [`Event::LeaveDir`].
    EnterDir {
        /// The directory's node, without its subtree yet.
        node: Node,
        /// The parent snapshot's node of the same name, if any (boxed: it is
        /// rarely present on a first backup and would double the event size).
        previous: Option<Box<Node>>,
        /// How many entries the parent snapshot's listing of this directory
        /// has, if it was loaded and the directory's contents are walked.
        previous_entries: Option<usize>,
    },
    /// The innermost open directory is complete.
    LeaveDir,
    /// Anything but a directory.
    Entry {
        /// Absolute path.
        path: PathBuf,
        /// The node; a file's content may still be pending.
        node: Node,
        /// How it compares with the parent snapshot.
        change: Change,
        /// Where the content comes from.
        content: Content,
    },
    /// The walk completed; nothing follows. A channel that closes without
    /// this means the walk was cut short.
    Done,
}

/// How an entry compares with the parent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Not in the parent snapshot (or there with another type).
    New,
    /// In the parent snapshot with different metadata, or re-read.
    Changed,
    /// Identical to the parent snapshot's node.
    Unmodified,
}

/// The content of an [`Event::Entry`].
#[derive(Debug)]
pub(crate) enum Content {
    /// The node is complete: not a file, an empty file, or a file whose
    /// content list was reused from the parent snapshot.
    Complete,
    /// A reader is reading the file; the result arrives here.
    Pending(Receiver<FileResult>),
}

/// Walks the backup paths on its own thread.
pub(crate) struct Walker {
    /// Pipeline state.
    pub(crate) shared: Arc<Shared>,
    /// What to leave out.
    pub(crate) excludes: Excludes,
    /// Do not descend into other file systems.
    pub(crate) one_file_system: bool,
    /// Read every file even if the parent snapshot says it is unchanged.
    pub(crate) force: bool,
    /// Record access times (see [`node_from_metadata`]).
    pub(crate) with_atime: bool,
    /// The parent snapshot's trees.
    pub(crate) parent_trees: ParentTrees,
    /// Events for the assembler, in batches.
    pub(crate) events: Sender<Vec<Event>>,
    /// Events not sent yet.
    pub(crate) batch: Vec<Event>,
    /// Files for the readers.
    pub(crate) jobs: FileQueues,
    /// Owner name cache.
    pub(crate) owners: OwnerNames,
    /// Directory listings the metadata prefetch made ahead of the walk.
    pub(crate) prefetched: Arc<Listings>,
    /// Large files being read ahead of the walk.
    pub(crate) read_ahead: Arc<ReadAhead>,
    /// Files found so far, for progress totals.
    pub(crate) files_found: u64,
    /// Bytes in the files found so far.
    pub(crate) bytes_found: u64,
}

/// How often (in files found) the walker updates the progress totals.
const TOTALS_EVERY: u64 = 1000;

/// Events sent to the assembler at a time: one channel operation (and, when
/// the assembler waits, one wake-up) per event would cost more than the
/// walk itself in a tree of small unchanged files.
const EVENT_BATCH: usize = 256;

impl Walker {
    /// Walks everything under `targets`; `previous_root` is the parent
    /// snapshot's root tree. Sends [`Event::Done`] when complete.
    pub(crate) fn run(mut self, targets: &TargetNode, previous_root: Option<&Tree>) {
        let root = Path::new("/");
        let walked = if targets.is_target {
            match std::fs::symlink_metadata(root) {
                Ok(metadata) => self.walk_dir_contents(root, previous_root, metadata.dev()),
                Err(e) => {
                    self.shared
                        .unreadable(root.to_owned(), format!("cannot stat: {e}"));
                    Ok(())
                }
            }
        } else {
            self.walk_intermediate(root, targets, previous_root)
        };
        if walked.is_ok() {
            self.shared
                .progress
                .set_total(self.files_found, self.bytes_found);
            self.batch.push(Event::Done);
            let _ = self.flush();
        }
    }

    /// Walks the children of a directory on the way to the targets.
    fn walk_intermediate(
        &mut self,
        dir: &Path,
        targets: &TargetNode,
        previous_tree: Option<&Tree>,
    ) -> Result<(), Stopped> {
        for (name, child) in &targets.children {
            let name = name_os_str(name);
            let path = dir.join(name);
            let previous = previous_node(previous_tree, name);
            if child.is_target {
                let metadata = std::fs::symlink_metadata(&path);
                // The target's own device bounds --one-file-system below it.
                let device = metadata.as_ref().map(|m| m.dev()).unwrap_or_default();
                self.walk_entry(&path, name, metadata, previous, device)?;
                continue;
            }
            // Follows symlinks: a symlinked directory on the way to a target is
            // recorded as the directory it leads to, so the target stays reachable.
            let metadata = match std::fs::metadata(&path) {
                Ok(metadata) => metadata,
                Err(e) => {
                    self.shared.unreadable(path, format!("cannot stat: {e}"));
                    continue;
                }
            };
            let node = self.node(&path, name, &metadata, previous);
            // Holds only the way to the targets: never the parent's whole listing.
            self.enter_dir(node, previous, None)?;
            let previous_subtree = self.load_subtree(previous);
            self.walk_intermediate(&path, child, previous_subtree.as_ref())?;
            self.send(Event::LeaveDir)?;
        }
        Ok(())
    }

    /// Backs up one path completely (recursively for directories), given
    /// its `lstat` result.
    fn walk_entry(
        &mut self,
        path: &Path,
        name: &OsStr,
        metadata: std::io::Result<std::fs::Metadata>,
        previous: Option<&Node>,
        device: u64,
    ) -> Result<(), Stopped> {
        let metadata = match metadata {
            Ok(metadata) => metadata,
            Err(e) => {
                self.shared
                    .unreadable(path.to_owned(), format!("cannot stat: {e}"));
                return Ok(());
            }
        };
        let node = self.node(path, name, &metadata, previous);
        let other_file_system = self.one_file_system && metadata.dev() != device;
        match node.node_type {
            NodeType::Dir => {
                // A mount point is kept as an empty directory with --one-file-system.
                if other_file_system {
                    self.enter_dir(node, previous, None)?;
                    return self.send(Event::LeaveDir);
                }
                let previous_subtree = self.load_subtree(previous);
                let previous_entries = previous_subtree.as_ref().map(|tree| tree.nodes.len());
                self.enter_dir(node, previous, previous_entries)?;
                let prefetched = match &previous_subtree {
                    Some(tree) => self.parent_trees.prefetch_children(tree),
                    None => Vec::new(),
                };
                let walked = self.walk_dir_contents(path, previous_subtree.as_ref(), device);
                self.parent_trees.forget(&prefetched);
                walked?;
                self.send(Event::LeaveDir)
            }
            _ if other_file_system => Ok(()),
            NodeType::File => self.file(path, node, previous),
            _ => {
                let change = compare(&node, previous);
                self.send(Event::Entry {
                    path: path.to_owned(),
                    node,
                    change,
                    content: Content::Complete,
                })
            }
        }
    }

    /// Walks the entries of a directory in name-byte order.
    fn walk_dir_contents(
        &mut self,
        dir: &Path,
        previous_tree: Option<&Tree>,
        device: u64,
    ) -> Result<(), Stopped> {
        let Some(mut listing) = self.prefetched.take(dir).or_else(|| self.list(dir)) else {
            return Ok(());
        };
        // Listings leave excluded names out, so a tag that is itself
        // excluded is looked for on disk.
        let may_be_tagged = || {
            listing.iter().any(|(n, _)| n == CACHEDIR_TAG)
                || self.excludes.is_excluded(&dir.join(CACHEDIR_TAG))
        };
        if self.excludes.exclude_caches && may_be_tagged() && is_cache_dir(dir) {
            listing.retain(|(n, _)| n == CACHEDIR_TAG);
        }
        // Both kinds of listing leave excluded entries out.
        let mut previous_nodes = PreviousNodes::of(previous_tree);
        for (name, metadata) in listing {
            if self.shared.stopping() {
                return Err(Stopped);
            }
            let previous = previous_nodes.find(&name);
            self.walk_entry(&dir.join(&name), &name, Ok(metadata), previous, device)?;
        }
        Ok(())
    }

    /// Lists `dir` in name-byte order with each entry's `lstat` result,
    /// reporting what fails; `None` if the directory cannot be listed.
    ///
    /// `DirEntry::metadata` stats relative to the open directory, without
    /// resolving the whole path again (that path walk was a third of the
    /// walker's CPU time). Every entry is statted before the walk goes down,
    /// so no directory stays open while its subdirectories are walked: a
    /// deep tree must not run out of file descriptors.
    fn list(&self, dir: &Path) -> Option<Listing> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.shared
                    .unreadable(dir.to_owned(), format!("cannot list directory: {e}"));
                return None;
            }
        };
        let mut listing = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let message = format!(
                        "listing the directory failed after {} entries: {e}",
                        listing.len()
                    );
                    self.shared.unreadable(dir.to_owned(), message);
                    break;
                }
            };
            let name = entry.file_name();
            if self.excludes.is_excluded(&dir.join(&name)) {
                continue;
            }
            match entry.metadata() {
                Ok(metadata) => listing.push((name, metadata)),
                Err(e) => self
                    .shared
                    .unreadable(dir.join(&name), format!("cannot stat: {e}")),
            }
        }
        listing.sort_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
        Some(listing)
    }

    /// A regular file: reuses the parent's content if unchanged, else queues a read.
    fn file(
        &mut self,
        path: &Path,
        mut node: Node,
        previous: Option<&Node>,
    ) -> Result<(), Stopped> {
        self.files_found += 1;
        self.bytes_found += node.size;
        if self.files_found.is_multiple_of(TOTALS_EVERY) {
            self.shared
                .progress
                .set_total(self.files_found, self.bytes_found);
        }
        let stamp = FileStamp::of_node(&node);
        // Taken whether or not it is used: unused, it is cancelled when dropped.
        let read_ahead = self.read_ahead.take(path, stamp);
        let reusable = previous.filter(|p| !self.force && may_reuse(&self.shared, p, stamp));
        if let Some(previous) = reusable {
            node.content.clone_from(&previous.content);
            let change = if node == *previous {
                Change::Unmodified
            } else {
                Change::Changed
            };
            return self.send(Event::Entry {
                path: path.to_owned(),
                node,
                change,
                content: Content::Complete,
            });
        }
        let change = match previous {
            Some(p) if p.node_type == NodeType::File => Change::Changed,
            _ => Change::New,
        };
        if node.size == 0 {
            return self.send(Event::Entry {
                path: path.to_owned(),
                node,
                change,
                content: Content::Complete,
            });
        }
        let pending = match read_ahead {
            Some(read) => read.into_result(),
            None => {
                let (result, pending) = crossbeam_channel::bounded(1);
                let job = FileJob {
                    path: path.to_owned(),
                    size: node.size,
                    mtime_ns: node.mtime_ns,
                    result,
                    cancelled: None,
                    largest_first: None,
                };
                self.jobs
                    .send(job)
                    .map_err(|Stopped| self.shared.stopped())?;
                pending
            }
        };
        self.send(Event::Entry {
            path: path.to_owned(),
            node,
            change,
            content: Content::Pending(pending),
        })
    }

    fn enter_dir(
        &mut self,
        node: Node,
        previous: Option<&Node>,
        previous_entries: Option<usize>,
    ) -> Result<(), Stopped> {
        let previous = previous
            .filter(|p| p.node_type == NodeType::Dir)
            .cloned()
            .map(Box::new);
        self.send(Event::EnterDir {
            node,
            previous,
            previous_entries,
        })
    }

    /// The node for `path`, reporting what could not be read as warnings.
    fn node(
        &mut self,
        path: &Path,
        name: &OsStr,
        metadata: &std::fs::Metadata,
        previous: Option<&Node>,
    ) -> Node {
        let known_xattrs = self.unchanged_xattrs(previous, metadata);
        let partial = node_from_metadata(
            path,
            name,
            metadata,
            &mut self.owners,
            self.with_atime,
            known_xattrs,
        );
        for problem in &partial.problems {
            self.shared.warn(path, problem);
        }
        partial.node
    }

    /// The parent snapshot's extended attributes for this inode, where they
    /// can stand in for reading them again: setting or removing an attribute
    /// updates the inode's ctime, so the same inode with the same ctime has
    /// the same attributes. Reading them costs a path lookup and a system
    /// call per file, as much as the `lstat` itself; `force` reads them all.
    fn unchanged_xattrs<'p>(
        &self,
        previous: Option<&'p Node>,
        metadata: &std::fs::Metadata,
    ) -> Option<&'p [Xattr]> {
        let previous = previous.filter(|p| {
            !self.force
                && p.node_type == node_type(metadata.file_type())
                && p.inode == metadata.ino()
                && p.device == metadata.dev()
                && p.ctime_ns == nanos(metadata.ctime(), metadata.ctime_nsec())
        })?;
        Some(&previous.xattrs)
    }

    /// The parent snapshot's listing of a directory.
    fn load_subtree(&mut self, previous: Option<&Node>) -> Option<Tree> {
        self.parent_trees.load(previous?.subtree?)
    }

    fn send(&mut self, event: Event) -> Result<(), Stopped> {
        self.batch.push(event);
        if self.batch.len() < EVENT_BATCH {
            return Ok(());
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<(), Stopped> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(EVENT_BATCH));
        self.events.send(batch).map_err(|_| self.shared.stopped())
    }
}

impl Drop for Walker {
    /// Whatever was read ahead and not taken by now never will be.
    fn drop(&mut self) {
        self.read_ahead.finish();
    }
}

/// The node named `name` in the parent snapshot's listing.
pub(crate) fn previous_node<'t>(tree: Option<&'t Tree>, name: &OsStr) -> Option<&'t Node> {
    let nodes = &tree?.nodes;
    let name = name.as_bytes();
    nodes
        .binary_search_by(|n| n.name.as_bytes().cmp(name))
        .ok()
        .map(|i| &nodes[i])
}

/// The parent snapshot's nodes of a directory, looked up by names that come
/// in increasing byte order (a listing's): one pass over the nodes instead
/// of a binary search per name.
struct PreviousNodes<'t> {
    /// The nodes after the last name looked up.
    rest: &'t [Node],
}

impl<'t> PreviousNodes<'t> {
    fn of(tree: Option<&'t Tree>) -> Self {
        PreviousNodes {
            rest: tree.map_or(&[], |tree| &tree.nodes),
        }
    }

    /// The node named `name`; `name` must come after the last one asked for.
    fn find(&mut self, name: &OsStr) -> Option<&'t Node> {
        let name = name.as_bytes();
        let before = self
            .rest
            .iter()
            .take_while(|node| node.name.as_bytes() < name)
            .count();
        self.rest = &self.rest[before..];
        let (node, rest) = self.rest.split_first()?;
        (node.name.as_bytes() == name).then(|| {
            self.rest = rest;
            node
        })
    }
}

/// Whether a file with this stamp may keep the parent snapshot's content
/// without being read: the parent has a file of the same stamp whose
/// content blobs are all in the index (a damaged repository must not make
/// the new snapshot refer to lost data).
pub(crate) fn may_reuse(shared: &Shared, previous: &Node, stamp: FileStamp) -> bool {
    previous.node_type == NodeType::File
        && FileStamp::of_node(previous) == stamp
        && previous
            .content
            .iter()
            .all(|id| shared.index.contains(BlobType::Data, id))
}

/// How a complete node compares with the parent snapshot's.
pub(crate) fn compare(node: &Node, previous: Option<&Node>) -> Change {
    match previous {
        Some(p) if p == node => Change::Unmodified,
        Some(p) if p.node_type == node.node_type => Change::Changed,
        _ => Change::New,
    }
}
