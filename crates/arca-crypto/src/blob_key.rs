//! The blob envelope of pack format 2: blobs sealed under a key shared by
//! a pack (or by every pack of one writer), so a blob carries only its
//! nonce and tag (28 bytes) instead of a whole envelope of its own (49).
//!
//! ```text
//! blob      = nonce [12] ‖ ciphertext ‖ tag [16]
//! blob key  = HKDF-SHA256(ikm = data key[key_id], salt = salt, info = "arca v2 pack blob key")
//! aad       = version u8 = 2 ‖ key_id u32 ‖ kind u8
//! ```
//!
//! `key_id` and the 16-byte `salt` are stored once per pack, in its header
//! and in the index ([`BlobKeyId`]). Nonces are random, so one blob key
//! seals at most [`BLOB_KEY_SEAL_LIMIT`] blobs: a writer then draws a new
//! salt ([`BlobKey::is_worn`]).

use std::sync::atomic::{AtomicU64, Ordering};

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use ring::rand::SystemRandom;

use crate::master::{fill_random, hkdf_key, seal_appended};
use crate::{Error, ObjectKind, Result};

/// Version byte bound into every blob's associated data (the first byte
/// of a format-1 envelope is 1, so neither can pass for the other).
pub const BLOB_ENVELOPE_VERSION: u8 = 2;
/// Length of a blob key's salt.
pub const BLOB_SALT_LEN: usize = 16;
/// Bytes the blob envelope adds to a plaintext: 12 nonce + 16 tag.
pub const BLOB_SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Blobs one blob key may seal. With random 96-bit nonces the chance that
/// two of n nonces collide is about n² / 2^97: 2^-37 at this limit (NIST
/// SP 800-38D allows 2^32 messages per key, at 2^-33).
pub const BLOB_KEY_SEAL_LIMIT: u64 = 1 << 30;

const TAG_LEN: usize = 16;
/// HKDF `info` of blob keys.
const BLOB_KEY_INFO: &[u8] = b"arca v2 pack blob key";

/// The public half of a blob key: which data key, which salt. Stored in
/// a format-2 pack's header and in the index entry of the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKeyId {
    /// Id of the data key of the keyring the blob key is derived from.
    pub key_id: u32,
    /// HKDF salt, random per blob key.
    pub salt: [u8; BLOB_SALT_LEN],
}

/// An AES-256-GCM key derived for the blobs of one or more packs
/// ([`crate::MasterKey::fresh_blob_key`] to write,
/// [`crate::MasterKey::blob_key`] to read). Counts what it seals.
pub struct BlobKey {
    id: BlobKeyId,
    aead: LessSafeKey,
    sealed: AtomicU64,
}

impl std::fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobKey")
            .field("key_id", &self.id.key_id)
            .finish_non_exhaustive()
    }
}

impl BlobKey {
    /// The blob key of `id`, from the data key `id.key_id` names.
    pub(crate) fn derive(id: BlobKeyId, data_key: &[u8; 32]) -> BlobKey {
        BlobKey {
            id,
            aead: hkdf_key(&id.salt, data_key, BLOB_KEY_INFO),
            sealed: AtomicU64::new(0),
        }
    }

    /// Which data key and salt this key is derived from.
    pub fn id(&self) -> BlobKeyId {
        self.id
    }

    /// Whether this key has sealed [`BLOB_KEY_SEAL_LIMIT`] blobs: a writer
    /// must draw a fresh one for further blobs.
    pub fn is_worn(&self) -> bool {
        self.sealed.load(Ordering::Relaxed) >= BLOB_KEY_SEAL_LIMIT
    }

    /// Appends `nonce ‖ ciphertext ‖ tag` to `out`, whose plaintext
    /// `write_plaintext` appends to `out` (and must only append), as
    /// [`crate::MasterKey::seal_with`] does for whole envelopes. On error `out`
    /// is left as it was.
    pub fn seal_with<T, E: From<Error>>(
        &self,
        kind: ObjectKind,
        out: &mut Vec<u8>,
        write_plaintext: impl FnOnce(&mut Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&SystemRandom::new(), &mut nonce)?;
        self.sealed.fetch_add(1, Ordering::Relaxed);
        seal_appended(
            &self.aead,
            nonce,
            &self.associated_data(kind),
            &nonce,
            out,
            write_plaintext,
        )
    }

    /// Appends the sealed form of `plaintext` to `out`.
    pub fn seal_into(&self, kind: ObjectKind, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        out.reserve(plaintext.len() + BLOB_SEAL_OVERHEAD);
        self.seal_with(kind, out, |out| {
            out.extend_from_slice(plaintext);
            Ok(())
        })
    }

