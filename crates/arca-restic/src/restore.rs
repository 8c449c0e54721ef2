//! Restore of a restic snapshot into a local directory, with Arca's options
//! and summary ([`arca_repo::restore::RestoreOptions`],
//! [`arca_repo::restore::RestoreSummary`]) so the CLI treats both formats alike.
//!
//! Phases, as in Arca's restore: plan (walk the trees through the filter,
//! keeping the parents of included items), create (directories, files of
//! the right length, symlinks, hardlinks by restic's device and inode,
//! fifos, device nodes as root), content (every blob the files need, once:
//! grouped by pack, fetched with few ranged reads, decrypted and verified
//! off the async runtime, and written at every offset of every file that
//! holds it), optional verify, and metadata
//! last and deepest first (owner as root, mode, xattrs, times).
//!
//! Every item that fails is collected and the restore ends with
//! [`Error::RestoreFailed`] naming them; the others are restored.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read as _;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_repo::Id;
use arca_repo::blob::BlobType;
use arca_repo::progress::Progress;
use arca_repo::restore::filter::{Decision, PathFilter};
use arca_repo::restore::{
    MAX_RANGE, RestoreFailure, RestoreOptions, RestoreSummary, concurrent_reads, read_ranges,
};
use arca_repo::tree::{Node, NodeType};
use futures::StreamExt as _;

use crate::crypto::MasterKey;
use crate::index::{BlobLocation, Index};
use crate::repository::{blocking, pack_path, sha256};
use crate::{Error, ResticRepository, ResticSnapshot, Result};

/// One item to restore.
struct Item {
    /// Relative to the target (`home/u/file`).
    path: PathBuf,
    node: Node,
    /// Restored as a hard link to this earlier item: no content, no metadata of its own.
    link_to: Option<usize>,
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

    let mut blobs = Blobs::default();
    for &i in &files {
        if states[i].is_some() {
            continue;
        }
        if let Err(e) = blobs.add_file(&index, i, &items[i].node, &items[i].path) {
            states[i] = Some(e.to_string());
        }
    }
    let written = write_content(repo, blobs, &items, &target, &progress).await;
    summary.bytes_restored = written.bytes_restored;
    summary.bytes_read = written.bytes_read;
    summary.packs_read = written.packs_read;
    for (i, reason) in written.failures {
        // The first reason a file failed for is the one reported.
        states[i].get_or_insert(reason);
    }
    for &i in &files {
        if states[i].is_none() {
            progress.add_file(&items[i].path);
        }
    }

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

/// Every data blob the restored files need, each once, with every place it
/// is written to: a blob that many files (or many places in one file) hold
/// is fetched, decrypted and verified once and written to all of them while
/// it is in hand, as restic's restorer does.
#[derive(Default)]
struct Blobs {
    jobs: Vec<BlobJob>,
    by_id: HashMap<Id, usize>,
}

/// A data blob and every place it goes.
struct BlobJob {
    id: Id,
    location: BlobLocation,
    /// `(item, offset in that file)`.
    targets: Vec<(usize, u64)>,
}

impl Blobs {
    /// Adds the blobs of file `item`, once its blobs are known to be in the
    /// index and to add up to the size the snapshot records.
    fn add_file(&mut self, index: &Index, item: usize, node: &Node, path: &Path) -> Result<()> {
        let mut located = Vec::with_capacity(node.content.len());
        let mut offset = 0u64;
        for id in &node.content {
            let location = index.get(BlobType::Data, id).ok_or(Error::BlobNotFound {
                blob_type: BlobType::Data,
                id: *id,
            })?;
            located.push((*id, location, offset));
            offset += location.plaintext_len();
        }
        if offset != node.size {
            return Err(Error::corrupt(
                path.display().to_string(),
                format!(
                    "its blobs hold {offset} bytes but the snapshot says {}",
                    node.size
                ),
            ));
        }
        for (id, location, offset) in located {
            let job = *self.by_id.entry(id).or_insert_with(|| {
                self.jobs.push(BlobJob {
                    id,
                    location,
                    targets: Vec::new(),
                });
                self.jobs.len() - 1
            });
            self.jobs[job].targets.push((item, offset));
        }
        Ok(())
    }

