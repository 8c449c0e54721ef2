//! Cryptography for Arca repositories: the master key, password-wrapped key
//! files, keyed content IDs and the authenticated-encryption envelope that
//! every stored byte goes through.
//!
//! This crate is pure computation: it never does I/O and never logs. It is not
//! a general-purpose crypto library; its formats are specified in
//! `docs/FORMAT.md` ("Keys", "Envelope", "IDs").
//!
//! CONTRACT (fixed by the workspace skeleton; implementations fill it in):
//! - [`Id`]: 32-byte identifier, lower-case hex `Display`/`FromStr`, serde as a hex string,
//!   `Ord`, `Hash`, `Copy`. [`Id::storage_id`] = unkeyed BLAKE3 of stored (already encrypted)
//!   bytes, used to name files; content IDs come from [`MasterKey::content_id`] (keyed).
//! - [`MasterKey`]: random key material, zeroized on drop, never `Debug`-printed.
//! - [`MasterKey::seal_into`] / [`MasterKey::open`]: AES-256-GCM envelope with a per-object
//!   HKDF-derived subkey; [`SEAL_OVERHEAD`] bytes of overhead.
//! - [`KeyFile`]: Argon2id-wrapped master key, JSON on disk.

mod error;
mod id;
mod keyfile;
mod master;

pub use error::Error;
pub use id::Id;
pub use keyfile::{KdfParams, KeyFile};
pub use master::{MasterKey, ObjectKind, SEAL_OVERHEAD};

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
