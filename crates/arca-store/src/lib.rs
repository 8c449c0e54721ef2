//! Storage backends for Arca repositories.
//!
//! A [`Backend`] is a flat key/value store of immutable files addressed by
//! relative paths such as `config`, `keys/<id>` or `data/ab/<id>`. It knows
//! nothing about the repository format (that is `arca-repo`) and never
//! encrypts (that is `arca-crypto`).
//!
//! Backends:
//! - [`LocalBackend`]: a directory on a local filesystem or NFS mount, written with
//!   temp file + fsync + rename + directory fsync (object_store's local store does not fsync);
//! - [`ObjectStoreBackend`]: S3 and S3-compatible stores (MinIO, Ceph RGW), Google Cloud
//!   Storage and Azure Blob through the `object_store` crate.
//!
//! Everything else is a decorator wrapping any backend: [`RetryBackend`],
//! [`ConcurrencyLimitBackend`], [`BandwidthLimitBackend`], [`CountingBackend`],
//! [`AppendOnlyBackend`] (refuses deletes and overwrites) and, for tests,
//! [`FaultBackend`]. [`open`] parses a restic-style URL into a
//! [`Location`], builds the backend and stacks the standard decorators.
//! [`SpoolFile`] and [`Backend::put_file`] let a writer build a large object
//! on disk instead of in memory: in a local repository's own directory, or,
//! for object stores, unnamed in a local temporary directory
//! ([`StoreOptions::spool_dir`]) from which the upload streams it. [`DiskCache`] is a separate local metadata cache the repository layer uses
//! where it chooses to. [`conformance`] holds the behaviour every backend must show,
//! as test helpers.
//!
//! ```
//! # async fn demo() -> arca_store::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("local:{}", dir.path().display());
//! let opened = arca_store::open(&url, &arca_store::StoreOptions::default())?;
//! opened.backend.put("config", bytes::Bytes::from_static(b"{}")).await?;
//! assert_eq!(opened.backend.get("config").await?, "{}");
//! assert_eq!(opened.backend.list("").await?[0].size, 2);
//! assert_eq!(opened.requests.snapshot().put, 1);
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! CONTRACT:
//! - [`Backend`] is object-safe (`Arc<dyn Backend>`), async, and every `put` is atomic: a
//!   reader sees either the whole object or nothing, never a prefix.
//! - [`Error::NotFound`] for missing objects; [`Error::is_transient`] says whether a retry may help.
//! - [`open`] turns a repository URL into a ready backend plus its request counters.

mod append_only;
mod cache;
mod cloud;
pub mod conformance;
mod counting;
mod credentials;
mod direct;
mod error;
mod fault;
mod key_location;
mod limit;
mod local;
mod location;
mod retry;
mod spool;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

pub use append_only::AppendOnlyBackend;
pub use cache::DiskCache;
pub use cloud::{MULTIPART_PART_SIZE, MULTIPART_THRESHOLD, ObjectStoreBackend, WriteCheck};
pub use counting::{CountingBackend, RequestCounters, RequestCounts};
pub use direct::{DIRECT_IO_ALIGN, release_read_buffers, set_direct};
pub use error::{Error, Result};
pub use fault::{FaultBackend, FaultConfig, OutageSwitch};
pub use key_location::{KEY_DIRS, KeyLocationBackend};
pub use limit::{BandwidthLimitBackend, ConcurrencyLimitBackend, TokenBucket};
pub use local::LocalBackend;
pub use location::Location;
pub use retry::{RetryBackend, RetryPolicy};
pub use spool::{SpoolDir, SpoolFile};

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A flat store of immutable objects.
#[async_trait::async_trait]
pub trait Backend: std::fmt::Debug + std::fmt::Display + Send + Sync + 'static {
    /// Reads a whole object.
    async fn get(&self, path: &str) -> Result<Bytes>;
    /// Reads `range` of an object; a range reaching past the end is an error.
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes>;
    /// Writes an object atomically, replacing any existing one.
    async fn put(&self, path: &str, data: Bytes) -> Result<()>;
    /// Stores the contents of `file` as an object, like [`Backend::put`].
    /// A backend with a [`Backend::spool_dir`] moves a file created there
    /// into place without copying it; the default reads it back and `put`s
    /// it. Decorators forward it with their own behaviour (a retry stores
    /// the same file again).
    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        put_file_contents(self, path, file).await
    }
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// Lists objects whose path starts with `prefix` (e.g. `"snapshots/"`), sorted by path.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Size of an object.
    async fn head(&self, path: &str) -> Result<ObjectMeta>;
    /// How many write requests a `put` of `size` bytes sends (more than one for a
    /// multipart upload). Used by [`CountingBackend`]; decorators forward it.
    fn put_requests(&self, _size: u64) -> u64 {
        1
    }
    /// The same for a [`Backend::put_file`] of `size` bytes.
    fn put_file_requests(&self, size: u64) -> u64 {
        self.put_requests(size)
    }
    /// How many requests this backend serves at once, if it is limited
    /// ([`ConcurrencyLimitBackend`], or a backend's own default such as the
    /// local one's; decorators forward it): writers size their in-flight
    /// buffers to it.
    fn connections(&self) -> Option<usize> {
        None
    }
    /// Where a writer should create the [`SpoolFile`]s of objects it builds
    /// gradually: a local repository's own directory (storing one is a
    /// rename), or, for an object store, a local temporary directory it
    /// uploads them from. `None`: writers keep such objects in memory.
    /// Decorators forward it.
    fn spool_dir(&self) -> Option<SpoolDir> {
        None
    }
}

