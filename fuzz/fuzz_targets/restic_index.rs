#![no_main]
//! Fuzz target: a restic index file's decrypted plaintext (bare JSON or
//! `2 ‖ zstd(JSON)`) decompresses within its bound and decodes, or is
//! rejected, without panicking; a decoded index merges into an Index.
use arca_restic::compression::unpacked_json;
use arca_restic::index::{Index, IndexFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = unpacked_json("index", 2, data.to_vec()) else {
        return;
    };
    if let Ok(file) = IndexFile::decode(&json) {
        let mut index = Index::default();
        index.add(&file);
        assert!(index.packs().len() <= file.packs.len());
    }
});
