#![no_main]
//! Fuzz target: index files. Decoding arbitrary bytes never panics, and
//! whatever decodes re-encodes to the same bytes.
use arca_repo::index::IndexFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = IndexFile::decode(data) {
        assert_eq!(file.encode(), data);
    }
});
