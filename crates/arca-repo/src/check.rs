//! `check`: verifies a repository's integrity and reports exactly what is
//! damaged.
//!
//! The structural check reads only metadata: every index file must decode,
//! every pack the index names must exist in `data/` with the size its entries
//! imply, every snapshot must decode, every tree reachable from a snapshot must
//! load, and every blob a tree refers to must be in the index. Packs in `data/`
//! that no index mentions are reported as warnings (harmless leftovers of an
//! interrupted backup). Packs a deletion mark names may be missing (a prune
//! deletes them before it rewrites the index files naming them): their
//! index entries are left out, so only a snapshot still needing one of their
//! blobs is an error. With [`ReadData`] other than `None`, packs are also
//! downloaded whole and authenticated: the storage ID must match the name, the
//! header must decode and agree with the index, and every blob must decrypt,
//! decompress and hash to its ID.
//!
//! Everything is read from the backend, never from the repository's local
//! cache: trees through a scratch cache of the check's own, so each tree
//! pack is fetched whole once instead of one request per tree.
//!
//! `check` keeps going after the first problem and collects every one as a
//! [`CheckError`], in a stable order (index files, packs, snapshots, trees,
//! then pack contents by pack ID). Only failures that make checking itself
//! impossible (listing the repository fails) are returned as `Err`. It never
//! modifies the repository; repairing is a separate command.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arca_crypto::SEAL_OVERHEAD;
use futures::StreamExt;

use crate::blob::{BlobEnvelope, BlobType, decode_blob};
use crate::index::Index;
use crate::pack::{HEADER_ENTRY_LEN, HEADER_PREFIX_LEN, PackEntry, TRAILER_LEN, parse_header};
use crate::progress::Progress;
use crate::repository::{DATA_DIR, SNAPSHOTS_DIR};
use crate::tree::NodeType;
use crate::{Error, Id, Repository, Result};

/// Which packs `check` downloads and authenticates in full.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// None: structural check only.
    #[default]
    None,
    /// Every pack.
    All,
    /// A random fraction (0 < f ≤ 1) of the packs, at least one if there are any.
    Subset(f64),
    /// The `n`-th of `m` deterministic slices (1 ≤ n ≤ m): packs whose ID's
    /// first byte modulo `m` is `n - 1`, so `1/m` … `m/m` together cover all packs.
    Nth {
        /// Which slice, from 1.
        n: u32,
        /// Number of slices.
        m: u32,
    },
}

impl ReadData {
    /// Whether `pack` is in slice `n` of `m`.
    fn slice_contains(n: u32, m: u32, pack: &Id) -> bool {
        u32::from(pack.0[0]) % m == n - 1
    }
}

impl FromStr for ReadData {
    type Err = Error;

    /// Parses a `--read-data-subset` value: `n/m` or a percentage such as `2.5%`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidOptions(format!("read-data subset {s:?}: {why}"));
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| bad("expected n/m with whole numbers"))?;
            let m: u32 = m
                .trim()
                .parse()
                .map_err(|_| bad("expected n/m with whole numbers"))?;
            if n == 0 || m == 0 || n > m {
                return Err(bad("need 1 <= n <= m"));
            }
            Ok(ReadData::Nth { n, m })
        } else if let Some(percent) = s.strip_suffix('%') {
            let percent: f64 = percent
                .trim()
                .parse()
                .map_err(|_| bad("expected a percentage such as 5%"))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(bad("the percentage must be above 0 and at most 100"));
            }
            Ok(ReadData::Subset(percent / 100.0))
        } else {
            Err(bad("expected n/m (e.g. 1/5) or a percentage (e.g. 10%)"))
        }
    }
}

/// What to check.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CheckOptions {
    /// Which packs to download and authenticate in full.
    pub read_data: ReadData,
}

