//! The index: which pack holds each blob, where, and how it is encoded.
//!
//! On storage the index is a set of files in `index/`; each lists some packs
//! and all blobs in them ([`IndexFile`], binary, see `docs/FORMAT.md`,
//! "Index files"). In memory all files merge into one [`Index`]: a sorted
//! `Vec` of fixed-size 48-byte entries searched by binary search, with pack IDs
//! stored once in a side table, so a repository of 10 million blobs needs
//! about 480 MB and no per-blob heap allocation.

use std::collections::{HashMap, HashSet};

use arca_crypto::{AUDIT_KEY_ID, BLOB_SALT_LEN, BlobKeyId};

use crate::blob::{BlobEnvelope, BlobType};
use crate::pack::{FLAG_COMPRESSED, PackEntry, decode_blob_record};
use crate::{Error, Id, Result};

/// Version byte at the start of the index file plaintext written now: each
/// pack with its blob key's id and salt (docs/FORMAT.md §11).
pub const INDEX_VERSION: u8 = 2;
/// Version byte of index files from before pack format 2, still read.
pub const INDEX_VERSION_PER_BLOB: u8 = 1;
/// Bytes of one encoded pack record (before its blob records):
/// `pack_id ‖ key_id ‖ salt ‖ blob_count`.
pub const PACK_RECORD_LEN: usize = 32 + 4 + BLOB_SALT_LEN + 4;
/// A version-1 pack record: `pack_id ‖ blob_count`.
const PACK_RECORD_LEN_PER_BLOB: usize = 32 + 4;
/// The key id a version-2 pack record gives a format-1 pack (whose blobs
/// name their keys themselves), with an all-zero salt: no data key has it.
const PER_BLOB_KEY_ID: u32 = AUDIT_KEY_ID;
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
    /// How the pack's blobs are sealed (as its header says).
    pub envelope: BlobEnvelope,
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
            let (key_id, salt) = match pack.envelope {
                BlobEnvelope::Pack(key) => (key.key_id, key.salt),
                BlobEnvelope::PerBlob => (PER_BLOB_KEY_ID, [0; BLOB_SALT_LEN]),
            };
            out.extend_from_slice(&key_id.to_le_bytes());
            out.extend_from_slice(&salt);
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
        let record_len = match version {
            INDEX_VERSION => PACK_RECORD_LEN,
            INDEX_VERSION_PER_BLOB => PACK_RECORD_LEN_PER_BLOB,
            _ => {
                return Err(bad(format!(
                    "unsupported index version {version}; this build reads versions \
                     {INDEX_VERSION_PER_BLOB} and {INDEX_VERSION} (upgrade arca?)"
                )));
            }
        };
        let pack_count = reader
            .u32()
            .ok_or_else(|| bad("truncated pack count".into()))? as usize;
        let mut packs = Vec::with_capacity(pack_count.min(reader.remaining() / record_len));
        for pack_number in 0..pack_count {
            let truncated = || bad(format!("truncated at pack {pack_number} of {pack_count}"));
            let id = Id(reader
                .take(32)
                .ok_or_else(truncated)?
                .try_into()
                .expect("32 bytes"));
            let envelope = if version == INDEX_VERSION_PER_BLOB {
                BlobEnvelope::PerBlob
            } else {
                let key_id = reader.u32().ok_or_else(truncated)?;
                let salt: [u8; BLOB_SALT_LEN] = reader
                    .take(BLOB_SALT_LEN)
                    .ok_or_else(truncated)?
                    .try_into()
                    .expect("BLOB_SALT_LEN bytes");
                match key_id {
                    PER_BLOB_KEY_ID if salt == [0; BLOB_SALT_LEN] => BlobEnvelope::PerBlob,
                    PER_BLOB_KEY_ID => {
                        return Err(bad(format!(
                            "pack {id}: key id {key_id:#x} names no data key"
                        )));
                    }
                    key_id => BlobEnvelope::Pack(BlobKeyId { key_id, salt }),
                }
            };
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
            packs.push(IndexPack {
                id,
                envelope,
                blobs,
            });
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
    /// How the pack's blobs are sealed.
    pub envelope: BlobEnvelope,
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
///
/// Lookups go through a [`PrefixTable`]: a 1M-blob index costs about two
/// cache misses in the 256 KiB table and its few neighbouring entries
/// instead of twenty misses spread over 48 MB.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: Vec<Entry>,
    packs: Vec<Id>,
    /// By pack number: how the pack's blobs are sealed.
    envelopes: Vec<BlobEnvelope>,
    pack_numbers: HashMap<Id, u32>,
    /// Empty until [`Index::finish`], and again after [`Index::add_file`].
    prefixes: PrefixTable,
    /// By pack number: packs pending deletion, whose blobs
    /// [`Index::contains`] treats as absent (see [`Index::hide_packs`]);
    /// empty when none are hidden.
    hidden: Vec<bool>,
}

