//! Migration of restic repositories into Arca ones (`arca copy --from-repo
//! <restic repository>`), with repositories restic itself wrote (Debian's
//! `restic`, installed by `cargo xtask test`) in every format version and
//! compression mode: every migrated snapshot restores to what `restic
//! restore` gives for the original, byte for byte and in its metadata; a
//! second run copies nothing; a run killed with SIGKILL and run again
//! finishes. Without `restic` the tests are skipped with a note, except
//! under `CI=true`, where that is a failure.

#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support;
use crate::support::{Repo, assert_same_tree, noise, restored};

/// The restic repository's own password (the Arca one is `support::PASSWORD`).
const RESTIC_PASSWORD: &str = "restic-side-password-19c2";

/// Whether restic is installed; without it the test is skipped, except
/// under CI, where the project's own files install it.
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

fn restic(repo: &Path, args: &[&str]) -> Vec<u8> {
    restic_with(repo, &["--quiet"], args)
}

fn restic_with(repo: &Path, options: &[&str], args: &[&str]) -> Vec<u8> {
    let out = Command::new("restic")
        .args(["--no-cache", "--repo", repo.to_str().unwrap()])
        .args(options)
        .args(args)
        .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
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

/// `arca --json copy --from-repo <restic> ARGS` into `into`.
fn migrate(into: &Repo, restic_repo: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        "--json",
        "copy",
        "--from-repo",
        restic_repo.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut cmd = into.command(&all);
    cmd.env("RESTIC_FROM_PASSWORD", RESTIC_PASSWORD);
    let run = support::Run::of(cmd);
    assert_eq!(run.code, Some(0), "{run}");
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run}"))
}

