#![no_main]
//! Fuzz target: pack headers of both formats. `decode_header` on arbitrary
//! plaintext (the first 8 bytes give the blob-area length) never panics, and
//! whatever it accepts re-encodes, with the key id and salt it read (format
//! 2) or without (format 1), to the same bytes; `parse_header` on arbitrary
//! pack bytes never panics.
use std::sync::OnceLock;

use arca_crypto::MasterKey;
use arca_repo::pack::{decode_header, encode_header, parse_header};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::generate().expect("OS RNG works"))
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(key(), data);
    if let Some((len, header)) = data.split_first_chunk::<8>()
        && let Ok(decoded) = decode_header(header, u64::from_le_bytes(*len))
    {
        assert_eq!(encode_header(decoded.envelope, &decoded.entries), header);
    }
});
