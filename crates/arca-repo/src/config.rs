//! The repository `config` file: parameters fixed when a repository is created.
//!
//! It is JSON sealed with the `Config` envelope kind and stored under the fixed
//! name `config` (see `docs/FORMAT.md`, "Config"). Opening a repository starts
//! by reading it; everything it holds is validated before use.

use arca_chunk::ChunkerParams;

use crate::blob::Compression;
use crate::{Error, Id, Result};

/// Repository format version this crate reads and writes.
pub const REPOSITORY_VERSION: u32 = 1;
/// Default target pack size: 16 MiB.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;
/// Smallest accepted target pack size.
pub const MIN_PACK_SIZE: u32 = 1024 * 1024;
/// Largest accepted target pack size (packs must stay far below 4 GiB).
pub const MAX_PACK_SIZE: u32 = 1024 * 1024 * 1024;

/// Repository-wide parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Format version ([`REPOSITORY_VERSION`]).
    pub version: u32,
    /// Random repository ID (distinguishes repositories, e.g. in caches).
    pub id: Id,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level for blobs; 0 = off.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
}

impl Config {
    /// A new configuration with a random repository ID.
    pub fn new(chunker: ChunkerParams, compression_level: i32, pack_size: u32) -> Result<Self> {
        let config = Config {
            version: REPOSITORY_VERSION,
            id: Id(rand::random()),
            chunker,
            compression_level,
            pack_size,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every field is in range.
    pub fn validate(&self) -> Result<()> {
        if self.version != REPOSITORY_VERSION {
            return Err(Error::InvalidOptions(format!(
                "repository format version {} is not supported (this program supports {REPOSITORY_VERSION})",
                self.version
            )));
        }
        self.chunker
            .validate()
            .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        Compression::new(self.compression_level)?;
        if !(MIN_PACK_SIZE..=MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(Error::InvalidOptions(format!(
                "pack size {} is out of range {MIN_PACK_SIZE}..={MAX_PACK_SIZE} bytes",
                self.pack_size
            )));
        }
        Ok(())
    }

    /// The JSON plaintext (the repository seals it).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("configs always serialise")
    }

    /// Parses and validates a config (untrusted input).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let config: Config =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt("config", e))?;
        config.validate().map_err(|e| Error::corrupt("config", e))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn new_configs_are_valid_and_distinct() {
        let a = Config::new(ChunkerParams::default(), 3, DEFAULT_PACK_SIZE).unwrap();
        let b = Config::new(ChunkerParams::default(), 3, DEFAULT_PACK_SIZE).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.version, REPOSITORY_VERSION);
        assert_eq!(Config::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn out_of_range_fields_are_rejected() {
        let good = Config::new(ChunkerParams::default(), 3, DEFAULT_PACK_SIZE).unwrap();
        let invalid = [
            Config {
                version: 2,
                ..good.clone()
            },
            Config {
                compression_level: 23,
                ..good.clone()
            },
            Config {
                pack_size: MIN_PACK_SIZE - 1,
                ..good.clone()
            },
            Config {
                pack_size: MAX_PACK_SIZE + 1,
                ..good.clone()
            },
            Config {
                chunker: ChunkerParams {
                    min: 4096,
                    avg: 1024,
                    max: 512,
                },
                ..good.clone()
            },
        ];
        for config in invalid {
            assert!(
                matches!(config.validate(), Err(Error::InvalidOptions(_))),
                "{config:?}"
            );
            assert!(
                matches!(Config::decode(&config.encode()), Err(Error::Corrupt { .. })),
                "{config:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn config_round_trips(level in 0i32..=22, pack_size in MIN_PACK_SIZE..=MAX_PACK_SIZE) {
            let config = Config::new(ChunkerParams::default(), level, pack_size).unwrap();
            prop_assert_eq!(Config::decode(&config.encode()).unwrap(), config);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Config::decode(&bytes);
        }
    }
}
