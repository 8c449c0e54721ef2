//! Copying snapshots from one repository into another (`arca copy`).
//!
//! The two repositories have their own master keys, so their own keyed
//! content IDs: the same plaintext has another ID in the destination. A
//! snapshot is copied by walking its trees bottom-up: every data blob is read
//! from the source (ranged reads, decoded on the blocking pool), its
//! destination ID computed, and only if the destination lacks it, sealed
//! with the destination's key (a compressed blob as it is stored, not
//! compressed again) and packed; each tree is then re-encoded with
//! the destination's IDs and stored the same way. Packs are uploaded as they
//! fill, the index is written every few packs (so an interrupted copy, run
//! again, uploads only what is still missing), and the snapshot last, with
//! `original` naming the snapshot it came from.
//!
//! Chunks are not re-cut: a copied file keeps the source's chunk boundaries,
//! so it deduplicates against data backed up into the destination directly
//! only if both repositories chunk alike.
//!
//! A snapshot whose origin (its `original`, or its own ID) is already the
//! origin of a destination snapshot is skipped.
//!
//! Last, the source's audit records that name a snapshot the destination
//! now holds a copy of (copied in this run or before) are appended to the
//! destination's trail ([`crate::audit::copy_records`]), each once.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use tokio::task::JoinSet;

use crate::blob::{BlobType, EncodedBlob, encode_blob, open_blob};
use crate::index::{BlobLocation, Index, IndexFile, IndexPack};
use crate::marks::WriteStart;
use crate::pack::{OpenPacks, PackWriter};
use crate::repository::blocking;
use crate::select::SnapshotFilter;
use crate::snapshot::Snapshot;
use crate::tree::Tree;
use crate::{Id, Repository, Result};

/// Ranged reads (each decoded, hashed and sealed on the blocking pool) at
/// once: one per core, at least two so a read overlaps the work on the
/// last, at most four. Each holds up to [`RUN_BYTES`] read and about as
/// much sealed again, so more than the cores can work on only adds memory.
fn run_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}
/// Blobs of a pack at most this far apart are read with one request
/// (reading the bytes between costs less than another request).
const RUN_GAP: u64 = 256 * 1024;
/// Bytes one ranged read covers at most.
const RUN_BYTES: u64 = 8 * 1024 * 1024;
/// Packs uploading at once at most.
const CONCURRENT_UPLOADS: usize = 4;
/// The index is written after this many packs, or this many bytes of them,
/// whichever comes first: a killed copy uploads at most that much again.
const INDEX_FLUSH_PACKS: usize = 8;
const INDEX_FLUSH_BYTES: u64 = 32 * 1024 * 1024;
/// Source → destination IDs remembered at most (about 100 bytes each); the
/// map is emptied when full, which only costs re-reading blobs.
const MAX_MAPPED_IDS: usize = 1 << 18;

/// What [`copy`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Snapshots written into the destination.
    pub copied: Vec<CopiedSnapshot>,
    /// Source snapshots skipped because the destination already has a copy.
    pub skipped: Vec<Id>,
    /// Data blobs added to the destination.
    pub data_blobs: u64,
    /// Tree blobs added to the destination.
    pub tree_blobs: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Stored bytes of the blobs added.
    pub bytes_added: u64,
    /// Audit records of the source added to the destination's trail.
    pub audit_records: u64,
}

/// One copied snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CopiedSnapshot {
    /// Its ID in the source.
    pub source: Id,
    /// The new snapshot's ID in the destination.
    pub destination: Id,
}

