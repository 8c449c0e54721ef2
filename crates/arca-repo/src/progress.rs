//! Progress reporting from long-running operations to whoever drives them.
//!
//! The engine calls a [`Progress`] implementation from its worker threads; the
//! CLI renders it as a progress bar or JSON lines, the agent as metrics. All
//! methods have no-op defaults so callers implement only what they show.

/// Receives progress events. Implementations must be cheap and thread-safe:
/// they are called from pipeline threads in hot loops.
pub trait Progress: Send + Sync {
    /// Totals became known (or grew): files and bytes the operation will process.
    fn set_total(&self, _files: u64, _bytes: u64) {}
    /// `bytes` more were processed (read for backup, written for restore, verified for check).
    fn add_bytes(&self, _bytes: u64) {}
    /// One more file finished.
    fn add_file(&self, _path: &std::path::Path) {}
    /// A non-fatal problem with one item (file vanished, unreadable, damaged blob).
    fn warn(&self, _path: &std::path::Path, _message: &str) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
