//! Arca's Kubernetes operator as a library: the reconcile functions and their [`Context`]
//! (`reconcile`), scale-out over shard Leases (`shards`), the metrics and the HTTP endpoints
//! (`serve`), pre/post-backup hooks over `pods/exec` (`hooks`), the recording of spec changes (`changes`),
//! and the cluster-wide compliance report (`cluster_report`). The `arca-controller` binary parses its arguments and wires these together;
//! `tests/controller/http.rs` drives them against a scripted API server (kube's tower-test pattern).
//!
//! [`Context`]: reconcile::Context

mod changes;
pub mod cluster_report;
mod dr_metrics;
mod hooks;
pub mod metrics;
pub mod reconcile;
pub mod serve;
pub mod shards;
