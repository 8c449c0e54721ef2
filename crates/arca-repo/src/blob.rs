//! Blobs: the unit of deduplication. A data blob is one chunk of a file; a tree
//! blob is one encoded directory listing ([`crate::tree::Tree`]).
//!
//! A stored blob is `seal(kind, zstd(plaintext))` when compression pays off and
//! `seal(kind, plaintext)` when it does not; the pack header and the index
//! record which (see `docs/FORMAT.md`, "Blobs"). `seal` is the blob envelope
//! under the pack's [`BlobKey`] in packs of format 2, which is all this
//! build writes, and a whole object envelope in packs of format 1, which it
//! still reads ([`BlobEnvelope`]). Its ID is the keyed content ID
//! of the plaintext, computed by the caller before encoding so deduplication
//! happens before any compression or encryption work.
//!
//! Compression reuses one `zstd::bulk::Compressor` per thread and level (and
//! one `Decompressor` per thread), so the encoder allocates no zstd contexts in
//! steady state. Call these functions from CPU worker threads, not from an
//! async executor.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use arca_crypto::{BLOB_SEAL_OVERHEAD, BlobKey, BlobKeyId, MasterKey, ObjectKind};

use crate::{Error, Id, Result};

/// What a blob holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// A chunk of file content.
    Data,
    /// An encoded [`crate::tree::Tree`].
    Tree,
}

impl BlobType {
    /// The envelope kind blobs of this type are sealed with.
    pub fn object_kind(self) -> ObjectKind {
        match self {
            BlobType::Data => ObjectKind::DataBlob,
            BlobType::Tree => ObjectKind::TreeBlob,
        }
    }

    /// The byte that encodes this type in pack headers and index files.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    /// Inverse of [`BlobType::to_byte`].
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(BlobType::Data),
            1 => Some(BlobType::Tree),
            _ => None,
        }
    }
}

impl fmt::Display for BlobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// The zstd level blobs are compressed with; level 0 turns compression off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    level: i32,
}

impl Compression {
    /// No compression: every blob is stored as sealed plaintext.
    pub const OFF: Compression = Compression { level: 0 };
    /// The default level (zstd 3: fast, and most of the gain of higher levels).
    pub const DEFAULT_LEVEL: i32 = 3;
    /// Highest accepted level.
    pub const MAX_LEVEL: i32 = 22;

    /// Compression at zstd `level` (1..=22), or [`Compression::OFF`] for 0.
    pub fn new(level: i32) -> Result<Self> {
        if !(0..=Self::MAX_LEVEL).contains(&level) {
            return Err(Error::InvalidOptions(format!(
                "compression level {level} is out of range: use 0 (off) to {}",
                Self::MAX_LEVEL
            )));
        }
        Ok(Compression { level })
    }

    /// The zstd level; 0 means off.
    pub fn level(self) -> i32 {
        self.level
    }

    /// Whether compression is off.
    pub fn is_off(self) -> bool {
        self.level == 0
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: Self::DEFAULT_LEVEL,
        }
    }
}

/// How the blobs of a pack are sealed (docs/FORMAT.md §4, §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlobEnvelope {
    /// Pack format 1: every blob is an object envelope of its own, naming
    /// its data key and salt.
    PerBlob,
    /// Pack format 2: every blob is sealed under the pack's blob key.
    Pack(BlobKeyId),
}

impl BlobEnvelope {
    /// Bytes sealing adds to each blob's stored form.
    pub fn overhead(self) -> usize {
        match self {
            BlobEnvelope::PerBlob => arca_crypto::SEAL_OVERHEAD,
            BlobEnvelope::Pack(_) => BLOB_SEAL_OVERHEAD,
        }
    }
}

