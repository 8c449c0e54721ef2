//! Conformance of every backend that needs no credentials: the local filesystem
//! and object_store's in-memory store behind `ObjectStoreBackend` (which exercises
//! the prefix handling, listing and multipart code shared by S3, GCS and Azure).

use std::sync::Arc;

use arca_store::{
    Backend, LocalBackend, ObjectStoreBackend, StoreOptions, WriteCheck, conformance,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(&LocalBackend::new(dir.path().join("repo"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opened_local_url_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("local:{}", dir.path().join("repo").display());
    let opened = arca_store::open(&url, &StoreOptions::default()).unwrap();
    conformance::run_all(opened.backend.as_ref()).await;
    let counts = opened.requests.snapshot();
    assert!(
        counts.put >= 30 && counts.get >= 20 && counts.list >= 8,
        "{counts:?}"
    );
    assert!(
        counts.bytes_up > arca_store::MULTIPART_THRESHOLD,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_backend_conforms_with_and_without_prefix() {
    for (prefix, check) in [
        ("", WriteCheck::TrustResponse),
        ("deep/repo/prefix", WriteCheck::HeadSize),
    ] {
        let store = Arc::new(object_store::memory::InMemory::new());
        let backend = ObjectStoreBackend::new(store.clone(), prefix, "memory", check, vec![]);
        conformance::run_all(&backend).await;
        if !prefix.is_empty() {
            // Nothing may leak outside the prefix.
            use futures::TryStreamExt;
            let all: Vec<_> = object_store::ObjectStore::list(store.as_ref(), None)
                .try_collect()
                .await
                .unwrap();
            assert!(
                all.iter()
                    .all(|m| m.location.as_ref().starts_with("deep/repo/prefix/"))
            );
        }
    }
}

#[tokio::test]
async fn local_put_is_durable_layout() {
    // Objects land exactly at root/<path>, so an NFS-mounted repository is a plain tree.
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::new(dir.path());
    backend
        .put("data/ab/abcdef", bytes::Bytes::from_static(b"pack"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("data/ab/abcdef")).unwrap(),
        b"pack"
    );
}
