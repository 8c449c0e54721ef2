//! The controller's integration tests, all in one test executable: Cargo
//! links each `tests/*.rs` file on its own, so one binary per crate pays for
//! one link, and its tests run in parallel. Add new test files here as
//! modules.

mod e2e;
mod http;