/// The source snapshots to copy: those named by `specs` (IDs, unique
/// prefixes or `latest`; unknown ones are [`Error::SnapshotNotFound`]), or
/// every snapshot if there are none, narrowed by `filter`. Oldest first.
pub async fn select(
    source: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(Id, Snapshot)>> {
    let mut chosen = if specs.is_empty() {
        source.list_snapshots().await?
    } else {
        let mut found = Vec::with_capacity(specs.len());
        for spec in specs {
            let (id, snapshot) = source.find_snapshot(spec).await?;
            if !found.iter().any(|(known, _)| *known == id) {
                found.push((id, snapshot));
            }
        }
        found
    };
    chosen.retain(|(_, snapshot)| filter.matches(snapshot));
    chosen.sort_by(crate::select::chronological);
    Ok(chosen)
}

/// The snapshot a snapshot was first taken as: its `original`, or itself.
fn origin(id: &Id, snapshot: &Snapshot) -> Id {
    snapshot.original.unwrap_or(*id)
}

/// Copies `snapshots` (from [`select`]) from `source` into `destination`,
/// skipping those already copied, then the source's audit records about
/// every snapshot the destination holds a copy of. Nothing is written into
/// the source. A failed or interrupted copy leaves the destination valid:
/// the snapshots and records copied so far are complete, and what was
/// uploaded and indexed for the rest is reused by the next run.
pub async fn copy(
    source: &Repository,
    destination: &Repository,
    snapshots: &[(Id, Snapshot)],
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    // Origins of the destination's snapshots: what it holds a copy of.
    let mut held: HashSet<Id> = destination
        .list_snapshots()
        .await?
        .iter()
        .map(|(id, snapshot)| origin(id, snapshot))
        .collect();
    let todo: Vec<&(Id, Snapshot)> = snapshots
        .iter()
        .filter(|(id, snapshot)| {
            let copied = held.contains(&origin(id, snapshot));
            if copied {
                report.skipped.push(*id);
            }
            !copied
        })
        .collect();
    if !todo.is_empty() {
        copy_snapshots(source, destination, &todo, &mut report).await?;
    }
    held.extend(todo.iter().map(|(id, snapshot)| origin(id, snapshot)));
    // A record names source IDs; a source snapshot that is itself a copy
    // is held under its origin.
    let origins: HashMap<Id, Id> = snapshots
        .iter()
        .map(|(id, snapshot)| (*id, origin(id, snapshot)))
        .collect();
    report.audit_records = crate::audit::copy_records(source, destination, |record| {
        record.snapshots.iter().any(|id| {
            held.contains(id) || origins.get(id).is_some_and(|origin| held.contains(origin))
        })
    })
    .await?;
    Ok(report)
}

/// Copies the snapshots in `todo` (none of which the destination has).
async fn copy_snapshots(
    source: &Repository,
    destination: &Repository,
    todo: &[&(Id, Snapshot)],
    report: &mut CopyReport,
) -> Result<()> {
    // Blobs only in packs a prune marked for deletion count as absent.
    let (source_index, (destination_index, started)) =
        futures::try_join!(source.load_index(), destination.load_index_for_writing())?;
    let probe = b"arca copy: are the content IDs keyed alike?";
    let sink = PackSink::new(destination, destination_index);
    let mut copier = Copier {
        source: source.clone(),
        destination: destination.clone(),
        source_index: Arc::new(source_index),
        shared: sink.known(),
        same_ids: source.key().content_id(probe) == destination.key().content_id(probe),
        mapped: HashMap::new(),
        sink,
        report: std::mem::take(report),
    };
    let result = copier.copy_all(todo, started).await;
    *report = copier.report;
    result
}

impl Copier {
    /// Copies each snapshot's trees and blobs, then commits it.
    async fn copy_all(&mut self, todo: &[&(Id, Snapshot)], started: WriteStart) -> Result<()> {
        for (id, snapshot) in todo {
            let tree = match self.copy_tree(snapshot.tree).await {
                Ok(tree) => tree,
                Err(error) => return Err(self.sink.salvage(error).await),
            };
            if let Err(error) = self.sink.finish_packs().await {
                return Err(self.sink.salvage(error).await);
            }
            self.report.add(self.sink.take_counts());
            let mut copied = snapshot.clone();
            copied.tree = tree;
            // The parent is a snapshot of the source: meaningless here.
            copied.parent = None;
            copied.original = Some(origin(id, snapshot));
            let new_id = self.destination.commit_snapshot(&copied, started).await?;
            tracing::info!(source = %id, destination = %new_id, "copied snapshot");
            self.report.copied.push(CopiedSnapshot {
                source: *id,
                destination: new_id,
            });
        }
        Ok(())
    }
}

impl CopyReport {
    fn add(&mut self, counts: SinkCounts) {
        self.data_blobs += counts.data_blobs;
        self.tree_blobs += counts.tree_blobs;
        self.packs += counts.packs;
        self.bytes_added += counts.bytes_added;
    }
}

/// The blobs a destination has: its index when the writer started, and
/// what the writer packed since. Shared with tasks on the blocking pool,
/// which skip sealing blobs already present.
#[derive(Debug)]
pub struct KnownBlobs {
    destination_index: Index,
    /// Blobs packed in this run (indexed or not yet).
    added: Mutex<HashSet<(BlobType, Id)>>,
}

impl KnownBlobs {
    /// Whether the destination has, or this run packed, the blob.
    pub fn has(&self, blob_type: BlobType, id: &Id) -> bool {
        self.destination_index.contains(blob_type, id)
            || self
                .added
                .lock()
                .expect("copy's blob set lock poisoned")
                .contains(&(blob_type, *id))
    }
}

/// A source blob's ID, its destination ID and, if the destination lacks it,
/// its sealed form.
type MappedBlob = (Id, Id, Option<EncodedBlob>);

/// Blobs read with one ranged request of one source pack (`pack: None`:
/// blobs that need no reading at all).
struct ReadRun {
    pack: Option<Id>,
    range: Range<u64>,
    blobs: Vec<(Id, Option<BlobLocation>)>,
}

struct Copier {
    source: Repository,
    destination: Repository,
    source_index: Arc<Index>,
    shared: Arc<KnownBlobs>,
    /// Whether both repositories key content IDs alike (then a blob keeps its ID).
    same_ids: bool,
    /// Source → destination IDs of blobs and trees handled in this run.
    mapped: HashMap<(BlobType, Id), Id>,
    sink: PackSink,
    report: CopyReport,
}

/// Packs blobs into a destination repository the way [`copy`] does: data
/// and tree blobs in packs of their own, uploaded as they fill (a few at
/// once), indexed every few packs and after a failure, so an interrupted
/// writer, run again, uploads only what is still missing. Writing a
/// snapshot that refers to the blobs is the caller's job, after
/// [`PackSink::finish_packs`].
#[derive(Debug)]
pub struct PackSink {
    destination: Repository,
    known: Arc<KnownBlobs>,
    /// Data packs spool to disk as they fill, where the destination takes
    /// spool files, so a copy holds no whole data pack in memory.
    open: OpenPacks,
    uploads: JoinSet<Result<IndexPack>>,
    /// Packs uploaded but not yet in an index file.
    unindexed: IndexFile,
    counts: SinkCounts,
}

/// What a [`PackSink`] added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Data blobs packed.
    pub data_blobs: u64,
    /// Tree blobs packed.
    pub tree_blobs: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Stored bytes of the blobs packed.
    pub bytes_added: u64,
}

