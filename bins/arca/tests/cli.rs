//! End-to-end tests of the `arca` binary: the real executable, real
//! temporary directories and, when `ARCA_TEST_S3_ENDPOINT` is set (as
//! `cargo xtask test` does), a real S3 server.
//!
//! Every run checks that the repository password appears nowhere in the
//! command's output, whatever the command and however it fails.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const PASSWORD: &str = "correct-horse-battery-staple-7f3a";

/// Where a test's repository lives.
struct Repo {
    url: String,
    /// The repository's directory when it is local (for damaging it on purpose).
    local_dir: Option<PathBuf>,
    /// Endpoint and bucket when the repository is on S3.
    s3_bucket: Option<(String, String)>,
    /// Holds the test's temporary files; deleted on drop.
    tmp: tempfile::TempDir,
}

impl Repo {
    fn local() -> Repo {
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
    fn s3() -> Option<Repo> {
        let Ok(endpoint) = std::env::var("ARCA_TEST_S3_ENDPOINT") else {
            eprintln!("skipped: ARCA_TEST_S3_ENDPOINT is not set (cargo xtask test sets it)");
            return None;
        };
        let tmp = tempfile::tempdir().unwrap();
        let bucket = format!(
            "arca-cli-{}-{}",
            std::process::id(),
            tmp.path().file_name()?.to_str()?.to_lowercase()
        );
        let bucket: String = bucket
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        http(&endpoint, "PUT", &format!("/{bucket}"));
        let url = format!("s3:{endpoint}/{bucket}/repo");
        Some(Repo {
            url,
            local_dir: None,
            s3_bucket: Some((endpoint, bucket)),
            tmp,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `arca` with this repository and password in its environment and no
    /// other ARCA_/RESTIC_ settings leaking in from the test's environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_arca"));
        for (key, _) in std::env::vars() {
            if (key.starts_with("ARCA_") || key.starts_with("RESTIC_"))
                && !key.starts_with("ARCA_TEST_")
            {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .env("ARCA_REPOSITORY", &self.url)
            .env("ARCA_PASSWORD", PASSWORD)
            // The metadata cache goes with the test's files, not into ~/.cache.
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg-cache"))
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// Runs and insists on exit code 0.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "arca {args:?} failed:\n{run}");
        run
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let run = self.ok(&with_json);
        serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{run}"))
    }
}

/// A finished `arca` process.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(mut cmd: Command) -> Run {
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
    fn json_lines(&self) -> Vec<Value> {
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

/// An unsigned HTTP/1.0 request to the S3 test server (moto accepts those),
/// returning the whole response; panics unless the status is 200.
fn http(endpoint: &str, method: &str, path: &str) -> String {
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

/// A small tree with the usual suspects: nested dirs, an empty file and dir,
/// a symlink, text, and a few MiB of incompressible data (several chunks).
fn make_sample(dir: &Path) {
    fs::create_dir_all(dir.join("docs/deep/er")).unwrap();
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    fs::write(dir.join("docs/readme.txt"), "hello arca\n".repeat(100)).unwrap();
    fs::write(dir.join("docs/deep/er/notes.md"), "# notes\n").unwrap();
    fs::write(dir.join("empty"), "").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..3 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    fs::write(dir.join("noise.bin"), noise).unwrap();
    fs::set_permissions(
        dir.join("docs/readme.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("docs/readme.txt", dir.join("link")).unwrap();
}

/// Asserts two trees hold the same names, types, contents, modes and link targets.
fn assert_same_tree(expected: &Path, actual: &Path) {
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

/// Runs a test body against a local repository and, when configured, S3.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local { $( #[test] fn $name() { super::$name(&super::Repo::local()); } )* }
        mod s3 { $( #[test] fn $name() { if let Some(repo) = super::Repo::s3() { super::$name(&repo); } } )* }
    };
}

on_every_backend!(
    full_cycle,
    exit_codes_follow_restic,
    cat_prints_every_file_kind,
    backup_options_are_recorded,
);

fn full_cycle(repo: &Repo) {
    let data = repo.path("data");
    make_sample(&data);
    let data_arg = data.to_str().unwrap();

    let init = repo.json(&["init"]);
    assert_eq!(init["message_type"], "initialized");
    assert_eq!(init["id"].as_str().unwrap().len(), 64);

    let first = repo.run(&["--json", "backup", data_arg, "--tag", "first,cli"]);
    assert_eq!(first.code, Some(0), "{first}");
    let summary = first.json_lines().pop().unwrap();
    assert_eq!(summary["message_type"], "summary", "{first}");
    for field in [
        "snapshot_id",
        "files_new",
        "files_changed",
        "files_unmodified",
        "dirs_new",
        "dirs_changed",
        "dirs_unmodified",
        "data_blobs",
        "tree_blobs",
        "data_added",
        "data_added_packed",
        "total_files_processed",
        "total_bytes_processed",
        "total_duration",
        "requests",
    ] {
        assert!(
            summary.get(field).is_some(),
            "backup summary lacks {field}: {summary}"
        );
    }
    assert_eq!(summary["files_new"], 4);
    assert!(
        summary["requests"]["put"].as_u64().unwrap() >= 1,
        "{summary}"
    );

    fs::write(data.join("docs/deep/er/notes.md"), "# notes\nchanged\n").unwrap();
    let second = repo.run(&["--json", "backup", data_arg]);
    let summary = second.json_lines().pop().unwrap();
    assert_eq!(
        (
            summary["files_changed"].as_u64(),
            summary["files_unmodified"].as_u64()
        ),
        (Some(1), Some(3)),
        "{second}"
    );

    let snapshots = repo.json(&["snapshots"]);
    let snapshots = snapshots.as_array().unwrap();
    assert_eq!(snapshots.len(), 2);
    for field in [
        "id",
        "short_id",
        "time",
        "hostname",
        "username",
        "paths",
        "tags",
        "parent",
        "tree",
        "program_version",
        "summary",
    ] {
        assert!(
            snapshots[1].get(field).is_some(),
            "snapshot lacks {field}: {}",
            snapshots[1]
        );
    }
    assert_eq!(snapshots[0]["tags"], serde_json::json!(["first", "cli"]));
    assert_eq!(
        snapshots[1]["parent"], snapshots[0]["id"],
        "second backup used the first as parent"
    );
    let human = repo.ok(&["snapshots"]);
    assert!(
        human
            .stdout
            .contains(snapshots[0]["short_id"].as_str().unwrap()),
        "{human}"
    );
    assert!(human.stdout.contains("2 snapshots"), "{human}");

    let target = repo.path("restore");
    let restore = repo.run(&[
        "--json",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--verify",
    ]);
    assert_eq!(restore.code, Some(0), "{restore}");
    let summary = restore.json_lines().pop().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(summary["files_restored"], 4, "{summary}");
    assert_same_tree(&data, &target.join(data.strip_prefix("/").unwrap()));

    let short_id = snapshots[0]["short_id"].as_str().unwrap();
    let old = repo.path("restore-old");
    repo.ok(&[
        "restore",
        short_id,
        "--target",
        old.to_str().unwrap(),
        "--include",
        "**/notes.md",
    ]);
    let notes = old
        .join(data.strip_prefix("/").unwrap())
        .join("docs/deep/er/notes.md");
    assert_eq!(fs::read_to_string(notes).unwrap(), "# notes\n");
    assert!(
        !old.join(data.strip_prefix("/").unwrap())
            .join("noise.bin")
            .exists()
    );

    let listing = repo.ok(&["ls", "latest"]).stdout;
    let noise = format!("{}/noise.bin", data.display());
    assert!(listing.lines().any(|line| line == noise), "{listing}");
    let long = repo.ok(&["ls", "--long", "latest"]).stdout;
    assert!(
        long.lines()
            .any(|line| line.starts_with("-rw-r-----") && line.ends_with("docs/readme.txt")),
        "{long}"
    );
    assert!(
        long.lines()
            .any(|line| line.starts_with('l') && line.ends_with("link -> docs/readme.txt")),
        "{long}"
    );
    let lines = repo.run(&["--json", "ls", "latest"]).json_lines();
    assert_eq!(lines[0]["message_type"], "snapshot");
    let node = lines
        .iter()
        .find(|line| line["path"] == noise.as_str())
        .expect("noise.bin listed");
    assert_eq!(
        (node["type"].as_str(), node["size"].as_u64()),
        (Some("file"), Some(3 * 1024 * 1024))
    );

    let check = repo.ok(&["check", "--read-data"]);
    assert!(check.stdout.contains("no errors were found"), "{check}");
    let report = repo.json(&["check", "--read-data-subset", "1/1"]);
    assert_eq!(report["ok"], true);
    assert!(
        report["packs_read"].as_u64().unwrap() >= 2,
        "data and tree packs: {report}"
    );
}

fn exit_codes_follow_restic(repo: &Repo) {
    let no_repo = repo.run(&["snapshots"]);
    assert_eq!(no_repo.code, Some(10), "{no_repo}");
    assert!(
        no_repo.stderr.contains("arca init"),
        "says how to fix it: {no_repo}"
    );
    // As in restic, a missing repository is reported before a password is needed.
    let mut no_repo_no_password = repo.command(&["snapshots"]);
    no_repo_no_password.env_remove("ARCA_PASSWORD");
    assert_eq!(Run::of(no_repo_no_password).code, Some(10));

    repo.ok(&["init"]);
    let again = repo.run(&["init"]);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.contains("already exists"), "{again}");

    let mut wrong = repo.command(&["snapshots"]);
    wrong.env("ARCA_PASSWORD", "not-the-password-9c1e");
    let wrong = Run::of(wrong);
    assert_eq!(wrong.code, Some(12), "{wrong}");
    assert!(!wrong.stderr.contains("not-the-password-9c1e"), "{wrong}");

    let mut none = repo.command(&["snapshots"]);
    none.env_remove("ARCA_PASSWORD");
    let none = Run::of(none);
    assert_eq!(none.code, Some(1), "{none}");
    assert!(
        none.stderr
            .contains("no password given: set ARCA_PASSWORD or --password-file"),
        "{none}"
    );

    let bad_args = repo.run(&["backup", "--no-such-flag"]);
    assert_eq!(bad_args.code, Some(1), "{bad_args}");
    let unknown = repo.run(&[
        "restore",
        "deadbeef",
        "--target",
        repo.path("t").to_str().unwrap(),
    ]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(unknown.stderr.contains("no snapshot matches"), "{unknown}");

    let mut json_error = repo.command(&["--json", "snapshots"]);
    json_error.env("ARCA_PASSWORD", "wrong-again");
    let json_error = Run::of(json_error);
    let message: Value = serde_json::from_str(json_error.stderr.trim()).unwrap();
    assert_eq!(
        (message["message_type"].as_str(), message["code"].as_u64()),
        (Some("exit_error"), Some(12))
    );
}

fn cat_prints_every_file_kind(repo: &Repo) {
    let data = repo.path("data");
    make_sample(&data);
    repo.ok(&["init", "--compression", "5"]);
    repo.ok(&["backup", data.to_str().unwrap()]);

    let config = repo.json(&["cat", "config"]);
    assert_eq!(
        (
            config["version"].as_u64(),
            config["compression_level"].as_u64()
        ),
        (Some(1), Some(5))
    );
    let snapshot = repo.json(&["cat", "snapshot", "latest"]);
    let tree = snapshot["tree"].as_str().unwrap();
    assert_eq!(snapshot["id"], repo.json(&["snapshots"])[0]["id"]);

    let packs = list_ids(repo, "data");
    let index_ids = list_ids(repo, "index");
    let index = repo.json(&["cat", "index", &index_ids[0][..8]]);
    let listed: Vec<&str> = index["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for pack in &packs {
        assert!(listed.contains(&pack.as_str()), "index lists pack {pack}");
    }
    let mut tree_found = false;
    for pack in &packs {
        let header = repo.json(&["cat", "pack", pack]);
        assert_eq!(header["id"].as_str(), Some(pack.as_str()));
        tree_found |= header["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "tree" && b["id"] == tree);
    }
    assert!(
        tree_found,
        "the snapshot's root tree is in some pack header"
    );
    let key = repo.json(&["cat", "key", &list_ids(repo, "keys")[0][..6]]);
    assert!(key.is_object());

    let missing = repo.run(&["cat", "index", "ffffffffffff"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(
        missing.stderr.contains("no file in index/ matches"),
        "{missing}"
    );
}

/// The options that shape a snapshot end up in it, and `--quiet` keeps stdout empty.
fn backup_options_are_recorded(repo: &Repo) {
    let data = repo.path("data");
    make_sample(&data);
    repo.ok(&["init"]);
    let quiet = repo.ok(&[
        "-q",
        "backup",
        data.to_str().unwrap(),
        "--host",
        "node-7",
        "--time",
        "2030-01-02T03:04:05Z",
        "--exclude",
        "*.bin",
        "--tag",
        "a",
        "--tag",
        "b",
    ]);
    assert_eq!(quiet.stdout, "", "{quiet}");

    let snapshot = repo.json(&["cat", "snapshot", "latest"]);
    assert_eq!(snapshot["hostname"], "node-7");
    assert_eq!(snapshot["time"], "2030-01-02T03:04:05Z");
    assert_eq!(snapshot["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(snapshot["excludes"], serde_json::json!(["*.bin"]));
    let listing = repo.ok(&["ls", "latest"]).stdout;
    assert!(
        listing.contains("readme.txt") && !listing.contains("noise.bin"),
        "{listing}"
    );

    let human = repo.ok(&["snapshots"]).stdout;
    assert!(human.contains("node-7") && human.contains("a,b"), "{human}");
}

/// IDs (file names) of the files under `dir` in the repository.
fn list_ids(repo: &Repo, dir: &str) -> Vec<String> {
    let mut names = match (&repo.local_dir, &repo.s3_bucket) {
        (Some(root), _) => walk_names(&root.join(dir)),
        (None, Some((endpoint, bucket))) => {
            let listing = http(
                endpoint,
                "GET",
                &format!("/{bucket}?list-type=2&prefix=repo/{dir}/"),
            );
            listing
                .split("<Key>")
                .skip(1)
                .filter_map(|rest| rest.split_once("</Key>"))
                .map(|(key, _)| key.rsplit('/').next().unwrap().to_string())
                .collect()
        }
        (None, None) => unreachable!("a repository is local or on S3"),
    };
    names.sort();
    names
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            names.extend(walk_names(&entry.path()));
        } else {
            names.push(entry.file_name().into_string().unwrap());
        }
    }
    names
}

/// Flips one bit inside a stored pack: `check` without `--read-data` cannot
/// see it (sizes still match), `check --read-data` must name the pack.
#[test]
fn check_read_data_names_a_damaged_pack() {
    let repo = Repo::local();
    let data = repo.path("data");
    make_sample(&data);
    repo.ok(&["init"]);
    repo.ok(&["backup", data.to_str().unwrap()]);

    let data_dir = repo.local_dir.as_ref().unwrap().join("data");
    let biggest = list_ids(&repo, "data")
        .into_iter()
        .map(|id| data_dir.join(&id[..2]).join(id))
        .max_by_key(|path| fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&biggest).unwrap();
    bytes[1000] ^= 0x10;
    fs::set_permissions(&biggest, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&biggest, bytes).unwrap();
    let pack_id = biggest.file_name().unwrap().to_str().unwrap();

    repo.ok(&["check"]);
    let check = repo.run(&["check", "--read-data"]);
    assert_eq!(check.code, Some(1), "{check}");
    assert!(
        check.stdout.contains(pack_id),
        "names pack {pack_id}:\n{check}"
    );
    assert!(check.stderr.contains("check found"), "{check}");
    let json = repo.run(&["--json", "check", "--read-data"]);
    let report = json.json_lines().pop().unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains(pack_id)),
        "{json}"
    );
}

/// A file the backup cannot read: exit 3, a warning naming it, and a
/// snapshot with everything else. Root reads everything, so as root the
/// backup runs as `nobody` (via setpriv) against a world-writable repository.
#[test]
fn unreadable_file_gives_exit_code_3() {
    let repo = Repo::local();
    let as_root = nix::unistd::geteuid().is_root();
    if as_root && Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: running as root without setpriv, so no file is unreadable");
        return;
    }
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("readable.txt"), "fine").unwrap();
    fs::write(data.join("secret.txt"), "locked").unwrap();
    fs::set_permissions(data.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    repo.ok(&["init"]);

    let mut backup = repo.command(&["--json", "backup", data.to_str().unwrap()]);
    if as_root {
        // `nobody` needs to traverse the temp dir and write the repository.
        fs::set_permissions(repo.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        chmod_recursive(repo.local_dir.as_ref().unwrap(), 0o777);
        let program = backup.get_program().to_owned();
        let args: Vec<_> = backup.get_args().map(ToOwned::to_owned).collect();
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args);
        for (key, value) in backup.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        backup = wrapped;
        backup.stdin(Stdio::null());
    }
    let run = Run::of(backup);
    assert_eq!(run.code, Some(3), "{run}");
    assert!(
        run.stderr.contains("secret.txt"),
        "warns about the file:\n{run}"
    );
    let summary = run.json_lines().pop().unwrap();
    assert_eq!(summary["files_unreadable"], 1, "{run}");

    let listing = repo.ok(&["ls", "latest"]).stdout;
    assert!(listing.contains("readable.txt"), "{listing}");
}

fn chmod_recursive(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chmod_recursive(&entry.unwrap().path(), mode);
        }
    }
}

/// SIGINT while arca waits (here: for a slow password command) ends it with
/// 130 and commits nothing.
#[test]
fn interrupt_exits_130_and_leaves_no_snapshot() {
    let repo = Repo::local();
    let data = repo.path("data");
    make_sample(&data);
    repo.ok(&["init"]);
    let ready = repo.path("password-command-started");
    let mut backup = repo.command(&["backup", data.to_str().unwrap()]);
    let password_command = format!("touch '{}'; sleep 30; echo {PASSWORD}", ready.display());
    backup
        .env_remove("ARCA_PASSWORD")
        .arg("--password-command")
        .arg(password_command);
    let mut child = backup
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the command to be under way (bounded; the file appears within milliseconds).
    for _ in 0..3000 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(ready.exists(), "the password command never started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(repo.json(&["snapshots"]), serde_json::json!([]));
}

#[test]
fn password_file_and_command_work_and_conflict() {
    let repo = Repo::local();
    repo.ok(&["init"]);
    let file = repo.path("password");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();

    let mut from_file = repo.command(&["snapshots", "--password-file", file.to_str().unwrap()]);
    from_file.env_remove("ARCA_PASSWORD");
    assert_eq!(Run::of(from_file).code, Some(0));
    let mut restic_env = repo.command(&["snapshots"]);
    restic_env
        .env_remove("ARCA_PASSWORD")
        .env_remove("ARCA_REPOSITORY");
    restic_env
        .env("RESTIC_PASSWORD_FILE", &file)
        .env("RESTIC_REPOSITORY", &repo.url);
    assert_eq!(Run::of(restic_env).code, Some(0));
    let mut from_command = repo.command(&["snapshots"]);
    from_command.env_remove("ARCA_PASSWORD").env(
        "RESTIC_PASSWORD_COMMAND",
        format!("cat '{}'", file.display()),
    );
    assert_eq!(Run::of(from_command).code, Some(0));

    let both = repo.run(&[
        "snapshots",
        "--password-file",
        file.to_str().unwrap(),
        "--password-command",
        "true",
    ]);
    assert_eq!(both.code, Some(1), "{both}");
    let missing = repo.run(&[
        "snapshots",
        "--password-file",
        repo.path("nope").to_str().unwrap(),
    ]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(
        missing.stderr.contains("cannot read password file"),
        "{missing}"
    );
}

#[test]
fn help_and_version_succeed_and_no_repository_is_explained() {
    let repo = Repo::local();
    let help = repo.ok(&["--help"]);
    for command in [
        "init",
        "backup",
        "snapshots",
        "restore",
        "ls",
        "cat",
        "check",
    ] {
        assert!(help.stdout.contains(command), "{help}");
    }
    assert!(repo.ok(&["--version"]).stdout.starts_with("arca "));
    let mut nowhere = repo.command(&["snapshots"]);
    nowhere.env_remove("ARCA_REPOSITORY");
    let nowhere = Run::of(nowhere);
    assert_eq!(nowhere.code, Some(1), "{nowhere}");
    assert!(nowhere.stderr.contains("no repository given"), "{nowhere}");
}
