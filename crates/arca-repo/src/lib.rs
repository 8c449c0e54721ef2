//! The Arca repository format and backup engine.
//!
//! A repository is a set of immutable, encrypted files in a [`arca_store::Backend`]:
//! `config`, `keys/`, `snapshots/`, `index/` and `data/` (packs). This crate
//! defines their format (see `docs/FORMAT.md`), opens and initialises
//! repositories, and implements the three core operations: [`backup`],
//! [`restore`] and [`check`]. It is not a CLI (see `bins/arca`) and knows
//! nothing about Kubernetes.

pub mod audit;
pub mod backup;
pub mod blob;
mod cache;
pub mod check;
pub mod config;
pub mod copy;
pub mod destroy;
pub mod diff;
pub mod dump;
pub mod erase;
mod error;
mod fence;
pub mod find;
pub mod forget;
pub mod hold;
pub mod index;
pub mod keys;
pub mod lease;
pub mod marks;
pub mod pack;
pub mod progress;
pub mod prune;
mod records;
pub mod rekey;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod rewrite;
pub mod select;
pub mod snapshot;
pub mod stats;
#[cfg(test)]
mod testing;
pub mod tree;

pub use arca_crypto::Id;
pub use error::Error;
pub use repository::Repository;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
