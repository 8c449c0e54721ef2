//! criterion bench: packing.
fn main() {}
