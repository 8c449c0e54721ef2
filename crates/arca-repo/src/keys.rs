//! Key management: the key files in `keys/`, each wrapping the one master key
//! under its own password (docs/FORMAT.md §6).
//!
//! Adding a key writes a new key file; changing a password adds a key file
//! for the new password and then removes the old one (so a crash in between
//! leaves both passwords working, never neither). Every change needs a
//! full-access key ([`Repository::require_full_access`]); the repository's
//! last key is never removed, nor the key in use unless forced.

use arca_crypto::{KdfParams, KeyAccess, KeyFile};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use zeroize::Zeroizing;

use crate::repository::{KEYRING_DIR, KEYS_DIR, blocking, id_from_path};
use crate::{Error, Id, Repository, Result};

/// How many key files are read at once by [`list`].
const LIST_CONCURRENCY: usize = 8;

/// What `arca key list` shows of one key file (nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// The key file's ID (`keys/<id>`).
    pub id: Id,
    /// Whether this is the key the repository was opened with.
    pub current: bool,
    /// When the key file was written.
    pub created: jiff::Timestamp,
    /// Host name recorded in the key file (informational).
    pub hostname: String,
    /// User name recorded in the key file (informational).
    pub username: String,
    /// Whether the key is append-only.
    pub append_only: bool,
}

/// A key file to write: its password, the names recorded in it and its access.
pub struct NewKey<'a> {
    /// The new key's password.
    pub password: &'a [u8],
    /// Recorded in the key file.
    pub hostname: String,
    /// Recorded in the key file.
    pub username: String,
    /// What the new key may do.
    pub access: KeyAccess,
    /// Argon2id cost of the new key file.
    pub kdf: KdfParams,
}

impl std::fmt::Debug for NewKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("hostname", &self.hostname)
            .field("username", &self.username)
            .field("access", &self.access)
            .field("kdf", &self.kdf)
            .finish_non_exhaustive()
    }
}

/// Every key file, oldest first. Files that do not parse as key files are
/// skipped with a warning (opening skips them too).
pub async fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let metas = repo.backend().list(&format!("{KEYS_DIR}/")).await?;
    let current = repo.key_file_id();
    let loaded: Vec<Option<KeyInfo>> = futures::stream::iter(metas)
        .map(|meta| async move {
            let Ok(id) = id_from_path(&meta.path) else {
                tracing::warn!(path = %meta.path, "skipping a key file not named by an ID");
                return Ok::<_, Error>(None);
            };
            let bytes = repo.backend().get(&meta.path).await?;
            match KeyFile::from_bytes(&bytes) {
                Ok(file) => Ok(Some(KeyInfo {
                    id,
                    current: id == current,
                    created: jiff::Timestamp::from_second(file.created())
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                    hostname: file.hostname().to_owned(),
                    username: file.username().to_owned(),
                    append_only: file.access() == KeyAccess::AppendOnly,
                })),
                Err(error) => {
                    tracing::warn!(path = %meta.path, %error, "skipping a damaged key file");
                    Ok(None)
                }
            }
        })
        .buffer_unordered(LIST_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let mut keys: Vec<KeyInfo> = loaded.into_iter().flatten().collect();
    keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    Ok(keys)
}

/// Writes a key file wrapping the repository's master key under
/// `new.password`; returns its ID.
pub async fn add(repo: &Repository, new: NewKey<'_>) -> Result<Id> {
    repo.require_full_access("key add")?;
    let password = Zeroizing::new(new.password.to_vec());
    let worker = repo.clone();
    let bytes = blocking(move || {
        let file = KeyFile::create_with_access(
            worker.key(),
            &password,
            new.kdf,
            &new.hostname,
            &new.username,
            new.access,
        )?;
        Ok(file.to_bytes())
    })
    .await?;
    let id = Id::storage_id(&bytes);
    repo.backend()
        .put(&format!("{KEYS_DIR}/{id}"), Bytes::from(bytes))
        .await?;
    Ok(id)
}

