//! End-to-end tests of `arca forget` and the everyday verbs (tag, stats,
//! diff, find, dump): the real executable against a real local repository
//! and, when `ARCA_TEST_S3_ENDPOINT` is set, a real S3 server.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::{Repo, noise, on_every_backend};

on_every_backend!(
    forget_by_policy_keeps_restic_buckets,
    forget_by_id_and_bad_input,
    tag_rewrites_snapshots,
    stats_diff_find_dump,
);

/// Backs up `data` at `time` (RFC 3339) on `host` with `tags`; returns the ID.
fn backup_at(repo: &Repo, data: &Path, time: &str, host: &str, tags: &str) -> String {
    let mut args = vec![
        "backup",
        data.to_str().unwrap(),
        "--time",
        time,
        "--host",
        host,
    ];
    if !tags.is_empty() {
        args.extend(["--tag", tags]);
    }
    let summary = repo.json_summary(&args);
    summary["snapshot_id"].as_str().unwrap().to_string()
}

fn snapshot_ids(repo: &Repo) -> Vec<String> {
    let list = repo.json(&["snapshots"]);
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn ids_of(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn forget_by_policy_keeps_restic_buckets(repo: &Repo) {
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), "one").unwrap();
    repo.ok(&["init"]);
    // Host a: three snapshots on 1 March (two in one day), one on 2 March.
    let a1 = backup_at(repo, &data, "2026-03-01T08:00:00Z", "a", "");
    let a2 = backup_at(repo, &data, "2026-03-01T20:00:00Z", "a", "");
    let a3 = backup_at(repo, &data, "2026-03-02T08:00:00Z", "a", "");
    let a4 = backup_at(repo, &data, "2026-03-03T08:00:00Z", "a", "important");
    // Host b: one snapshot, its own group.
    let b1 = backup_at(repo, &data, "2026-03-01T09:00:00Z", "b", "");

    // A dry run prints the plan and removes nothing.
    let plan = repo.json(&["forget", "--keep-daily", "2", "--dry-run"]);
    let groups = plan.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{plan}");
    let a = &groups[0];
    assert_eq!(a["host"], "a");
    assert_eq!(a["paths"][0], data.to_str().unwrap());
    assert!(a["tags"].is_null());
    assert_eq!(ids_of(&a["keep"]), sorted(vec![a4.clone(), a3.clone()]));
    assert_eq!(ids_of(&a["remove"]), sorted(vec![a1.clone(), a2.clone()]));
    // Reasons come in the order of `keep` (newest first) with restic's words.
    assert_eq!(a["reasons"][0]["snapshot"]["id"], a4.as_str());
    assert_eq!(a["reasons"][0]["matches"][0], "daily snapshot");
    assert_eq!(a["keep"][0]["short_id"], &a4[..8]);
    assert_eq!(groups[1]["host"], "b");
    assert_eq!(ids_of(&groups[1]["keep"]), vec![b1.clone()]);
    assert_eq!(snapshot_ids(repo).len(), 5, "a dry run removed something");

    // With budget left, the oldest snapshot of the group is kept too,
    // although a newer one already stands for its day.
    let plan = repo.json(&["forget", "--keep-daily", "5", "--host", "a", "--dry-run"]);
    let a = &plan.as_array().unwrap()[0];
    assert_eq!(ids_of(&a["remove"]), Vec::<String>::new());
    assert_eq!(a["reasons"][2]["snapshot"]["id"], a2.as_str());
    assert_eq!(a["reasons"][2]["matches"][0], "daily snapshot");
    let oldest = a["reasons"].as_array().unwrap().last().unwrap();
    assert_eq!(oldest["snapshot"]["id"], a1.as_str());
    assert_eq!(oldest["matches"][0], "oldest daily snapshot");

    // Human output: the policy, the groups, the reasons column.
    let human = repo.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--keep-tag",
        "important",
        "--dry-run",
    ]);
    assert!(
        human
            .stdout
            .contains("Applying Policy: keep 1 latest snapshots"),
        "{human}"
    );
    assert!(human.stdout.contains("has tags [important]"), "{human}");
    assert!(
        human
            .stdout
            .contains("Would have removed the following snapshots"),
        "{human}"
    );

    // The real run removes exactly the planned snapshots.
    let done = repo.json(&["forget", "--keep-daily", "2"]);
    assert_eq!(done.as_array().unwrap().len(), 2);
    assert_eq!(snapshot_ids(repo), sorted(vec![a3, a4.clone(), b1.clone()]));

    // Grouping off: one group, keep-last 1 keeps only the newest overall.
    let plan = repo.json(&["forget", "--keep-last", "1", "--group-by", "", "--dry-run"]);
    let only = &plan.as_array().unwrap()[0];
    assert!(only["host"].is_null() && only["paths"].is_null());
    assert_eq!(ids_of(&only["keep"]), vec![a4]);
    assert_eq!(only["remove"].as_array().unwrap().len(), 2);
}