/// A blob ready to be appended to a pack.
#[derive(Debug, Clone)]
pub struct EncodedBlob {
    /// Keyed content ID of the plaintext.
    pub id: Id,
    /// What the blob holds.
    pub blob_type: BlobType,
    /// The stored bytes: the sealed, possibly compressed, plaintext.
    pub bytes: Vec<u8>,
    /// `Some(plaintext length)` iff the stored bytes are zstd-compressed.
    pub uncompressed_length: Option<u32>,
    /// The blob key `bytes` are sealed under.
    pub key: Arc<BlobKey>,
}

/// How many leading bytes the compressibility probe looks at. Blobs no
/// longer than this are not probed: compressing them once at the configured
/// level costs less than probing and then compressing.
pub const PROBE_LEN: usize = 64 * 1024;
/// A blob is stored compressed only if that saves at least this many parts
/// per thousand; for a blob longer than [`PROBE_LEN`], the probe (zstd level
/// 1 over its first [`PROBE_LEN`] bytes) must predict that. Measured with
/// `zstd -1` on 64 KiB samples: random data, gzip and xz streams, JPEG and PNG
/// all *grow* by 0.02 %; an ELF binary saves 77 % and Rust/Markdown text 68 %.
/// Real data sits far from the 3 % line on both sides.
pub const PROBE_MIN_SAVING_PERMILLE: usize = 30;

/// Whether storing `compressed_len` bytes instead of `plain_len` saves enough.
fn saves_enough(compressed_len: usize, plain_len: usize) -> bool {
    compressed_len * 1000 <= plain_len * (1000 - PROBE_MIN_SAVING_PERMILLE)
}

thread_local! {
    /// One zstd compressor per level used (typically two: the probe level
    /// and the configured level).
    static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = RefCell::default();
    /// Where the probe's sample is compressed.
    static PROBE_SCRATCH: RefCell<Vec<u8>> = RefCell::default();
    /// One decompressor.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// zstd-compresses `data` at `level` with this thread's cached compressor,
/// appending the frame to `out` (growing it only if it lacks room for
/// zstd's worst case). Returns the frame's length.
fn compress_appending(data: &[u8], level: i32, out: &mut Vec<u8>) -> usize {
    COMPRESSORS.with(|cell| {
        let compressors = &mut *cell.borrow_mut();
        let index = match compressors.iter().position(|(l, _)| *l == level) {
            Some(index) => index,
            None => {
                let compressor = zstd::bulk::Compressor::new(level)
                    .expect("zstd accepts every level Compression::new lets through");
                compressors.push((level, compressor));
                compressors.len() - 1
            }
        };
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        // A cursor at the end writes into the spare capacity.
        let mut cursor = std::io::Cursor::new(out);
        cursor.set_position(start as u64);
        compressors[index]
            .1
            .compress_to_buffer(data, &mut cursor)
            .expect("zstd compression into a compress_bound-sized buffer cannot fail")
    })
}

/// Decompresses a zstd frame that must decode to exactly `expected_len` bytes.
pub(crate) fn zstd_decompress_exact(
    data: &[u8],
    expected_len: usize,
) -> std::result::Result<Vec<u8>, String> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        let decompressor = slot.as_mut().expect("just initialised");
        let out = decompressor
            .decompress(data, expected_len)
            .map_err(|e| format!("zstd decompression failed: {e}"))?;
        if out.len() != expected_len {
            return Err(format!(
                "decompressed to {} bytes, the index says {expected_len}",
                out.len()
            ));
        }
        Ok(out)
    })
}

/// Whether the probe says `plaintext` is worth compressing.
pub fn worth_compressing(plaintext: &[u8]) -> bool {
    if plaintext.is_empty() {
        return false;
    }
    let sample = &plaintext[..plaintext.len().min(PROBE_LEN)];
    PROBE_SCRATCH.with(|cell| {
        let scratch = &mut *cell.borrow_mut();
        scratch.clear();
        saves_enough(compress_appending(sample, 1, scratch), sample.len())
    })
}

/// The most bytes a blob of `plaintext_len` bytes takes sealed (compressed
/// or not).
pub fn max_sealed_len(plaintext_len: usize) -> usize {
    zstd::zstd_safe::compress_bound(plaintext_len).max(plaintext_len) + BLOB_SEAL_OVERHEAD
}

