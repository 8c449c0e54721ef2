use crate::{Error, Id, Result};

/// Bytes the envelope adds to a plaintext (header + tag). Implementations set the real value.
pub const SEAL_OVERHEAD: usize = 49;

/// What an encrypted object is; bound into the AEAD as associated data so one
/// kind of object can never be passed off as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ObjectKind {
    /// The repository `config` file.
    Config = 1,
    /// A data blob inside a pack.
    DataBlob = 2,
    /// A tree blob inside a pack.
    TreeBlob = 3,
    /// The header at the end of a pack.
    PackHeader = 4,
    /// A file in `index/`.
    Index = 5,
    /// A file in `snapshots/`.
    Snapshot = 6,
    /// A file in `locks/` (later issues).
    Lock = 7,
}

/// The repository's secret key material: content-ID key, chunker key and data
/// keys. Zeroized on drop; `Debug` prints nothing secret.
pub struct MasterKey {
    _private: (),
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Fresh random key material from the OS RNG.
    pub fn generate() -> Result<Self> {
        Err(Error::Random)
    }
    /// Keyed content ID of a plaintext blob (keyed BLAKE3).
    pub fn content_id(&self, _plaintext: &[u8]) -> Id {
        unimplemented!()
    }
    /// 32 secret bytes from which the chunker derives its gear table.
    pub fn chunker_key(&self) -> [u8; 32] {
        unimplemented!()
    }
    /// Appends the sealed envelope of `plaintext` to `out`.
    pub fn seal_into(&self, _kind: ObjectKind, _plaintext: &[u8], _out: &mut Vec<u8>) -> Result<()> {
        unimplemented!()
    }
    /// Sealed envelope of `plaintext` as a new buffer.
    pub fn seal(&self, kind: ObjectKind, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(kind, plaintext, &mut out)?;
        Ok(out)
    }
    /// Authenticates and decrypts an envelope made by [`MasterKey::seal_into`].
    pub fn open(&self, _kind: ObjectKind, _sealed: &[u8]) -> Result<Vec<u8>> {
        unimplemented!()
    }
}