/// The key file whose ID is `spec` or starts with it.
pub async fn find(repo: &Repository, spec: &str) -> Result<Id> {
    let not_found = || Error::KeyNotFound {
        spec: spec.to_owned(),
    };
    let prefix = spec.to_ascii_lowercase();
    if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let metas = repo.backend().list(&format!("{KEYS_DIR}/")).await?;
    let mut matches = metas
        .iter()
        .filter_map(|meta| id_from_path(&meta.path).ok())
        .filter(|id| id.to_hex().starts_with(&prefix));
    let id = matches.next().ok_or_else(not_found)?;
    if matches.next().is_some() {
        return Err(Error::AmbiguousKey {
            spec: spec.to_owned(),
        });
    }
    Ok(id)
}

/// Removes key file `id`. Never the repository's last key; the key in use
/// only with `force` (the open repository keeps working, but that password
/// will not open it again).
pub async fn remove(repo: &Repository, id: &Id, force: bool) -> Result<()> {
    repo.require_full_access("key remove")?;
    let path = format!("{KEYS_DIR}/{id}");
    let metas = repo.backend().list(&format!("{KEYS_DIR}/")).await?;
    if !metas.iter().any(|meta| meta.path == path) {
        return Err(Error::KeyNotFound { spec: id.to_hex() });
    }
    if metas.len() == 1 {
        return Err(Error::LastKey { id: *id });
    }
    if *id == repo.key_file_id() && !force {
        return Err(Error::KeyInUse { id: *id });
    }
    repo.backend().delete(&path).await?;
    Ok(())
}

/// Replaces the key in use by one for `new.password` (with the same access):
/// adds the new key file, then removes the old one. Returns the new ID.
pub async fn change_password(repo: &Repository, new: NewKey<'_>) -> Result<Id> {
    repo.require_full_access("key passwd")?;
    let old = repo.key_file_id();
    let id = add(repo, new).await?;
    remove(repo, &old, true).await?;
    Ok(id)
}

/// Rotates the data key: writes a keyring in `keyring/` with a fresh data
/// key that every client opening the repository afterwards seals new data
/// with. Older data stays readable (its keys stay in the keyring); nothing
/// is re-encrypted. Returns the new data key's id and the keyring's ID.
/// The content-ID and chunker keys do not rotate (docs/FORMAT.md §20).
pub async fn rotate(repo: &Repository) -> Result<(u32, Id)> {
    repo.require_full_access("key rotate")?;
    let metas = repo.backend().list(&format!("{KEYRING_DIR}/")).await?;
    let mut keyrings = Vec::with_capacity(metas.len());
    for meta in &metas {
        if id_from_path(&meta.path).is_ok() {
            keyrings.push(repo.backend().get(&meta.path).await?);
        }
    }
    let worker = repo.clone();
    let (key_id, sealed) = blocking(move || {
        let mut key = worker.key().duplicate()?;
        let all: Vec<&[u8]> = keyrings.iter().map(|bytes| &bytes[..]).collect();
        let adopted = key.adopt_keyrings(&all)?;
        // A keyring this key cannot open is an erasure's: it destroys
        // every key it does not know, so one minted now would be lost.
        if adopted.foreign > 0 {
            return Err(Error::ErasureUnderWay { wrote: false });
        }
        Ok(key.rotate_into_keyring(adopted.generation + 1)?)
    })
    .await?;
    let id = Id::storage_id(&sealed);
    repo.backend()
        .put(&format!("{KEYRING_DIR}/{id}"), Bytes::from(sealed))
        .await?;
    // An erasure that began meanwhile either lists this keyring before it
    // deletes anything (and stops), or wrote its own keyring first, and then
    // no client can commit anything sealed under the new key: the fence of
    // docs/FORMAT.md §20 refuses it, since the config is not sealed under
    // it. The keyring stays either way (someone may have adopted it).
    if repo.foreign_keyring_exists().await? {
        return Err(Error::ErasureUnderWay { wrote: true });
    }
    Ok((key_id, id))
}
