//! Deletion marks and the write side of prune's lock-free protocol.
//!
//! A prune never deletes a pack it has just found unused: it writes a
//! [`DeletionMark`] (`marks/<id>`, sealed as [`ObjectKind::DeletionMark`])
//! naming it, and a later prune deletes it once the mark is older than the
//! grace period and the pack is still unused by every snapshot then listed
//! (`prune.rs`). A pack named by a mark is *pending deletion*: it stays
//! indexed and readable, but writers do not deduplicate against it
//! ([`Repository::load_index_for_writing`]), and a writer commits its
//! snapshot through [`Repository::commit_snapshot`], which copies any blob
//! the snapshot can only find in pending packs into a new pack first. The
//! protocol and the argument for why no interleaving loses data are in
//! docs/FORMAT.md ("Prune without locks").

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arca_crypto::ObjectKind;
use futures::{StreamExt, TryStreamExt};

use crate::blob::BlobType;
use crate::index::{Index, IndexFile, IndexPack};
use crate::pack::PackWriter;
use crate::repository::{blocking, id_from_path};
use crate::snapshot::Snapshot;
use crate::tree::Tree;
use crate::{Error, Id, Repository, Result, records};

/// Directory of deletion marks.
pub const MARKS_DIR: &str = "marks";
/// How long a mark waits before its packs may be deleted, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2 * 60 * 60);
/// The shortest grace a prune accepts: writers re-check the marks when more
/// than half of it passed between their check and their snapshot's write.
pub const GRACE_FLOOR: Duration = Duration::from_secs(10 * 60);
/// Environment variable that lowers [`GRACE_FLOOR`] (seconds), for tests
/// only: every process writing to the repository must see the same value,
/// or the protocol's bound does not hold.
pub const TEST_GRACE_FLOOR_ENV: &str = "ARCA_TEST_GRACE_FLOOR";
/// How many trees a walk loads at once.
const WALK_CONCURRENCY: usize = 16;
/// How often a commit checks the marks again before giving up.
const COMMIT_ATTEMPTS: usize = 3;

/// The shortest grace period: [`GRACE_FLOOR`], or the value of
/// [`TEST_GRACE_FLOOR_ENV`] in seconds if set.
pub fn grace_floor() -> Duration {
    std::env::var(TEST_GRACE_FLOOR_ENV)
        .ok()
        .and_then(|value| value.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map_or(GRACE_FLOOR, Duration::from_secs_f64)
}

/// One file in `marks/` (the stored JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeletionMark {
    /// When the mark was written (the grace period counts from here).
    pub time: jiff::Timestamp,
    /// Host of the prune that wrote it.
    pub hostname: String,
    /// Packs pending deletion.
    pub packs: Vec<Id>,
}

/// Every deletion mark, by ID. A mark that cannot be read is an error naming
/// it: without it, nobody knows which packs are pending.
pub async fn list_marks(repo: &Repository) -> Result<Vec<(Id, DeletionMark)>> {
    let loaded = records::load_all(repo, MARKS_DIR, |repo, path, stored| {
        records::decode(repo, ObjectKind::DeletionMark, path, stored)
    })
    .await?;
    loaded
        .into_iter()
        .map(|(id, mark)| mark.map(|mark| (id, mark)))
        .collect()
}

/// The packs some mark names.
pub fn pending_packs<'a>(marks: impl IntoIterator<Item = &'a DeletionMark>) -> HashSet<Id> {
    marks
        .into_iter()
        .flat_map(|mark| mark.packs.iter().copied())
        .collect()
}

/// Writes a mark; returns its ID.
pub(crate) async fn save_mark(repo: &Repository, mark: &DeletionMark) -> Result<Id> {
    records::save(repo, ObjectKind::DeletionMark, MARKS_DIR, mark).await
}

/// Deletes a mark (a missing one is not an error: a crashed sweep may have
/// deleted it already).
pub(crate) async fn delete_mark(repo: &Repository, id: &Id) -> Result<()> {
    delete_if_present(repo, &format!("{MARKS_DIR}/{id}")).await
}

