//! The master key and the envelope every stored object is sealed in.
//!
//! The byte layouts (envelope, master key material) are specified in the crate
//! docs; this module is their only implementation.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{BlobKey, BlobKeyId, Error, Id, Result};

/// Envelope format version written by this build (the first byte of every envelope).
const ENVELOPE_VERSION: u8 = 1;
/// `version u8 | key_id u32 LE`: the part of the header that is also AEAD associated data.
const HEADER_LEN: usize = 1 + 4;
/// Random per-object HKDF salt.
const SALT_LEN: usize = 16;
/// AES-GCM authentication tag.
const TAG_LEN: usize = 16;
/// Everything before the ciphertext: header, salt, nonce.
const PREFIX_LEN: usize = HEADER_LEN + SALT_LEN + NONCE_LEN;
/// HKDF `info` that binds derived keys to this use (per-object AES-256-GCM keys, format v1).
const OBJECT_KEY_INFO: &[u8] = b"arca v1 object key";

/// Bytes the envelope adds to a plaintext: 5 header + 16 salt + 12 nonce + 16 tag.
pub const SEAL_OVERHEAD: usize = PREFIX_LEN + TAG_LEN;

/// Version byte of master key material without a keyring key (written
/// before keyring keys existed; still read, and written for such keys).
const MATERIAL_VERSION_LEGACY: u8 = 1;
/// Version byte of master key material with a keyring key (see the crate docs).
const MATERIAL_VERSION: u8 = 2;
/// `version | id_key | chunker_key | current_key_id | key_count` (version 1).
const MATERIAL_FIXED_LEN: usize = 1 + 32 + 32 + 4 + 4;
/// Version 2 adds `keyring_key_id [16] | keyring_key [32]` after `chunker_key`.
const KEYRING_KEY_LEN: usize = KEYRING_KEY_ID_LEN + 32;
/// Length of a keyring key's public identifier.
const KEYRING_KEY_ID_LEN: usize = 16;
/// `key_id u32 LE | key [32]` per data key.
const MATERIAL_KEY_LEN: usize = 4 + 32;

/// Version byte of a serialised keyring (see the crate docs).
const KEYRING_VERSION: u8 = 1;
/// `version | generation | current_key_id | key_count`.
const KEYRING_FIXED_LEN: usize = 1 + 8 + 4 + 4;
/// HKDF `info` of the key that seals legacy keyrings (from `id_key | chunker_key`).
const KEYRING_KEY_INFO: &[u8] = b"arca v1 keyring key";
/// AEAD associated data of a legacy sealed keyring.
const KEYRING_AAD: &[u8] = b"arca keyring v1";
/// First bytes of a keyring sealed under a keyring key; a legacy keyring
/// starts with a random nonce instead (equal to this with probability 2^-64).
const KEYRING_MAGIC: &[u8; 8] = b"arcakr02";
/// `magic | keyring_key_id | nonce` before the ciphertext of a keyring.
const KEYRING_PREFIX_LEN: usize = KEYRING_MAGIC.len() + KEYRING_KEY_ID_LEN + NONCE_LEN;
/// HKDF `info` of the AES key derived from a keyring key.
const KEYRING_KEY_V2_INFO: &[u8] = b"arca v2 keyring key";
/// HKDF `info` of the audit key (from `id_key | chunker_key`, never rotated).
const AUDIT_KEY_INFO: &[u8] = b"arca v1 audit key";

/// The envelope key id that names the audit key rather than a data key:
/// audit records are sealed under a key that erasure never destroys (they
/// hold no file content; docs/FORMAT.md §18). No data key has this id.
pub const AUDIT_KEY_ID: u32 = u32::MAX;

/// What an encrypted object is; bound into the AEAD as associated data so one
/// kind of object can never be passed off as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ObjectKind {
    /// The repository `config` file.
    Config = 1,
    /// A data blob inside a pack.
    DataBlob = 2,
    /// A tree blob inside a pack.
    TreeBlob = 3,
    /// The header at the end of a pack.
    PackHeader = 4,
    /// A file in `index/`.
    Index = 5,
    /// A file in `snapshots/`.
    Snapshot = 6,
    /// A file in `locks/` (later issues).
    Lock = 7,
    /// A deletion mark in `marks/` (packs pending deletion by prune).
    DeletionMark = 8,
    /// A legal-hold record in `holds/`.
    Hold = 9,
    /// An audit-trail record in `audit/`.
    AuditRecord = 10,
    /// A data keyring in `keyring/`.
    Keyring = 11,
}

/// One entry of the data keyring.
#[derive(Clone, Zeroize)]
struct DataKey {
    id: u32,
    key: [u8; 32],
}

/// The key that seals keyrings (a key-encryption key). Unlike `id_key` and
/// `chunker_key` it can be replaced: an erasure writes its keyring under a
/// new one, so key files and keyrings from before do not open it.
#[derive(Clone, Zeroize)]
struct KeyringKey {
    /// Public identifier, stored in front of every keyring it seals.
    id: [u8; KEYRING_KEY_ID_LEN],
    key: [u8; 32],
}

/// What [`MasterKey::adopt_keyrings`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Adopted {
    /// The highest generation among the keyrings adopted, 0 for none.
    pub generation: u64,
    /// Keyrings sealed under another keyring key (or, for a key with a
    /// keyring key, legacy keyrings): left alone. After an erasure these are
    /// the old keyrings not yet deleted; for a key file from before an
    /// erasure, the keyring that replaced them.
    pub foreign: usize,
}

/// The repository's secret key material: content-ID key, chunker key and data
/// keys. Zeroized on drop; `Debug` prints nothing secret.
///
/// Data keys form a keyring: [`MasterKey::seal_into`] always uses the current
/// key, [`MasterKey::open`] uses whichever key the envelope names, so
/// [`MasterKey::rotate_data_key`] never requires rewriting existing objects.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    id_key: [u8; 32],
    chunker_key: [u8; 32],
    /// `None` for key material from before keyring keys (version 1): its
    /// keyrings are sealed under a key derived from `id_key | chunker_key`.
    keyring_key: Option<KeyringKey>,
    /// Sorted by strictly increasing `id`; never empty.
    data_keys: Vec<DataKey>,
    /// Id of the data key new envelopes are sealed with; always present in `data_keys`.
    current: u32,
    /// Blob keys derived lately, so readers derive one per pack salt, not per blob.
    #[zeroize(skip)]
    blob_keys: BlobKeyCache,
}

