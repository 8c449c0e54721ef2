//! The repository's `config` file: format version, repository ID and the
//! chunker polynomial. Encrypted, never compressed (restic's `SaveUnpacked`
//! skips compression for it).

use crate::{Error, Result};

/// The decrypted `config` file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Config {
    /// Repository format version: 1 (restic ≤ 0.13) or 2 (compression).
    pub version: u32,
    /// Repository ID (hex).
    pub id: String,
    /// The Rabin chunker's polynomial (hex).
    pub chunker_polynomial: String,
}

impl Config {
    /// Parses the config's JSON (untrusted input); only versions 1 and 2 are accepted.
    pub fn decode(json: &[u8]) -> Result<Self> {
        let config: Config =
            serde_json::from_slice(json).map_err(|e| Error::corrupt("config", e))?;
        if !(1..=2).contains(&config.version) {
            return Err(Error::Unsupported {
                what: "restic repository".into(),
                reason: format!("format version {} (known: 1 and 2)", config.version),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_one_and_two_only() {
        let json = |v: u32| {
            format!(r#"{{"version":{v},"id":"ab","chunker_polynomial":"3dea92648f6e83"}}"#)
        };
        assert_eq!(Config::decode(json(2).as_bytes()).unwrap().version, 2);
        assert!(Config::decode(json(1).as_bytes()).is_ok());
        assert!(Config::decode(json(3).as_bytes()).is_err());
        assert!(Config::decode(b"{}").is_err());
    }
}
