//! A backup, and everything it does, never deletes or overwrites a stored
//! object: backups run through [`AppendOnlyBackend`], which refuses both and
//! remembers every attempt, on the local backend and (when
//! `ARCA_TEST_S3_ENDPOINT` is set) on a real S3 server. Audit records and
//! holds, which an append-only client also writes, only add too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use arca_crypto::KdfParams;
use arca_repo::Repository;
use arca_repo::audit::{self, Entry, Outcome};
use arca_repo::backup::{BackupOptions, backup};
use arca_repo::hold::{self, Actor};
use arca_repo::progress::NoProgress;
use arca_repo::repository::InitOptions;
use arca_store::{AppendOnlyBackend, Backend, StoreOptions};

const PASSWORD: &[u8] = b"append only test";

/// Init, three backups (first, after changes, unchanged), an audit record
/// and a hold, all through an append-only view of `base`.
async fn back_up_through(base: Arc<dyn Backend>, source: &Path) {
    let guard = Arc::new(AppendOnlyBackend::new(base));
    let options = InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        ..InitOptions::default()
    };
    let repo = Repository::init(guard.clone(), PASSWORD, options)
        .await
        .unwrap();
    std::fs::create_dir_all(source.join("sub")).unwrap();
    for i in 0..20u32 {
        let content: Vec<u8> = (0..50_000u32).map(|j| (j * 7 + i) as u8).collect();
        std::fs::write(source.join(format!("file-{i}")), content).unwrap();
    }
    std::fs::write(source.join("sub/small"), b"small").unwrap();
    let opts = BackupOptions {
        paths: vec![source.to_path_buf()],
        hostname: "append-only-client".into(),
        ..BackupOptions::default()
    };
    let first = backup(&repo, &opts, Arc::new(NoProgress)).await.unwrap();
    std::fs::write(source.join("file-3"), b"changed").unwrap();
    std::fs::remove_file(source.join("file-4")).unwrap();
    std::fs::write(source.join("sub/new"), b"new file").unwrap();
    backup(&repo, &opts, Arc::new(NoProgress)).await.unwrap();
    backup(&repo, &opts, Arc::new(NoProgress)).await.unwrap();
    audit::append(
        &repo,
        Entry {
            time: jiff::Timestamp::now(),
            hostname: "append-only-client".into(),
            username: "backup".into(),
            operation: "backup".into(),
            arguments: vec![],
            snapshots: vec![],
            outcome: Outcome::Success,
            error: None,
            bytes_written: 0,
            bytes_read: 0,
        },
    )
    .await
    .unwrap();
    let actor = Actor {
        hostname: "h".into(),
        username: "u".into(),
        now: jiff::Timestamp::now(),
    };
    hold::place(&repo, &[first.snapshot_id], "keep", None, &actor)
        .await
        .unwrap();
    assert_eq!(repo.list_snapshots().await.unwrap().len(), 3);
    assert_eq!(guard.refused(), Vec::<String>::new());
}

#[tokio::test]
async fn local_backups_never_delete_or_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let base = arca_store::open(
        dir.path().join("repo").to_str().unwrap(),
        &StoreOptions::default(),
    )
    .unwrap()
    .backend;
    back_up_through(base, &dir.path().join("source")).await;
}

#[tokio::test]
async fn s3_backups_never_delete_or_overwrite() {
    let Some(endpoint) = std::env::var("ARCA_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        #[allow(clippy::print_stderr, reason = "a skipped test must say so")]
        {
            eprintln!("skipping: ARCA_TEST_S3_ENDPOINT is not set (cargo xtask test sets it)");
        }
        return;
    };
    let bucket = format!("arca-append-only-{}", std::process::id());
    let authority = endpoint.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let env = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" => Some("test".to_owned()),
        "AWS_SECRET_ACCESS_KEY" => Some("test-secret".to_owned()),
        "AWS_DEFAULT_REGION" => Some("us-east-1".to_owned()),
        _ => None,
    };
    let base = arca_store::open_with_env(
        &format!("s3:{endpoint}/{bucket}/repo"),
        &StoreOptions::default(),
        &env,
    )
    .unwrap()
    .backend;
    let source = tempfile::tempdir().unwrap();
    back_up_through(base, source.path()).await;
}
