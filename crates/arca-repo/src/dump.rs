//! `dump`: one file of a snapshot as its bytes, or a directory as a tar
//! stream, without restoring to disk.
//!
//! Blobs are read a few ahead, in order, so a large file streams at the
//! speed of several requests. The tar stream is written by the `tar` crate
//! on the blocking pool (its writer is synchronous), fed through a bounded
//! channel, so memory stays at a few blobs whatever the directory holds.

use std::io::{Read, Write};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::find::TreeReader;
use crate::find::walk;
use crate::snapshot::Snapshot;
use crate::tree::{FileName, Node, NodeType};
use crate::{Error, Id, Result};

/// How many blobs of a file are read ahead.
const READ_AHEAD: usize = 4;

/// Looks up `path` (absolute, `/` separated) in the snapshot. The root `/`
/// is a directory node named `/` whose subtree is the snapshot's root tree.
pub async fn find_node<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    id: &Id,
    snapshot: &Snapshot,
    path: &str,
) -> Result<Node> {
    let not_found = || Error::PathNotFound {
        snapshot: *id,
        path: path.to_owned(),
    };
    let mut components = path.split('/').filter(|c| !c.is_empty() && *c != ".");
    let mut node = root_node(snapshot);
    for component in components.by_ref() {
        let Some(subtree) = node.subtree else {
            return Err(not_found());
        };
        let tree = repo.load_tree(index, &subtree).await?;
        let name = FileName::from(component);
        node = tree
            .nodes
            .into_iter()
            .find(|child| child.name == name)
            .ok_or_else(not_found)?;
    }
    Ok(node)
}

/// A directory node standing for the snapshot's root.
fn root_node(snapshot: &Snapshot) -> Node {
    Node {
        name: FileName::from("/"),
        node_type: NodeType::Dir,
        mode: 0o755,
        uid: snapshot.uid,
        gid: snapshot.gid,
        user: None,
        group: None,
        mtime_ns: snapshot.time.as_nanosecond().try_into().unwrap_or(0),
        atime_ns: 0,
        ctime_ns: 0,
        size: 0,
        inode: 0,
        device: 0,
        links: 1,
        rdev: 0,
        link_target: None,
        xattrs: Vec::new(),
        content: Vec::new(),
        subtree: Some(snapshot.tree),
    }
}

/// The blobs of a file's content, in order, read a few ahead.
fn content<'a, R: TreeReader>(
    repo: &'a R,
    index: &'a R::Index,
    node: &'a Node,
) -> impl futures::Stream<Item = Result<Bytes>> + 'a {
    futures::stream::iter(node.content.iter())
        .map(move |id| repo.read_data(index, id))
        .buffered(READ_AHEAD)
}

/// Writes a file node's content to `out`.
pub async fn write_file<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    node: &Node,
    out: &mut (impl AsyncWrite + Unpin),
) -> Result<()> {
    let io = |source| Error::Io {
        path: "dump output".into(),
        source,
    };
    let mut blobs = std::pin::pin!(content(repo, index, node));
    while let Some(blob) = blobs.next().await {
        out.write_all(&blob?).await.map_err(io)?;
    }
    out.flush().await.map_err(io)
}

/// What the async walk sends the tar writer.
enum Piece {
    /// A new entry; for files, its content follows as `Data` and `End`.
    Entry(Box<tar::Header>, String, Option<FileName>),
    Data(Bytes),
    End,
}

/// Writes the directory node `dir` and everything under it to `out` as a
/// tar archive, entries named `NAME/...` where NAME is the directory's name.
pub async fn write_tar<R: TreeReader, W: Write + Send + 'static>(
    repo: &R,
    index: &R::Index,
    dir: &Node,
    out: W,
) -> Result<W> {
    let (sender, receiver) = mpsc::channel::<Piece>(READ_AHEAD * 2);
    let writer = tokio::task::spawn_blocking(move || write_pieces(receiver, out));
    let sent = send_tree(repo, index, dir, &sender).await;
    drop(sender);
    let written = writer.await.map_err(|e| Error::Io {
        path: "dump output".into(),
        source: std::io::Error::other(e),
    })?;
    // A failed read explains a closed channel better than the writer does.
    sent?;
    written.map_err(|source| Error::Io {
        path: "dump output".into(),
        source,
    })
}

