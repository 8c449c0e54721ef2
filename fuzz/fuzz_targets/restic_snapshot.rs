#![no_main]
//! Fuzz target: a restic snapshot (decrypted JSON) decodes and converts to
//! Arca's snapshot, or is rejected, without panicking.
use arca_restic::ResticSnapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = ResticSnapshot::decode(data) {
        let arca = snapshot.to_arca().expect("a decoded snapshot converts");
        assert_eq!(arca.tree, snapshot.tree);
    }
});