/// One damaged or missing thing, named precisely.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckError {
    /// An index file could not be read or decoded.
    IndexFile {
        /// Its path, `index/<id>`.
        path: String,
        /// Why.
        reason: String,
    },
    /// A snapshot file could not be read or decoded.
    SnapshotFile {
        /// Its path, `snapshots/<id>`.
        path: String,
        /// Why.
        reason: String,
    },
    /// The index names a pack that is not in `data/`.
    PackMissing {
        /// The pack.
        pack: Id,
    },
    /// A pack's size differs from what its index entries imply (e.g. truncated).
    PackSize {
        /// The pack.
        pack: Id,
        /// Size implied by the index.
        expected: u64,
        /// Size in `data/`.
        actual: u64,
    },
    /// A pack as a whole is damaged: its bytes do not hash to its name, its
    /// header does not decode or disagrees with the index, or it cannot be read.
    PackDamaged {
        /// The pack.
        pack: Id,
        /// Why.
        reason: String,
    },
    /// A blob inside a pack does not decrypt, decompress or hash to its ID.
    BlobDamaged {
        /// The pack holding it.
        pack: Id,
        /// What the blob holds.
        blob_type: BlobType,
        /// The blob's content ID.
        blob: Id,
        /// Why.
        reason: String,
    },
    /// A snapshot or tree refers to a blob that is in no index.
    BlobMissing {
        /// What the blob holds.
        blob_type: BlobType,
        /// The blob's content ID.
        blob: Id,
        /// Who refers to it (`snapshot <id>` or `tree <id>`).
        referenced_by: String,
    },
    /// A tree is in the index but does not load (damaged blob or bad encoding).
    TreeDamaged {
        /// The tree's content ID.
        tree: Id,
        /// Why.
        reason: String,
    },
    /// A deletion mark in `marks/` could not be read.
    MarkDamaged {
        /// Why (naming the file).
        reason: String,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::IndexFile { path, reason } => {
                write!(f, "index file {path} is damaged: {reason}")
            }
            CheckError::SnapshotFile { path, reason } => {
                write!(f, "snapshot file {path} is damaged: {reason}")
            }
            CheckError::PackMissing { pack } => write!(
                f,
                "pack {pack} is in the index but missing from {DATA_DIR}/"
            ),
            CheckError::PackSize {
                pack,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "pack {pack} has {actual} bytes but its index entries say {expected} (truncated or damaged)"
                )
            }
            CheckError::PackDamaged { pack, reason } => {
                write!(f, "pack {pack} is damaged: {reason}")
            }
            CheckError::BlobDamaged {
                pack,
                blob_type,
                blob,
                reason,
            } => {
                write!(
                    f,
                    "{blob_type} blob {blob} in pack {pack} is damaged: {reason}"
                )
            }
            CheckError::BlobMissing {
                blob_type,
                blob,
                referenced_by,
            } => {
                write!(
                    f,
                    "{blob_type} blob {blob} used by {referenced_by} is in no index"
                )
            }
            CheckError::TreeDamaged { tree, reason } => {
                write!(f, "tree {tree} does not load: {reason}")
            }
            CheckError::MarkDamaged { reason } => {
                write!(f, "a deletion mark is damaged: {reason}")
            }
        }
    }
}

/// Something odd but harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckWarning {
    /// A pack in `data/` that no index mentions (left by an interrupted
    /// backup; a future prune removes it).
    PackUnreferenced {
        /// The pack.
        pack: Id,
        /// Its size.
        size: u64,
    },
    /// A file in `data/` whose name is not a pack ID.
    StrayFile {
        /// Its path.
        path: String,
    },
}

impl fmt::Display for CheckWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckWarning::PackUnreferenced { pack, size } => {
                write!(
                    f,
                    "pack {pack} ({size} bytes) is in no index (left over from an interrupted backup?)"
                )
            }
            CheckWarning::StrayFile { path } => write!(f, "{path} is not a pack file"),
        }
    }
}

