//! Cryptographic erasure (`arca prune --erase`): destroys every data key
//! but the current one, so that data sealed under them cannot be decrypted
//! any more, not even from copies of the data storage made before
//! (docs/FORMAT.md §20 says what that guarantees in each setup).
//!
//! A run prunes, re-encrypts what is still under an old key
//! ([`crate::rekey`]), and then checks whether any pack still in storage
//! holds a blob under an old key: the packs re-encryption replaced wait in
//! a deletion mark for the grace period (docs/FORMAT.md §16), and a
//! resurrected one would need its key. While any waits, nothing is
//! destroyed and the report says until when ([`Waiting`]). Otherwise, under
//! the prune's lease:
//!
//! 1. audit records still under a data key are sealed again under the audit
//!    key (which erasure keeps), oldest first, links remapped, each naming
//!    its old ID in `resealed_from`; then the old records are deleted;
//! 2. a keyring holding only the current data key is written under a fresh
//!    keyring key: to clients that opened the repository before the last
//!    rotation, a keyring they cannot open, which makes them refuse to
//!    write anything more under their key (`fence.rs`); after half the
//!    grace floor, what such clients wrote before they noticed is looked
//!    for, and if there is any the run stops there (the next run
//!    re-encrypts it); then a key file for the password in use wrapping
//!    that material;
//! 3. the key file in use (and other key files, only when asked) is deleted,
//!    then every other keyring.
//!
//! Every step writes before it deletes, so a process killed at any point
//! leaves a repository that opens with the password in use (through the
//! old key file and keyrings, or the new ones), and a rerun finishes: opened
//! with the new key file, it finds only the old keyrings left over (sealed
//! under another keyring key) and deletes them.

use std::collections::{BTreeMap, HashMap, HashSet};

use arca_crypto::{AUDIT_KEY_ID, KeyAccess, KeyFile, MasterKey, ObjectKind};
use bytes::Bytes;
use zeroize::Zeroizing;

use crate::audit::{AUDIT_DIR, AuditRecord};
use crate::blob::BlobEnvelope;
use crate::fence::is_foreign_keyring;
use crate::hold::HOLDS_DIR;
use crate::keys::NewKey;
use crate::marks::MARKS_DIR;
use crate::marks::{delete_if_present, list_marks};
use crate::pack::PackEntry;
use crate::prune::{PruneOptions, PruneReport};
use crate::rekey::{ReencryptReport, envelope_key_id, pack_under_key};
use crate::repository::{
    CONFIG_PATH, DATA_DIR, INDEX_DIR, KEYRING_DIR, KEYS_DIR, SNAPSHOTS_DIR, blocking, id_from_path,
};
use crate::{Error, Id, Repository, Result, lease, records};

/// What to erase with.
pub struct EraseOptions<'a> {
    /// The prune that runs first (its grace period is the wait).
    pub prune: PruneOptions,
    /// The key file that replaces the one in use: its password must be the
    /// password the repository was opened with (leftover key files of an
    /// interrupted run are recognised by it).
    pub new_key: NewKey<'a>,
    /// Also delete key files other than the one in use (their passwords are
    /// unknown, so they cannot be rewritten, and they hold the old keys).
    pub remove_other_keys: bool,
}

/// Packs that still hold blobs under an old data key: nothing is destroyed
/// until they are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    /// Such packs still in storage (marked for deletion, or in no index).
    pub packs: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// When the last of their marks is due, so a prune after it deletes
    /// them and a `prune --erase` after it can finish; `None` when some are
    /// not marked yet (the next prune marks them), or when they, or the
    /// files below, were written by a client that opened the repository
    /// before the last rotation while this run went on (the next run
    /// re-encrypts them).
    pub due: Option<jiff::Timestamp>,
    /// Index files, snapshots, hold records and deletion marks (and the
    /// config) found sealed under another key than the kept one after this
    /// run announced itself: written meanwhile by a client that opened the
    /// repository before the last rotation.
    pub files: u64,
}

