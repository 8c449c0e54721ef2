//! `arca`: the command-line interface. Parses arguments, wires the library
//! crates together and prints; all behaviour lives in the crates.

fn main() {}
