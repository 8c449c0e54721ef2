//! Keyed content-defined chunking for Arca.
//!
//! Splits byte streams into variable-size chunks with FastCDC (2020) whose gear
//! table is derived from a secret key, so chunk boundaries reveal nothing about
//! the content to someone without the key. This crate only finds cut points; it
//! does not hash, compress or store chunks.
//!
//! CONTRACT (fixed by the workspace skeleton):
//! - [`ChunkerParams`] { min, avg, max } in bytes; serde; `Default` = 128 KiB / 256 KiB / 8 MiB;
//!   [`ChunkerParams::validate`]; [`ChunkerParams::with_average`] derives bounds from an average.
//! - [`Chunker::new`]`(params, key: &[u8; 32])`; `Chunker` is `Clone + Send + Sync` and cheap to share.
//! - [`Chunker::cut_points`] over a slice; [`StreamChunker`] over any `std::io::Read`,
//!   lending chunks out of one buffer (2 MiB, at most `max` + 2 MiB) that it reuses
//!   from stream to stream.
//!
//! # Algorithm (what a second implementation must reproduce)
//!
//! The gear table is 256 `u64`s: the first 2048 bytes of the BLAKE3 XOF of
//! `derive_key(context = "arca chunker gear v1", key_material = key)`, read as
//! little-endian `u64`s; the shifted table is `gear_ls[i] = gear[i] << 1`.
//! Cut points are those of `fastcdc::v2020::cut_gear` (FastCDC 2020, two bytes
//! per step) with the masks of `select_masks(avg, Normalization::Level1)` and
//! `mask_ls = mask << 1`: starting from each chunk's first byte, look at most
//! `max` bytes ahead; no cut before `min` bytes; the stricter mask up to `avg`
//! bytes, the looser one after; cut at `max` if no hash matches. Only the final
//! chunk of a stream may be shorter than `min`.
//!
//! Because each position is tested with a mask that depends only on its
//! distance from the chunk start, and a cut decision never looks more than
//! `max` bytes ahead, a streaming reader can accept a match found inside its
//! buffer, or any cut once it holds `max` bytes or the rest of the input, and
//! finds exactly the same boundaries as a pass over the whole slice.

mod stream;

use std::sync::Arc;

use fastcdc::v2020::{self, Normalization};
use zeroize::Zeroize;

pub use crate::stream::{ChunkStream, READ_ALIGN, StreamChunker};

/// Chunk size bounds in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size (except the last chunk of a stream).
    pub min: u32,
    /// Target average chunk size (a power of two).
    pub avg: u32,
    /// Maximum chunk size.
    pub max: u32,
}

/// Bounds of new repositories. A database rewrites scattered 8 KiB pages, and
/// each rewrite re-stores the whole chunk around it, so what a backup after
/// such a change adds is nearly proportional to the chunk size: on the
/// benchmark tree (docs/PERFORMANCE.md) 128 KiB / 256 KiB re-stores 103 MiB
/// where 256 KiB / 512 KiB re-stored 150 MiB (restic, 512 KiB / 1 MiB: 148
/// MiB), with no cost in restore or check time and a first backup no larger.
/// The price is the index: about twice the blobs of 256 KiB / 512 KiB per
/// byte of large files (48 bytes each in memory).
impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams::with_average(256 * 1024).expect("256 KiB is a valid average")
    }
}

/// Errors of the chunker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The parameters are outside what FastCDC supports.
    #[error("invalid chunker parameters: {0}")]
    InvalidParams(String),
}

/// Smallest accepted `min`: below this, per-chunk overhead (IDs, index
/// entries, envelopes) dwarfs the data.
const MIN_MIN: u32 = 256;
/// Largest accepted `max`: the smaller of Arca's 64 MiB cap and FastCDC's own limit.
const MAX_MAX: u32 = {
    let fastcdc_max = v2020::MAXIMUM_MAX as u32;
    if fastcdc_max < 64 * 1024 * 1024 {
        fastcdc_max
    } else {
        64 * 1024 * 1024
    }
};

