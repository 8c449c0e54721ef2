//! Index files (`index/<id>`): which pack holds each blob, where, and how long
//! it is, as JSON; and [`Index`], all of them merged in memory.

use std::collections::HashMap;

use arca_repo::Id;
use arca_repo::blob::BlobType;

use crate::{Error, Result};

/// One decoded index file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct IndexFile {
    /// Index files this one replaces (restic deletes them after writing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Vec<Id>>,
    /// The packs it describes.
    pub packs: Vec<IndexPack>,
}

/// One pack in an index file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct IndexPack {
    /// The pack's storage ID (SHA-256 of its bytes).
    pub id: Id,
    /// Its blobs.
    pub blobs: Vec<IndexBlob>,
}

/// One blob of a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct IndexBlob {
    /// SHA-256 of the blob's (uncompressed) plaintext.
    pub id: Id,
    /// Data or tree.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// Offset of its encrypted bytes in the pack.
    pub offset: u32,
    /// Length of its encrypted bytes.
    pub length: u32,
    /// Plaintext length, for a compressed blob (format version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl IndexFile {
    /// Parses an index file's JSON (untrusted input).
    pub fn decode(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).map_err(|e| Error::corrupt("index file", e))
    }
}

/// Where one blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack.
    pub pack: Id,
    /// Offset of the blob's encrypted bytes in the pack.
    pub offset: u32,
    /// Length of its encrypted bytes.
    pub length: u32,
    /// Plaintext length if the blob is compressed.
    pub uncompressed_length: Option<u32>,
}

impl BlobLocation {
    /// The blob's plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        match self.uncompressed_length {
            Some(len) => u64::from(len),
            None => u64::from(self.length).saturating_sub(crate::crypto::OVERHEAD as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed_length: Option<u32>,
}

/// Every index file merged: blob → location, per blob type.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_numbers: HashMap<Id, u32>,
    data: HashMap<Id, Entry>,
    tree: HashMap<Id, Entry>,
}

impl Index {
    /// Adds an index file's entries (a blob already known keeps its first location).
    pub fn add(&mut self, file: &IndexFile) {
        for pack in &file.packs {
            let number = *self.pack_numbers.entry(pack.id).or_insert_with(|| {
                self.packs.push(pack.id);
                (self.packs.len() - 1) as u32
            });
            for blob in &pack.blobs {
                let map = match blob.blob_type {
                    BlobType::Data => &mut self.data,
                    BlobType::Tree => &mut self.tree,
                };
                map.entry(blob.id).or_insert(Entry {
                    pack: number,
                    offset: blob.offset,
                    length: blob.length,
                    uncompressed_length: blob.uncompressed_length,
                });
            }
        }
    }

    /// Where `id` is stored, if any index names it.
    pub fn get(&self, blob_type: BlobType, id: &Id) -> Option<BlobLocation> {
        let map = match blob_type {
            BlobType::Data => &self.data,
            BlobType::Tree => &self.tree,
        };
        map.get(id).map(|entry| BlobLocation {
            pack: self.packs[entry.pack as usize],
            offset: entry.offset,
            length: entry.length,
            uncompressed_length: entry.uncompressed_length,
        })
    }

    /// Every pack some index names.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Number of blobs of each type: (data, tree).
    pub fn len(&self) -> (usize, usize) {
        (self.data.len(), self.tree.len())
    }

    /// Whether no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_restics_json_and_merges() {
        let pack = "aa".repeat(32);
        let blob = "bb".repeat(32);
        let json = format!(
            r#"{{"supersedes":null,"packs":[{{"id":"{pack}","blobs":[{{"id":"{blob}","type":"data","offset":0,"length":45,"uncompressed_length":100}},{{"id":"{blob}","type":"tree","offset":45,"length":40}}]}}]}}"#
        );
        let file = IndexFile::decode(json.as_bytes()).unwrap();
        let mut index = Index::default();
        index.add(&file);
        let data = index.get(BlobType::Data, &Id([0xbb; 32])).unwrap();
        assert_eq!(
            (data.pack, data.offset, data.plaintext_len()),
            (Id([0xaa; 32]), 0, 100)
        );
        assert_eq!(
            index
                .get(BlobType::Tree, &Id([0xbb; 32]))
                .unwrap()
                .plaintext_len(),
            8
        );
        assert_eq!(index.len(), (1, 1));
        assert!(IndexFile::decode(br#"{"packs":[{"id":"zz","blobs":[]}]}"#).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(blobs in proptest::collection::vec((any::<[u8; 32]>(), any::<bool>(), any::<u32>(), any::<u32>(), proptest::option::of(any::<u32>())), 0..20)) {
            let file = IndexFile {
                supersedes: None,
                packs: vec![IndexPack {
                    id: Id([1; 32]),
                    blobs: blobs.into_iter().map(|(id, tree, offset, length, uncompressed_length)| IndexBlob {
                        id: Id(id),
                        blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                        offset,
                        length,
                        uncompressed_length,
                    }).collect(),
                }],
            };
            let json = serde_json::to_vec(&file).unwrap();
            prop_assert_eq!(IndexFile::decode(&json).unwrap(), file);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = IndexFile::decode(&bytes);
        }
    }
}
