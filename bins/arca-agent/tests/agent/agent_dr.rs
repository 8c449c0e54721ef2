//! The agent's disaster-recovery actions through the real executable:
//! `drill` (pass, failing consistency command, damaged pack) and
//! replication to secondary repositories after `backup` and as
//! `replicate` (local directory, S3, and an unreachable secondary that makes
//! the run partial while the primary backup stands).

// Skipped S3 variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::Path;

use crate::support::{Job, files, fill};

/// A drill Job against `source`'s repository: scratch space as `DATA_DIR`.
fn drill_job(source: &Job) -> Job {
    let mut job = Job::local();
    for (key, value) in &source.env {
        if key != "DATA_DIR" && key != "ARCA_RESULT_PATH" {
            job.set(key, value);
        }
    }
    let scratch = job.path("scratch");
    fs::create_dir_all(scratch.join("lost+found")).unwrap();
    job.set("DATA_DIR", scratch.to_str().unwrap());
    job
}

fn total_bytes(dir: &Path) -> u64 {
    files(dir)
        .values()
        .map(|content| content.len() as u64)
        .sum()
}

#[test]
fn a_drill_of_a_good_backup_passes_within_the_rto() {
    let source = Job::local();
    fill(&source.data(), 1);
    let backup = source.ok(&["backup"]);
    let snapshot = backup.action(0)["snapshot_id"].clone();
    let mut drill = drill_job(&source);
    drill.set("ARCA_DATA_CLASS", "critical");
    drill.set("ARCA_DRILL_COMMAND", "grep -rq 'replicas: 3' .");
    let run = drill.ok(&["drill"]);
    let report = &run.report()["drill"];
    assert_eq!(report["passed"], true, "{}", run.log);
    assert_eq!(report["rto_seconds"], 900.0);
    assert_eq!(report["snapshot"], snapshot);
    assert_eq!(report["bytes_verified"], total_bytes(&source.data()));
    assert!(report["files_verified"].as_u64().unwrap() >= 4);
    assert!(report["measured_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(run.action(0)["action"], "drill");
    // The scratch volume is left as it was given: only lost+found.
    let left: Vec<_> = fs::read_dir(drill.data())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["lost+found"]);
}

#[test]
fn a_failing_consistency_command_fails_the_drill() {
    let source = Job::local();
    fill(&source.data(), 1);
    source.ok(&["backup"]);
    let mut drill = drill_job(&source);
    drill.set("ARCA_DRILL_COMMAND", "echo 'orphaned rows' >&2; exit 4");
    drill.set("ARCA_RTO", "1h");
    let run = drill.run(&["drill"]);
    assert_eq!(run.code, Some(1), "{}", run.log);
    let report = run.report();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["failed_action"], "drill");
    assert_eq!(report["drill"]["passed"], false);
    assert_eq!(report["drill"]["rto_seconds"], 3600.0);
    assert!(
        report["drill"]["reason"]
            .as_str()
            .unwrap()
            .contains("exited with 4"),
        "{report}"
    );
    assert!(
        run.log.contains("orphaned rows"),
        "the command's output is logged"
    );
}

#[test]
fn a_report_after_a_failed_drill_still_runs_and_counts_it() {
    let source = Job::local();
    fill(&source.data(), 1);
    source.ok(&["backup"]);
    fill(&source.data(), 2);
    source.ok(&["backup"]);
    let mut drill = drill_job(&source);
    drill.set("ARCA_DATA_CLASS", "critical");
    drill.set("ARCA_DRILL_COMMAND", "exit 4");
    let run = drill.run(&["drill", "report"]);
    assert_eq!(run.code, Some(1), "{}", run.log);
    let document = run.report();
    assert_eq!(document["failed_action"], "drill");
    assert_eq!(run.action(0)["action"], "report", "{document}");
    let report = &document["report"];
    assert_eq!(report["window_days"], 30);
    assert_eq!(report["backups"], 2, "{report}");
    assert_eq!(report["failures"], 0);
    assert_eq!(report["success_rate"], 1.0);
    assert_eq!(report["audit_intact"], true);
    // The failed drill it follows is in the audit trail, so the host is not compliant.
    assert_eq!(report["compliant"], false, "{report}");
    assert!(report["repository_bytes"].as_u64().unwrap() > 0);
    assert!(report["longest_gap_seconds"].as_f64().unwrap() >= 0.0);
}

#[test]
fn a_drill_finds_a_damaged_pack() {
    let source = Job::local();
    fill(&source.data(), 1);
    source.ok(&["backup"]);
    let mut packs = Vec::new();
    let mut stack = vec![Path::new(&source.repository).join("data")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                packs.push((fs::metadata(&path).unwrap().len(), path));
            }
        }
    }
    let (len, pack) = packs.into_iter().max().unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[(len / 2) as usize] ^= 0x40;
    fs::write(&pack, bytes).unwrap();

    let run = drill_job(&source).run(&["drill"]);
    assert_eq!(run.code, Some(13), "{}", run.log);
    let report = run.report();
    assert_eq!(report["error_class"], "corrupt");
    assert_eq!(report["drill"]["passed"], false);
    assert!(
        report["drill"]["reason"]
            .as_str()
            .unwrap()
            .contains("verification failed"),
        "{report}"
    );
}

