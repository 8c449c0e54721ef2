//! Migration: copying snapshots from a restic repository into an Arca
//! repository (`arca copy --from-repo <restic repository>`). Nothing is
//! written into the restic repository.
//!
//! Files are re-chunked: each file's restic data blobs are read in order
//! and their bytes cut again by the destination's keyed chunker, exactly as
//! `arca backup` cuts a file, so the migrated history deduplicates against
//! later Arca backups of the same data (restic's chunk boundaries come from
//! a per-repository polynomial and would never line up with Arca's). The
//! price is reading, chunking and hashing every file once per run; a file
//! whose restic content list was migrated earlier in the same run, and a
//! directory whose restic tree was, cost nothing again, so a history of
//! many similar snapshots costs little more than its distinct data.
//!
//! Trees keep everything restic stored (metadata, symlinks, hardlinks'
//! inode and device, special files, xattrs) through
//! [`crate::ResticTree::to_arca`]; only file contents and subtrees get
//! Arca's IDs. Blobs go through [`arca_repo::copy::PackSink`], as in an
//! Arca-to-Arca copy: packs are indexed every few packs and after a
//! failure, and each snapshot is committed last with
//! [`Repository::commit_snapshot`], with `original` set to the restic
//! snapshot's ID (or its own `original` when it was itself a copy). A
//! restic snapshot already the origin of a destination snapshot is skipped,
//! so a second run copies nothing and a run killed mid-way, run again,
//! finishes, uploading only what had not been indexed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arca_chunk::StreamChunker;
use arca_repo::blob::{BlobType, EncodedBlob, encode_blob};
use arca_repo::copy::{CopiedSnapshot, CopyReport, KnownBlobs, PackSink, SinkCounts};
use arca_repo::select::SnapshotFilter;
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::{Node, NodeType, Tree};
use arca_repo::{Id, Repository};
use futures::StreamExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::index::{BlobLocation, Index};
use crate::repository::{blocking, sha256};
use crate::{Error, ResticRepository, Result};

/// Restic data blobs read ahead of the chunker, per file.
const READ_AHEAD: usize = 4;
/// Chunks cut ahead of the encoders, per file.
const CHUNKS_QUEUED: usize = 4;
/// A file whose restic blobs hold this many bytes at most is migrated
/// whole, several at a time ([`Migrator::small_files`]); larger ones stream.
const SMALL_FILE: u64 = 256 << 10;
/// Small files migrated at once: enough to keep both the reads and the
/// cores busy, few enough that their bytes stay a few MiB.
const SMALL_FILES_AT_ONCE: usize = 8;
/// Remembered restic → Arca mappings at most (trees and files each); the
/// maps are emptied when full, which only costs reading again.
const MAX_REMEMBERED: usize = 1 << 18;
/// Arca content IDs remembered for files at most (32 bytes each), so a few
/// huge files cannot make the file map large.
const MAX_REMEMBERED_CONTENT_IDS: usize = 1 << 20;

