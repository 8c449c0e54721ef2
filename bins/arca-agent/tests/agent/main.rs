//! Process tests of `arca-agent`, one module per area, all in one test
//! executable: Cargo links each `tests/*.rs` file on its own, so one binary
//! per crate pays for one link, and its tests run in parallel. Add new test
//! files here as modules.

mod support;

mod agent;
mod agent_dr;
mod agent_restic;