impl Copier {
    /// Copies the tree `id` and everything below it; returns its destination ID.
    async fn copy_tree(&mut self, id: Id) -> Result<Id> {
        if let Some(known) = self.mapped.get(&(BlobType::Tree, id)) {
            return Ok(*known);
        }
        let tree = self.source.load_tree(&self.source_index, &id).await?;
        let mut nodes = tree.nodes;
        for node in &mut nodes {
            if let Some(subtree) = node.subtree {
                node.subtree = Some(Box::pin(self.copy_tree(subtree)).await?);
            }
        }
        // Every data blob of the directory's files, through one bounded pipeline.
        let mut directory_map: HashMap<Id, Id> = HashMap::new();
        let mut wanted = Vec::new();
        for content in nodes.iter().flat_map(|node| node.content.iter()) {
            if directory_map.contains_key(content) {
                continue;
            }
            match self.mapped.get(&(BlobType::Data, *content)) {
                Some(known) => directory_map.insert(*content, *known),
                None => {
                    wanted.push(*content);
                    // A placeholder, so a blob two files share is read once.
                    directory_map.insert(*content, *content)
                }
            };
        }
        // Futures made up front (they hold no borrow of `self`), so each
        // result is packed as it arrives while the next reads run.
        let jobs: Vec<_> = self
            .read_runs(wanted)?
            .into_iter()
            .map(|run| self.map_run(run))
            .collect();
        let mut results = futures::stream::iter(jobs).buffered(run_concurrency());
        while let Some(mapped) = results.try_next().await? {
            for (source_id, destination_id, blob) in mapped {
                if let Some(blob) = blob {
                    self.sink.store(blob).await?;
                }
                self.remember(BlobType::Data, source_id, destination_id);
                directory_map.insert(source_id, destination_id);
            }
        }
        for node in &mut nodes {
            for content in &mut node.content {
                *content = directory_map[content];
            }
        }
        let new_id = self.sink.store_tree(Tree { nodes }).await?;
        self.remember(BlobType::Tree, id, new_id);
        Ok(new_id)
    }

    fn remember(&mut self, blob_type: BlobType, source: Id, destination: Id) {
        if self.mapped.len() >= MAX_MAPPED_IDS {
            self.mapped.clear();
        }
        self.mapped.insert((blob_type, source), destination);
    }

