//! Prune: removes data no snapshot uses, safely beside running backups and
//! without any lock a backup must respect.
//!
//! A prune runs in two phases (the protocol and its argument are in
//! docs/FORMAT.md, "Prune without locks"):
//!
//! 1. **Sweep** the deletion marks older than the grace period: list the
//!    snapshots *again*, after the grace is known to have passed; a marked
//!    pack holding a blob some snapshot uses and that has no copy outside
//!    pending packs is resurrected (left in place, and no longer pending once
//!    the mark goes); the others are deleted, the index files naming them
//!    rewritten (new files first), and the mark deleted last.
//! 2. **Mark**: walk every snapshot's trees into a bitset over the index's
//!    sorted entries; mark packs nothing uses (and packs no index lists),
//!    repack the used blobs of packs whose unused share is above
//!    `max_unused` into new packs (indexed before the old packs are marked),
//!    and write one [`DeletionMark`] naming them all.
//!
//! Two prunes exclude each other with a lease (`lease.rs`); a crash at any
//! point leaves a repository `check` accepts, and the next prune finishes
//! the sweep.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arca_crypto::MasterKey;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::blob::{BlobEnvelope, BlobType, open_checked, open_stored};
use crate::index::{Index, IndexFile, IndexPack};
use crate::lease::{self, HeldLease, LEASE_REFRESH};
use crate::marks::{
    self, DeletionMark, delete_if_present, delete_mark, list_marks, pending_packs, save_mark,
    walk_trees,
};
use crate::pack::{OpenPacks, PackEntry, PackWriter};
use crate::repository::{DATA_DIR, INDEX_DIR, blocking, id_from_path};
use crate::{Error, Id, Repository, Result};

/// How many packs are deleted, or index files loaded, at once.
const CONCURRENCY: usize = 8;
/// Packs a repack fetches and verifies ahead of the one it is packing.
const REPACK_READ_AHEAD: usize = 2;
/// New packs a repack seals and uploads at once.
const REPACK_UPLOADS: usize = 2;

/// How much unused space prune may leave in partly used packs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// A percentage of the repository's used data (restic's meaning: unused
    /// ≤ p % of the total after pruning).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
}

impl std::str::FromStr for MaxUnused {
    type Err = Error;

    /// `5%`, `0%`, `100%`, or a size: `500M`, `2G`, `1024` (bytes), or
    /// `unlimited`.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidOptions(format!(
                "--max-unused {text:?}: expected a percentage like 5% or a size like 500M"
            ))
        };
        let text = text.trim();
        if text == "unlimited" {
            return Ok(MaxUnused::Bytes(u64::MAX));
        }
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(bad());
            }
            return Ok(MaxUnused::Percent(percent));
        }
        parse_size(text).map(MaxUnused::Bytes).ok_or_else(bad)
    }
}

/// A size: digits with an optional K, M, G or T suffix (powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits.parse().ok()?;
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// What prune does.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// Unused space allowed to remain in partly used packs.
    pub max_unused: MaxUnused,
    /// Bytes of packs repacked at most per run; `None` = no limit.
    pub max_repack_bytes: Option<u64>,
    /// Repack only tree packs (those a cache holds).
    pub repack_cacheable_only: bool,
    /// Also repack packs smaller than half the target pack size.
    pub repack_small: bool,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// How long a mark waits before its packs are deleted (at least
    /// [`Repository::grace_floor`]).
    pub grace: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            repack_cacheable_only: false,
            repack_small: false,
            dry_run: false,
            grace: marks::DEFAULT_GRACE,
        }
    }
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Marks whose grace had passed and that were swept.
    pub marks_swept: u64,
    /// Packs deleted by the sweep.
    pub packs_deleted: u64,
    /// Bytes of the packs deleted by the sweep.
    pub bytes_deleted: u64,
    /// Marked packs found in use again and kept.
    pub packs_resurrected: u64,
    /// Index files replaced by the sweep.
    pub index_files_rewritten: u64,
    /// Snapshots whose trees were walked by the mark phase.
    pub snapshots: u64,
    /// Distinct blobs those snapshots use.
    pub blobs_used: u64,
    /// Packs marked for deletion in this run (unused, repacked or unindexed).
    pub packs_marked: u64,
    /// Bytes the marked packs hold (freed by a prune after the grace).
    pub bytes_marked: u64,
    /// Of the marked packs, those no index lists.
    pub unindexed_packs_marked: u64,
    /// Packs whose used blobs were copied into new packs.
    pub packs_repacked: u64,
    /// Blobs copied by the repack.
    pub blobs_repacked: u64,
    /// Bytes of the copied blobs.
    pub bytes_repacked: u64,
    /// Unused bytes left in partly used packs.
    pub bytes_unused_kept: u64,
    /// Packs still pending deletion from earlier marks not yet due.
    pub packs_pending: u64,
    /// The new mark's ID, if one was written.
    pub mark: Option<Id>,
}

