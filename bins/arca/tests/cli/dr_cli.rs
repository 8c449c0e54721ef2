//! `arca drill`, `arca report` and partial restores (the runbooks of
//! docs/DR.md) through the real binary, on a local repository and, when
//! `ARCA_TEST_S3_ENDPOINT` is set, on S3; and the HTML report in a real
//! headless Chromium.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support;
use crate::support::{Repo, Run, on_every_backend, restored};

on_every_backend!(
    drills_pass_fail_and_are_recorded,
    the_report_covers_every_section,
    a_partial_restore_brings_back_only_the_chosen_paths
);

fn data(repo: &Repo) -> PathBuf {
    let data = repo.path("data");
    fs::create_dir_all(data.join("db")).unwrap();
    fs::create_dir_all(data.join("uploads")).unwrap();
    fs::write(data.join("db/main.db"), support::noise(200_000, 1)).unwrap();
    fs::write(data.join("uploads/a.png"), support::noise(5_000, 2)).unwrap();
    fs::write(data.join("settings.yaml"), b"replicas: 3\n").unwrap();
    data
}

fn backed_up(repo: &Repo) -> (PathBuf, String) {
    let data = data(repo);
    repo.ok(&["init"]);
    let summary = repo.json_summary(&["backup", data.to_str().unwrap()]);
    (data, summary["snapshot_id"].as_str().unwrap().to_owned())
}

/// `arca --json ARGS` that may fail; its one JSON document.
fn json_run(repo: &Repo, args: &[&str]) -> (Run, Value) {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let run = repo.run(&with_json);
    let value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{run}"));
    (run, value)
}