/// Everything `check` found, and how much it looked at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    /// Damage found; empty if the repository is intact.
    pub errors: Vec<CheckError>,
    /// Harmless oddities.
    pub warnings: Vec<CheckWarning>,
    /// Index files decoded.
    pub index_files_checked: u64,
    /// Packs whose presence and size were checked against the index.
    pub packs_checked: u64,
    /// Packs downloaded and authenticated in full.
    pub packs_read: u64,
    /// Blobs decoded and verified (during pack reading).
    pub blobs_checked: u64,
    /// Snapshots decoded.
    pub snapshots_checked: u64,
    /// Distinct trees loaded.
    pub trees_checked: u64,
    /// Bytes downloaded to read packs.
    pub bytes_read: u64,
}

impl CheckReport {
    /// Whether no damage was found (warnings don't count).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Concurrent file loads for the structural part.
const LOAD_CONCURRENCY: usize = 8;

/// An empty directory for [`check`]'s own cache, beside the repository's
/// cache if it has one, else in the system's temporary directory; removed
/// when dropped. `None` (checking then reads each tree on its own) if none
/// can be made, e.g. on a read-only file system.
fn scratch_cache(repo: &Repository) -> Option<tempfile::TempDir> {
    let base = repo
        .cache_dir()
        .and_then(std::path::Path::parent)
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf);
    let made = std::fs::create_dir_all(&base).and_then(|()| {
        tempfile::Builder::new()
            .prefix("arca-check-")
            .tempdir_in(&base)
    });
    match made {
        Ok(dir) => Some(dir),
        Err(error) => {
            tracing::warn!(
                dir = %base.display(),
                %error,
                "no scratch cache for check; reading trees one by one"
            );
            None
        }
    }
}

/// Checks `repo`; see the module docs for what is checked.
pub async fn check(
    repo: &Repository,
    opts: &CheckOptions,
    progress: Arc<dyn Progress>,
) -> Result<CheckReport> {
    // Verify what is stored, not local copies of it: through a cache of
    // its own that starts empty and goes when the check ends, so a tree pack
    // is fetched whole once (and checked against its name) rather than read
    // tree by tree, one request per directory on an object store. restic's
    // check does the same with its temporary cache.
    let scratch = scratch_cache(repo);
    let repo = &match &scratch {
        Some(dir) => repo.with_tree_pack_cache(arca_store::DiskCache::new(dir.path())),
        None => repo.without_cache(),
    };
    let mut report = CheckReport::default();

    let stored_packs = list_packs(repo, &mut report).await?;
    // A prune deletes a marked pack before it rewrites the index files
    // naming it: a marked pack may be missing while still indexed. Its
    // entries are left out, so a snapshot still needing one of its blobs
    // is reported as missing that blob.
    let deleted: HashSet<Id> = match crate::marks::list_marks(repo).await {
        Ok(marks) => crate::marks::pending_packs(marks.iter().map(|(_, mark)| mark))
            .into_iter()
            .filter(|pack| !stored_packs.contains_key(pack))
            .collect(),
        Err(e) => {
            report.errors.push(CheckError::MarkDamaged {
                reason: e.to_string(),
            });
            HashSet::new()
        }
    };
    let (index, pack_entries) = load_indexes(repo, &deleted, &mut report).await?;
    check_pack_sizes(&pack_entries, &index, &stored_packs, &mut report);
    check_snapshots_and_trees(repo, &index, &mut report).await?;

    let selected = select_packs(opts.read_data, &pack_entries, &stored_packs);
    if !selected.is_empty() {
        read_packs(repo, selected, &pack_entries, &index, progress, &mut report).await;
    }
    Ok(report)
}