/// Where each leading-bits prefix of the IDs starts in a sorted list of
/// IDs. IDs are uniformly distributed hashes, so each prefix covers a
/// handful of entries, and a lookup binary-searches only those.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrefixTable {
    /// `starts[p]` is the first entry whose ID prefix is ≥ `p`, for every
    /// `bits`-bit prefix `p`, plus the list's length at the end; empty for
    /// a table not built yet.
    starts: Vec<u32>,
    bits: u32,
}

/// Most leading ID bits a prefix table uses (a 256 KiB table).
const MAX_PREFIX_BITS: u32 = 16;

fn id_prefix(id: &[u8; 32], bits: u32) -> usize {
    (u32::from(u16::from_be_bytes([id[0], id[1]])) >> (16 - bits)) as usize
}

impl PrefixTable {
    /// The table of `sorted_ids`, which must be sorted by ID.
    pub(crate) fn build<'a>(sorted_ids: impl ExactSizeIterator<Item = &'a [u8; 32]>) -> Self {
        let len = sorted_ids.len();
        // About one to two entries per prefix for small lists, ~16 at 1M.
        let bits = (usize::BITS - len.leading_zeros()).min(MAX_PREFIX_BITS);
        let count = 1usize << bits;
        let mut starts = Vec::with_capacity(count + 1);
        for (i, id) in sorted_ids.enumerate() {
            let prefix = id_prefix(id, bits);
            while starts.len() <= prefix {
                starts.push(i as u32);
            }
        }
        starts.resize(count + 1, len as u32);
        PrefixTable { starts, bits }
    }

    /// Whether the table was built.
    pub(crate) fn is_built(&self) -> bool {
        !self.starts.is_empty()
    }

    /// The entries whose ID has the prefix of `id` (built tables only).
    pub(crate) fn range(&self, id: &[u8; 32]) -> std::ops::Range<usize> {
        let prefix = id_prefix(id, self.bits);
        self.starts[prefix] as usize..self.starts[prefix + 1] as usize
    }
}

impl Index {
    /// Adds every pack and blob of `file`. Call [`Index::finish`] afterwards.
    pub fn add_file(&mut self, file: &IndexFile) {
        self.prefixes = PrefixTable::default();
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
                    self.envelopes.push(pack.envelope);
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
        self.prefixes = PrefixTable::build(self.entries.iter().map(|e| &e.id));
    }

    fn find(&self, blob_type: BlobType, id: &Id) -> Option<&Entry> {
        self.position(blob_type, id).map(|i| &self.entries[i])
    }

    fn location(&self, entry: &Entry) -> BlobLocation {
        let pack = (entry.pack_and_type & !TREE_BIT) as usize;
        BlobLocation {
            pack: self.packs[pack],
            envelope: self.envelopes[pack],
            blob_type: entry.blob_type(),
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: (entry.uncompressed != 0).then_some(entry.uncompressed),
        }
    }

    /// Where the blob at `position` (from [`Index::position`]) is stored.
    pub(crate) fn location_at(&self, position: usize) -> BlobLocation {
        self.location(&self.entries[position])
    }

