//! The tree assembler: turns the walker's ordered events into tree blobs,
//! bottom-up, waiting for each file's content list from the readers in order.

use crossbeam_channel::{Receiver, Sender};

use super::walk::{Change, Content, Event, compare};
use super::workers::{EncodeBatch, EncodeJob, FileResult, Shared, Stopped};
use crate::Id;
use crate::blob::BlobType;
use crate::tree::{Node, NodeType, Tree};

/// Files and directories by how they compare with the parent snapshot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ItemCounts {
    /// Regular files not in the parent snapshot.
    pub(crate) files_new: u64,
    /// Regular files that changed (or were read again).
    pub(crate) files_changed: u64,
    /// Regular files identical to the parent snapshot's.
    pub(crate) files_unmodified: u64,
    /// Directories not in the parent snapshot.
    pub(crate) dirs_new: u64,
    /// Directories whose metadata or contents changed.
    pub(crate) dirs_changed: u64,
    /// Directories identical to the parent snapshot's, contents included.
    pub(crate) dirs_unmodified: u64,
    /// Regular files in the snapshot.
    pub(crate) files_processed: u64,
    /// Bytes in the snapshot's regular files.
    pub(crate) bytes_processed: u64,
}

impl ItemCounts {
    fn count(&mut self, node_type: NodeType, change: Change) {
        let (new, changed, unmodified) = match node_type {
            NodeType::File => (
                &mut self.files_new,
                &mut self.files_changed,
                &mut self.files_unmodified,
            ),
            NodeType::Dir => (
                &mut self.dirs_new,
                &mut self.dirs_changed,
                &mut self.dirs_unmodified,
            ),
            // Like restic, only files and directories are counted.
            _ => return,
        };
        *match change {
            Change::New => new,
            Change::Changed => changed,
            Change::Unmodified => unmodified,
        } += 1;
    }
}

/// The result of a complete assembly.
#[derive(Debug)]
pub(crate) struct Assembled {
    /// ID of the snapshot's root tree.
    pub(crate) root: Id,
    /// What was backed up.
    pub(crate) counts: ItemCounts,
}

/// A directory whose entries are still arriving.
struct OpenDir {
    node: Node,
    previous: Option<Box<Node>>,
    /// Entries of the parent snapshot's listing, if known.
    previous_entries: Option<usize>,
    nodes: Vec<Node>,
    /// Entries identical to the parent snapshot's.
    unmodified: usize,
}

impl OpenDir {
    /// The parent snapshot's listing of this directory, if this one is the
    /// same: as many entries, each identical to the parent's of that name
    /// (names are unique, so these are the same sets), and that listing is
    /// still stored. Re-encoding would give the same bytes again.
    fn unchanged_subtree(&self, shared: &Shared) -> Option<Id> {
        let subtree = self.previous.as_ref()?.subtree?;
        let same = self.previous_entries == Some(self.nodes.len())
            && self.unmodified == self.nodes.len()
            && shared.index.contains(BlobType::Tree, &subtree);
        same.then_some(subtree)
    }

    fn push(&mut self, node: Node, change: Change) {
        self.unmodified += usize::from(change == Change::Unmodified);
        self.nodes.push(node);
    }
}

/// Assembler thread: consumes `events` until [`Event::Done`], sending every
/// tree blob not yet stored to `encode`.
pub(crate) fn run_assembler(
    shared: &Shared,
    events: &Receiver<Vec<Event>>,
    encode: &Sender<EncodeBatch>,
) -> Result<Assembled, Stopped> {
    let mut counts = ItemCounts::default();
    let mut root: Vec<Node> = Vec::new();
    let mut open: Vec<OpenDir> = Vec::new();
    // The walker's events come in batches; a channel that closes before
    // `Done` means the walker stopped early.
    let mut done = false;
    for event in events.iter().flatten() {
        match event {
            Event::EnterDir {
                node,
                previous,
                previous_entries,
            } => open.push(OpenDir {
                node,
                previous,
                previous_entries,
                nodes: Vec::new(),
                unmodified: 0,
            }),
            Event::LeaveDir => {
                let dir = open
                    .pop()
                    .expect("the walker leaves only directories it entered");
                let subtree = match dir.unchanged_subtree(shared) {
                    Some(subtree) => subtree,
                    None => store_tree(shared, dir.nodes, encode)?,
                };
                let mut node = dir.node;
                node.subtree = Some(subtree);
                let change = compare(&node, dir.previous.as_deref());
                counts.count(NodeType::Dir, change);
                push(&mut open, &mut root, node, change);
            }
            Event::Entry {
                path,
                mut node,
                change,
                content,
            } => {
                match content {
                    Content::Complete if node.node_type == NodeType::File => {
                        shared.progress.add_bytes(node.size)
                    }
                    Content::Complete => {}
                    Content::Pending(result) => match wait_for(shared, &result)? {
                        FileResult::Read { content, size } => {
                            node.content = content;
                            node.size = size;
                        }
                        FileResult::Unreadable(message) => {
                            // Left out; still done, for progress totals.
                            shared.unreadable(path.clone(), message);
                            shared.progress.add_file(&path);
                            continue;
                        }
                    },
                }
                counts.count(node.node_type, change);
                if node.node_type == NodeType::File {
                    counts.files_processed += 1;
                    counts.bytes_processed += node.size;
                    shared.progress.add_file(&path);
                }
                push(&mut open, &mut root, node, change);
            }
            Event::Done => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return Err(shared.stopped());
    }
    assert!(
        open.is_empty(),
        "the walker finished with {} directories open",
        open.len()
    );
    let root = store_tree(shared, root, encode)?;
    Ok(Assembled { root, counts })
}

/// Adds a finished node to the innermost open directory (or the root).
fn push(open: &mut [OpenDir], root: &mut Vec<Node>, node: Node, change: Change) {
    match open.last_mut() {
        Some(dir) => dir.push(node, change),
        None => root.push(node),
    }
}

/// Encodes a directory listing and queues it as a tree blob unless stored;
/// returns its ID. Unchanged directories encode to the parent snapshot's
/// bytes, so they cost no upload.
fn store_tree(
    shared: &Shared,
    nodes: Vec<Node>,
    encode: &Sender<EncodeBatch>,
) -> Result<Id, Stopped> {
    let bytes = Tree::new(nodes).encode();
    let id = shared.repo.key().content_id(&bytes);
    if shared.claim_new_blob(BlobType::Tree, id)? {
        let job = EncodeJob {
            blob_type: BlobType::Tree,
            id,
            plaintext: bytes,
        };
        encode.send(vec![job]).map_err(|_| shared.stopped())?;
    }
    Ok(id)
}

/// Waits for a reader's result, or for a stop: once the pipeline stops, the
/// job may sit unread in a queue whose readers are gone.
fn wait_for(shared: &Shared, result: &Receiver<FileResult>) -> Result<FileResult, Stopped> {
    crossbeam_channel::select! {
        recv(result) -> received => received.map_err(|_| shared.stopped()),
        recv(shared.stop_signal()) -> _ => Err(Stopped),
    }
}
