//! Shared by the `arca` binary's integration tests: a repository for each
//! test (a local directory or a fresh bucket on the test S3 server), running
//! the real executable against it, and building and comparing trees.
//!
//! Every run checks that the repository password appears nowhere in the
//! command's output, whatever the command and however it fails.

// Skipped S3 variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub(crate) const PASSWORD: &str = "correct-horse-battery-staple-7f3a";

/// Where a test's repository lives.
pub(crate) struct Repo {
    pub(crate) url: String,
    /// The repository's directory when it is local (for damaging it on purpose).
    pub(crate) local_dir: Option<PathBuf>,
    /// Endpoint and bucket when the repository is on S3.
    pub(crate) s3_bucket: Option<(String, String)>,
    /// Holds the test's temporary files; deleted on drop.
    pub(crate) tmp: tempfile::TempDir,
}

impl Repo {
    pub(crate) fn local() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("repo");
        Repo {
            url: dir.to_str().unwrap().to_string(),
            local_dir: Some(dir),
            s3_bucket: None,
            tmp,
        }
    }

    /// A fresh bucket on the test S3 server, or `None` (with a note) when there is none.
    pub(crate) fn s3() -> Option<Repo> {
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
        let bucket = format!("arca-cli-{}-{suffix}", std::process::id());
        http(&endpoint, "PUT", &format!("/{bucket}"));
        Some(Repo {
            url: format!("s3:{endpoint}/{bucket}/repo"),
            local_dir: None,
            s3_bucket: Some((endpoint, bucket)),
            tmp,
        })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `arca` with this repository and password in its environment, no
    /// other ARCA_/RESTIC_ settings leaking in from the test's environment,
    /// a private cache home, and test server credentials unless some are
    /// set (moto accepts any).
    pub(crate) fn command(&self, args: &[&str]) -> Command {
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
            // Key files the tests write take Argon2id's cheapest setting:
            // the default's 64 MiB, 3 passes, paid on each of several hundred
            // runs, was about a third of these tests' CPU time.
            // `key_files_take_the_kdf_cost_asked_for` covers the default.
            .env("ARCA_KDF_MEMORY", "1")
            .env("ARCA_KDF_ITERATIONS", "1")
            // The metadata cache goes with the test's files, not into ~/.cache.
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Runs and insists on exit code 0.
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "arca {args:?} failed:\n{run}");
        run
    }

    /// Runs `arca --json ARGS`, insists on success and on one JSON document.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let run = self.ok(&with_json(args));
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{run}"))
    }

    /// Runs `arca --json ARGS`, insists on success and returns the last
    /// JSON line (a command's summary).
    pub(crate) fn json_summary(&self, args: &[&str]) -> Value {
        let run = self.ok(&with_json(args));
        run.json_lines()
            .pop()
            .unwrap_or_else(|| panic!("no JSON output:\n{run}"))
    }
}

fn with_json<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    with_json
}

/// A finished `arca` process.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn of(mut cmd: Command) -> Run {
        let out = cmd.output().expect("the arca binary runs");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "password printed:\n{run}"
        );
        run
    }

    /// JSON lines on stdout, parsed.
    pub(crate) fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a test body against a local repository and, when configured, S3.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local { $( #[test] fn $name() { super::$name(&super::Repo::local()); } )* }
        mod s3 { $( #[test] fn $name() { if let Some(repo) = super::Repo::s3() { super::$name(&repo); } } )* }
    };
}
pub(crate) use on_every_backend;

/// An unsigned HTTP/1.0 request to the S3 test server (moto accepts those),
/// returning the whole response; panics unless the status is 200.
pub(crate) fn http(endpoint: &str, method: &str, path: &str) -> String {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("the S3 test server is reachable");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default();
    assert!(
        status.contains(" 200 "),
        "{method} {path} failed: {response}"
    );
    response
}

/// Deterministic incompressible bytes (xorshift); different seeds share nothing.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(seed + 1) | 1;
    let mut bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    bytes.truncate(len);
    bytes
}

/// Asserts two trees hold the same names, types, contents, modes and link targets.
pub(crate) fn assert_same_tree(expected: &Path, actual: &Path) {
    let (want, got) = (
        fs::symlink_metadata(expected).unwrap(),
        fs::symlink_metadata(actual).unwrap(),
    );
    assert_eq!(want.file_type(), got.file_type(), "{}", actual.display());
    if want.is_symlink() {
        assert_eq!(
            fs::read_link(expected).unwrap(),
            fs::read_link(actual).unwrap(),
            "{}",
            actual.display()
        );
        return;
    }
    assert_eq!(
        want.permissions().mode(),
        got.permissions().mode(),
        "{}",
        actual.display()
    );
    if want.is_file() {
        assert!(
            fs::read(expected).unwrap() == fs::read(actual).unwrap(),
            "content of {}",
            actual.display()
        );
    } else if want.is_dir() {
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
            assert_same_tree(&expected.join(&name), &actual.join(&name));
        }
    }
}

/// Where `source` (an absolute path that was backed up) lands under `target`.
pub(crate) fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}
