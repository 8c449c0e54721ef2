//! `arca copy` end to end: the real binary, local repositories and, when
//! `ARCA_TEST_S3_ENDPOINT` is set (as `cargo xtask test` does), a real S3
//! server in the middle; different passwords on each side; a copy killed
//! with SIGKILL and run again; wrong source passwords and unknown IDs.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support;
use crate::support::{Repo, Run, assert_same_tree, noise, on_every_backend, restored};

const SOURCE_PASSWORD: &str = "the-source-password-91c2";

/// A local repository with SOURCE_PASSWORD holding one snapshot of `data`.
fn source_with(data: &Path) -> Repo {
    let source = Repo::local();
    let init = source.command(&["init"]);
    assert_eq!(with_password(init).code, Some(0));
    let backup = source.command(&["backup", data.to_str().unwrap()]);
    let run = with_password(backup);
    assert_eq!(run.code, Some(0), "{run}");
    source
}

fn with_password(mut cmd: Command) -> Run {
    cmd.env("ARCA_PASSWORD", SOURCE_PASSWORD);
    Run::of(cmd)
}

fn sample(dir: &Path) {
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::write(dir.join("noise.bin"), noise(3 * 1024 * 1024, 5)).unwrap();
    fs::write(dir.join("sub/text.txt"), "copy me\n".repeat(500)).unwrap();
    fs::write(dir.join("sub/deeper/empty"), "").unwrap();
}

/// `arca copy --json --from-repo FROM ARGS` into `into`, FROM's password in a file.
fn copy_json(into: &Repo, from: &str, from_password: &str, args: &[&str]) -> Value {
    let password_file = into.path("from-password");
    fs::write(&password_file, from_password).unwrap();
    let mut all = vec![
        "--json",
        "copy",
        "--from-repo",
        from,
        "--from-password-file",
        password_file.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let run = into.ok(&all);
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}:\n{run}"))
}

fn assert_restores_and_checks(repo: &Repo, data: &Path) {
    let target = repo.path("restored");
    repo.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(data, &restored(&target, data));
    fs::remove_dir_all(&target).unwrap();
    repo.ok(&["check", "--read-data"]);
}

#[test]
fn local_to_s3_and_back_with_different_passwords() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    sample(&data);
    let source = source_with(&data);
    let middle = Repo::s3().unwrap_or_else(Repo::local);
    middle.ok(&["init"]);
    let report = copy_json(&middle, &source.url, SOURCE_PASSWORD, &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["data_blobs"].as_u64().unwrap() > 0, "{report}");
    assert_restores_and_checks(&middle, &data);
    let snapshots = middle.json(&["snapshots"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 1);

    // Again: nothing to copy, nothing uploaded.
    let again = copy_json(&middle, &source.url, SOURCE_PASSWORD, &[]);
    assert_eq!(again["copied"], serde_json::json!([]), "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(
        (again["data_blobs"].as_u64(), again["packs"].as_u64()),
        (Some(0), Some(0))
    );

    // And back into a third repository, reading the middle one with its password.
    let back = Repo::local();
    with_password(back.command(&["init"]));
    let mut cmd = back.command(&["copy", "--from-repo", &middle.url]);
    cmd.env("ARCA_PASSWORD", SOURCE_PASSWORD)
        .env("ARCA_FROM_PASSWORD", support::PASSWORD);
    let run = Run::of(cmd);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("copied snapshot"), "{run}");
    let target = back.path("restored");
    let restore =
        with_password(back.command(&["restore", "latest", "--target", target.to_str().unwrap()]));
    assert_eq!(restore.code, Some(0), "{restore}");
    assert_same_tree(&data, &restored(&target, &data));
}

/// Every file below `dir`, for "nothing was written" checks.
fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue; // not created yet
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found.sort();
    found
}

on_every_backend!(a_wrong_source_password_or_unknown_snapshot_writes_nothing);

/// Into `destination` (local, or S3): nothing may be written.
fn a_wrong_source_password_or_unknown_snapshot_writes_nothing(destination: &Repo) {
    let data = destination.path("data");
    sample(&data);
    let source = source_with(&data);
    destination.ok(&["init"]);
    let written = || destination.local_dir.as_deref().map(files_below);
    let before = written();

    let mut cmd = destination.command(&["copy", "--from-repo", &source.url]);
    cmd.env("ARCA_FROM_PASSWORD", "not the source password");
    let run = Run::of(cmd);
    assert_eq!(run.code, Some(12), "{run}");
    assert!(run.stderr.contains("wrong password"), "{run}");
    assert!(!run.stderr.contains("not the source password"), "{run}");

    let mut cmd = destination.command(&["copy", "--from-repo", &source.url, "0123456789abcdef"]);
    cmd.env("ARCA_FROM_PASSWORD", SOURCE_PASSWORD);
    let run = Run::of(cmd);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("no snapshot matches"), "{run}");

    let run = destination.run(&["copy"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("--from-repo"), "{run}");
    assert_eq!(written(), before);
    assert!(
        destination
            .json(&["snapshots"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_copy_killed_with_sigkill_uploads_only_what_is_missing_when_run_again() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    fs::create_dir_all(&data).unwrap();
    // 80 MiB that neither compresses nor deduplicates: five 16 MiB packs, the
    // index written after every 32 MiB.
    for i in 0..10u64 {
        fs::write(
            data.join(format!("part-{i}.bin")),
            noise(8 * 1024 * 1024, 40 + i),
        )
        .unwrap();
    }
    let source = source_with(&data);
    let reference = Repo::local();
    reference.ok(&["init"]);
    let full = copy_json(&reference, &source.url, SOURCE_PASSWORD, &[]);

    let destination = Repo::local();
    destination.ok(&["init"]);
    let index_dir = destination.local_dir.as_ref().unwrap().join("index");
    // Index files are named by 64 hex digits; anything else is a write under way.
    let index_files = || {
        files_below(&index_dir)
            .into_iter()
            .filter(|path| {
                let name = path.rsplit('/').next().unwrap_or_default();
                name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .count()
    };
    let indexed_before = index_files();
    // Slowed to 16 MiB/s, so the copy is still running when its first
    // index file appears.
    let mut cmd = destination.command(&[
        "--limit-upload",
        "16384",
        "copy",
        "--from-repo",
        &source.url,
    ]);
    cmd.env("ARCA_FROM_PASSWORD", SOURCE_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    loop {
        if index_files() > indexed_before {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the copy ended ({status}) before it wrote an index file");
        }
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        None,
        "killed by a signal, not finished: {status}"
    );
    assert!(
        destination
            .json(&["snapshots"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    let resumed = copy_json(&destination, &source.url, SOURCE_PASSWORD, &[]);
    assert_eq!(resumed["copied"].as_array().unwrap().len(), 1, "{resumed}");
    let (resumed_blobs, full_blobs) = (
        resumed["data_blobs"].as_u64().unwrap(),
        full["data_blobs"].as_u64().unwrap(),
    );
    assert!(
        resumed_blobs < full_blobs,
        "the run after the kill stored {resumed_blobs} of {full_blobs} data blobs again"
    );
    assert_restores_and_checks(&destination, &data);
}
