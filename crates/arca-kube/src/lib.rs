//! VolSync-compatible custom resources and the operator's reconcile decisions.
//!
//! This crate is the operator's brain without its hands:
//!
//! - [`api`]: `ReplicationSource` and `ReplicationDestination` in `volsync.backube/v1alpha1`, with
//!   every field of VolSync's API (so manifests written for VolSync's restic mover apply as they
//!   are) and Arca's additions under an optional `arca:` section of spec and status.
//! - [`crds`]: the CustomResourceDefinitions generated from those types (committed under
//!   `deploy/helm/arca/crds/`, with a test that fails when they drift).
//! - [`reconcile_source`] / [`reconcile_destination`]: VolSync's state machine as pure
//!   functions of what the controller observed and the time, returning the objects to apply or
//!   delete, the new status, the events and when to look again.
//!
//! - [`queue`]: whether a sync that wants to start gets a mover slot (arca-sched's queue under
//!   the controller's global and per-node limits), and [`reconcile::hold_for_slot`] for one that
//!   does not.
//! - [`changes`]: which spec fields changed since the controller last recorded the object
//!   (for an Event and the repository's audit trail).
//! - [`lease`]: scale-out over shard Leases: which replica reconciles which object.
//! - [`compliance`]: the cluster-wide compliance report over every source's last report.
//!
//! It is not a client: nothing here talks to an API server, reads a clock or touches a file.
//! `bins/arca-controller` watches the cluster, fills the observed state, calls the decisions and
//! carries them out; `bins/arca-agent` is the mover the Jobs run, and its result document is all
//! the controller learns from a finished Job. Scheduling (cron, time zones, jitter, windows,
//! data classes) comes from `arca-sched`.

pub mod api;
pub mod changes;
pub mod compliance;
mod crd;
mod error;
pub mod lease;
pub mod queue;
pub mod reconcile;

pub use crd::{crd_file_name, crd_yaml, crds};
pub use error::Error;
pub use reconcile::{
    Action, ControllerConfig, Decision, DestinationDecision, DestinationObserved, SourceDecision,
    SourceObserved, reconcile_destination, reconcile_source,
};
