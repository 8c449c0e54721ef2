//! Storage backends for Arca repositories.
//!
//! A [`Backend`] is a flat key/value store of immutable files addressed by
//! relative paths such as `config`, `keys/<id>` or `data/ab/<id>`. It knows
//! nothing about the repository format. Backends exist for the local
//! filesystem (also NFS mounts) and, through `object_store`, S3-compatible
//! stores, GCS and Azure Blob. Retries, bandwidth limits, request counting,
//! caching and fault injection are decorators wrapping any backend.
//!
//! CONTRACT (fixed by the workspace skeleton):
//! - [`Backend`] is object-safe (`Arc<dyn Backend>`), async, and every `put` is atomic: a
//!   reader sees either the whole object or nothing, never a prefix.
//! - [`Error::NotFound`] for missing objects; [`Error::is_transient`] says whether a retry may help.
//! - [`open`] turns a restic-style repository URL into a ready backend.

mod counting;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

pub use counting::{CountingBackend, RequestCounters, RequestCounts};

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// Errors of the storage layer. Messages name the location, never credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object does not exist.
    #[error("{path}: not found")]
    NotFound {
        /// Object path.
        path: String,
    },
    /// A failure that may succeed if retried (timeouts, 5xx, resets, throttling).
    #[error("{location}: temporary storage failure: {message}")]
    Transient {
        /// Where it happened (backend and path).
        location: String,
        /// What happened.
        message: String,
    },
    /// A failure that will not go away by retrying (auth, permissions, bad request, disk full).
    #[error("{location}: {message}")]
    Permanent {
        /// Where it happened (backend and path).
        location: String,
        /// What happened.
        message: String,
    },
    /// The repository URL or an option is invalid.
    #[error("invalid repository location {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Transient { .. })
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A flat store of immutable objects.
#[async_trait::async_trait]
pub trait Backend: std::fmt::Debug + std::fmt::Display + Send + Sync + 'static {
    /// Reads a whole object.
    async fn get(&self, path: &str) -> Result<Bytes>;
    /// Reads `range` of an object.
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes>;
    /// Writes an object atomically, replacing any existing one.
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Lists objects whose path starts with `prefix` (e.g. `"snapshots/"`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Size of an object.
    async fn head(&self, path: &str) -> Result<ObjectMeta>;
    /// How many write requests a `put` of `size` bytes sends (more than one for a
    /// multipart upload). Used by [`CountingBackend`]; decorators forward it.
    fn put_requests(&self, _size: u64) -> u64 {
        1
    }
}

/// Options shared by every backend opened from a URL.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Concurrent connections (restic's `-o connections`); `None` = backend default.
    pub connections: Option<usize>,
    /// Upload limit in KiB/s.
    pub limit_upload_kib: Option<u64>,
    /// Download limit in KiB/s.
    pub limit_download_kib: Option<u64>,
    /// PEM bundle of extra CA certificates for https endpoints.
    pub cacert: Option<std::path::PathBuf>,
}

/// A backend opened by [`open`], with the counters of the requests it sends.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The backend, wrapped in the standard decorators.
    pub backend: Arc<dyn Backend>,
    /// Requests sent so far (`requests.snapshot()` for a report).
    pub requests: Arc<RequestCounters>,
}

/// Opens the backend for a restic-style repository URL (`/path`, `local:/path`,
/// `s3:...`, `gs:...`, `azure:...`), wrapped in the standard decorators.
pub fn open(_url: &str, _options: &StoreOptions) -> Result<OpenedStore> {
    unimplemented!()
}