/// A restore Job reading `repository` (a replica) into a fresh volume.
fn restore_from(repository: &str, env: &[(&str, &str)]) -> Job {
    let mut restore = Job::local();
    restore.set("RESTIC_REPOSITORY", repository);
    for (key, value) in env {
        restore.set(key, value);
    }
    restore.ok(&["restore"]);
    restore
}

/// Backs up twice with one secondary (given by `replica_env`), checking
/// the copies, the secondary's own retention, the lag, and a restore from
/// the secondary.
fn replication(replica_env: &[(&str, &str)], replica_location: &str, restore_env: &[(&str, &str)]) {
    let mut source = Job::local();
    for (key, value) in replica_env {
        source.set(key, value);
    }
    source.set("ARCA_REPLICA_0_NAME", "dr-site");
    source.set("ARCA_REPLICA_0_FORGET_OPTIONS", "--keep-last 1");
    fill(&source.data(), 1);
    let first = source.ok(&["backup"]);
    let replica = &first.report()["replicas"][0];
    assert_eq!(replica["name"], "dr-site", "{}", first.log);
    assert_eq!(replica["copied"], 1);
    assert_eq!(replica["lag_snapshots"], 0);
    assert_eq!(replica["lag_seconds"], 0.0);
    assert!(replica.get("error").is_none(), "{replica}");

    fill(&source.data(), 2);
    let second = source.ok(&["backup"]);
    assert_eq!(second.report()["replicas"][0]["copied"], 1);
    assert_eq!(second.report()["replicas"][0]["lag_snapshots"], 0);
    // Nothing new: replicate copies nothing, and the secondary's retention
    // removed the older copy without it being copied again.
    let again = source.ok(&["replicate"]);
    assert_eq!(again.action(0)["action"], "replicate");
    assert_eq!(again.report()["replicas"][0]["copied"], 0);
    assert_eq!(again.report()["replicas"][0]["lag_snapshots"], 0);

    let restored = restore_from(replica_location, restore_env);
    assert_eq!(files(&restored.data()), files(&source.data()));
}

#[test]
fn replication_to_a_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let location = tmp.path().join("dr/app");
    let location = location.to_str().unwrap();
    replication(
        &[
            ("ARCA_REPLICA_0_RESTIC_REPOSITORY", location),
            ("ARCA_REPLICA_0_RESTIC_PASSWORD", "dr-site-password-5e2f"),
        ],
        location,
        &[("RESTIC_PASSWORD", "dr-site-password-5e2f")],
    );
}

#[test]
fn replication_to_s3() {
    let Some(bucket_job) = Job::s3() else {
        return;
    };
    let location = bucket_job.repository.clone();
    replication(
        &[
            ("ARCA_REPLICA_0_RESTIC_REPOSITORY", &location),
            ("ARCA_REPLICA_0_RESTIC_PASSWORD", "dr-site-password-5e2f"),
            ("ARCA_REPLICA_0_AWS_ACCESS_KEY_ID", "test"),
            ("ARCA_REPLICA_0_AWS_SECRET_ACCESS_KEY", "replica-secret-77"),
            ("ARCA_REPLICA_0_AWS_DEFAULT_REGION", "us-east-1"),
        ],
        &location,
        &[
            ("RESTIC_PASSWORD", "dr-site-password-5e2f"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "replica-secret-77"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ],
    );
}

#[test]
fn an_unreachable_replica_makes_the_run_partial_and_keeps_the_backup() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut source = Job::local();
    let good = source.path("good-replica");
    source.set(
        "ARCA_REPLICA_0_RESTIC_REPOSITORY",
        &format!("s3:http://127.0.0.1:{port}/bucket/app"),
    );
    source.set("ARCA_REPLICA_0_RESTIC_PASSWORD", "unreachable-pw-1");
    source.set("ARCA_REPLICA_0_AWS_ACCESS_KEY_ID", "test");
    source.set("ARCA_REPLICA_0_AWS_SECRET_ACCESS_KEY", "outage-secret-31");
    source.set("ARCA_REPLICA_0_AWS_DEFAULT_REGION", "us-east-1");
    source.set("ARCA_REPLICA_1_RESTIC_REPOSITORY", good.to_str().unwrap());
    source.set("ARCA_REPLICA_1_RESTIC_PASSWORD", "good-pw-2");
    source.set("ARCA_STORAGE_RETRIES", "0");
    fill(&source.data(), 1);
    let run = source.run(&["backup"]);
    assert_eq!(run.code, Some(3), "{}", run.log);
    let report = run.report();
    assert_eq!(report["outcome"], "partial");
    assert!(report["actions"][0]["snapshot_id"].is_string());
    let replicas = report["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 2);
    assert_eq!(replicas[0]["name"], "replica-0");
    assert!(replicas[0]["error"].is_string(), "{report}");
    assert!(!run.log.contains("outage-secret-31"));
    assert_eq!(
        replicas[1]["copied"], 1,
        "the other replica still gets its copy"
    );
    // The primary backup is intact and restorable.
    let restored = restore_from(&source.repository, &[]);
    assert_eq!(files(&restored.data()), files(&source.data()));
}
