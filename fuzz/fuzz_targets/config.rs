#![no_main]
//! Fuzz target: the repository config. Decoding arbitrary bytes never panics,
//! and a decoded config is valid and round-trips.
use arca_repo::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::decode(data) {
        config.validate().expect("decoded configs are valid");
        let again = Config::decode(&config.encode()).expect("an encoded config decodes");
        assert_eq!(again, config);
    }
});
