#![no_main]
//! Fuzz target: a restic `config` (decrypted JSON) decodes to version 1 or 2
//! or is rejected without panicking.
use arca_restic::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::decode(data) {
        assert!(matches!(config.version, 1 | 2));
    }
});
