//! Re-encryption of the repository's data under the current data key: the
//! first half of `arca key rotate --reencrypt` (docs/FORMAT.md §20).
//!
//! Every pack holding a blob sealed under an older data key is rewritten:
//! its indexed blobs are opened, sealed again under the current key (a
//! compressed blob as it is, not compressed again) into
//! new packs, the new packs indexed, and only then the old packs named in a
//! [`DeletionMark`], which prune's sweep deletes after the grace period
//! (docs/FORMAT.md §16). So the rewrite is safe beside running backups and
//! readers exactly as a prune's repack is, and runs under the prune's lease
//! (purpose `prune`): a prune and a re-encryption never run at once. Index
//! files sealed under an older key are written again (new file first, then
//! the old one deleted). Work is committed in batches (new packs, their
//! index, then a mark for the batch's old packs), so a run killed at any
//! point loses nothing and a run started afterwards carries on with what is
//! still under an old key; a kill between a batch's index and its mark
//! leaves that batch's blobs stored twice, never missing.
//!
//! Snapshots are named by the hash of their sealed bytes, so sealing one
//! again renames it: the new one records the old as `original` (as a `tag`
//! rewrite does) and the holds on the old ID move to the new one.
//!
//! Hold records and deletion marks are sealed again the same way (new
//! record first, releases remapped to their placements' new IDs, old record
//! deleted last), and `config` is replaced in place (its one fixed name).
//!
//! Audit records are not touched: they are sealed under the audit key,
//! which never rotates (docs/FORMAT.md §18). The old data keys stay in the
//! key files and keyrings; [`crate::erase`] destroys them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arca_crypto::ObjectKind;

use crate::blob::{BlobEnvelope, EncodedBlob, open_blob};
use crate::hold;
use crate::index::{IndexFile, IndexPack};
use crate::lease::{self, HeldLease, LEASE_REFRESH};
use crate::marks::{
    DeletionMark, MARKS_DIR, delete_if_present, list_marks, pending_packs, save_mark,
};
use crate::pack::{PackEntry, PackWriter};
use crate::prune::save_writer;
use crate::repository::{CONFIG_PATH, DATA_DIR, INDEX_DIR, SNAPSHOTS_DIR, blocking, id_from_path};
use crate::{Error, Id, Repository, Result};

/// Stored bytes of old packs rewritten per batch before the batch is committed.
const BATCH_BYTES: u64 = 64 << 20;

/// What a re-encryption did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReencryptReport {
    /// The data key everything was sealed under.
    pub data_key: u32,
    /// Packs read to see which keys sealed their blobs.
    pub packs_checked: u64,
    /// Packs holding blobs under an older key, rewritten and marked.
    pub packs_rewritten: u64,
    /// Blobs sealed again.
    pub blobs_rewritten: u64,
    /// Stored bytes of the rewritten packs (what was read and written again).
    pub bytes_rewritten: u64,
    /// Index files sealed again under the current key.
    pub index_files_resealed: u64,
    /// Deletion marks written for the old packs.
    pub marks: Vec<Id>,
    /// Snapshots sealed again, each under a new ID recording the old one
    /// (or its own origin) as `original`, like a `tag` rewrite.
    pub snapshots: Vec<crate::rewrite::Rewritten>,
    /// Holds moved from an old snapshot ID to its new one.
    pub holds_moved: u64,
    /// Hold records (placements and releases) sealed again under new IDs,
    /// releases naming the placements' new IDs.
    pub hold_records_resealed: u64,
    /// Deletion marks sealed again (same packs, same time).
    pub marks_resealed: u64,
    /// Whether `config` was sealed again.
    pub config_resealed: bool,
}