impl ChunkerParams {
    /// Bounds around an average of `avg` bytes: `min` half of it, `max` 8 MiB
    /// (1 MiB gives restic's 512 KiB / 1 MiB / 8 MiB). Valid for powers of
    /// two from 512 B to 2 MiB.
    pub fn with_average(avg: u32) -> Result<Self, Error> {
        let params = ChunkerParams {
            min: avg / 2,
            avg,
            max: 8 * 1024 * 1024,
        };
        // Say what is wrong with the average the caller gave, not with the
        // bounds derived from it.
        params.validate().map_err(|_| {
            Error::InvalidParams(format!(
                "average chunk size {avg} bytes is not a power of two from 512 B to 2 MiB"
            ))
        })?;
        Ok(params)
    }

    /// Checks the bounds FastCDC supports.
    ///
    /// `min` in 256 B..=1 MiB, `avg` a power of two in 256 B..=4 MiB, `max` in
    /// 1 KiB..=16 MiB, `min < avg < max`, and `min` and `max` even (FastCDC
    /// tests cut points in byte pairs).
    pub fn validate(&self) -> Result<(), Error> {
        let ChunkerParams { min, avg, max } = *self;
        let invalid = |reason: String| Err(Error::InvalidParams(reason));
        let min_range = MIN_MIN..=v2020::MINIMUM_MAX as u32;
        let avg_range = v2020::AVERAGE_MIN as u32..=v2020::AVERAGE_MAX as u32;
        let max_range = v2020::MAXIMUM_MIN as u32..=MAX_MAX;
        if !min_range.contains(&min) {
            return invalid(format!("min {min} is outside {min_range:?} bytes"));
        }
        if !avg_range.contains(&avg) || !avg.is_power_of_two() {
            return invalid(format!(
                "avg {avg} is not a power of two in {avg_range:?} bytes"
            ));
        }
        if !max_range.contains(&max) {
            return invalid(format!("max {max} is outside {max_range:?} bytes"));
        }
        if !(min < avg && avg < max) {
            return invalid(format!("need min < avg < max, got {min} / {avg} / {max}"));
        }
        if min % 2 != 0 || max % 2 != 0 {
            return invalid(format!("min {min} and max {max} must be even"));
        }
        Ok(())
    }
}

/// The keyed gear tables; secret-derived, so wiped on drop.
struct GearTables {
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

impl GearTables {
    fn derive(key: &[u8; 32]) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("arca chunker gear v1");
        hasher.update(key);
        let mut stream = [0u8; 256 * 8];
        hasher.finalize_xof().fill(&mut stream);
        let mut tables = GearTables {
            gear: [0; 256],
            gear_ls: [0; 256],
        };
        for (i, word) in stream.chunks_exact(8).enumerate() {
            let value = u64::from_le_bytes(word.try_into().expect("chunks of 8"));
            tables.gear[i] = value;
            tables.gear_ls[i] = value << 1;
        }
        stream.zeroize();
        tables
    }
}

impl Drop for GearTables {
    fn drop(&mut self) {
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

/// A keyed FastCDC chunker.
///
/// Cloning shares the gear tables (an `Arc`), so clones are cheap.
#[derive(Clone)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    tables: Arc<GearTables>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chunker(..)")
    }
}

impl Chunker {
    /// Builds the chunker; the gear table is derived from `key`.
    pub fn new(params: ChunkerParams, key: &[u8; 32]) -> Result<Self, Error> {
        params.validate()?;
        let (mask_s, mask_l) = v2020::select_masks(params.avg as usize, Normalization::Level1);
        Ok(Chunker {
            params,
            mask_s,
            mask_l,
            tables: Arc::new(GearTables::derive(key)),
        })
    }

    /// The size bounds this chunker was built with.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Chunk lengths of `data` in order (they sum to `data.len()`).
    pub fn cut_points(&self, data: &[u8]) -> Vec<usize> {
        let mut lengths = Vec::with_capacity(data.len() / self.params.avg as usize + 1);
        let mut rest = data;
        while !rest.is_empty() {
            let len = self.next_cut(rest);
            lengths.push(len);
            rest = &rest[len..];
        }
        lengths
    }

