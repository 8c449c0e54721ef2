//! End-to-end tests of `arca-agent`: the real executable run as a Job runs
//! it, with the VolSync mover contract's environment, against a local
//! repository and, when `ARCA_TEST_S3_ENDPOINT` is set (as `cargo xtask
//! test` does), a real S3 server. Every run's result document is read back
//! from its result path, and every run checks that the password appears
//! neither in the pod log nor in the document.

// Skipped S3 variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::support::{Job, PASSWORD, files, fill, noise};

/// Backs up, backs up unchanged, restores into a second volume, checks and
/// verifies: the whole source and destination cycle of one Job pair.
fn full_cycle(source: &Job) {
    fill(&source.data(), 1);
    let first = source.ok(&["unlock", "backup"]);
    assert_eq!(first.action(0)["action"], "unlock");
    assert_eq!(first.action(0)["stale_locks_removed"], 0);
    let backup = first.action(1);
    assert_eq!(backup["action"], "backup");
    assert_eq!(backup["repository_initialized"], true, "{}", first.log);
    assert_eq!(backup["empty_source"], false);
    assert_eq!(backup["files_new"], 4, "lost+found is left out: {backup}");
    assert_eq!(backup["files_unreadable"], 0);
    assert!(
        backup["bytes_stored"].as_u64().unwrap() > 900_000,
        "{backup}"
    );
    assert!(
        backup["repository_bytes"].as_u64().unwrap() >= backup["bytes_stored"].as_u64().unwrap()
    );
    let first_id = backup["snapshot_id"].as_str().unwrap().to_owned();

    let again = source.ok(&["unlock", "backup"]);
    let backup = again.action(1);
    assert_eq!(backup["repository_initialized"], false);
    assert_eq!(backup["files_new"], 0);
    assert_eq!(backup["files_changed"], 0);
    assert_eq!(backup["files_unmodified"], 4, "{backup}");
    assert_eq!(backup["parent_id"], first_id.as_str());
    // Only directory listings above the volume changed (the test's own
    // files beside it): a few small tree blobs, no file content.
    assert!(backup["bytes_added"].as_u64().unwrap() < 8192, "{backup}");

    // The destination: another volume, same repository and host.
    let mut destination =
        Job::with_repository(tempfile::tempdir().unwrap(), source.repository.clone());
    destination.env.extend(
        source
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    fs::write(destination.data().join("stale"), "from an earlier restore").unwrap();
    let restored = destination.ok(&["restore"]);
    let restore = restored.action(0);
    assert_eq!(restore["outcome"], "restored", "{}", restored.log);
    assert_eq!(restore["snapshot_id"], again.action(1)["snapshot_id"]);
    assert_eq!(restore["files"], 4);
    let mut expected = files(&source.data());
    expected.insert("stale".into(), b"from an earlier restore".to_vec());
    assert_eq!(
        files(&destination.data()),
        expected,
        "without --delete, extra files stay"
    );
    assert_eq!(
        fs::read(destination.data().join("lost+found/#1234")).unwrap(),
        b"fsck debris",
        "the destination's own lost+found is left alone"
    );

    let checked = destination.ok(&["check", "verify"]);
    assert_eq!(checked.action(0)["ok"], true);
    let verify = checked.action(1);
    assert_eq!(verify["snapshot_id"], again.action(1)["snapshot_id"]);
    assert!(verify["blobs_verified"].as_u64().unwrap() >= 2, "{verify}");
    assert_eq!(verify["bytes_verified"], 600_000 + 300_000 + 3 + 12);
}

#[test]
fn full_cycle_local() {
    full_cycle(&Job::local());
}

#[test]
fn full_cycle_s3() {
    if let Some(job) = Job::s3() {
        full_cycle(&job);
    }
}

/// Three backups, then every way of choosing one, and `--delete`.
#[test]
fn restore_selects_by_time_and_previous() {
    let source = Job::local();
    let mut cut = None;
    let mut ids = Vec::new();
    for version in 1..=3 {
        fill(&source.data(), version);
        let run = source.ok(&["backup"]);
        ids.push(run.action(0)["snapshot_id"].as_str().unwrap().to_owned());
        if version == 2 {
            cut = Some(jiff::Timestamp::now());
        }
    }
    let cut = cut.unwrap().to_string();
    let restore_version = |settings: &[(&str, &str)]| -> (Value, Option<String>) {
        let mut job = Job::with_repository(tempfile::tempdir().unwrap(), source.repository.clone());
        for (key, value) in settings {
            job.set(key, value);
        }
        let run = job.ok(&["restore"]);
        let version = fs::read_to_string(job.data().join("version")).ok();
        (run.action(0).clone(), version)
    };
    let (latest, version) = restore_version(&[]);
    assert_eq!(
        (latest["snapshot_id"].as_str().unwrap(), version.as_deref()),
        (ids[2].as_str(), Some("v3\n"))
    );
    let (as_of, version) = restore_version(&[("RESTORE_AS_OF", &cut)]);
    assert_eq!(
        (as_of["snapshot_id"].as_str().unwrap(), version.as_deref()),
        (ids[1].as_str(), Some("v2\n"))
    );
    let (previous, version) = restore_version(&[("SELECT_PREVIOUS", "2")]);
    assert_eq!(
        (
            previous["snapshot_id"].as_str().unwrap(),
            version.as_deref()
        ),
        (ids[0].as_str(), Some("v1\n"))
    );
    let (both, version) = restore_version(&[("RESTORE_AS_OF", &cut), ("SELECT_PREVIOUS", "1")]);
    assert_eq!(
        (both["snapshot_id"].as_str().unwrap(), version.as_deref()),
        (ids[0].as_str(), Some("v1\n"))
    );
    let (none, version) = restore_version(&[("SELECT_PREVIOUS", "3")]);
    assert_eq!(none["outcome"], "no_snapshot");
    assert_eq!(version, None, "nothing restored");
    let (other_host, version) = restore_version(&[("RESTIC_HOST", "elsewhere")]);
    assert_eq!(other_host["outcome"], "no_snapshot");
    assert_eq!(version, None);

    // --delete: what the snapshot lacks goes, at the top and below.
    let mut job = Job::with_repository(tempfile::tempdir().unwrap(), source.repository.clone());
    fs::write(job.data().join("extra"), "x").unwrap();
    fs::create_dir_all(job.data().join("db/pages")).unwrap();
    fs::write(job.data().join("db/pages/9999"), "x").unwrap();
    job.set("RESTORE_OPTIONS", "--delete");
    let run = job.ok(&["restore"]);
    assert_eq!(run.action(0)["deleted"], 1, "the top-level extra");
    assert_eq!(files(&job.data()), files(&source.data()));
    assert!(job.data().join("lost+found").is_dir());
}

#[test]
fn empty_source_is_reported_not_backed_up() {
    let job = Job::local();
    let run = job.ok(&["backup"]);
    let backup = run.action(0);
    assert_eq!(backup["empty_source"], true);
    assert!(backup.get("snapshot_id").is_none(), "{backup}");
    assert!(
        !Path::new(&job.repository).exists(),
        "no repository created for nothing"
    );
}

#[test]
fn missing_repository_restores_nothing_and_checks_fail() {
    let job = Job::local();
    fs::write(job.data().join("keep"), "x").unwrap();
    let run = job.ok(&["unlock", "restore"]);
    assert_eq!(run.action(1)["outcome"], "no_repository");
    assert_eq!(fs::read(job.data().join("keep")).unwrap(), b"x");
    let check = job.run(&["check"]);
    assert_eq!(check.code, Some(1), "{}", check.log);
    assert_eq!(check.report()["failed_action"], "check");
    assert!(
        check.report()["error"]
            .as_str()
            .unwrap()
            .contains("not an Arca repository")
    );
}

#[test]
fn wrong_password_is_fatal() {
    let mut job = Job::local();
    fill(&job.data(), 1);
    job.ok(&["backup"]);
    job.set("RESTIC_PASSWORD", "not-the-password");
    let run = job.run(&["unlock", "backup"]);
    assert_eq!(run.code, Some(12), "{}", run.log);
    let report = run.report();
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["error_class"], "wrong_password");
    assert_eq!(report["failed_action"], "unlock");
    assert!(!run.log.contains("not-the-password"));
}

