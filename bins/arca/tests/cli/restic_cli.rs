//! The read-only verbs of the `arca` binary on repositories restic itself
//! wrote (Debian's `restic`, installed by `cargo xtask test`): the same
//! output as for an Arca repository, compared with restic's own. Skipped
//! with a message when `restic` is not installed, except under `CI=true`,
//! where that is a failure.

#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{PASSWORD, Repo, Run, assert_same_tree, noise, restored};

fn restic(repo: &Repo, args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .args(["--no-cache", "--quiet", "--repo", &repo.url])
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

/// A restic repository of format `version` with two snapshots of a small
/// tree; `None` (with a note) when restic is not installed.
fn restic_repo(version: &str) -> Option<(Repo, std::path::PathBuf)> {
    if !Command::new("restic")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`restic` is not installed, and under CI it must be (cargo xtask test installs it)"
        );
        eprintln!("skipped: `restic` is not installed (cargo xtask test installs it)");
        return None;
    }
    let repo = Repo::local();
    restic(&repo, &["init", "--repository-version", version]);
    let data = repo.path("data");
    fs::create_dir_all(data.join("docs/deep")).unwrap();
    fs::write(data.join("docs/readme.txt"), "hello restic\n".repeat(50)).unwrap();
    fs::write(data.join("docs/deep/notes.md"), "# notes\n").unwrap();
    fs::write(data.join("noise.bin"), noise(2 << 20, 3)).unwrap();
    fs::write(data.join("empty"), "").unwrap();
    std::os::unix::fs::symlink("docs/readme.txt", data.join("link")).unwrap();
    let data_arg = data.to_str().unwrap();
    restic(
        &repo,
        &["backup", "--host", "node-a", "--tag", "first", data_arg],
    );
    fs::write(data.join("docs/readme.txt"), "changed\n").unwrap();
    restic(
        &repo,
        &["backup", "--host", "node-b", "--tag", "second,x", data_arg],
    );
    Some((repo, data))
}