/// Prunes `repo`; see the module docs. Needs a full-access key, and fails
/// with [`Error::PruneRunning`] if another prune holds the lease.
pub async fn prune(repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    repo.require_full_access("prune")?;
    let floor = repo.grace_floor();
    if opts.grace < floor {
        return Err(Error::InvalidOptions(format!(
            "a grace period of {:?} is below the minimum of {floor:?}",
            opts.grace
        )));
    }
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    if opts.dry_run {
        sweep(repo, opts, None, &mut report).await?;
        mark(repo, opts, None, &mut report).await?;
        return Ok(report);
    }
    let lease = tokio::sync::Mutex::new(lease::acquire(repo, "prune").await?);
    let work = async {
        sweep(repo, opts, Some(&lease), &mut report).await?;
        mark(repo, opts, Some(&lease), &mut report).await
    };
    // Refreshes the lease while the work runs; a failed refresh stops the
    // work where it is, which the protocol treats like a crash.
    let keep_lease = async {
        loop {
            tokio::time::sleep(LEASE_REFRESH).await;
            if let Err(error) = lease.lock().await.refresh().await {
                return Error::LeaseLost {
                    reason: error.to_string(),
                };
            }
        }
    };
    let result = tokio::select! {
        result = work => result,
        error = keep_lease => Err(error),
    };
    // A lease left behind by a failure expires by itself anyway.
    if let Err(error) = lease.into_inner().release().await {
        tracing::warn!(%error, "could not remove the prune's lease; it expires by itself");
    }
    result.map(|()| report)
}

/// Checks the lease is still valid (before each step that deletes).
async fn checkpoint(lease: Option<&Lease>) -> Result<()> {
    if let Some(lease) = lease {
        lease.lock().await.ensure_valid()?;
    }
    Ok(())
}

/// The prune's lease, shared with the task refreshing it.
type Lease = tokio::sync::Mutex<HeldLease>;

/// A set of blob positions in an [`Index`].
#[derive(Debug, Clone)]
struct BlobSet(Vec<u64>);

impl BlobSet {
    fn new(len: usize) -> Self {
        BlobSet(vec![0; len.div_ceil(64)])
    }

    fn contains(&self, position: usize) -> bool {
        self.0[position / 64] & (1 << (position % 64)) != 0
    }

