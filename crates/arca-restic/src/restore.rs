//! Restore of a restic snapshot into a local directory, with Arca's options
//! and summary ([`arca_repo::restore::RestoreOptions`],
//! [`arca_repo::restore::RestoreSummary`]) so the CLI treats both formats alike.
//!
//! Phases, as in Arca's restore: plan (walk the trees through the filter,
//! keeping the parents of included items), create (directories, files of
//! the right length, symlinks, hardlinks by restic's device and inode,
//! fifos, device nodes as root), content (each file's blobs, adjacent blobs
//! of one pack fetched with one ranged read, decrypted and verified off the
//! async runtime, written at their offsets), optional verify, and metadata
//! last and deepest first (owner as root, mode, xattrs, times).
//!
//! Every item that fails is collected and the restore ends with
//! [`Error::RestoreFailed`] naming them; the others are restored.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arca_repo::Id;
use arca_repo::blob::BlobType;
use arca_repo::progress::Progress;
use arca_repo::restore::filter::{Decision, PathFilter};
use arca_repo::restore::{RestoreFailure, RestoreOptions, RestoreSummary};
use arca_repo::tree::{Node, NodeType};
use futures::StreamExt as _;

use crate::crypto::MasterKey;
use crate::index::{BlobLocation, Index};
use crate::repository::{blocking, pack_path, sha256};
use crate::{Error, ResticRepository, ResticSnapshot, Result};

/// Files whose content is written at once.
const FILE_CONCURRENCY: usize = 4;
/// Ranged reads in flight per file.
const READS_PER_FILE: usize = 2;
/// A ranged read grows by adjacent blobs up to about this many bytes.
const MAX_READ: u64 = 8 << 20;

/// One item to restore.
struct Item {
    /// Relative to the target (`home/u/file`).
    path: PathBuf,
    node: Node,
    /// Restored as a hard link to this earlier item: no content, no metadata of its own.
    link_to: Option<usize>,
}

/// Blobs fetched with one ranged read: `(blob, offset in the file)`.
struct Read {
    pack: Id,
    start: u64,
    end: u64,
    blobs: Vec<(Id, BlobLocation, u64)>,
}