    /// Authenticates and decrypts a blob sealed by this key as `kind`.
    ///
    /// [`Error::Malformed`] if it is shorter than [`BLOB_SEAL_OVERHEAD`];
    /// [`Error::Authentication`] if it was modified, truncated, sealed as
    /// another kind or under another key or salt.
    pub fn open(&self, kind: ObjectKind, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < BLOB_SEAL_OVERHEAD {
            return Err(Error::Malformed {
                what: "blob envelope",
                reason: format!(
                    "{} bytes is shorter than the {BLOB_SEAL_OVERHEAD}-byte minimum; the blob is truncated",
                    sealed.len()
                ),
            });
        }
        let (nonce, ciphertext_and_tag) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut plaintext = ciphertext_and_tag.to_vec();
        let len = self
            .aead
            .open_in_place(nonce, Aad::from(self.associated_data(kind)), &mut plaintext)
            .map_err(|_| Error::Authentication)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// `version ‖ key_id ‖ kind`.
    fn associated_data(&self, kind: ObjectKind) -> [u8; 6] {
        let mut aad = [0u8; 6];
        aad[0] = BLOB_ENVELOPE_VERSION;
        aad[1..5].copy_from_slice(&self.id.key_id.to_le_bytes());
        aad[5] = kind as u8;
        aad
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::MasterKey;

    fn sealed(key: &BlobKey, kind: ObjectKind, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        key.seal_into(kind, plaintext, &mut out).unwrap();
        out
    }

    #[test]
    fn blobs_round_trip_with_28_bytes_of_overhead() {
        let master = MasterKey::generate().unwrap();
        let key = master.fresh_blob_key().unwrap();
        let blob = sealed(&key, ObjectKind::DataBlob, b"hello");
        assert_eq!(blob.len(), 5 + BLOB_SEAL_OVERHEAD);
        assert_eq!(key.open(ObjectKind::DataBlob, &blob).unwrap(), b"hello");
        // A reader derives the same key from the pack's key id and salt.
        let reader = master.blob_key(key.id()).unwrap();
        assert_eq!(reader.open(ObjectKind::DataBlob, &blob).unwrap(), b"hello");
        assert_eq!(
            master
                .blob_key(key.id())
                .unwrap()
                .open(
                    ObjectKind::DataBlob,
                    &sealed(&key, ObjectKind::DataBlob, b"")
                )
                .unwrap(),
            b""
        );
    }

    #[test]
    fn wrong_kind_key_id_salt_flipped_or_truncated_blobs_do_not_open() {
        let mut master = MasterKey::generate().unwrap();
        let key = master.fresh_blob_key().unwrap();
        let blob = sealed(&key, ObjectKind::TreeBlob, b"a tree, not data");
        let is_corrupt = |result: Result<Vec<u8>>| {
            matches!(result, Err(Error::Authentication | Error::Malformed { .. }))
        };
        assert!(is_corrupt(key.open(ObjectKind::DataBlob, &blob)), "kind");
        let mut salt = key.id();
        salt.salt[0] ^= 1;
        assert!(
            is_corrupt(
                master
                    .blob_key(salt)
                    .unwrap()
                    .open(ObjectKind::TreeBlob, &blob)
            ),
            "salt"
        );
        let old = key.id().key_id;
        let new = master.rotate_data_key().unwrap();
        let other_key_id = BlobKeyId {
            key_id: new,
            ..key.id()
        };
        assert!(
            is_corrupt(
                master
                    .blob_key(other_key_id)
                    .unwrap()
                    .open(ObjectKind::TreeBlob, &blob)
            ),
            "key id"
        );
        let unknown = BlobKeyId {
            key_id: old.wrapping_add(7),
            ..key.id()
        };
        assert!(matches!(
            master.blob_key(unknown),
            Err(Error::Malformed { .. })
        ));
        for at in 0..blob.len() {
            let mut flipped = blob.clone();
            flipped[at] ^= 0x80;
            assert!(
                is_corrupt(key.open(ObjectKind::TreeBlob, &flipped)),
                "byte {at}"
            );
        }
        for len in 0..blob.len() {
            assert!(
                is_corrupt(key.open(ObjectKind::TreeBlob, &blob[..len])),
                "{len} bytes"
            );
        }
        assert_eq!(
            key.open(ObjectKind::TreeBlob, &blob).unwrap(),
            b"a tree, not data"
        );
    }

    #[test]
    fn an_object_envelope_does_not_open_as_a_blob_nor_a_blob_as_one() {
        let master = MasterKey::generate().unwrap();
        let key = master.fresh_blob_key().unwrap();
        let envelope = master.seal(ObjectKind::DataBlob, b"payload").unwrap();
        assert!(key.open(ObjectKind::DataBlob, &envelope).is_err());
        let blob = sealed(&key, ObjectKind::DataBlob, b"payload");
        assert!(master.open(ObjectKind::DataBlob, &blob).is_err());
    }

    #[test]
    fn a_key_is_worn_after_the_limit_and_fresh_keys_differ() {
        let master = MasterKey::generate().unwrap();
        let key = master.fresh_blob_key().unwrap();
        assert!(!key.is_worn());
        key.sealed.store(BLOB_KEY_SEAL_LIMIT - 1, Ordering::Relaxed);
        assert!(!key.is_worn());
        sealed(&key, ObjectKind::DataBlob, b"x");
        assert!(key.is_worn());
        assert_ne!(master.fresh_blob_key().unwrap().id(), key.id());
    }

    #[test]
    fn debug_names_no_salt_and_no_key() {
        let key = MasterKey::generate().unwrap().fresh_blob_key().unwrap();
        let printed = format!("{key:?}");
        assert_eq!(printed, "BlobKey { key_id: 0, .. }");
    }

    proptest! {
        #[test]
        fn any_plaintext_round_trips_and_arbitrary_bytes_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..512),
            garbage in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let master = MasterKey::generate().unwrap();
            let key = master.fresh_blob_key().unwrap();
            let blob = sealed(&key, ObjectKind::DataBlob, &plaintext);
            prop_assert_eq!(key.open(ObjectKind::DataBlob, &blob).unwrap(), plaintext);
            prop_assert!(key.open(ObjectKind::DataBlob, &garbage).is_err());
        }
    }
}