/// What `prune --erase` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EraseReport {
    /// The prune that ran first.
    pub prune: PruneReport,
    /// The re-encryption that ran after it.
    pub reencrypt: ReencryptReport,
    /// Set when old packs are still in storage, or files under an old key
    /// were written while the run went on: then nothing was destroyed.
    pub waiting: Option<Waiting>,
    /// Data key ids destroyed (the erased epochs); empty when a run only
    /// finished deleting the old keyrings of an interrupted one.
    pub destroyed: Vec<u32>,
    /// The data key kept (current).
    pub kept: u32,
    /// The key file written for the password in use.
    pub key_file: Option<Id>,
    /// The keyring written, holding only the kept key.
    pub keyring: Option<Id>,
    /// Key files deleted (the old one in use, leftovers of an interrupted
    /// run, and with `remove_other_keys` all others).
    pub key_files_removed: Vec<Id>,
    /// Old keyring objects deleted.
    pub keyrings_deleted: u64,
    /// Audit records sealed again under the audit key.
    pub audit_records_resealed: u64,
}

/// Erases every data key of `repo` but the current one; see the module
/// docs. Needs a full-access key. Errors before changing anything:
/// [`Error::NothingToErase`], [`Error::OtherKeysHoldOldKeys`].
pub async fn erase(repo: &Repository, opts: &EraseOptions<'_>) -> Result<EraseReport> {
    repo.require_full_access("prune --erase")?;
    if opts.prune.dry_run {
        return Err(Error::InvalidOptions(
            "--erase cannot be combined with --dry-run".to_owned(),
        ));
    }
    let current = repo.key().current_data_key_id();
    let old_keys: Vec<u32> = repo
        .key()
        .data_key_ids()
        .into_iter()
        .filter(|id| *id != current)
        .collect();
    let keyrings = load_keyrings(repo).await?;
    let foreign = foreign_keyrings(repo, &keyrings).await?;
    if old_keys.is_empty() && foreign.is_empty() {
        return Err(Error::NothingToErase { current });
    }
    let (leftovers, others) = other_key_files(repo, opts.new_key.password).await?;
    if !others.is_empty() && !opts.remove_other_keys {
        return Err(Error::OtherKeysHoldOldKeys { ids: others });
    }

    let mut report = EraseReport {
        kept: current,
        ..EraseReport::default()
    };
    report.prune = crate::prune::prune(repo, &opts.prune).await?;
    let (reencrypt, mut current_packs) = crate::rekey::reencrypt_data_checked(repo).await?;
    report.reencrypt = reencrypt;

    let mut held = lease::acquire(repo, "prune").await?;
    let result = async {
        if let Some(waiting) = old_packs(repo, current, &opts.prune, &mut current_packs).await? {
            report.waiting = Some(waiting);
            return Ok(());
        }
        held.ensure_valid()?;
        report.audit_records_resealed = reseal_audit_trail(repo).await?;
        held.ensure_valid()?;
        // A key file opened during an interrupted run's last step already
        // holds only the current key under its own keyring key.
        let fresh = if old_keys.is_empty() && repo.key().has_keyring_key() {
            None
        } else {
            let (keyring, key_file) = seal_kept_key(repo, &opts.new_key).await?;
            let keyring_path = format!("{KEYRING_DIR}/{}", Id::storage_id(&keyring));
            repo.backend().put(&keyring_path, keyring.clone()).await?;
            if let Some(late) =
                late_writes(repo, current, &opts.prune, &mut current_packs, &mut held).await?
            {
                // Nothing opens with this keyring yet: take the
                // announcement back, so writers are not refused in vain.
                if let Err(error) = delete_if_present(repo, &keyring_path).await {
                    tracing::warn!(%error, "could not remove the keyring of a stopped erasure; the next run deletes it");
                }
                report.waiting = Some(late);
                return Ok(());
            }
            held.ensure_valid()?;
            let key_file_id = Id::storage_id(&key_file);
            repo.backend()
                .put(&format!("{KEYS_DIR}/{key_file_id}"), key_file)
                .await?;
            Some((key_file_id, Id::storage_id(&keyring)))
        };
        let keep_keyring = match &fresh {
            Some((key_file, keyring)) => {
                report.key_file = Some(*key_file);
                report.keyring = Some(*keyring);
                report.destroyed.clone_from(&old_keys);
                HashSet::from([format!("{KEYRING_DIR}/{keyring}")])
            }
            None => keyrings
                .iter()
                .map(|(path, _)| path.clone())
                .filter(|path| !foreign.contains(path))
                .collect(),
        };
        // A rotation meanwhile wrote a keyring under the old keyring key,
        // whose key files go next: its data key would be unreachable. Stop
        // before deleting anything. (One written after this listing is
        // reported by the rotation itself, and nothing is sealed under its
        // key: docs/FORMAT.md §20.)
        let known: HashSet<&String> = keyrings.iter().map(|(path, _)| path).collect();
        for meta in repo.backend().list(&format!("{KEYRING_DIR}/")).await? {
            if !known.contains(&meta.path) && !keep_keyring.contains(&meta.path) {
                return Err(Error::KeyringChanged { keyring: meta.path });
            }
        }
        held.ensure_valid()?;
        let mut doomed = leftovers;
        if fresh.is_some() {
            doomed.push(repo.key_file_id());
        }
        if opts.remove_other_keys {
            doomed.extend(others);
        }
        for id in doomed {
            delete_if_present(repo, &format!("{KEYS_DIR}/{id}")).await?;
            report.key_files_removed.push(id);
        }
        for (path, _) in &keyrings {
            if !keep_keyring.contains(path) {
                delete_if_present(repo, path).await?;
                report.keyrings_deleted += 1;
            }
        }
        tracing::info!(
            destroyed = ?report.destroyed,
            keyrings = report.keyrings_deleted,
            "erased the old data keys"
        );
        Ok(())
    }
    .await;
    if let Err(error) = held.release().await {
        tracing::warn!(%error, "could not remove the erasure's lease; it expires by itself");
    }
    result.map(|()| report)
}