/// Loads every index file, recording the ones that fail; returns the merged
/// index and every pack's entries as the index files list them.
async fn load_indexes(
    repo: &Repository,
    deleted: &HashSet<Id>,
    report: &mut CheckReport,
) -> Result<(Index, BTreeMap<Id, Vec<PackEntry>>)> {
    let mut metas = repo.list_index_files().await?;
    metas.sort_by(|a, b| a.path.cmp(&b.path));
    let mut loads = futures::stream::iter(metas)
        .map(|meta| async move {
            let result = match id_from_path(&meta.path) {
                Some(id) => repo.load_index_file(&id).await,
                None => Err(Error::corrupt(&meta.path, "the file name is not an ID")),
            };
            (meta.path, result)
        })
        .buffered(LOAD_CONCURRENCY);
    let mut index = Index::default();
    let mut pack_entries: BTreeMap<Id, Vec<PackEntry>> = BTreeMap::new();
    let mut envelopes: HashMap<Id, BlobEnvelope> = HashMap::new();
    while let Some((path, result)) = loads.next().await {
        match result {
            Ok(mut file) => {
                report.index_files_checked += 1;
                file.packs.retain(|pack| !deleted.contains(&pack.id));
                index.add_file(&file);
                for pack in file.packs {
                    let first = *envelopes.entry(pack.id).or_insert(pack.envelope);
                    if first != pack.envelope {
                        report.errors.push(CheckError::IndexFile {
                            path: path.clone(),
                            reason: format!(
                                "it lists pack {} with another key id or salt than an \
                                 index file read before it ({} against {})",
                                pack.id,
                                describe_envelope(pack.envelope),
                                describe_envelope(first)
                            ),
                        });
                    }
                    pack_entries.entry(pack.id).or_default().extend(pack.blobs);
                }
            }
            Err(e) => report.errors.push(CheckError::IndexFile {
                path,
                reason: e.to_string(),
            }),
        }
    }
    index.finish();
    // The same pack may be listed by more than one index file.
    for entries in pack_entries.values_mut() {
        entries.sort_by_key(|e| (e.offset, e.blob_type, e.id));
        entries.dedup();
    }
    Ok((index, pack_entries))
}

/// Every pack in `data/` with its size; other files there become warnings.
async fn list_packs(repo: &Repository, report: &mut CheckReport) -> Result<HashMap<Id, u64>> {
    let mut packs = HashMap::new();
    for meta in repo.backend().list(&format!("{DATA_DIR}/")).await? {
        match id_from_path(&meta.path) {
            Some(id) if Repository::pack_path(&id) == meta.path => {
                packs.insert(id, meta.size);
            }
            _ => report
                .warnings
                .push(CheckWarning::StrayFile { path: meta.path }),
        }
    }
    Ok(packs)
}

/// The size a pack sealed as `envelope` with exactly `entries` must have:
/// the blobs, the sealed header and the trailer (see `pack.rs`).
fn expected_pack_size(envelope: BlobEnvelope, entries: &[PackEntry]) -> u64 {
    let blobs: u64 = entries.iter().map(|e| u64::from(e.length)).sum();
    let prefix = match envelope {
        BlobEnvelope::Pack(_) => HEADER_PREFIX_LEN,
        BlobEnvelope::PerBlob => 1,
    };
    let header = prefix as u64 + entries.len() as u64 * HEADER_ENTRY_LEN as u64;
    blobs + SEAL_OVERHEAD as u64 + header + TRAILER_LEN as u64
}

/// `key id K, salt S` of a format-2 pack, `format 1` else (for messages;
/// the salt is not secret).
fn describe_envelope(envelope: BlobEnvelope) -> String {
    match envelope {
        BlobEnvelope::Pack(key) => format!("key id {}, salt {}", key.key_id, hex::encode(key.salt)),
        BlobEnvelope::PerBlob => "format 1".to_owned(),
    }
}

fn check_pack_sizes(
    pack_entries: &BTreeMap<Id, Vec<PackEntry>>,
    index: &Index,
    stored: &HashMap<Id, u64>,
    report: &mut CheckReport,
) {
    for (pack, entries) in pack_entries {
        report.packs_checked += 1;
        let envelope = index
            .pack_envelope(pack)
            .expect("every pack with entries was added to the index");
        let expected = expected_pack_size(envelope, entries);
        match stored.get(pack) {
            None => report.errors.push(CheckError::PackMissing { pack: *pack }),
            Some(&actual) if actual != expected => {
                report.errors.push(CheckError::PackSize {
                    pack: *pack,
                    expected,
                    actual,
                });
            }
            Some(_) => {}
        }
    }
    let mut unreferenced: Vec<(Id, u64)> = stored
        .iter()
        .filter(|(pack, _)| !pack_entries.contains_key(pack))
        .map(|(p, s)| (*p, *s))
        .collect();
    unreferenced.sort();
    report.warnings.extend(
        unreferenced
            .into_iter()
            .map(|(pack, size)| CheckWarning::PackUnreferenced { pack, size }),
    );
}

