//! Blobs: the unit of deduplication. A data blob is one chunk of a file; a tree
//! blob is one encoded directory listing ([`crate::tree::Tree`]).
//!
//! A stored blob is `seal(kind, zstd(plaintext))` when compression pays off and
//! `seal(kind, plaintext)` when it does not; the pack header and the index
//! record which (see `docs/FORMAT.md`, "Blobs"). Its ID is the keyed content ID
//! of the plaintext, computed by the caller before encoding so deduplication
//! happens before any compression or encryption work.
//!
//! Compression reuses one `zstd::bulk::Compressor` per thread and level (and
//! one `Decompressor` per thread), so the encoder allocates no zstd contexts in
//! steady state. Call these functions from CPU worker threads, not from an
//! async executor.

use std::cell::RefCell;
use std::fmt;

use arca_crypto::{MasterKey, ObjectKind};

use crate::{Error, Id, Result};

/// What a blob holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded [`crate::tree::Tree`].
    Tree,
}

impl BlobType {
    /// The envelope kind blobs of this type are sealed with.
    pub fn object_kind(self) -> ObjectKind {
        match self {
            BlobType::Data => ObjectKind::DataBlob,
            BlobType::Tree => ObjectKind::TreeBlob,
        }
    }

    /// The byte that encodes this type in pack headers and index files.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    /// Inverse of [`BlobType::to_byte`].
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

impl fmt::Display for BlobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// The zstd level blobs are compressed with; level 0 turns compression off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    level: i32,
}

impl Compression {
    /// No compression: every blob is stored as sealed plaintext.
    pub const OFF: Compression = Compression { level: 0 };
    /// The default level (zstd 3: fast, and most of the gain of higher levels).
    pub const DEFAULT_LEVEL: i32 = 3;
    /// Highest accepted level.
    pub const MAX_LEVEL: i32 = 22;

    /// Compression at zstd `level` (1..=22), or [`Compression::OFF`] for 0.
    pub fn new(level: i32) -> Result<Self> {
        if !(0..=Self::MAX_LEVEL).contains(&level) {
            return Err(Error::InvalidOptions(format!(
                "compression level {level} is out of range: use 0 (off) to {}",
                Self::MAX_LEVEL
            )));
        }
        Ok(Compression { level })
    }

    /// The zstd level; 0 means off.
    pub fn level(self) -> i32 {
        self.level
    }

    /// Whether compression is off.
    pub fn is_off(self) -> bool {
        self.level == 0
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: Self::DEFAULT_LEVEL,
        }
    }
}

/// A blob ready to be appended to a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlob {
    /// Keyed content ID of the plaintext.
    pub id: Id,
    /// What the blob holds.
    pub blob_type: BlobType,
    /// The stored bytes: the sealed, possibly compressed, plaintext.
    pub bytes: Vec<u8>,
    /// `Some(plaintext length)` iff the stored bytes are zstd-compressed.
    pub uncompressed_length: Option<u32>,
}

/// How many leading bytes the compressibility probe looks at.
pub const PROBE_LEN: usize = 64 * 1024;
/// The probe (zstd level 1 over the first [`PROBE_LEN`] bytes) must save at
/// least this many parts per thousand, or the blob is stored uncompressed.
/// Measured: zstd -1 on random data grows it by ~0.01 %; on already
/// compressed media (JPEG, gzip) it saves < 1 %; text and binaries save > 30 %.
pub const PROBE_MIN_SAVING_PERMILLE: usize = 30;

thread_local! {
    /// One compressor per level used on this thread (typically two: the probe
    /// level and the configured level).
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    /// One decompressor per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// zstd-compresses `data` at `level` with this thread's cached compressor.
pub(crate) fn zstd_compress(data: &[u8], level: i32) -> Vec<u8> {
    COMPRESSORS.with(|cell| {
        let mut compressors = cell.borrow_mut();
        let index = match compressors.iter().position(|(l, _)| *l == level) {
            Some(index) => index,
            None => {
                let compressor = zstd::bulk::Compressor::new(level)
                    .expect("zstd accepts every level Compression::new lets through");
                compressors.push((level, compressor));
                compressors.len() - 1
            }
        };
        compressors[index]
            .1
            .compress(data)
            .expect("zstd compression into a compress_bound-sized buffer cannot fail")
    })
}

/// Decompresses a zstd frame that must decode to exactly `expected_len` bytes.
pub(crate) fn zstd_decompress_exact(
    data: &[u8],
    expected_len: usize,
) -> std::result::Result<Vec<u8>, String> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        let decompressor = slot.as_mut().expect("just initialised");
        let out = decompressor
            .decompress(data, expected_len)
            .map_err(|e| format!("zstd decompression failed: {e}"))?;
        if out.len() != expected_len {
            return Err(format!(
                "decompressed to {} bytes, the index says {expected_len}",
                out.len()
            ));
        }
        Ok(out)
    })
}

/// Whether the probe says `plaintext` is worth compressing.
pub fn worth_compressing(plaintext: &[u8]) -> bool {
    if plaintext.is_empty() {
        return false;
    }
    let sample = &plaintext[..plaintext.len().min(PROBE_LEN)];
    let compressed = zstd_compress(sample, 1);
    compressed.len() * 1000 <= sample.len() * (1000 - PROBE_MIN_SAVING_PERMILLE)
}

/// Encodes one blob: compresses it if that pays off (see [`worth_compressing`];
/// the compressed form is kept only if smaller), then seals it with the
/// envelope kind of `blob_type`. `id` must be `key.content_id(plaintext)`.
pub fn encode_blob(
    key: &MasterKey,
    blob_type: BlobType,
    id: Id,
    plaintext: &[u8],
    compression: Compression,
) -> Result<EncodedBlob> {
    let plaintext_len = u32::try_from(plaintext.len()).map_err(|_| {
        Error::InvalidOptions(format!(
            "{blob_type} blob {id} has {} bytes; blobs are limited to 4 GiB",
            plaintext.len()
        ))
    })?;
    let compressed = (!compression.is_off() && worth_compressing(plaintext))
        .then(|| zstd_compress(plaintext, compression.level()))
        .filter(|compressed| compressed.len() < plaintext.len());
    let (payload, uncompressed_length) = match &compressed {
        Some(compressed) => (compressed.as_slice(), Some(plaintext_len)),
        None => (plaintext, None),
    };
    let bytes = key.seal(blob_type.object_kind(), payload)?;
    Ok(EncodedBlob {
        id,
        blob_type,
        bytes,
        uncompressed_length,
    })
}

/// Decodes a stored blob: opens the envelope, decompresses if
/// `uncompressed_length` says it is compressed, and checks that the content ID
/// of the result is `expected`. Any failure is [`Error::Corrupt`] naming the blob.
pub fn decode_blob(
    key: &MasterKey,
    blob_type: BlobType,
    stored: &[u8],
    uncompressed_length: Option<u32>,
    expected: &Id,
) -> Result<Vec<u8>> {
    let what = || format!("{blob_type} blob {expected}");
    let opened = key
        .open(blob_type.object_kind(), stored)
        .map_err(|e| Error::corrupt(what(), e))?;
    let plaintext = match uncompressed_length {
        None => opened,
        Some(len) => zstd_decompress_exact(&opened, len as usize)
            .map_err(|reason| Error::corrupt(what(), reason))?,
    };
    let actual = key.content_id(&plaintext);
    if actual != *expected {
        return Err(Error::corrupt(
            what(),
            format!("content hashes to {actual}"),
        ));
    }
    Ok(plaintext)
}