    /// Length of the chunk at the start of `data` (non-empty). `data` must hold
    /// at least `max` bytes unless it is the end of the input.
    fn next_cut(&self, data: &[u8]) -> usize {
        let (_hash, len) = v2020::cut_gear(
            data,
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.tables.gear,
            &self.tables.gear_ls,
        );
        len
    }

    /// Length of the chunk at the start of `data`, exactly as
    /// [`Chunker::next_cut`] finds it, when an earlier call on `data`'s first
    /// `scanned` bytes found no cut in them: only the bytes after those are
    /// examined. A stream that reads on after an undecided window thus goes
    /// on where it stopped instead of starting over (which, with 2 MiB reads
    /// and ~1 MiB chunks, scanned a quarter of the bytes twice).
    ///
    /// The rolling hash shifts two bits per byte pair, so its value at a
    /// position depends on the 32 pairs before it alone: rolling it over
    /// those restores it. The masks depend on the position within the chunk
    /// (and on the window's length only where it ends before `avg`, where
    /// the earlier call used the small mask as this one does).
    fn next_cut_after(&self, data: &[u8], scanned: usize) -> usize {
        let ChunkerParams { min, avg, max } = self.params;
        let (min, avg, max) = (min as usize, avg as usize, max as usize);
        if scanned <= min || data.len() <= scanned {
            return self.next_cut(data);
        }
        let remaining = data.len().min(max);
        let center = avg.min(remaining);
        let (gear, gear_ls) = (&self.tables.gear, &self.tables.gear_ls);
        let (mask_s_ls, mask_l_ls) = (self.mask_s << 1, self.mask_l << 1);
        let resume = scanned / 2;
        let mut hash = 0u64;
        for index in resume.saturating_sub(32).max(min / 2)..resume {
            let a = 2 * index;
            hash = (hash << 2)
                .wrapping_add(gear_ls[data[a] as usize])
                .wrapping_add(gear[data[a + 1] as usize]);
        }
        for index in resume..remaining / 2 {
            let (mask, mask_ls) = if index < center / 2 {
                (self.mask_s, mask_s_ls)
            } else {
                (self.mask_l, mask_l_ls)
            };
            let a = 2 * index;
            hash = (hash << 2).wrapping_add(gear_ls[data[a] as usize]);
            if hash & mask_ls == 0 {
                return a;
            }
            hash = hash.wrapping_add(gear[data[a + 1] as usize]);
            if hash & mask == 0 {
                return a + 1;
            }
        }
        remaining
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Going on after a prefix with no cut finds the cut a scan from the
        /// start finds, wherever the prefix ends.
        #[test]
        fn a_resumed_scan_cuts_where_a_full_scan_does(
            seed in any::<u64>(),
            len in 1usize..12_000,
            prefix in any::<prop::sample::Index>(),
            zeros in any::<bool>(),
        ) {
            let params = ChunkerParams { min: 256, avg: 1024, max: 8192 };
            let chunker = Chunker::new(params, &[seed as u8; 32]).unwrap();
            let mut state = seed;
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    // Zeros never cut: long stretches of them reach `max`.
                    if zeros && i % 3000 < 2000 { 0 } else { (state >> 56) as u8 }
                })
                .collect();
            let scanned = prefix.index(len + 1);
            let undecided = scanned < params.max as usize
                && chunker.next_cut(&data[..scanned.max(1)]) == scanned.max(1);
            prop_assume!(scanned == 0 || undecided);
            prop_assert_eq!(chunker.next_cut_after(&data, scanned), chunker.next_cut(&data));
        }
    }

    #[test]
    fn bounds_around_an_average_halve_it_for_min_and_stop_at_8_mib() {
        let around = |avg| ChunkerParams::with_average(avg).map(|p| (p.min, p.avg, p.max));
        assert_eq!(
            (ChunkerParams::default().min, ChunkerParams::default().avg),
            (128 << 10, 256 << 10)
        );
        assert_eq!(around(1 << 20).unwrap(), (512 << 10, 1 << 20, 8 << 20));
        let valid: Vec<u32> = (0..32)
            .map(|shift| 1 << shift)
            .filter(|&avg| around(avg).is_ok())
            .collect();
        assert_eq!(valid.first(), Some(&512));
        assert_eq!(valid.last(), Some(&(2 << 20)));
        assert_eq!(valid.len(), 13, "every power of two from 512 B to 2 MiB");
        for avg in [0, 3 << 20, 1000] {
            assert!(around(avg).is_err(), "{avg}");
        }
    }

    #[test]
    fn validate_rejects_each_bound() {
        let cases = [
            (
                "min too small",
                ChunkerParams {
                    min: 254,
                    avg: 1024,
                    max: 4096,
                },
            ),
            (
                "min above FastCDC's limit",
                ChunkerParams {
                    min: 2 << 20,
                    avg: 4 << 20,
                    max: 8 << 20,
                },
            ),
            (
                "avg not a power of two",
                ChunkerParams {
                    min: 512,
                    avg: 1000,
                    max: 4096,
                },
            ),
            (
                "avg too large",
                ChunkerParams {
                    min: 512,
                    avg: 8 << 20,
                    max: 16 << 20,
                },
            ),
            (
                "max too large",
                ChunkerParams {
                    min: 512,
                    avg: 1 << 20,
                    max: (16 << 20) + 2,
                },
            ),
            (
                "max too small",
                ChunkerParams {
                    min: 256,
                    avg: 512,
                    max: 1022,
                },
            ),
            (
                "min = avg",
                ChunkerParams {
                    min: 1024,
                    avg: 1024,
                    max: 4096,
                },
            ),
            (
                "avg = max",
                ChunkerParams {
                    min: 512,
                    avg: 4096,
                    max: 4096,
                },
            ),
            (
                "min > max",
                ChunkerParams {
                    min: 8192,
                    avg: 4096,
                    max: 2048,
                },
            ),
            (
                "odd min",
                ChunkerParams {
                    min: 513,
                    avg: 1024,
                    max: 4096,
                },
            ),
            (
                "odd max",
                ChunkerParams {
                    min: 512,
                    avg: 1024,
                    max: 4095,
                },
            ),
        ];
        for (name, params) in cases {
            assert!(params.validate().is_err(), "{name} accepted");
            assert!(
                Chunker::new(params, &[0; 32]).is_err(),
                "{name} built a chunker"
            );
        }
        // The extremes that are allowed.
        for params in [
            ChunkerParams {
                min: 256,
                avg: 512,
                max: 1024,
            },
            ChunkerParams {
                min: 1 << 20,
                avg: 4 << 20,
                max: 16 << 20,
            },
        ] {
            params.validate().unwrap();
        }
    }

    #[test]
    fn gear_tables_depend_on_the_key() {
        let a = GearTables::derive(&[1; 32]);
        let b = GearTables::derive(&[2; 32]);
        assert_eq!(a.gear, GearTables::derive(&[1; 32]).gear);
        assert_ne!(a.gear, b.gear);
        assert!(a.gear.iter().zip(&a.gear_ls).all(|(g, ls)| *ls == g << 1));
        // Not fastcdc's public default table.
        let (public, _) = v2020::get_gear_with_seed(0);
        assert_ne!(&a.gear[..], &public[..]);
    }

    #[test]
    fn gear_table_matches_the_documented_derivation() {
        // Recompute the first entry straight from the documented recipe.
        let key = [7u8; 32];
        let mut first = [0u8; 8];
        blake3::Hasher::new_derive_key("arca chunker gear v1")
            .update(&key)
            .finalize_xof()
            .fill(&mut first);
        assert_eq!(GearTables::derive(&key).gear[0], u64::from_le_bytes(first));
    }

    #[test]
    fn debug_hides_the_tables() {
        let chunker = Chunker::new(ChunkerParams::default(), &[9; 32]).unwrap();
        assert_eq!(format!("{chunker:?}"), "Chunker(..)");
    }
}