    /// The ranged reads that fetch every blob: by pack (in ID order), blobs
    /// by offset, nearby blobs of a pack in one read ([`read_ranges`]).
    fn into_reads(self) -> Vec<PackRead> {
        let mut by_pack: BTreeMap<Id, Vec<BlobJob>> = BTreeMap::new();
        for job in self.jobs {
            by_pack.entry(job.location.pack).or_default().push(job);
        }
        by_pack
            .into_iter()
            .flat_map(|(pack, mut jobs)| {
                jobs.sort_by_key(|job| job.location.offset);
                let extent = |job: &BlobJob| {
                    let start = u64::from(job.location.offset);
                    start..start + u64::from(job.location.length)
                };
                read_ranges(jobs, extent, MAX_RANGE)
                    .into_iter()
                    .map(move |(range, blobs)| PackRead { pack, range, blobs })
            })
            .collect()
    }
}

/// One ranged read of a pack and the blobs in it.
struct PackRead {
    pack: Id,
    range: Range<u64>,
    blobs: Vec<BlobJob>,
}

/// What writing content did.
#[derive(Default)]
struct Written {
    bytes_restored: u64,
    bytes_read: u64,
    packs_read: u64,
    /// `(item, reason)`.
    failures: Vec<(usize, String)>,
}

impl Written {
    /// Records `reason` for every file the blobs of `read` go to.
    fn fail_all(&mut self, blobs: &[BlobJob], reason: &str) {
        for job in blobs {
            for &(item, _) in &job.targets {
                let reason = format!("data blob {}: {reason}", job.id);
                self.failures.push((item, reason));
            }
        }
    }
}

/// Fetches every blob once and writes it into each file that holds it
/// (files exist with their final length).
async fn write_content(
    repo: &ResticRepository,
    blobs: Blobs,
    items: &Arc<Vec<Item>>,
    target: &Path,
    progress: &Arc<dyn Progress>,
) -> Written {
    let reads = blobs.into_reads();
    let packs: HashSet<Id> = reads.iter().map(|read| read.pack).collect();
    let results: Vec<Written> = futures::stream::iter(reads)
        .map(|read| async move {
            let mut written = Written::default();
            let stored = match repo
                .backend()
                .get_range(&pack_path(&read.pack), read.range.clone())
                .await
            {
                Ok(stored) if stored.len() as u64 == read.range.end - read.range.start => stored,
                Ok(stored) => {
                    let reason = format!(
                        "pack {} is truncated: bytes {}..{} returned {} bytes",
                        read.pack,
                        read.range.start,
                        read.range.end,
                        stored.len()
                    );
                    written.fail_all(&read.blobs, &reason);
                    return written;
                }
                Err(e) => {
                    written.fail_all(&read.blobs, &format!("cannot read pack {}: {e}", read.pack));
                    return written;
                }
            };
            written.bytes_read = stored.len() as u64;
            let (key, items, target, progress) = (
                repo.key().clone(),
                items.clone(),
                target.to_path_buf(),
                progress.clone(),
            );
            let range_written = blocking(move || {
                write_blobs(&key, &items, &target, &read, &stored, progress.as_ref())
            })
            .await;
            written.bytes_restored = range_written.bytes_restored;
            written.failures = range_written.failures;
            written
        })
        .buffer_unordered(concurrent_reads())
        .collect()
        .await;
    let mut total = Written {
        packs_read: packs.len() as u64,
        ..Written::default()
    };
    for written in results {
        total.bytes_restored += written.bytes_restored;
        total.bytes_read += written.bytes_read;
        total.failures.extend(written.failures);
    }
    total
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

/// Files one range writer keeps open at most (blobs come in pack order, so a
/// few catch the common case of consecutive blobs of one file).
const MAX_OPEN_FILES: usize = 32;

/// Opens, verifies and writes each blob of `read` out of `stored` (the
/// pack's bytes of `read.range`) into every file it goes to.
fn write_blobs(
    key: &MasterKey,
    items: &[Item],
    target: &Path,
    read: &PackRead,
    stored: &[u8],
    progress: &dyn Progress,
) -> Written {
    let mut written = Written::default();
    let mut open_files: HashMap<usize, File> = HashMap::new();
    for job in &read.blobs {
        let at = (u64::from(job.location.offset) - read.range.start) as usize;
        let sealed = &stored[at..at + job.location.length as usize];
        let plain = match crate::repository::open_blob(
            key,
            BlobType::Data,
            &job.id,
            sealed,
            job.location.uncompressed_length,
        ) {
            Ok(plain) => plain,
            Err(e) => {
                written.fail_all(
                    std::slice::from_ref(job),
                    &format!("in pack {}: {e}", read.pack),
                );
                continue;
            }
        };
        if open_files.len() >= MAX_OPEN_FILES {
            open_files.clear();
        }
        // All-zero blobs stay holes in the file set_len made.
        let all_zero = plain.iter().all(|&b| b == 0);
        for &(item, offset) in &job.targets {
            if !all_zero {
                let path = || target.join(&items[item].path);
                let result = match open_files.entry(item) {
                    Entry::Occupied(entry) => Ok(entry.into_mut()),
                    Entry::Vacant(entry) => open_for_content(&path()).map(|f| entry.insert(f)),
                }
                .and_then(|file| {
                    file.write_all_at(&plain, offset)
                        .map_err(|source| Error::Io {
                            path: path(),
                            source,
                        })
                });
                if let Err(e) = result {
                    written.failures.push((item, e.to_string()));
                    continue;
                }
            }
            written.bytes_restored += plain.len() as u64;
            progress.add_bytes(plain.len() as u64);
        }
    }
    written
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