/// Reads `file` back and `put`s its contents: [`Backend::put_file`] for a
/// backend that cannot take the file itself.
async fn put_file_contents<B: Backend + ?Sized>(
    backend: &B,
    path: &str,
    file: Arc<SpoolFile>,
) -> Result<()> {
    let data = tokio::task::spawn_blocking(move || file.read_all())
        .await
        .map_err(|err| Error::permanent(path, format!("reading the spool file failed: {err}")))??;
    backend.put(path, data).await
}

/// Whether `path` is a relative, `/`-separated object path without empty, `.` or
/// `..` segments, the only paths backends accept (so none can escape its root).
fn is_valid_object_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// Options shared by every backend opened from a URL.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Concurrent requests (restic's `-o connections`); `None` = backend default
    /// (2 for local, 5 for cloud stores).
    pub connections: Option<usize>,
    /// Upload limit in KiB/s, shared by all connections.
    pub limit_upload_kib: Option<u64>,
    /// Download limit in KiB/s, shared by all connections.
    pub limit_download_kib: Option<u64>,
    /// PEM bundle of extra CA certificates for https endpoints.
    pub cacert: Option<std::path::PathBuf>,
    /// Refuse every cloud storage connection that is not TLS 1.3 (and plain
    /// http unless [`StoreOptions::allow_http`]).
    pub require_tls13: bool,
    /// With [`StoreOptions::require_tls13`], still talk plain http to an
    /// `http://` endpoint (a local test server); without it such an endpoint
    /// is refused.
    pub allow_http: bool,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Where packs for a cloud store are spooled before their upload (unnamed
    /// files: nothing is left there after a crash or kill); `None`: the
    /// system's temporary directory (`TMPDIR`, else `/tmp`).
    pub spool_dir: Option<PathBuf>,
}

/// A backend opened by [`open`], with the counters of the requests it sends.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The backend, wrapped in the standard decorators.
    pub backend: Arc<dyn Backend>,
    /// Requests sent so far (`requests.snapshot()` for a report).
    pub requests: Arc<RequestCounters>,
}

/// Default concurrent requests for a local directory (as restic).
const LOCAL_CONNECTIONS: usize = 2;
/// Default concurrent requests for a cloud store (as restic).
const CLOUD_CONNECTIONS: usize = 5;

/// Opens the backend for a restic-style repository URL (`/path`, `local:/path`,
/// `s3:...`, `gs:...`, `azure:...`), wrapped in the standard decorators.
/// Credentials come from the process environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
pub fn open(url: &str, options: &StoreOptions) -> Result<OpenedStore> {
    open_with_env(url, options, &|name| std::env::var(name).ok())
}

