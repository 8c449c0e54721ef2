//! `arca forget --prune` and `arca prune` beside running backups and under `kill -9`, through the real
//! binary, against a local directory and the S3 test server.
//!
//! Every process runs with `ARCA_TEST_GRACE_FLOOR` lowered to a couple of
//! seconds (test-only; docs/FORMAT.md) and prune with `--grace` just above
//! it, so many mark → sweep cycles fit in a short test. Correctness must
//! not depend on timing: the random pauses only vary the interleavings.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Repo, Run, assert_same_tree, noise, on_every_backend};

/// The grace floor every process of these tests uses (seconds).
const FLOOR: &str = "2";
/// The grace prune is given.
const GRACE: &str = "4s";
const GRACE_DURATION: Duration = Duration::from_secs(4);

/// A small xorshift generator: random timing and content without a dependency.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Random(u64::from(nanos) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn command(repo: &Repo, args: &[&str]) -> Command {
    let mut cmd = repo.command(args);
    cmd.env("ARCA_TEST_GRACE_FLOOR", FLOOR);
    cmd
}

fn run(repo: &Repo, args: &[&str]) -> Run {
    Run::of(command(repo, args))
}

fn ok(repo: &Repo, args: &[&str]) -> Run {
    let run = run(repo, args);
    assert_eq!(run.code, Some(0), "arca {args:?} failed:\n{run}");
    run
}

fn summary(run: &Run) -> Value {
    run.json_lines()
        .pop()
        .unwrap_or_else(|| panic!("no JSON:\n{run}"))
}

/// Changes the tree a little: rewrites a file, adds one, removes one;
/// most files stay, so backups deduplicate against older packs.
fn mutate(dir: &Path, random: &mut Random) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for _ in 0..2 {
        let name = format!("f{}", random.below(8));
        let place = if random.below(2) == 0 {
            dir.join(&name)
        } else {
            dir.join("sub").join(&name)
        };
        let len = 20_000 + random.below(200_000) as usize;
        fs::write(place, noise(len, random.below(1 << 40))).unwrap();
    }
    let victim = dir.join(format!("f{}", random.below(8)));
    let _ = fs::remove_file(victim);
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Backs `source` up; on success records a copy of what it held under
/// `expected/<snapshot id>`. A backup may fail only as the protocol allows
/// (it could not commit in time, and wrote no snapshot).
fn backup(repo: &Repo, source: &Path, expected: &Path) -> Option<String> {
    let run = run(repo, &["--json", "backup", source.to_str().unwrap()]);
    if run.code != Some(0) {
        assert!(run.stderr.contains("backup did not complete"), "{run}");
        return None;
    }
    let id = summary(&run)["snapshot_id"].as_str().unwrap().to_owned();
    copy_tree(source, &expected.join(&id));
    Some(id)
}

/// Every snapshot restores to exactly the tree it was taken of, and
/// `check --read-data` passes.
fn verify(repo: &Repo, sources: &[PathBuf], expected: &Path) {
    ok(repo, &["check", "--read-data"]);
    let snapshots = Run::of(command(repo, &["--json", "snapshots"]));
    let snapshots: Value = serde_json::from_str(snapshots.stdout.trim()).unwrap();
    let snapshots = snapshots.as_array().unwrap();
    assert!(!snapshots.is_empty());
    for snapshot in snapshots {
        let id = snapshot["id"].as_str().unwrap();
        let target = repo.path(&format!("restored-{id}"));
        ok(repo, &["restore", id, "--target", target.to_str().unwrap()]);
        let source = sources
            .iter()
            .find(|s| snapshot["paths"][0].as_str() == s.to_str())
            .unwrap();
        let restored = target.join(source.strip_prefix("/").unwrap());
        assert_same_tree(&expected.join(id), &restored);
        fs::remove_dir_all(&target).unwrap();
    }
}

fn backups_and_prunes_run_side_by_side(repo: &Repo) {
    ok(repo, &["init"]);
    let expected = repo.path("expected");
    let sources: Vec<PathBuf> = (0..2).map(|i| repo.path(&format!("src{i}"))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    thread::scope(|scope| {
        for source in &sources {
            let (stop, committed, expected) = (stop.clone(), committed.clone(), &expected);
            scope.spawn(move || {
                let mut random = Random::seeded();
                while !stop.load(Ordering::Relaxed) {
                    mutate(source, &mut random);
                    if backup(repo, source, expected).is_some() {
                        committed.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(random.below(300)));
                }
            });
        }
        let (stop, deleted) = (stop.clone(), deleted.clone());
        scope.spawn(move || {
            let mut random = Random::seeded();
            while Instant::now() < deadline {
                thread::sleep(Duration::from_millis(random.below(1500)));
                let pruned = ok(
                    repo,
                    &[
                        "--json",
                        "forget",
                        "--keep-last",
                        "2",
                        "--prune",
                        "--grace",
                        GRACE,
                        "--max-unused",
                        "0%",
                    ],
                );
                let report = summary(&pruned);
                deleted.fetch_add(report["packs_deleted"].as_u64().unwrap(), Ordering::Relaxed);
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(
        committed.load(Ordering::Relaxed) >= 6,
        "too few backups committed"
    );
    // The test exercised deletion, not only marking.
    assert!(
        deleted.load(Ordering::Relaxed) > 0,
        "no prune deleted anything"
    );
    verify(repo, &sources, &expected);
    // Once nothing runs beside it, prune finishes every mark it left.
    thread::sleep(GRACE_DURATION);
    ok(repo, &["prune", "--grace", GRACE]);
    verify(repo, &sources, &expected);
}

fn a_killed_prune_leaves_a_repository_that_checks_and_the_next_prune_finishes(repo: &Repo) {
    ok(repo, &["init"]);
    let expected = repo.path("expected");
    let source = repo.path("src");
    let mut random = Random::seeded();
    let mut killed = 0;
    for round in 0..8 {
        mutate(&source, &mut random);
        backup(repo, &source, &expected).expect("no prune runs beside this backup");
        ok(repo, &["forget", "--keep-last", "1"]);
        if round % 2 == 1 {
            // Let earlier rounds' marks fall due: the kill may hit a sweep.
            thread::sleep(GRACE_DURATION);
        }
        let mut prune = command(repo, &["prune", "--grace", GRACE, "--max-unused", "0%"])
            .spawn()
            .unwrap();
        // Random points, except that the first round kills at once: a fast
        // machine may finish every prune inside a random delay, and the test
        // must kill at least one.
        let delay = if round == 0 { 0 } else { random.below(2500) };
        thread::sleep(Duration::from_millis(delay));
        if prune.try_wait().unwrap().is_none() {
            killed += 1;
        }
        // SIGKILL (or nothing, if it already finished).
        let _ = prune.kill();
        prune.wait().unwrap();
        ok(repo, &["check"]);
    }
    assert!(killed > 0, "every prune finished before its kill");
    // The next prunes finish what the killed ones left: after one grace,
    // every mark but the newest is swept.
    ok(repo, &["prune", "--grace", GRACE]);
    thread::sleep(GRACE_DURATION);
    let finished = summary(&ok(repo, &["--json", "prune", "--grace", GRACE]));
    let again = summary(&ok(repo, &["--json", "prune", "--grace", GRACE]));
    assert_eq!(again["marks_swept"], 0, "{again}");
    assert_eq!(again["packs_pending"], finished["packs_marked"], "{again}");
    verify(repo, std::slice::from_ref(&source), &expected);
}

on_every_backend!(
    backups_and_prunes_run_side_by_side,
    a_killed_prune_leaves_a_repository_that_checks_and_the_next_prune_finishes,
);
