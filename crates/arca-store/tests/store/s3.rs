//! The conformance suite and S3-specific checks against a real S3 server.
//!
//! Runs when `ARCA_TEST_S3_ENDPOINT` (e.g. `http://127.0.0.1:PORT`, a moto or MinIO
//! server; `cargo xtask test` starts one) is set; otherwise each test notes the skip
//! and passes. Credentials are injected, never read from or written to the process
//! environment. Every test uses its own bucket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arca_store::{OpenedStore, SpoolDir, StoreOptions, conformance};

fn endpoint() -> Option<String> {
    let endpoint = std::env::var("ARCA_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    if endpoint.is_none() {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!(
                "skipping: set ARCA_TEST_S3_ENDPOINT=http://127.0.0.1:PORT to run the S3 tests"
            );
        }
    }
    endpoint
}

fn test_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some("test".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("test-secret-value".into()),
        "AWS_DEFAULT_REGION" => Some("us-east-1".into()),
        _ => None,
    }
}

/// Creates a fresh bucket with a plain, unsigned `PUT /<bucket>` (moto accepts it;
/// object_store cannot create buckets) and returns its name.
fn create_bucket(endpoint: &str, test: &str) -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let bucket = format!(
        "arca-{test}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
    .replace('_', "-");
    let authority = endpoint
        .strip_prefix("http://")
        .expect("the test S3 endpoint is plain http");
    let mut stream = TcpStream::connect(authority).expect("connect to the S3 endpoint");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {response}"
    );
    bucket
}

fn open(url: &str) -> OpenedStore {
    arca_store::open_with_env(url, &StoreOptions::default(), &test_env).unwrap()
}

