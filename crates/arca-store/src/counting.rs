//! Request counting: what a run cost in storage requests and bytes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::{Backend, ObjectMeta, Result, SpoolFile};

/// Live request counters, shared between a [`CountingBackend`] and whoever reports them.
///
/// Counts are requests sent to the storage service, including failed and retried
/// ones: put [`CountingBackend`] *inside* the retry decorator.
#[derive(Debug, Default)]
pub struct RequestCounters {
    get: AtomicU64,
    get_range: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    head: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A point-in-time copy of [`RequestCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Whole-object reads.
    pub get: u64,
    /// Ranged reads.
    pub get_range: u64,
    /// Write requests; a multipart upload counts every part plus its start and completion
    /// (see [`Backend::put_requests`]).
    pub put: u64,
    /// List calls (one per call; a very long S3 listing is paged 1000 keys per request).
    pub list: u64,
    /// Delete requests.
    pub delete: u64,
    /// Metadata (stat) requests.
    pub head: u64,
    /// Bytes sent in successful writes.
    pub bytes_up: u64,
    /// Bytes received in successful reads.
    pub bytes_down: u64,
}

impl RequestCounts {
    /// Total number of requests of every kind.
    pub fn total_requests(&self) -> u64 {
        self.get + self.get_range + self.put + self.list + self.delete + self.head
    }
}

impl RequestCounters {
    /// Copies the current values.
    pub fn snapshot(&self) -> RequestCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RequestCounts {
            get: load(&self.get),
            get_range: load(&self.get_range),
            put: load(&self.put),
            list: load(&self.list),
            delete: load(&self.delete),
            head: load(&self.head),
            bytes_up: load(&self.bytes_up),
            bytes_down: load(&self.bytes_down),
        }
    }
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

/// Decorator that counts every call into [`RequestCounters`].
#[derive(Debug)]
pub struct CountingBackend {
    inner: Arc<dyn Backend>,
    counters: Arc<RequestCounters>,
}

impl CountingBackend {
    /// Wraps `inner`, counting into `counters`.
    pub fn new(inner: Arc<dyn Backend>, counters: Arc<RequestCounters>) -> Self {
        CountingBackend { inner, counters }
    }
}

impl std::fmt::Display for CountingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for CountingBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        add(&self.counters.get, 1);
        let data = self.inner.get(path).await?;
        add(&self.counters.bytes_down, data.len() as u64);
        Ok(data)
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        add(&self.counters.get_range, 1);
        let data = self.inner.get_range(path, range).await?;
        add(&self.counters.bytes_down, data.len() as u64);
        Ok(data)
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        add(&self.counters.put, self.inner.put_requests(len));
        self.inner.put(path, data).await?;
        add(&self.counters.bytes_up, len);
        Ok(())
    }

    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        let len = file.len();
        add(&self.counters.put, self.inner.put_file_requests(len));
        self.inner.put_file(path, file).await?;
        add(&self.counters.bytes_up, len);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        add(&self.counters.delete, 1);
        self.inner.delete(path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        add(&self.counters.list, 1);
        self.inner.list(prefix).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        add(&self.counters.head, 1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_names_are_stable() {
        // The CLI's `--json` summary exposes these names.
        let counts = RequestCounts {
            get: 1,
            get_range: 2,
            put: 3,
            list: 4,
            delete: 5,
            head: 6,
            bytes_up: 7,
            bytes_down: 8,
        };
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            r#"{"get":1,"get_range":2,"put":3,"list":4,"delete":5,"head":6,"bytes_up":7,"bytes_down":8}"#
        );
        assert_eq!(counts.total_requests(), 21);
    }
}