/// The blob keys a [`MasterKey`] derived most recently, newest last.
#[derive(Default)]
struct BlobKeyCache(std::sync::Mutex<Vec<std::sync::Arc<BlobKey>>>);

/// Blob keys kept: writers share one salt per session, so a few cover
/// every pack a reader has open at once.
const BLOB_KEY_CACHE_LEN: usize = 16;

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Fresh random key material from the OS RNG.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let mut key = MasterKey {
            id_key: [0; 32],
            chunker_key: [0; 32],
            keyring_key: Some(KeyringKey::generate(&rng)?),
            data_keys: Vec::with_capacity(1),
            current: 0,
            blob_keys: BlobKeyCache::default(),
        };
        fill_random(&rng, &mut key.id_key)?;
        fill_random(&rng, &mut key.chunker_key)?;
        let mut first = DataKey {
            id: 0,
            key: [0; 32],
        };
        fill_random(&rng, &mut first.key)?;
        key.data_keys.push(first);
        Ok(key)
    }

    /// Keyed content ID of a plaintext blob (keyed BLAKE3).
    pub fn content_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes())
    }

    /// 32 secret bytes from which the chunker derives its gear table.
    pub fn chunker_key(&self) -> [u8; 32] {
        self.chunker_key
    }

    /// Id of the data key that new envelopes are sealed with.
    pub fn current_data_key_id(&self) -> u32 {
        self.current
    }

    /// Adds a fresh random data key to the keyring and makes it current.
    ///
    /// Returns the new key's id. Objects sealed under older keys still open.
    /// Key files hold a copy of the whole master key, so they must be rewritten
    /// after a rotation for the new key to survive.
    pub fn rotate_data_key(&mut self) -> Result<u32> {
        let newest = self.data_keys.last().map_or(0, |k| k.id);
        let id = newest
            .checked_add(1)
            .filter(|id| *id != AUDIT_KEY_ID)
            .ok_or(Error::KeyIdsExhausted)?;
        let mut fresh = DataKey { id, key: [0; 32] };
        fill_random(&SystemRandom::new(), &mut fresh.key)?;
        if self.data_keys.len() == self.data_keys.capacity() {
            // Grow by hand: a plain `push` would reallocate and free the old
            // buffer with key bytes still in it.
            let mut grown = Vec::with_capacity(self.data_keys.len() * 2);
            grown.extend_from_slice(&self.data_keys);
            let mut old = std::mem::replace(&mut self.data_keys, grown);
            old.zeroize();
        }
        self.data_keys.push(fresh);
        self.current = id;
        Ok(id)
    }

    /// A second copy of this key material (for a rotation, which changes a
    /// copy while the repository goes on using the original).
    pub fn duplicate(&self) -> Result<MasterKey> {
        MasterKey::from_material(&self.to_material())
    }

    /// Adds a fresh data key with a random unused id, makes it current and
    /// returns the sealed keyring (every data key, `generation`, the current
    /// id) to store in `keyring/`. Random ids keep two concurrent rotations
    /// from minting different keys under one id.
    pub fn rotate_into_keyring(&mut self, generation: u64) -> Result<(u32, Vec<u8>)> {
        let rng = SystemRandom::new();
        let mut fresh = DataKey {
            id: 0,
            key: [0; 32],
        };
        loop {
            let mut id = [0u8; 4];
            fill_random(&rng, &mut id)?;
            fresh.id = u32::from_le_bytes(id);
            if fresh.id != AUDIT_KEY_ID && self.data_key(fresh.id).is_none() {
                break;
            }
        }
        fill_random(&rng, &mut fresh.key)?;
        let id = fresh.id;
        self.insert_data_key(fresh);
        self.current = id;
        Ok((id, self.seal_keyring(generation)?))
    }

    /// Takes in the data keys of sealed keyrings (from `keyring/`) and makes
    /// current the current key of the one with the highest generation (ties:
    /// the last given). Keyrings sealed under another keyring key are left
    /// alone and counted in [`Adopted::foreign`].
    ///
    /// [`Error::Authentication`] if a keyring of this key's keyring key was
    /// modified, or a legacy keyring belongs to another repository;
    /// [`Error::Malformed`] if it does not parse or gives a known key id
    /// other key bytes. Nothing is adopted unless every keyring is fine.
    pub fn adopt_keyrings(&mut self, sealed: &[&[u8]]) -> Result<Adopted> {
        let mut newest: Option<(u64, u32)> = None;
        let mut foreign = 0;
        let mut opened = Vec::with_capacity(sealed.len());
        for keyring in sealed {
            match self.open_keyring(keyring)? {
                Some(plaintext) => opened.push(parse_keyring(&plaintext)?),
                None => foreign += 1,
            }
        }
        for (generation, current, keys) in opened {
            for entry in keys {
                match self.data_key(entry.id) {
                    Some(known) if known.key != entry.key => {
                        return Err(Error::Malformed {
                            what: "keyring",
                            reason: format!(
                                "data key {} differs from the one already held",
                                entry.id
                            ),
                        });
                    }
                    Some(_) => {}
                    None => self.insert_data_key(entry.clone()),
                }
            }
            if newest.is_none_or(|(best, _)| generation >= best) {
                newest = Some((generation, current));
            }
        }
        let generation = match newest {
            Some((generation, current)) => {
                self.current = current;
                generation
            }
            None => 0,
        };
        Ok(Adopted {
            generation,
            foreign,
        })
    }

    /// Ids of the data keys held, ascending.
    pub fn data_key_ids(&self) -> Vec<u32> {
        self.data_keys.iter().map(|k| k.id).collect()
    }

    /// Whether this key seals keyrings under a keyring key of its own
    /// (key material version 2) rather than the legacy derived key.
    pub fn has_keyring_key(&self) -> bool {
        self.keyring_key.is_some()
    }

    /// The key material an erasure keeps: the same content-ID and chunker
    /// keys, only the current data key, and a fresh keyring key (so key
    /// files and keyrings written before do not open its keyrings). Returns
    /// it and the ids of the data keys it leaves out.
    pub fn erased(&self) -> Result<(MasterKey, Vec<u32>)> {
        let current = self
            .data_key(self.current)
            .expect("current data key is in the keyring")
            .clone();
        let destroyed = self
            .data_keys
            .iter()
            .map(|k| k.id)
            .filter(|id| *id != self.current)
            .collect();
        let kept = MasterKey {
            id_key: self.id_key,
            chunker_key: self.chunker_key,
            keyring_key: Some(KeyringKey::generate(&SystemRandom::new())?),
            data_keys: vec![current],
            current: self.current,
            blob_keys: BlobKeyCache::default(),
        };
        Ok((kept, destroyed))
    }

    /// The sealed keyring (every data key held, `generation`, the current
    /// id) to store in `keyring/`, as [`MasterKey::rotate_into_keyring`]
    /// writes it but without adding a key.
    pub fn keyring(&self, generation: u64) -> Result<Vec<u8>> {
        self.seal_keyring(generation)
    }

    /// The legacy key-encryption key of keyrings, for key material without a
    /// keyring key: derived from the two keys that never rotate, so every
    /// such key opens every legacy keyring.
    fn legacy_keyring_key(&self) -> LessSafeKey {
        self.derived_key(KEYRING_KEY_INFO)
    }

    /// An AES-256-GCM key derived from `id_key | chunker_key` for `info`.
    fn derived_key(&self, info: &[u8]) -> LessSafeKey {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(&self.id_key);
        ikm[32..].copy_from_slice(&self.chunker_key);
        hkdf_key(&[], ikm.as_ref(), info)
    }

    /// Legacy: `nonce [12] | AES-256-GCM(keyring) | tag [16]`; with a
    /// keyring key: `magic [8] | keyring_key_id [16] | nonce [12] |
    /// AES-256-GCM(keyring) | tag [16]`.
    fn seal_keyring(&self, generation: u64) -> Result<Vec<u8>> {
        let mut plaintext = Zeroizing::new(Vec::with_capacity(
            KEYRING_FIXED_LEN + MATERIAL_KEY_LEN * self.data_keys.len(),
        ));
        plaintext.push(KEYRING_VERSION);
        plaintext.extend_from_slice(&generation.to_le_bytes());
        plaintext.extend_from_slice(&self.current.to_le_bytes());
        let count =
            u32::try_from(self.data_keys.len()).expect("key ids are u32, so fewer than 2^32 keys");
        plaintext.extend_from_slice(&count.to_le_bytes());
        for data_key in &self.data_keys {
            plaintext.extend_from_slice(&data_key.id.to_le_bytes());
            plaintext.extend_from_slice(&data_key.key);
        }
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&SystemRandom::new(), &mut nonce)?;
        let mut sealed = Vec::with_capacity(KEYRING_PREFIX_LEN + plaintext.len() + TAG_LEN);
        let (kek, aad) = match &self.keyring_key {
            Some(keyring_key) => {
                sealed.extend_from_slice(KEYRING_MAGIC);
                sealed.extend_from_slice(&keyring_key.id);
                (keyring_key.aes_key(), sealed.clone())
            }
            None => (self.legacy_keyring_key(), KEYRING_AAD.to_vec()),
        };
        sealed.extend_from_slice(&nonce);
        let start = sealed.len();
        sealed.extend_from_slice(&plaintext);
        let tag = kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed[start..],
            )
            .expect("a keyring is far below AES-GCM's message limit");
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    /// The plaintext of a keyring this key opens; `None` for a keyring
    /// sealed under another keyring key (or a legacy keyring, if this key
    /// has a keyring key of its own).
    fn open_keyring(&self, sealed: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let too_short = || Error::Malformed {
            what: "keyring",
            reason: format!("{} bytes is too short", sealed.len()),
        };
        let (kek, aad, rest) = match split_keyring(sealed) {
            KeyringBytes::Keyed { key_id, aad, rest } => match &self.keyring_key {
                Some(keyring_key) if keyring_key.id == key_id => (keyring_key.aes_key(), aad, rest),
                _ => return Ok(None),
            },
            KeyringBytes::Legacy(rest) => match self.keyring_key {
                Some(_) => return Ok(None),
                None => (self.legacy_keyring_key(), KEYRING_AAD, rest),
            },
            KeyringBytes::TooShort => return Err(too_short()),
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(too_short());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        let len = kek
            .open_in_place(nonce, Aad::from(aad), &mut plaintext)
            .map_err(|_| Error::Authentication)?
            .len();
        plaintext.truncate(len);
        Ok(Some(plaintext))
    }

    /// Inserts a key whose id is not in the ring, keeping ids sorted and
    /// never leaving key bytes in a freed buffer.
    fn insert_data_key(&mut self, key: DataKey) {
        if self.data_keys.len() == self.data_keys.capacity() {
            let mut grown = Vec::with_capacity(self.data_keys.len() * 2 + 1);
            grown.extend_from_slice(&self.data_keys);
            let mut old = std::mem::replace(&mut self.data_keys, grown);
            old.zeroize();
        }
        let at = self.data_keys.partition_point(|k| k.id < key.id);
        self.data_keys.insert(at, key);
    }

    /// Appends the sealed envelope of `plaintext` to `out`.
    ///
    /// The plaintext is copied once, into `out`, and encrypted there. On error
    /// `out` is left as it was.
    pub fn seal_into(&self, kind: ObjectKind, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.reserve(plaintext.len() + SEAL_OVERHEAD);
        self.seal_with(kind, out, |out| {
            out.extend_from_slice(plaintext);
            Ok(())
        })
    }

    /// Appends a sealed envelope to `out` whose plaintext `write_plaintext`
    /// appends to `out` (and must only append): a caller that produces the
    /// plaintext, say by compressing, produces it in place, with no buffer
    /// of its own and no copy. Returns what `write_plaintext` returned. On
    /// error, its or the sealing's, `out` is left as it was.
    pub fn seal_with<T, E: From<Error>>(
        &self,
        kind: ObjectKind,
        out: &mut Vec<u8>,
        write_plaintext: impl FnOnce(&mut Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.seal_envelope(kind, kind == ObjectKind::AuditRecord, out, write_plaintext)
    }

    /// An audit record sealed as builds before the audit key sealed them:
    /// under the current data key. Only for tests of repositories such
    /// builds wrote (an erasure seals these records again).
    #[doc(hidden)]
    pub fn seal_audit_record_under_data_key(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_envelope(ObjectKind::AuditRecord, false, &mut out, |out| {
            out.extend_from_slice(plaintext);
            Ok::<_, Error>(())
        })?;
        Ok(out)
    }

    /// [`MasterKey::seal_with`] under the audit key or the current data key.
    fn seal_envelope<T, E: From<Error>>(
        &self,
        kind: ObjectKind,
        under_audit_key: bool,
        out: &mut Vec<u8>,
        write_plaintext: impl FnOnce(&mut Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let (key_id, key_bytes) = if under_audit_key {
            (AUDIT_KEY_ID, self.audit_key())
        } else {
            let data_key = self
                .data_key(self.current)
                .expect("current data key is in the keyring");
            (data_key.id, Zeroizing::new(data_key.key))
        };
        // Salt and nonce in one draw: one system call per object, not two
        // (a tree of small files seals one object per file).
        let mut salt_and_nonce = [0u8; SALT_LEN + NONCE_LEN];
        fill_random(&SystemRandom::new(), &mut salt_and_nonce)?;
        let (salt, nonce) = salt_and_nonce.split_at(SALT_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
        let header = envelope_header(key_id);

        let mut prefix = [0u8; PREFIX_LEN];
        prefix[..header.len()].copy_from_slice(&header);
        prefix[header.len()..].copy_from_slice(&salt_and_nonce);
        seal_appended(
            &object_key(&key_bytes, salt),
            nonce,
            &associated_data(header, kind),
            &prefix,
            out,
            write_plaintext,
        )
    }

    /// A blob key under the current data key with a fresh random salt, for
    /// a writer to seal the blobs of its packs with (at most
    /// [`crate::BLOB_KEY_SEAL_LIMIT`] of them, see [`BlobKey::is_worn`]).
    pub fn fresh_blob_key(&self) -> Result<BlobKey> {
        let mut salt = [0u8; crate::BLOB_SALT_LEN];
        fill_random(&SystemRandom::new(), &mut salt)?;
        let data_key = self
            .data_key(self.current)
            .expect("current data key is in the keyring");
        Ok(BlobKey::derive(
            BlobKeyId {
                key_id: self.current,
                salt,
            },
            &data_key.key,
        ))
    }

    /// The blob key of a pack (its key id and salt), derived once and kept
    /// among the last few. [`Error::Malformed`] if this master key does not
    /// hold the data key `id.key_id`.
    pub fn blob_key(&self, id: BlobKeyId) -> Result<std::sync::Arc<BlobKey>> {
        let mut cache = self.blob_keys.0.lock().expect("blob key cache poisoned");
        if let Some(at) = cache.iter().rposition(|key| key.id() == id) {
            let key = cache.remove(at);
            cache.push(std::sync::Arc::clone(&key));
            return Ok(key);
        }
        let data_key = self.data_key(id.key_id).ok_or_else(|| Error::Malformed {
            what: "blob envelope",
            reason: format!(
                "the pack is sealed with data key {}, which this master key does not hold; \
                 open the repository with a key file written after that key was added \
                 (or the key was destroyed by an erasure)",
                id.key_id
            ),
        })?;
        let key = std::sync::Arc::new(BlobKey::derive(id, &data_key.key));
        if cache.len() >= BLOB_KEY_CACHE_LEN {
            cache.remove(0);
        }
        cache.push(std::sync::Arc::clone(&key));
        Ok(key)
    }

    /// Sealed envelope of `plaintext` as a new buffer.
    pub fn seal(&self, kind: ObjectKind, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(kind, plaintext, &mut out)?;
        Ok(out)
    }

    /// Authenticates and decrypts an envelope made by [`MasterKey::seal_into`].
    ///
    /// [`Error::Malformed`] if the envelope is too short, has an unknown
    /// version or names a data key this master key does not hold;
    /// [`Error::Authentication`] if it was modified, truncated, sealed as
    /// another [`ObjectKind`] or sealed by another repository.
    pub fn open(&self, kind: ObjectKind, sealed: &[u8]) -> Result<Vec<u8>> {
        let malformed = |reason: String| Error::Malformed {
            what: "envelope",
            reason,
        };
        if sealed.len() < SEAL_OVERHEAD {
            return Err(malformed(format!(
                "{} bytes is shorter than the {SEAL_OVERHEAD}-byte minimum; the object is truncated",
                sealed.len()
            )));
        }
        let (header, rest) = sealed.split_at(HEADER_LEN);
        let (salt, rest) = rest.split_at(SALT_LEN);
        let (nonce, ciphertext_and_tag) = rest.split_at(NONCE_LEN);
        let header: [u8; HEADER_LEN] = header.try_into().expect("split at HEADER_LEN");
        if header[0] != ENVELOPE_VERSION {
            return Err(malformed(format!(
                "unknown version {}; this build of arca reads version {ENVELOPE_VERSION} (upgrade arca?)",
                header[0]
            )));
        }
        let key_id = u32::from_le_bytes(header[1..].try_into().expect("4 key id bytes"));
        let key_bytes = if key_id == AUDIT_KEY_ID && kind == ObjectKind::AuditRecord {
            self.audit_key()
        } else {
            let data_key = self.data_key(key_id).ok_or_else(|| {
                malformed(format!(
                    "sealed with data key {key_id}, which this master key does not hold; \
                     open the repository with a key file written after that key was added \
                     (or the key was destroyed by an erasure)"
                ))
            })?;
            Zeroizing::new(data_key.key)
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut plaintext = ciphertext_and_tag.to_vec();
        let len = object_key(&key_bytes, salt)
            .open_in_place(
                nonce,
                Aad::from(associated_data(header, kind)),
                &mut plaintext,
            )
            .map_err(|_| Error::Authentication)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// Serialises the key material (layout in the crate docs) for wrapping in a key file.
    pub(crate) fn to_material(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            MATERIAL_FIXED_LEN + KEYRING_KEY_LEN + MATERIAL_KEY_LEN * self.data_keys.len(),
        ));
        match &self.keyring_key {
            Some(keyring_key) => {
                out.push(MATERIAL_VERSION);
                out.extend_from_slice(&self.id_key);
                out.extend_from_slice(&self.chunker_key);
                out.extend_from_slice(&keyring_key.id);
                out.extend_from_slice(&keyring_key.key);
            }
            None => {
                out.push(MATERIAL_VERSION_LEGACY);
                out.extend_from_slice(&self.id_key);
                out.extend_from_slice(&self.chunker_key);
            }
        }
        out.extend_from_slice(&self.current.to_le_bytes());
        let count =
            u32::try_from(self.data_keys.len()).expect("key ids are u32, so fewer than 2^32 keys");
        out.extend_from_slice(&count.to_le_bytes());
        for data_key in &self.data_keys {
            out.extend_from_slice(&data_key.id.to_le_bytes());
            out.extend_from_slice(&data_key.key);
        }
        out
    }

    /// Parses [`MasterKey::to_material`] output.
    pub(crate) fn from_material(material: &[u8]) -> Result<Self> {
        let malformed = |reason: String| Error::Malformed {
            what: "master key material",
            reason,
        };
        let keyring_key_len = match material.first() {
            Some(&MATERIAL_VERSION_LEGACY) => 0,
            Some(&MATERIAL_VERSION) => KEYRING_KEY_LEN,
            Some(version) => {
                return Err(malformed(format!(
                    "unknown version {version}; this build of arca reads versions \
                     {MATERIAL_VERSION_LEGACY} and {MATERIAL_VERSION}"
                )));
            }
            None => return Err(malformed("0 bytes is too short".to_owned())),
        };
        let fixed_len = MATERIAL_FIXED_LEN + keyring_key_len;
        if material.len() < fixed_len {
            return Err(malformed(format!("{} bytes is too short", material.len())));
        }
        // `current_key_id` and `key_count` follow the keys.
        let counts_at = 65 + keyring_key_len;
        let count = read_u32(material, counts_at + 4) as usize;
        let expected = count
            .checked_mul(MATERIAL_KEY_LEN)
            .and_then(|keys| keys.checked_add(fixed_len));
        if count == 0 || expected != Some(material.len()) {
            return Err(malformed(format!(
                "{} bytes do not hold the {count} data keys the header announces (at least one is required)",
                material.len()
            )));
        }
        let keyring_key = (keyring_key_len > 0).then(|| {
            let mut keyring_key = KeyringKey {
                id: [0; KEYRING_KEY_ID_LEN],
                key: [0; 32],
            };
            keyring_key
                .id
                .copy_from_slice(&material[65..65 + KEYRING_KEY_ID_LEN]);
            keyring_key
                .key
                .copy_from_slice(&material[65 + KEYRING_KEY_ID_LEN..counts_at]);
            keyring_key
        });
        let mut key = MasterKey {
            id_key: [0; 32],
            chunker_key: [0; 32],
            keyring_key,
            data_keys: Vec::with_capacity(count),
            current: read_u32(material, counts_at),
            blob_keys: BlobKeyCache::default(),
        };
        key.id_key.copy_from_slice(&material[1..33]);
        key.chunker_key.copy_from_slice(&material[33..65]);
        for entry in material[fixed_len..].chunks_exact(MATERIAL_KEY_LEN) {
            let mut data_key = DataKey {
                id: read_u32(entry, 0),
                key: [0; 32],
            };
            data_key.key.copy_from_slice(&entry[4..]);
            if key
                .data_keys
                .last()
                .is_some_and(|previous| previous.id >= data_key.id)
            {
                return Err(malformed(
                    "data key ids are not strictly increasing".to_owned(),
                ));
            }
            if data_key.id == AUDIT_KEY_ID {
                return Err(malformed(format!(
                    "data key id {AUDIT_KEY_ID} is reserved for the audit key"
                )));
            }
            key.data_keys.push(data_key);
        }
        if key.data_key(key.current).is_none() {
            return Err(malformed(format!(
                "current data key {} is not in the keyring",
                key.current
            )));
        }
        Ok(key)
    }

    /// The key audit records are sealed under: derived from the two keys
    /// that never rotate, so erasing data keys never makes the trail
    /// unreadable (docs/FORMAT.md §18).
    fn audit_key(&self) -> Zeroizing<[u8; 32]> {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(&self.id_key);
        ikm[32..].copy_from_slice(&self.chunker_key);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(ikm.as_ref());
        let mut key = Zeroizing::new([0u8; 32]);
        prk.expand(&[AUDIT_KEY_INFO], Len32)
            .and_then(|okm| okm.fill(key.as_mut()))
            .expect("a 32-byte output is within HKDF-SHA256's limit");
        key
    }

    fn data_key(&self, id: u32) -> Option<&DataKey> {
        self.data_keys
            .binary_search_by_key(&id, |k| k.id)
            .ok()
            .map(|index| &self.data_keys[index])
    }
}

/// Parses a keyring's plaintext: generation, current id, keys.
fn parse_keyring(plaintext: &[u8]) -> Result<(u64, u32, Vec<DataKey>)> {
    let malformed = |reason: String| Error::Malformed {
        what: "keyring",
        reason,
    };
    if plaintext.len() < KEYRING_FIXED_LEN || plaintext[0] != KEYRING_VERSION {
        return Err(malformed(
            "too short or an unknown version (upgrade arca?)".to_owned(),
        ));
    }
    let generation = u64::from_le_bytes(plaintext[1..9].try_into().expect("8 bytes"));
    let current = read_u32(plaintext, 9);
    let count = read_u32(plaintext, 13) as usize;
    let expected = count
        .checked_mul(MATERIAL_KEY_LEN)
        .and_then(|keys| keys.checked_add(KEYRING_FIXED_LEN));
    if expected != Some(plaintext.len()) {
        return Err(malformed(format!(
            "{} bytes do not hold the {count} keys announced",
            plaintext.len()
        )));
    }
    let keys: Vec<DataKey> = plaintext[KEYRING_FIXED_LEN..]
        .chunks_exact(MATERIAL_KEY_LEN)
        .map(|entry| {
            let mut key = DataKey {
                id: read_u32(entry, 0),
                key: [0; 32],
            };
            key.key.copy_from_slice(&entry[4..]);
            key
        })
        .collect();
    if keys.iter().any(|k| k.id == AUDIT_KEY_ID) {
        return Err(malformed(format!(
            "data key id {AUDIT_KEY_ID} is reserved for the audit key"
        )));
    }
    if !keys.iter().any(|k| k.id == current) {
        return Err(malformed(format!(
            "current key {current} is not in the keyring"
        )));
    }
    Ok((generation, current, keys))
}

impl KeyringKey {
    fn generate(rng: &SystemRandom) -> Result<KeyringKey> {
        let mut keyring_key = KeyringKey {
            id: [0; KEYRING_KEY_ID_LEN],
            key: [0; 32],
        };
        fill_random(rng, &mut keyring_key.id)?;
        fill_random(rng, &mut keyring_key.key)?;
        Ok(keyring_key)
    }

    /// The AES-256-GCM key keyrings are sealed with.
    fn aes_key(&self) -> LessSafeKey {
        hkdf_key(&self.id, &self.key, KEYRING_KEY_V2_INFO)
    }
}

/// A stored keyring split by its format.
#[derive(Debug, PartialEq, Eq)]
enum KeyringBytes<'a> {
    /// Sealed under the keyring key `key_id`; `aad` is the prefix up to the
    /// nonce (magic and key id), `rest` is `nonce | ciphertext | tag`.
    Keyed {
        key_id: [u8; KEYRING_KEY_ID_LEN],
        aad: &'a [u8],
        rest: &'a [u8],
    },
    /// A legacy keyring: `nonce | ciphertext | tag`.
    Legacy(&'a [u8]),
    /// Starts with the magic but is too short for a key id.
    TooShort,
}

/// Tells the two keyring formats apart (untrusted bytes; never panics).
fn split_keyring(sealed: &[u8]) -> KeyringBytes<'_> {
    match sealed.strip_prefix(KEYRING_MAGIC.as_slice()) {
        None => KeyringBytes::Legacy(sealed),
        Some(after_magic) => match after_magic.split_first_chunk::<KEYRING_KEY_ID_LEN>() {
            None => KeyringBytes::TooShort,
            Some((key_id, rest)) => KeyringBytes::Keyed {
                key_id: *key_id,
                aad: &sealed[..KEYRING_MAGIC.len() + KEYRING_KEY_ID_LEN],
                rest,
            },
        },
    }
}

/// HKDF-SHA256 output length for a raw 32-byte key.
struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Appends `prefix`, then what `write_plaintext` appends (and it must only
/// append), seals that plaintext in place under `key`, `nonce` and `aad`,
/// and appends the tag: the envelope and the blob envelope alike, with no
/// buffer of their own. Returns what `write_plaintext` returned; on error,
/// its or the sealing's, `out` is left as it was.
pub(crate) fn seal_appended<T, E: From<Error>>(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    prefix: &[u8],
    out: &mut Vec<u8>,
    write_plaintext: impl FnOnce(&mut Vec<u8>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let start = out.len();
    out.extend_from_slice(prefix);
    let written = match write_plaintext(out) {
        Ok(written) => written,
        Err(e) => {
            out.truncate(start);
            return Err(e);
        }
    };
    let plaintext_at = start + prefix.len();
    assert!(out.len() >= plaintext_at, "write_plaintext only appends");
    let sealed = key.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut out[plaintext_at..],
    );
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(tag.as_ref());
            Ok(written)
        }
        // ring's only failure here is a plaintext over AES-GCM's per-message limit.
        Err(_) => {
            let len = out.len() - plaintext_at;
            out.truncate(start);
            Err(Error::PlaintextTooLarge { len }.into())
        }
    }
}

/// An AES-256-GCM key: HKDF-SHA256(salt, ikm, info).
pub(crate) fn hkdf_key(salt: &[u8], ikm: &[u8], info: &[u8]) -> LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .expect("a 32-byte output is within HKDF-SHA256's limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// `version | key_id LE`, the envelope's first bytes.
fn envelope_header(key_id: u32) -> [u8; HEADER_LEN] {
    let mut header = [ENVELOPE_VERSION, 0, 0, 0, 0];
    header[1..].copy_from_slice(&key_id.to_le_bytes());
    header
}

/// AEAD associated data: the envelope header followed by the object kind.
fn associated_data(header: [u8; HEADER_LEN], kind: ObjectKind) -> [u8; HEADER_LEN + 1] {
    let mut aad = [0u8; HEADER_LEN + 1];
    aad[..HEADER_LEN].copy_from_slice(&header);
    aad[HEADER_LEN] = kind as u8;
    aad
}

/// The one-object AES-256-GCM key: HKDF-SHA256(ikm = data key, salt, info = [`OBJECT_KEY_INFO`]).
fn object_key(data_key: &[u8; 32], salt: &[u8]) -> LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(data_key);
    let okm = prk
        .expand(&[OBJECT_KEY_INFO], &AES_256_GCM)
        .expect("a 32-byte output is within HKDF-SHA256's limit");
    LessSafeKey::new(UnboundKey::from(okm))
}

pub(crate) fn fill_random(rng: &SystemRandom, buf: &mut [u8]) -> Result<()> {
    rng.fill(buf).map_err(|_| Error::Random)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes the keyring key adds to version 2 material, before the counts.
    const V2: usize = KEYRING_KEY_LEN;

    /// Key material as a build from before keyring keys wrote it.
    fn legacy_key() -> MasterKey {
        let mut key = MasterKey::generate().unwrap();
        key.keyring_key = None;
        key
    }

    #[test]
    fn legacy_material_round_trips_and_keeps_sealing_legacy_keyrings() {
        let mut key = legacy_key();
        let material = key.to_material();
        assert_eq!(material[0], MATERIAL_VERSION_LEGACY);
        assert_eq!(material.len(), MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN);
        let (_, keyring) = key.rotate_into_keyring(1).unwrap();
        assert_ne!(&keyring[..8], KEYRING_MAGIC);
        // A second legacy copy (another key file of the same repository) opens it.
        let mut reader = MasterKey::from_material(&material).unwrap();
        assert!(!reader.has_keyring_key());
        assert_eq!(
            reader.adopt_keyrings(&[&keyring]).unwrap(),
            Adopted {
                generation: 1,
                foreign: 0
            }
        );
        assert_eq!(reader.current_data_key_id(), key.current_data_key_id());
    }

    #[test]
    fn erasure_leaves_only_the_current_key_under_a_new_keyring_key() {
        let original = legacy_key();
        let old_sealed = original.seal(ObjectKind::DataBlob, b"old").unwrap();
        let old_audit = original.seal(ObjectKind::AuditRecord, b"trail").unwrap();
        let mut rotating = original.duplicate().unwrap();
        let (current, old_keyring) = rotating.rotate_into_keyring(1).unwrap();
        let new_sealed = rotating.seal(ObjectKind::DataBlob, b"new").unwrap();

        let (erased, destroyed) = rotating.erased().unwrap();
        assert_eq!(destroyed, [0]);
        assert_eq!(erased.data_key_ids(), [current]);
        assert!(erased.has_keyring_key());
        let keyring = erased.keyring(2).unwrap();
        assert_eq!(&keyring[..8], KEYRING_MAGIC);

        // The kept key: old data gone, new data and the audit trail readable.
        let kept = MasterKey::from_material(&erased.to_material()).unwrap();
        assert!(matches!(
            kept.open(ObjectKind::DataBlob, &old_sealed),
            Err(Error::Malformed { .. })
        ));
        assert_eq!(
            kept.open(ObjectKind::DataBlob, &new_sealed).unwrap(),
            b"new"
        );
        assert_eq!(
            kept.open(ObjectKind::AuditRecord, &old_audit).unwrap(),
            b"trail"
        );
        // It opens its own keyring and leaves the legacy one alone.
        let mut reader = kept.duplicate().unwrap();
        assert_eq!(
            reader.adopt_keyrings(&[&old_keyring, &keyring]).unwrap(),
            Adopted {
                generation: 2,
                foreign: 1
            }
        );
        assert_eq!(reader.data_key_ids(), [current]);
        // A key from before the erasure cannot open the new keyring, so it
        // learns neither the kept key nor anything sealed under it.
        let mut before = original.duplicate().unwrap();
        assert_eq!(
            before.adopt_keyrings(&[&keyring]).unwrap(),
            Adopted {
                generation: 0,
                foreign: 1
            }
        );
        assert!(before.open(ObjectKind::DataBlob, &new_sealed).is_err());
        // A tampered keyring of its own keyring key is an error, not foreign.
        let mut tampered = keyring.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            reader.adopt_keyrings(&[&tampered]),
            Err(Error::Authentication)
        ));
        assert!(matches!(
            reader.adopt_keyrings(&[&keyring[..KEYRING_PREFIX_LEN]]),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            reader.adopt_keyrings(&[&keyring[..10]]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn audit_records_are_sealed_under_the_audit_key_and_only_they_open_with_it() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(ObjectKind::AuditRecord, b"record").unwrap();
        assert_eq!(sealed[1..5], AUDIT_KEY_ID.to_le_bytes());
        let mut rotated = key.duplicate().unwrap();
        rotated.rotate_into_keyring(1).unwrap();
        assert_eq!(
            rotated.open(ObjectKind::AuditRecord, &sealed).unwrap(),
            b"record"
        );
        // The same bytes relabelled as another kind name a key nobody holds.
        let mut relabelled = key.seal(ObjectKind::Snapshot, b"record").unwrap();
        relabelled[1..5].copy_from_slice(&AUDIT_KEY_ID.to_le_bytes());
        assert!(matches!(
            key.open(ObjectKind::Snapshot, &relabelled),
            Err(Error::Malformed { .. })
        ));
        assert!(
            MasterKey::generate()
                .unwrap()
                .open(ObjectKind::AuditRecord, &sealed)
                .is_err()
        );
    }

    #[test]
    fn seal_overhead_matches_the_documented_layout() {
        assert_eq!(SEAL_OVERHEAD, 49);
        let key = MasterKey::generate().unwrap();
        assert_eq!(
            key.seal(ObjectKind::DataBlob, b"").unwrap().len(),
            SEAL_OVERHEAD
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.id_key, b.id_key);
        assert_ne!(a.chunker_key, b.chunker_key);
        assert_ne!(a.id_key, a.chunker_key);
        assert_ne!(a.data_keys[0].key, b.data_keys[0].key);
    }

    #[test]
    fn debug_prints_no_key_bytes() {
        let mut key = MasterKey::generate().unwrap();
        key.rotate_data_key().unwrap();
        let debug = format!("{key:?} {key:#?}");
        let secrets = [
            key.id_key,
            key.chunker_key,
            key.data_keys[0].key,
            key.data_keys[1].key,
        ];
        for secret in secrets {
            assert!(!debug.contains(&hex::encode(secret)));
            assert!(!debug.contains(&format!("{secret:?}")));
        }
        assert_eq!(debug, "MasterKey(..) MasterKey(..)");
    }

    #[test]
    fn rotation_keeps_old_keys_and_grows_ids() {
        let mut key = MasterKey::generate().unwrap();
        let first = key.data_keys[0].key;
        for expected in 1..=5 {
            assert_eq!(key.rotate_data_key().unwrap(), expected);
            assert_eq!(key.current_data_key_id(), expected);
        }
        assert_eq!(key.data_keys.len(), 6);
        assert_eq!(key.data_keys[0].key, first);
        let ids: Vec<u32> = key.data_keys.iter().map(|k| k.id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn rotation_past_the_last_id_is_an_error() {
        let mut material = MasterKey::generate().unwrap().to_material();
        // The last id is the audit key's, so the one before is the last data key's.
        let last = AUDIT_KEY_ID - 1;
        material[V2 + 65..V2 + 69].copy_from_slice(&last.to_le_bytes());
        material[V2 + 73..V2 + 77].copy_from_slice(&last.to_le_bytes());
        let mut key = MasterKey::from_material(&material).unwrap();
        assert!(matches!(key.rotate_data_key(), Err(Error::KeyIdsExhausted)));
        assert_eq!(key.current_data_key_id(), last);
    }

    #[test]
    fn material_rejects_inconsistent_keyrings() {
        let mut key = MasterKey::generate().unwrap();
        key.rotate_data_key().unwrap();
        let good = key.to_material();
        type Corruption = fn(&mut Vec<u8>);
        let cases: [(&str, Corruption); 8] = [
            ("version", |m| m[0] = 3),
            ("version 1 with a keyring key", |m| m[0] = 1),
            ("no keys", |m| {
                m[V2 + 69..V2 + 73].copy_from_slice(&0u32.to_le_bytes());
                m.truncate(V2 + MATERIAL_FIXED_LEN);
            }),
            ("count too high", |m| m[V2 + 69] = 3),
            ("trailing byte", |m| m.push(0)),
            ("duplicate id", |m| {
                m[V2 + MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN] = 0
            }),
            ("unknown current", |m| m[V2 + 65] = 9),
            ("the audit key's id", |m| {
                let at = V2 + MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN;
                m[at..at + 4].copy_from_slice(&AUDIT_KEY_ID.to_le_bytes());
            }),
        ];
        for (name, corrupt) in cases {
            let mut bad = good.to_vec();
            corrupt(&mut bad);
            let result = MasterKey::from_material(&bad);
            assert!(
                matches!(result, Err(Error::Malformed { .. })),
                "{name}: {result:?}"
            );
        }
        for len in 0..good.len() {
            assert!(
                MasterKey::from_material(&good[..len]).is_err(),
                "prefix of {len} bytes parsed"
            );
        }
    }

    #[test]
    fn keyrings_carry_rotated_keys_to_every_copy_of_the_master_key() {
        let original = MasterKey::generate().unwrap();
        let old_sealed = original.seal(ObjectKind::Snapshot, b"before").unwrap();
        let mut rotating = original.duplicate().unwrap();
        let (first, keyring1) = rotating.rotate_into_keyring(1).unwrap();
        let (second, keyring2) = rotating.rotate_into_keyring(2).unwrap();
        assert_ne!(first, second);
        let new_sealed = rotating.seal(ObjectKind::Snapshot, b"after").unwrap();
        assert_eq!(new_sealed[1..5], second.to_le_bytes());
        // A master key from a key file written before the rotations.
        let mut reader = original.duplicate().unwrap();
        assert!(reader.open(ObjectKind::Snapshot, &new_sealed).is_err());
        // Order does not matter: the highest generation's key is current.
        assert_eq!(
            reader
                .adopt_keyrings(&[&keyring2, &keyring1])
                .unwrap()
                .generation,
            2
        );
        assert_eq!(reader.current_data_key_id(), second);
        assert_eq!(
            reader.open(ObjectKind::Snapshot, &new_sealed).unwrap(),
            b"after"
        );
        assert_eq!(
            reader.open(ObjectKind::Snapshot, &old_sealed).unwrap(),
            b"before"
        );
        // Adopting again changes nothing.
        assert_eq!(
            reader
                .adopt_keyrings(&[&keyring1, &keyring2])
                .unwrap()
                .generation,
            2
        );
        assert_eq!(reader.data_keys.len(), 3);
        // Tampered keyrings and another repository's keyrings are refused.
        let mut tampered = keyring2.clone();
        tampered[KEYRING_PREFIX_LEN + 2] ^= 1;
        assert!(matches!(
            reader.adopt_keyrings(&[&tampered]),
            Err(Error::Authentication)
        ));
        // Another repository's keyring is sealed under another keyring key:
        // left alone, nothing adopted.
        let mut stranger = MasterKey::generate().unwrap();
        assert_eq!(stranger.adopt_keyrings(&[&keyring1]).unwrap().foreign, 1);
        assert_eq!(stranger.data_key_ids(), [0]);
        assert!(matches!(
            stranger.adopt_keyrings(&[&keyring1[..10]]),
            Err(Error::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn material_round_trips(rotations in 0usize..20, legacy in any::<bool>()) {
            let mut key = if legacy { legacy_key() } else { MasterKey::generate().unwrap() };
            for _ in 0..rotations {
                key.rotate_data_key().unwrap();
            }
            let material = key.to_material();
            let extra = if legacy { 0 } else { KEYRING_KEY_LEN };
            prop_assert_eq!(material.len(), MATERIAL_FIXED_LEN + extra + MATERIAL_KEY_LEN * (rotations + 1));
            let back = MasterKey::from_material(&material).unwrap();
            prop_assert_eq!(back.id_key, key.id_key);
            prop_assert_eq!(back.chunker_key, key.chunker_key);
            prop_assert_eq!(back.current, key.current);
            prop_assert_eq!(back.data_keys.len(), key.data_keys.len());
            for (a, b) in back.data_keys.iter().zip(&key.data_keys) {
                prop_assert_eq!(a.id, b.id);
                prop_assert_eq!(a.key, b.key);
            }
            prop_assert_eq!(
                back.keyring_key.as_ref().map(|k| (k.id, k.key)),
                key.keyring_key.as_ref().map(|k| (k.id, k.key))
            );
            prop_assert_eq!(&*back.to_material(), &*material);
        }

        #[test]
        fn keyrings_round_trip_in_both_formats(
            rotations in 1usize..8,
            legacy in any::<bool>(),
            generation in any::<u64>(),
        ) {
            let mut key = if legacy { legacy_key() } else { MasterKey::generate().unwrap() };
            let reader = key.duplicate().unwrap();
            let mut sealed = Vec::new();
            for _ in 0..rotations {
                sealed = key.rotate_into_keyring(generation).unwrap().1;
            }
            let mut adopting = reader.duplicate().unwrap();
            let adopted = adopting.adopt_keyrings(&[&sealed]).unwrap();
            prop_assert_eq!(adopted, Adopted { generation, foreign: 0 });
            prop_assert_eq!(adopting.data_key_ids(), key.data_key_ids());
            prop_assert_eq!(adopting.current_data_key_id(), key.current_data_key_id());
        }

        #[test]
        fn arbitrary_bytes_never_add_keys(bytes in prop::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
            let key = MasterKey::generate().unwrap();
            let mut input = if magic { KEYRING_MAGIC.to_vec() } else { Vec::new() };
            input.extend_from_slice(&bytes);
            let mut adopting = key.duplicate().unwrap();
            let _ = adopting.adopt_keyrings(&[&input]);
            prop_assert_eq!(adopting.data_key_ids(), key.data_key_ids());
            prop_assert_eq!(adopting.current_data_key_id(), key.current_data_key_id());
        }
    }
}
