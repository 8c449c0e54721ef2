//! criterion bench: index.
fn main() {}
