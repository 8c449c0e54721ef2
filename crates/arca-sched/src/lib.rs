//! Arca's scheduling decisions, for the operator: when each object's next backup runs and which
//! due backups start now.
//!
//! - [`Schedule`]: cron expressions exactly as VolSync accepts them (robfig/cron's standard
//!   5-field parser and descriptors), in an IANA time zone, with next/previous run queries that
//!   behave across DST changes (a skipped wall time runs once at the end of the gap, a repeated
//!   one runs once, at its first occurrence).
//! - [`missed_interval`] and [`Trigger`]: VolSync's missed-deadline rule and trigger precedence.
//! - [`jitter`] and [`BackupWindow`]: spreading runs that share a schedule, and confining starts
//!   to a daily window.
//! - [`DataClass`] and [`RpoStatus`]: the mission's critical/important/archival classes with their
//!   RPO and RTO, and whether an object is within its RPO.
//! - [`WorkQueue`]: due items ordered by class and lateness, without starving any class, under a
//!   global and a per-node concurrency limit.
//!
//! It is pure: no I/O, no clock (`now` is always a parameter), no Kubernetes types, no async. The
//! operator (`arca-kube`, the controller) reads the cluster, calls these functions and acts.
//! `docs/SCHEDULING.md` describes the syntax and every rule in prose.
//!
//! Time zones come from the system's `/usr/share/zoneinfo` (or `TZDIR`) when present, otherwise
//! from a copy of the IANA database built in, so zones resolve in a scratch container too.

mod class;
mod cron;
mod error;
mod queue;
mod schedule;
mod spread;
mod trigger;

pub use class::{DataClass, Rpo, RpoStatus};
pub use cron::CronField;
pub use error::{Error, FieldProblem};
pub use queue::{Limits, RunningItem, WorkItem, WorkQueue, level};
pub use schedule::Schedule;
pub use spread::{BackupWindow, Placement, jitter};
pub use trigger::{Trigger, missed_interval};
