//! The index: which pack holds each blob, where, and how it is encoded.
//!
//! On storage the index is a set of files in `index/`; each lists some packs
//! and all blobs in them ([`IndexFile`], binary, see `docs/FORMAT.md`,
//! "Index files"). In memory all files merge into one [`Index`]: a sorted
//! `Vec` of fixed-size 48-byte entries searched by binary search, with pack IDs
//! stored once in a side table, so a repository of 10 million blobs needs
//! about 480 MB and no per-blob heap allocation.

use std::collections::HashMap;

use crate::blob::BlobType;
use crate::pack::{FLAG_COMPRESSED, PackEntry, decode_blob_record};
use crate::{Error, Id, Result};

/// Version byte at the start of every index file plaintext.
pub const INDEX_VERSION: u8 = 1;
/// Bytes of one encoded pack record (before its blob records).
pub const PACK_RECORD_LEN: usize = 32 + 4;
/// Bytes of one encoded blob record.
pub const BLOB_RECORD_LEN: usize = 4 + 1 + 1 + 32 + 4 + 4;

/// Writers start a new index file once this many blobs are listed, keeping
/// each file's plaintext below ~7 MiB (150 000 × 46 bytes).
pub const TARGET_BLOBS_PER_FILE: usize = 150_000;

/// One file of the index: a list of packs and their blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Packs described by this file.
    pub packs: Vec<IndexPack>,
}

/// One pack and every blob in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// Storage ID of the pack (its file name under `data/`).
    pub id: Id,
    /// The blobs in the pack.
    pub blobs: Vec<PackEntry>,
}

impl IndexFile {
    /// Number of blobs listed across all packs.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    /// Whether a writer should start a new file (see [`TARGET_BLOBS_PER_FILE`]).
    pub fn is_full(&self) -> bool {
        self.blob_count() >= TARGET_BLOBS_PER_FILE
    }

    /// Splits into files of at most `max_blobs` blobs each, at pack boundaries
    /// (a pack with more blobs than that gets a file of its own).
    pub fn split(self, max_blobs: usize) -> Vec<IndexFile> {
        let mut files = Vec::new();
        let mut current = IndexFile::default();
        let mut count = 0;
        for pack in self.packs {
            if count > 0 && count + pack.blobs.len() > max_blobs {
                files.push(std::mem::take(&mut current));
                count = 0;
            }
            count += pack.blobs.len();
            current.packs.push(pack);
        }
        if !current.packs.is_empty() {
            files.push(current);
        }
        files
    }

    /// The binary plaintext (the repository compresses and seals it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            5 + self.packs.len() * PACK_RECORD_LEN + self.blob_count() * BLOB_RECORD_LEN,
        );
        out.push(INDEX_VERSION);
        out.extend_from_slice(&count_u32(self.packs.len()).to_le_bytes());
        for pack in &self.packs {
            out.extend_from_slice(&pack.id.0);
            out.extend_from_slice(&count_u32(pack.blobs.len()).to_le_bytes());
            for blob in &pack.blobs {
                out.extend_from_slice(&blob.offset.to_le_bytes());
                out.push(blob.blob_type.to_byte());
                out.push(if blob.uncompressed_length.is_some() {
                    FLAG_COMPRESSED
                } else {
                    0
                });
                out.extend_from_slice(&blob.id.0);
                out.extend_from_slice(&blob.length.to_le_bytes());
                out.extend_from_slice(&blob.uncompressed_length.unwrap_or(0).to_le_bytes());
            }
        }
        out
    }

    /// Parses the binary plaintext (untrusted input: every count and length is
    /// checked against the bytes actually present).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::corrupt("index file", reason);
        let mut reader = Reader { bytes, pos: 0 };
        let version = reader.take(1).ok_or_else(|| bad("empty".into()))?[0];
        if version != INDEX_VERSION {
            return Err(bad(format!("unsupported index version {version}")));
        }
        let pack_count = reader
            .u32()
            .ok_or_else(|| bad("truncated pack count".into()))? as usize;
        let mut packs = Vec::with_capacity(pack_count.min(reader.remaining() / PACK_RECORD_LEN));
        for pack_number in 0..pack_count {
            let truncated = || bad(format!("truncated at pack {pack_number} of {pack_count}"));
            let id = Id(reader
                .take(32)
                .ok_or_else(truncated)?
                .try_into()
                .expect("32 bytes"));
            let blob_count = reader.u32().ok_or_else(truncated)? as usize;
            if reader.remaining() / BLOB_RECORD_LEN < blob_count {
                return Err(bad(format!(
                    "pack {id} claims {blob_count} blobs but the file is shorter"
                )));
            }
            let mut blobs = Vec::with_capacity(blob_count);
            for _ in 0..blob_count {
                let record = reader.take(BLOB_RECORD_LEN).expect("length checked above");
                let offset = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
                let (blob_type, blob_id, length, uncompressed_length) =
                    decode_blob_record(&record[4..])
                        .map_err(|reason| bad(format!("pack {id}: {reason}")))?;
                if offset.checked_add(length).is_none() {
                    return Err(bad(format!("pack {id}: blob {blob_id} extends past 4 GiB")));
                }
                blobs.push(PackEntry {
                    blob_type,
                    id: blob_id,
                    offset,
                    length,
                    uncompressed_length,
                });
            }
            packs.push(IndexPack { id, blobs });
        }
        if reader.remaining() != 0 {
            return Err(bad(format!("{} trailing bytes", reader.remaining())));
        }
        Ok(IndexFile { packs })
    }
}

