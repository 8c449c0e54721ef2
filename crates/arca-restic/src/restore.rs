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
    let written: Vec<(usize, Result<u64>)> = futures::stream::iter(
        files
            .iter()
            .copied()
            .filter(|&i| states[i].is_none() && !items[i].node.content.is_empty()),
    )
    .map(|i| {
        let (index, items, target, progress) = (&index, &items, &target, &progress);
        let (bytes_read, packs_read) = (&bytes_read, &packs_read);
        async move {
            let path = target.join(&items[i].path);
            let result = write_content(
                repo,
                index,
                &items[i].node,
                path,
                bytes_read,
                packs_read,
                progress,
            )
            .await;
            (i, result)
        }
    })
    .buffer_unordered(FILE_CONCURRENCY)
    .collect()
    .await;
    for (i, result) in written {
        match result {
            Ok(bytes) => {
                summary.bytes_restored += bytes;
                progress.add_file(&items[i].path);
            }
            Err(e) => states[i] = Some(e.to_string()),
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

/// Fetches, opens and writes one file's blobs; returns the bytes written.
async fn write_content(
    repo: &ResticRepository,
    index: &Index,
    node: &Node,
    path: PathBuf,
    bytes_read: &AtomicU64,
    packs_read: &std::sync::Mutex<HashSet<Id>>,
    progress: &Arc<dyn Progress>,
) -> Result<u64> {
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
    let file = {
        let opening = path.clone();
        let opened = blocking(move || std::fs::OpenOptions::new().write(true).open(opening)).await;
        Arc::new(opened.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?)
    };
    let results: Vec<Result<u64>> = futures::stream::iter(reads)
        .map(|read| {
            let file = file.clone();
            let path = path.clone();
            async move {
                let stored = repo
                    .backend()
                    .get_range(&pack_path(&read.pack), read.start..read.end)
                    .await?;
                bytes_read.fetch_add(stored.len() as u64, Ordering::Relaxed);
                packs_read.lock().expect("not poisoned").insert(read.pack);
                let key = repo.key().clone();
                let written = blocking(move || {
                    let mut written = 0u64;
                    for (id, location, file_offset) in &read.blobs {
                        let at = (u64::from(location.offset) - read.start) as usize;
                        let sealed = &stored[at..at + location.length as usize];
                        let plain = crate::repository::open_blob(
                            &key,
                            BlobType::Data,
                            id,
                            sealed,
                            location.uncompressed_length,
                        )?;
                        // All-zero blobs stay holes in the file set_len made.
                        if plain.iter().any(|&b| b != 0) {
                            file.write_all_at(&plain, *file_offset).map_err(|source| {
                                Error::Io {
                                    path: path.clone(),
                                    source,
                                }
                            })?;
                        }
                        written += plain.len() as u64;
                    }
                    Ok::<_, Error>(written)
                })
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
