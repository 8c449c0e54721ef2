//! The Job harness the agent's process tests share: the real executable,
//! run with a Job's environment against a local or S3 repository, its result
//! document read back and checked for the password.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

pub(crate) const PASSWORD: &str = "volsync-template-password-4c1d";

/// One Job's world: a volume, a cache, a repository location, a result file.
pub(crate) struct Job {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) repository: String,
    pub(crate) env: BTreeMap<String, String>,
}

/// How a run ended.
pub(crate) struct Finished {
    pub(crate) code: Option<i32>,
    pub(crate) report: Option<Value>,
    pub(crate) log: String,
}

impl Finished {
    pub(crate) fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no result document:\n{}", self.log))
    }

    /// The report of the `index`-th action.
    pub(crate) fn action(&self, index: usize) -> &Value {
        &self.report()["actions"][index]
    }
}

impl Job {
    pub(crate) fn local() -> Job {
        let tmp = tempfile::tempdir().unwrap();
        let repository = tmp
            .path()
            .join("repository/app")
            .to_str()
            .unwrap()
            .to_owned();
        Job::with_repository(tmp, repository)
    }

    /// A fresh bucket on the test S3 server, or `None` (with a note).
    pub(crate) fn s3() -> Option<Job> {
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
        let bucket = format!("arca-agent-{}-{suffix}", std::process::id());
        http_put(&endpoint, &format!("/{bucket}"));
        // The seed's S3 form: s3:https://host/bucket/path.
        let repository = format!("s3:{endpoint}/{bucket}/path");
        let mut job = Job::with_repository(tmp, repository);
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test-secret"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ] {
            job.set(key, value);
        }
        Some(job)
    }

    pub(crate) fn with_repository(tmp: tempfile::TempDir, repository: String) -> Job {
        let mut job = Job {
            tmp,
            repository,
            env: BTreeMap::new(),
        };
        fs::create_dir_all(job.data()).unwrap();
        fs::create_dir_all(job.data().join("lost+found")).unwrap();
        fs::write(job.data().join("lost+found/#1234"), "fsck debris").unwrap();
        let (data, cache, tmpdir) = (job.data(), job.path("cache"), job.path("tmp"));
        fs::create_dir_all(&cache).unwrap();
        fs::create_dir_all(&tmpdir).unwrap();
        job.set("DATA_DIR", data.to_str().unwrap());
        job.set("RESTIC_CACHE_DIR", cache.to_str().unwrap());
        job.set("TMPDIR", tmpdir.to_str().unwrap());
        let repository = job.repository.clone();
        job.set("RESTIC_REPOSITORY", &repository);
        job.set("RESTIC_PASSWORD", PASSWORD);
        job.set("SELECT_PREVIOUS", "0");
        job.set("RESTORE_OPTIONS", "");
        job.set("RESTORE_AS_OF", "");
        job.set(
            "ARCA_RESULT_PATH",
            job.path("termination-log").to_str().unwrap(),
        );
        job
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.path("data")
    }

    pub(crate) fn set(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_owned(), value.to_owned());
    }

    /// The agent with exactly this Job's environment (plus PATH for `sh`).
    pub(crate) fn command(&self, actions: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arca-agent"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&self.env)
            .args(actions)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let _ = fs::remove_file(self.path("termination-log"));
        cmd
    }

    pub(crate) fn run(&self, actions: &[&str]) -> Finished {
        let output = self.command(actions).output().unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        self.finished(output.status.code(), log)
    }

    pub(crate) fn finished(&self, code: Option<i32>, log: String) -> Finished {
        let report = fs::read_to_string(self.path("termination-log"))
            .ok()
            .map(|text| {
                assert!(text.len() <= 4096, "{} bytes", text.len());
                assert!(!text.contains(PASSWORD), "password in the report: {text}");
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
            });
        assert!(!log.contains(PASSWORD), "password in the log:\n{log}");
        Finished { code, report, log }
    }

    /// Runs and insists on exit code 0 and outcome success.
    pub(crate) fn ok(&self, actions: &[&str]) -> Finished {
        let finished = self.run(actions);
        assert_eq!(finished.code, Some(0), "{actions:?}:\n{}", finished.log);
        assert_eq!(finished.report()["outcome"], "success");
        assert_eq!(finished.report()["exit_code"], 0);
        finished
    }
}

pub(crate) fn http_put(endpoint: &str, path: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("the S3 test server is reachable");
    write!(
        stream,
        "PUT {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
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
        "{response}"
    );
}

/// Deterministic incompressible bytes (xorshift).
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

/// Files of a volume (relative path → content), `lost+found` and the agent's own names left out.
pub(crate) fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == "lost+found" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

pub(crate) fn fill(data: &Path, version: u8) {
    fs::create_dir_all(data.join("db/pages")).unwrap();
    fs::write(
        data.join("db/pages/0001"),
        noise(600_000, u64::from(version)),
    )
    .unwrap();
    fs::write(data.join("db/pages/0002"), noise(300_000, 99)).unwrap();
    fs::write(data.join("version"), format!("v{version}\n")).unwrap();
    fs::write(data.join("config.yaml"), "replicas: 3\n").unwrap();
}