/// Path and bytes of every keyring object.
async fn load_keyrings(repo: &Repository) -> Result<Vec<(String, Bytes)>> {
    let mut keyrings = Vec::new();
    for meta in repo.backend().list(&format!("{KEYRING_DIR}/")).await? {
        if id_from_path(&meta.path).is_ok() {
            let bytes = repo.backend().get(&meta.path).await?;
            keyrings.push((meta.path, bytes));
        }
    }
    Ok(keyrings)
}

/// Paths of the keyrings sealed under another keyring key than the one of
/// the key in use (old keyrings an interrupted erasure left behind).
async fn foreign_keyrings(
    repo: &Repository,
    keyrings: &[(String, Bytes)],
) -> Result<HashSet<String>> {
    let (worker, keyrings) = (repo.clone(), keyrings.to_vec());
    blocking(move || {
        let mut foreign = HashSet::new();
        for (path, bytes) in &keyrings {
            if is_foreign_keyring(worker.key(), path, bytes)? {
                foreign.insert(path.clone());
            }
        }
        Ok(foreign)
    })
    .await
}

/// The key files other than the one in use, split into those that open
/// with `password` as full keys (left by an interrupted erasure: replaced
/// by its new key file) and the rest.
async fn other_key_files(repo: &Repository, password: &[u8]) -> Result<(Vec<Id>, Vec<Id>)> {
    let in_use = repo.key_file_id();
    let (mut leftovers, mut others) = (Vec::new(), Vec::new());
    for meta in repo.backend().list(&format!("{KEYS_DIR}/")).await? {
        let Ok(id) = id_from_path(&meta.path) else {
            continue;
        };
        if id == in_use {
            continue;
        }
        let bytes = repo.backend().get(&meta.path).await?;
        let password = Zeroizing::new(password.to_vec());
        let ours = blocking(move || {
            Ok(KeyFile::from_bytes(&bytes)
                .is_ok_and(|file| file.access() == KeyAccess::Full && file.open(&password).is_ok()))
        })
        .await?;
        if ours {
            leftovers.push(id);
        } else {
            others.push(id);
        }
    }
    Ok((leftovers, others))
}

