//! Shared helpers for the criterion benches (deterministic input data).