/// The restic snapshots to migrate, as Arca's type (root tree and IDs still
/// restic's): those named by `specs` (full IDs, unique prefixes or
/// `latest`), or every snapshot if there are none, narrowed by `filter`.
/// Oldest first.
pub async fn select(
    restic: &ResticRepository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<(Id, Snapshot)>> {
    let mut chosen = if specs.is_empty() {
        restic.arca_snapshots().await?
    } else {
        let mut found: Vec<(Id, Snapshot)> = Vec::with_capacity(specs.len());
        for spec in specs {
            let (id, snapshot) = restic.find_snapshot(spec).await?;
            if !found.iter().any(|(known, _)| *known == id) {
                found.push((id, snapshot.to_arca()?));
            }
        }
        found
    };
    chosen.retain(|(_, snapshot)| filter.matches(snapshot));
    chosen.sort_by(arca_repo::select::chronological);
    Ok(chosen)
}

/// Migrates `snapshots` (from [`select`]) from `restic` into `destination`,
/// skipping those already migrated (see the module docs). The report's
/// `source` IDs are restic's.
pub async fn migrate(
    restic: &ResticRepository,
    destination: &Repository,
    snapshots: &[(Id, Snapshot)],
) -> Result<CopyReport> {
    destination.require_full_access("copy")?;
    let mut report = CopyReport::default();
    let existing: HashSet<Id> = destination
        .list_snapshots()
        .await?
        .iter()
        .map(|(id, snapshot)| snapshot.original.unwrap_or(*id))
        .collect();
    let todo: Vec<&(Id, Snapshot)> = snapshots
        .iter()
        .filter(|(id, snapshot)| {
            let copied = existing.contains(&snapshot.original.unwrap_or(*id));
            if copied {
                report.skipped.push(*id);
            }
            !copied
        })
        .collect();
    if todo.is_empty() {
        return Ok(report);
    }
    let (index, (destination_index, started)) = futures::try_join!(restic.load_index(), async {
        Ok(destination.load_index_for_writing().await?)
    })?;
    let sink = PackSink::new(destination, destination_index);
    let mut migrator = Migrator {
        restic: restic.clone(),
        index: Arc::new(index),
        destination: destination.clone(),
        stream_chunker: Some(StreamChunker::new(destination.chunker().clone())),
        encoders: Encoders::start(destination),
        known: sink.known(),
        sink,
        trees: HashMap::new(),
        files: HashMap::new(),
        remembered_content_ids: 0,
    };
    for (id, snapshot) in todo {
        let tree = match migrator.tree(snapshot.tree).await {
            Ok(tree) => tree,
            Err(error) => return Err(migrator.sink.salvage(error).await),
        };
        if let Err(error) = migrator.sink.finish_packs().await {
            return Err(migrator.sink.salvage(error.into()).await);
        }
        add_counts(&mut report, migrator.sink.take_counts());
        let mut migrated = snapshot.clone();
        migrated.tree = tree;
        // The parent is a restic snapshot: meaningless here.
        migrated.parent = None;
        migrated.original = Some(snapshot.original.unwrap_or(*id));
        let new_id = destination.commit_snapshot(&migrated, started).await?;
        tracing::info!(restic = %id, arca = %new_id, "migrated snapshot");
        report.copied.push(CopiedSnapshot {
            source: *id,
            destination: new_id,
        });
    }
    Ok(report)
}

fn add_counts(report: &mut CopyReport, counts: SinkCounts) {
    report.data_blobs += counts.data_blobs;
    report.tree_blobs += counts.tree_blobs;
    report.packs += counts.packs;
    report.bytes_added += counts.bytes_added;
}

struct Migrator {
    restic: ResticRepository,
    index: Arc<Index>,
    destination: Repository,
    /// The chunker and its buffer, kept from file to file (lent to the
    /// blocking thread that cuts a file while it does).
    stream_chunker: Option<StreamChunker>,
    encoders: Encoders,
    known: Arc<KnownBlobs>,
    sink: PackSink,
    /// restic tree ID → Arca tree ID, for trees migrated in this run.
    trees: HashMap<Id, Id>,
    /// SHA-256 of a file's restic content list → its Arca content list.
    files: HashMap<Id, Vec<Id>>,
    /// Content IDs held in `files`.
    remembered_content_ids: usize,
}

impl Migrator {
    /// Migrates the restic tree `id` and everything below it; returns the
    /// Arca tree's ID.
    async fn tree(&mut self, id: Id) -> Result<Id> {
        if let Some(known) = self.trees.get(&id) {
            return Ok(*known);
        }
        let mut nodes = self.restic.arca_tree(&self.index, &id).await?.nodes;
        let migrated = self.small_files(&mut nodes).await?;
        for (node, migrated) in nodes.iter_mut().zip(migrated) {
            match node.node_type {
                NodeType::Dir => {
                    let subtree = node.subtree.expect("to_arca: directories have subtrees");
                    node.subtree = Some(Box::pin(self.tree(subtree)).await?);
                }
                NodeType::File if !migrated => node.content = self.file(&node.content).await?,
                NodeType::File => {}
                _ => node.content.clear(),
            }
        }
        let new_id = self.sink.store_tree(Tree { nodes }).await?;
        if self.trees.len() >= MAX_REMEMBERED {
            self.trees.clear();
        }
        self.trees.insert(id, new_id);
        Ok(new_id)
    }

    /// Migrates the small files among `nodes` (see [`SMALL_FILE`]), up to
    /// [`SMALL_FILES_AT_ONCE`] at a time, each opened, cut and named in one
    /// blocking call and sealed by the sealing threads: a directory of small
    /// files does not pay the streaming path's thread hand-offs file after
    /// file. Returns which nodes it migrated (their content is Arca's now).
    async fn small_files(&mut self, nodes: &mut [Node]) -> Result<Vec<bool>> {
        let mut migrated = vec![false; nodes.len()];
        let mut todo = Vec::new();
        for (position, node) in nodes.iter_mut().enumerate() {
            if node.node_type != NodeType::File {
                continue;
            }
            let Some(blobs) = small_file_blobs(&self.index, &node.content) else {
                continue;
            };
            let list_id = content_list_id(&node.content);
            if let Some(known) = self.files.get(&list_id) {
                node.content = known.clone();
                migrated[position] = true;
            } else {
                todo.push((position, list_id, blobs));
            }
        }
        let (restic, destination, known, encoders) =
            (&self.restic, &self.destination, &self.known, &self.encoders);
        let mut files = futures::stream::iter(todo)
            .map(|(position, list_id, blobs)| async move {
                let mut chunks = Vec::new();
                for (id, chunk) in small_file(restic, destination, known, blobs).await? {
                    let blob = match chunk {
                        Some(chunk) => Some(encoders.seal(id, chunk).await?),
                        None => None,
                    };
                    chunks.push((id, blob));
                }
                Ok::<_, Error>((position, list_id, chunks))
            })
            .buffered(SMALL_FILES_AT_ONCE);
        while let Some(file) = files.next().await {
            let (position, list_id, chunks) = file?;
            let mut ids = Vec::with_capacity(chunks.len());
            for (id, blob) in chunks {
                if let Some(blob) = blob {
                    self.sink.store(blob).await?;
                }
                ids.push(id);
            }
            remember(
                &mut self.files,
                &mut self.remembered_content_ids,
                list_id,
                &ids,
            );
            nodes[position].content = ids;
            migrated[position] = true;
        }
        Ok(migrated)
    }

    /// Re-chunks one file (its restic data blobs, in order); returns its
    /// Arca content list.
    ///
    /// Three stages run at once, each bounded: a task reads (and decrypts,
    /// on the blocking pool) the restic blobs ahead; one blocking thread cuts
    /// them with the destination's chunker and names each chunk; the chunks
    /// the destination lacks are sealed by up to one encoder per core and
    /// packed in order. Memory is the chunker's buffer and a few blobs and
    /// chunks in flight, whatever the file's size.
    async fn file(&mut self, content: &[Id]) -> Result<Vec<Id>> {
        if content.is_empty() {
            return Ok(Vec::new());
        }
        let list_id = content_list_id(content);
        if let Some(known) = self.files.get(&list_id) {
            return Ok(known.clone());
        }
        let (blob_sender, blobs) = mpsc::channel::<Result<Vec<u8>>>(1);
        let (restic, index, ids) = (
            self.restic.clone(),
            Arc::clone(&self.index),
            content.to_vec(),
        );
        let reader = tokio::spawn(async move {
            let mut blobs = futures::stream::iter(ids)
                .map(|id| {
                    let (restic, index) = (restic.clone(), Arc::clone(&index));
                    async move { restic.read_blob(&index, BlobType::Data, &id).await }
                })
                .buffered(READ_AHEAD);
            while let Some(blob) = blobs.next().await {
                let failed = blob.is_err();
                if blob_sender.send(blob).await.is_err() || failed {
                    return;
                }
            }
        });
        let (chunk_sender, mut chunks) = mpsc::channel::<(Id, Option<Vec<u8>>)>(CHUNKS_QUEUED);
        let mut stream_chunker = self
            .stream_chunker
            .take()
            .expect("the chunker comes back after every file");
        let (destination, known) = (self.destination.clone(), Arc::clone(&self.known));
        let chunking = tokio::task::spawn_blocking(move || {
            let result = cut_file(
                &mut stream_chunker,
                BlobReader::new(blobs),
                &destination,
                &known,
                &chunk_sender,
            );
            (stream_chunker, result)
        });
        let encoders = &self.encoders;
        let mut sealed = futures::stream::poll_fn(|cx| chunks.poll_recv(cx))
            .map(|(id, chunk)| async move {
                match chunk {
                    Some(chunk) => encoders.seal(id, chunk).await.map(|blob| (id, Some(blob))),
                    None => Ok((id, None)),
                }
            })
            .buffered(encoders.count);
        let mut ids = Vec::new();
        let packed = async {
            while let Some(next) = sealed.next().await {
                let (id, blob) = next?;
                if let Some(blob) = blob {
                    self.sink.store(blob).await?;
                }
                ids.push(id);
            }
            Ok::<_, Error>(())
        }
        .await;
        // Dropping the receiving end stops the chunker at its next chunk,
        // and the chunker's end stops the reader, should either still run.
        drop(sealed);
        if packed.is_err() {
            reader.abort();
        }
        let (stream_chunker, cut) = match chunking.await {
            Ok(finished) => finished,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        self.stream_chunker = Some(stream_chunker);
        // The chunker took the channel's end for the file's end; a reader
        // that panicked also ends it, and must not pass for a short file.
        if let Err(e) = reader.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        packed?;
        cut?;
        remember(
            &mut self.files,
            &mut self.remembered_content_ids,
            list_id,
            &ids,
        );
        Ok(ids)
    }
}

/// The key of a file's restic content list in [`Migrator`]'s file map.
fn content_list_id(content: &[Id]) -> Id {
    sha256(&content.iter().flat_map(|id| id.0).collect::<Vec<u8>>())
}

/// Remembers a file's Arca content list, emptying the map first if it is
/// full (see [`MAX_REMEMBERED`]).
fn remember(files: &mut HashMap<Id, Vec<Id>>, held_ids: &mut usize, list_id: Id, ids: &[Id]) {
    if files.len() >= MAX_REMEMBERED || *held_ids + ids.len() > MAX_REMEMBERED_CONTENT_IDS {
        files.clear();
        *held_ids = 0;
    }
    *held_ids += ids.len();
    files.insert(list_id, ids.to_vec());
}

/// A small file's restic blobs with their locations, if they add up to
/// [`SMALL_FILE`] bytes at most (as the index, which is authenticated,
/// gives their lengths). A blob in no index leaves the file to the
/// streaming path, which reports it.
fn small_file_blobs(index: &Index, content: &[Id]) -> Option<Vec<(Id, BlobLocation)>> {
    let mut bytes = 0;
    let blobs = content
        .iter()
        .map(|id| {
            let location = index.get(BlobType::Data, id)?;
            bytes += location.plaintext_len();
            (bytes <= SMALL_FILE).then_some((*id, location))
        })
        .collect::<Option<Vec<_>>>()?;
    (!blobs.is_empty()).then_some(blobs)
}

/// One small file's chunks: its restic blobs fetched, then opened, cut and
/// named in one blocking call; with the bytes of those the destination
/// lacks, to be sealed.
async fn small_file(
    restic: &ResticRepository,
    destination: &Repository,
    known: &Arc<KnownBlobs>,
    blobs: Vec<(Id, BlobLocation)>,
) -> Result<Vec<(Id, Option<Vec<u8>>)>> {
    let mut stored = Vec::with_capacity(blobs.len());
    for (id, location) in blobs {
        let bytes = restic.fetch_located_blob(&location).await?;
        stored.push((id, location.uncompressed_length, bytes));
    }
    let (restic, destination, known) = (restic.clone(), destination.clone(), Arc::clone(known));
    blocking(move || {
        let mut data = Vec::new();
        for (id, uncompressed_length, bytes) in stored {
            data.extend(restic.open_blob(BlobType::Data, &id, &bytes, uncompressed_length)?);
        }
        let mut start = 0;
        let mut chunks = Vec::new();
        for length in destination.chunker().cut_points(&data) {
            chunks.push(name_chunk(
                &destination,
                &known,
                &data[start..start + length],
            ));
            start += length;
        }
        Ok(chunks)
    })
    .await
}

/// Threads that seal chunks for the destination, one per core. Each keeps
/// its zstd context (and its tables in the core's cache) from chunk to
/// chunk: sealing on whichever blocking-pool thread was free spread the
/// work over many contexts and cost a third more CPU in zstd.
struct Encoders {
    jobs: crossbeam_channel::Sender<SealJob>,
    count: usize,
}

struct SealJob {
    id: Id,
    chunk: Vec<u8>,
    sealed: oneshot::Sender<Result<EncodedBlob>>,
}

impl Encoders {
    /// Starts the threads; they end once the `Encoders` is dropped.
    fn start(destination: &Repository) -> Self {
        let count = std::thread::available_parallelism().map_or(2, usize::from);
        let (jobs, queue) = crossbeam_channel::unbounded::<SealJob>();
        for _ in 0..count {
            let (queue, destination) = (queue.clone(), destination.clone());
            std::thread::spawn(move || {
                for job in queue {
                    let sealed = destination.blob_key().and_then(|key| {
                        encode_blob(
                            &key,
                            BlobType::Data,
                            job.id,
                            &job.chunk,
                            destination.compression(),
                        )
                    });
                    // The receiver is gone only if the migration stopped.
                    let _ = job.sealed.send(sealed.map_err(Error::from));
                }
            });
        }
        Encoders { jobs, count }
    }

    /// `chunk` sealed as data blob `id`.
    async fn seal(&self, id: Id, chunk: Vec<u8>) -> Result<EncodedBlob> {
        let (sealed, reply) = oneshot::channel();
        self.jobs
            .send(SealJob { id, chunk, sealed })
            .expect("the sealing threads run as long as their queue");
        reply.await.expect("a sealing thread panicked")
    }
}

/// A chunk's ID and, if the destination lacks it, its bytes, to be sealed.
fn name_chunk(destination: &Repository, known: &KnownBlobs, chunk: &[u8]) -> (Id, Option<Vec<u8>>) {
    let id = destination.key().content_id(chunk);
    (
        id,
        (!known.has(BlobType::Data, &id)).then(|| chunk.to_vec()),
    )
}

/// Cuts the stream of a file's restic blobs into the destination's chunks
/// and sends each with its ID and, if the destination lacks it, its bytes.
/// Stops early, without error, once nobody receives.
fn cut_file(
    stream_chunker: &mut StreamChunker,
    mut source: BlobReader,
    destination: &Repository,
    known: &KnownBlobs,
    chunks: &mpsc::Sender<(Id, Option<Vec<u8>>)>,
) -> Result<()> {
    let mut stream = stream_chunker.stream(&mut source);
    while let Some(chunk) = stream.next_chunk() {
        let Ok(chunk) = chunk else {
            return Err(source
                .failure
                .take()
                .expect("only a failed blob read fails the stream"));
        };
        if chunks
            .blocking_send(name_chunk(destination, known, chunk))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// A file's restic blobs, as they arrive from the reader task, as one
/// `Read` stream (for the blocking chunker). A failed read ends the stream
/// with an I/O error, after the bytes before it, and keeps the real error in
/// `failure`.
struct BlobReader {
    blobs: mpsc::Receiver<Result<Vec<u8>>>,
    current: Vec<u8>,
    position: usize,
    failure: Option<Error>,
}

impl BlobReader {
    fn new(blobs: mpsc::Receiver<Result<Vec<u8>>>) -> Self {
        BlobReader {
            blobs,
            current: Vec::new(),
            position: 0,
            failure: None,
        }
    }
}

impl std::io::Read for BlobReader {
    /// Fills `out` as far as the blobs go (the chunker reads in aligned
    /// lengths and takes a short read for a hint of the end).
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < out.len() && self.failure.is_none() {
            if self.position == self.current.len() {
                match self.blobs.blocking_recv() {
                    Some(Ok(blob)) => (self.current, self.position) = (blob, 0),
                    Some(Err(error)) => self.failure = Some(error),
                    None => break,
                }
                continue;
            }
            let n = (out.len() - filled).min(self.current.len() - self.position);
            out[filled..filled + n]
                .copy_from_slice(&self.current[self.position..self.position + n]);
            (filled, self.position) = (filled + n, self.position + n);
        }
        if filled == 0 && self.failure.is_some() {
            return Err(std::io::Error::other("reading a restic blob failed"));
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use arca_chunk::{Chunker, ChunkerParams};
    use proptest::prelude::*;

    use super::*;

    fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect()
    }

    /// A reader of `pieces` as a reader task would have sent them.
    fn reader_of(pieces: Vec<Result<Vec<u8>>>) -> BlobReader {
        let (sender, receiver) = mpsc::channel(pieces.len().max(1));
        for piece in pieces {
            sender.try_send(piece).expect("room for every piece");
        }
        BlobReader::new(receiver)
    }

    proptest! {
        /// A file's restic blobs, however they are cut, are chunked as
        /// `arca backup` chunks the file whole: a migrated file has the
        /// chunks a later backup of it has.
        #[test]
        fn blob_stream_chunks_like_the_whole_file(
            seed in any::<u64>(),
            len in 0usize..300_000,
            piece_lengths in proptest::collection::vec(1usize..40_000, 1..20),
        ) {
            let params = ChunkerParams::with_average(4096).unwrap();
            let chunker = Chunker::new(params, &[7; 32]).unwrap();
            let data = pseudo_random(seed, len);
            let mut pieces = Vec::new();
            let mut offset = 0;
            for step in piece_lengths.iter().cycle() {
                if offset == data.len() {
                    break;
                }
                let end = (offset + step).min(data.len());
                pieces.push(Ok(data[offset..end].to_vec()));
                offset = end;
            }
            let mut stream_chunker = StreamChunker::with_read_ahead(chunker.clone(), 8192);
            let mut reader = reader_of(pieces);
            let mut stream = stream_chunker.stream(&mut reader);
            let mut lengths = Vec::new();
            while let Some(chunk) = stream.next_chunk() {
                lengths.push(chunk.unwrap().len());
            }
            prop_assert_eq!(lengths, chunker.cut_points(&data));
        }
    }

    /// A failed blob read ends the stream with an error and keeps the real
    /// one, after the bytes that came before it.
    #[test]
    fn a_failed_read_ends_the_stream_with_its_error() {
        let failure = Error::BlobNotFound {
            blob_type: BlobType::Data,
            id: Id([3; 32]),
        };
        let mut reader = reader_of(vec![Ok(vec![1, 2, 3]), Err(failure)]);
        let mut out = [0; 8];
        assert_eq!(reader.read(&mut out).unwrap(), 3);
        assert_eq!(out[..3], [1, 2, 3]);
        assert!(reader.read(&mut out).is_err());
        assert!(matches!(reader.failure, Some(Error::BlobNotFound { .. })));
    }
}