/// Packs in storage that hold a blob under another key than `current`.
/// Packs in `current_packs` are known to hold none (the re-encryption read
/// or wrote them); the others are read here (those written since, by
/// writers or another prune, and the old ones waiting for deletion), and
/// those found current join `current_packs`.
async fn old_packs(
    repo: &Repository,
    current: u32,
    prune: &PruneOptions,
    current_packs: &mut HashSet<Id>,
) -> Result<Option<Waiting>> {
    let marks = list_marks(repo).await?;
    let mut indexed: HashMap<Id, (BlobEnvelope, Vec<PackEntry>)> = HashMap::new();
    for meta in repo.list_index_files().await? {
        for pack in repo
            .load_index_file(&id_from_path(&meta.path)?)
            .await?
            .packs
        {
            indexed
                .entry(pack.id)
                .or_insert((pack.envelope, pack.blobs));
        }
    }
    let mut waiting = Waiting::default();
    let mut unmarked = false;
    let grace = jiff::SignedDuration::try_from(prune.grace)
        .map_err(|e| Error::InvalidOptions(format!("grace period: {e}")))?;
    for meta in repo.backend().list(&format!("{DATA_DIR}/")).await? {
        let Ok(id) = id_from_path(&meta.path) else {
            continue;
        };
        if current_packs.contains(&id) {
            continue;
        }
        let (envelope, entries) = match indexed.get(&id) {
            Some(indexed) => indexed.clone(),
            // A header this key cannot open counts as old: a prune marks
            // and deletes the pack (it is in no index).
            None => match repo.load_pack_header(&id).await {
                Ok(header) => (header.envelope, header.entries),
                Err(_) => (BlobEnvelope::PerBlob, Vec::new()),
            },
        };
        let bytes = repo.backend().get(&meta.path).await?;
        let old = entries.is_empty() || !pack_under_key(envelope, &bytes, &entries, current);
        if !old {
            current_packs.insert(id);
            continue;
        }
        waiting.packs += 1;
        waiting.bytes += bytes.len() as u64;
        let due = marks
            .iter()
            .filter(|(_, mark)| mark.packs.contains(&id))
            .map(|(_, mark)| mark.time + grace)
            .min();
        match due {
            Some(due) => waiting.due = waiting.due.max(Some(due)),
            None => unmarked = true,
        }
    }
    if unmarked {
        waiting.due = None;
    }
    Ok((waiting.packs > 0).then_some(waiting))
}

/// Seals every audit record under a data key again under the audit key,
/// and every record that links to one (its links change), oldest first
/// with links remapped; then deletes the old records. A rerun finds copies
/// already written by their `resealed_from` (and deletes what they copy).
/// Returns how many records were replaced.
async fn reseal_audit_trail(repo: &Repository) -> Result<u64> {
    let repo = repo.without_cache();
    let loaded = records::load_all(&repo, AUDIT_DIR, |repo, path, stored| {
        let record: AuditRecord = records::decode(repo, ObjectKind::AuditRecord, path, stored)?;
        Ok((record, envelope_key_id(stored) == Some(AUDIT_KEY_ID)))
    })
    .await?;
    let readable: BTreeMap<Id, (AuditRecord, bool)> = loaded
        .into_iter()
        .filter_map(|(id, record)| match record {
            Ok(record) => Some((id, record)),
            Err(error) => {
                tracing::warn!(record = %id, %error, "leaving an unreadable audit record as it is");
                None
            }
        })
        .collect();
    let copies: HashMap<Id, Id> = readable
        .iter()
        .filter_map(|(id, (record, _))| record.resealed_from.map(|old| (old, *id)))
        .collect();
    // Oldest first: a record comes after every record it links to.
    let mut order: Vec<Id> = Vec::new();
    let mut rewrite: HashSet<Id> = HashSet::new();
    let mut placed: HashSet<Id> = HashSet::new();
    let mut remaining: Vec<Id> = readable.keys().copied().collect();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|id| {
            let (record, under_audit_key) = &readable[id];
            let ready = record
                .previous
                .iter()
                .all(|p| placed.contains(p) || !readable.contains_key(p));
            if !ready {
                return true;
            }
            // Under a data key, linking to a record sealed again, or
            // already copied by an interrupted run (then only deleted).
            if !under_audit_key
                || copies.contains_key(id)
                || record.previous.iter().any(|p| rewrite.contains(p))
            {
                rewrite.insert(*id);
                order.push(*id);
            }
            placed.insert(*id);
            false
        });
        if remaining.len() == before {
            // A cycle cannot be made with hashes; seal the rest as they are.
            for id in remaining.drain(..) {
                if !readable[&id].1 {
                    rewrite.insert(id);
                    order.push(id);
                }
            }
        }
    }
    let mut renamed: HashMap<Id, Id> = HashMap::new();
    for old in &order {
        let new = match copies.get(old) {
            Some(copy) => *copy,
            None => {
                let mut copy = readable[old].0.clone();
                for link in &mut copy.previous {
                    if let Some(new) = renamed.get(link) {
                        *link = *new;
                    }
                }
                copy.resealed_from = Some(copy.resealed_from.unwrap_or(*old));
                records::save(&repo, ObjectKind::AuditRecord, AUDIT_DIR, &copy).await?
            }
        };
        renamed.insert(*old, new);
    }
    for old in &order {
        delete_if_present(&repo, &format!("{AUDIT_DIR}/{old}")).await?;
    }
    Ok(order.len() as u64)
}