/// Restores `snapshot` (or the part `opts` selects) into `opts.target`.
pub async fn restore(
    repo: &ResticRepository,
    snapshot: &ResticSnapshot,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    let filter = PathFilter::new(&opts.includes, &opts.excludes).map_err(|err| match err {
        arca_repo::Error::InvalidOptions(message) => Error::InvalidOptions(message),
        other => Error::InvalidOptions(other.to_string()),
    })?;
    let index = repo.load_index().await?;
    let (items, mut failures) = plan(repo, &index, &snapshot.tree, &filter).await?;
    let files: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].node.node_type == NodeType::File && items[i].link_to.is_none())
        .collect();
    progress.set_total(
        files.len() as u64,
        files.iter().map(|&i| items[i].node.size).sum(),
    );
    let target = opts.target.clone();
    std::fs::create_dir_all(&target).map_err(|source| Error::Io {
        path: target.clone(),
        source,
    })?;
    let items = Arc::new(items);
    let (mut summary, mut states) = {
        let (items, target, overwrite) = (items.clone(), target.clone(), opts.overwrite);
        blocking(move || create_items(&items, &target, overwrite)).await
    };

    let bytes_read = Arc::new(AtomicU64::new(0));
    let packs_read = Arc::new(std::sync::Mutex::new(HashSet::new()));
    let mut work = Vec::new();
    let mut small = Vec::new();
    for &i in &files {
        if states[i].is_some() || items[i].node.content.is_empty() {
            continue;
        }
        match content_reads(&index, &items[i].node, &items[i].path) {
            Ok(mut reads) if reads.len() == 1 => small.push((i, reads.remove(0))),
            Ok(reads) => work.push(Work::File { item: i, reads }),
            Err(e) => states[i] = Some(e.to_string()),
        }
    }
    work.extend(batches(small));
    let written: Vec<(usize, std::result::Result<u64, String>)> = futures::stream::iter(work)
        .map(|work| {
            let (items, target, progress) = (&items, &target, &progress);
            let (bytes_read, packs_read) = (&bytes_read, &packs_read);
            let reads = Reads {
                repo,
                bytes_read,
                packs_read,
            };
            async move {
                match work {
                    Work::File {
                        item,
                        reads: file_reads,
                    } => {
                        let path = target.join(&items[item].path);
                        let result = write_file(&reads, file_reads, path, progress).await;
                        vec![(item, result.map_err(|e| e.to_string()))]
                    }
                    Work::Batch(batch) => write_batch(&reads, batch, items, target, progress).await,
                }
            }
        })
        .buffer_unordered(FILE_CONCURRENCY)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    for (i, result) in written {
        match result {
            Ok(bytes) => {
                summary.bytes_restored += bytes;
                progress.add_file(&items[i].path);
            }
            Err(reason) => states[i] = Some(reason),
        }
    }
    summary.bytes_read = bytes_read.load(Ordering::Relaxed);
    summary.packs_read = packs_read.lock().expect("not poisoned").len() as u64;

    if opts.verify {
        let wanted: Vec<(usize, Vec<(Id, u64)>)> = files
            .iter()
            .filter(|&&i| states[i].is_none())
            .map(|&i| {
                let lengths = items[i]
                    .node
                    .content
                    .iter()
                    .map(|id| {
                        let len = index
                            .get(BlobType::Data, id)
                            .map_or(0, |l| l.plaintext_len());
                        (*id, len)
                    })
                    .collect();
                (i, lengths)
            })
            .collect();
        let (items, target) = (items.clone(), target.clone());
        let verified = blocking(move || {
            wanted
                .into_iter()
                .map(|(i, blobs)| (i, verify_file(&target.join(&items[i].path), &blobs)))
                .collect::<Vec<_>>()
        })
        .await;
        for (i, result) in verified {
            match result {
                Ok(()) => summary.files_verified += 1,
                Err(reason) => states[i] = Some(reason),
            }
        }
    }

    let (skipped, states) = {
        let (items, target, owner) = (items.clone(), target.clone(), opts.owner);
        blocking(move || apply_metadata(&items, &target, owner, states)).await
    };
    summary.skipped.extend(skipped);
    for (i, state) in states.into_iter().enumerate() {
        if let Some(reason) = state {
            failures.push((items[i].path.clone(), reason));
        }
    }
    if failures.is_empty() {
        return Ok(summary);
    }
    let mut failures: Vec<RestoreFailure> = failures
        .into_iter()
        .map(|(path, reason)| RestoreFailure {
            path: target.join(path),
            reason,
        })
        .collect();
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    Err(Error::RestoreFailed { failures })
}

/// Walks the snapshot's trees depth first in name order; returns the items to
/// restore (parents before children) and the subtrees that failed to load.
async fn plan(
    repo: &ResticRepository,
    index: &Index,
    root: &Id,
    filter: &PathFilter,
) -> Result<(Vec<Item>, Vec<(PathBuf, String)>)> {
    struct Walked {
        item: Item,
        parent: Option<usize>,
        keep: bool,
    }
    let mut walked: Vec<Walked> = Vec::new();
    let mut failures = Vec::new();
    let root_nodes = repo.tree(index, root).await?.to_arca()?;
    // (parent item, its path, its decision, node), last to visit first.
    let mut pending: Vec<(Option<usize>, PathBuf, Decision, Node)> = root_nodes
        .into_iter()
        .rev()
        .map(|node| (None, PathBuf::new(), filter.root_decision(), node))
        .collect();
    while let Some((parent, dir, parent_decision, node)) = pending.pop() {
        let path = dir.join(node.name.as_os_str());
        let decision = filter.decide(&Path::new("/").join(&path), parent_decision);
        if decision == Decision::Excluded {
            continue;
        }
        let this = walked.len();
        let keep = decision == Decision::Included;
        if keep {
            // The parents of an included item are restored too.
            let mut up = parent;
            while let Some(p) = up {
                if walked[p].keep {
                    break;
                }
                walked[p].keep = true;
                up = walked[p].parent;
            }
        }
        let subtree = node.subtree;
        walked.push(Walked {
            item: Item {
                path: path.clone(),
                node,
                link_to: None,
            },
            parent,
            keep,
        });
        if let Some(subtree) = subtree {
            match repo.tree(index, &subtree).await.and_then(|t| t.to_arca()) {
                Ok(children) => pending.extend(
                    children
                        .into_iter()
                        .rev()
                        .map(|child| (Some(this), path.clone(), decision, child)),
                ),
                Err(e) => failures.push((path, format!("directory listing does not load: {e}"))),
            }
        }
    }
    let mut items: Vec<Item> = walked
        .into_iter()
        .filter(|w| w.keep)
        .map(|w| w.item)
        .collect();
    // restic records hard links as files with links > 1 sharing device and inode.
    let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, item) in items.iter_mut().enumerate() {
        let node = &item.node;
        if node.node_type == NodeType::File && node.links > 1 && node.inode != 0 {
            let first = *first_of.entry((node.device, node.inode)).or_insert(i);
            if first != i {
                item.link_to = Some(first);
            }
        }
    }
    Ok((items, failures))
}