#[test]
fn storage_outage_is_retryable() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let mut job = Job::with_repository(tmp, format!("s3:http://127.0.0.1:{port}/bucket/path"));
    job.set("AWS_ACCESS_KEY_ID", "test");
    job.set("AWS_SECRET_ACCESS_KEY", "test-secret");
    job.set("AWS_DEFAULT_REGION", "us-east-1");
    job.set("ARCA_STORAGE_RETRIES", "0");
    fill(&job.data(), 1);
    let run = job.run(&["backup"]);
    assert_eq!(run.code, Some(11), "{}", run.log);
    assert_eq!(run.report()["error_class"], "retryable");
    assert!(!run.log.contains("test-secret"));
}

#[test]
fn bad_environment_is_reported_as_config() {
    let mut job = Job::local();
    job.set("FORGET_OPTIONS", "--keep-daily seven");
    let run = job.run(&["backup"]);
    assert_eq!(run.code, Some(2), "{}", run.log);
    assert_eq!(run.report()["error_class"], "config");
    assert!(
        run.report()["error"]
            .as_str()
            .unwrap()
            .contains("FORGET_OPTIONS")
    );
    let run = Job::local().run(&["backup", "sync"]);
    assert_eq!(run.code, Some(2), "{}", run.log);
    assert!(run.report()["error"].as_str().unwrap().contains("sync"));
}