/// The data key id an envelope names (its bytes 1..5), if it has one.
pub(crate) fn envelope_key_id(sealed: &[u8]) -> Option<u32> {
    sealed
        .get(1..5)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

/// Re-encrypts `repo`'s packs and index files under its current data key;
/// see the module docs. Needs a full-access key; fails with
/// [`Error::PruneRunning`] while a prune (or another re-encryption) runs.
pub async fn reencrypt_data(repo: &Repository) -> Result<ReencryptReport> {
    Ok(reencrypt_data_checked(repo).await?.0)
}

/// [`reencrypt_data`], also returning the packs it found or wrote holding
/// only blobs under the current key (an erasure need not read them again).
pub(crate) async fn reencrypt_data_checked(
    repo: &Repository,
) -> Result<(ReencryptReport, HashSet<Id>)> {
    repo.require_full_access("key rotate --reencrypt")?;
    let mut lease = lease::acquire(repo, "prune").await?;
    let result = rewrite(repo, &mut lease).await;
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "could not remove the re-encryption's lease; it expires by itself");
    }
    result
}

/// Keeps the lease alive between steps (the work is sequential, so a
/// refresh between packs is enough) and stops if it was lost.
async fn keep(lease: &mut HeldLease, refreshed: &mut std::time::Instant) -> Result<()> {
    if refreshed.elapsed() >= LEASE_REFRESH {
        lease.refresh().await?;
        *refreshed = std::time::Instant::now();
    }
    lease.ensure_valid()
}

async fn rewrite(
    repo: &Repository,
    lease: &mut HeldLease,
) -> Result<(ReencryptReport, HashSet<Id>)> {
    let current = repo.key().current_data_key_id();
    let mut report = ReencryptReport {
        data_key: current,
        ..ReencryptReport::default()
    };
    let mut refreshed = std::time::Instant::now();
    let pending = pending_packs(list_marks(repo).await?.iter().map(|(_, mark)| mark));
    let stored: HashSet<Id> = repo
        .backend()
        .list(&format!("{DATA_DIR}/"))
        .await?
        .iter()
        .filter_map(|meta| id_from_path(&meta.path).ok())
        .collect();
    let mut packs: Vec<IndexPack> = Vec::new();
    let mut seen = HashSet::new();
    for meta in repo.list_index_files().await? {
        let file = repo.load_index_file(&id_from_path(&meta.path)?).await?;
        for pack in file.packs {
            if !pending.contains(&pack.id) && stored.contains(&pack.id) && seen.insert(pack.id) {
                packs.push(pack);
            }
        }
    }
    packs.sort_by_key(|pack| pack.id);

    let mut batch = Batch::default();
    let mut current_packs = HashSet::new();
    for pack in &packs {
        keep(lease, &mut refreshed).await?;
        report.packs_checked += 1;
        // A format-2 pack names its key in the index: no need to read it.
        if let BlobEnvelope::Pack(key) = pack.envelope
            && key.key_id == current
        {
            current_packs.insert(pack.id);
            continue;
        }
        let bytes = repo.backend().get(&Repository::pack_path(&pack.id)).await?;
        if pack_under_key(pack.envelope, &bytes, &pack.blobs, current) {
            current_packs.insert(pack.id);
            continue;
        }
        let (key_repo, entries, path, envelope) = (
            repo.clone(),
            pack.blobs.clone(),
            Repository::pack_path(&pack.id),
            pack.envelope,
        );
        let resealed: Vec<EncodedBlob> = blocking(move || {
            entries
                .iter()
                .map(|blob| {
                    let range = blob.offset as usize..(blob.offset + blob.length) as usize;
                    let stored = bytes.get(range).ok_or_else(|| {
                        Error::corrupt(&path, format!("blob {} lies past the pack's end", blob.id))
                    })?;
                    open_blob(
                        key_repo.key(),
                        envelope,
                        blob.blob_type,
                        stored,
                        blob.uncompressed_length,
                        &blob.id,
                    )
                    .map_err(|e| e.in_file(&path))?
                    .encode(
                        &key_repo.blob_key()?,
                        blob.blob_type,
                        blob.id,
                        key_repo.compression(),
                    )
                })
                .collect()
        })
        .await?;
        report.packs_rewritten += 1;
        report.bytes_rewritten += pack.blobs.iter().map(|b| u64::from(b.length)).sum::<u64>();
        for blob in resealed {
            report.blobs_rewritten += 1;
            batch.add(repo, blob).await?;
        }
        batch.old_packs.push(pack.id);
        batch.old_bytes += pack.blobs.iter().map(|b| u64::from(b.length)).sum::<u64>();
        if batch.old_bytes >= BATCH_BYTES {
            keep(lease, &mut refreshed).await?;
            report.marks.extend(batch.commit(repo).await?);
        }
    }
    keep(lease, &mut refreshed).await?;
    report.marks.extend(batch.commit(repo).await?);

    for meta in repo.list_index_files().await? {
        let id = id_from_path(&meta.path)?;
        let sealed = repo.read_raw(&meta.path).await?;
        if envelope_key_id(&sealed) == Some(current) {
            continue;
        }
        keep(lease, &mut refreshed).await?;
        let file = repo.load_index_file(&id).await?;
        repo.save_index(&file).await?;
        delete_if_present(repo, &format!("{INDEX_DIR}/{id}")).await?;
        report.index_files_resealed += 1;
    }
    keep(lease, &mut refreshed).await?;
    reseal_snapshots(repo, current, &mut report).await?;
    keep(lease, &mut refreshed).await?;
    reseal_hold_records(repo, current, &mut report).await?;
    keep(lease, &mut refreshed).await?;
    reseal_marks(repo, current, &mut report).await?;
    report.config_resealed = reseal_config(repo, current).await?;
    tracing::info!(
        packs = report.packs_rewritten,
        index_files = report.index_files_resealed,
        "re-encrypted under data key {current}"
    );
    current_packs.extend(batch.written);
    Ok((report, current_packs))
}