/// Decodes every snapshot and walks every tree reachable from them, once per
/// distinct tree.
async fn check_snapshots_and_trees(
    repo: &Repository,
    index: &Index,
    report: &mut CheckReport,
) -> Result<()> {
    let (snapshots, damaged) = repo.list_snapshots_lenient().await?;
    for (id, error) in damaged {
        report.errors.push(CheckError::SnapshotFile {
            path: format!("{SNAPSHOTS_DIR}/{id}"),
            reason: error.to_string(),
        });
    }
    report.snapshots_checked = snapshots.len() as u64;

    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut missing_reported: HashSet<(BlobType, Id)> = HashSet::new();
    let mut missing = |report: &mut CheckReport, blob_type, blob: Id, referenced_by: String| {
        if missing_reported.insert((blob_type, blob)) {
            report.errors.push(CheckError::BlobMissing {
                blob_type,
                blob,
                referenced_by,
            });
        }
    };
    // Trees still to load, with who refers to them. Depth first, and at
    // most LOAD_CONCURRENCY trees decoded at once: a level-by-level walk
    // held a whole level of decoded trees, 64 MB of a mix's directories of
    // small files at 8 GiB.
    let mut pending: Vec<(Id, String)> = Vec::new();
    for (id, snapshot) in &snapshots {
        if seen_trees.insert(snapshot.tree) {
            pending.push((snapshot.tree, format!("snapshot {id}")));
        }
    }
    // Popped from the end: reversed, the walk visits them in order.
    pending.reverse();
    let mut loads = futures::stream::FuturesOrdered::new();
    loop {
        while loads.len() < LOAD_CONCURRENCY
            && let Some((tree, referenced_by)) = pending.pop()
        {
            if index.contains(BlobType::Tree, &tree) {
                loads.push_back(async move { (tree, repo.load_tree(index, &tree).await) });
            } else {
                missing(report, BlobType::Tree, tree, referenced_by);
            }
        }
        let Some((tree_id, result)) = loads.next().await else {
            break;
        };
        let tree = match result {
            Ok(tree) => tree,
            Err(e) => {
                report.errors.push(CheckError::TreeDamaged {
                    tree: tree_id,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        report.trees_checked += 1;
        let first_child = pending.len();
        for node in &tree.nodes {
            if node.node_type == NodeType::File {
                for blob in &node.content {
                    if !index.contains(BlobType::Data, blob) {
                        missing(
                            report,
                            BlobType::Data,
                            *blob,
                            format!("tree {tree_id} (file {})", node.name),
                        );
                    }
                }
            }
            if let Some(subtree) = node.subtree
                && seen_trees.insert(subtree)
            {
                pending.push((subtree, format!("tree {tree_id} (directory {})", node.name)));
            }
        }
        // Popped from the end: reversed, the walk visits them in order.
        pending[first_child..].reverse();
    }
    Ok(())
}

/// The packs to read in full: known to the index and present in `data/`
/// (missing ones are already reported), chosen by `read_data`.
fn select_packs(
    read_data: ReadData,
    pack_entries: &BTreeMap<Id, Vec<PackEntry>>,
    stored: &HashMap<Id, u64>,
) -> Vec<(Id, u64)> {
    let candidates: Vec<(Id, u64)> = pack_entries
        .keys()
        .filter_map(|pack| stored.get(pack).map(|&size| (*pack, size)))
        .collect();
    match read_data {
        ReadData::None => Vec::new(),
        ReadData::All => candidates,
        ReadData::Nth { n, m } => candidates
            .into_iter()
            .filter(|(pack, _)| ReadData::slice_contains(n, m, pack))
            .collect(),
        ReadData::Subset(fraction) => {
            if candidates.is_empty() {
                return candidates;
            }
            let wanted = ((candidates.len() as f64 * fraction.clamp(0.0, 1.0)).ceil() as usize)
                .clamp(1, candidates.len());
            let mut picked =
                rand::seq::index::sample(&mut rand::rng(), candidates.len(), wanted).into_vec();
            picked.sort_unstable();
            picked.into_iter().map(|i| candidates[i]).collect()
        }
    }
}

/// Packs downloaded or being checked at once; bounds memory to about this
/// many packs. One more than the cores, so a download is under way while
/// every core authenticates a pack (with one per core, the cores waited
/// for every download: 1.2 of 2 busy).
fn read_workers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get().clamp(2, 8) + 1)
}

/// What reading one pack found.
struct PackOutcome {
    bytes_read: u64,
    blobs_checked: u64,
    errors: Vec<CheckError>,
}

async fn read_packs(
    repo: &Repository,
    selected: Vec<(Id, u64)>,
    pack_entries: &BTreeMap<Id, Vec<PackEntry>>,
    index: &Index,
    progress: Arc<dyn Progress>,
    report: &mut CheckReport,
) {
    progress.set_total(
        selected.len() as u64,
        selected.iter().map(|(_, size)| size).sum(),
    );
    let outcomes: Vec<PackOutcome> = futures::stream::iter(selected)
        .map(|(pack, _)| {
            let entries = pack_entries.get(&pack).cloned().unwrap_or_default();
            let envelope = index
                .pack_envelope(&pack)
                .expect("packs are selected from the index's");
            read_pack(repo.clone(), pack, envelope, entries, progress.clone())
        })
        .buffered(read_workers())
        .collect()
        .await;
    for outcome in outcomes {
        report.packs_read += 1;
        report.bytes_read += outcome.bytes_read;
        report.blobs_checked += outcome.blobs_checked;
        report.errors.extend(outcome.errors);
    }
}

async fn read_pack(
    repo: Repository,
    pack: Id,
    envelope: BlobEnvelope,
    entries: Vec<PackEntry>,
    progress: Arc<dyn Progress>,
) -> PackOutcome {
    let path = Repository::pack_path(&pack);
    let bytes = match repo.backend().get(&path).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = format!("cannot read it: {e}");
            return PackOutcome {
                bytes_read: 0,
                blobs_checked: 0,
                errors: vec![CheckError::PackDamaged { pack, reason }],
            };
        }
    };
    let bytes_read = bytes.len() as u64;
    progress.add_bytes(bytes_read);
    let task = tokio::task::spawn_blocking(move || {
        authenticate_pack(&repo, pack, &bytes, envelope, &entries)
    });
    let (blobs_checked, errors) = match task.await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => (
            0,
            vec![CheckError::PackDamaged {
                pack,
                reason: format!("check cancelled: {e}"),
            }],
        ),
    };
    progress.add_file(std::path::Path::new(&path));
    PackOutcome {
        bytes_read,
        blobs_checked,
        errors,
    }
}

