//! End-to-end tests of the `arca` binary, one module per area, all in one
//! test executable: Cargo links each `tests/*.rs` file on its own, so one
//! binary per crate pays for one link, and its tests run in parallel. Add
//! new test files here as modules.

mod support;

mod cli;
mod compliance_cli;
mod copy_cli;
mod dr_cli;
mod forget_cli;
mod prune_cli;
mod restic_cli;
mod restic_migrate;
mod s3;
