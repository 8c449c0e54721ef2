//! The conformance suite against a GCS-compatible server.
//!
//! Runs when `ARCA_TEST_GCS_ENDPOINT` is set to the base URL of a server
//! speaking the GCS XML API as object_store uses it (`http://HOST:PORT`),
//! holding a bucket `arca-test` that needs no credentials; otherwise each
//! test notes the skip and passes. Every test uses its own prefix.
//!
//! `cargo xtask test` starts no such server: neither emulator on the
//! package registries works with object_store 0.12 (fake-gcs-server lacks
//! the XML API object uploads, fsouza/fake-gcs-server#331;
//! gcp-storage-emulator answers uploads without an `ETag` and refuses
//! percent-encoded bucket names). See docs/backends/gcs.md.

use std::sync::atomic::{AtomicU32, Ordering};

use arca_store::{OpenedStore, StoreOptions, conformance};

fn endpoint() -> Option<String> {
    let endpoint = std::env::var("ARCA_TEST_GCS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    if endpoint.is_none() {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!(
                "skipping: set ARCA_TEST_GCS_ENDPOINT=http://127.0.0.1:PORT to run the GCS tests"
            );
        }
    }
    endpoint
}

/// `gs:arca-test:/<a prefix no other test uses>`.
fn unique_url(test: &str) -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    format!(
        "gs:arca-test:/{test}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

fn open(endpoint: &str, url: &str) -> OpenedStore {
    let env = |name: &str| (name == "ARCA_GCS_ENDPOINT").then(|| endpoint.to_owned());
    arca_store::open_with_env(url, &StoreOptions::default(), &env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_conforms() {
    let Some(endpoint) = endpoint() else { return };
    let opened = open(&endpoint, &unique_url("conformance"));
    conformance::run_all(opened.backend.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_prefixes_keep_repositories_apart() {
    let Some(endpoint) = endpoint() else { return };
    let url = unique_url("prefixes");
    let one = open(&endpoint, &format!("{url}/one")).backend;
    let two = open(&endpoint, &format!("{url}/two")).backend;
    one.put("config", bytes::Bytes::from_static(b"one"))
        .await
        .unwrap();
    two.put("config", bytes::Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(one.get("config").await.unwrap(), "one");
    assert_eq!(two.get("config").await.unwrap(), "two");
    assert_eq!(one.list("").await.unwrap().len(), 1);
}

#[tokio::test]
async fn gcs_missing_bucket_is_a_permanent_error() {
    let Some(endpoint) = endpoint() else { return };
    let url = format!("gs:no-such-bucket-{}:/", std::process::id());
    let err = open(&endpoint, &url)
        .backend
        .put("config", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
}