    /// ID of the blob at `position` (from [`Index::position`]).
    pub(crate) fn id_at(&self, position: usize) -> Id {
        Id(self.entries[position].id)
    }

    /// Where the blob is stored, if the index knows it.
    ///
    /// # Panics
    /// If blobs were added since the last [`Index::finish`].
    pub fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        self.find(blob_type, id).map(|e| self.location(e))
    }

    /// Whether the index knows the blob (in a pack not hidden by
    /// [`Index::hide_packs`]): what writers deduplicate against.
    ///
    /// # Panics
    /// If blobs were added since the last [`Index::finish`].
    pub fn contains(&self, blob_type: BlobType, id: &Id) -> bool {
        self.find(blob_type, id).is_some_and(|entry| {
            let pack = (entry.pack_and_type & !TREE_BIT) as usize;
            !self.hidden.get(pack).copied().unwrap_or(false)
        })
    }

    /// Makes [`Index::contains`] answer `false` for blobs located in `packs`
    /// (packs pending deletion, which writers must not deduplicate
    /// against); [`Index::get`] still finds them, so they stay readable.
    /// Of duplicated blobs the first-added copy is the one kept, so a
    /// caller adds the other packs' files first (see
    /// `Repository::load_index_for_writing`).
    pub fn hide_packs(&mut self, packs: &HashSet<Id>) {
        self.hidden = self.packs.iter().map(|id| packs.contains(id)).collect();
    }

    /// Position of the blob in [`Index::iter`]'s order (after
    /// [`Index::finish`]): a dense number for per-blob bitsets.
    pub(crate) fn position(&self, blob_type: BlobType, id: &Id) -> Option<usize> {
        if !self.prefixes.is_built() {
            assert!(
                self.entries.is_empty(),
                "Index::finish must be called after Index::add_file and before lookups"
            );
            return None;
        }
        let range = self.prefixes.range(&id.0);
        let key = (&id.0, blob_type == BlobType::Tree);
        self.entries[range.clone()]
            .binary_search_by(|e| e.sort_key().cmp(&key))
            .ok()
            .map(|i| range.start + i)
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

    /// How the blobs of `pack` are sealed, as the first index file listing
    /// it says; `None` for a pack no index file listed.
    pub fn pack_envelope(&self, pack: &Id) -> Option<BlobEnvelope> {
        self.pack_numbers
            .get(pack)
            .map(|&number| self.envelopes[number as usize])
    }

    /// Memory per blob entry, in bytes (the pack table is extra, per pack).
    pub fn bytes_per_blob(&self) -> usize {
        std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::{any_blob_type, any_envelope, any_id, any_uncompressed_length};

    fn any_pack_entry() -> impl Strategy<Value = PackEntry> {
        (
            any_blob_type(),
            any_id(),
            0u32..1 << 30,
            0u32..1 << 30,
            any_uncompressed_length(),
        )
            .prop_map(
                |(blob_type, id, offset, length, uncompressed_length)| PackEntry {
                    blob_type,
                    id,
                    offset,
                    length,
                    uncompressed_length,
                },
            )
    }

    fn any_index_file() -> impl Strategy<Value = IndexFile> {
        proptest::collection::vec(
            (
                any_id(),
                any_envelope(),
                proptest::collection::vec(any_pack_entry(), 0..20),
            )
                .prop_map(|(id, envelope, blobs)| IndexPack {
                    id,
                    envelope,
                    blobs,
                }),
            0..10,
        )
        .prop_map(|packs| IndexFile { packs })
    }

    fn entry(blob_type: BlobType, id: u8, offset: u32) -> PackEntry {
        PackEntry {
            blob_type,
            id: Id([id; 32]),
            offset,
            length: 100,
            uncompressed_length: Some(150),
        }
    }

    fn file(packs: &[(u8, Vec<PackEntry>)]) -> IndexFile {
        IndexFile {
            packs: packs
                .iter()
                .map(|(id, blobs)| IndexPack {
                    id: Id([*id; 32]),
                    envelope: envelope(*id),
                    blobs: blobs.clone(),
                })
                .collect(),
        }
    }

    /// A format-2 envelope of its own for the pack named `id`.
    fn envelope(id: u8) -> BlobEnvelope {
        BlobEnvelope::Pack(BlobKeyId {
            key_id: u32::from(id),
            salt: [id; BLOB_SALT_LEN],
        })
    }

    /// `file` as builds before pack format 2 encoded it (version 1: no key
    /// id or salt; every pack format 1).
    fn encode_version_1(file: &IndexFile) -> Vec<u8> {
        let mut out = vec![INDEX_VERSION_PER_BLOB];
        out.extend_from_slice(&count_u32(file.packs.len()).to_le_bytes());
        let current = file.encode();
        let mut at = 5;
        for pack in &file.packs {
            out.extend_from_slice(&pack.id.0);
            at += 32 + 4 + BLOB_SALT_LEN;
            let records = 4 + pack.blobs.len() * BLOB_RECORD_LEN;
            out.extend_from_slice(&current[at..at + records]);
            at += records;
        }
        out
    }

    #[test]
    fn entries_are_at_most_48_bytes() {
        assert!(std::mem::size_of::<Entry>() <= 48);
        assert_eq!(
            Index::default().bytes_per_blob(),
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn lookups_after_merging_files() {
        let mut index = Index::default();
        index.add_file(&file(&[(
            0xa0,
            vec![entry(BlobType::Data, 1, 0), entry(BlobType::Tree, 2, 100)],
        )]));
        index.add_file(&file(&[
            (0xb0, vec![entry(BlobType::Data, 3, 0)]),
            (
                0xc0,
                vec![entry(BlobType::Tree, 1, 0), entry(BlobType::Data, 4, 100)],
            ),
        ]));
        index.finish();
        assert_eq!(index.len(), 5);
        let location = index.get(BlobType::Tree, &Id([2; 32])).unwrap();
        assert_eq!(
            location,
            BlobLocation {
                pack: Id([0xa0; 32]),
                envelope: envelope(0xa0),
                blob_type: BlobType::Tree,
                offset: 100,
                length: 100,
                uncompressed_length: Some(150)
            }
        );
        // Same ID, different types: two distinct blobs in different packs.
        assert_eq!(
            index.get(BlobType::Data, &Id([1; 32])).unwrap().pack,
            Id([0xa0; 32])
        );
        assert_eq!(
            index.get(BlobType::Tree, &Id([1; 32])).unwrap().pack,
            Id([0xc0; 32])
        );
        assert_eq!(index.get(BlobType::Data, &Id([4; 32])).unwrap().offset, 100);
        assert!(index.contains(BlobType::Data, &Id([3; 32])));
        assert!(!index.contains(BlobType::Tree, &Id([3; 32])));
        assert!(!index.contains(BlobType::Data, &Id([9; 32])));
        let mut packs: Vec<Id> = index.pack_ids().collect();
        packs.sort();
        assert_eq!(packs, vec![Id([0xa0; 32]), Id([0xb0; 32]), Id([0xc0; 32])]);
        let listed: Vec<(BlobType, Id)> = index
            .iter()
            .map(|(t, id, loc)| {
                assert_eq!(loc.blob_type, t);
                (t, id)
            })
            .collect();
        assert_eq!(listed.len(), 5);
        assert!(
            listed
                .windows(2)
                .all(|w| (w[0].1, w[0].0) < (w[1].1, w[1].0))
        );
    }

    #[test]
    fn duplicates_keep_the_first_location() {
        let mut index = Index::default();
        index.add_file(&file(&[(0xa0, vec![entry(BlobType::Data, 1, 0)])]));
        index.add_file(&file(&[(0xb0, vec![entry(BlobType::Data, 1, 500)])]));
        // The same pack listed twice (e.g. two index files after a retried save).
        index.add_file(&file(&[(0xa0, vec![entry(BlobType::Data, 1, 0)])]));
        index.finish();
        assert_eq!(index.len(), 1);
        assert_eq!(index.pack_ids().count(), 2);
        let location = index.get(BlobType::Data, &Id([1; 32])).unwrap();
        assert_eq!((location.pack, location.offset), (Id([0xa0; 32]), 0));
    }

    #[test]
    fn an_empty_index_needs_no_finish() {
        let index = Index::default();
        assert!(!index.contains(BlobType::Data, &Id([1; 32])));
        let mut index = Index::default();
        index.add_file(&IndexFile::default());
        assert!(index.get(BlobType::Tree, &Id([1; 32])).is_none());
    }

    #[test]
    fn lookups_work_across_bucket_boundaries() {
        // IDs clustered at the edges and middle of the prefix space.
        let prefixes = [0x00u8, 0x00, 0x01, 0x7f, 0x80, 0x80, 0xfe, 0xff, 0xff];
        let blobs: Vec<PackEntry> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &first)| {
                let mut id = [i as u8; 32];
                id[0] = first;
                PackEntry {
                    id: Id(id),
                    ..entry(BlobType::Data, 0, i as u32 * 100)
                }
            })
            .collect();
        let mut index = Index::default();
        index.add_file(&IndexFile {
            packs: vec![IndexPack {
                id: Id([0xaa; 32]),
                envelope: BlobEnvelope::PerBlob,
                blobs: blobs.clone(),
            }],
        });
        index.finish();
        for blob in &blobs {
            assert_eq!(
                index.get(BlobType::Data, &blob.id).unwrap().offset,
                blob.offset
            );
        }
        let mut absent = [0xffu8; 32];
        assert!(!index.contains(BlobType::Data, &Id(absent)));
        absent[0] = 0;
        assert!(!index.contains(BlobType::Data, &Id(absent)));
    }

    #[test]
    #[should_panic(expected = "Index::finish")]
    fn lookups_before_finish_are_a_bug() {
        let mut index = Index::default();
        index.add_file(&file(&[(0xa0, vec![entry(BlobType::Data, 1, 0)])]));
        index.contains(BlobType::Data, &Id([1; 32]));
    }

    #[test]
    fn split_keeps_packs_whole() {
        let blobs = |n: u8| {
            (0..n)
                .map(|i| entry(BlobType::Data, i, u32::from(i) * 100))
                .collect::<Vec<_>>()
        };
        let whole = file(&[(1, blobs(3)), (2, blobs(3)), (3, blobs(7)), (4, blobs(1))]);
        let parts = whole.clone().split(6);
        let counts: Vec<usize> = parts.iter().map(IndexFile::blob_count).collect();
        assert_eq!(counts, vec![6, 7, 1]);
        let rejoined: Vec<IndexPack> = parts.into_iter().flat_map(|f| f.packs).collect();
        assert_eq!(rejoined, whole.packs);
        assert!(IndexFile::default().split(10).is_empty());
    }

    #[test]
    fn damaged_files_are_rejected() {
        let good = file(&[(0xa0, vec![entry(BlobType::Data, 1, 0)])]).encode();
        assert!(IndexFile::decode(&good).is_ok());
        assert!(
            IndexFile::decode(&good[..good.len() - 1]).is_err(),
            "truncated"
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(IndexFile::decode(&trailing).is_err(), "trailing bytes");
        let mut version = good.clone();
        version[0] = 9;
        assert!(IndexFile::decode(&version).is_err(), "version");
        let mut huge_count = good.clone();
        huge_count[5 + PACK_RECORD_LEN - 4..5 + PACK_RECORD_LEN]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            IndexFile::decode(&huge_count).is_err(),
            "blob count past the end"
        );
        let mut overflow = good.clone();
        let record = 1 + 4 + PACK_RECORD_LEN;
        overflow[record..record + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            IndexFile::decode(&overflow).is_err(),
            "offset + length overflows"
        );
        assert!(IndexFile::decode(&[]).is_err());
        let mut no_data_key = good.clone();
        no_data_key[5 + 32..5 + 36].copy_from_slice(&PER_BLOB_KEY_ID.to_le_bytes());
        assert!(
            IndexFile::decode(&no_data_key).is_err(),
            "key id 0xffffffff with a salt"
        );
        no_data_key[5 + 36..5 + 36 + BLOB_SALT_LEN].fill(0);
        assert_eq!(
            IndexFile::decode(&no_data_key).unwrap().packs[0].envelope,
            BlobEnvelope::PerBlob,
            "key id 0xffffffff with a zero salt: a format-1 pack"
        );
    }

    #[test]
    fn version_1_files_list_format_1_packs_and_are_written_again_as_version_2() {
        let v2 = file(&[(0xa0, vec![entry(BlobType::Data, 1, 0)]), (0xb0, vec![])]);
        let v1 = encode_version_1(&v2);
        assert_eq!(v1.len(), 5 + 2 * 36 + BLOB_RECORD_LEN);
        let decoded = IndexFile::decode(&v1).unwrap();
        assert!(
            decoded
                .packs
                .iter()
                .all(|pack| pack.envelope == BlobEnvelope::PerBlob)
        );
        assert_eq!(decoded.packs[0].blobs, v2.packs[0].blobs);
        let again = decoded.encode();
        assert_eq!(again[0], INDEX_VERSION);
        assert_eq!(IndexFile::decode(&again).unwrap(), decoded);
        let mut index = Index::default();
        index.add_file(&decoded);
        index.finish();
        assert_eq!(
            index.get(BlobType::Data, &Id([1; 32])).unwrap().envelope,
            BlobEnvelope::PerBlob
        );
    }

    proptest! {
        #[test]
        fn index_file_round_trips(file in any_index_file()) {
            let encoded = file.encode();
            prop_assert_eq!(encoded.len(), 5 + file.packs.len() * PACK_RECORD_LEN + file.blob_count() * BLOB_RECORD_LEN);
            prop_assert_eq!(IndexFile::decode(&encoded).unwrap(), file);
        }

        #[test]
        fn index_finds_every_blob_it_was_given(files in proptest::collection::vec(any_index_file(), 0..4)) {
            let mut index = Index::default();
            for file in &files {
                index.add_file(file);
            }
            index.finish();
            let mut first = std::collections::HashMap::new();
            for pack in files.iter().flat_map(|f| &f.packs) {
                for blob in &pack.blobs {
                    first.entry((blob.blob_type, blob.id)).or_insert(BlobLocation {
                        pack: pack.id,
                        envelope: pack.envelope,
                        blob_type: blob.blob_type,
                        offset: blob.offset,
                        length: blob.length,
                        uncompressed_length: blob.uncompressed_length,
                    });
                }
            }
            prop_assert_eq!(index.len(), first.len());
            for ((blob_type, id), location) in &first {
                prop_assert_eq!(index.get(*blob_type, id), Some(*location));
            }
        }

        #[test]
        fn version_1_files_decode_as_format_1_packs(file in any_index_file()) {
            let decoded = IndexFile::decode(&encode_version_1(&file)).unwrap();
            prop_assert_eq!(decoded.packs.len(), file.packs.len());
            for (decoded, pack) in decoded.packs.iter().zip(&file.packs) {
                prop_assert_eq!(decoded.envelope, BlobEnvelope::PerBlob);
                prop_assert_eq!((decoded.id, &decoded.blobs), (pack.id, &pack.blobs));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = IndexFile::decode(&bytes);
        }

        #[test]
        fn damaged_encodings_decode_canonically_or_not_at_all(
            file in any_index_file(),
            position in any::<proptest::sample::Index>(),
            value in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let encoded = file.encode();
            let mut damaged = encoded.clone();
            damaged[position.index(encoded.len())] = value;
            if let Ok(decoded) = IndexFile::decode(&damaged) {
                let canonical = if damaged[0] == INDEX_VERSION_PER_BLOB {
                    encode_version_1(&decoded)
                } else {
                    decoded.encode()
                };
                prop_assert_eq!(canonical, damaged, "only canonical encodings decode");
            }
            let truncated = &encoded[..cut.index(encoded.len())];
            prop_assert!(IndexFile::decode(truncated).is_err(), "a truncated file never decodes");
        }
    }
}