#[test]
fn unreadable_files_make_a_partial_success() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let job = Job::local();
    fill(&job.data(), 1);
    let secret = job.data().join("unreadable");
    fs::write(&secret, "x").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let mut command = job.command(&["backup"]);
    if nix::unistd::geteuid().is_root() {
        // Root reads everything: run the agent as nobody, as a Job's
        // non-root securityContext would, with the test's files open to it.
        for dir in [
            job.tmp.path().to_owned(),
            job.data(),
            job.path("cache"),
            job.path("tmp"),
        ] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        }
        for dir in ["db", "db/pages", "lost+found"] {
            fs::set_permissions(job.data().join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
        command.uid(65534).gid(65534);
    }
    let output = command.output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let run = job.finished(output.status.code(), log);
    assert_eq!(run.code, Some(3), "{}", run.log);
    let report = run.report();
    assert_eq!(report["outcome"], "partial");
    assert!(report.get("error_class").is_none());
    let backup = run.action(0);
    assert_eq!(backup["files_unreadable"], 1, "{backup}");
    assert!(
        backup["unreadable_sample"][0]
            .as_str()
            .unwrap()
            .contains("unreadable"),
        "{backup}"
    );
    assert!(backup["snapshot_id"].is_string(), "the snapshot is saved");
}

/// A restore killed with SIGKILL before it finishes writes no result and
/// leaves the volume as it was; the next run cleans up and restores.
#[test]
fn killed_restore_writes_no_result() {
    let source = Job::local();
    fs::write(source.data().join("big"), noise(3 << 20, 7)).unwrap();
    source.ok(&["backup"]);
    let mut job = Job::with_repository(tempfile::tempdir().unwrap(), source.repository.clone());
    fs::write(job.data().join("old"), "before").unwrap();
    // 3 MiB at 256 KiB/s: the restore is still reading when it is killed.
    job.set("ARCA_LIMIT_DOWNLOAD", "256");
    let mut child = job.command(&["restore"]).spawn().unwrap();
    let staging = job.data().join(".arca-restore-staging/tree");
    while !staging.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the restore ended before it was killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let killed = job.finished(status.code(), log);
    assert_eq!(killed.code, None, "killed by a signal");
    assert!(killed.report.is_none(), "no result written");
    assert!(
        !job.data().join("big").exists(),
        "nothing restored into the volume"
    );
    assert_eq!(fs::read(job.data().join("old")).unwrap(), b"before");
    assert!(
        !job.data().join(".arca-restore-incomplete").exists(),
        "killed before the swap"
    );

    job.env.remove("ARCA_LIMIT_DOWNLOAD");
    job.ok(&["restore"]);
    assert_eq!(fs::read(job.data().join("big")).unwrap(), noise(3 << 20, 7));
    assert!(!job.data().join(".arca-restore-staging").exists());
}

/// The seed's ExternalSecret template, `RESTIC_REPOSITORY: "/repository/${APP}"`,
/// with APP substituted as Flux does; `/repository` is the mount point of the
/// repository volume in the pod, here a directory of the test's own.
#[test]
fn the_seeds_secret_template_works() {
    let template = "/repository/${APP}";
    let tmp = tempfile::tempdir().unwrap();
    let repository = format!(
        "{}{}",
        tmp.path().display(),
        template.replace("${APP}", "example-app")
    );
    let job = Job::with_repository(tmp, repository.clone());
    fill(&job.data(), 1);
    job.ok(&["backup"]);
    assert!(Path::new(&repository).join("config").is_file());
    assert!(repository.ends_with("/repository/example-app"));
}

