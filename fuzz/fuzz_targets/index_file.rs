#![no_main]
//! Fuzz target: index files of both versions. Decoding arbitrary bytes
//! never panics; whatever decodes as version 2 re-encodes to the same
//! bytes, and a version-1 file (format-1 packs only) re-encodes as version
//! 2 to a file that decodes to the same packs.
use arca_repo::blob::BlobEnvelope;
use arca_repo::index::{INDEX_VERSION, INDEX_VERSION_PER_BLOB, IndexFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = IndexFile::decode(data) {
        let encoded = file.encode();
        assert_eq!(encoded[0], INDEX_VERSION);
        if data[0] == INDEX_VERSION_PER_BLOB {
            assert!(
                file.packs
                    .iter()
                    .all(|p| p.envelope == BlobEnvelope::PerBlob)
            );
            assert_eq!(
                IndexFile::decode(&encoded).expect("re-encoded file decodes"),
                file
            );
        } else {
            assert_eq!(encoded, data);
        }
    }
});
