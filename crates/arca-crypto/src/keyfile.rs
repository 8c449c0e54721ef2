use crate::{MasterKey, Result};

/// Argon2id cost parameters, stored in every key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// A password-wrapped copy of the master key (`keys/<id>`), plaintext JSON on disk.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyFile {
    _private: Option<()>,
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub fn create(
        _master: &MasterKey,
        _password: &[u8],
        _params: KdfParams,
        _hostname: &str,
        _username: &str,
    ) -> Result<Self> {
        unimplemented!()
    }
    /// Unwraps the master key; [`crate::Error::WrongPassword`] if the password does not match.
    pub fn open(&self, _password: &[u8]) -> Result<MasterKey> {
        unimplemented!()
    }
    /// Serialises to the on-disk bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        unimplemented!()
    }
    /// Parses on-disk bytes (untrusted input).
    pub fn from_bytes(_bytes: &[u8]) -> Result<Self> {
        unimplemented!()
    }
}
