//! Backend-level fault tests: retries ride out transient failures and torn
//! writes; a permanent outage fails at once with a clear error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arca_store::{
    Backend, CountingBackend, FaultBackend, FaultConfig, LocalBackend, RequestCounters,
    RetryBackend, RetryPolicy, StoreOptions, conformance,
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy::new(20, Duration::from_millis(1), Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_a_ten_percent_failing_backend_conform() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let config = FaultConfig::seeded(7)
        .transient_failures(0.1)
        .torn_writes(0.05);
    let faulty = Arc::new(FaultBackend::new(local, config));
    let retrying = RetryBackend::new(faulty.clone(), fast_retries());
    conformance::run_all(&retrying).await;
    assert!(
        faulty.injected_faults() > 5,
        "only {} faults injected",
        faulty.injected_faults()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_retry_the_faults_show() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let config = FaultConfig::seeded(1).transient_failures(0.5);
    let faulty = FaultBackend::new(local, config);
    let mut failures = 0;
    for i in 0..40 {
        if let Err(err) = faulty
            .put(&format!("k/{i}"), bytes::Bytes::from_static(b"x"))
            .await
        {
            assert!(err.is_transient(), "{err}");
            failures += 1;
        }
    }
    assert!(
        (5..=35).contains(&failures),
        "{failures} of 40 failed at rate 0.5"
    );
}

#[tokio::test]
async fn torn_writes_are_repaired_by_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let config = FaultConfig::seeded(3).torn_writes(0.5);
    let faulty = Arc::new(FaultBackend::new(local.clone(), config));
    let retrying = RetryBackend::new(faulty.clone(), fast_retries());
    for i in 0..20u8 {
        let data = conformance::pattern(1000, i);
        retrying
            .put(&format!("data/{i}"), data.clone())
            .await
            .unwrap();
        assert_eq!(local.get(&format!("data/{i}")).await.unwrap(), data);
    }
    assert!(faulty.injected_faults() > 0);
}

#[tokio::test]
async fn permanent_outage_fails_fast_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let faulty = Arc::new(FaultBackend::new(local, FaultConfig::seeded(0)));
    let outage = faulty.outage_switch();
    let counters = Arc::new(RequestCounters::default());
    let counted = Arc::new(CountingBackend::new(faulty, counters.clone()));
    // Long backoff: if the retry waited on a permanent error, this test would hang.
    let retrying = RetryBackend::new(
        counted,
        RetryPolicy::new(5, Duration::from_secs(600), Duration::from_secs(600)),
    );

    retrying
        .put("config", bytes::Bytes::from_static(b"c"))
        .await
        .unwrap();
    outage.set(true);
    let err = retrying.get("config").await.unwrap_err();
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("outage") && message.contains("repo") && message.contains("config"),
        "{message}"
    );
    assert_eq!(
        counters.snapshot().get,
        1,
        "a permanent error must not be retried"
    );

    outage.set(false);
    assert_eq!(retrying.get("config").await.unwrap(), "c");
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let opened = arca_store::open(dir.path().to_str().unwrap(), &StoreOptions::default()).unwrap();
    let err = opened.backend.get("keys/missing").await.unwrap_err();
    assert!(matches!(err, arca_store::Error::NotFound { .. }), "{err}");
    assert_eq!(opened.requests.snapshot().get, 1);
}

#[tokio::test]
async fn delays_slow_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
    let config = FaultConfig::seeded(0).delay(Duration::from_millis(50));
    let slow = FaultBackend::new(local, config);
    let start = Instant::now();
    for i in 0..4 {
        slow.put(&format!("d/{i}"), bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    assert!(start.elapsed() >= Duration::from_millis(200));
}