/// [`open`] with credentials looked up through `env` instead of the process
/// environment (for tests, and for callers holding credentials from elsewhere,
/// such as a Kubernetes Secret).
pub fn open_with_env(
    url: &str,
    options: &StoreOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpenedStore> {
    let location = Location::parse(url)?;
    let name = location.to_string();
    let (built, prefix, write_check) = match &location {
        Location::Local { path } => {
            let mut options = options.clone();
            options.connections.get_or_insert(LOCAL_CONNECTIONS);
            return Ok(decorate(Arc::new(LocalBackend::new(path)), &options));
        }
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => (
            credentials::s3(url, endpoint, bucket, options, env)?,
            prefix,
            WriteCheck::TrustResponse,
        ),
        Location::Gcs { bucket, prefix } => (
            credentials::gcs(url, bucket, options, env)?,
            prefix,
            WriteCheck::HeadSize,
        ),
        Location::Azure { container, prefix } => (
            credentials::azure(url, container, options, env)?,
            prefix,
            WriteCheck::HeadSize,
        ),
    };
    let spool_dir = options.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let base = ObjectStoreBackend::new(built.store, prefix, name, write_check, built.secrets)
        .with_spool_dir(spool_dir);
    let mut options = options.clone();
    options.connections.get_or_insert(CLOUD_CONNECTIONS);
    Ok(decorate(Arc::new(base), &options))
}

/// Stacks the standard decorators on `base`, outermost first: retry, concurrency
/// limit, bandwidth limits, request counting. Counting sits closest to the store
/// so retried attempts count; retry is outermost so backoff holds no connection.
pub fn decorate(base: Arc<dyn Backend>, options: &StoreOptions) -> OpenedStore {
    let requests = Arc::new(RequestCounters::default());
    let mut backend: Arc<dyn Backend> = Arc::new(CountingBackend::new(base, Arc::clone(&requests)));
    let bucket =
        |kib: Option<u64>| kib.map(|kib| Arc::new(TokenBucket::new(kib.saturating_mul(1024))));
    let (upload, download) = (
        bucket(options.limit_upload_kib),
        bucket(options.limit_download_kib),
    );
    if upload.is_some() || download.is_some() {
        backend = Arc::new(BandwidthLimitBackend::new(backend, upload, download));
    }
    if let Some(connections) = options.connections {
        backend = Arc::new(ConcurrencyLimitBackend::new(backend, connections));
    }
    backend = Arc::new(RetryBackend::new(backend, options.retry));
    OpenedStore { backend, requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decorated_backends_report_their_connection_limit() {
        let base: Arc<dyn Backend> = Arc::new(LocalBackend::new("/nonexistent"));
        assert_eq!(base.connections(), Some(2), "restic's default for local");
        let options = StoreOptions {
            connections: Some(3),
            limit_upload_kib: Some(1024),
            ..StoreOptions::default()
        };
        // Retry and bandwidth limits sit around the concurrency limit and forward it.
        assert_eq!(decorate(base, &options).backend.connections(), Some(3));
    }

    /// Through every standard decorator, a spool file goes to the local
    /// backend's spool directory, is moved into place (not copied) and is
    /// counted as one put of its size.
    #[tokio::test]
    async fn decorated_backends_store_spool_files_where_the_base_wants_them() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            connections: Some(2),
            limit_upload_kib: Some(1 << 20),
            limit_download_kib: Some(1 << 20),
            ..StoreOptions::default()
        };
        let opened = decorate(Arc::new(LocalBackend::new(dir.path())), &options);
        let spool_dir = opened.backend.spool_dir().expect("forwarded");
        assert_eq!(spool_dir, SpoolDir::InPlace(dir.path().to_owned()));
        let mut spool = spool_dir.create().unwrap();
        spool.append(&[7; 5000]).unwrap();
        let inode = std::fs::metadata(spool.name().unwrap()).unwrap().ino();
        opened
            .backend
            .put_file("data/ab/x", Arc::new(spool))
            .await
            .unwrap();
        let stored = std::fs::metadata(dir.path().join("data/ab/x")).unwrap();
        assert_eq!(stored.ino(), inode, "moved, not copied");
        let counts = opened.requests.snapshot();
        assert_eq!((counts.put, counts.bytes_up), (1, 5000));
    }
}
