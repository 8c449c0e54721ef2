//! Bandwidth and concurrency limits (lower bounds on time only).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arca_store::{
    Backend, ConcurrencyLimitBackend, LocalBackend, ObjectMeta, StoreOptions, conformance,
};
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_limit_holds_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::default();
    options.limit_upload_kib = Some(1024);
    options.connections = Some(4);
    let opened = arca_store::open(dir.path().to_str().unwrap(), &options).unwrap();
    let backend = opened.backend;
    // 3 MiB in 12 objects over 4 connections at 1 MiB/s: at least ~2.9 s
    // (3 MiB minus the 0.1 s burst allowance).
    let start = Instant::now();
    let puts = (0..12u8).map(|i| {
        let backend = backend.clone();
        async move {
            backend
                .put(&format!("data/{i}"), conformance::pattern(256 * 1024, i))
                .await
        }
    });
    futures::future::try_join_all(puts).await.unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2800),
        "3 MiB at 1 MiB/s took only {elapsed:?}"
    );
    assert_eq!(opened.requests.snapshot().bytes_up, 3 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_limit_applies() {
    let dir = tempfile::tempdir().unwrap();
    LocalBackend::new(dir.path())
        .put("big", conformance::pattern(2 << 20, 9))
        .await
        .unwrap();
    let mut options = StoreOptions::default();
    options.limit_download_kib = Some(1024);
    let opened = arca_store::open(dir.path().to_str().unwrap(), &options).unwrap();
    let start = Instant::now();
    opened.backend.get("big").await.unwrap();
    opened.backend.get_range("big", 0..(1 << 20)).await.unwrap();
    let elapsed = start.elapsed();
    // 3 MiB at 1 MiB/s minus the burst allowance.
    assert!(
        elapsed >= Duration::from_millis(2800),
        "took only {elapsed:?}"
    );
}

/// A backend that records the most calls it ever saw in flight.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
    // Calls wait here until the test has queued every call.
    gate: tokio::sync::Notify,
}

impl std::fmt::Display for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("in-flight probe")
    }
}

#[async_trait::async_trait]
impl Backend for InFlight {
    async fn get(&self, _: &str) -> arca_store::Result<Bytes> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.gate.notified().await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(Bytes::new())
    }
    async fn get_range(&self, path: &str, _: std::ops::Range<u64>) -> arca_store::Result<Bytes> {
        self.get(path).await
    }
    async fn put(&self, _: &str, _: Bytes) -> arca_store::Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &str) -> arca_store::Result<()> {
        Ok(())
    }
    async fn list(&self, _: &str) -> arca_store::Result<Vec<ObjectMeta>> {
        Ok(vec![])
    }
    async fn head(&self, path: &str) -> arca_store::Result<ObjectMeta> {
        Ok(ObjectMeta {
            path: path.into(),
            size: 0,
        })
    }
}

#[tokio::test]
async fn concurrency_limit_caps_calls_in_flight() {
    let probe = Arc::new(InFlight::default());
    let limited = Arc::new(ConcurrencyLimitBackend::new(probe.clone(), 3));
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let limited = limited.clone();
            tokio::spawn(async move { limited.get("x").await })
        })
        .collect();
    // Release calls one at a time until all are done; each release lets a queued call in.
    let mut finished = 0;
    for call in calls {
        while !call.is_finished() {
            probe.gate.notify_one();
            tokio::task::yield_now().await;
        }
        call.await.unwrap().unwrap();
        finished += 1;
    }
    assert_eq!(finished, 10);
    assert_eq!(probe.peak.load(Ordering::SeqCst), 3);
}