fn count_u32(count: usize) -> u32 {
    u32::try_from(count).expect("index counts fit in u32 (files are split long before)")
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// Where a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobLocation {
    /// Storage ID of the pack holding the blob.
    pub pack: Id,
    /// What the blob holds.
    pub blob_type: BlobType,
    /// Byte offset of the stored blob in the pack.
    pub offset: u32,
    /// Stored (sealed) length.
    pub length: u32,
    /// `Some(plaintext length)` iff the stored bytes are zstd-compressed.
    pub uncompressed_length: Option<u32>,
}

/// Top bit of [`Entry::pack_and_type`]: set for tree blobs.
const TREE_BIT: u32 = 1 << 31;

/// One blob in the in-memory index: 48 bytes, no heap.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: [u8; 32],
    /// Index into [`Index::packs`]; the top bit is the blob type.
    pack_and_type: u32,
    offset: u32,
    length: u32,
    /// Plaintext length if compressed, 0 if not (compressed blobs are never empty).
    uncompressed: u32,
}

impl Entry {
    fn blob_type(&self) -> BlobType {
        if self.pack_and_type & TREE_BIT != 0 {
            BlobType::Tree
        } else {
            BlobType::Data
        }
    }

    fn sort_key(&self) -> (&[u8; 32], bool) {
        (&self.id, self.pack_and_type & TREE_BIT != 0)
    }
}

/// The merged in-memory index of a repository.
///
/// Build it with [`Index::add_file`] for every index file, then call
/// [`Index::finish`] once before looking anything up. When several packs hold
/// the same blob (after an interrupted backup, say), the first one added wins.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<Entry>,
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    finished: bool,
}

impl Index {
    /// Adds every pack and blob of `file`. Call [`Index::finish`] afterwards.
    pub fn add_file(&mut self, file: &IndexFile) {
        self.finished = false;
        self.entries.reserve(file.blob_count());
        for pack in &file.packs {
            let number = match self.pack_numbers.get(&pack.id) {
                Some(&number) => number,
                None => {
                    let number = u32::try_from(self.packs.len())
                        .ok()
                        .filter(|n| n & TREE_BIT == 0)
                        .expect("fewer than 2^31 packs");
                    self.packs.push(pack.id);
                    self.pack_numbers.insert(pack.id, number);
                    number
                }
            };
            for blob in &pack.blobs {
                let type_bit = if blob.blob_type == BlobType::Tree {
                    TREE_BIT
                } else {
                    0
                };
                self.entries.push(Entry {
                    id: blob.id.0,
                    pack_and_type: number | type_bit,
                    offset: blob.offset,
                    length: blob.length,
                    uncompressed: blob.uncompressed_length.unwrap_or(0),
                });
            }
        }
    }

    /// Sorts the entries and drops duplicates, making lookups possible.
    pub fn finish(&mut self) {
        // Stable sort keeps the first-added location of a duplicated blob first.
        self.entries.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.entries
            .dedup_by(|later, earlier| later.sort_key() == earlier.sort_key());
        self.entries.shrink_to_fit();
        self.finished = true;
    }

    fn find(&self, blob_type: BlobType, id: &Id) -> Option<&Entry> {
        assert!(
            self.finished,
            "Index::finish must be called after Index::add_file and before lookups"
        );
        let key = (&id.0, blob_type == BlobType::Tree);
        self.entries
            .binary_search_by(|e| e.sort_key().cmp(&key))
            .ok()
            .map(|i| &self.entries[i])
    }

    fn location(&self, entry: &Entry) -> BlobLocation {
        BlobLocation {
            pack: self.packs[(entry.pack_and_type & !TREE_BIT) as usize],
            blob_type: entry.blob_type(),
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: (entry.uncompressed != 0).then_some(entry.uncompressed),
        }
    }

    /// Where the blob is stored, if the index knows it.
    ///
    /// # Panics
    /// If blobs were added since the last [`Index::finish`].
    pub fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.find(blob_type, id).map(|e| self.location(e))
    }

    /// Whether the index knows the blob.
    ///
    /// # Panics
    /// If blobs were added since the last [`Index::finish`].
    pub fn contains(&self, blob_type: BlobType, id: &Id) -> bool {
        self.find(blob_type, id).is_some()
    }

    /// Number of distinct blobs (after [`Index::finish`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no blob.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every blob, in (ID, type) order once finished.
    pub fn iter(&self) -> impl Iterator<Item = (BlobType, Id, BlobLocation)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.blob_type(), Id(e.id), self.location(e)))
    }

    /// Every pack the index files listed.
    pub fn pack_ids(&self) -> impl Iterator<Item = Id> + '_ {
        self.packs.iter().copied()
    }

    /// Memory per blob entry, in bytes (the pack table is extra, per pack).
    pub fn bytes_per_blob(&self) -> usize {
        std::mem::size_of::<Entry>()
    }
}
