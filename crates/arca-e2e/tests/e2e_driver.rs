//! The driver's command line: what `cargo xtask e2e` relies on, and the
//! errors a user sees when running it by hand.

use std::process::{Command, Output};

fn driver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arca-e2e"))
        .args(args)
        .output()
        .expect("the driver starts")
}

/// Runs the driver with `args` and checks that it fails saying `message`.
fn fails_saying(args: &[&str], message: &str) {
    let output = driver(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
}

#[test]
fn help_prints_the_options_and_succeeds() {
    let output = driver(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let usage = String::from_utf8_lossy(&output.stdout);
    for option in ["--work", "--s3", "--kubeconfig", "--scale", "--keep"] {
        assert!(usage.contains(option), "{option} missing from:\n{usage}");
    }
}

#[test]
fn options_the_run_cannot_do_without_or_cannot_combine_are_refused() {
    fails_saying(&["--work", "unused"], "needs --s3 URL");
    fails_saying(&["--s3", "http://127.0.0.1:9/b"], "--work DIR is required");
    fails_saying(
        &["--work", "unused", "--scale", "3", "--kubeconfig", "k"],
        "--scale runs on the in-memory cluster only",
    );
    fails_saying(&["--work", "unused", "--frobnicate"], "\"--frobnicate\"");
}
