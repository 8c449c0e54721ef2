//! zstd as restic uses it: whole blobs (their length known from the index or
//! pack header), and "unpacked" files (index, snapshots) whose plaintext is a
//! version byte `2` and a zstd stream in format version 2, or bare JSON.

use std::io::Read as _;

use crate::{Error, Result};

/// Largest decompressed unpacked file (index or snapshot JSON) accepted; restic
/// keeps index files around 8 MiB of JSON.
pub const MAX_UNPACKED_LEN: usize = 1 << 30;

/// Decompresses one zstd stream, refusing more than `limit` bytes of output.
/// The output buffer grows with what the stream really yields, never with a
/// length the input claims.
pub fn decompress(what: &str, input: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(input).map_err(|e| Error::corrupt(what, e))?;
    let mut out = Vec::with_capacity(input.len().saturating_mul(2).min(limit));
    (&mut decoder)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt(what, format!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(Error::corrupt(
            what,
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(out)
}

/// The JSON of an unpacked file's decrypted plaintext (restic's
/// `decompressUnpacked`): bare JSON (`{` or `[` first, any format version),
/// or `2 ‖ zstd(JSON)` in format version 2.
pub fn unpacked_json(what: &str, version: u32, plaintext: Vec<u8>) -> Result<Vec<u8>> {
    match plaintext.first() {
        None => Err(Error::corrupt(what, "empty")),
        Some(b'{' | b'[') => Ok(plaintext),
        Some(2) if version >= 2 => decompress(what, &plaintext[1..], MAX_UNPACKED_LEN),
        Some(other) => Err(Error::corrupt(
            what,
            format!("unknown encoding byte {other:#04x} in a version {version} repository"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn unpacked_files_are_bare_or_versioned_zstd() {
        assert_eq!(unpacked_json("x", 1, b"{}".to_vec()).unwrap(), b"{}");
        let mut v2 = vec![2];
        v2.extend(zstd::encode_all(&b"[1,2]"[..], 3).unwrap());
        assert_eq!(unpacked_json("x", 2, v2.clone()).unwrap(), b"[1,2]");
        assert!(unpacked_json("x", 1, v2).is_err(), "v1 has no compression");
        assert!(unpacked_json("x", 2, vec![3, 1]).is_err());
        assert!(unpacked_json("x", 2, vec![]).is_err());
    }

    #[test]
    fn output_is_bounded() {
        let bomb = zstd::encode_all(&vec![0u8; 1 << 20][..], 19).unwrap();
        assert!(bomb.len() < 1 << 12);
        assert!(decompress("x", &bomb, 1 << 16).is_err());
        assert_eq!(decompress("x", &bomb, 1 << 20).unwrap().len(), 1 << 20);
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..2000), level in 1i32..10) {
            let packed = zstd::encode_all(&data[..], level).unwrap();
            prop_assert_eq!(decompress("x", &packed, data.len()).unwrap(), data);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decompress("x", &data, 1 << 16);
        }
    }
}