/// Seals every snapshot under an older key again: the new file first, then
/// each active hold placed again on the new ID (same reason and end, in the
/// name of whoever placed it) and released on the old one, then the old
/// file deleted. At every moment the held snapshot's data is named by a
/// held snapshot; a run killed in between finds the new file again by its
/// contents rather than writing another one.
async fn reseal_snapshots(
    repo: &Repository,
    current: u32,
    report: &mut ReencryptReport,
) -> Result<()> {
    let snapshots = repo.list_snapshots().await?;
    let mut under_current = Vec::new();
    let mut under_old = Vec::new();
    for (id, snapshot) in snapshots {
        let sealed = repo.read_raw(&format!("{SNAPSHOTS_DIR}/{id}")).await?;
        if envelope_key_id(&sealed) == Some(current) {
            under_current.push((id, snapshot));
        } else {
            under_old.push((id, snapshot));
        }
    }
    for (old, snapshot) in under_old {
        let mut resealed = snapshot.clone();
        resealed.original = Some(snapshot.original.unwrap_or(old));
        let new = match under_current.iter().find(|(_, s)| *s == resealed) {
            Some((id, _)) => *id,
            None => {
                let id = repo.save_snapshot(&resealed).await?;
                under_current.push((id, resealed));
                id
            }
        };
        let now = jiff::Timestamp::now();
        // Every placement in force moves, not only the longest-lasting one
        // `active_holds` reports: each carries its own reason and end.
        let history = hold::history(repo).await?;
        let in_force: Vec<&hold::HoldRecord> = hold::placements_in_force(&history, now)
            .map(|(_, record)| record)
            .collect();
        let on_new: Vec<&&hold::HoldRecord> =
            in_force.iter().filter(|h| h.snapshot == new).collect();
        for held in in_force.iter().filter(|h| h.snapshot == old) {
            let reason = format!("{} (moved from {old} by key reencrypt)", held.reason);
            let already = on_new
                .iter()
                .any(|h| h.reason == reason && h.until == held.until);
            if !already {
                let actor = hold::Actor {
                    hostname: held.hostname.clone(),
                    username: held.username.clone(),
                    now,
                };
                hold::place(repo, &[new], &reason, held.until, &actor).await?;
                report.holds_moved += 1;
            }
        }
        if in_force.iter().any(|h| h.snapshot == old) {
            let actor = hold::Actor {
                hostname: nix::unistd::gethostname()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                username: String::new(),
                now,
            };
            let reason = format!("moved to {new} by key reencrypt");
            hold::release(repo, &[old], &reason, &actor).await?;
        }
        delete_if_present(repo, &format!("{SNAPSHOTS_DIR}/{old}")).await?;
        report
            .snapshots
            .push(crate::rewrite::Rewritten { old, new });
    }
    Ok(())
}

