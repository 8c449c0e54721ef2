//! Cryptography for Arca repositories: the master key, password-wrapped key
//! files, keyed content IDs and the authenticated-encryption envelope that
//! every stored byte goes through.
//!
//! This crate is pure computation: it never does I/O and never logs. It is not
//! a general-purpose crypto library; its formats are specified below (and
//! restated in `docs/FORMAT.md`, "Keys", "Envelope", "IDs"), precisely enough
//! for a second implementation. All integers are little-endian.
//!
//! CONTRACT (fixed by the workspace skeleton; implementations fill it in):
//! - [`Id`]: 32-byte identifier, lower-case hex `Display`/`FromStr`, serde as a hex string,
//!   `Ord`, `Hash`, `Copy`. [`Id::storage_id`] = unkeyed BLAKE3 of stored (already encrypted)
//!   bytes, used to name files; content IDs come from [`MasterKey::content_id`] (keyed).
//! - [`MasterKey`]: random key material, zeroized on drop, never `Debug`-printed.
//! - [`MasterKey::seal_into`] / [`MasterKey::open`]: AES-256-GCM envelope with a per-object
//!   HKDF-derived subkey; [`SEAL_OVERHEAD`] bytes of overhead. [`MasterKey::seal_with`] seals
//!   in place whatever a writer appends (a compressor, say), without a copy.
//! - [`KeyFile`]: Argon2id-wrapped master key, JSON on disk.
//!
//! # Master key
//!
//! Random 32-byte secrets from the OS RNG:
//! - `id_key`: content IDs are `BLAKE3-keyed(id_key, plaintext)` (BLAKE3's keyed
//!   mode, 32-byte output), so IDs reveal nothing about content to outsiders.
//! - `chunker_key`: seeds the chunker's gear table (see the `arca-chunk` crate).
//! - a keyring of data keys, each `(key_id u32, key [32])`, plus the id of the
//!   *current* key. New envelopes use the current key; any key in the ring
//!   opens envelopes that name it. Key ids start at 0 and a rotation adds the
//!   next id ([`MasterKey::rotate_data_key`]).
//!
//! - a *keyring key* `(keyring_key_id [16], keyring_key [32])` that seals
//!   keyrings; unlike the two above it is replaced by an erasure
//!   ([`MasterKey::erased`]).
//!
//! Serialised (only ever inside a key file's encrypted `data`), version 2:
//!
//! ```text
//! version u8 = 2 | id_key [32] | chunker_key [32] | keyring_key_id [16] | keyring_key [32]
//!   | current_key_id u32 | key_count u32 | key_count × ( key_id u32 | key [32] )
//! ```
//!
//! `key_count` ≥ 1, key ids strictly increasing and never [`AUDIT_KEY_ID`],
//! `current_key_id` among them, no trailing bytes. Version 1, written before
//! keyring keys existed, has no keyring key; it is still read, and written
//! back as version 1.
//!
//! Data keys added after a key file was written travel in *keyrings*
//! ([`MasterKey::rotate_into_keyring`], [`MasterKey::adopt_keyrings`]):
//!
//! ```text
//! "arcakr02" [8] | keyring_key_id [16] | nonce [12]
//!   | AES-256-GCM(kek, nonce, aad = "arcakr02" | keyring_key_id, plaintext) | tag [16]
//! kek       = HKDF-SHA256(salt = keyring_key_id, ikm = keyring_key, info = "arca v2 keyring key")
//! plaintext = version u8 = 1 | generation u64 | current_key_id u32 | key_count u32
//!             | key_count × ( key_id u32 | key [32] )
//! ```
//!
//! For version 1 material the legacy format: `nonce [12] | AES-256-GCM(kek,
//! nonce, aad = "arca keyring v1", plaintext) | tag [16]` with `kek =
//! HKDF-SHA256(salt = empty, ikm = id_key | chunker_key, info = "arca v1
//! keyring key")`. A keyring sealed under another keyring key (or a legacy
//! one, for version 2 material) is left alone ([`Adopted::foreign`]).
//! A rotation picks a random unused key id; adopting keyrings adds their
//! keys and makes current the current key of the highest generation.
//!
//! Audit records ([`ObjectKind::AuditRecord`]) are sealed under the *audit
//! key* `HKDF-SHA256(salt = empty, ikm = id_key | chunker_key, info = "arca v1
//! audit key")`, named in the envelope by key id [`AUDIT_KEY_ID`], so erasing
//! data keys never makes the audit trail unreadable.
//!
//! # Envelope
//!
//! Every encrypted object (config, pack blobs, pack header, index, snapshot,
//! lock) is one envelope:
//!
//! ```text
//! offset  0: version  u8 = 1
//! offset  1: key_id   u32        which data key of the keyring sealed it
//! offset  5: salt     [16]       random per object
//! offset 21: nonce    [12]       random per object
//! offset 33: ciphertext          same length as the plaintext
//! end - 16:  tag      [16]       AES-256-GCM tag
//! ```
//!
//! so [`SEAL_OVERHEAD`] = 49 bytes. The per-object key is
//! `HKDF-SHA256(ikm = data key[key_id], salt = salt, info = "arca v1 object key")`,
//! 32 bytes of output, used as an AES-256-GCM key with `nonce`. The associated
//! data is the 6 bytes `version | key_id | kind`, where `kind` is the
//! [`ObjectKind`] discriminant (`Config` = 1 … `Keyring` = 11); a tree can
//! therefore never be opened as data, nor an index as a snapshot.
//!
//! Why a fresh subkey per object: AES-GCM breaks if a (key, nonce) pair ever
//! repeats, and with random 96-bit nonces under one key that becomes likely
//! near 2^48 messages (NIST caps it at 2^32). Here every object gets its own
//! AES key from a random 128-bit salt, so a repeat needs two objects with the
//! same salt *and* the same nonce under the same data key: probability about
//! n² / 2^(128+96+1) for n objects, negligible for any repository that can
//! exist (about 2^-129 at n = 2^48). Each AES key also encrypts only one message,
//! far below GCM's per-key data limits. The plaintext limit per envelope is
//! GCM's: 2^36 − 32 bytes.
//!
//! Opening checks, in order: length ≥ 49, version = 1, key id in the keyring
//! (each a [`Error::Malformed`]), then the tag ([`Error::Authentication`]).
//!
//! # Blob envelope (pack format 2)
//!
//! Blobs of packs written since pack format 2 are not envelopes of their
//! own: a [`BlobKey`] = `HKDF-SHA256(ikm = data key[key_id], salt = salt [16],
//! info = "arca v2 pack blob key")` seals many of them, and the pack stores
//! its [`BlobKeyId`] (`key_id`, `salt`) once. A blob is `nonce [12] |
//! ciphertext | tag [16]` ([`BLOB_SEAL_OVERHEAD`] = 28 bytes) with
//! associated data `version (= 2) | key_id | kind`. Nonces are random, so a
//! blob key seals at most [`BLOB_KEY_SEAL_LIMIT`] (2^30) blobs: two of n
//! random 96-bit nonces collide with probability about n² / 2^97.
//!
//! # Key file
//!
//! Plaintext JSON:
//!
//! ```json
//! {
//!   "version": 1,
//!   "created": 1767225600,
//!   "hostname": "backup-host",
//!   "username": "root",
//!   "kdf": "argon2id",
//!   "m_cost_kib": 65536,
//!   "t_cost": 3,
//!   "p_cost": 1,
//!   "salt": "<standard base64 (with padding) of 32 random bytes>",
//!   "data": "<standard base64 of nonce [12] | ciphertext | tag [16]>"
//! }
//! ```
//!
//! `created` is Unix seconds. The key-encryption key is
//! `Argon2id(version 0x13, password, salt, m_cost_kib, t_cost, p_cost)` with a
//! 32-byte output; `data` is the serialised master key sealed with AES-256-GCM
//! under that key, the random `nonce`, and associated data `"arca keyfile v1"`.
//! `hostname` and `username` are informational and not authenticated. An
//! append-only key file ([`KeyAccess::AppendOnly`]) has the extra member
//! `"append_only": true` and is sealed with associated data
//! `"arca keyfile v1 append-only"` instead, so the flag is authenticated:
//! removing or adding it makes the key file fail to open.
//! Readers reject, before running Argon2id, `m_cost_kib` outside 8..=4194304
//! (or below 8 per lane), `t_cost` outside 1..=64 and `p_cost` outside 1..=64.
//! A failed tag means a wrong password (or a corrupt file): [`Error::WrongPassword`].

mod blob_key;
mod error;
mod id;
mod keyfile;
mod master;

pub use blob_key::{
    BLOB_ENVELOPE_VERSION, BLOB_KEY_SEAL_LIMIT, BLOB_SALT_LEN, BLOB_SEAL_OVERHEAD, BlobKey,
    BlobKeyId,
};
pub use error::Error;
pub use id::{Id, StorageIdHasher};
pub use keyfile::{KdfParams, KeyAccess, KeyFile};
pub use master::{AUDIT_KEY_ID, Adopted, MasterKey, ObjectKind, SEAL_OVERHEAD};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