/// Encodes one blob: compresses it if that pays off (see
/// [`append_stored_form`]), then seals it with the envelope kind of
/// `blob_type` under `key`. `id` must be the plaintext's content ID.
pub fn encode_blob(
    key: &Arc<BlobKey>,
    blob_type: BlobType,
    id: Id,
    plaintext: &[u8],
    compression: Compression,
) -> Result<EncodedBlob> {
    let mut bytes = Vec::with_capacity(max_sealed_len(plaintext.len()));
    let uncompressed_length = key.seal_with(blob_type.object_kind(), &mut bytes, |out| {
        append_stored_form(plaintext, compression, out)
    })?;
    Ok(EncodedBlob {
        id,
        blob_type,
        bytes,
        uncompressed_length,
        key: Arc::clone(key),
    })
}

/// Appends the bytes a blob stores before sealing to `out`: the zstd form
/// of `plaintext`, returning `Some(plaintext length)`, if that saves enough
/// (see [`PROBE_MIN_SAVING_PERMILLE`]; blobs longer than [`PROBE_LEN`] are
/// only compressed if [`worth_compressing`] predicts it), else `plaintext`
/// itself, returning `None`; sealed, never more than [`max_sealed_len`].
///
/// Compressing straight into `out` (say, with [`MasterKey::seal_with`], a
/// pack's buffer) needs no buffer of its own: a thread that encodes blob
/// after blob allocates nothing per blob.
pub fn append_stored_form(
    plaintext: &[u8],
    compression: Compression,
    out: &mut Vec<u8>,
) -> Result<Option<u32>> {
    let plaintext_len = u32::try_from(plaintext.len()).map_err(|_| {
        Error::InvalidOptions(format!(
            "a blob of {} bytes is too large; blobs are limited to 4 GiB",
            plaintext.len()
        ))
    })?;
    let probed_out = plaintext.len() > PROBE_LEN && !worth_compressing(plaintext);
    if !(compression.is_off() || plaintext.is_empty() || probed_out) {
        let start = out.len();
        let compressed = compress_appending(plaintext, compression.level(), out);
        if saves_enough(compressed, plaintext.len()) {
            return Ok(Some(plaintext_len));
        }
        out.truncate(start);
    }
    out.extend_from_slice(plaintext);
    Ok(None)
}

/// Opens a stored blob of a pack sealed as `envelope`: its stored form
/// before sealing (compressed or not), unverified beyond the envelope.
pub fn open_stored(
    key: &MasterKey,
    envelope: BlobEnvelope,
    blob_type: BlobType,
    stored: &[u8],
) -> std::result::Result<Vec<u8>, arca_crypto::Error> {
    match envelope {
        BlobEnvelope::PerBlob => key.open(blob_type.object_kind(), stored),
        BlobEnvelope::Pack(id) => key.blob_key(id)?.open(blob_type.object_kind(), stored),
    }
}

/// Opens a stored blob of a pack sealed as `envelope` and checks it as
/// [`decode_blob`] does (decompressed only to hash it): its stored form,
/// verified, ready to be sealed again under another blob key without
/// compressing it again. Any failure is [`Error::Corrupt`] naming the blob.
pub fn open_checked(
    key: &MasterKey,
    envelope: BlobEnvelope,
    blob_type: BlobType,
    stored: &[u8],
    uncompressed_length: Option<u32>,
    expected: &Id,
) -> Result<Vec<u8>> {
    open_blob(
        key,
        envelope,
        blob_type,
        stored,
        uncompressed_length,
        expected,
    )
    .map(VerifiedBlob::into_stored_form)
}

