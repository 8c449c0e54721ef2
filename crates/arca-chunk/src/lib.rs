//! Keyed content-defined chunking for Arca.
//!
//! Splits byte streams into variable-size chunks with FastCDC (2020) whose gear
//! table is derived from a secret key, so chunk boundaries reveal nothing about
//! the content to someone without the key. This crate only finds cut points; it
//! does not hash, compress or store chunks.
//!
//! CONTRACT (fixed by the workspace skeleton):
//! - [`ChunkerParams`] { min, avg, max } in bytes; serde; `Default` = 512 KiB / 1 MiB / 8 MiB;
//!   [`ChunkerParams::validate`].
//! - [`Chunker::new`]`(params, key: &[u8; 32])`; `Chunker` is `Clone + Send + Sync` and cheap to share.
//! - [`Chunker::cut_points`] over a slice; [`Chunker::chunks`] over any `std::io::Read`
//!   yielding `io::Result<bytes::Bytes>` with memory bounded by ~2 × max.

use std::io::Read;

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size (except the last chunk of a stream).
    pub min: u32,
    /// Target average chunk size (a power of two).
    pub avg: u32,
    /// Maximum chunk size.
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 }
    }
}

/// Errors of the chunker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The parameters are outside what FastCDC supports.
    #[error("invalid chunker parameters: {0}")]
    InvalidParams(String),
}

impl ChunkerParams {
    /// Checks the bounds FastCDC supports.
    pub fn validate(&self) -> Result<(), Error> {
        unimplemented!()
    }
}

/// A keyed FastCDC chunker.
#[derive(Clone)]
pub struct Chunker {
    _private: (),
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chunker(..)")
    }
}

impl Chunker {
    /// Builds the chunker; the gear table is derived from `key`.
    pub fn new(_params: ChunkerParams, _key: &[u8; 32]) -> Result<Self, Error> {
        unimplemented!()
    }
    /// Chunk lengths of `data` in order (they sum to `data.len()`).
    pub fn cut_points(&self, _data: &[u8]) -> Vec<usize> {
        unimplemented!()
    }
    /// Streams chunks out of a reader.
    pub fn chunks<R: Read>(&self, _reader: R) -> impl Iterator<Item = std::io::Result<bytes::Bytes>> {
        std::iter::empty()
    }
}
