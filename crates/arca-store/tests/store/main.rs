//! The backends' integration tests, one module per backend or concern, all in
//! one test executable: Cargo links each `tests/*.rs` file on its own, so one
//! binary per crate pays for one link, and its tests run in parallel. Add new
//! test files here as modules.

mod azure;
mod backends;
mod cloud_live;
mod faults;
mod gcs;
mod limits;
mod s3;
mod tls13;
