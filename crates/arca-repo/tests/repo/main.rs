//! The repository engine's integration tests, one module per area, all in
//! one test executable: Cargo links each `tests/*.rs` file on its own, so one
//! binary per crate pays for one link, and its tests run in parallel. Add new
//! test files here as modules.

// Not in this directory: `src/testing.rs` compiles `repo_fixtures/common.rs`
// into the unit tests too, by its path.
#[path = "../repo_fixtures/mod.rs"]
mod repo_fixtures;

mod append_only;
mod audit;
mod backup;
mod cache;
mod check;
mod copy;
mod erase;
mod faults;
mod format;
mod format_v1;
mod holds;
mod keys;
mod lifecycle_forget;
mod prune;
mod rekey;
mod restore;
