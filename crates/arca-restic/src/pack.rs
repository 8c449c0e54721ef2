//! Packs (`data/<xx>/<id>`): independently encrypted blobs, then the
//! encrypted header listing them, then the header's length as a little-endian
//! `u32`. Header entries: `type u8 ‖ length u32 ‖ [uncompressed length u32] ‖
//! id [32]`, types 0 data, 1 tree (37 bytes), 2 compressed data, 3
//! compressed tree (41 bytes), in the order the blobs are stored.

use arca_repo::Id;
use arca_repo::blob::BlobType;

use crate::crypto::OVERHEAD;
use crate::{Error, Result};

/// Bytes of the trailing header length.
pub const TRAILER_LEN: u64 = 4;
/// Bytes of an entry for an uncompressed blob.
const PLAIN_ENTRY_LEN: usize = 37;
/// Bytes of an entry for a compressed blob.
const COMPRESSED_ENTRY_LEN: usize = 41;

/// One blob as a pack's header lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PackBlob {
    /// Data or tree.
    #[serde(rename = "type")]
    pub blob_type: BlobType,
    /// SHA-256 of the blob's plaintext.
    pub id: Id,
    /// Offset of its encrypted bytes in the pack.
    pub offset: u32,
    /// Length of its encrypted bytes.
    pub length: u32,
    /// Plaintext length, for a compressed blob.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

/// The byte range of the encrypted header in a pack of `pack_size` bytes whose
/// last four bytes are `trailer`.
pub fn header_range(pack_size: u64, trailer: [u8; 4]) -> Result<std::ops::Range<u64>> {
    let header_len = u64::from(u32::from_le_bytes(trailer));
    let end = pack_size
        .checked_sub(TRAILER_LEN)
        .ok_or_else(|| Error::corrupt("pack", "shorter than its trailer"))?;
    if header_len < OVERHEAD as u64 || header_len > end {
        return Err(Error::corrupt(
            "pack",
            format!("header length {header_len} does not fit a pack of {pack_size} bytes"),
        ));
    }
    Ok(end - header_len..end)
}

/// Parses a decrypted pack header (untrusted input) into its blobs with their
/// offsets. `blobs_end` is where the header starts: the blobs must fill the
/// pack exactly up to it.
pub fn parse_header(plaintext: &[u8], blobs_end: u64) -> Result<Vec<PackBlob>> {
    let bad = |reason: String| Err(Error::corrupt("pack header", reason));
    let mut blobs = Vec::with_capacity(plaintext.len() / PLAIN_ENTRY_LEN);
    let mut rest = plaintext;
    let mut offset = 0u64;
    while let Some((&kind, tail)) = rest.split_first() {
        let (blob_type, compressed) = match kind {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            other => return bad(format!("unknown entry type {other}")),
        };
        let entry_len = if compressed {
            COMPRESSED_ENTRY_LEN
        } else {
            PLAIN_ENTRY_LEN
        } - 1;
        if tail.len() < entry_len {
            return bad(format!(
                "truncated entry at byte {}",
                plaintext.len() - rest.len()
            ));
        }
        let (entry, next) = tail.split_at(entry_len);
        let u32_at = |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().expect("4 bytes"));
        let length = u32_at(0);
        let (uncompressed_length, id_at) = if compressed {
            (Some(u32_at(4)), 8)
        } else {
            (None, 4)
        };
        if (length as usize) < OVERHEAD {
            return bad(format!(
                "blob length {length} is below the encryption overhead"
            ));
        }
        let id = Id(entry[id_at..id_at + 32].try_into().expect("32 bytes"));
        let Ok(blob_offset) = u32::try_from(offset) else {
            return bad(format!("blob offset {offset} beyond 4 GiB"));
        };
        blobs.push(PackBlob {
            blob_type,
            id,
            offset: blob_offset,
            length,
            uncompressed_length,
        });
        offset += u64::from(length);
        rest = next;
    }
    if offset != blobs_end {
        return bad(format!(
            "the blobs it lists take {offset} bytes but the header starts at byte {blobs_end}"
        ));
    }
    Ok(blobs)
}

/// The bytes of a header listing `blobs` (the inverse of [`parse_header`],
/// for tests and fixtures; offsets are implied by the order).
pub fn encode_header(blobs: &[PackBlob]) -> Vec<u8> {
    let mut out = Vec::with_capacity(blobs.len() * COMPRESSED_ENTRY_LEN);
    for blob in blobs {
        let kind = match (blob.blob_type, blob.uncompressed_length.is_some()) {
            (BlobType::Data, false) => 0,
            (BlobType::Tree, false) => 1,
            (BlobType::Data, true) => 2,
            (BlobType::Tree, true) => 3,
        };
        out.push(kind);
        out.extend_from_slice(&blob.length.to_le_bytes());
        if let Some(len) = blob.uncompressed_length {
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&blob.id.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn header_range_checks_lengths() {
        assert_eq!(header_range(100, 40u32.to_le_bytes()).unwrap(), 56..96);
        assert!(header_range(100, 97u32.to_le_bytes()).is_err());
        assert!(header_range(3, 0u32.to_le_bytes()).is_err());
        assert!(header_range(100, 10u32.to_le_bytes()).is_err());
    }

    #[test]
    fn blobs_must_fill_the_pack() {
        let blob = PackBlob {
            blob_type: BlobType::Data,
            id: Id([9; 32]),
            offset: 0,
            length: 50,
            uncompressed_length: Some(70),
        };
        let header = encode_header(&[blob]);
        assert_eq!(header.len(), COMPRESSED_ENTRY_LEN);
        assert_eq!(parse_header(&header, 50).unwrap(), vec![blob]);
        assert!(parse_header(&header, 51).is_err());
        assert!(parse_header(&header[..40], 50).is_err());
        assert!(parse_header(&[7], 0).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec((any::<bool>(), any::<[u8; 32]>(), 32u32..100_000, proptest::option::of(any::<u32>())), 0..30)) {
            let mut offset = 0u32;
            let blobs: Vec<PackBlob> = entries.into_iter().map(|(tree, id, length, uncompressed_length)| {
                let blob = PackBlob {
                    blob_type: if tree { BlobType::Tree } else { BlobType::Data },
                    id: Id(id),
                    offset,
                    length,
                    uncompressed_length,
                };
                offset += length;
                blob
            }).collect();
            prop_assert_eq!(parse_header(&encode_header(&blobs), u64::from(offset)).unwrap(), blobs);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), end in any::<u64>()) {
            let _ = parse_header(&bytes, end);
        }
    }
}