    /// Adds the position; whether it was new.
    fn insert(&mut self, position: usize) -> bool {
        let word = &mut self.0[position / 64];
        let bit = 1 << (position % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// The repository as a prune phase sees it.
struct State {
    /// Every index file, by ID.
    files: Vec<(Id, IndexFile)>,
    /// All of them merged (live copies of duplicated blobs first).
    index: Index,
    /// The blobs some snapshot uses.
    used: BlobSet,
    /// Snapshots walked.
    snapshots: u64,
}

/// Lists the snapshots, loads the index and walks every tree.
async fn load_state(repo: &Repository, pending: &HashSet<Id>) -> Result<State> {
    // The index after the snapshots: every index file a listed snapshot
    // needs was written before it (docs/FORMAT.md §16).
    let snapshots = repo.list_snapshots().await?;
    let metas = repo.list_index_files().await?;
    let files: Vec<(Id, IndexFile)> = futures::stream::iter(metas)
        .map(|meta| async move {
            let id = id_from_path(&meta.path)?;
            Ok::<_, Error>((id, repo.load_index_file(&id).await?))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let (files, index) = {
        let pending = pending.clone();
        blocking(move || {
            let mut index = Index::default();
            let mut pending_packs = IndexFile::default();
            for (_, file) in &files {
                for pack in &file.packs {
                    if pending.contains(&pack.id) {
                        pending_packs.packs.push(pack.clone());
                    }
                }
                index.add_file(&IndexFile {
                    packs: file
                        .packs
                        .iter()
                        .filter(|pack| !pending.contains(&pack.id))
                        .cloned()
                        .collect(),
                });
            }
            index.add_file(&pending_packs);
            index.finish();
            Ok((files, index))
        })
        .await?
    };
    let mut used = BlobSet::new(index.len());
    let mut missing = None;
    let mut roots = Vec::new();
    for (_, snapshot) in &snapshots {
        match index.position(BlobType::Tree, &snapshot.tree) {
            Some(position) => {
                if used.insert(position) {
                    roots.push(snapshot.tree);
                }
            }
            None => missing = Some((BlobType::Tree, snapshot.tree)),
        }
    }
    walk_trees(repo, &index, roots, |tree, queue| {
        for node in &tree.nodes {
            for blob in &node.content {
                match index.position(BlobType::Data, blob) {
                    Some(position) => {
                        used.insert(position);
                    }
                    None => missing = Some((BlobType::Data, *blob)),
                }
            }
            if let Some(subtree) = node.subtree {
                match index.position(BlobType::Tree, &subtree) {
                    Some(position) => {
                        if used.insert(position) {
                            queue.push(subtree);
                        }
                    }
                    None => missing = Some((BlobType::Tree, subtree)),
                }
            }
        }
    })
    .await?;
    // A snapshot needs a blob the index lacks: the repository is damaged,
    // and nothing may be deleted until `check` and a repair say why.
    if let Some((blob_type, id)) = missing {
        return Err(Error::BlobNotFound { blob_type, id });
    }
    Ok(State {
        files,
        index,
        used,
        snapshots: snapshots.len() as u64,
    })
}

/// Each pack's blobs as the index files list them (a pack listed by several
/// files once).
fn pack_entries(files: &[(Id, IndexFile)]) -> HashMap<Id, &[PackEntry]> {
    let mut packs = HashMap::new();
    for (_, file) in files {
        for pack in &file.packs {
            packs.entry(pack.id).or_insert(pack.blobs.as_slice());
        }
    }
    packs
}

/// Phase 2 of the protocol, run first: deletes the packs of marks whose
/// grace has passed, unless a snapshot listed now needs them.
async fn sweep(
    repo: &Repository,
    opts: &PruneOptions,
    lease: Option<&Lease>,
    report: &mut PruneReport,
) -> Result<()> {
    let marks = list_marks(repo).await?;
    let now = jiff::Timestamp::now();
    let grace = jiff::SignedDuration::try_from(opts.grace)
        .map_err(|e| Error::InvalidOptions(format!("grace: {e}")))?;
    let (due, waiting): (Vec<_>, Vec<_>) = marks
        .into_iter()
        .partition(|(_, mark)| now.duration_since(mark.time) >= grace);
    if due.is_empty() {
        return Ok(());
    }
    // Only now that the grace is known to have passed: the snapshots and
    // index as they are after it.
    let pending = pending_packs(due.iter().chain(&waiting).map(|(_, m)| m));
    let state = load_state(repo, &pending).await?;
    let mut live = BlobSet::new(state.index.len());
    for (_, file) in &state.files {
        for pack in file.packs.iter().filter(|p| !pending.contains(&p.id)) {
            for blob in &pack.blobs {
                if let Some(position) = state.index.position(blob.blob_type, &blob.id) {
                    live.insert(position);
                }
            }
        }
    }
    let entries = pack_entries(&state.files);
    let due_packs = pending_packs(due.iter().map(|(_, m)| m));
    let mut delete = HashSet::new();
    for pack in &due_packs {
        let needed = entries.get(pack).is_some_and(|blobs| {
            blobs.iter().any(|blob| {
                state
                    .index
                    .position(blob.blob_type, &blob.id)
                    .is_some_and(|p| state.used.contains(p) && !live.contains(p))
            })
        });
        if needed {
            report.packs_resurrected += 1;
        } else {
            delete.insert(*pack);
        }
    }
    report.marks_swept = due.len() as u64;
    report.packs_deleted = delete.len() as u64;
    report.bytes_deleted = delete
        .iter()
        .filter_map(|pack| entries.get(pack))
        .map(|blobs| blobs.iter().map(|b| u64::from(b.length)).sum::<u64>())
        .sum();
    let rewrite: Vec<&(Id, IndexFile)> = state
        .files
        .iter()
        .filter(|(_, file)| file.packs.iter().any(|p| delete.contains(&p.id)))
        .collect();
    report.index_files_rewritten = rewrite.len() as u64;
    if opts.dry_run {
        return Ok(());
    }
    checkpoint(lease).await?;
    futures::stream::iter(&delete)
        .map(|pack| async move { delete_if_present(repo, &Repository::pack_path(pack)).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await?;
    // New index files first, then the ones they replace: a crash in
    // between leaves duplicates, never a pack without an index entry.
    let kept = IndexFile {
        packs: rewrite
            .iter()
            .flat_map(|(_, file)| &file.packs)
            .filter(|pack| !delete.contains(&pack.id))
            .cloned()
            .collect(),
    };
    if !kept.packs.is_empty() {
        repo.save_indexes(kept).await?;
    }
    checkpoint(lease).await?;
    for (id, _) in &rewrite {
        delete_if_present(repo, &format!("{INDEX_DIR}/{id}")).await?;
    }
    for (id, _) in &due {
        delete_mark(repo, id).await?;
    }
    tracing::info!(
        deleted = delete.len(),
        resurrected = report.packs_resurrected,
        "swept deletion marks"
    );
    Ok(())
}

/// Per-pack tallies of used and unused blobs.
#[derive(Debug, Clone, Copy, Default)]
struct PackUse {
    blob_type: Option<BlobType>,
    used_bytes: u64,
    unused_bytes: u64,
    used_blobs: u64,
    /// Sealed blob by blob (pack format 1): repacking moves its blobs to
    /// format 2 as well.
    format_1: bool,
}

/// Phase 1: marks unused packs and repacks partly used ones.
async fn mark(
    repo: &Repository,
    opts: &PruneOptions,
    lease: Option<&Lease>,
    report: &mut PruneReport,
) -> Result<()> {
    checkpoint(lease).await?;
    let marks = list_marks(repo).await?;
    let mut pending = pending_packs(marks.iter().map(|(_, m)| m));
    if opts.dry_run {
        // A dry run's sweep deleted nothing: count what it would have.
        let now = jiff::Timestamp::now();
        let grace = jiff::SignedDuration::try_from(opts.grace).unwrap_or_default();
        pending = pending_packs(
            marks
                .iter()
                .filter(|(_, m)| now.duration_since(m.time) < grace)
                .map(|(_, m)| m),
        );
    }
    report.packs_pending = pending.len() as u64;
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(&format!("{DATA_DIR}/"))
        .await?
        .into_iter()
        .filter_map(|meta| {
            let id = id_from_path(&meta.path).ok()?;
            (Repository::pack_path(&id) == meta.path).then_some((id, meta.size))
        })
        .collect();
    let state = load_state(repo, &pending).await?;
    report.snapshots = state.snapshots;
    report.blobs_used = state.used.count();

    let entries = pack_entries(&state.files);
    let mut uses: HashMap<Id, PackUse> = HashMap::new();
    for (pack, blobs) in &entries {
        if pending.contains(pack) || !stored.contains_key(pack) {
            // Pending already, or missing (damage `check` reports).
            continue;
        }
        let tally = uses.entry(*pack).or_default();
        for blob in *blobs {
            tally.blob_type.get_or_insert(blob.blob_type);
            let used = state
                .index
                .position(blob.blob_type, &blob.id)
                .is_some_and(|p| state.used.contains(p));
            if used {
                tally.used_bytes += u64::from(blob.length);
                tally.used_blobs += 1;
            } else {
                tally.unused_bytes += u64::from(blob.length);
            }
        }
    }

    for pack in state.files.iter().flat_map(|(_, file)| &file.packs) {
        if let Some(tally) = uses.get_mut(&pack.id) {
            tally.format_1 = pack.envelope == BlobEnvelope::PerBlob;
        }
    }

    let mut to_mark: Vec<Id> = Vec::new();
    for (pack, size) in &stored {
        if !entries.contains_key(pack) && !pending.contains(pack) {
            // In no index: an interrupted backup's, or one not yet indexed.
            // Marking (not deleting) lets its writer rescue it.
            to_mark.push(*pack);
            report.unindexed_packs_marked += 1;
            report.bytes_marked += size;
        }
    }
    let mut partly: Vec<(Id, PackUse)> = Vec::new();
    let mut used_total = 0u64;
    for (pack, tally) in &uses {
        used_total += tally.used_bytes;
        if tally.used_blobs == 0 {
            to_mark.push(*pack);
            report.bytes_marked += stored[pack];
        } else {
            partly.push((*pack, *tally));
        }
    }
    let repack = choose_repacks(opts, repo.config().pack_size, used_total, partly, report);
    if !repack.is_empty() && !opts.dry_run {
        checkpoint(lease).await?;
        repack_packs(repo, &state, &entries, &repack, report).await?;
    } else {
        for pack in &repack {
            report.packs_repacked += 1;
            report.bytes_repacked += uses[pack].used_bytes;
        }
    }
    for pack in &repack {
        report.bytes_marked += stored[pack];
    }
    to_mark.extend(repack);
    to_mark.sort();
    report.packs_marked = to_mark.len() as u64;
    if to_mark.is_empty() || opts.dry_run {
        return Ok(());
    }
    checkpoint(lease).await?;
    let mark = DeletionMark {
        time: jiff::Timestamp::now(),
        hostname: nix::unistd::gethostname()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        packs: to_mark,
    };
    report.mark = Some(save_mark(repo, &mark).await?);
    tracing::info!(packs = report.packs_marked, "marked packs for deletion");
    Ok(())
}

/// The partly used packs to repack: worst unused share first, until what
/// remains unused is within `max_unused`, at most `max_repack_bytes`.
fn choose_repacks(
    opts: &PruneOptions,
    pack_size: u32,
    used_total: u64,
    mut partly: Vec<(Id, PackUse)>,
    report: &mut PruneReport,
) -> Vec<Id> {
    let allowed = match opts.max_unused {
        MaxUnused::Bytes(bytes) => bytes,
        MaxUnused::Percent(p) if p >= 100.0 => u64::MAX,
        // restic: unused ≤ p % of (used + unused) after pruning.
        MaxUnused::Percent(p) => (used_total as f64 * p / (100.0 - p)) as u64,
    };
    let small = |tally: &PackUse| tally.used_bytes + tally.unused_bytes < u64::from(pack_size) / 2;
    let eligible =
        |tally: &PackUse| !opts.repack_cacheable_only || tally.blob_type == Some(BlobType::Tree);
    // Small packs first (when asked for), then by unused share, worst first.
    partly.sort_by(|(a_id, a), (b_id, b)| {
        let share = |t: &PackUse| t.unused_bytes as f64 / (t.used_bytes + t.unused_bytes) as f64;
        (opts.repack_small && small(b))
            .cmp(&(opts.repack_small && small(a)))
            .then(share(b).total_cmp(&share(a)))
            .then(a_id.cmp(b_id))
    });
    let mut unused_left: u64 = partly.iter().map(|(_, t)| t.unused_bytes).sum();
    let mut budget = opts.max_repack_bytes.unwrap_or(u64::MAX);
    let mut small_count = partly
        .iter()
        .filter(|(_, t)| opts.repack_small && small(t) && eligible(t))
        .count();
    let mut chosen = Vec::new();
    for (pack, tally) in &partly {
        let wanted = (tally.unused_bytes > 0 && unused_left > allowed)
            // A lone small pack gains nothing from being rewritten, unless
            // that moves its blobs out of pack format 1.
            || (opts.repack_small && small(tally) && (small_count > 1 || tally.format_1));
        if !wanted || !eligible(tally) || tally.used_bytes > budget {
            continue;
        }
        if opts.repack_small && small(tally) {
            small_count -= 1;
        }
        budget -= tally.used_bytes;
        unused_left -= tally.unused_bytes;
        chosen.push(*pack);
    }
    report.bytes_unused_kept = unused_left;
    chosen
}

/// Copies the used blobs of `packs` into new packs (each pack read whole,
/// blobs authenticated, then copied as stored if the pack is sealed under
/// this run's blob key, else sealed again under it), and indexes the new
/// packs.
///
/// A pipeline: [`REPACK_READ_AHEAD`] packs are fetched and verified (on the
/// blocking pool) while earlier ones are packed, and up to
/// [`REPACK_UPLOADS`] new packs seal and upload meanwhile, so fetching,
/// verifying and uploading overlap instead of taking turns.
async fn repack_packs(
    repo: &Repository,
    state: &State,
    entries: &HashMap<Id, &[PackEntry]>,
    packs: &[Id],
    report: &mut PruneReport,
) -> Result<()> {
    // Which blobs each pack gives, decided in order up front, so a blob two
    // repacked packs hold is copied once.
    let mut copied = BlobSet::new(state.index.len());
    let plans: Vec<(Id, Vec<PackEntry>)> = packs
        .iter()
        .map(|pack| {
            let wanted = entries[pack]
                .iter()
                .filter(|blob| {
                    state
                        .index
                        .position(blob.blob_type, &blob.id)
                        .is_some_and(|p| state.used.contains(p) && copied.insert(p))
                })
                .copied()
                .collect();
            (*pack, wanted)
        })
        .collect();
    let mut envelopes = HashMap::new();
    for pack in state.files.iter().flat_map(|(_, file)| &file.packs) {
        envelopes.entry(pack.id).or_insert(pack.envelope);
    }
    let mut reads = futures::stream::iter(plans)
        .map(|(pack, wanted)| read_verified(repo, pack, envelopes[&pack], wanted))
        .buffered(REPACK_READ_AHEAD);
    let mut uploads: JoinSet<Result<IndexPack>> = JoinSet::new();
    let mut saved: Vec<IndexPack> = Vec::new();
    let result = async {
        let mut writers = OpenPacks::new(repo, REPACK_UPLOADS);
        while let Some(read) = reads.try_next().await? {
            report.packs_repacked += 1;
            for blob in &read.blobs {
                report.blobs_repacked += 1;
                report.bytes_repacked += u64::from(blob.length);
            }
            // Sealing and spooling are CPU and disk work: the writers go to
            // the blocking pool with the pack and come back with the packs
            // it filled.
            let key_repo = repo.clone();
            let (back, full) = blocking(move || {
                let full = read.copy_into(key_repo.key(), &mut writers)?;
                Ok((writers, full))
            })
            .await?;
            writers = back;
            for full in full {
                if uploads.len() >= REPACK_UPLOADS {
                    let done = uploads.join_next().await.expect("uploads are running");
                    saved.push(joined(done)?);
                }
                uploads.spawn(save_writer(repo.clone(), full));
            }
        }
        for writer in writers.drain() {
            uploads.spawn(save_writer(repo.clone(), writer));
        }
        while let Some(done) = uploads.join_next().await {
            saved.push(joined(done)?);
        }
        Ok::<_, Error>(())
    }
    .await;
    // On failure the uploads still running are cancelled with the set; what
    // they wrote is unindexed, which the next prune marks.
    result?;
    if !saved.is_empty() {
        repo.save_indexes(IndexFile { packs: saved }).await?;
    }
    Ok(())
}

/// A pack fetched for a repack, sealed as `envelope`, and the blobs to copy
/// out of it, each verified (decrypted, decompressed, hashed).
struct VerifiedPack {
    path: String,
    bytes: Bytes,
    envelope: BlobEnvelope,
    blobs: Vec<PackEntry>,
}

impl VerifiedPack {
    /// A blob's stored bytes (in range: checked when it was verified).
    fn stored(&self, blob: &PackEntry) -> &[u8] {
        &self.bytes[stored_range(blob)]
    }

    /// Adds the blobs to `writers`: as stored where the open pack is sealed
    /// under this pack's blob key, else opened and sealed again straight into
    /// the new pack (a blob is never copied as stored into a pack of another
    /// key or salt, nor a format-1 blob into a format-2 pack). Returns the
    /// packs that filled.
    fn copy_into(&self, key: &MasterKey, writers: &mut OpenPacks) -> Result<Vec<PackWriter>> {
        let mut full = Vec::new();
        for blob in &self.blobs {
            let writer = writers.for_type(blob.blob_type)?;
            let stored = self.stored(blob);
            if self.envelope == BlobEnvelope::Pack(writer.key().id()) {
                let same_key = Arc::clone(writer.key());
                writer.add_stored(
                    blob.blob_type,
                    blob.id,
                    stored,
                    blob.uncompressed_length,
                    &same_key,
                )?;
            } else {
                let opened =
                    open_stored(key, self.envelope, blob.blob_type, stored).map_err(|e| {
                        Error::corrupt(format!("{} blob {}", blob.blob_type, blob.id), e)
                            .in_file(&self.path)
                    })?;
                writer.add_opened(blob.blob_type, blob.id, &opened, blob.uncompressed_length)?;
            }
            full.extend(writers.take_full(blob.blob_type));
        }
        Ok(full)
    }
}

/// Where a blob's stored bytes lie in its pack (in `usize`, so an index
/// entry can't overflow it).
fn stored_range(blob: &PackEntry) -> std::ops::Range<usize> {
    let start = blob.offset as usize;
    start..start + blob.length as usize
}

/// Fetches one pack, sealed as `envelope`, and verifies the blobs in
/// `wanted` (on the blocking pool), without a copy of them: they are sealed
/// again, where they must be, as they go into the new packs.
async fn read_verified(
    repo: &Repository,
    pack: Id,
    envelope: BlobEnvelope,
    wanted: Vec<PackEntry>,
) -> Result<VerifiedPack> {
    let path = Repository::pack_path(&pack);
    let bytes = repo.backend().get(&path).await?;
    let key_repo = repo.clone();
    blocking(move || {
        for blob in &wanted {
            let stored = bytes.get(stored_range(blob)).ok_or_else(|| {
                Error::corrupt(&path, format!("blob {} lies past the pack's end", blob.id))
            })?;
            open_checked(
                key_repo.key(),
                envelope,
                blob.blob_type,
                stored,
                blob.uncompressed_length,
                &blob.id,
            )
            .map_err(|e| e.in_file(&path))?;
        }
        Ok(VerifiedPack {
            path,
            bytes,
            envelope,
            blobs: wanted,
        })
    })
    .await
}

/// The result of a finished upload task (a panic in it goes on here).
fn joined(
    done: std::result::Result<Result<IndexPack>, tokio::task::JoinError>,
) -> Result<IndexPack> {
    done.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Seals a finished pack writer's header on the blocking pool and stores
/// the pack (also re-encryption's way of saving the packs it fills).
pub(crate) async fn save_writer(repo: Repository, writer: PackWriter) -> Result<IndexPack> {
    let key_repo = repo.clone();
    let pack = blocking(move || writer.finish(key_repo.key())).await?;
    repo.save_pack(pack).await
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn max_unused_parses_percentages_and_sizes() {
        assert_eq!("5%".parse::<MaxUnused>().unwrap(), MaxUnused::Percent(5.0));
        assert_eq!("0%".parse::<MaxUnused>().unwrap(), MaxUnused::Percent(0.0));
        assert_eq!(
            "500M".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(500 << 20)
        );
        assert_eq!(
            "2GiB".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(2 << 30)
        );
        assert_eq!("1024".parse::<MaxUnused>().unwrap(), MaxUnused::Bytes(1024));
        assert_eq!(
            "unlimited".parse::<MaxUnused>().unwrap(),
            MaxUnused::Bytes(u64::MAX)
        );
        for bad in ["", "%", "101%", "-1%", "5X", "abc"] {
            assert!(bad.parse::<MaxUnused>().is_err(), "{bad:?}");
        }
    }

    fn tally(used: u64, unused: u64) -> PackUse {
        PackUse {
            blob_type: Some(BlobType::Data),
            used_bytes: used,
            unused_bytes: unused,
            used_blobs: u64::from(used > 0),
            format_1: false,
        }
    }

    /// With `repack_small`, the last small pack is left alone (rewriting
    /// it alone gains nothing) unless it is still format 1.
    #[test]
    fn a_lone_small_pack_is_repacked_only_out_of_format_1() {
        let opts = PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            repack_small: true,
            ..PruneOptions::default()
        };
        let small = [(Id([1; 32]), tally(100, 0)), (Id([2; 32]), tally(100, 0))];
        let mut report = PruneReport::default();
        let chosen = choose_repacks(&opts, 1 << 20, 200, small.to_vec(), &mut report);
        assert_eq!(chosen, vec![Id([1; 32])]);
        let lone = vec![(Id([1; 32]), tally(100, 0))];
        assert!(choose_repacks(&opts, 1 << 20, 100, lone, &mut report).is_empty());
        let format_1 = vec![(
            Id([1; 32]),
            PackUse {
                format_1: true,
                ..tally(100, 0)
            },
        )];
        let chosen = choose_repacks(&opts, 1 << 20, 100, format_1, &mut report);
        assert_eq!(chosen, vec![Id([1; 32])]);
    }

    #[test]
    fn repacks_worst_packs_until_within_max_unused() {
        let opts = PruneOptions {
            max_unused: MaxUnused::Bytes(100),
            ..PruneOptions::default()
        };
        let partly = vec![
            (Id([1; 32]), tally(900, 100)),
            (Id([2; 32]), tally(500, 500)),
            (Id([3; 32]), tally(950, 50)),
        ];
        let mut report = PruneReport::default();
        let chosen = choose_repacks(&opts, 1 << 20, 2350, partly, &mut report);
        // 650 unused: the 50 % pack goes first (150 left), then the 10 %
        // one (50 left, within 100).
        assert_eq!(chosen, vec![Id([2; 32]), Id([1; 32])]);
        assert_eq!(report.bytes_unused_kept, 50);
    }

    #[test]
    fn the_repack_budget_is_respected() {
        let opts = PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            max_repack_bytes: Some(600),
            ..PruneOptions::default()
        };
        let partly = vec![
            (Id([1; 32]), tally(900, 100)),
            (Id([2; 32]), tally(500, 500)),
        ];
        let mut report = PruneReport::default();
        let chosen = choose_repacks(&opts, 1 << 20, 1400, partly, &mut report);
        assert_eq!(chosen, vec![Id([2; 32])]);
        assert_eq!(report.bytes_unused_kept, 100);
    }

    proptest! {
        #[test]
        fn blob_sets_behave_like_sets(
            len in 1usize..500,
            inserts in proptest::collection::vec(0usize..500, 0..200),
        ) {
            let mut set = BlobSet::new(len);
            let mut model = std::collections::BTreeSet::new();
            for position in inserts.into_iter().filter(|p| *p < len) {
                prop_assert_eq!(set.insert(position), model.insert(position));
            }
            for position in 0..len {
                prop_assert_eq!(set.contains(position), model.contains(&position));
            }
            prop_assert_eq!(set.count(), model.len() as u64);
        }

        #[test]
        fn chosen_packs_fit_the_budget_and_leave_at_most_what_is_allowed_when_unbudgeted(
            tallies in proptest::collection::vec((1u64..10_000, 0u64..10_000), 0..30),
            allowed in 0u64..50_000,
            budget in proptest::option::of(0u64..100_000),
        ) {
            let partly: Vec<(Id, PackUse)> = tallies
                .iter()
                .enumerate()
                .map(|(i, (used, unused))| (Id([i as u8; 32]), tally(*used, *unused)))
                .collect();
            let opts = PruneOptions {
                max_unused: MaxUnused::Bytes(allowed),
                max_repack_bytes: budget,
                ..PruneOptions::default()
            };
            let mut report = PruneReport::default();
            let used_total = tallies.iter().map(|t| t.0).sum();
            let chosen = choose_repacks(&opts, 1 << 20, used_total, partly.clone(), &mut report);
            let repacked: u64 = chosen
                .iter()
                .map(|id| partly.iter().find(|(p, _)| p == id).unwrap().1.used_bytes)
                .sum();
            prop_assert!(repacked <= budget.unwrap_or(u64::MAX));
            let left: u64 = partly
                .iter()
                .filter(|(p, _)| !chosen.contains(p))
                .map(|(_, t)| t.unused_bytes)
                .sum();
            prop_assert_eq!(left, report.bytes_unused_kept);
            if budget.is_none() {
                prop_assert!(left <= allowed);
            }
        }
    }
}