/// Removes whatever is at `path` (not a directory we keep) when overwriting.
fn clear(path: &Path, overwrite: bool, keep_dir: bool) -> std::result::Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if keep_dir && meta.is_dir() => Ok(()),
        Ok(_) if !overwrite => Err("exists and overwriting is off".into()),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map_err(|e| e.to_string()),
        Ok(_) => std::fs::remove_file(path).map_err(|e| e.to_string()),
    }
}

/// Creates every item; returns the counts and, per item, why it failed (if it did).
fn create_items(
    items: &[Item],
    target: &Path,
    overwrite: bool,
) -> (RestoreSummary, Vec<Option<String>>) {
    let mut summary = RestoreSummary::default();
    let mut states: Vec<Option<String>> = vec![None; items.len()];
    let is_root = nix::unistd::geteuid().is_root();
    for (i, item) in items.iter().enumerate() {
        let path = target.join(&item.path);
        let node = &item.node;
        let result: std::result::Result<(), String> = (|| {
            if let Some(parent) = item.path.parent()
                && !parent.as_os_str().is_empty()
                && !target.join(parent).is_dir()
            {
                return Err("its directory could not be restored".into());
            }
            match (node.node_type, item.link_to) {
                (NodeType::Dir, _) => {
                    clear(&path, overwrite, true)?;
                    if !path.is_dir() {
                        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
                    }
                    summary.dirs += 1;
                }
                (NodeType::File, Some(first)) => {
                    if states[first].is_some() {
                        return Err("the file it is a hard link of could not be restored".into());
                    }
                    clear(&path, overwrite, false)?;
                    std::fs::hard_link(target.join(&items[first].path), &path)
                        .map_err(|e| e.to_string())?;
                    summary.hardlinks += 1;
                }
                (NodeType::File, None) => {
                    clear(&path, overwrite, false)?;
                    let file = File::create_new(&path).map_err(|e| e.to_string())?;
                    file.set_len(node.size).map_err(|e| e.to_string())?;
                    summary.files += 1;
                }
                (NodeType::Symlink, _) => {
                    clear(&path, overwrite, false)?;
                    let target = node.link_target.clone().unwrap_or_default();
                    std::os::unix::fs::symlink(target.as_os_str(), &path)
                        .map_err(|e| e.to_string())?;
                    summary.symlinks += 1;
                }
                (NodeType::Fifo, _) => {
                    clear(&path, overwrite, false)?;
                    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                        .map_err(|e| e.to_string())?;
                    summary.special += 1;
                }
                (NodeType::CharDevice | NodeType::BlockDevice, _) if is_root => {
                    clear(&path, overwrite, false)?;
                    let kind = if node.node_type == NodeType::CharDevice {
                        nix::sys::stat::SFlag::S_IFCHR
                    } else {
                        nix::sys::stat::SFlag::S_IFBLK
                    };
                    nix::sys::stat::mknod(
                        &path,
                        kind,
                        nix::sys::stat::Mode::from_bits_truncate(0o600),
                        node.rdev,
                    )
                    .map_err(|e| e.to_string())?;
                    summary.special += 1;
                }
                (NodeType::CharDevice | NodeType::BlockDevice, _) => {
                    summary
                        .skipped
                        .push((path.clone(), "device nodes need root".into()));
                }
                (NodeType::Socket, _) => {
                    summary
                        .skipped
                        .push((path.clone(), "sockets are not restored".into()));
                }
            }
            Ok(())
        })();
        if let Err(reason) = result {
            states[i] = Some(reason);
        }
    }
    (summary, states)
}

