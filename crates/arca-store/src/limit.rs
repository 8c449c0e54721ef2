//! Limits: concurrent requests (a semaphore) and bandwidth (token buckets).

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::{Backend, ObjectMeta, Result, SpoolFile};

/// Decorator that allows at most `connections` calls in flight at once.
#[derive(Debug)]
pub struct ConcurrencyLimitBackend {
    inner: Arc<dyn Backend>,
    permits: Semaphore,
    connections: usize,
}

impl ConcurrencyLimitBackend {
    /// Wraps `inner`; `connections` is at least 1.
    pub fn new(inner: Arc<dyn Backend>, connections: usize) -> Self {
        ConcurrencyLimitBackend {
            inner,
            permits: Semaphore::new(connections.max(1)),
            connections: connections.max(1),
        }
    }
}

impl std::fmt::Display for ConcurrencyLimitBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

macro_rules! limited {
    ($self:ident, $call:expr) => {{
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = $self
            .permits
            .acquire()
            .await
            .expect("semaphore is never closed");
        $call.await
    }};
}

#[async_trait::async_trait]
impl Backend for ConcurrencyLimitBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        limited!(self, self.inner.get(path))
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        limited!(self, self.inner.get_range(path, range))
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        limited!(self, self.inner.put(path, data))
    }
    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        limited!(self, self.inner.put_file(path, file))
    }
    async fn delete(&self, path: &str) -> Result<()> {
        limited!(self, self.inner.delete(path))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        limited!(self, self.inner.list(prefix))
    }
    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        limited!(self, self.inner.head(path))
    }
    fn put_requests(&self, size: u64) -> u64 {
        self.inner.put_requests(size)
    }
    fn put_file_requests(&self, size: u64) -> u64 {
        self.inner.put_file_requests(size)
    }
    fn connections(&self) -> Option<usize> {
        Some(self.connections)
    }
    fn spool_dir(&self) -> Option<crate::SpoolDir> {
        self.inner.spool_dir()
    }
}

/// A token bucket shared by every connection: `rate` bytes per second, bursts
/// of up to a tenth of a second's worth.
///
/// Taking more tokens than are available puts the bucket in debt, and the taker
/// sleeps until the debt would be repaid; later takers queue behind that debt.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let burst = rate / 10.0;
        TokenBucket {
            rate,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be transferred.
    pub async fn take(&self, bytes: u64) {
        let wait = {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(state.updated).as_secs_f64() * self.rate;
            state.tokens = (state.tokens + refill).min(self.burst) - bytes as f64;
            state.updated = now;
            if state.tokens < 0.0 {
                Duration::from_secs_f64(-state.tokens / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Decorator that holds uploads and downloads to shared rates
/// (`limit_upload_kib` / `limit_download_kib`).
#[derive(Debug)]
pub struct BandwidthLimitBackend {
    inner: Arc<dyn Backend>,
    upload: Option<Arc<TokenBucket>>,
    download: Option<Arc<TokenBucket>>,
}

impl BandwidthLimitBackend {
    /// Wraps `inner`; `None` means unlimited in that direction.
    pub fn new(
        inner: Arc<dyn Backend>,
        upload: Option<Arc<TokenBucket>>,
        download: Option<Arc<TokenBucket>>,
    ) -> Self {
        BandwidthLimitBackend {
            inner,
            upload,
            download,
        }
    }

    async fn downloaded(&self, data: Result<Bytes>) -> Result<Bytes> {
        if let (Ok(data), Some(bucket)) = (&data, &self.download) {
            bucket.take(data.len() as u64).await;
        }
        data
    }
}

impl std::fmt::Display for BandwidthLimitBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for BandwidthLimitBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        let data = self.inner.get(path).await;
        self.downloaded(data).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let data = self.inner.get_range(path, range).await;
        self.downloaded(data).await
    }
    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        if let Some(bucket) = &self.upload {
            bucket.take(data.len() as u64).await;
        }
        self.inner.put(path, data).await
    }
    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        if let Some(bucket) = &self.upload {
            bucket.take(file.len()).await;
        }
        self.inner.put_file(path, file).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.inner.head(path).await
    }
    fn put_requests(&self, size: u64) -> u64 {
        self.inner.put_requests(size)
    }
    fn put_file_requests(&self, size: u64) -> u64 {
        self.inner.put_file_requests(size)
    }
    fn connections(&self) -> Option<usize> {
        self.inner.connections()
    }
    fn spool_dir(&self) -> Option<crate::SpoolDir> {
        self.inner.spool_dir()
    }
}
