//! The tree assembler: turns the walker's ordered events into tree blobs,
//! bottom-up, waiting for each file's content list from the readers in order.

use crossbeam_channel::{Receiver, Sender};

use super::walk::{Change, Content, Event, compare};
use super::workers::{EncodeJob, FileResult, Shared, Stopped};
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
    nodes: Vec<Node>,
}

/// Assembler thread: consumes `events` until [`Event::Done`], sending every
/// tree blob not yet stored to `encode`.
pub(crate) fn run_assembler(
    shared: &Shared,
    events: &Receiver<Vec<Event>>,
    encode: &Sender<EncodeJob>,
) -> Result<Assembled, Stopped> {
    let mut counts = ItemCounts::default();
    let mut root: Vec<Node> = Vec::new();
    let mut open: Vec<OpenDir> = Vec::new();
    // The walker's events come in batches; a channel that closes before
    // `Done` means the walker stopped early.
    let mut done = false;
    for event in events.iter().flatten() {
        match event {
            Event::EnterDir { node, previous } => open.push(OpenDir {
                node,
                previous,
                nodes: Vec::new(),
            }),
            Event::LeaveDir => {
                let dir = open
                    .pop()
                    .expect("the walker leaves only directories it entered");
                let mut node = dir.node;
                node.subtree = Some(store_tree(shared, dir.nodes, encode)?);
                counts.count(NodeType::Dir, compare(&node, dir.previous.as_deref()));
                open.last_mut()
                    .map_or(&mut root, |parent| &mut parent.nodes)
                    .push(node);
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
                        FileResult::Unreadable => {
                            // Reported by the reader and left out; still done, for progress totals.
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
                open.last_mut()
                    .map_or(&mut root, |parent| &mut parent.nodes)
                    .push(node);
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

/// Encodes a directory listing and queues it as a tree blob unless stored;
/// returns its ID. Unchanged directories encode to the parent snapshot's
/// bytes, so they cost no upload.
fn store_tree(
    shared: &Shared,
    nodes: Vec<Node>,
    encode: &Sender<EncodeJob>,
) -> Result<Id, Stopped> {
    let bytes = Tree::new(nodes).encode();
    let id = shared.repo.key().content_id(&bytes);
    if shared.claim_new_blob(BlobType::Tree, id) {
        let job = EncodeJob {
            blob_type: BlobType::Tree,
            id,
            plaintext: bytes,
        };
        encode.send(job).map_err(|_| shared.stopped())?;
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
