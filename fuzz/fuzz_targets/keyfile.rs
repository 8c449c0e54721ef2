#![no_main]
//! Fuzz target: `KeyFile::from_bytes` on arbitrary bytes never panics, and
//! whatever it accepts serialises to bytes it accepts again, unchanged.
//!
//! `open` is not called: Argon2id with the largest accepted parameters is
//! deliberately expensive, which would only slow the fuzzer down.

use arca_crypto::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = KeyFile::from_bytes(data) {
        let bytes = file.to_bytes();
        let again = KeyFile::from_bytes(&bytes).expect("a parsed key file re-parses");
        assert_eq!(again.to_bytes(), bytes);
        assert_eq!(again.params(), file.params());
    }
});