fn drills_pass_fail_and_are_recorded(repo: &Repo) {
    let (_, snapshot) = backed_up(repo);
    let (run, passed) = json_run(repo, &["drill", "--class", "critical"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(passed["passed"], true, "{run}");
    assert_eq!(passed["snapshot"], snapshot.as_str());
    assert_eq!(passed["bytes_verified"], 200_000 + 5_000 + 12);
    assert_eq!(passed["rto_seconds"], 900.0);
    let scratch = PathBuf::from(passed["target"].as_str().unwrap());
    assert!(!scratch.exists(), "the scratch copy is removed");

    // The application's check fails: exit 4, its output in the report.
    let (run, failed) = json_run(
        repo,
        &[
            "drill",
            "--command",
            "echo 'index users: corrupt' >&2; exit 9",
        ],
    );
    assert_eq!(run.code, Some(4), "{run}");
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["failures"][0]["kind"], "command");
    assert_eq!(failed["failures"][0]["exit_code"], 9);
    assert_eq!(failed["command"]["output_tail"][0], "index users: corrupt");

    // Verified, but slower than an RTO of zero: exit 5.
    let (run, slow) = json_run(repo, &["drill", "--rto", "0"]);
    assert_eq!(run.code, Some(5), "{run}");
    assert_eq!(slow["failures"][0]["kind"], "rto_missed");

    // --keep into a given directory, with the command checking the copy.
    let target = repo.path("drill-copy");
    let run = repo.run(&[
        "drill",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--keep",
        "--command",
        "find . -name settings.yaml | grep -q settings",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("PASSED"), "{run}");
    let data = repo.path("data");
    assert_eq!(
        fs::read(restored(&target, &data).join("settings.yaml")).unwrap(),
        b"replicas: 3\n"
    );

    // Each drill left one record, with its result.
    let records = repo.json(&["audit", "--operation", "drill"]);
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 4, "{records:?}");
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["record"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 2);
    assert!(records.iter().any(|r| {
        r["record"]["arguments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "rto_seconds=900")
    }));
}

fn the_report_covers_every_section(repo: &Repo) {
    let (data, first) = backed_up(repo);
    fs::write(data.join("uploads/b.png"), support::noise(7_000, 3)).unwrap();
    repo.json_summary(&["backup", data.to_str().unwrap()]);
    repo.ok(&["hold", "add", &first, "--reason", "case 2026-17"]);
    repo.ok(&["drill", "--class", "important"]);

    let report = repo.json(&["report", "--class", "critical", "--keep-last", "1"]);
    let group = &report["groups"][0];
    assert_eq!(group["backups_in_window"], 2, "{report:#}");
    assert_eq!(group["holds"], 1);
    assert_eq!(group["last_drill"]["passed"], true);
    assert_eq!(group["last_drill"]["rto_seconds"], 3600.0);
    assert_eq!(group["retention"]["kept_by_policy"], 1);
    assert_eq!(group["retention"]["held"], 1);
    assert_eq!(group["retention"]["conforms"], true);
    assert_eq!(report["holds"][0]["reason"], "case 2026-17");
    assert_eq!(report["audit"]["intact"], true);
    assert!(report["size"]["bytes"].as_u64().unwrap() > 0);

    let markdown = repo.ok(&["report", "--since", "7d"]).stdout;
    assert!(markdown.starts_with("# Arca recovery report"), "{markdown}");
    assert!(markdown.contains("case 2026-17"));

    let page = repo.path("report.html");
    repo.ok(&[
        "report",
        "--format",
        "html",
        "--class",
        "critical",
        "--output",
        page.to_str().unwrap(),
    ]);
    let html = fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("case 2026-17"));
}

fn a_partial_restore_brings_back_only_the_chosen_paths(repo: &Repo) {
    let (data, _) = backed_up(repo);
    let target = repo.path("partial");
    let pattern = format!("{}/uploads", data.display());
    repo.ok(&[
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
        "--include",
        &pattern,
        "--verify",
    ]);
    let restored = restored(&target, &data);
    assert_eq!(
        fs::read(restored.join("uploads/a.png")).unwrap(),
        support::noise(5_000, 2)
    );
    assert!(!restored.join("db").exists());
    assert!(!restored.join("settings.yaml").exists());
}

/// Chromium's program name, if it is installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|name| {
        Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

/// The HTML report of a repository with several snapshots, a drill and a
/// hold, rendered by headless Chromium: a non-blank screenshot of the
/// requested size, the sections in the rendered DOM, no console errors.
#[test]
fn the_html_report_renders_in_a_headless_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Chromium is missing on CI (cargo xtask test installs it)"
        );
        eprintln!("skipped: Chromium is not installed (cargo xtask test installs it)");
        return;
    };
    let repo = Repo::local();
    let (data, first) = backed_up(&repo);
    for n in 0..3u64 {
        fs::write(
            data.join(format!("uploads/{n}.png")),
            support::noise(20_000, 10 + n),
        )
        .unwrap();
        repo.json_summary(&["backup", data.to_str().unwrap()]);
    }
    repo.ok(&[
        "hold",
        "add",
        &first,
        "--reason",
        "litigation <hold> & review",
    ]);
    repo.ok(&["drill", "--class", "critical"]);
    let page = repo.path("report.html");
    repo.ok(&[
        "report",
        "--format",
        "html",
        "--class",
        "critical",
        "--keep-last",
        "2",
        "--output",
        page.to_str().unwrap(),
    ]);
    let url = format!("file://{}", page.display());
    let profile = repo.path("chromium-profile");
    let headless = |extra: &[&str]| {
        let out = Command::new(browser)
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "chromium failed: {stderr}");
        for bad in ["Uncaught", "ERROR:CONSOLE", "CONSOLE(", "Refused to"] {
            assert!(!stderr.contains(bad), "console error ({bad}):\n{stderr}");
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let dom = headless(&["--dump-dom"]);
    for section in [
        "id=\"summary\"",
        "id=\"chart-growth\"",
        "id=\"chart-durations\"",
        "id=\"chart-gaps\"",
        "id=\"applications\"",
        "id=\"holds\"",
        "id=\"integrity\"",
        "litigation &lt;hold&gt; &amp; review",
    ] {
        assert!(dom.contains(section), "rendered DOM lacks {section}");
    }
    assert!(dom.matches("<svg").count() >= 3);

    let screenshot = repo.path("report.png");
    headless(&[
        &format!("--screenshot={}", screenshot.display()),
        "--window-size=1280,2000",
    ]);
    let png = fs::read(&screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (width, height) = png_size(&png);
    assert_eq!((width, height), (1280, 2000));
    // A blank page compresses to almost nothing; a rendered report does not.
    assert!(
        png.len() > 30_000,
        "screenshot looks blank: {} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("ARCA_REPORT_SCREENSHOT_DIR") {
        fs::copy(&screenshot, Path::new(&dir).join("report.png")).unwrap();
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}
