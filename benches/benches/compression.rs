//! criterion bench: compression.
fn main() {}
