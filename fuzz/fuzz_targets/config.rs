#![no_main]
//! Fuzz target: config (owner fills in).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|_data: &[u8]| {});
