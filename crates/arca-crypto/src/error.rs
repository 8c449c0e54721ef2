/// Errors of the crypto layer. Messages never contain key material or passwords.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No key file could be opened with the given password.
    #[error("wrong password: no key file matches it")]
    WrongPassword,
    /// Ciphertext failed authentication: the data was modified or truncated.
    #[error("authentication failed: data is corrupt or was tampered with")]
    Authentication,
    /// Bytes do not parse as the expected structure.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed (e.g. "key file", "envelope").
        what: &'static str,
        /// Why it did not parse.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// The key derivation function rejected its parameters.
    #[error("invalid key derivation parameters: {0}")]
    Kdf(String),
    /// A plaintext exceeds AES-256-GCM's per-message limit (about 64 GiB).
    #[error(
        "cannot seal {len} bytes in one envelope: AES-256-GCM allows at most about 64 GiB; split the object"
    )]
    PlaintextTooLarge {
        /// Length of the rejected plaintext.
        len: usize,
    },
    /// Every data key id up to `u32::MAX` is in use, so no key can be added.
    #[error("cannot rotate the data key: all 2^32 data key ids are used")]
    KeyIdsExhausted,
}
