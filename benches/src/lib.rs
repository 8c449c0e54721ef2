//! Shared helpers for the criterion benches (deterministic input data).

/// `len` deterministic, incompressible bytes from xorshift64* seeded with
/// `state` (no dependency, same input on every run).
pub fn random(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}
