//! The conformance suite against real GCS and Azure, only when a test location and
//! its credentials are in the environment (`ARCA_TEST_GCS_URL` with
//! `GOOGLE_APPLICATION_CREDENTIALS`; `ARCA_TEST_AZURE_URL` with `AZURE_*`).
//! Each run works under a fresh prefix below the given URL and deletes what it wrote.

use arca_store::{StoreOptions, conformance};

fn live_url(variable: &str) -> Option<String> {
    let url = std::env::var(variable).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!("skipping: set {variable} and its credentials to run this live test");
        }
    }
    url
}

async fn conforms_live(variable: &str) {
    let Some(url) = live_url(variable) else {
        return;
    };
    let run = format!(
        "{}/arca-test-{}",
        url.trim_end_matches('/'),
        std::process::id()
    );
    let opened = arca_store::open(&run, &StoreOptions::default()).unwrap();
    conformance::run_all(opened.backend.as_ref()).await;
    for object in opened.backend.list("").await.unwrap() {
        opened.backend.delete(&object.path).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_conforms() {
    conforms_live("ARCA_TEST_GCS_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_conforms() {
    conforms_live("ARCA_TEST_AZURE_URL").await;
}
