//! The master key and the envelope every stored object is sealed in.
//!
//! The byte layouts (envelope, master key material) are specified in the crate
//! docs; this module is their only implementation.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Error, Id, Result};

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

/// Version byte of the serialised master key material (see the crate docs).
const MATERIAL_VERSION: u8 = 1;
/// `version | id_key | chunker_key | current_key_id | key_count`.
const MATERIAL_FIXED_LEN: usize = 1 + 32 + 32 + 4 + 4;
/// `key_id u32 LE | key [32]` per data key.
const MATERIAL_KEY_LEN: usize = 4 + 32;

/// Version byte of a serialised keyring (see the crate docs).
const KEYRING_VERSION: u8 = 1;
/// `version | generation | current_key_id | key_count`.
const KEYRING_FIXED_LEN: usize = 1 + 8 + 4 + 4;
/// HKDF `info` of the key that seals keyrings.
const KEYRING_KEY_INFO: &[u8] = b"arca v1 keyring key";
/// AEAD associated data of a sealed keyring.
const KEYRING_AAD: &[u8] = b"arca keyring v1";

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
    /// Sorted by strictly increasing `id`; never empty.
    data_keys: Vec<DataKey>,
    /// Id of the data key new envelopes are sealed with; always present in `data_keys`.
    current: u32,
}

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
            data_keys: Vec::with_capacity(1),
            current: 0,
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
        let id = newest.checked_add(1).ok_or(Error::KeyIdsExhausted)?;
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
            if self.data_key(fresh.id).is_none() {
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
    /// the last given). Returns that generation, 0 for none.
    ///
    /// [`Error::Authentication`] if a keyring was modified or belongs to
    /// another repository; [`Error::Malformed`] if it does not parse or gives
    /// a known key id other key bytes.
    pub fn adopt_keyrings(&mut self, sealed: &[&[u8]]) -> Result<u64> {
        let mut newest: Option<(u64, u32)> = None;
        for keyring in sealed {
            let plaintext = self.open_keyring(keyring)?;
            let (generation, current, keys) = parse_keyring(&plaintext)?;
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
        match newest {
            Some((generation, current)) => {
                self.current = current;
                Ok(generation)
            }
            None => Ok(0),
        }
    }

    /// The key-encryption key of keyrings: derived from the two keys that
    /// never rotate, so every key file's master key opens every keyring.
    fn keyring_key(&self) -> LessSafeKey {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(&self.id_key);
        ikm[32..].copy_from_slice(&self.chunker_key);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(ikm.as_ref());
        let okm = prk
            .expand(&[KEYRING_KEY_INFO], &AES_256_GCM)
            .expect("a 32-byte output is within HKDF-SHA256's limit");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// `nonce [12] | AES-256-GCM(keyring) | tag [16]`.
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
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&plaintext);
        let tag = self
            .keyring_key()
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(KEYRING_AAD),
                &mut sealed[NONCE_LEN..],
            )
            .expect("a keyring is far below AES-GCM's message limit");
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    fn open_keyring(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Malformed {
                what: "keyring",
                reason: format!("{} bytes is too short", sealed.len()),
            });
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut plaintext = Zeroizing::new(rest.to_vec());
        let len = self
            .keyring_key()
            .open_in_place(nonce, Aad::from(KEYRING_AAD), &mut plaintext)
            .map_err(|_| Error::Authentication)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
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
        let data_key = self
            .data_key(self.current)
            .expect("current data key is in the keyring");
        // Salt and nonce in one draw: one system call per object, not two
        // (a tree of small files seals one object per file).
        let mut salt_and_nonce = [0u8; SALT_LEN + NONCE_LEN];
        fill_random(&SystemRandom::new(), &mut salt_and_nonce)?;
        let (salt, nonce) = salt_and_nonce.split_at(SALT_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
        let header = envelope_header(data_key.id);

        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(&salt_and_nonce);
        let written = match write_plaintext(out) {
            Ok(written) => written,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        assert!(
            out.len() >= start + PREFIX_LEN,
            "write_plaintext only appends"
        );
        let sealed = object_key(&data_key.key, salt).seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(associated_data(header, kind)),
            &mut out[start + PREFIX_LEN..],
        );
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(written)
            }
            // ring's only failure here is a plaintext over AES-GCM's per-message limit.
            Err(_) => {
                let len = out.len() - start - PREFIX_LEN;
                out.truncate(start);
                Err(Error::PlaintextTooLarge { len }.into())
            }
        }
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
        let data_key = self.data_key(key_id).ok_or_else(|| {
            malformed(format!(
                "sealed with data key {key_id}, which this master key does not hold; \
                 open the repository with a key file written after that key was added"
            ))
        })?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut plaintext = ciphertext_and_tag.to_vec();
        let len = object_key(&data_key.key, salt)
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
            MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN * self.data_keys.len(),
        ));
        out.push(MATERIAL_VERSION);
        out.extend_from_slice(&self.id_key);
        out.extend_from_slice(&self.chunker_key);
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
        if material.len() < MATERIAL_FIXED_LEN {
            return Err(malformed(format!("{} bytes is too short", material.len())));
        }
        if material[0] != MATERIAL_VERSION {
            return Err(malformed(format!(
                "unknown version {}; this build of arca reads version {MATERIAL_VERSION}",
                material[0]
            )));
        }
        let count = read_u32(material, 69) as usize;
        let expected = count
            .checked_mul(MATERIAL_KEY_LEN)
            .and_then(|keys| keys.checked_add(MATERIAL_FIXED_LEN));
        if count == 0 || expected != Some(material.len()) {
            return Err(malformed(format!(
                "{} bytes do not hold the {count} data keys the header announces (at least one is required)",
                material.len()
            )));
        }
        let mut key = MasterKey {
            id_key: [0; 32],
            chunker_key: [0; 32],
            data_keys: Vec::with_capacity(count),
            current: read_u32(material, 65),
        };
        key.id_key.copy_from_slice(&material[1..33]);
        key.chunker_key.copy_from_slice(&material[33..65]);
        for entry in material[MATERIAL_FIXED_LEN..].chunks_exact(MATERIAL_KEY_LEN) {
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
    if !keys.iter().any(|k| k.id == current) {
        return Err(malformed(format!(
            "current key {current} is not in the keyring"
        )));
    }
    Ok((generation, current, keys))
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
        material[65..69].copy_from_slice(&u32::MAX.to_le_bytes());
        material[73..77].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut key = MasterKey::from_material(&material).unwrap();
        assert!(matches!(key.rotate_data_key(), Err(Error::KeyIdsExhausted)));
        assert_eq!(key.current_data_key_id(), u32::MAX);
    }

    #[test]
    fn material_rejects_inconsistent_keyrings() {
        let mut key = MasterKey::generate().unwrap();
        key.rotate_data_key().unwrap();
        let good = key.to_material();
        type Corruption = fn(&mut Vec<u8>);
        let cases: [(&str, Corruption); 6] = [
            ("version", |m| m[0] = 2),
            ("no keys", |m| {
                m[69..73].copy_from_slice(&0u32.to_le_bytes());
                m.truncate(MATERIAL_FIXED_LEN);
            }),
            ("count too high", |m| m[69] = 3),
            ("trailing byte", |m| m.push(0)),
            ("duplicate id", |m| {
                m[MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN] = 0
            }),
            ("unknown current", |m| m[65] = 9),
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
        assert_eq!(reader.adopt_keyrings(&[&keyring2, &keyring1]).unwrap(), 2);
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
        assert_eq!(reader.adopt_keyrings(&[&keyring1, &keyring2]).unwrap(), 2);
        assert_eq!(reader.data_keys.len(), 3);
        // Tampered keyrings and another repository's keyrings are refused.
        let mut tampered = keyring2.clone();
        tampered[20] ^= 1;
        assert!(matches!(
            reader.adopt_keyrings(&[&tampered]),
            Err(Error::Authentication)
        ));
        let mut stranger = MasterKey::generate().unwrap();
        assert!(matches!(
            stranger.adopt_keyrings(&[&keyring1]),
            Err(Error::Authentication)
        ));
        assert!(matches!(
            stranger.adopt_keyrings(&[&keyring1[..10]]),
            Err(Error::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn material_round_trips(rotations in 0usize..20) {
            let mut key = MasterKey::generate().unwrap();
            for _ in 0..rotations {
                key.rotate_data_key().unwrap();
            }
            let material = key.to_material();
            prop_assert_eq!(material.len(), MATERIAL_FIXED_LEN + MATERIAL_KEY_LEN * (rotations + 1));
            let back = MasterKey::from_material(&material).unwrap();
            prop_assert_eq!(back.id_key, key.id_key);
            prop_assert_eq!(back.chunker_key, key.chunker_key);
            prop_assert_eq!(back.current, key.current);
            prop_assert_eq!(back.data_keys.len(), key.data_keys.len());
            for (a, b) in back.data_keys.iter().zip(&key.data_keys) {
                prop_assert_eq!(a.id, b.id);
                prop_assert_eq!(a.key, b.key);
            }
            prop_assert_eq!(&*back.to_material(), &*material);
        }
    }
}