/// Writes a small object through `opened`, which must fail permanently, and
/// returns the error message.
async fn permanent_put_error(opened: &OpenedStore) -> String {
    let err = opened
        .backend
        .put("config", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conforms() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = create_bucket(&endpoint, "conformance");
    let opened = open(&format!("s3:{endpoint}/{bucket}"));
    conformance::run_all(opened.backend.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefixes_keep_repositories_apart() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = create_bucket(&endpoint, "prefixes");
    let one = open(&format!("s3:{endpoint}/{bucket}/team/one")).backend;
    let two = open(&format!("s3:{endpoint}/{bucket}/team/two")).backend;
    one.put("config", bytes::Bytes::from_static(b"one"))
        .await
        .unwrap();
    two.put("config", bytes::Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(one.get("config").await.unwrap(), "one");
    assert_eq!(one.list("").await.unwrap().len(), 1);
    let whole = open(&format!("s3:{endpoint}/{bucket}")).backend;
    let all: Vec<_> = whole
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(all, vec!["team/one/config", "team/two/config"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_request_counts_stay_low() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = create_bucket(&endpoint, "requests");
    let opened = open(&format!("s3:{endpoint}/{bucket}"));
    // 4 objects of 4 MiB and one of 40 MiB: 56 MiB of new data.
    for i in 0..4u8 {
        opened
            .backend
            .put(&format!("data/0{i}/pack"), conformance::pattern(4 << 20, i))
            .await
            .unwrap();
    }
    opened
        .backend
        .put("data/ff/big", conformance::pattern(40 << 20, 9))
        .await
        .unwrap();
    let counts = opened.requests.snapshot();
    // Small objects: one PUT each. 40 MiB: 5 parts + start + complete.
    assert_eq!(counts.put, 4 + 7, "{counts:?}");
    assert!(
        counts.put <= 56 / 8 + 4 + 2,
        "more than 1 PUT per 8 MiB plus a constant: {counts:?}"
    );
    assert_eq!(
        counts.head, 0,
        "S3 writes need no verification HEAD: {counts:?}"
    );
    assert_eq!(counts.bytes_up, 56 << 20);
    assert_eq!(
        opened.backend.head("data/ff/big").await.unwrap().size,
        40 << 20
    );
}

/// Packs spooled for S3 go to the configured directory as unnamed files
/// (nothing there to clean up, however the process ends) and stream to the
/// server: a pack of 18 MiB is one PUT (a pack costs one request, as from
/// memory), an object past the multipart threshold (33 MiB) a multipart
/// upload of five 8 MiB parts, and both read back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_spooled_packs_stream_from_the_spool_directory() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = create_bucket(&endpoint, "spooled");
    let spool = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::default();
    options.spool_dir = Some(spool.path().join("packs"));
    let url = format!("s3:{endpoint}/{bucket}");
    let opened = arca_store::open_with_env(&url, &options, &test_env).unwrap();
    let dir = opened.backend.spool_dir().expect("object stores spool");
    assert_eq!(dir, SpoolDir::Temporary(spool.path().join("packs")));
    let sizes = [18 << 20, 33 << 20];
    let mut expected = Vec::new();
    for (n, len) in sizes.into_iter().enumerate() {
        let mut file = dir.create().unwrap();
        let bytes = conformance::pattern(len, n as u8);
        file.append(&bytes).unwrap();
        let path = format!("data/0{n}/pack");
        opened
            .backend
            .put_file(&path, Arc::new(file))
            .await
            .unwrap();
        expected.push((path, bytes));
    }
    let left = std::fs::read_dir(spool.path().join("packs")).unwrap();
    assert_eq!(left.count(), 0);
    for (path, bytes) in expected {
        assert_eq!(opened.backend.get(&path).await.unwrap(), bytes);
    }
    let counts = opened.requests.snapshot();
    // One PUT, then five parts + start + complete.
    assert_eq!(counts.put, 1 + 7, "{counts:?}");
    assert_eq!(counts.bytes_up, (18 << 20) + (33 << 20));
}

#[tokio::test]
async fn s3_missing_bucket_is_a_permanent_error_naming_the_location() {
    let Some(endpoint) = endpoint() else { return };
    let url = format!("s3:{endpoint}/no-such-bucket-{}", std::process::id());
    let opened = open(&url);
    let message = permanent_put_error(&opened).await;
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(!message.contains("test-secret-value"), "{message}");
    assert_eq!(
        opened.requests.snapshot().put,
        1,
        "a permanent error must not be retried"
    );
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_transient() {
    // Nothing listens on port 1: connection refused, which a retry may cure.
    // Needs no server, so it always runs.
    let mut options = StoreOptions::default();
    options.retry = arca_store::RetryPolicy::new(0, Default::default(), Default::default());
    let built =
        arca_store::open_with_env("s3:http://127.0.0.1:1/bucket", &options, &test_env).unwrap();
    let err = built.backend.get("config").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// Serves `responses` (one per connection, in order) on a fresh port, then stops;
/// returns the endpoint and a handle yielding how many requests arrived.
fn scripted_server(responses: Vec<&'static str>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for status in responses {
            let (mut stream, _) = listener.accept().unwrap();
            // Read the whole request: closing a socket with unread bytes
            // resets the connection, and the client may then see the reset
            // instead of the scripted response.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            let body_len = String::from_utf8_lossy(&head)
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<u64>().unwrap())
                })
                .unwrap_or(0);
            std::io::copy(&mut (&mut stream).take(body_len), &mut std::io::sink()).unwrap();
            served += 1;
            let body = "<Error><Code>Scripted</Code></Error>";
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
        served
    });
    (endpoint, handle)
}

fn retrying(retries: u32) -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry = arca_store::RetryPolicy::new(
        retries,
        std::time::Duration::from_millis(1),
        std::time::Duration::from_millis(5),
    );
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_succeed() {
    // Needs no S3 server: a scripted HTTP server answers through the real S3 client.
    let (endpoint, server) = scripted_server(vec![
        "503 Service Unavailable",
        "500 Internal Server Error",
        "404 Not Found",
    ]);
    let opened =
        arca_store::open_with_env(&format!("s3:{endpoint}/bucket"), &retrying(5), &test_env)
            .unwrap();
    let err = opened.backend.head("keys/k").await.unwrap_err();
    // Two transient failures retried; the third answer (404) is final.
    assert!(matches!(err, arca_store::Error::NotFound { .. }), "{err}");
    assert_eq!(server.join().unwrap(), 3);
    assert_eq!(
        opened.requests.snapshot().head,
        3,
        "object_store must not retry on its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_exhausts_retries_as_a_transient_error() {
    let (endpoint, server) = scripted_server(vec!["429 Too Many Requests"; 3]);
    let opened =
        arca_store::open_with_env(&format!("s3:{endpoint}/bucket"), &retrying(2), &test_env)
            .unwrap();
    let err = opened.backend.get("config").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(server.join().unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_fails_at_once_without_leaking_the_secret() {
    let (endpoint, server) = scripted_server(vec!["403 Forbidden"]);
    let opened =
        arca_store::open_with_env(&format!("s3:{endpoint}/bucket"), &retrying(5), &test_env)
            .unwrap();
    let message = permanent_put_error(&opened).await;
    assert!(
        message.contains("access denied") && message.contains("bucket/config"),
        "{message}"
    );
    assert!(!message.contains("test-secret-value"), "{message}");
    assert_eq!(server.join().unwrap(), 1);
}