    /// The blobs in `wanted` that need reading, as ranged reads: blobs of
    /// one pack that lie close together are read with one request.
    fn read_runs(&self, wanted: Vec<Id>) -> Result<Vec<ReadRun>> {
        let mut located = Vec::with_capacity(wanted.len());
        for id in wanted {
            if self.same_ids && self.shared.has(BlobType::Data, &id) {
                // Known under the same ID: nothing to read.
                located.push((id, None));
                continue;
            }
            let location =
                self.source_index
                    .get(BlobType::Data, &id)
                    .ok_or(crate::Error::BlobNotFound {
                        blob_type: BlobType::Data,
                        id,
                    })?;
            located.push((id, Some(location)));
        }
        let mut known = Vec::new();
        let mut reads: Vec<(Id, BlobLocation)> = Vec::new();
        for (id, location) in located {
            match location {
                Some(location) => reads.push((id, location)),
                None => known.push(id),
            }
        }
        reads.sort_by_key(|(_, location)| (location.pack, location.offset));
        let mut runs: Vec<ReadRun> = Vec::new();
        if !known.is_empty() {
            runs.push(ReadRun {
                pack: None,
                range: 0..0,
                blobs: known.into_iter().map(|id| (id, None)).collect(),
            });
        }
        for (id, location) in reads {
            let start = u64::from(location.offset);
            let end = start + u64::from(location.length);
            match runs.last_mut() {
                Some(run)
                    if run.pack == Some(location.pack)
                        && start <= run.range.end + RUN_GAP
                        && end - run.range.start <= RUN_BYTES =>
                {
                    run.range.end = run.range.end.max(end);
                    run.blobs.push((id, Some(location)));
                }
                _ => runs.push(ReadRun {
                    pack: Some(location.pack),
                    range: start..end,
                    blobs: vec![(id, Some(location))],
                }),
            }
        }
        Ok(runs)
    }

    /// The future that reads one run and maps its blobs: decoded with the
    /// source's key, identified and, where the destination lacks them,
    /// sealed with the destination's key, all on the blocking pool.
    fn map_run(
        &self,
        run: ReadRun,
    ) -> impl Future<Output = Result<Vec<MappedBlob>>> + Send + 'static {
        let (source, shared, destination) = (
            self.source.clone(),
            Arc::clone(&self.shared),
            self.destination.clone(),
        );
        async move {
            let Some(pack) = run.pack else {
                // Same IDs in both repositories, and the destination has them.
                return Ok(run
                    .blobs
                    .into_iter()
                    .map(|(id, _)| (id, id, None))
                    .collect());
            };
            let path = Repository::pack_path(&pack);
            let bytes = source.backend().get_range(&path, run.range.clone()).await?;
            if bytes.len() as u64 != run.range.end - run.range.start {
                return Err(crate::Error::corrupt(
                    path,
                    "a ranged read returned fewer bytes than asked for (truncated?)",
                ));
            }
            blocking(move || {
                let mut mapped = Vec::with_capacity(run.blobs.len());
                for (source_id, location) in run.blobs {
                    let location = location.expect("runs of a pack locate every blob");
                    let start = (u64::from(location.offset) - run.range.start) as usize;
                    let stored = &bytes[start..start + location.length as usize];
                    let opened = open_blob(
                        source.key(),
                        location.envelope,
                        BlobType::Data,
                        stored,
                        location.uncompressed_length,
                        &source_id,
                    )
                    .map_err(|e| e.in_file(&path))?;
                    let id = destination.key().content_id(opened.plaintext());
                    let blob = if shared.has(BlobType::Data, &id) {
                        None
                    } else {
                        Some(opened.encode(
                            &destination.blob_key()?,
                            BlobType::Data,
                            id,
                            destination.compression(),
                        )?)
                    };
                    mapped.push((source_id, id, blob));
                }
                Ok(mapped)
            })
            .await
        }
    }
}

impl PackSink {
    /// A sink into `destination`, whose blobs are `destination_index`
    /// (from [`Repository::load_index_for_writing`]).
    pub fn new(destination: &Repository, destination_index: Index) -> PackSink {
        PackSink {
            destination: destination.clone(),
            known: Arc::new(KnownBlobs {
                destination_index,
                added: Mutex::default(),
            }),
            open: OpenPacks::new(destination, CONCURRENT_UPLOADS),
            uploads: JoinSet::new(),
            unindexed: IndexFile::default(),
            counts: SinkCounts::default(),
        }
    }

