//! criterion bench: crypto.
fn main() {}