#[test]
fn snapshots_ls_cat_restore_and_check_read_restic_repositories() {
    for version in ["1", "2"] {
        let Some((repo, data)) = restic_repo(version) else {
            return;
        };
        // snapshots --json: restic's IDs, times, trees, hosts and tags.
        let ours = repo.json(&["snapshots"]);
        let theirs: Value =
            serde_json::from_slice(&restic(&repo, &["snapshots", "--json"])).unwrap();
        let (ours, theirs) = (ours.as_array().unwrap(), theirs.as_array().unwrap());
        assert_eq!(ours.len(), 2);
        for (ours, theirs) in ours.iter().zip(theirs) {
            for field in ["id", "short_id", "tree", "hostname", "paths", "tags"] {
                assert_eq!(ours[field], theirs[field], "{field}");
            }
            let time = |v: &Value| {
                v["time"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
            };
            assert_eq!(time(ours), time(theirs));
        }
        // The table lists both, and nothing is said about key files Arca's own
        // format could not read.
        let run = repo.ok(&["snapshots"]);
        assert!(!run.stderr.contains("key file"), "{run}");
        let table = run.stdout;
        assert!(
            table.contains("node-a") && table.contains("second,x") && table.contains("2 snapshots"),
            "{table}"
        );

        // ls: the same paths as restic's ls.
        let latest = ours[1]["id"].as_str().unwrap();
        let ours_ls: Vec<String> = repo
            .ok(&["ls", latest])
            .stdout
            .lines()
            .map(str::to_owned)
            .collect();
        let theirs_ls: Vec<String> = String::from_utf8(restic(&repo, &["ls", latest]))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(str::to_owned)
            .collect();
        assert_eq!(ours_ls, theirs_ls);
        let long = repo.ok(&["ls", "--long", "latest"]).stdout;
        assert!(
            long.contains("lrwxrwxrwx") && long.contains("-> docs/readme.txt"),
            "{long}"
        );

        // cat: config, snapshot, an index file, a pack header, a key file.
        let config = repo.json(&["cat", "config"]);
        assert_eq!(config["version"].as_u64().unwrap().to_string(), version);
        let snapshot = repo.json(&["cat", "snapshot", &latest[..8]]);
        assert_eq!(snapshot["id"], latest);
        let index_name = fs::read_dir(Path::new(&repo.url).join("index"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        let index = repo.json(&["cat", "index", index_name.to_str().unwrap()]);
        let pack = index["packs"][0]["id"].as_str().unwrap().to_owned();
        let header = repo.json(&["cat", "pack", &pack[..10]]);
        assert_eq!(
            header["blobs"].as_array().unwrap().len(),
            index["packs"][0]["blobs"].as_array().unwrap().len()
        );
        let key_name = fs::read_dir(Path::new(&repo.url).join("keys"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        assert_eq!(
            repo.json(&["cat", "key", key_name.to_str().unwrap()])["kdf"],
            "scrypt"
        );

        // restore: the same tree as restic's restore, and as the source.
        let ours_dir = repo.path("restore-arca");
        let theirs_dir = repo.path("restore-restic");
        let summary = repo.json_summary(&[
            "restore",
            "latest",
            "--target",
            ours_dir.to_str().unwrap(),
            "--verify",
        ]);
        assert_eq!(summary["message_type"], "summary");
        assert_eq!(summary["snapshot_id"], latest);
        assert_eq!(summary["files_verified"], 4);
        restic(
            &repo,
            &["restore", latest, "--target", theirs_dir.to_str().unwrap()],
        );
        assert_same_tree(&restored(&theirs_dir, &data), &restored(&ours_dir, &data));
        assert_same_tree(&data, &restored(&ours_dir, &data));
        // --include restores only what matches (and its parents).
        let partial = repo.path("restore-partial");
        repo.ok(&[
            "restore",
            "latest",
            "--target",
            partial.to_str().unwrap(),
            "--include",
            "deep",
        ]);
        assert!(
            restored(&partial, &data)
                .join("docs/deep/notes.md")
                .exists()
        );
        assert!(!restored(&partial, &data).join("noise.bin").exists());

        // check, and check --read-data finds a damaged pack.
        let report = repo.json_summary(&["check", "--read-data"]);
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["snapshots_checked"], 2);
        let packs_dir = Path::new(&repo.url).join("data");
        let mut packs: Vec<_> = fs::read_dir(&packs_dir)
            .unwrap()
            .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
        let largest = packs.last().unwrap();
        let mut bytes = fs::read(largest).unwrap();
        bytes[40] ^= 1;
        fs::set_permissions(largest, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        fs::write(largest, &bytes).unwrap();
        let damaged = repo.run(&["check", "--read-data"]);
        assert_eq!(damaged.code, Some(1), "{damaged}");
        assert!(damaged.stdout.contains("is damaged"), "{damaged}");
    }
}

#[test]
fn wrong_password_exits_12_and_backup_points_at_migration() {
    let Some((repo, data)) = restic_repo("2") else {
        return;
    };
    let mut cmd = repo.command(&["snapshots"]);
    cmd.env("ARCA_PASSWORD", "not-the-password");
    let wrong = Run::of(cmd);
    assert_eq!(wrong.code, Some(12), "{wrong}");
    assert!(wrong.stderr.contains("wrong password"), "{wrong}");

    let backup = repo.run(&["backup", data.to_str().unwrap()]);
    assert_eq!(backup.code, Some(1), "{backup}");
    assert!(backup.stderr.contains("is a restic repository"), "{backup}");
    assert!(backup.stderr.contains("arca copy --from-repo"), "{backup}");
    // Nothing was written into the restic repository.
    let snapshots: Value =
        serde_json::from_slice(&restic(&repo, &["snapshots", "--json"])).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 2);
}
