//! The mover behind `arca-agent`: the VolSync restic mover contract as typed
//! data, and the actions a backup or restore Job runs.
//!
//! A Kubernetes Job runs `arca-agent` with actions as arguments and the
//! repository Secret's keys as environment (docs/AGENT.md). This crate turns
//! that environment into a [`MoverConfig`] (pure, [`MoverConfig::from_env`]),
//! opens the repository ([`open`], with the non-interactive password sources
//! of [`secret`]), runs the actions ([`actions`]) and describes the outcome
//! as a [`MoverReport`], the JSON document the controller reads from the
//! Job's termination log.
//!
//! It is not a CLI and knows nothing about Kubernetes objects: it never
//! prints (progress goes to a caller-given sink), and the binary decides
//! where the report is written and which exit code ends the process
//! ([`ErrorClass::exit_code`]).

pub mod actions;
pub mod config;
mod error;
pub mod open;
pub mod progress;
pub mod push;
pub mod report;
pub mod secret;

pub use config::{Action, MoverConfig};
pub use error::{Error, ErrorClass};
pub use report::MoverReport;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