fn forget_by_id_and_bad_input(repo: &Repo) {
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), "one").unwrap();
    repo.ok(&["init"]);
    let first = backup_at(repo, &data, "2026-03-01T08:00:00Z", "a", "");
    let second = backup_at(repo, &data, "2026-03-02T08:00:00Z", "a", "");
    let all = sorted(vec![first.clone(), second.clone()]);

    // An unknown ID among known ones: a clear error, nothing removed.
    let run = repo.run(&["forget", &first[..10], "deadbeef"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("no snapshot matches \"deadbeef\""),
        "{run}"
    );
    assert_eq!(snapshot_ids(repo), all);

    // Negative counts are refused as restic refuses them.
    let run = repo.run(&["forget", "--keep-last", "-1"]);
    assert_ne!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains("negative values are not allowed"),
        "{run}"
    );
    let run = repo.run(&["forget", "--keep-within", "-1d"]);
    assert_ne!(run.code, Some(0), "{run}");
    assert!(
        run.stderr.contains("negative values are not allowed"),
        "{run}"
    );
    let run = repo.run(&["forget", "--keep-within", "1w"]);
    assert_ne!(run.code, Some(0), "{run}");
    assert!(run.stderr.contains("invalid unit 'w'"), "{run}");

    // IDs with a policy or a filter conflict.
    let run = repo.run(&["forget", &first, "--keep-last", "1"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr
            .contains("snapshot IDs cannot be used together with --keep-*"),
        "{run}"
    );
    let run = repo.run(&["forget", &first, "--host", "a"]);
    assert!(
        run.stderr.contains("cannot be used together with --host"),
        "{run}"
    );

    // No policy at all: refused, nothing removed.
    let run = repo.run(&["forget"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("no policy was specified"), "{run}");
    let run = repo.run(&["forget", "--unsafe-allow-remove-all"]);
    assert!(
        run.stderr
            .contains("--unsafe-allow-remove-all cannot be used together"),
        "{run}"
    );
    // A policy that would empty a group is refused.
    let run = repo.run(&["forget", "--keep-tag", "nothing-has-this"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("refusing to delete the last snapshot"),
        "{run}"
    );
    assert_eq!(snapshot_ids(repo), all);

    // By ID (prefix), with --dry-run first.
    let plan = repo.json(&["forget", &first[..12], "--dry-run"]);
    assert_eq!(ids_of(&plan[0]["remove"]), vec![first.clone()]);
    assert_eq!(snapshot_ids(repo), all);
    repo.ok(&["forget", &first[..12]]);
    assert_eq!(snapshot_ids(repo), vec![second.clone()]);

    // The remaining snapshot still restores.
    let target = repo.path("restored");
    repo.ok(&["restore", &second, "--target", target.to_str().unwrap()]);
}

fn tag_rewrites_snapshots(repo: &Repo) {
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("file"), "one").unwrap();
    repo.ok(&["init"]);
    let old = backup_at(repo, &data, "2026-03-01T08:00:00Z", "a", "x,y");

    let run = repo.run(&["tag", "--set", "a", "--add", "b", &old]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr
            .contains("--set cannot be used together with --add"),
        "{run}"
    );
    let run = repo.run(&["tag", &old]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("nothing to do"), "{run}");

    let changed = repo.json(&["tag", "--add", "z", "--remove", "x", &old]);
    assert_eq!(
        changed["changed_snapshots"].as_array().unwrap().len(),
        1,
        "{changed}"
    );
    let snapshots = repo.json(&["snapshots"]);
    let list = snapshots.as_array().unwrap();
    assert_eq!(list.len(), 1, "the old snapshot file is gone");
    let new = &list[0];
    assert_ne!(new["id"], old.as_str());
    assert_eq!(new["tags"], serde_json::json!(["y", "z"]));
    assert_eq!(new["original"], old.as_str());

    // A second rewrite keeps the first original.
    let new_id = new["id"].as_str().unwrap().to_string();
    repo.ok(&["tag", "--set", "only", &new_id]);
    let list = repo.json(&["snapshots"]);
    assert_eq!(list[0]["tags"], serde_json::json!(["only"]));
    assert_eq!(list[0]["original"], old.as_str());
    // Nothing to change: nothing rewritten.
    let unchanged = repo.json(&["tag", "--add", "only"]);
    assert_eq!(unchanged["changed_snapshots"].as_array().unwrap().len(), 0);
}

fn stats_diff_find_dump(repo: &Repo) {
    let data = repo.path("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("keep.txt"), "unchanged\n").unwrap();
    fs::write(data.join("change.txt"), "before\n").unwrap();
    fs::write(data.join("gone.txt"), "removed later\n").unwrap();
    fs::write(data.join("sub/big.bin"), noise(2 * 1024 * 1024 + 17, 3)).unwrap();
    repo.ok(&["init"]);
    let first = backup_at(repo, &data, "2026-03-01T08:00:00Z", "a", "");
    fs::write(data.join("change.txt"), "after, longer\n").unwrap();
    fs::remove_file(data.join("gone.txt")).unwrap();
    fs::write(data.join("sub/new.txt"), "new\n").unwrap();
    let second = backup_at(repo, &data, "2026-03-02T08:00:00Z", "a", "");
    let root = data.to_str().unwrap();

    // stats: restore-size counts every file's bytes.
    let stats = repo.json(&["stats", &second]);
    let expected = 10 + 14 + 4 + 2 * 1024 * 1024 + 17;
    assert_eq!(stats["total_size"], expected, "{stats}");
    assert_eq!(stats["snapshots_count"], 1);
    let raw = repo.json(&["stats", "--mode", "raw-data"]);
    assert_eq!(raw["snapshots_count"], 2);
    assert!(raw["total_blob_count"].as_u64().unwrap() > 3, "{raw}");
    let by_contents = repo.json(&["stats", "--mode", "files-by-contents"]);
    assert!(
        by_contents["total_file_count"].as_u64().unwrap() >= 5,
        "{by_contents}"
    );
    let run = repo.run(&["stats", "--mode", "everything"]);
    assert_ne!(run.code, Some(0), "{run}");

    // diff: restic's + - M lines.
    let diff = repo.ok(&["diff", &first, &second]);
    let lines: Vec<&str> = diff.stdout.lines().collect();
    assert!(
        lines.contains(&format!("M    {root}/change.txt").as_str()),
        "{diff}"
    );
    assert!(
        lines.contains(&format!("-    {root}/gone.txt").as_str()),
        "{diff}"
    );
    assert!(
        lines.contains(&format!("+    {root}/sub/new.txt").as_str()),
        "{diff}"
    );
    assert!(!diff.stdout.contains("keep.txt"), "{diff}");
    let json = repo.run(&["--json", "diff", &first, &second]);
    let messages = json.json_lines();
    let changes: Vec<(String, String)> = messages
        .iter()
        .filter(|m| m["message_type"] == "change")
        .map(|m| {
            (
                m["modifier"].as_str().unwrap().into(),
                m["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        changes.contains(&("+".into(), format!("{root}/sub/new.txt"))),
        "{json}"
    );
    let statistics = messages.last().unwrap();
    assert_eq!(statistics["message_type"], "statistics");
    assert_eq!(statistics["added"]["files"], 1);
    assert_eq!(statistics["removed"]["files"], 1);
    assert_eq!(statistics["changed_files"], 1);

    // find: a glob on names, per snapshot.
    let found = repo.json(&["find", "*.txt", "--snapshot", &second]);
    let matches = found[0]["matches"].as_array().unwrap();
    let mut paths: Vec<&str> = matches
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            format!("{root}/change.txt"),
            format!("{root}/keep.txt"),
            format!("{root}/sub/new.txt")
        ]
    );
    let everywhere = repo.json(&["find", "gone.txt"]);
    assert_eq!(
        everywhere.as_array().unwrap().len(),
        1,
        "only the first snapshot has it"
    );
    assert_eq!(everywhere[0]["snapshot"], first.as_str());

    // dump: a file's bytes exactly, a directory as tar.
    let dumped = repo
        .command(&["dump", &second, &format!("{root}/sub/big.bin")])
        .output()
        .unwrap();
    assert!(dumped.status.success());
    assert_eq!(dumped.stdout, fs::read(data.join("sub/big.bin")).unwrap());
    let tar_file = repo.path("sub.tar");
    repo.ok(&[
        "dump",
        &second,
        &format!("{root}/sub"),
        "--target",
        tar_file.to_str().unwrap(),
    ]);
    let unpacked = repo.path("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(unpacked.join("sub/big.bin")).unwrap(),
        fs::read(data.join("sub/big.bin")).unwrap()
    );
    assert_eq!(fs::read(unpacked.join("sub/new.txt")).unwrap(), b"new\n");
    let run = repo.run(&["dump", &second, "/no/such/path"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("no such file or directory in snapshot"),
        "{run}"
    );
}