/// Decodes a stored blob of a pack sealed as `envelope`: opens it,
/// decompresses if `uncompressed_length` says it is compressed, and checks
/// that the content ID of the result is `expected`. Any failure is
/// [`Error::Corrupt`] naming the blob.
pub fn decode_blob(
    key: &MasterKey,
    envelope: BlobEnvelope,
    blob_type: BlobType,
    stored: &[u8],
    uncompressed_length: Option<u32>,
    expected: &Id,
) -> Result<Vec<u8>> {
    open_blob(
        key,
        envelope,
        blob_type,
        stored,
        uncompressed_length,
        expected,
    )
    .map(VerifiedBlob::into_plaintext)
}

/// Both of the above at once: the blob opened, decompressed if it is
/// compressed, and checked against `expected`, for a caller that wants its
/// plaintext and may seal its stored form again ([`VerifiedBlob::encode`]).
pub fn open_blob(
    key: &MasterKey,
    envelope: BlobEnvelope,
    blob_type: BlobType,
    stored: &[u8],
    uncompressed_length: Option<u32>,
    expected: &Id,
) -> Result<VerifiedBlob> {
    let what = || format!("{blob_type} blob {expected}");
    let opened =
        open_stored(key, envelope, blob_type, stored).map_err(|e| Error::corrupt(what(), e))?;
    let decompressed = uncompressed_length
        .map(|len| zstd_decompress_exact(&opened, len as usize))
        .transpose()
        .map_err(|reason| Error::corrupt(what(), reason))?;
    let blob = VerifiedBlob {
        opened,
        decompressed,
    };
    let actual = key.content_id(blob.plaintext());
    if actual != *expected {
        return Err(Error::corrupt(
            what(),
            format!("content hashes to {actual}"),
        ));
    }
    Ok(blob)
}

/// A stored blob that opened and hashed to its ID ([`open_blob`]).
#[derive(Debug)]
pub struct VerifiedBlob {
    /// The stored form: zstd-compressed iff `decompressed` is `Some`.
    opened: Vec<u8>,
    decompressed: Option<Vec<u8>>,
}

impl VerifiedBlob {
    /// The blob's content.
    pub fn plaintext(&self) -> &[u8] {
        self.decompressed.as_deref().unwrap_or(&self.opened)
    }

    /// The blob's content, without a copy.
    pub fn into_plaintext(self) -> Vec<u8> {
        self.decompressed.unwrap_or(self.opened)
    }

    /// The stored form, compressed or not, as it was before sealing.
    pub fn into_stored_form(self) -> Vec<u8> {
        self.opened
    }