/// The keyring and the key file of the kept key material (only the current
/// data key, a new keyring key), sealed and not yet stored.
async fn seal_kept_key(repo: &Repository, new_key: &NewKey<'_>) -> Result<(Bytes, Bytes)> {
    let keyrings: Vec<Bytes> = load_keyrings(repo)
        .await?
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let worker = repo.clone();
    let password = Zeroizing::new(new_key.password.to_vec());
    let (kdf, hostname, username) = (
        new_key.kdf,
        new_key.hostname.clone(),
        new_key.username.clone(),
    );
    blocking(move || {
        let all: Vec<&[u8]> = keyrings.iter().map(|bytes| &bytes[..]).collect();
        let generation = worker.key().duplicate()?.adopt_keyrings(&all)?.generation;
        let (kept, _) = worker.key().erased()?;
        let keyring = kept.keyring(generation + 1)?;
        let key_file = KeyFile::create_with_access(
            &kept,
            &password,
            kdf,
            &hostname,
            &username,
            KeyAccess::Full,
        )?;
        check_kept(&kept, worker.key())?;
        Ok((Bytes::from(keyring), Bytes::from(key_file.to_bytes())))
    })
    .await
}

/// After the erasure's keyring is stored (which announces it to every
/// writer: docs/FORMAT.md §20): waits half the grace floor, so that every
/// write a client checked before the announcement has landed, then looks
/// for what such clients wrote under another key than `current` since the
/// checks before it: packs ([`old_packs`]) and files every client must be
/// able to read. Some: nothing may be destroyed yet.
async fn late_writes(
    repo: &Repository,
    current: u32,
    prune: &PruneOptions,
    current_packs: &mut HashSet<Id>,
    held: &mut lease::HeldLease,
) -> Result<Option<Waiting>> {
    tokio::time::sleep(repo.grace_floor() / 2).await;
    held.refresh().await?;
    let mut waiting = old_packs(repo, current, prune, current_packs)
        .await?
        .unwrap_or_default();
    if envelope_key_id(&repo.read_raw(CONFIG_PATH).await?) != Some(current) {
        waiting.files += 1;
    }
    for dir in [INDEX_DIR, SNAPSHOTS_DIR, HOLDS_DIR, MARKS_DIR] {
        for meta in repo.backend().list(&format!("{dir}/")).await? {
            if id_from_path(&meta.path).is_ok()
                && envelope_key_id(&repo.read_raw(&meta.path).await?) != Some(current)
            {
                tracing::warn!(
                    path = meta.path,
                    "written under an old key during the erasure"
                );
                waiting.files += 1;
            }
        }
    }
    if waiting.files > 0 {
        // The next run re-encrypts them; no mark makes it wait.
        waiting.due = None;
    }
    Ok((waiting.packs > 0 || waiting.files > 0).then_some(waiting))
}

/// The kept key must seal what the repository seals now (the config, new
/// data): the same current data key.
fn check_kept(kept: &MasterKey, key: &MasterKey) -> Result<()> {
    let probe = key.seal(ObjectKind::Config, b"erase probe")?;
    kept.open(ObjectKind::Config, &probe)?;
    Ok(())
}