/// The ranged reads that fetch `content`: adjacent blobs of one pack share one.
fn reads(index: &Index, content: &[Id]) -> Result<Vec<Read>> {
    let mut reads: Vec<Read> = Vec::new();
    let mut file_offset = 0u64;
    for id in content {
        let location = index.get(BlobType::Data, id).ok_or(Error::BlobNotFound {
            blob_type: BlobType::Data,
            id: *id,
        })?;
        let start = u64::from(location.offset);
        let end = start + u64::from(location.length);
        match reads.last_mut() {
            Some(read)
                if read.pack == location.pack
                    && read.end == start
                    && read.end - read.start < MAX_READ =>
            {
                read.end = end;
                read.blobs.push((*id, location, file_offset));
            }
            _ => reads.push(Read {
                pack: location.pack,
                start,
                end,
                blobs: vec![(*id, location, file_offset)],
            }),
        }
        file_offset += location.plaintext_len();
    }
    Ok(reads)
}

/// Content to fetch and write: a file's reads, or a batch of small files.
enum Work {
    File { item: usize, reads: Vec<Read> },
    Batch(Batch),
}

/// Small files (one ranged read each) lying close together in one pack,
/// fetched with one request: a backup stores a directory's small files one
/// after another, so restoring them a request each would cost a round trip
/// per file (restic's restorer, too, reads by pack rather than by file).
struct Batch {
    pack: Id,
    start: u64,
    end: u64,
    /// `(item, its read)`.
    files: Vec<(usize, Read)>,
}

/// Bytes between two small files' blobs that a batch reads rather than
/// starting another request.
const MAX_BATCH_GAP: u64 = 256 << 10;

/// Groups single-read files into [`Batch`]es by pack and position.
fn batches(mut small: Vec<(usize, Read)>) -> Vec<Work> {
    small.sort_by_key(|(_, read)| (read.pack, read.start));
    let mut batches: Vec<Batch> = Vec::new();
    for (item, read) in small {
        match batches.last_mut() {
            Some(batch)
                if batch.pack == read.pack
                    && read.start <= batch.end + MAX_BATCH_GAP
                    && read.end.max(batch.end) - batch.start <= MAX_READ =>
            {
                batch.end = batch.end.max(read.end);
                batch.files.push((item, read));
            }
            _ => batches.push(Batch {
                pack: read.pack,
                start: read.start,
                end: read.end,
                files: vec![(item, read)],
            }),
        }
    }
    batches.into_iter().map(Work::Batch).collect()
}

/// The ranged reads that fetch a file's content, once its blobs are known to
/// add up to the size the snapshot records.
fn content_reads(index: &Index, node: &Node, path: &Path) -> Result<Vec<Read>> {
    let reads = reads(index, &node.content)?;
    let total: u64 = node
        .content
        .iter()
        .filter_map(|id| index.get(BlobType::Data, id))
        .map(|l| l.plaintext_len())
        .sum();
    if total != node.size {
        return Err(Error::corrupt(
            path.display().to_string(),
            format!(
                "its blobs hold {total} bytes but the snapshot says {}",
                node.size
            ),
        ));
    }
    Ok(reads)
}

/// Fetches ranges of packs, counting what was read.
struct Reads<'a> {
    repo: &'a ResticRepository,
    bytes_read: &'a AtomicU64,
    packs_read: &'a std::sync::Mutex<HashSet<Id>>,
}

impl Reads<'_> {
    async fn fetch(&self, pack: Id, range: std::ops::Range<u64>) -> Result<bytes::Bytes> {
        let stored = self
            .repo
            .backend()
            .get_range(&pack_path(&pack), range)
            .await?;
        self.bytes_read
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        self.packs_read.lock().expect("not poisoned").insert(pack);
        Ok(stored)
    }
}