/// Seals every hold record under an older key again, placements first,
/// then releases with `ends` naming the placements' new IDs (also releases
/// already under the current key that name an old placement), and deletes the
/// old records only once all new ones are written. Until then a placement
/// and its copy are both there; a copy whose release is not written yet
/// holds its snapshot, so an interrupted run only ever holds more. A resumed
/// run recognises a record already copied by its contents.
async fn reseal_hold_records(
    repo: &Repository,
    current: u32,
    report: &mut ReencryptReport,
) -> Result<()> {
    let history = hold::history(repo).await?;
    let mut under_current: Vec<(Id, &hold::HoldRecord)> = Vec::new();
    let mut under_old: Vec<(Id, &hold::HoldRecord)> = Vec::new();
    for (id, record) in &history {
        let sealed = repo.read_raw(&format!("{}/{id}", hold::HOLDS_DIR)).await?;
        if envelope_key_id(&sealed) == Some(current) {
            under_current.push((*id, record));
        } else {
            under_old.push((*id, record));
        }
    }
    // A release under the current key that ends an old placement (one
    // written by `reseal_snapshots` when it moved a hold) must name the
    // placement's new ID too, so it is copied as well.
    let old_ids: HashSet<Id> = under_old.iter().map(|(id, _)| *id).collect();
    under_old.extend(
        under_current
            .iter()
            .filter(|(_, record)| record.ends.iter().any(|end| old_ids.contains(end)))
            .copied()
            .collect::<Vec<_>>(),
    );
    // Placements before releases, so a release's placements are mapped.
    under_old.sort_by_key(|(_, record)| record.action == hold::HoldAction::Release);
    let mut renamed: HashMap<Id, Id> = HashMap::new();
    let mut written: Vec<(Id, hold::HoldRecord)> = Vec::new();
    for (old, record) in &under_old {
        let mut copy = (*record).clone();
        for end in &mut copy.ends {
            if let Some(new) = renamed.get(end) {
                *end = *new;
            }
        }
        let existing = under_current
            .iter()
            .find(|(_, r)| **r == copy)
            .map(|(id, _)| *id)
            .or_else(|| written.iter().find(|(_, r)| *r == copy).map(|(id, _)| *id));
        let new = match existing {
            Some(id) => id,
            None => {
                let id =
                    crate::records::save(repo, ObjectKind::Hold, hold::HOLDS_DIR, &copy).await?;
                written.push((id, copy));
                id
            }
        };
        renamed.insert(*old, new);
    }
    for (old, _) in &under_old {
        delete_if_present(repo, &format!("{}/{old}", hold::HOLDS_DIR)).await?;
        report.hold_records_resealed += 1;
    }
    Ok(())
}

/// Seals every deletion mark under an older key again (the same packs and
/// time, so the sweep is due when it was), new mark first.
async fn reseal_marks(repo: &Repository, current: u32, report: &mut ReencryptReport) -> Result<()> {
    for (id, mark) in list_marks(repo).await? {
        let path = format!("{MARKS_DIR}/{id}");
        let Ok(sealed) = repo.read_raw(&path).await else {
            continue; // swept meanwhile
        };
        if envelope_key_id(&sealed) == Some(current) {
            continue;
        }
        save_mark(repo, &mark).await?;
        delete_if_present(repo, &path).await?;
        report.marks_resealed += 1;
    }
    Ok(())
}