/// Deletes an object, ignoring one already gone.
pub(crate) async fn delete_if_present(repo: &Repository, path: &str) -> Result<()> {
    match repo.backend().delete(path).await {
        Ok(()) | Err(arca_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// When a writer loaded its index: [`Repository::commit_snapshot`] takes it
/// to know whether a prune could have swept a mark the writer never saw.
#[derive(Debug, Clone, Copy)]
pub struct WriteStart(Instant);

/// Loads index files into an [`Index`] in which packs pending deletion in
/// `pending` are hidden from [`Index::contains`] (but readable), adding the
/// other packs first so that a duplicated blob keeps its live copy.
pub(crate) async fn load_index_hiding(repo: &Repository, pending: &HashSet<Id>) -> Result<Index> {
    let files = repo.list_index_files().await?;
    let mut loads = futures::stream::iter(files)
        .map(|meta| async move {
            let id = id_from_path(&meta.path)?;
            repo.load_index_file(&id).await
        })
        .buffer_unordered(8);
    let mut index = Index::default();
    let mut pending_packs = IndexFile::default();
    while let Some(file) = loads.try_next().await? {
        if file.packs.iter().any(|pack| pending.contains(&pack.id)) {
            let (hidden, live): (Vec<IndexPack>, Vec<IndexPack>) = file
                .packs
                .into_iter()
                .partition(|pack| pending.contains(&pack.id));
            index.add_file(&IndexFile { packs: live });
            pending_packs.packs.extend(hidden);
        } else {
            index.add_file(&file);
        }
    }
    index.add_file(&pending_packs);
    let pending = pending.clone();
    blocking(move || {
        index.finish();
        index.hide_packs(&pending);
        Ok(index)
    })
    .await
}

/// Walks the trees reachable from `roots`, each loaded once
/// ([`WALK_CONCURRENCY`] at a time): `visit` sees each tree and pushes the
/// subtrees to descend into (so the caller decides what "seen" means).
pub(crate) async fn walk_trees(
    repo: &Repository,
    index: &Index,
    roots: Vec<Id>,
    mut visit: impl FnMut(&Tree, &mut Vec<Id>),
) -> Result<()> {
    let mut queue = roots;
    let mut loading = futures::stream::FuturesUnordered::new();
    loop {
        while loading.len() < WALK_CONCURRENCY
            && let Some(id) = queue.pop()
        {
            loading.push(async move { repo.load_tree(index, &id).await });
        }
        let Some(tree) = loading.next().await else {
            return Ok(());
        };
        visit(&tree?, &mut queue);
    }
}

impl Repository {
    /// This repository with a shorter grace floor than [`grace_floor`]'s,
    /// for tests that run the protocol in seconds: every writer and prune of
    /// the repository must use the same floor.
    #[must_use]
    pub fn with_grace_floor(mut self, floor: Duration) -> Repository {
        self.grace_floor = Some(floor);
        self
    }

    /// The shortest grace period prunes accept, and the bound writers keep
    /// between checking the marks and writing a snapshot (half of it).
    pub fn grace_floor(&self) -> Duration {
        self.grace_floor.unwrap_or_else(grace_floor)
    }

    /// Loads the index as a writer (backup, copy) needs it: blobs whose only
    /// copies are in packs pending deletion count as absent, so they are
    /// stored again rather than referenced. Commit the snapshot with
    /// [`Repository::commit_snapshot`] and the returned [`WriteStart`].
    pub async fn load_index_for_writing(&self) -> Result<(Index, WriteStart)> {
        let start = WriteStart(Instant::now());
        let marks = list_marks(self).await?;
        let index = load_index_hiding(self, &pending_packs(marks.iter().map(|(_, m)| m))).await?;
        Ok((index, start))
    }

    /// Writes a snapshot whose blobs are all stored and indexed, so that no
    /// concurrent prune can delete data it needs (see docs/FORMAT.md, "Prune
    /// without locks"): lists the marks, and when some exist or the writer
    /// ran long, walks the snapshot's trees and copies every blob whose only
    /// copies are pending deletion into a new pack; then writes the snapshot
    /// within half the grace floor of that check, or checks again.
    ///
    /// Fails with [`Error::BackupIncomplete`] (and writes no snapshot) when a
    /// blob the snapshot needs was deleted meanwhile, which only a writer
    /// running longer than a prune's grace can meet.
    pub async fn commit_snapshot(&self, snapshot: &Snapshot, started: WriteStart) -> Result<Id> {
        let bound = self.grace_floor() / 2;
        // When the blobs were last secured, against which marks.
        let mut secured: Option<(Instant, HashSet<Id>)> = None;
        for _ in 0..COMMIT_ATTEMPTS {
            let checked = Instant::now();
            let marks = list_marks(self).await?;
            let ids: HashSet<Id> = marks.iter().map(|(id, _)| *id).collect();
            // No mark appeared since the blobs were secured (recently): the
            // walk's result still holds, however long the walk took.
            let still_secure = secured
                .as_ref()
                .is_some_and(|(at, known)| ids.is_subset(known) && at.elapsed() < bound);
            if !still_secure && (!marks.is_empty() || started.0.elapsed() >= bound) {
                let pending = pending_packs(marks.iter().map(|(_, m)| m));
                // Within F/2 of loading the index no pack the writer relies
                // on can have been swept (docs/FORMAT.md §16): only a long
                // writer checks that they all still exist.
                let ran_long = started.0.elapsed() >= bound;
                self.secure_blobs(&snapshot.tree, &pending, ran_long)
                    .await?;
                secured = Some((checked, ids));
            }
            if checked.elapsed() >= bound / 2 {
                continue;
            }
            let id = self.save_snapshot(snapshot).await?;
            if checked.elapsed() < bound {
                return Ok(id);
            }
            // Written too late to be sure a sweep saw it: take it back.
            tracing::warn!(snapshot = %id, "snapshot write took too long; checking the marks again");
            delete_if_present(self, &format!("{}/{id}", crate::repository::SNAPSHOTS_DIR)).await?;
        }
        Err(Error::BackupIncomplete {
            reason: format!(
                "the snapshot could not be written within {bound:?} of checking the repository's deletion marks"
            ),
        })
    }

    /// Makes every blob reachable from `root` available outside `pending`
    /// packs: copies those found only in pending packs into new packs, and
    /// with `check_packs` checks that every pack holding the others still
    /// exists.
    async fn secure_blobs(
        &self,
        root: &Id,
        pending: &HashSet<Id>,
        check_packs: bool,
    ) -> Result<()> {
        let index = load_index_hiding(self, pending).await?;
        let mut rescue: Vec<(BlobType, Id)> = Vec::new();
        let mut missing: Option<(BlobType, Id)> = None;
        let mut packs: HashSet<Id> = HashSet::new();
        let mut seen: HashSet<Id> = HashSet::new();
        // Records where a blob is; whether it is in the index at all.
        let mut note = |blob_type: BlobType, id: &Id| match index.get(blob_type, id) {
            None => {
                missing = Some((blob_type, *id));
                false
            }
            Some(_) if !index.contains(blob_type, id) => {
                rescue.push((blob_type, *id));
                true
            }
            Some(location) => {
                packs.insert(location.pack);
                true
            }
        };
        let roots = if note(BlobType::Tree, root) {
            vec![*root]
        } else {
            Vec::new()
        };
        seen.insert(*root);
        walk_trees(self, &index, roots, |tree, queue| {
            for node in &tree.nodes {
                for blob in &node.content {
                    note(BlobType::Data, blob);
                }
                if let Some(subtree) = node.subtree
                    && seen.insert(subtree)
                    && note(BlobType::Tree, &subtree)
                {
                    queue.push(subtree);
                }
            }
        })
        .await?;
        if let Some((blob_type, id)) = missing {
            return Err(Error::BackupIncomplete {
                reason: format!(
                    "{blob_type} blob {id} is no longer in the repository (deleted by a concurrent prune while this writer ran)"
                ),
            });
        }
        if !check_packs {
            packs.clear();
        }
        let gone = futures::stream::iter(packs)
            .map(|pack| async move {
                match self.backend().head(&Repository::pack_path(&pack)).await {
                    Ok(_) => Ok(None),
                    Err(arca_store::Error::NotFound { .. }) => Ok(Some(pack)),
                    Err(e) => Err(Error::from(e)),
                }
            })
            .buffer_unordered(8)
            .try_filter_map(|found| async move { Ok(found) })
            .boxed()
            .try_next()
            .await?;
        if let Some(pack) = gone {
            return Err(Error::BackupIncomplete {
                reason: format!(
                    "pack {pack} was deleted by a concurrent prune while this writer ran"
                ),
            });
        }
        if !rescue.is_empty() {
            rescue.sort();
            rescue.dedup();
            tracing::info!(
                blobs = rescue.len(),
                "copying blobs out of packs pending deletion"
            );
            copy_blobs(self, &index, &rescue).await?;
        }
        Ok(())
    }
}

/// Reads `blobs` (verifying each) and stores them again in new packs, then
/// indexes those packs; returns the new index entries.
pub(crate) async fn copy_blobs(
    repo: &Repository,
    index: &Index,
    blobs: &[(BlobType, Id)],
) -> Result<Vec<IndexPack>> {
    let pack_size = repo.config().pack_size as usize;
    let mut writers: [Option<PackWriter>; 2] = [None, None];
    let mut saved = Vec::new();
    for &(blob_type, id) in blobs {
        let plaintext = repo.read_blob(index, blob_type, &id).await?;
        let slot = usize::from(blob_type == BlobType::Tree);
        let mut writer = match writers[slot].take() {
            Some(writer) => writer,
            None => PackWriter::new(blob_type, repo.blob_key()?),
        };
        let key_repo = repo.clone();
        writer = blocking(move || {
            writer.add_encoding(blob_type, id, &plaintext, key_repo.compression())?;
            Ok(writer)
        })
        .await?;
        if writer.len() >= pack_size {
            saved.push(finish_pack(repo, writer).await?);
        } else {
            writers[slot] = Some(writer);
        }
    }
    for writer in writers.into_iter().flatten() {
        saved.push(finish_pack(repo, writer).await?);
    }
    if !saved.is_empty() {
        repo.save_indexes(IndexFile {
            packs: saved.clone(),
        })
        .await?;
    }
    Ok(saved)
}

async fn finish_pack(repo: &Repository, writer: PackWriter) -> Result<IndexPack> {
    let key_repo = repo.clone();
    let pack = blocking(move || writer.finish(key_repo.key())).await?;
    repo.save_pack(pack).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_through_json() {
        let mark = DeletionMark {
            time: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            hostname: "h".into(),
            packs: vec![Id([1; 32]), Id([2; 32])],
        };
        let json = serde_json::to_vec(&mark).unwrap();
        assert_eq!(serde_json::from_slice::<DeletionMark>(&json).unwrap(), mark);
        assert_eq!(pending_packs([&mark]).len(), 2);
    }
}
