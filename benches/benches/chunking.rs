//! criterion bench: chunking.
fn main() {}
