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

use arca_chunk::Chunker;
use arca_repo::blob::{BlobType, EncodedBlob, encode_blob};
use arca_repo::copy::{CopiedSnapshot, CopyReport, KnownBlobs, PackSink, SinkCounts};
use arca_repo::select::SnapshotFilter;
use arca_repo::snapshot::Snapshot;
use arca_repo::tree::{NodeType, Tree};
use arca_repo::{Id, Repository};
use tokio::sync::mpsc;

use crate::index::Index;
use crate::repository::{blocking, sha256};
use crate::{Error, ResticRepository, Result};

/// Restic data blobs read ahead of the chunker, per file.
const READ_AHEAD: usize = 4;
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
        chunker: destination.chunker().clone(),
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
    chunker: Chunker,
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
        for node in &mut nodes {
            match node.node_type {
                NodeType::Dir => {
                    let subtree = node.subtree.expect("to_arca: directories have subtrees");
                    node.subtree = Some(Box::pin(self.tree(subtree)).await?);
                }
                NodeType::File => node.content = self.file(&node.content).await?,
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

    /// Re-chunks one file (its restic data blobs, in order); returns its
    /// Arca content list.
    async fn file(&mut self, content: &[Id]) -> Result<Vec<Id>> {
        if content.is_empty() {
            return Ok(Vec::new());
        }
        let list_id = sha256(&content.iter().flat_map(|id| id.0).collect::<Vec<u8>>());
        if let Some(known) = self.files.get(&list_id) {
            return Ok(known.clone());
        }
        // Blobs are read (and decrypted, on the blocking pool) ahead by a
        // task of their own while the chunker works on earlier ones.
        let (sender, mut receiver) = mpsc::channel::<Result<Vec<u8>>>(READ_AHEAD);
        let (restic, index, ids) = (
            self.restic.clone(),
            Arc::clone(&self.index),
            content.to_vec(),
        );
        let reader = tokio::spawn(async move {
            use futures::StreamExt as _;
            let mut blobs = futures::stream::iter(ids)
                .map(|id| {
                    let (restic, index) = (restic.clone(), Arc::clone(&index));
                    async move { restic.read_blob(&index, BlobType::Data, &id).await }
                })
                .buffered(READ_AHEAD);
            while let Some(blob) = blobs.next().await {
                let failed = blob.is_err();
                if sender.send(blob).await.is_err() || failed {
                    return;
                }
            }
        });
        let max_chunk = self.chunker.params().max as usize;
        let mut pending: Vec<u8> = Vec::new();
        let mut ids = Vec::new();
        let result = async {
            loop {
                let next = receiver.recv().await;
                let end = next.is_none();
                if let Some(blob) = next {
                    let blob = blob?;
                    if pending.is_empty() {
                        pending = blob;
                    } else {
                        pending.extend_from_slice(&blob);
                    }
                }
                // Past `max_chunk` bytes at least one chunk is final.
                if end || pending.len() > max_chunk {
                    let (rest, chunks) = self.cut(std::mem::take(&mut pending), end).await?;
                    pending = rest;
                    for (id, blob) in chunks {
                        if let Some(blob) = blob {
                            self.sink.store(blob).await?;
                        }
                        ids.push(id);
                    }
                }
                if end {
                    return Ok::<_, Error>(());
                }
            }
        }
        .await;
        reader.abort();
        result?;
        if self.files.len() >= MAX_REMEMBERED
            || self.remembered_content_ids + ids.len() > MAX_REMEMBERED_CONTENT_IDS
        {
            self.files.clear();
            self.remembered_content_ids = 0;
        }
        self.remembered_content_ids += ids.len();
        self.files.insert(list_id, ids.clone());
        Ok(ids)
    }

    /// Cuts `data` into chunks on the blocking pool: all of them if `end`
    /// (the file's last bytes), else all but the last, which may still
    /// grow and is returned to be cut again with what follows. Each chunk
    /// comes with its ID and, if the destination lacks it, its sealed form.
    async fn cut(
        &self,
        data: Vec<u8>,
        end: bool,
    ) -> Result<(Vec<u8>, Vec<(Id, Option<EncodedBlob>)>)> {
        let (chunker, known, destination) = (
            self.chunker.clone(),
            Arc::clone(&self.known),
            self.destination.clone(),
        );
        blocking(move || {
            let (lengths, kept) = final_cuts(&chunker, &data, end);
            let key = destination.key();
            let mut chunks = Vec::with_capacity(lengths.len());
            let mut start = 0;
            for length in lengths {
                let chunk = &data[start..start + length];
                start += length;
                let id = key.content_id(chunk);
                let blob = if known.has(BlobType::Data, &id) {
                    None
                } else {
                    Some(encode_blob(
                        &destination.blob_key()?,
                        BlobType::Data,
                        id,
                        chunk,
                        destination.compression(),
                    )?)
                };
                chunks.push((id, blob));
            }
            let rest = data[data.len() - kept..].to_vec();
            Ok((rest, chunks))
        })
        .await
    }
}

/// The lengths of the chunks of `data` that are final, and how many bytes
/// at its end are not cut yet: with `end` (nothing follows) every chunk is
/// final; otherwise the last one may still grow with what follows. Chunk
/// cuts depend only on the bytes since the chunk's start, so cutting a
/// stream this way piece by piece gives the cuts of cutting it whole.
fn final_cuts(chunker: &Chunker, data: &[u8], end: bool) -> (Vec<usize>, usize) {
    let mut lengths = chunker.cut_points(data);
    let kept = if end { 0 } else { lengths.pop().unwrap_or(0) };
    (lengths, kept)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Cutting a stream piece by piece, keeping back the last chunk of
        /// each piece, gives the chunks of cutting it whole: a migrated
        /// file has the chunks `arca backup` would give it.
        #[test]
        fn piecewise_cuts_equal_whole_cuts(
            seed in any::<u64>(),
            len in 0usize..300_000,
            pieces in proptest::collection::vec(1usize..40_000, 1..20),
        ) {
            let params = arca_chunk::ChunkerParams::with_average(4096).unwrap();
            let chunker = Chunker::new(params, &[7; 32]).unwrap();
            let mut state = seed;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let whole = chunker.cut_points(&data);
            let mut pieced = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut offset = 0;
            let mut piece = pieces.iter().cycle();
            loop {
                let step = (*piece.next().unwrap()).min(data.len() - offset);
                pending.extend_from_slice(&data[offset..offset + step]);
                offset += step;
                let end = offset == data.len();
                if end || pending.len() > params.max as usize {
                    let (lengths, kept) = final_cuts(&chunker, &pending, end);
                    pieced.extend(lengths);
                    pending = pending[pending.len() - kept..].to_vec();
                }
                if end {
                    break;
                }
            }
            prop_assert_eq!(pieced, whole);
        }
    }
}