async fn send_tree<R: TreeReader>(
    repo: &R,
    index: &R::Index,
    dir: &Node,
    sender: &mpsc::Sender<Piece>,
) -> Result<()> {
    let top = dir.name.to_string().trim_matches('/').to_owned();
    let top = if top.is_empty() { ".".to_owned() } else { top };
    let closed = || Error::Io {
        path: "dump output".into(),
        source: std::io::ErrorKind::BrokenPipe.into(),
    };
    sender
        .send(Piece::Entry(Box::new(header(dir)), top.clone(), None))
        .await
        .map_err(|_| closed())?;
    let Some(subtree) = dir.subtree else {
        return Ok(());
    };
    // The walk's visitor is synchronous: collect the nodes of the tree, then
    // stream them with their contents.
    let mut nodes: Vec<(String, Node)> = Vec::new();
    walk(repo, index, &subtree, &top, |path, node| {
        nodes.push((path.to_owned(), node.clone()));
        Ok(true)
    })
    .await?;
    for (path, node) in nodes {
        let is_file = node.node_type == NodeType::File;
        sender
            .send(Piece::Entry(
                Box::new(header(&node)),
                path,
                node.link_target.clone(),
            ))
            .await
            .map_err(|_| closed())?;
        if is_file {
            let mut blobs = std::pin::pin!(content(repo, index, &node));
            while let Some(blob) = blobs.next().await {
                sender
                    .send(Piece::Data(blob?))
                    .await
                    .map_err(|_| closed())?;
            }
            sender.send(Piece::End).await.map_err(|_| closed())?;
        }
    }
    Ok(())
}

/// The tar header of a node (size only for files; devices, fifos and
/// sockets become empty entries of their kind where tar has one).
fn header(node: &Node) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    let entry_type = match node.node_type {
        NodeType::File => tar::EntryType::Regular,
        NodeType::Dir => tar::EntryType::Directory,
        NodeType::Symlink => tar::EntryType::Symlink,
        NodeType::Fifo => tar::EntryType::Fifo,
        NodeType::CharDevice => tar::EntryType::Char,
        NodeType::BlockDevice => tar::EntryType::Block,
        NodeType::Socket => tar::EntryType::Regular,
    };
    header.set_entry_type(entry_type);
    header.set_mode(node.mode);
    header.set_uid(u64::from(node.uid));
    header.set_gid(u64::from(node.gid));
    header.set_mtime(u64::try_from(node.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
    header.set_size(if node.node_type == NodeType::File {
        node.size
    } else {
        0
    });
    if let Some(user) = &node.user {
        let _ = header.set_username(user);
    }
    if let Some(group) = &node.group {
        let _ = header.set_groupname(group);
    }
    header
}

/// The blocking side: turns pieces into tar entries.
fn write_pieces<W: Write>(mut receiver: mpsc::Receiver<Piece>, out: W) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    while let Some(piece) = receiver.blocking_recv() {
        let Piece::Entry(mut header, path, link_target) = piece else {
            return Err(std::io::Error::other("tar stream out of order"));
        };
        match (header.entry_type(), link_target) {
            (tar::EntryType::Symlink, Some(target)) => {
                builder.append_link(&mut header, &path, target.as_os_str())?;
            }
            (tar::EntryType::Regular, _) if header.size()? > 0 => {
                let expected = header.size()?;
                let mut reader = ContentReader {
                    receiver: &mut receiver,
                    current: Bytes::new(),
                    done: false,
                };
                let mut limited = (&mut reader).take(expected);
                builder.append_data(&mut header, &path, &mut limited)?;
                if limited.limit() > 0 {
                    return Err(std::io::Error::other(format!(
                        "{path}: the content is shorter than the file's recorded size"
                    )));
                }
                // Drain what the size did not cover, up to the file's end.
                std::io::copy(&mut reader, &mut std::io::sink())?;
            }
            (tar::EntryType::Regular, _) => {
                let mut reader = ContentReader {
                    receiver: &mut receiver,
                    current: Bytes::new(),
                    done: false,
                };
                std::io::copy(&mut reader, &mut std::io::sink())?;
                builder.append_data(&mut header, &path, std::io::empty())?;
            }
            _ => builder.append_data(&mut header, &path, std::io::empty())?,
        }
    }
    builder.into_inner()
}

/// Reads one file's content from the channel until its `End`.
struct ContentReader<'a> {
    receiver: &'a mut mpsc::Receiver<Piece>,
    current: Bytes,
    done: bool,
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() && !self.done {
            match self.receiver.blocking_recv() {
                Some(Piece::Data(bytes)) => self.current = bytes,
                Some(Piece::End) => self.done = true,
                Some(Piece::Entry(..)) => {
                    return Err(std::io::Error::other("tar stream out of order"));
                }
                None => {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
