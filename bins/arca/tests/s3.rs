//! The `arca` binary against storage, beyond `cli.rs`'s full cycle: request
//! budgets of a first backup, the local metadata cache across runs, and
//! `--limit-upload`. Each test runs on a local repository and, when
//! `ARCA_TEST_S3_ENDPOINT` is set (as `cargo xtask test` does), on a fresh
//! bucket of that S3 server.

// Skipped S3 variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const PASSWORD: &str = "s3-test-password-4b1d";

/// Where a test's repository lives, and its scratch directory.
struct Repo {
    url: String,
    tmp: tempfile::TempDir,
}

impl Repo {
    fn local() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let url = tmp.path().join("repo").to_str().unwrap().to_owned();
        Repo { url, tmp }
    }

    /// A fresh bucket on the test S3 server, or `None` (with a note) when there is none.
    fn s3() -> Option<Repo> {
        let Ok(endpoint) = std::env::var("ARCA_TEST_S3_ENDPOINT") else {
            eprintln!("skipped: ARCA_TEST_S3_ENDPOINT is not set (cargo xtask test sets it)");
            return None;
        };
        let tmp = tempfile::tempdir().unwrap();
        let suffix: String = tmp
            .path()
            .file_name()?
            .to_str()?
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let bucket = format!("arca-s3-{}-{suffix}", std::process::id());
        create_bucket(&endpoint, &bucket);
        Some(Repo {
            url: format!("s3:{endpoint}/{bucket}/repo"),
            tmp,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `arca` with this repository, password, a private cache home, and
    /// the test server's credentials (moto accepts any).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arca"));
        for (key, _) in std::env::vars() {
            if (key.starts_with("ARCA_") || key.starts_with("RESTIC_"))
                && !key.starts_with("ARCA_TEST_")
            {
                cmd.env_remove(key);
            }
        }
        for (key, default) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ] {
            if std::env::var_os(key).is_none() {
                cmd.env(key, default);
            }
        }
        cmd.args(args)
            .env("ARCA_REPOSITORY", &self.url)
            .env("ARCA_PASSWORD", PASSWORD)
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `arca --json ARGS`, insists on success and returns the last JSON line.
    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let out = self.command(&with_json).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "arca {args:?} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }
}

/// Creates a bucket with an unsigned request (moto accepts those).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("the S3 test server is reachable");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response
            .lines()
            .next()
            .unwrap_or_default()
            .contains(" 200 "),
        "creating bucket {bucket} failed: {response}"
    );
}

/// `files` incompressible files of `len` bytes each (xorshift, distinct seeds).
fn make_noise(dir: &Path, files: usize, len: usize) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..files {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(i as u64 + 1) | 1;
        let bytes: Vec<u8> = (0..len / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        fs::write(dir.join(format!("sub/noise{i}.bin")), bytes).unwrap();
    }
    fs::write(dir.join("readme.txt"), "arca on s3\n".repeat(50)).unwrap();
}

/// Same names and file contents, recursively.
fn assert_same_files(expected: &Path, actual: &Path) {
    let names = |dir: &Path| {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(expected), names(actual), "{}", actual.display());
    for name in names(expected) {
        let (want, got) = (expected.join(&name), actual.join(&name));
        if want.is_dir() {
            assert_same_files(&want, &got);
        } else {
            assert!(
                fs::read(&want).unwrap() == fs::read(&got).unwrap(),
                "{}",
                got.display()
            );
        }
    }
}