/// `FORGET_OPTIONS` after each backup, as the controller writes it from
/// `retain`, then a prune in the same Job.
#[test]
fn forget_per_forget_options_then_prune() {
    let mut job = Job::local();
    job.set("FORGET_OPTIONS", "--keep-last 2");
    let mut ids = Vec::new();
    for version in 1..=3 {
        fill(&job.data(), version);
        let run = job.ok(&["backup"]);
        let backup = run.action(0);
        ids.push(backup["snapshot_id"].as_str().unwrap().to_owned());
        let kept = version.min(2);
        assert_eq!(backup["forget"]["kept"], kept, "{backup}");
        assert_eq!(backup["forget"]["removed"], version - kept, "{backup}");
    }
    let snapshots: Vec<String> = fs::read_dir(Path::new(&job.repository).join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(snapshots.len(), 2);
    assert!(!snapshots.contains(&ids[0]), "the oldest is forgotten");

    let run = job.ok(&["unlock", "backup", "prune"]);
    assert_eq!(run.action(2)["action"], "prune", "{}", run.log);
    // v1's unique page is used by no snapshot any more: marked now, deleted by a later prune.
    assert!(
        run.action(2)["packs_marked"].as_u64().unwrap() >= 1,
        "{}",
        run.action(2)
    );
    job.ok(&["check"]);
}

/// Damaged data: `verify` and a full-read `check` say so with the corrupt class.
#[test]
fn damage_is_reported_as_corrupt() {
    let mut job = Job::local();
    fill(&job.data(), 1);
    job.ok(&["backup"]);
    job.ok(&["verify"]);
    // Flip a byte in the middle of the largest pack.
    let mut packs = Vec::new();
    let mut stack = vec![Path::new(&job.repository).join("data")];
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

    let run = job.run(&["verify"]);
    assert_eq!(run.code, Some(13), "{}", run.log);
    assert_eq!(run.report()["error_class"], "corrupt");
    job.set("ARCA_CHECK_READ_DATA_SUBSET", "100%");
    let run = job.run(&["check"]);
    assert_eq!(run.code, Some(13), "{}", run.log);
    assert_eq!(run.report()["error_class"], "corrupt");
    let check = run.action(0);
    assert_eq!(check["ok"], false);
    assert!(check["errors"].as_u64().unwrap() >= 1);
    assert!(
        !check["error_sample"].as_array().unwrap().is_empty(),
        "{check}"
    );
}

#[test]
fn spec_changes_the_controller_passes_on_land_in_the_audit_trail() {
    let mut source = Job::local();
    fill(&source.data(), 1);
    let note = "ReplicationSource app/db generation 3: spec.trigger.schedule, spec.restic.retain";
    source.set(
        "ARCA_AUDIT_SPEC_CHANGES",
        &serde_json::json!([note]).to_string(),
    );
    source.ok(&["backup"]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let records = runtime.block_on(async {
        let backend = std::sync::Arc::new(arca_store::LocalBackend::new(&source.repository));
        let repo = arca_repo::Repository::open(backend, PASSWORD.as_bytes())
            .await
            .unwrap();
        let filter = arca_repo::audit::Filter {
            operation: Some("spec-change".into()),
            ..Default::default()
        };
        arca_repo::audit::list(&repo, &filter).await.unwrap()
    });
    let arguments: Vec<_> = records.iter().map(|(_, r)| r.arguments.clone()).collect();
    assert_eq!(arguments, [vec![note.to_owned()]]);
}

/// Two sources backing up into one repository (`ARCA_SOURCE`, as the operator sets it): each
/// forgets only its own snapshots, never takes the other's as its parent, and a restore for one
/// source gets that source's data, not the newest snapshot of the host.
#[test]
fn sources_sharing_a_repository_stay_apart() {
    let mut first = Job::local();
    first.set("ARCA_SOURCE", "shop/db");
    first.set("FORGET_OPTIONS", "--keep-last 1");
    let mut second = Job::with_repository(tempfile::tempdir().unwrap(), first.repository.clone());
    second.set("ARCA_SOURCE", "shop/web");
    second.set("FORGET_OPTIONS", "--keep-last 1");
    fill(&first.data(), 1);
    fill(&second.data(), 2);
    fs::write(second.data().join("only-web"), "web").unwrap();

    let first_backup = first.ok(&["backup"]);
    let second_backup = second.ok(&["backup"]);
    let backup = second_backup.action(0);
    assert_eq!(
        backup["parent_id"],
        Value::Null,
        "the other source's snapshot is no parent"
    );
    assert_eq!(backup["forget"]["removed"], 0, "{backup}");
    let again = first.ok(&["backup"]);
    let backup = again.action(0);
    assert_eq!(backup["parent_id"], first_backup.action(0)["snapshot_id"]);
    assert_eq!(backup["files_unmodified"], 4, "{backup}");
    // Keep-last 1 per source: the first source's older snapshot goes, the second's stays.
    assert_eq!(backup["forget"]["kept"], 1, "{backup}");
    assert_eq!(backup["forget"]["removed"], 1, "{backup}");

    // Restores: the second source's snapshot is older than the first's newest.
    for (source, volume) in [("shop/web", &second), ("shop/db", &first)] {
        let mut destination =
            Job::with_repository(tempfile::tempdir().unwrap(), first.repository.clone());
        destination.set("ARCA_SOURCE", source);
        let restored = destination.ok(&["restore"]);
        assert_eq!(
            restored.action(0)["outcome"],
            "restored",
            "{}",
            restored.log
        );
        assert_eq!(
            files(&destination.data()),
            files(&volume.data()),
            "{source}"
        );
    }
}
