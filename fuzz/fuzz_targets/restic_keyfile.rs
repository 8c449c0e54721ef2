#![no_main]
//! Fuzz target: a restic key file (`keys/<id>`, untrusted JSON) decodes or is
//! rejected without panicking, and scrypt parameters that pass are bounded.
use arca_restic::crypto::KeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = KeyFile::decode(data) {
        assert!(key.n.is_power_of_two() && key.r > 0 && key.p > 0);
        assert!(
            128u64
                .saturating_mul(u64::from(key.r))
                .saturating_mul(key.n)
                <= 1 << 30
        );
    }
});