/// Checks a whole pack against its name and its index entries (the
/// header's key id and salt included), and decodes every blob the index
/// says it holds. Blocking; CPU-bound.
fn authenticate_pack(
    repo: &Repository,
    pack: Id,
    bytes: &[u8],
    envelope: BlobEnvelope,
    indexed: &[PackEntry],
) -> (u64, Vec<CheckError>) {
    let mut errors = Vec::new();
    let actual = Id::storage_id(bytes);
    if actual != pack {
        errors.push(CheckError::PackDamaged {
            pack,
            reason: format!("its content hashes to {actual}, not its name"),
        });
    }
    match parse_header(repo.key(), bytes) {
        Err(e) => errors.push(CheckError::PackDamaged {
            pack,
            reason: format!("header: {e}"),
        }),
        Ok(mut header) => {
            if header.envelope != envelope {
                errors.push(CheckError::PackDamaged {
                    pack,
                    reason: format!(
                        "its header says {} but the index {}",
                        describe_envelope(header.envelope),
                        describe_envelope(envelope)
                    ),
                });
            }
            header
                .entries
                .sort_by_key(|e| (e.offset, e.blob_type, e.id));
            if header.entries != indexed {
                errors.push(CheckError::PackDamaged {
                    pack,
                    reason: describe_header_mismatch(&header.entries, indexed),
                });
            }
        }
    }
    let mut blobs_checked = 0;
    for entry in indexed {
        blobs_checked += 1;
        let start = entry.offset as usize;
        let Some(stored) = bytes.get(start..start + entry.length as usize) else {
            errors.push(CheckError::BlobDamaged {
                pack,
                blob_type: entry.blob_type,
                blob: entry.id,
                reason: format!(
                    "bytes {start}..{} lie outside the {}-byte pack",
                    start + entry.length as usize,
                    bytes.len()
                ),
            });
            continue;
        };
        if let Err(e) = decode_blob(
            repo.key(),
            envelope,
            entry.blob_type,
            stored,
            entry.uncompressed_length,
            &entry.id,
        ) {
            errors.push(CheckError::BlobDamaged {
                pack,
                blob_type: entry.blob_type,
                blob: entry.id,
                reason: e.to_string(),
            });
        }
    }
    (blobs_checked, errors)
}

