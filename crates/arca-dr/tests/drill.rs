//! Drills and reports over a real repository on the local filesystem.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_crypto::KdfParams;
use arca_dr::report::{ReportOptions, collect};
use arca_dr::{DrillFailure, DrillOptions, DrillRecord, drill, render};
use arca_repo::backup::{BackupOptions, backup};
use arca_repo::progress::NoProgress;
use arca_repo::repository::InitOptions;
use arca_repo::retention::RetentionPolicy;
use arca_repo::{Id, Repository};
use arca_store::StoreOptions;
use jiff::{SignedDuration, Timestamp};

const PASSWORD: &[u8] = b"drill test password";

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Repository,
    repo_dir: PathBuf,
    data: PathBuf,
    scratch: PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("db/wal")).unwrap();
    std::fs::write(data.join("db/main.db"), vec![7u8; 300_000]).unwrap();
    std::fs::write(data.join("db/wal/0001"), b"log entry\n").unwrap();
    std::fs::write(data.join("config.yaml"), b"replicas: 3\n").unwrap();
    std::fs::set_permissions(
        data.join("config.yaml"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("db/main.db", data.join("current")).unwrap();
    let backend = arca_store::open(repo_dir.to_str().unwrap(), &StoreOptions::default())
        .unwrap()
        .backend;
    let options = InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, PASSWORD, options).await.unwrap();
    Fixture {
        scratch: dir.path().join("scratch"),
        _dir: dir,
        repo,
        repo_dir,
        data,
    }
}

async fn back_up(fixture: &Fixture, time: Option<Timestamp>) -> Id {
    let options = BackupOptions {
        paths: vec![fixture.data.clone()],
        hostname: "db-1".into(),
        time,
        ..BackupOptions::default()
    };
    backup(&fixture.repo, &options, Arc::new(NoProgress))
        .await
        .unwrap()
        .snapshot_id
}

fn options(fixture: &Fixture) -> DrillOptions {
    DrillOptions {
        target: Some(fixture.scratch.clone()),
        record: true,
        hostname: "drill-host".into(),
        username: "tester".into(),
        ..DrillOptions::default()
    }
}

/// Where the drill restores `data`'s file `name`.
fn restored(fixture: &Fixture, name: &str) -> PathBuf {
    fixture
        .scratch
        .join(fixture.data.strip_prefix("/").unwrap())
        .join(name)
}

#[tokio::test]
async fn a_drill_of_an_intact_snapshot_passes_is_recorded_and_cleans_up() {
    let fixture = fixture().await;
    let id = back_up(&fixture, None).await;
    let report = drill(&fixture.repo, &options(&fixture), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.passed, "{:?}", report.failures);
    assert_eq!(report.snapshot, id);
    assert_eq!(report.bytes_verified, 300_000 + 10 + 12);
    // Three files, a symlink and the directories down from the root.
    assert!(report.files_verified >= 7, "{}", report.files_verified);
    assert!(!report.kept);
    assert!(
        !fixture.scratch.exists(),
        "the drill created it and removes it"
    );

    let records = arca_repo::audit::list(&fixture.repo, &Default::default())
        .await
        .unwrap();
    let drills: Vec<DrillRecord> = records
        .iter()
        .filter_map(|(_, record)| DrillRecord::from_audit(record))
        .collect();
    assert_eq!(drills.len(), 1);
    assert!(drills[0].passed);
    assert_eq!(drills[0].snapshot, Some(id));
    assert_eq!(drills[0].bytes_verified, Some(report.bytes_verified));
    assert_eq!(report.audit_record, Some(records[0].0));
}

