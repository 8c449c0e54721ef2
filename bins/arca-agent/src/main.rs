//! `arca-agent`: the mover a backup or restore Job runs. Parses the action
//! arguments, reads the environment into an `arca_mover::MoverConfig`, runs
//! the actions, writes the result document to the termination log and exits
//! with a code that says what happened (docs/AGENT.md):
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | failed (local I/O and anything unclassified; may be retried); a drill whose consistency command failed or that missed its RTO |
//! | 2    | bad environment or arguments (fatal) |
//! | 3    | partial: a backup saved its snapshot without some unreadable files, or a secondary repository could not be replicated to (do not retry) |
//! | 11   | retryable: storage unreachable, timeouts, throttling |
//! | 12   | wrong password (fatal) |
//! | 13   | repository damaged (fatal); a drill found the restored data damaged |
//! | 143  | stopped by SIGTERM/SIGINT (nothing committed) |
//!
//! All behaviour lives in `arca-mover`; this binary only wires and prints.

#![allow(clippy::print_stderr, reason = "the pod log is stderr")]

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use arca_mover::progress::{ProgressLine, ProgressSink};
use arca_mover::push::ProgressPush;
use arca_mover::{Action, ErrorClass, MoverConfig, MoverReport};

const USAGE: &str =
    "usage: arca-agent ACTION... (unlock, backup, prune, restore, check, verify, drill, replicate)
       [--read-data-subset n/m|P%]  (for check; or ARCA_CHECK_READ_DATA_SUBSET)
The environment is VolSync's restic mover contract; see docs/AGENT.md.";

fn main() -> ExitCode {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    init_tracing();
    let env = |name: &str| std::env::var(name).ok();
    let result_path = MoverConfig::result_path_from_env(env);
    let fail_early = |class: ErrorClass, error: String| {
        let host = env("ARCA_HOST")
            .or_else(|| env("RESTIC_HOST"))
            .unwrap_or_else(|| arca_mover::config::DEFAULT_HOST.to_owned());
        let report =
            MoverReport::failed(started, clock.elapsed().as_secs_f64(), host, class, error);
        finish(&report, &result_path)
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Invocation {
        actions,
        read_data_subset,
    } = match parse_args(&args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            eprintln!("arca-agent {}\n{USAGE}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("{USAGE}");
            return fail_early(ErrorClass::Config, err);
        }
    };
    let mut config = match MoverConfig::from_env(env) {
        Ok(config) => config,
        Err(err) => return fail_early(err.class(), err.to_string()),
    };
    if let Some(subset) = read_data_subset {
        match subset.parse() {
            Ok(subset) => config.check_read_data = subset,
            Err(err) => {
                return fail_early(ErrorClass::Config, format!("--read-data-subset: {err}"));
            }
        }
    }
    log_config(&config, &actions);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail_early(
                ErrorClass::Failed,
                format!("cannot start the async runtime: {err}"),
            );
        }
    };
    let report = runtime.block_on(run_until_signalled(&config, &actions, started, clock));
    // Threads blocked in storage or file I/O must not delay the exit.
    runtime.shutdown_background();
    finish(&report, &config.result_path)
}

/// What the arguments ask for.
struct Invocation {
    actions: Vec<Action>,
    /// `--read-data-subset`, overriding `ARCA_CHECK_READ_DATA_SUBSET`.
    read_data_subset: Option<String>,
}

/// `Ok(None)` for `--help`/`--version`.
fn parse_args(args: &[String]) -> Result<Option<Invocation>, String> {
    let mut actions = Vec::new();
    let mut read_data_subset = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" | "-V" | "--version" => return Ok(None),
            "--read-data-subset" => {
                read_data_subset = Some(
                    args.next()
                        .ok_or("--read-data-subset needs a value")?
                        .clone(),
                );
            }
            other => match other.strip_prefix("--read-data-subset=") {
                Some(value) => read_data_subset = Some(value.to_owned()),
                None => actions.push(other.parse::<Action>().map_err(|e| e.to_string())?),
            },
        }
    }
    if actions.is_empty() {
        return Err("no action given".into());
    }
    Ok(Some(Invocation {
        actions,
        read_data_subset,
    }))
}

async fn run_until_signalled(
    config: &MoverConfig,
    actions: &[Action],
    started: jiff::Timestamp,
    clock: Instant,
) -> MoverReport {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let error = "cannot install the signal handlers".to_owned();
        return MoverReport::failed(started, 0.0, config.host.clone(), ErrorClass::Failed, error);
    };
    let stopped = |signal: &str| {
        MoverReport::failed(
            started,
            clock.elapsed().as_secs_f64(),
            config.host.clone(),
            ErrorClass::Interrupted,
            format!("stopped by {signal}; nothing was committed by the action that was running"),
        )
    };
    // Biased: the signal handlers are polled before the actions start.
    tokio::select! {
        biased;
        _ = terminate.recv() => stopped("SIGTERM"),
        _ = interrupt.recv() => stopped("SIGINT"),
        report = arca_mover::actions::run(config, actions, sink(config)) => report,
    }
}

/// Writes the result document where the controller reads it, logs it, and
/// turns it into the exit code.
fn finish(report: &MoverReport, result_path: &Path) -> ExitCode {
    let json = report.to_json();
    if let Err(err) = std::fs::write(result_path, &json) {
        eprintln!(
            "cannot write the result document to {}: {err}",
            result_path.display()
        );
    }
    eprintln!("result: {json}");
    match &report.error {
        Some(error) => eprintln!("arca-agent failed: {error}"),
        None => eprintln!("arca-agent completed in {:.1} s", report.duration_seconds),
    }
    ExitCode::from(report.exit_code)
}

/// The pod log, and the controller's progress receiver when it gave one.
fn sink(config: &MoverConfig) -> Arc<dyn ProgressSink> {
    match &config.progress_url {
        Some(target) => Arc::new(ProgressPush::new(target.clone(), Arc::new(StderrSink))),
        None => Arc::new(StderrSink),
    }
}

/// Progress lines and warnings go to the pod log.
struct StderrSink;

impl ProgressSink for StderrSink {
    fn line(&self, line: &ProgressLine) {
        eprintln!("{line}");
    }

    fn warning(&self, path: &Path, message: &str) {
        eprintln!("warning: {}: {message}", path.display());
    }
}

/// What the run will do, without secrets (the config's `Debug` hides them).
fn log_config(config: &MoverConfig, actions: &[Action]) {
    let names: Vec<&str> = actions.iter().map(|a| a.name()).collect();
    tracing::info!(
        actions = %names.join(" "),
        data_dir = %config.data_dir.display(),
        cache_dir = %config.cache_dir.display(),
        host = %config.host,
        "arca-agent {}",
        env!("CARGO_PKG_VERSION")
    );
    tracing::debug!(?config, "configuration");
}

/// Logs go to stderr: info by default; `ARCA_LOG` (an env-filter directive) overrides.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .init();
}