fn describe_header_mismatch(header: &[PackEntry], indexed: &[PackEntry]) -> String {
    let header_set: HashSet<&PackEntry> = header.iter().collect();
    let indexed_set: HashSet<&PackEntry> = indexed.iter().collect();
    let only_header = header_set.difference(&indexed_set).count();
    let only_index = indexed_set.difference(&header_set).count();
    format!(
        "its header lists {} blobs and the index {}; {only_header} only in the header, {only_index} only in the index",
        header.len(),
        indexed.len()
    )
}

/// The ID at the end of a repository path (`index/<id>`, `data/ab/<id>`).
fn id_from_path(path: &str) -> Option<Id> {
    path.rsplit('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_specs_parse() {
        assert_eq!(
            "2/5".parse::<ReadData>().unwrap(),
            ReadData::Nth { n: 2, m: 5 }
        );
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Subset(0.1));
        assert_eq!("100%".parse::<ReadData>().unwrap(), ReadData::Subset(1.0));
        for bad in ["0/5", "6/5", "1/0", "0%", "101%", "x", "1/x", "-1%"] {
            let err = bad.parse::<ReadData>().unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn slices_partition_all_packs() {
        for first in 0..=255u8 {
            let pack = Id([first; 32]);
            let slices: Vec<u32> = (1..=3)
                .filter(|&n| ReadData::slice_contains(n, 3, &pack))
                .collect();
            assert_eq!(slices, vec![u32::from(first) % 3 + 1]);
        }
    }

    #[test]
    fn subset_picks_at_least_one_and_at_most_all() {
        let entries: BTreeMap<Id, Vec<PackEntry>> =
            (0..10u8).map(|i| (Id([i; 32]), Vec::new())).collect();
        let stored: HashMap<Id, u64> = entries.keys().map(|id| (*id, 1)).collect();
        assert_eq!(
            select_packs(ReadData::Subset(0.001), &entries, &stored).len(),
            1
        );
        assert_eq!(
            select_packs(ReadData::Subset(0.25), &entries, &stored).len(),
            3
        );
        assert_eq!(
            select_packs(ReadData::Subset(1.0), &entries, &stored).len(),
            10
        );
        assert_eq!(select_packs(ReadData::None, &entries, &stored).len(), 0);
        let picked = select_packs(ReadData::Subset(0.5), &entries, &stored);
        let distinct: HashSet<Id> = picked.iter().map(|(id, _)| *id).collect();
        assert_eq!(distinct.len(), 5);
    }

    #[test]
    fn missing_packs_are_never_selected() {
        let entries: BTreeMap<Id, Vec<PackEntry>> =
            (0..4u8).map(|i| (Id([i; 32]), Vec::new())).collect();
        let stored: HashMap<Id, u64> = [(Id([1; 32]), 7)].into_iter().collect();
        assert_eq!(
            select_packs(ReadData::All, &entries, &stored),
            vec![(Id([1; 32]), 7)]
        );
    }
}
