#![no_main]
//! Fuzz target: a restic pack's trailer and decrypted header (untrusted
//! bytes) parse or are rejected without panicking; a parsed header encodes
//! back to the same bytes and its blobs end where the header starts.
use arca_restic::pack::{encode_header, header_range, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let (sizes, header) = data.split_at(12);
    let pack_size = u64::from_le_bytes(sizes[..8].try_into().unwrap());
    let trailer: [u8; 4] = sizes[8..12].try_into().unwrap();
    if let Ok(range) = header_range(pack_size, trailer) {
        assert!(range.start <= range.end && range.end + 4 == pack_size);
    }
    let blobs_end = u64::from(u32::from_le_bytes(trailer));
    if let Ok(blobs) = parse_header(header, blobs_end) {
        assert_eq!(encode_header(&blobs), header);
        let end = blobs
            .last()
            .map_or(0, |b| u64::from(b.offset) + u64::from(b.length));
        assert_eq!(end, blobs_end);
    }
});
