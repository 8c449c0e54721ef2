//! End-to-end tests of the `arca` binary: the real executable, real
//! temporary directories and, when `ARCA_TEST_S3_ENDPOINT` is set (as
//! `cargo xtask test` does), a real S3 server.
//!
//! Every run checks that the repository password appears nowhere in the
//! command's output, whatever the command and however it fails.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{
    PASSWORD, Repo, Run, assert_same_tree, http, noise, on_every_backend, restored,
};

/// A small tree with the usual suspects: nested dirs, an empty file and dir,
/// a symlink, text, and a few MiB of incompressible data (several chunks).
fn make_sample(dir: &Path) {
    fs::create_dir_all(dir.join("docs/deep/er")).unwrap();
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    fs::write(dir.join("docs/readme.txt"), "hello arca\n".repeat(100)).unwrap();
    fs::write(dir.join("docs/deep/er/notes.md"), "# notes\n").unwrap();
    fs::write(dir.join("empty"), "").unwrap();
    fs::write(dir.join("noise.bin"), noise(3 * 1024 * 1024, 0)).unwrap();
    fs::set_permissions(
        dir.join("docs/readme.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    symlink("docs/readme.txt", dir.join("link")).unwrap();
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
    assert_same_tree(&data, &restored(&target, &data));

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
    let notes = restored(&old, &data).join("docs/deep/er/notes.md");
    assert_eq!(fs::read_to_string(notes).unwrap(), "# notes\n");
    assert!(!restored(&old, &data).join("noise.bin").exists());

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
    let odd_chunks = repo.run(&["init", "--chunk-size", "3000"]);
    assert_eq!(odd_chunks.code, Some(1), "{odd_chunks}");
    assert!(
        odd_chunks.stderr.contains("chunk size 3000 KiB")
            && odd_chunks.stderr.contains("power of two"),
        "{odd_chunks}"
    );
    repo.ok(&["init", "--compression", "5", "--chunk-size", "1024"]);
    repo.ok(&["backup", data.to_str().unwrap()]);

    let config = repo.json(&["cat", "config"]);
    assert_eq!(
        (
            config["version"].as_u64(),
            config["compression_level"].as_u64()
        ),
        (Some(1), Some(5))
    );
    assert_eq!(
        config["chunker"],
        serde_json::json!({"min": 524288, "avg": 1048576, "max": 8388608})
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
        // A new pack is format 2; its header and its index entry name one
        // blob key.
        let indexed = index["packs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == header["id"])
            .unwrap();
        assert_eq!(header["format"], 2);
        assert_eq!(header["salt"].as_str().map(str::len), Some(32));
        for field in ["format", "key_id", "salt"] {
            assert_eq!(header[field], indexed[field], "{field}");
        }
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
    // The command becomes a `sleep` that outlives arca (a terminal's Ctrl-C
    // would reach it, this SIGINT does not): it records its PID for the test
    // to end it, and lets go of the stderr it inherited, which the test reads
    // to its end.
    let pid_file = repo.path("password-command-pid");
    let password_command = format!(
        "echo $$ > '{}'; touch '{}'; exec sleep 600 2>/dev/null",
        pid_file.display(),
        ready.display()
    );
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
    let sleeper: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(repo.json(&["snapshots"]), serde_json::json!([]));
}

/// The Argon2id cost recorded in the key file `id` (`cat key`).
fn kdf_cost(repo: &Repo, id: &str) -> (u64, u64, u64) {
    let key = repo.json(&["cat", "key", id]);
    let field = |name: &str| key[name].as_u64().unwrap_or_else(|| panic!("{key}"));
    (field("m_cost_kib"), field("t_cost"), field("p_cost"))
}

#[test]
fn key_files_take_the_kdf_cost_asked_for() {
    // Without the support's cheap setting: the default is RFC 9106's second.
    let repo = Repo::local();
    let mut init = repo.command(&["init"]);
    init.env_remove("ARCA_KDF_MEMORY")
        .env_remove("ARCA_KDF_ITERATIONS");
    let run = Run::of(init);
    assert_eq!(run.code, Some(0), "{run}");
    let first = repo.json(&["key", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(kdf_cost(&repo, &first), (64 * 1024, 3, 4));

    let file = repo.path("second-password");
    fs::write(&file, "second password\n").unwrap();
    let added = repo.json(&[
        "key",
        "add",
        "--new-password-file",
        file.to_str().unwrap(),
        "--kdf-memory",
        "2",
        "--kdf-iterations",
        "5",
    ]);
    assert_eq!(
        kdf_cost(&repo, added["id"].as_str().unwrap()),
        (2 * 1024, 5, 4)
    );

    // Out of range: refused before anything is written.
    let fresh = Repo::local();
    for bad in [["--kdf-memory", "0"], ["--kdf-iterations", "65"]] {
        let refused = fresh.run(&["init", bad[0], bad[1]]);
        assert_eq!(refused.code, Some(1), "{refused}");
        assert!(
            refused
                .stderr
                .contains("invalid --kdf-memory or --kdf-iterations"),
            "{refused}"
        );
    }
    assert!(!fresh.local_dir.as_ref().unwrap().exists());
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