/// Seals `config` under the current key if it is not. `config` is the one
/// object with a fixed name; `put` replaces it atomically, so readers see
/// the old or the new envelope, each opening with the same keyring.
async fn reseal_config(repo: &Repository, current: u32) -> Result<bool> {
    let sealed = repo.read_raw(CONFIG_PATH).await?;
    if envelope_key_id(&sealed) == Some(current) {
        return Ok(false);
    }
    let worker = repo.clone();
    let resealed = blocking(move || {
        Ok(worker
            .key()
            .seal(ObjectKind::Config, &worker.config().encode())?)
    })
    .await?;
    // Under the prune lease no erasure can begin meanwhile, so a check
    // before the write is enough (docs/FORMAT.md §20).
    repo.ensure_sealing_key_kept().await?;
    repo.backend().put(CONFIG_PATH, resealed.into()).await?;
    Ok(true)
}

/// The data key id of one stored blob in a pack's bytes.
pub(crate) fn stored_key_id(pack: &[u8], blob: &PackEntry) -> Option<u32> {
    let start = blob.offset as usize;
    envelope_key_id(pack.get(start..start.checked_add(blob.length as usize)?)?)
}

/// Whether every blob of a pack sealed as `envelope` (`bytes`, its
/// `blobs`) is under the data key `current`: a format-2 pack names its key
/// (`bytes` are not looked at), a format-1 pack's blobs each name theirs.
pub(crate) fn pack_under_key(
    envelope: BlobEnvelope,
    bytes: &[u8],
    blobs: &[PackEntry],
    current: u32,
) -> bool {
    match envelope {
        BlobEnvelope::Pack(key) => key.key_id == current,
        BlobEnvelope::PerBlob => blobs
            .iter()
            .all(|blob| stored_key_id(bytes, blob) == Some(current)),
    }
}

/// Re-sealed blobs on their way into new packs, and the old packs they
/// replace.
#[derive(Default)]
struct Batch {
    writers: [Option<PackWriter>; 2],
    saved: Vec<IndexPack>,
    old_packs: Vec<Id>,
    old_bytes: u64,
    /// Every new pack this run wrote (all under the current key).
    written: Vec<Id>,
}

impl Batch {
    async fn add(&mut self, repo: &Repository, blob: EncodedBlob) -> Result<()> {
        let slot = usize::from(blob.blob_type == crate::blob::BlobType::Tree);
        let writer = self.writers[slot]
            .get_or_insert_with(|| PackWriter::new(blob.blob_type, Arc::clone(&blob.key)));
        writer.add(&blob)?;
        if writer.len() >= repo.config().pack_size as usize {
            let full = self.writers[slot].take().expect("just used");
            self.saved.push(save_writer(repo.clone(), full).await?);
        }
        Ok(())
    }

    /// New packs, their index, then the mark naming the old packs: the
    /// order prune's repack uses, so no blob is ever only in a marked pack.
    async fn commit(&mut self, repo: &Repository) -> Result<Option<Id>> {
        for writer in self.writers.iter_mut().filter_map(Option::take) {
            self.saved.push(save_writer(repo.clone(), writer).await?);
        }
        self.written.extend(self.saved.iter().map(|pack| pack.id));
        if !self.saved.is_empty() {
            repo.save_indexes(IndexFile {
                packs: std::mem::take(&mut self.saved),
            })
            .await?;
        }
        if self.old_packs.is_empty() {
            return Ok(None);
        }
        let mark = DeletionMark {
            time: jiff::Timestamp::now(),
            hostname: nix::unistd::gethostname()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            packs: std::mem::take(&mut self.old_packs),
        };
        self.old_bytes = 0;
        Ok(Some(save_mark(repo, &mark).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_key_ids_are_read_from_bytes_one_to_five() {
        assert_eq!(envelope_key_id(&[1, 7, 0, 0, 0, 9]), Some(7));
        assert_eq!(envelope_key_id(&[1, 0, 1, 0, 0]), Some(256));
        assert_eq!(envelope_key_id(&[1, 7, 0]), None);
        let blob = PackEntry {
            blob_type: crate::blob::BlobType::Data,
            id: Id::storage_id(b"x"),
            offset: 2,
            length: 5,
            uncompressed_length: None,
        };
        assert_eq!(stored_key_id(&[0, 0, 1, 3, 0, 0, 0], &blob), Some(3));
        assert_eq!(stored_key_id(&[0, 0, 1, 3], &blob), None);
    }
}