fn requests(summary: &Value, kind: &str) -> u64 {
    summary["requests"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no requests.{kind} in {summary}"))
}

/// Runs a test body against a local repository and, when configured, S3.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local { $( #[test] fn $name() { super::$name(&super::Repo::local()); } )* }
        mod s3 { $( #[test] fn $name() { if let Some(repo) = super::Repo::s3() { super::$name(&repo); } } )* }
    };
}

on_every_backend!(
    first_backup_stays_within_its_request_budget,
    metadata_comes_from_the_cache_on_later_runs,
    limit_upload_slows_the_backup_down,
);

/// Bytes per upload request a first backup must at least average: packs
/// are 16 MiB; this leaves room for the last, partial pack.
const BYTES_PER_PUT: u64 = 8 * 1024 * 1024;
/// Writes besides full packs: a partial pack, a tree pack, index, snapshot.
const FIXED_PUTS: u64 = 6;

fn first_backup_stays_within_its_request_budget(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 5, 7 * 1024 * 1024);
    repo.json(&["init"]);
    let summary = repo.json(&["backup", data.to_str().unwrap()]);
    assert_eq!(summary["message_type"], "summary", "{summary}");
    let added = summary["data_added_packed"].as_u64().unwrap();
    assert!(added >= 35 * 1024 * 1024, "{summary}");
    let puts = requests(&summary, "put");
    assert!(
        puts <= added / BYTES_PER_PUT + FIXED_PUTS,
        "{puts} write requests for {added} bytes: {summary}"
    );
    // Nothing is read back or stat'ed per pack.
    assert!(requests(&summary, "head") <= 2, "{summary}");

    let target = repo.path("restored");
    let restored = repo.json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(restored["message_type"], "summary", "{restored}");
    assert_same_files(&data, &target.join(data.strip_prefix("/").unwrap()));
    let check = repo.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["errors"], Value::Array(vec![]), "{check}");
}

fn metadata_comes_from_the_cache_on_later_runs(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 2, 300 * 1024);
    repo.json(&["init"]);
    // Without a cache, a second backup reads the index and the parent
    // snapshot and tree from the repository...
    repo.json(&["--no-cache", "backup", data.to_str().unwrap()]);
    let uncached = repo.json(&["--no-cache", "backup", data.to_str().unwrap()]);
    // config, key file, index file, parent snapshot; ranged reads of trees.
    assert!(requests(&uncached, "get") >= 4, "{uncached}");
    assert!(requests(&uncached, "get_range") >= 1, "{uncached}");
    assert!(
        !repo.path("xdg-cache").exists(),
        "--no-cache writes no cache"
    );
    // ...with one, the first run fills the cache and the next reads none.
    let cache = repo.path("my-cache");
    let cache_arg = cache.to_str().unwrap();
    repo.json(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    let cached = repo.json(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    assert_eq!(requests(&cached, "get"), 2, "config and key file: {cached}");
    assert_eq!(requests(&cached, "get_range"), 0, "{cached}");
    let per_repository: Vec<_> = fs::read_dir(&cache).unwrap().collect();
    assert_eq!(per_repository.len(), 1, "one directory per repository ID");
    // Damage every cached file: the next run notices and reads the repository.
    let mut damaged = 0;
    let mut pending = vec![cache.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "CACHEDIR.TAG" {
                fs::write(&path, b"garbage").unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged >= 3, "index, snapshots and a tree pack are cached");
    let after_damage = repo.json(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    assert!(requests(&after_damage, "get") >= 4, "{after_damage}");
    // Deleting the cache is harmless too.
    fs::remove_dir_all(&cache).unwrap();
    let target = repo.path("restored");
    repo.json(&[
        "--cache-dir",
        cache_arg,
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_files(&data, &target.join(data.strip_prefix("/").unwrap()));
    let check = repo.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}

/// Upload limit of the throttled backup, KiB/s.
const LIMIT_KIB: u64 = 2048;

fn limit_upload_slows_the_backup_down(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 1, 5 * 1024 * 1024);
    repo.json(&["init"]);
    let start = Instant::now();
    let summary = repo.json(&[
        "--limit-upload",
        &LIMIT_KIB.to_string(),
        "backup",
        data.to_str().unwrap(),
    ]);
    let elapsed = start.elapsed().as_secs_f64();
    let uploaded = requests(&summary, "bytes_up");
    assert!(uploaded >= 5 * 1024 * 1024, "{summary}");
    // The bucket starts with a tenth of a second's worth of tokens.
    let rate = (LIMIT_KIB * 1024) as f64;
    let at_least = uploaded as f64 / rate - 0.1;
    assert!(
        elapsed >= at_least,
        "{uploaded} bytes at {LIMIT_KIB} KiB/s took {elapsed:.2} s, less than {at_least:.2} s"
    );
}