/// Fills `data` with what restic must carry over: nested directories,
/// incompressible and compressible files, an empty file, a symlink, two
/// names of one file, a fifo, odd modes, and an xattr if the file system
/// takes one. Returns whether it took the xattr.
fn fill(data: &Path) -> bool {
    fs::create_dir_all(data.join("docs/deep")).unwrap();
    fs::write(data.join("docs/readme.txt"), "hello restic\n".repeat(5000)).unwrap();
    fs::write(data.join("docs/deep/notes.md"), "# notes\n").unwrap();
    fs::write(data.join("noise.bin"), noise(3 << 20, 3)).unwrap();
    fs::write(data.join("empty"), "").unwrap();
    std::os::unix::fs::symlink("docs/readme.txt", data.join("link")).unwrap();
    fs::write(data.join("shared"), noise(100_000, 9)).unwrap();
    fs::hard_link(data.join("shared"), data.join("docs/also-shared")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(data.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    fs::set_permissions(
        data.join("docs/deep/notes.md"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    xattr::set(data.join("docs/readme.txt"), "user.arca-test", b"kept").is_ok()
}

/// A restic repository (`version`, `compression`) with four snapshots of a
/// changing tree, by two hosts with different tags.
fn restic_repo(dir: &Path, version: &str, compression: Option<&str>) -> (PathBuf, PathBuf, bool) {
    let repo = dir.join("restic-repo");
    let data = dir.join("data");
    let mut global = vec![];
    if let Some(compression) = compression {
        global.extend(["--compression", compression]);
    }
    let with = |args: &[&str]| {
        let mut all = global.clone();
        all.extend_from_slice(args);
        restic(&repo, &all);
    };
    restic(&repo, &["init", "--repository-version", version]);
    let xattrs = fill(&data);
    let data_arg = data.to_str().unwrap();
    with(&["backup", "--host", "node-a", "--tag", "first", data_arg]);
    fs::write(data.join("docs/readme.txt"), "changed\n".repeat(300)).unwrap();
    with(&["backup", "--host", "node-b", "--tag", "second,x", data_arg]);
    // Half of the large file changes: the rest deduplicates.
    let mut big = noise(3 << 20, 3);
    big[..1 << 20].copy_from_slice(&noise(1 << 20, 4));
    fs::write(data.join("noise.bin"), big).unwrap();
    with(&["backup", "--host", "node-a", data_arg]);
    fs::remove_file(data.join("empty")).unwrap();
    with(&["backup", "--host", "node-a", "--tag", "last", data_arg]);
    (repo, data, xattrs)
}

/// Paths below `root` with their metadata, relative to `root`.
fn entries(root: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push((path.strip_prefix(root).unwrap().to_path_buf(), meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts what `assert_same_tree` does not: modification times, which
/// names share an inode (hardlinks), and extended attributes.
fn assert_same_metadata(expected: &Path, actual: &Path) {
    let (want, got) = (entries(expected), entries(actual));
    assert_eq!(
        want.iter().map(|e| &e.0).collect::<Vec<_>>(),
        got.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    let mut inodes_want: HashMap<u64, Vec<&PathBuf>> = HashMap::new();
    let mut inodes_got: HashMap<u64, Vec<&PathBuf>> = HashMap::new();
    for ((path, want), (_, got)) in want.iter().zip(&got) {
        assert_eq!(want.file_type(), got.file_type(), "{}", path.display());
        if !want.is_symlink() {
            assert_eq!(
                (want.mtime(), want.mtime_nsec()),
                (got.mtime(), got.mtime_nsec()),
                "mtime of {}",
                path.display()
            );
            let attrs = |root: &Path| -> Vec<(String, Vec<u8>)> {
                let file = root.join(path);
                let mut names: Vec<_> = xattr::list(&file)
                    .map(|names| names.filter_map(|n| n.into_string().ok()).collect())
                    .unwrap_or_default();
                names.retain(|n: &String| n.starts_with("user."));
                names.sort();
                names
                    .into_iter()
                    .map(|n| {
                        (
                            n.clone(),
                            xattr::get(&file, &n).unwrap().unwrap_or_default(),
                        )
                    })
                    .collect()
            };
            assert_eq!(
                attrs(expected),
                attrs(actual),
                "xattrs of {}",
                path.display()
            );
        }
        if want.is_file() {
            inodes_want.entry(want.ino()).or_default().push(path);
            inodes_got.entry(got.ino()).or_default().push(path);
        }
    }
    fn groups(map: HashMap<u64, Vec<&PathBuf>>) -> Vec<Vec<&PathBuf>> {
        let mut groups: Vec<Vec<&PathBuf>> = map.into_values().filter(|g| g.len() > 1).collect();
        groups.sort();
        groups
    }
    let (want_links, got_links) = (groups(inodes_want), groups(inodes_got));
    assert!(!want_links.is_empty(), "restic restored no hardlinks");
    assert_eq!(want_links, got_links, "hardlinked names");
}

#[test]
fn every_format_migrates_and_restores_like_restic() {
    if !restic_installed() {
        return;
    }
    for (version, compression) in [
        ("1", None),
        ("2", Some("off")),
        ("2", Some("auto")),
        ("2", Some("max")),
    ] {
        let case = format!("version {version}, compression {compression:?}");
        let arca = Repo::local();
        arca.ok(&["init"]);
        let (restic_repo, data, xattrs) = restic_repo(arca.tmp.path(), version, compression);
        let theirs: Value =
            serde_json::from_slice(&restic(&restic_repo, &["snapshots", "--json"])).unwrap();
        let theirs = theirs.as_array().unwrap();
        assert_eq!(theirs.len(), 4);

        let report = migrate(&arca, &restic_repo, &[]);
        assert_eq!(
            report["copied"].as_array().unwrap().len(),
            4,
            "{case}: {report}"
        );
        assert!(report["data_blobs"].as_u64().unwrap() > 0);

        // Time, host, paths, tags and the original ID carried over.
        let ours = arca.json(&["snapshots"]);
        let ours = ours.as_array().unwrap();
        assert_eq!(ours.len(), 4);
        let mut by_original: HashMap<String, &Value> = HashMap::new();
        for snapshot in ours {
            let original = snapshot["original"].as_str().unwrap_or_else(|| {
                panic!("{case}: a migrated snapshot names its original: {snapshot}")
            });
            by_original.insert(original.to_owned(), snapshot);
        }
        let time = |v: &Value| {
            v["time"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        };
        for original in theirs {
            let id = original["id"].as_str().unwrap();
            let migrated = by_original[id];
            for field in ["hostname", "paths", "username"] {
                assert_eq!(migrated[field], original[field], "{case}: {field}");
            }
            // restic writes no tags as null, Arca's JSON as [].
            let tags = |v: &Value| v["tags"].as_array().cloned().unwrap_or_default();
            assert_eq!(tags(migrated), tags(original), "{case}: tags");
            assert_eq!(time(migrated), time(original), "{case}: time");
        }

        // The Arca repository is whole.
        let check = arca.json_summary(&["check", "--read-data"]);
        assert_eq!(check["ok"], true, "{case}: {check}");

        // Every migrated snapshot restores as restic restores its original.
        for original in theirs {
            let id = original["id"].as_str().unwrap();
            let migrated = by_original[id]["id"].as_str().unwrap();
            let ours_dir = arca.path(&format!("arca-{}", &id[..8]));
            let theirs_dir = arca.path(&format!("restic-{}", &id[..8]));
            arca.ok(&["restore", migrated, "--target", ours_dir.to_str().unwrap()]);
            restic(
                &restic_repo,
                &["restore", id, "--target", theirs_dir.to_str().unwrap()],
            );
            let (theirs_root, ours_root) =
                (restored(&theirs_dir, &data), restored(&ours_dir, &data));
            assert_same_tree(&theirs_root, &ours_root);
            assert_same_metadata(&theirs_root, &ours_root);
        }
        if xattrs {
            let latest = arca.path("arca-latest");
            arca.ok(&["restore", "latest", "--target", latest.to_str().unwrap()]);
            let value = xattr::get(
                restored(&latest, &data).join("docs/readme.txt"),
                "user.arca-test",
            )
            .unwrap();
            assert_eq!(value.as_deref(), Some(&b"kept"[..]), "{case}");
        }

        // A second run copies nothing.
        let again = migrate(&arca, &restic_repo, &[]);
        assert!(again["copied"].as_array().unwrap().is_empty(), "{again}");
        assert_eq!(again["skipped"].as_array().unwrap().len(), 4, "{again}");
        assert_eq!(again["data_blobs"], 0);
        assert_eq!(arca.json(&["snapshots"]).as_array().unwrap().len(), 4);
    }
}

#[test]
fn filtered_migration_copies_only_what_matches_and_dedups_with_arca_backups() {
    if !restic_installed() {
        return;
    }
    let arca = Repo::local();
    arca.ok(&["init"]);
    let (restic_repo, data, _) = restic_repo(arca.tmp.path(), "2", Some("auto"));
    let tagged = migrate(&arca, &restic_repo, &["--tag", "second"]);
    assert_eq!(tagged["copied"].as_array().unwrap().len(), 1, "{tagged}");
    let hosts = migrate(&arca, &restic_repo, &["--host", "node-a"]);
    assert_eq!(hosts["copied"].as_array().unwrap().len(), 3, "{hosts}");
    let snapshots = arca.json(&["snapshots"]);
    assert_eq!(snapshots.as_array().unwrap().len(), 4);

    // The files were re-chunked as `arca backup` chunks them: backing up
    // the data the last snapshot holds adds no data blob.
    let backup = arca.json_summary(&["backup", data.to_str().unwrap()]);
    assert_eq!(backup["data_blobs"], 0, "{backup}");
}

#[test]
fn a_migration_killed_with_sigkill_finishes_when_run_again() {
    if !restic_installed() {
        return;
    }
    let arca = Repo::local();
    arca.ok(&["init"]);
    let restic_repo = arca.path("restic-repo");
    let data = arca.path("data");
    fs::create_dir_all(&data).unwrap();
    // 64 MiB that neither compresses nor deduplicates.
    for i in 0..8u64 {
        fs::write(data.join(format!("part-{i}.bin")), noise(8 << 20, 60 + i)).unwrap();
    }
    restic(&restic_repo, &["init", "--repository-version", "2"]);
    restic(&restic_repo, &["backup", data.to_str().unwrap()]);

    let index_dir = arca.local_dir.as_ref().unwrap().join("index");
    let index_files = || {
        fs::read_dir(&index_dir)
            .map(|dir| {
                dir.flat_map(|e| {
                    let path = e.unwrap().path();
                    if path.is_dir() {
                        fs::read_dir(path)
                            .unwrap()
                            .map(|e| e.unwrap().path())
                            .collect()
                    } else {
                        vec![path]
                    }
                })
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy();
                    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .count()
            })
            .unwrap_or(0)
    };
    let indexed_before = index_files();
    // Slowed to 16 MiB/s, so the migration is still running when its first
    // index file appears.
    let mut cmd = arca.command(&[
        "--limit-upload",
        "16384",
        "copy",
        "--from-repo",
        restic_repo.to_str().unwrap(),
    ]);
    cmd.env("RESTIC_FROM_PASSWORD", RESTIC_PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    loop {
        if index_files() > indexed_before {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the migration ended ({status}) before it wrote an index file");
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
    // Nothing half-copied is visible as a snapshot.
    assert!(arca.json(&["snapshots"]).as_array().unwrap().is_empty());

    let resumed = migrate(&arca, &restic_repo, &[]);
    assert_eq!(resumed["copied"].as_array().unwrap().len(), 1, "{resumed}");
    let check = arca.json_summary(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    let target = arca.path("restored");
    arca.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&data, &restored(&target, &data));
    let again = migrate(&arca, &restic_repo, &[]);
    assert!(again["copied"].as_array().unwrap().is_empty(), "{again}");
}

/// `arca ARGS` on the restic repository itself.
fn on_restic(arca: &Repo, restic_repo: &Path, args: &[&str]) -> support::Run {
    let mut cmd = arca.command(args);
    cmd.env("ARCA_REPOSITORY", restic_repo)
        .env("ARCA_PASSWORD", RESTIC_PASSWORD);
    let run = support::Run::of(cmd);
    assert_eq!(run.code, Some(0), "arca {args:?} on restic:\n{run}");
    run
}

#[test]
fn find_diff_stats_and_dump_read_restic_repositories_like_migrated_ones() {
    if !restic_installed() {
        return;
    }
    let arca = Repo::local();
    arca.ok(&["init"]);
    let (restic_repo, data, _) = restic_repo(arca.tmp.path(), "2", Some("auto"));
    migrate(&arca, &restic_repo, &[]);
    let theirs: Value =
        serde_json::from_slice(&restic(&restic_repo, &["snapshots", "--json"])).unwrap();
    let restic_ids: Vec<String> = theirs
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let ours = arca.json(&["snapshots"]);
    let arca_id = |restic_id: &str| -> String {
        ours.as_array()
            .unwrap()
            .iter()
            .find(|s| s["original"] == restic_id)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (&restic_ids[0], &restic_ids[1]);

    // find: the same matches, snapshot by snapshot.
    let find_on = |run: support::Run| -> Vec<Value> {
        let all: Value = serde_json::from_str(run.stdout.trim()).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .map(|s| s["matches"].clone())
            .collect()
    };
    let on_restic_find = find_on(on_restic(
        &arca,
        &restic_repo,
        &["--json", "find", "*.md", "shared"],
    ));
    let on_arca_find = find_on(arca.ok(&["--json", "find", "*.md", "shared"]));
    assert_eq!(on_restic_find.len(), 4);
    assert_eq!(on_restic_find, on_arca_find);
    let text = on_restic(&arca, &restic_repo, &["find", "notes.md"]).stdout;
    assert!(text.contains("/docs/deep/notes.md"), "{text}");

    // diff: the same changes (block counts differ: the files were re-chunked).
    let changes = |lines: Vec<Value>| -> (Vec<Value>, Value) {
        let (changes, stats): (Vec<Value>, Vec<Value>) = lines
            .into_iter()
            .partition(|l| l["message_type"] == "change");
        let stats = &stats[0];
        let counts = serde_json::json!([
            stats["changed_files"],
            stats["added"]["files"],
            stats["added"]["dirs"],
            stats["removed"]["files"],
        ]);
        (changes, counts)
    };
    let on_restic_diff =
        changes(on_restic(&arca, &restic_repo, &["--json", "diff", first, second]).json_lines());
    let on_arca_diff = changes(
        arca.ok(&["--json", "diff", &arca_id(first), &arca_id(second)])
            .json_lines(),
    );
    assert!(!on_restic_diff.0.is_empty());
    assert_eq!(on_restic_diff, on_arca_diff);
    // And the changed paths restic itself reports.
    let restic_diff =
        String::from_utf8(restic_with(&restic_repo, &[], &["diff", first, second])).unwrap();
    for change in &on_restic_diff.0 {
        let line = format!(
            "{}    {}",
            change["modifier"].as_str().unwrap(),
            change["path"].as_str().unwrap()
        );
        assert!(
            restic_diff.contains(&line),
            "{line:?} not in restic's diff:\n{restic_diff}"
        );
    }

    // stats: restore size and file counts as on the migrated repository and as restic says.
    let size = |v: &Value| (v["total_size"].clone(), v["total_file_count"].clone());
    let on_restic_stats: Value = serde_json::from_str(
        on_restic(
            &arca,
            &restic_repo,
            &["--json", "stats", "--mode", "restore-size"],
        )
        .stdout
        .trim(),
    )
    .unwrap();
    let on_arca_stats = arca.json(&["stats", "--mode", "restore-size"]);
    assert_eq!(size(&on_restic_stats), size(&on_arca_stats));
    let restic_stats: Value = serde_json::from_slice(&restic(
        &restic_repo,
        &["stats", "--json", "--mode", "restore-size"],
    ))
    .unwrap();
    assert_eq!(size(&on_restic_stats), size(&restic_stats));
    let raw: Value = serde_json::from_str(
        on_restic(
            &arca,
            &restic_repo,
            &["--json", "stats", "--mode", "raw-data"],
        )
        .stdout
        .trim(),
    )
    .unwrap();
    assert!(raw["total_blob_count"].as_u64().unwrap() > 0, "{raw}");

    // dump: a file's bytes as restic dumps them; a directory's tar as from
    // the migrated repository.
    let file = format!("{}/noise.bin", data.display());
    let bytes_of = |mut cmd: Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let restic_command = |args: &[&str]| {
        let mut cmd = arca.command(args);
        cmd.env("ARCA_REPOSITORY", &restic_repo)
            .env("ARCA_PASSWORD", RESTIC_PASSWORD);
        cmd
    };
    let on_restic_dump = bytes_of(restic_command(&["dump", second, &file]));
    let restic_dump = restic(&restic_repo, &["dump", second, &file]);
    assert!(on_restic_dump == restic_dump, "dumped file differs");
    let dir = format!("{}/docs", data.display());
    let tar_restic = bytes_of(restic_command(&["dump", second, &dir]));
    let tar_arca = bytes_of(arca.command(&["dump", &arca_id(second), &dir]));
    assert!(
        !tar_restic.is_empty() && tar_restic == tar_arca,
        "dumped tar differs"
    );
}

#[test]
fn migration_into_an_s3_repository() {
    if !restic_installed() {
        return;
    }
    let Some(arca) = Repo::s3() else {
        return;
    };
    arca.ok(&["init"]);
    let (restic_repo, data, _) = restic_repo(arca.tmp.path(), "2", Some("auto"));
    let report = migrate(&arca, &restic_repo, &[]);
    assert_eq!(report["copied"].as_array().unwrap().len(), 4, "{report}");
    let check = arca.json_summary(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    let (ours, theirs) = (arca.path("arca"), arca.path("restic"));
    arca.ok(&["restore", "latest", "--target", ours.to_str().unwrap()]);
    restic(
        &restic_repo,
        &["restore", "latest", "--target", theirs.to_str().unwrap()],
    );
    let (theirs_root, ours_root) = (restored(&theirs, &data), restored(&ours, &data));
    assert_same_tree(&theirs_root, &ours_root);
    assert_same_metadata(&theirs_root, &ours_root);
    let again = migrate(&arca, &restic_repo, &[]);
    assert!(again["copied"].as_array().unwrap().is_empty(), "{again}");
}