    /// The blobs the destination has, for tasks deciding what to seal.
    pub fn known(&self) -> Arc<KnownBlobs> {
        Arc::clone(&self.known)
    }

    /// What was packed since the last call.
    pub fn take_counts(&mut self) -> SinkCounts {
        std::mem::take(&mut self.counts)
    }

    /// Seals `tree` as a tree blob of the destination (on the blocking pool)
    /// and packs it unless the destination has it already; returns its ID.
    pub async fn store_tree(&mut self, tree: Tree) -> Result<Id> {
        let (known, destination) = (Arc::clone(&self.known), self.destination.clone());
        let (id, blob) = blocking(move || {
            let plaintext = tree.encode();
            let key = destination.key();
            let id = key.content_id(&plaintext);
            if known.has(BlobType::Tree, &id) {
                return Ok((id, None));
            }
            let blob = encode_blob(
                &destination.blob_key()?,
                BlobType::Tree,
                id,
                &plaintext,
                destination.compression(),
            )?;
            Ok((id, Some(blob)))
        })
        .await?;
        if let Some(blob) = blob {
            self.store(blob).await?;
        }
        Ok(id)
    }

    /// Adds a blob to its pack (unless this run packed it already),
    /// starting the pack's upload once it is full.
    pub async fn store(&mut self, blob: EncodedBlob) -> Result<()> {
        let fresh = self
            .known
            .added
            .lock()
            .expect("copy's blob set lock poisoned")
            .insert((blob.blob_type, blob.id));
        if !fresh {
            return Ok(());
        }
        match blob.blob_type {
            BlobType::Data => self.counts.data_blobs += 1,
            BlobType::Tree => self.counts.tree_blobs += 1,
        }
        self.counts.bytes_added += blob.bytes.len() as u64;
        self.open.for_type(blob.blob_type)?.add(&blob)?;
        if let Some(full) = self.open.take_full(blob.blob_type) {
            self.upload(full).await?;
        }
        Ok(())
    }

    /// Finishes and uploads a pack in the background, waiting first while
    /// [`CONCURRENT_UPLOADS`] are under way.
    async fn upload(&mut self, pack: PackWriter) -> Result<()> {
        while self.uploads.len() >= CONCURRENT_UPLOADS {
            self.collect_one().await?;
        }
        let destination = self.destination.clone();
        self.uploads.spawn(async move {
            let sealing = destination.clone();
            let finished = blocking(move || pack.finish(sealing.key())).await?;
            destination.save_pack(finished).await
        });
        self.counts.packs += 1;
        Ok(())
    }

    /// Waits for one upload; writes the index once enough packs are waiting for it.
    async fn collect_one(&mut self) -> Result<()> {
        let Some(joined) = self.uploads.join_next().await else {
            return Ok(());
        };
        let pack = joined.expect("pack upload task panicked")?;
        self.unindexed.packs.push(pack);
        let unindexed_bytes: u64 = (self.unindexed.packs.iter())
            .flat_map(|pack| &pack.blobs)
            .map(|blob| u64::from(blob.length))
            .sum();
        if self.unindexed.packs.len() >= INDEX_FLUSH_PACKS || unindexed_bytes >= INDEX_FLUSH_BYTES {
            self.write_index().await?;
        }
        Ok(())
    }

    /// After `error`: waits for the uploads under way and indexes every
    /// pack that made it, so a run after this one reuses them; returns `error`.
    pub async fn salvage<E>(&mut self, error: E) -> E {
        while let Some(joined) = self.uploads.join_next().await {
            if let Ok(Ok(pack)) = joined {
                self.unindexed.packs.push(pack);
            }
        }
        if let Err(index_error) = self.write_index().await {
            tracing::warn!(%index_error, "could not index the packs uploaded before the copy failed");
        }
        error
    }

    async fn write_index(&mut self) -> Result<()> {
        let file = std::mem::take(&mut self.unindexed);
        if !file.packs.is_empty() {
            self.destination.save_indexes(file).await?;
        }
        Ok(())
    }

    /// Uploads the partly filled packs, waits for every upload and indexes
    /// them all: afterwards a snapshot may refer to anything stored so far.
    pub async fn finish_packs(&mut self) -> Result<()> {
        let open: Vec<PackWriter> = self.open.drain().collect();
        for pack in open {
            self.upload(pack).await?;
        }
        while !self.uploads.is_empty() {
            self.collect_one().await?;
        }
        self.write_index().await
    }
}
