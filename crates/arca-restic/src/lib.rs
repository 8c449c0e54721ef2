//! Read-only access to restic repositories (format versions 1 and 2), so that
//! a VolSync user's existing restic history can be listed, checked and
//! restored with Arca alone.
//!
//! A restic repository is `config`, `keys/`, `snapshots/`, `index/` and
//! `data/` over any [`arca_store::Backend`] (local, S3, GCS, Azure), laid out
//! as restic's `doc/design.rst` specifies: scrypt key files wrapping a master
//! key; AES-256-CTR + Poly1305-AES on every file and blob; SHA-256 IDs (of
//! stored bytes for files, of plaintext for blobs); JSON config, snapshots,
//! index files and trees; packs with encrypted headers; zstd in version 2.
//! [`ResticRepository`] opens one and reads it; [`restore`] writes a snapshot
//! back to disk; [`check`] verifies structure and, optionally, every blob.
//! Snapshots and tree nodes convert into Arca's own types
//! ([`ResticSnapshot::to_arca`], [`ResticTree::to_arca`]) so the CLI prints
//! them with the same code as Arca's.
//!
//! [`migrate`] copies snapshots into an Arca repository (`arca copy
//! --from-repo`), re-chunking files with Arca's chunker.
//!
//! This crate never writes into a restic repository (no locks, no backup,
//! no prune).
//!
//! CONTRACT:
//! - Everything read is authenticated before use: a file by its MAC (and its
//!   name, the SHA-256 of its bytes), a blob by its MAC and the SHA-256 of its
//!   plaintext. Damage is an error naming the file or blob, never wrong data.
//! - Every parser of repository bytes bounds its allocations by the input
//!   (or a fixed cap) and never panics; each has a fuzz target.
//! - Key derivation, decryption, decompression and hashing run off the async
//!   runtime's worker threads.

pub mod check;
pub mod compression;
pub mod config;
pub mod crypto;
mod error;
pub mod index;
pub mod migrate;
pub mod pack;
pub mod repository;
pub mod restore;
pub mod snapshot;
pub mod tree;

pub use error::Error;
pub use repository::{ResticRepository, is_restic_repository};
pub use snapshot::ResticSnapshot;
pub use tree::ResticTree;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
