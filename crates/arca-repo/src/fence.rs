//! The writers' side of cryptographic erasure (docs/FORMAT.md §20, "Writers
//! and erasure"): a client seals everything with the data key that was
//! current when it opened the repository, and an erasure destroys every
//! data key but the one current when *it* began. Before an erasure destroys
//! anything it writes its new keyring, a keyring no client that opened
//! earlier can open (a *foreign* one), waits half the grace floor, and then
//! looks for objects sealed under any other key than the one it keeps.
//!
//! A client therefore checks, before it writes an object other clients must
//! be able to read (index files, snapshots, hold records, deletion marks,
//! the config), that no erasure is about to destroy its key: while a
//! foreign keyring exists, its key survives only if it is the one the
//! config is sealed under (an erasure re-encrypts the config under the key
//! it keeps before it writes its keyring, and holds the prune lease, which
//! every other writer of the config needs, until it is done). A check
//! serves the writes that start within a quarter of the grace floor after
//! it; a write that ends half the floor or more after its check is checked
//! again afterwards and taken back if the key is doomed. So every such
//! object lands before the erasure's look (then the erasure sees it and
//! stops), or its writer refuses it ([`Error::SealingKeyErased`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use arca_crypto::{MasterKey, ObjectKind};
use bytes::Bytes;

use crate::marks::delete_if_present;
use crate::rekey::envelope_key_id;
use crate::repository::{CONFIG_PATH, KEYRING_DIR, blocking, id_from_path};
use crate::{Error, Repository, Result};

/// What a repository handle knows about its key's fate.
#[derive(Debug, Default)]
pub(crate) struct FenceState {
    inner: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    /// Whether each keyring seen is foreign to this handle's key.
    keyrings: HashMap<String, bool>,
    /// When the last check found the key safe.
    checked: Option<Instant>,
}

/// Whether `key`'s keyring key does not open the keyring `bytes` (stored
/// at `path`). A keyring of its own keyring key that does not authenticate
/// is an error naming it, as when opening the repository.
/// Blocking: call from the blocking pool.
pub(crate) fn is_foreign_keyring(key: &MasterKey, path: &str, bytes: &[u8]) -> Result<bool> {
    let mut probe = key.duplicate()?;
    let adopted = probe
        .adopt_keyrings(&[bytes])
        .map_err(|e| Error::corrupt(path, e))?;
    Ok(adopted.foreign > 0)
}

/// Whether objects sealed as `kind` must stay readable by every client, so
/// that one sealed under a destroyed key would break the repository.
/// (Audit records are under the audit key, which no erasure destroys; a
/// lease nobody can read is ignored; a pack no index names is garbage.)
pub(crate) fn is_fenced(kind: ObjectKind) -> bool {
    matches!(
        kind,
        ObjectKind::Index | ObjectKind::Snapshot | ObjectKind::Hold | ObjectKind::DeletionMark
    )
}

impl Repository {
    /// Fails with [`Error::SealingKeyErased`] if an erasure has begun that
    /// destroys the data key this handle seals with (see the module docs).
    /// Returns when the check was made, reusing a check made less than a
    /// quarter of the grace floor ago.
    pub(crate) async fn fence_check(&self) -> Result<Instant> {
        let fresh = self.grace_floor() / 4;
        if let Some(checked) = self.fence().checked
            && checked.elapsed() < fresh
        {
            return Ok(checked);
        }
        let started = Instant::now();
        self.ensure_sealing_key_kept().await?;
        self.fence().checked = Some(started);
        Ok(started)
    }

    /// Fails with [`Error::SealingKeyErased`] if an erasure has begun that
    /// destroys the data key this handle seals with: a keyring its key
    /// cannot open exists, and the config is sealed under another key.
    /// Reads the config only while a foreign keyring exists.
    pub async fn ensure_sealing_key_kept(&self) -> Result<()> {
        if !self.foreign_keyring_exists().await? {
            return Ok(());
        }
        let sealing = self.key().current_data_key_id();
        let config = self.backend().get(CONFIG_PATH).await?;
        if envelope_key_id(&config) == Some(sealing) {
            Ok(())
        } else {
            Err(Error::SealingKeyErased { key_id: sealing })
        }
    }

    /// Whether `keyring/` holds a keyring this handle's key cannot open: one
    /// an erasure wrote (it is running, was interrupted, or finished after
    /// this handle opened the repository). Lists `keyring/` and reads the
    /// keyrings not seen before.
    pub(crate) async fn foreign_keyring_exists(&self) -> Result<bool> {
        let metas = self.backend().list(&format!("{KEYRING_DIR}/")).await?;
        let mut foreign = false;
        for meta in metas {
            if id_from_path(&meta.path).is_err() {
                continue;
            }
            let known = self.fence().keyrings.get(&meta.path).copied();
            let is_foreign = match known {
                Some(known) => known,
                None => {
                    let bytes: Bytes = self.backend().get(&meta.path).await?;
                    let (repo, path) = (self.clone(), meta.path.clone());
                    let is_foreign =
                        blocking(move || is_foreign_keyring(repo.key(), &path, &bytes)).await?;
                    self.fence().keyrings.insert(meta.path, is_foreign);
                    is_foreign
                }
            };
            foreign |= is_foreign;
        }
        Ok(foreign)
    }

    /// Stores `sealed` at `path` if it is an object every client must be
    /// able to read ([`is_fenced`]) only while this handle's key is not
    /// being erased, and takes it back if the write ended too late to be
    /// sure an erasure saw it.
    pub(crate) async fn fenced_put(
        &self,
        kind: ObjectKind,
        path: &str,
        sealed: Bytes,
    ) -> Result<()> {
        if !is_fenced(kind) {
            return Ok(self.backend().put(path, sealed).await?);
        }
        let checked = self.fence_check().await?;
        self.backend().put(path, sealed).await?;
        if checked.elapsed() >= self.grace_floor() / 2 {
            // Only a check made after the write says whether an erasure
            // that began meanwhile will see it.
            let rechecked = Instant::now();
            if let Err(error) = self.ensure_sealing_key_kept().await {
                delete_if_present(self, path).await?;
                return Err(error);
            }
            self.fence().checked = Some(rechecked);
        }
        Ok(())
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, Known> {
        self.fence_state()
            .inner
            .lock()
            .expect("the erasure fence's lock is poisoned")
    }
}