    /// The blob encoded for another key (another repository's, or a
    /// rotated master key's) as [`encode_blob`] would, except that a
    /// compressed stored form is sealed again as it is while `compression`
    /// is on: zstd runs once per blob, when it is first stored, and the
    /// level it ran at is kept. `id` is the content ID under the new key.
    pub fn encode(
        &self,
        key: &Arc<BlobKey>,
        blob_type: BlobType,
        id: Id,
        compression: Compression,
    ) -> Result<EncodedBlob> {
        let Some(plaintext) = self
            .decompressed
            .as_deref()
            .filter(|_| !compression.is_off())
        else {
            return encode_blob(key, blob_type, id, self.plaintext(), compression);
        };
        let mut bytes = Vec::with_capacity(self.opened.len() + BLOB_SEAL_OVERHEAD);
        key.seal_into(blob_type.object_kind(), &self.opened, &mut bytes)?;
        Ok(EncodedBlob {
            id,
            blob_type,
            bytes,
            // Verified against the length the index gave, itself a u32.
            uncompressed_length: Some(plaintext.len() as u32),
            key: Arc::clone(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::{any_blob_type, test_blob_key, test_key};

    fn text(len: usize) -> Vec<u8> {
        let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
        line.iter().copied().cycle().take(len).collect()
    }

    fn random(len: usize) -> Vec<u8> {
        (0..len).map(|_| rand::random::<u8>()).collect()
    }

    fn encode(blob_type: BlobType, plaintext: &[u8], compression: Compression) -> EncodedBlob {
        encode_blob(
            &test_blob_key(),
            blob_type,
            test_key().content_id(plaintext),
            plaintext,
            compression,
        )
        .unwrap()
    }

    /// The envelope of the packs `encode` writes blobs for.
    fn envelope() -> BlobEnvelope {
        BlobEnvelope::Pack(test_blob_key().id())
    }

    fn decode(blob: &EncodedBlob) -> Result<Vec<u8>> {
        open(blob).map(VerifiedBlob::into_plaintext)
    }

    fn open(blob: &EncodedBlob) -> Result<VerifiedBlob> {
        open_blob(
            test_key(),
            envelope(),
            blob.blob_type,
            &blob.bytes,
            blob.uncompressed_length,
            &blob.id,
        )
    }

    #[test]
    fn compressible_blobs_are_compressed_and_round_trip() {
        let plaintext = text(1 << 20);
        let blob = encode(BlobType::Data, &plaintext, Compression::default());
        assert_eq!(blob.uncompressed_length, Some(1 << 20));
        assert!(
            blob.bytes.len() < plaintext.len() / 10,
            "{} bytes stored",
            blob.bytes.len()
        );
        assert_eq!(decode(&blob).unwrap(), plaintext);
    }

    #[test]
    fn incompressible_blobs_are_stored_plain() {
        let plaintext = random(1 << 20);
        let blob = encode(BlobType::Data, &plaintext, Compression::default());
        assert_eq!(blob.uncompressed_length, None);
        assert_eq!(blob.bytes.len(), plaintext.len() + BLOB_SEAL_OVERHEAD);
        assert_eq!(decode(&blob).unwrap(), plaintext);
    }

    #[test]
    fn compression_off_stores_plain() {
        let plaintext = text(100_000);
        let blob = encode(BlobType::Tree, &plaintext, Compression::OFF);
        assert_eq!(blob.uncompressed_length, None);
        assert_eq!(decode(&blob).unwrap(), plaintext);
    }

    #[test]
    fn probe_accepts_text_and_rejects_noise() {
        assert!(worth_compressing(&text(PROBE_LEN * 2)));
        assert!(!worth_compressing(&random(PROBE_LEN * 2)));
        assert!(!worth_compressing(&[]));
        // Compressible tail after an incompressible probe window: the probe decides.
        let mut mixed = random(PROBE_LEN);
        mixed.extend(text(PROBE_LEN));
        assert!(!worth_compressing(&mixed));
    }

    /// Blobs within the probe's length skip it and are kept compressed only
    /// when that saves enough; both kinds round-trip.
    #[test]
    fn small_blobs_are_compressed_once_when_it_pays() {
        let small_text = text(PROBE_LEN / 2);
        let blob = encode(BlobType::Data, &small_text, Compression::default());
        assert_eq!(blob.uncompressed_length, Some((PROBE_LEN / 2) as u32));
        assert_eq!(decode(&blob).unwrap(), small_text);
        let mut barely = random(PROBE_LEN / 2);
        barely[..300].fill(b'a');
        let blob = encode(BlobType::Tree, &barely, Compression::default());
        assert_eq!(blob.uncompressed_length, None);
        assert_eq!(decode(&blob).unwrap(), barely);
    }

    #[test]
    fn empty_blob_round_trips() {
        let blob = encode(BlobType::Data, b"", Compression::default());
        assert_eq!(blob.uncompressed_length, None);
        assert_eq!(decode(&blob).unwrap(), b"");
    }

    #[test]
    fn wrong_id_type_length_or_bytes_are_corrupt() {
        let plaintext = text(10_000);
        let blob = encode(BlobType::Data, &plaintext, Compression::default());
        let key = test_key();
        let other = key.content_id(b"other");
        let corrupt_what = |result: Result<Vec<u8>>| match result {
            Err(Error::Corrupt { what, .. }) => what,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        let what = corrupt_what(decode_blob(
            key,
            envelope(),
            BlobType::Data,
            &blob.bytes,
            blob.uncompressed_length,
            &other,
        ));
        assert!(what.contains(&other.to_hex()), "{what}");
        corrupt_what(decode_blob(
            key,
            envelope(),
            BlobType::Tree,
            &blob.bytes,
            blob.uncompressed_length,
            &blob.id,
        ));
        corrupt_what(decode_blob(
            key,
            envelope(),
            BlobType::Data,
            &blob.bytes,
            Some(9_999),
            &blob.id,
        ));
        corrupt_what(decode_blob(
            key,
            envelope(),
            BlobType::Data,
            &blob.bytes,
            None,
            &blob.id,
        ));
        let mut flipped = blob.bytes.clone();
        flipped[60] ^= 1;
        corrupt_what(decode_blob(
            key,
            envelope(),
            BlobType::Data,
            &flipped,
            blob.uncompressed_length,
            &blob.id,
        ));
    }

    /// A format-1 blob (an object envelope of its own, as builds before
    /// pack format 2 sealed it) decodes as `PerBlob` and not as a format-2
    /// blob, and the reverse; resealing moves either under another blob
    /// key without compressing again.
    #[test]
    fn format_1_and_format_2_blobs_decode_only_as_what_they_are() {
        let key = test_key();
        let plaintext = text(10_000);
        let id = key.content_id(&plaintext);
        let mut v1 = Vec::new();
        let compressed = key
            .seal_with(ObjectKind::DataBlob, &mut v1, |out| {
                append_stored_form(&plaintext, Compression::default(), out)
            })
            .unwrap();
        assert!(compressed.is_some());
        let v2 = encode(BlobType::Data, &plaintext, Compression::default());
        let decode_as = |envelope, stored: &[u8], len| {
            decode_blob(key, envelope, BlobType::Data, stored, len, &id)
        };
        assert_eq!(
            decode_as(BlobEnvelope::PerBlob, &v1, compressed).unwrap(),
            plaintext
        );
        assert!(decode_as(envelope(), &v1, compressed).is_err());
        assert!(decode_as(BlobEnvelope::PerBlob, &v2.bytes, v2.uncompressed_length).is_err());
        let other = Arc::new(key.fresh_blob_key().unwrap());
        for (from, stored, len) in [
            (BlobEnvelope::PerBlob, &v1, compressed),
            (envelope(), &v2.bytes, v2.uncompressed_length),
        ] {
            let opened = open_checked(key, from, BlobType::Data, stored, len, &id).unwrap();
            let mut moved = Vec::new();
            other
                .seal_into(ObjectKind::DataBlob, &opened, &mut moved)
                .unwrap();
            assert_eq!(
                decode_as(BlobEnvelope::Pack(other.id()), &moved, len).unwrap(),
                plaintext
            );
            assert!(
                open_checked(key, from, BlobType::Tree, stored, len, &id).is_err(),
                "a data blob does not open as a tree"
            );
            let wrong_id = key.content_id(b"another blob");
            assert!(
                open_checked(key, from, BlobType::Data, stored, len, &wrong_id).is_err(),
                "a blob that does not hash to its id is refused"
            );
        }
    }

    /// Another master key, as the destination of a copy has.
    fn other_key() -> (arca_crypto::MasterKey, Arc<BlobKey>) {
        let key = arca_crypto::MasterKey::generate().unwrap();
        let blob_key = Arc::new(key.fresh_blob_key().unwrap());
        (key, blob_key)
    }

    fn verified(blob: &EncodedBlob) -> VerifiedBlob {
        open(blob).unwrap()
    }

    /// A copy or a re-encryption seals a compressed blob's stored form as it
    /// is: the same compressed bytes under the new key, not zstd again (here
    /// at level 19, which a second pass at the new key's level 3 would not
    /// reproduce).
    #[test]
    fn a_verified_compressed_blob_is_sealed_again_as_it_is_stored() {
        let plaintext = text(200_000);
        let blob = encode(BlobType::Data, &plaintext, Compression::new(19).unwrap());
        let opened = verified(&blob);
        assert_eq!(opened.plaintext(), plaintext);
        let (key, blob_key) = other_key();
        let id = key.content_id(&plaintext);
        let again = opened
            .encode(&blob_key, BlobType::Data, id, Compression::default())
            .unwrap();
        assert_eq!(again.uncompressed_length, Some(200_000));
        assert_eq!(again.id, id);
        let envelope = BlobEnvelope::Pack(blob_key.id());
        let stored = open_stored(&key, envelope, BlobType::Data, &again.bytes).unwrap();
        assert_eq!(stored, verified(&blob).into_stored_form());
        let decoded = decode_blob(
            &key,
            envelope,
            BlobType::Data,
            &again.bytes,
            again.uncompressed_length,
            &id,
        );
        assert_eq!(decoded.unwrap(), plaintext);
    }

    /// Compression off at the new key stores plaintext; a blob stored plain
    /// is encoded from its plaintext, so the new key's compression decides.
    #[test]
    fn a_verified_blob_follows_the_new_compression_where_it_must() {
        let (key, blob_key) = other_key();
        let envelope = BlobEnvelope::Pack(blob_key.id());
        let plaintext = text(100_000);
        let id = key.content_id(&plaintext);
        let compressed = encode(BlobType::Tree, &plaintext, Compression::default());
        let plain = encode(BlobType::Tree, &plaintext, Compression::OFF);
        for (from, compression, compresses) in [
            (&compressed, Compression::OFF, false),
            (&plain, Compression::default(), true),
            (&plain, Compression::OFF, false),
        ] {
            let again = verified(from)
                .encode(&blob_key, BlobType::Tree, id, compression)
                .unwrap();
            assert_eq!(again.uncompressed_length.is_some(), compresses);
            let decoded = decode_blob(
                &key,
                envelope,
                BlobType::Tree,
                &again.bytes,
                again.uncompressed_length,
                &id,
            );
            assert_eq!(decoded.unwrap(), plaintext);
        }
    }

    #[test]
    fn compression_levels_are_checked() {
        assert!(Compression::new(0).unwrap().is_off());
        assert_eq!(Compression::new(22).unwrap().level(), 22);
        assert!(matches!(
            Compression::new(23),
            Err(Error::InvalidOptions(_))
        ));
        assert!(matches!(
            Compression::new(-1),
            Err(Error::InvalidOptions(_))
        ));
    }

    #[test]
    fn blob_type_serde_is_lowercase() {
        assert_eq!(serde_json::to_string(&BlobType::Tree).unwrap(), "\"tree\"");
        assert_eq!(
            serde_json::from_str::<BlobType>("\"data\"").unwrap(),
            BlobType::Data
        );
        for blob_type in [BlobType::Data, BlobType::Tree] {
            assert_eq!(BlobType::from_byte(blob_type.to_byte()), Some(blob_type));
        }
        assert_eq!(BlobType::from_byte(2), None);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(
            blob_type in any_blob_type(),
            plaintext in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..5000),
                (0usize..100_000).prop_map(text),
            ],
            level in prop_oneof![Just(0), Just(1), Just(3)],
        ) {
            let blob = encode(blob_type, &plaintext, Compression::new(level).unwrap());
            prop_assert_eq!(blob.uncompressed_length.is_some(), blob.bytes.len() < plaintext.len() + BLOB_SEAL_OVERHEAD);
            prop_assert_eq!(decode(&blob).unwrap(), plaintext);
        }

        #[test]
        fn decode_never_panics(stored in proptest::collection::vec(any::<u8>(), 0..300), len in proptest::option::of(0u32..1000)) {
            let key = test_key();
            prop_assert!(decode_blob(key, envelope(), BlobType::Data, &stored, len, &Id::default()).is_err());
            prop_assert!(decode_blob(key, BlobEnvelope::PerBlob, BlobType::Data, &stored, len, &Id::default()).is_err());
        }
    }
}
