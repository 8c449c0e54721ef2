//! `cargo xtask`: the project's single front door for tests, the demo,
//! benchmarks and fuzzing (see README.md).

fn main() {}
