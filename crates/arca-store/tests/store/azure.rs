//! The conformance suite against a real Azure Blob service (Azurite).
//!
//! Runs when `ARCA_TEST_AZURE_ENDPOINT` is set to the account URL of an
//! Azurite blob service (`http://127.0.0.1:PORT/devstoreaccount1`, the
//! emulator's well-known account and key) holding a container `arca-test`;
//! `cargo xtask test` starts one. Otherwise each test notes the skip and
//! passes. Every test uses its own prefix, so runs never see each other's objects.

use std::sync::atomic::{AtomicU32, Ordering};

use arca_store::{OpenedStore, StoreOptions, conformance};

/// Azurite's documented development account key (public, not a secret).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn endpoint() -> Option<String> {
    let endpoint = std::env::var("ARCA_TEST_AZURE_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    if endpoint.is_none() {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!(
                "skipping: set ARCA_TEST_AZURE_ENDPOINT=http://127.0.0.1:PORT/devstoreaccount1 to run the Azure tests"
            );
        }
    }
    endpoint
}

/// `azure:arca-test:/<a prefix no other test uses>`.
fn unique_url(test: &str) -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    format!(
        "azure:arca-test:/{test}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

fn open(endpoint: &str, url: &str) -> OpenedStore {
    let env = |name: &str| match name {
        "ARCA_AZURE_ENDPOINT" => Some(endpoint.to_owned()),
        "AZURE_ACCOUNT_NAME" => Some("devstoreaccount1".to_owned()),
        "AZURE_ACCOUNT_KEY" => Some(AZURITE_KEY.to_owned()),
        _ => None,
    };
    arca_store::open_with_env(url, &StoreOptions::default(), &env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_conforms() {
    let Some(endpoint) = endpoint() else { return };
    let opened = open(&endpoint, &unique_url("conformance"));
    conformance::run_all(opened.backend.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_writes_are_verified_and_prefixes_kept_apart() {
    let Some(endpoint) = endpoint() else { return };
    let url = unique_url("prefixes");
    let one = open(&endpoint, &format!("{url}/one"));
    let two = open(&endpoint, &format!("{url}/two"));
    one.backend
        .put("config", bytes::Bytes::from_static(b"one"))
        .await
        .unwrap();
    two.backend
        .put("config", bytes::Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(one.backend.get("config").await.unwrap(), "one");
    assert_eq!(one.backend.list("").await.unwrap().len(), 1);
    // Azure has no signed body checksum in object_store: each put is checked
    // with a HEAD, counted as the put's second request.
    let counts = one.requests.snapshot();
    assert_eq!(counts.put, 2, "{counts:?}");
}

#[tokio::test]
async fn azure_missing_container_is_a_permanent_error() {
    let Some(endpoint) = endpoint() else { return };
    let url = format!("azure:no-such-container-{}:/", std::process::id());
    let err = open(&endpoint, &url)
        .backend
        .put("config", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(!err.to_string().contains(AZURITE_KEY), "{err}");
}
