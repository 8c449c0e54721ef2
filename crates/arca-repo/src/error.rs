/// Errors of the repository layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] arca_store::Error),
    /// Cryptography failed (wrong password, corrupt data).
    #[error(transparent)]
    Crypto(#[from] arca_crypto::Error),
}
