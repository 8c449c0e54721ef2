#![no_main]
//! Fuzz target: snapshots. Decoding arbitrary bytes never panics, and a
//! decoded snapshot re-encodes to bytes that decode to the same snapshot.
use arca_repo::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::decode(data) {
        let again = Snapshot::decode(&snapshot.encode()).expect("an encoded snapshot decodes");
        assert_eq!(again, snapshot);
    }
});