/// Opens a restored file (created empty by the create phase) for writing.
fn open_for_content(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens, verifies and writes the blobs of `read` out of `stored`, which
/// holds the pack's bytes from `base` on; returns the bytes written.
fn write_blobs(
    key: &MasterKey,
    file: &File,
    path: &Path,
    read: &Read,
    stored: &[u8],
    base: u64,
) -> Result<u64> {
    let mut written = 0u64;
    for (id, location, file_offset) in &read.blobs {
        let at = (u64::from(location.offset) - base) as usize;
        let sealed = &stored[at..at + location.length as usize];
        let plain = crate::repository::open_blob(
            key,
            BlobType::Data,
            id,
            sealed,
            location.uncompressed_length,
        )?;
        // All-zero blobs stay holes in the file set_len made.
        if plain.iter().any(|&b| b != 0) {
            file.write_all_at(&plain, *file_offset)
                .map_err(|source| Error::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        written += plain.len() as u64;
    }
    Ok(written)
}

/// Fetches, opens and writes one file's blobs; returns the bytes written.
async fn write_file(
    reads: &Reads<'_>,
    file_reads: Vec<Read>,
    path: PathBuf,
    progress: &Arc<dyn Progress>,
) -> Result<u64> {
    let file = {
        let opening = path.clone();
        Arc::new(blocking(move || open_for_content(&opening)).await?)
    };
    let results: Vec<Result<u64>> = futures::stream::iter(file_reads)
        .map(|read| {
            let (file, path) = (file.clone(), path.clone());
            async move {
                let stored = reads.fetch(read.pack, read.start..read.end).await?;
                let key = reads.repo.key().clone();
                let written =
                    blocking(move || write_blobs(&key, &file, &path, &read, &stored, read.start))
                        .await?;
                progress.add_bytes(written);
                Ok(written)
            }
        })
        .buffer_unordered(READS_PER_FILE)
        .collect()
        .await;
    let mut written = 0;
    for result in results {
        written += result?;
    }
    Ok(written)
}

/// Fetches a batch of small files with one request and writes each; every
/// file has its own result (a failed fetch fails them all, for one reason).
async fn write_batch(
    reads: &Reads<'_>,
    batch: Batch,
    items: &Arc<Vec<Item>>,
    target: &Path,
    progress: &Arc<dyn Progress>,
) -> Vec<(usize, std::result::Result<u64, String>)> {
    let stored = match reads.fetch(batch.pack, batch.start..batch.end).await {
        Ok(stored) => stored,
        Err(e) => {
            let reason = e.to_string();
            return batch
                .files
                .into_iter()
                .map(|(item, _)| (item, Err(reason.clone())))
                .collect();
        }
    };
    let key = reads.repo.key().clone();
    let (items, target) = (items.clone(), target.to_path_buf());
    let results = blocking(move || {
        batch
            .files
            .iter()
            .map(|(item, read)| {
                let path = target.join(&items[*item].path);
                let written = open_for_content(&path)
                    .and_then(|file| write_blobs(&key, &file, &path, read, &stored, batch.start))
                    .map_err(|e| e.to_string());
                (*item, written)
            })
            .collect::<Vec<_>>()
    })
    .await;
    progress.add_bytes(results.iter().filter_map(|(_, r)| r.as_ref().ok()).sum());
    results
}

/// Re-reads a restored file and checks every blob's SHA-256 and the length.
fn verify_file(path: &Path, blobs: &[(Id, u64)]) -> std::result::Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("verify: {e}"))?;
    let mut buf = Vec::new();
    for (id, len) in blobs {
        buf.resize(*len as usize, 0);
        file.read_exact(&mut buf)
            .map_err(|e| format!("verify: {e}"))?;
        if sha256(&buf) != *id {
            return Err(format!("verify: content differs from data blob {id}"));
        }
    }
    if file
        .read(&mut [0u8; 1])
        .map_err(|e| format!("verify: {e}"))?
        != 0
    {
        return Err("verify: the file is longer than in the snapshot".into());
    }
    Ok(())
}

/// Owner, mode, xattrs and times, deepest first (reverse of the parents-first
/// order) so restoring a child's metadata never changes its directory's times.
fn apply_metadata(
    items: &[Item],
    target: &Path,
    owner: bool,
    mut states: Vec<Option<String>>,
) -> (Vec<(PathBuf, String)>, Vec<Option<String>>) {
    let mut skipped = Vec::new();
    for (i, item) in items.iter().enumerate().rev() {
        if states[i].is_some() || item.link_to.is_some() {
            continue;
        }
        let node = &item.node;
        if matches!(node.node_type, NodeType::Socket)
            || (matches!(node.node_type, NodeType::CharDevice | NodeType::BlockDevice)
                && !nix::unistd::geteuid().is_root())
        {
            continue;
        }
        let path = target.join(&item.path);
        let result: std::result::Result<(), String> = (|| {
            if owner {
                nix::unistd::fchownat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    Some(nix::unistd::Uid::from_raw(node.uid)),
                    Some(nix::unistd::Gid::from_raw(node.gid)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| format!("chown: {e}"))?;
            }
            if node.node_type != NodeType::Symlink {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))
                    .map_err(|e| format!("chmod: {e}"))?;
            }
            for attr in &node.xattrs {
                if let Err(e) = xattr::set(&path, attr.name.as_os_str(), &attr.value) {
                    match e.raw_os_error() {
                        Some(code) if code == nix::libc::ENOTSUP || code == nix::libc::EPERM => {
                            skipped.push((
                                path.clone(),
                                format!("extended attribute {}: {e}", attr.name),
                            ));
                        }
                        _ => return Err(format!("extended attribute {}: {e}", attr.name)),
                    }
                }
            }
            let time = |ns: i64| {
                filetime::FileTime::from_unix_time(
                    ns.div_euclid(1_000_000_000),
                    ns.rem_euclid(1_000_000_000) as u32,
                )
            };
            filetime::set_symlink_file_times(&path, time(node.atime_ns), time(node.mtime_ns))
                .map_err(|e| format!("times: {e}"))
        })();
        if let Err(reason) = result {
            states[i] = Some(reason);
        }
    }
    (skipped, states)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-blob read of `pack` at `start..start + len`.
    fn read(pack: u8, start: u32, len: u32) -> Read {
        let location = BlobLocation {
            pack: Id([pack; 32]),
            offset: start,
            length: len,
            uncompressed_length: None,
        };
        Read {
            pack: location.pack,
            start: u64::from(start),
            end: u64::from(start + len),
            blobs: vec![(Id([0; 32]), location, 0)],
        }
    }

    /// Each batch as (pack byte, start, end, items in order).
    fn shape(work: Vec<Work>) -> Vec<(u8, u64, u64, Vec<usize>)> {
        work.into_iter()
            .map(|work| match work {
                Work::Batch(b) => (
                    b.pack.0[0],
                    b.start,
                    b.end,
                    b.files.iter().map(|(item, _)| *item).collect(),
                ),
                Work::File { .. } => panic!("batches() makes only batches"),
            })
            .collect()
    }

    #[test]
    fn small_files_close_together_in_one_pack_share_a_request() {
        let gap = MAX_BATCH_GAP as u32;
        let small = vec![
            (0, read(1, 1000, 100)),
            // Given out of order: batches follow the pack's order.
            (2, read(1, 1200 + gap, 50)),
            (1, read(1, 1100, 100)),
            // Past the gap: a request of its own.
            (3, read(1, 1300 + 3 * gap, 10)),
            // Another pack.
            (4, read(2, 1100, 100)),
            // A blob two files share: the same range, one request.
            (5, read(2, 1100, 100)),
        ];
        assert_eq!(
            shape(batches(small)),
            vec![
                (1, 1000, u64::from(1250 + gap), vec![0, 1, 2]),
                (
                    1,
                    u64::from(1300 + 3 * gap),
                    u64::from(1310 + 3 * gap),
                    vec![3]
                ),
                (2, 1100, 1200, vec![4, 5]),
            ]
        );
    }

    #[test]
    fn a_batch_stays_within_the_largest_read() {
        let len = (MAX_READ / 3) as u32;
        let small: Vec<_> = (0..4).map(|i| (i, read(7, i as u32 * len, len))).collect();
        let shaped = shape(batches(small));
        assert_eq!(shaped.len(), 2);
        assert!(
            shaped
                .iter()
                .all(|(_, start, end, _)| end - start <= MAX_READ)
        );
        assert_eq!(shaped[0].3, vec![0, 1, 2]);
        assert_eq!(shaped[1].3, vec![3]);
    }
}
