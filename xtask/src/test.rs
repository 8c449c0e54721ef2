//! `cargo xtask test`: everything CI checks, in the order that fails fastest.
//!
//! fmt → clippy (the fuzz targets included: `fuzz/` is a workspace member) → deploy/ checks
//! (promtool) → `cargo test --workspace` against a throwaway local S3 server → the operator end to
//! end (`cargo xtask e2e`) → benchmark smoke run. Stops at the first failing step and says which
//! one it was.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process::{cargo, ensure_debian_packages, project_root, run as run_command};
use crate::{bench, deploy, e2e, services};

/// Credentials the local S3 server accepts. Set explicitly so tests can never
/// pick up real cloud credentials from the environment.
const S3_TEST_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
];

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask test` takes no arguments, got {arg:?}");
    }
    let mut steps = Steps::default();
    steps.run("rustfmt", || {
        run_command(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    steps.run("clippy", || {
        run_command(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    steps.run("deploy manifests", deploy::check)?;
    let s3 = steps.run("start S3 server", || services::start(&project_root()))?;
    let azure = steps.run("start Azure server", || {
        services::start_azurite(&project_root())
    })?;
    steps.run("tests", || run_tests(&s3.endpoint, &azure.endpoint))?;
    drop((s3, azure));
    steps.run("operator e2e", || e2e::run(&[]))?;
    steps.run("benchmark smoke run", || {
        bench::run(&["--smoke".to_string()])
    })?;
    steps.print();
    Ok(())
}

/// The workspace test suite, S3 and Azure variants included (they skip without
/// `ARCA_TEST_S3_ENDPOINT` / `ARCA_TEST_AZURE_ENDPOINT`, so plain `cargo test`
/// works offline).
fn run_tests(s3_endpoint: &str, azure_endpoint: &str) -> anyhow::Result<()> {
    // restic writes the repositories arca-restic's tests read (they skip without it);
    // Chromium renders the HTML report in arca's dr_cli test (it fails without it on CI).
    ensure_debian_packages(&[
        (&["restic", "version"], "restic"),
        (&["chromium", "--version"], "chromium"),
    ])?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"])
        .env("ARCA_TEST_S3_ENDPOINT", s3_endpoint)
        .env("ARCA_TEST_AZURE_ENDPOINT", azure_endpoint)
        .envs(S3_TEST_ENV);
    run_command(&mut cmd)
}

/// Named, timed steps; prints a summary so a slow CI run shows where the time
/// went.
#[derive(Default)]
struct Steps {
    done: Vec<(&'static str, Duration)>,
}

impl Steps {
    fn run<T>(
        &mut self,
        name: &'static str,
        step: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        println!("\n==> {name}");
        let start = Instant::now();
        let result = step().with_context(|| format!("step {name:?} failed"));
        self.done.push((name, start.elapsed()));
        if result.is_err() {
            self.print();
        }
        result
    }

    fn print(&self) {
        println!("\n==> summary");
        for (name, took) in &self.done {
            println!("{name:<24} {:>7.1} s", took.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_step_is_named_in_the_error() {
        let mut steps = Steps::default();
        steps.run("fine", || Ok(())).unwrap();
        let err = steps
            .run("broken", || {
                crate::process::run(&mut std::process::Command::new("false"))
            })
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("step \"broken\" failed"),
            "{err:#}"
        );
        assert_eq!(steps.done.len(), 2);
    }
}
