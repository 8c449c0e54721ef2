//! `cargo xtask`: the project's single front door for tests, the demo,
//! benchmarks and fuzzing (see README.md).
//!
//! Kept light, because CI builds it before anything else: the tasks shell
//! out to `cargo`, the built binaries and the tools they install, with
//! arguments parsed by hand. What needs a Kubernetes client, the end-to-end
//! driver, is a binary of its own (crates/arca-e2e) built by the test step.

// xtask is a terminal program: printing progress is its whole interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod dataset;
mod demo;
mod deploy;
mod e2e;
mod fuzz;
mod process;
mod services;
mod test;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  test                 fmt check, clippy (fuzz targets included), the whole test
                       suite (with a local S3 server), operator e2e, benchmark
                       smoke run
  bench [--smoke] ...  arca and restic side by side; writes docs/PERFORMANCE.md
                       (cargo xtask bench --help for the options)
  demo                 build arca, back up and restore a sample directory
  e2e [--manifests DIR] [--kubeconfig FILE] [--keep] [--scale N]
                       the real controller and agent on the in-memory API server
                       (or a real cluster): backups, restores, DR, metrics
  deploy               check deploy/ only: promtool rule tests, helm lint and
                       render, manifests against the Kubernetes schemas, hadolint
  fuzz [TARGET] [--seconds N] [--build-only]
                       run every fuzz target (or one) for N seconds (default 30)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let result = match task.as_str() {
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "demo" => demo::run(rest),
        "deploy" => deploy::run(rest),
        "e2e" => e2e::run(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(anyhow::anyhow!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {task}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
