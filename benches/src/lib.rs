//! Shared helpers for the criterion benches (deterministic input data).
//!
//! The input comes from `arca-testdata`, the generator of `cargo xtask bench`'s
//! volumes, so a stage measured here sees the kind of bytes the end-to-end run feeds it.

use arca_testdata::Rng;

/// `len` deterministic, incompressible bytes determined by `seed`.
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    Rng::new(seed).fill(&mut out);
    out
}
