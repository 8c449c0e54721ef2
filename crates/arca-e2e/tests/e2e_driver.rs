//! The driver's command line: what `cargo xtask e2e` relies on, and the
//! errors a user sees when running it by hand.

use std::process::{Command, Output};

fn driver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arca-e2e"))
        .args(args)
        .output()
        .expect("the driver starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_prints_the_options_and_succeeds() {
    let output = driver(&["--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let usage = String::from_utf8_lossy(&output.stdout);
    for option in ["--work", "--s3", "--kubeconfig", "--scale", "--keep"] {
        assert!(usage.contains(option), "{option} missing from:\n{usage}");
    }
}

#[test]
fn the_in_memory_cluster_needs_an_s3_bucket() {
    let output = driver(&["--work", "unused"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("needs --s3 URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_work_directory_is_required() {
    let output = driver(&["--s3", "http://127.0.0.1:9/bucket"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--work DIR is required"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn scale_runs_on_the_in_memory_cluster_only() {
    let output = driver(&["--work", "unused", "--scale", "3", "--kubeconfig", "k"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--scale runs on the in-memory cluster only"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unknown_options_are_named() {
    let output = driver(&["--work", "unused", "--frobnicate"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("\"--frobnicate\""),
        "{}",
        stderr(&output)
    );
}