#[tokio::test]
async fn the_command_runs_in_the_restored_tree_and_its_failure_fails_the_drill() {
    let fixture = fixture().await;
    back_up(&fixture, None).await;
    let data = fixture
        .data
        .strip_prefix("/")
        .unwrap()
        .display()
        .to_string();
    let mut passing = options(&fixture);
    passing.command = Some(format!(
        "grep -q 'replicas: 3' {data}/config.yaml && test \"$ARCA_DRILL_DIR\" = \"$PWD\" && echo consistent"
    ));
    passing.keep = true;
    let report = drill(&fixture.repo, &passing, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.passed, "{:?} {:?}", report.failures, report.command);
    let command = report.command.unwrap();
    assert_eq!(command.exit_code, Some(0));
    assert_eq!(command.output_tail, vec!["consistent"]);
    assert!(report.kept);
    assert_eq!(
        std::fs::read(restored(&fixture, "db/wal/0001")).unwrap(),
        b"log entry\n"
    );

    let mut failing = options(&fixture);
    failing.target = Some(fixture.scratch.with_extension("second"));
    failing.command = Some("echo 'table users: 3 orphaned rows' >&2; exit 7".into());
    let report = drill(&fixture.repo, &failing, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(!report.passed);
    assert_eq!(
        report.failures,
        vec![DrillFailure::Command { exit_code: Some(7) }]
    );
    assert_eq!(
        report.command.unwrap().output_tail,
        vec!["table users: 3 orphaned rows"]
    );
}

#[tokio::test]
async fn a_drill_into_a_non_empty_directory_is_refused() {
    let fixture = fixture().await;
    back_up(&fixture, None).await;
    std::fs::create_dir_all(&fixture.scratch).unwrap();
    std::fs::write(fixture.scratch.join("precious"), b"x").unwrap();
    let err = drill(&fixture.repo, &options(&fixture), Arc::new(NoProgress))
        .await
        .unwrap_err();
    assert!(
        matches!(err, arca_dr::Error::TargetNotEmpty { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(fixture.scratch.join("precious")).unwrap(),
        b"x"
    );
}

#[tokio::test]
async fn a_damaged_pack_fails_the_drill_with_the_damaged_files_named() {
    let fixture = fixture().await;
    back_up(&fixture, None).await;
    for pack in packs(&fixture.repo_dir) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&pack, bytes).unwrap();
    }
    let report = drill(&fixture.repo, &options(&fixture), Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(!report.passed);
    let Some(DrillFailure::Verification { count, sample }) = report.failures.first() else {
        panic!("expected a verification failure: {:?}", report.failures);
    };
    assert!(*count >= 1);
    assert!(!sample.is_empty());
    let records = arca_repo::audit::list(&fixture.repo, &Default::default())
        .await
        .unwrap();
    let drill = DrillRecord::from_audit(&records[0].1).unwrap();
    assert!(!drill.passed);
    assert!(drill.error.unwrap().contains("verification failed"));
}

#[tokio::test]
async fn an_rto_shorter_than_the_drill_is_a_miss() {
    let fixture = fixture().await;
    back_up(&fixture, None).await;
    let mut options = options(&fixture);
    options.rto = Some(SignedDuration::ZERO);
    let report = drill(&fixture.repo, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(!report.passed);
    assert!(matches!(
        report.failures.as_slice(),
        [DrillFailure::RtoMissed { rto_seconds, .. }] if *rto_seconds == 0.0
    ));
    assert_eq!(report.rto_seconds, Some(0.0));
}

#[tokio::test]
async fn an_include_drills_only_the_chosen_paths() {
    let fixture = fixture().await;
    back_up(&fixture, None).await;
    let mut options = options(&fixture);
    options.includes = vec![format!("{}/db/wal", fixture.data.display())];
    options.keep = true;
    let report = drill(&fixture.repo, &options, Arc::new(NoProgress))
        .await
        .unwrap();
    assert!(report.passed, "{:?}", report.failures);
    assert_eq!(report.bytes_verified, 10);
    assert!(restored(&fixture, "db/wal/0001").exists());
    assert!(!restored(&fixture, "db/main.db").exists());
}

fn packs(repo_dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![repo_dir.join("data")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn the_report_covers_backups_gaps_drills_holds_retention_and_renders() {
    let fixture = fixture().await;
    let t = |hours: i64| Timestamp::from_second(1_780_000_000 + hours * 3600).unwrap();
    let ids = [
        back_up(&fixture, Some(t(0))).await,
        back_up(&fixture, Some(t(1))).await,
        back_up(&fixture, Some(t(5))).await,
    ];
    let actor = arca_repo::hold::Actor {
        hostname: "legal".into(),
        username: "counsel".into(),
        now: Timestamp::now(),
    };
    arca_repo::hold::place(&fixture.repo, &ids[..1], "case 42", None, &actor)
        .await
        .unwrap();
    let mut drill_options = options(&fixture);
    drill_options.snapshot = Some(ids[2].to_string());
    drill_options.rto = Some(SignedDuration::from_mins(15));
    drill(&fixture.repo, &drill_options, Arc::new(NoProgress))
        .await
        .unwrap();

    let report = collect(
        &fixture.repo,
        &ReportOptions {
            since: t(-1),
            now: t(6),
            class: Some(arca_sched::DataClass::Critical),
            policy: Some(RetentionPolicy {
                keep_last: Some("1".parse().unwrap()),
                ..RetentionPolicy::default()
            }),
            rotation_period: arca_dr::report::DEFAULT_ROTATION_PERIOD,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.groups.len(), 1);
    let group = &report.groups[0];
    assert_eq!(group.backups_in_window, 3);
    // t0 starts the history, t0 → t1 is 1 h, t1 → t5 4 h: over the 1 h RPO.
    assert_eq!(group.longest_gap_seconds, Some(4.0 * 3600.0));
    assert_eq!(group.backups[0].gap_seconds, None);
    assert_eq!(group.backups[1].gap_seconds, Some(3600.0));
    assert_eq!(group.rpo_met, Some(false));
    assert_eq!(group.holds, 1);
    let drill = group.last_drill.as_ref().unwrap();
    assert!(drill.passed);
    assert_eq!(drill.rto_seconds, Some(900.0));
    assert_eq!(group.drill_ok, Some(true));
    let retention = group.retention.as_ref().unwrap();
    assert_eq!(retention.kept_by_policy, 1);
    assert_eq!(retention.held, 1);
    assert_eq!(retention.excess, vec![ids[1]]);
    assert!(!retention.conforms);
    assert_eq!(report.holds.len(), 1);
    assert_eq!(report.audit.intact, Some(true));
    assert!(report.keys.in_use_since.is_some());
    assert!(report.size.bytes > 300_000 / 100);
    assert_eq!(report.size.growth.len(), 3);
    assert!(!report.compliant);

    let page = render::html(&report, t(6));
    assert!(page.contains("case 42"));
    assert!(page.contains(&ids[0].short()));
    let text = render::markdown(&report, t(6));
    assert!(text.contains("NOT COMPLIANT"));
}
