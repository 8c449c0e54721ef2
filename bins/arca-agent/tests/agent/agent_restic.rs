//! `arca-agent` against a repository restic itself wrote (Debian's
//! `restic`, installed by `cargo xtask test`), as a VolSync user's existing
//! Secret points at: a restore reads it with the same selection, staging,
//! swap and result document as an Arca repository; a backup fails as a
//! configuration error (exit 2) pointing at `arca copy --from-repo`, and
//! writes nothing into it. Skipped with a note without `restic`, except
//! under `CI=true`, where that is a failure.

#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Job, PASSWORD, files, fill};

fn restic_installed() -> bool {
    let installed = Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`restic` is not installed, and under CI it must be (cargo xtask test installs it)"
        );
        eprintln!("skipped: `restic` is not installed (cargo xtask test installs it)");
    }
    installed
}

fn restic(repo: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .args(["--no-cache", "--quiet", "--repo", repo])
        .args(args)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("restic runs");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn snapshot_ids(repo: &str) -> Vec<String> {
    let list: Value = serde_json::from_slice(&restic(repo, &["snapshots", "--json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A restic repository of `version` with two snapshots of a volume, as
/// VolSync's restic mover takes them (`--host volsync`, one path); returns
/// the source volume and the files of each version.
fn restic_history(
    source: &Job,
    version: &str,
) -> (Vec<std::collections::BTreeMap<String, Vec<u8>>>, String) {
    let repo = source.repository.clone();
    restic(&repo, &["init", "--repository-version", version]);
    let volume = source.data();
    let mut versions = Vec::new();
    for v in 1..=2 {
        fill(&volume, v);
        restic(
            &repo,
            &[
                "backup",
                "--host",
                "volsync",
                "--exclude",
                "lost+found",
                volume.to_str().unwrap(),
            ],
        );
        versions.push(files(&volume));
    }
    (versions, repo)
}

#[test]
fn a_destination_restores_from_a_restic_repository() {
    if !restic_installed() {
        return;
    }
    for version in ["1", "2"] {
        let source = Job::local();
        let (versions, repo) = restic_history(&source, version);
        let ids = snapshot_ids(&repo);

        let mut destination = Job::with_repository(tempfile::tempdir().unwrap(), repo.clone());
        fs::write(destination.data().join("stale"), "from before").unwrap();
        let run = destination.ok(&["restore"]);
        let restore = run.action(0);
        assert_eq!(restore["outcome"], "restored", "{}", run.log);
        assert_eq!(restore["snapshot_id"], ids[1].as_str());
        assert_eq!(restore["files"], 4, "{restore}");
        let mut expected = versions[1].clone();
        expected.insert("stale".into(), b"from before".to_vec());
        // lost+found is the destination's own, in both.
        let without_lost_found = |mut files: std::collections::BTreeMap<String, Vec<u8>>| {
            files.retain(|name, _| !name.starts_with("lost+found"));
            files
        };
        assert_eq!(
            without_lost_found(files(&destination.data())),
            without_lost_found(expected)
        );
        assert!(
            !destination
                .data()
                .join(".arca-restore-staging/tree")
                .exists()
        );

        // SELECT_PREVIOUS picks the older snapshot, --delete removes extras.
        destination.set("SELECT_PREVIOUS", "1");
        destination.set("RESTORE_OPTIONS", "--delete");
        let run = destination.ok(&["restore"]);
        assert_eq!(run.action(0)["snapshot_id"], ids[0].as_str());
        assert_eq!(
            without_lost_found(files(&destination.data())),
            without_lost_found(versions[0].clone())
        );

        // A wrong password is the same failure as for an Arca repository.
        destination.set("RESTIC_PASSWORD", "not-the-password");
        let wrong = destination.run(&["restore"]);
        assert_eq!(wrong.code, Some(12), "{}", wrong.log);
        assert_eq!(wrong.report()["error_class"], "wrong_password");
        // Nothing was written into the restic repository.
        assert_eq!(snapshot_ids(&repo), ids);
    }
}

#[test]
fn a_source_pointed_at_a_restic_repository_fails_as_config_and_writes_nothing() {
    if !restic_installed() {
        return;
    }
    let source = Job::local();
    let (_, repo) = restic_history(&source, "2");
    let ids = snapshot_ids(&repo);
    let listing = |dir: &Path| {
        let mut names: Vec<_> = walk(dir);
        names.sort();
        names
    };
    let before = listing(Path::new(&repo));

    fill(&source.data(), 3);
    let run = source.run(&["unlock", "backup"]);
    assert_eq!(run.code, Some(2), "{}", run.log);
    let report = run.report();
    assert_eq!(report["error_class"], "config", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("is a restic repository"), "{error}");
    assert!(error.contains("arca copy --from-repo"), "{error}");

    assert_eq!(snapshot_ids(&repo), ids);
    assert_eq!(
        listing(Path::new(&repo)),
        before,
        "files in the restic repository changed"
    );
    restic(&repo, &["check"]);
}

/// Every file below `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}
