//! The decision and CRD tests, one module per area, all in one test
//! executable: Cargo links each `tests/*.rs` file on its own, so one binary
//! per crate pays for one link, and its tests run in parallel. Add new test
//! files here as modules.

mod common;

mod compliance;
mod crds;
mod invariants;
mod reconcile_destination;
mod reconcile_dr;
mod reconcile_source;
