//! Retrying transient failures with capped exponential backoff and full jitter.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Backend, ObjectMeta, Result, SpoolFile};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// Backoff ceiling before the first retry; doubles with every retry.
    pub base_delay: Duration,
    /// The backoff ceiling never exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 10 retries, 250 ms doubling up to 30 s: rides out a few minutes of trouble.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy with the given limits.
    pub fn new(max_retries: u32, base_delay: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            max_retries,
            base_delay,
            max_delay,
        }
    }

    /// Delay before retry number `retry` (0-based): uniformly random up to the capped
    /// exponential ceiling ("full jitter"), so many clients don't retry in lockstep.
    fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Decorator that retries calls failing with [`crate::Error::Transient`]; other
/// errors (not found, permanent) return at once.
#[derive(Debug)]
pub struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: RetryPolicy,
}

impl RetryBackend {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn Backend>, policy: RetryPolicy) -> Self {
        RetryBackend { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, what: &str, path: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retry = 0;
        loop {
            match call().await {
                Err(err) if err.is_transient() && retry < self.policy.max_retries => {
                    let delay = self.policy.delay(retry);
                    retry += 1;
                    tracing::warn!(
                        backend = %self.inner, what, path, retry, ?delay, error = %err,
                        "retrying after a temporary storage failure"
                    );
                    tokio::time::sleep(delay).await;
                }
                result => return result,
            }
        }
    }
}

impl std::fmt::Display for RetryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for RetryBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        self.retry("get", path, || self.inner.get(path)).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.retry("get_range", path, || {
            self.inner.get_range(path, range.clone())
        })
        .await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        // Bytes clones share the buffer: retrying costs no copy.
        self.retry("put", path, || self.inner.put(path, data.clone()))
            .await
    }

    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        self.retry("put", path, || self.inner.put_file(path, Arc::clone(&file)))
            .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.retry("delete", path, || self.inner.delete(path)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.retry("list", prefix, || self.inner.list(prefix)).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.retry("head", path, || self.inner.head(path)).await
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
    fn delays_stay_under_the_capped_exponential_ceiling() {
        let policy = RetryPolicy::new(50, Duration::from_millis(100), Duration::from_secs(2));
        for retry in 0..50 {
            let ceiling = Duration::from_millis(100)
                .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
                .min(Duration::from_secs(2));
            for _ in 0..20 {
                assert!(policy.delay(retry) <= ceiling, "retry {retry}");
            }
        }
    }

    #[test]
    fn delays_are_jittered() {
        let policy = RetryPolicy::new(5, Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| policy.delay(3)).collect();
        assert!(delays.len() > 1, "{delays:?}");
    }
}
