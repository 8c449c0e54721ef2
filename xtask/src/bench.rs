//! `cargo xtask bench`: Arca and restic side by side on the same generated data,
//! written up as `docs/PERFORMANCE.md`.
//!
//! One run = a fresh copy of the generated tree and a fresh repository per tool:
//! init, first backup, unchanged re-backup, `mutate`, backup after the change,
//! restore of the latest snapshot into an empty directory (compared byte for
//! byte with the source), `check --read-data`, with `--s3` a `copy` of the
//! local repository into an empty one on the S3 server, then `forget
//! --keep-last 1` and `prune`. Every step is measured (wall,
//! user+sys CPU, peak RSS via GNU time) and the report shows medians over runs.
//! The order of the tools alternates between runs so neither always goes first.
//!
//! This is a benchmark, not a test: nothing here asserts a time. `--smoke` only
//! proves the harness works (tiny tree, one run) and fails if any step fails or
//! a restore differs.

mod criterion;
mod measure;
mod report;
mod rto;
mod s3;
mod scale;
mod trash;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::dataset;
use crate::process;
use measure::{Runner, Tool};
use report::{Report, Results, Step};
use trash::Trash;

const USAGE: &str = "\
usage: cargo xtask bench [--size 2GiB] [--runs 3] [--s3] [--smoke] [--out docs/PERFORMANCE.md] [--keep]
                         [--no-criterion] [--files 100000,1000000] [--no-files-restore]
                         [--tools arca,restic] [--seed 1]
                         [--mix default,db,media,small,dup|all] [--cache cold,warm] [--warm] [--rto]

  --size SIZE      size of the generated tree of each mix (KiB/MiB/GiB suffixes; default 2GiB)
  --runs N         runs per step; the report shows medians (default 3; 0 skips the side-by-side run)
  --s3             also run against a local S3 server (xtask/src/services.rs)
  --smoke          32MiB, 1 run, mix default, one cache state, debug build of arca,
                   no criterion, no --files; report to target/bench-smoke.md
  --out FILE       where the report goes (default docs/PERFORMANCE.md)
  --keep           keep target/bench/ (tree, repositories, logs) and reuse the generated tree next time
  --no-criterion   skip the per-primitive criterion benches
  --files LIST     also measure trees of LIST tiny files each, one at a time: first backup,
                   unchanged re-backup and restore, and how time and memory grow with the count
                   (default 100000; 0 = none; xtask/src/bench/scale.rs)
  --no-files-restore  leave out the restore of the --files trees (a second copy of each tree
                   on the disk, compared file by file, then deleted)
  --tools LIST     which tools to run (default arca,restic)
  --seed N         dataset seed (default 1)
  --mix LIST       data mixes to measure (default all): default (the volume of database files,
                   small files, logs, media and copies), db (database files, ~3:1), media
                   (incompressible), small (small text files, a quarter of SIZE), dup (a quarter
                   of SIZE in four directories)
  --cache LIST     page cache states: cold (dropped before every step; needs root), warm
                   (default both where the cache can be dropped, else warm)
  --warm           same as --cache warm
  --rto            also measure the RTO of each mix: `arca drill` (restore and verify) from the
                   S3 server against the floor (the slower of downloading the repository's
                   objects with plain GETs and writing the tree; xtask/src/bench/rto.rs); cold
                   when the first cache state is; `--runs 0 --rto` measures only that
";

/// Page cache state: dropped before every step, or left as it is.
const COLD: &str = "cold";
/// See [`COLD`].
const WARM: &str = "warm";

/// Parsed command line.
#[derive(Debug, Clone)]
struct Options {
    size: u64,
    runs: usize,
    s3: bool,
    smoke: bool,
    out: PathBuf,
    keep: bool,
    criterion: bool,
    files: Vec<u64>,
    /// Restore the `--files` trees too.
    files_restore: bool,
    tools: Vec<Tool>,
    seed: u64,
    mixes: Vec<dataset::Mix>,
    /// [`COLD`] and/or [`WARM`], in the order they run.
    caches: Vec<&'static str>,
    /// Measure the RTO of each mix (`rto.rs`).
    rto: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            size: 2 << 30,
            runs: 3,
            s3: false,
            smoke: false,
            out: PathBuf::from("docs/PERFORMANCE.md"),
            keep: false,
            criterion: true,
            files: vec![100_000],
            files_restore: true,
            tools: vec![Tool::Arca, Tool::Restic],
            seed: 1,
            mixes: dataset::Mix::ALL.to_vec(),
            caches: vec![COLD, WARM],
            rto: false,
        };
        let mut explicit = Vec::new();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "--size" => options.size = parse_size(value()?)?,
                "--runs" => options.runs = value()?.parse().context("--runs takes a number")?,
                "--out" => options.out = PathBuf::from(value()?),
                "--files" => {
                    options.files = value()?
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .replace('_', "")
                                .parse::<u64>()
                                .context("--files takes numbers")
                        })
                        .filter(|n| !matches!(n, Ok(0)))
                        .collect::<Result<_>>()?;
                }
                "--tools" => {
                    options.tools = value()?
                        .split(',')
                        .map(Tool::parse)
                        .collect::<Result<_>>()?
                }
                "--seed" => options.seed = value()?.parse().context("--seed takes a number")?,
                "--s3" => options.s3 = true,
                "--smoke" => options.smoke = true,
                "--keep" => options.keep = true,
                "--no-criterion" => options.criterion = false,
                "--no-files-restore" => options.files_restore = false,
                "--warm" => options.caches = vec![WARM],
                "--rto" => options.rto = true,
                "--mix" => {
                    options.mixes = match value()?.as_str() {
                        "all" => dataset::Mix::ALL.to_vec(),
                        list => list
                            .split(',')
                            .map(|name| dataset::Mix::parse(name.trim()))
                            .collect::<Result<_>>()?,
                    }
                }
                "--cache" => {
                    options.caches = value()?
                        .split(',')
                        .map(|state| match state.trim() {
                            COLD => Ok(COLD),
                            WARM => Ok(WARM),
                            other => bail!("unknown cache state {other:?}; use cold and/or warm"),
                        })
                        .collect::<Result<_>>()?
                }
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n\n{USAGE}"),
            }
            explicit.push(flag.as_str());
        }
        if options.smoke {
            // Explicit flags still win over the smoke defaults.
            if !explicit.contains(&"--size") {
                options.size = 32 << 20;
            }
            if !explicit.contains(&"--runs") {
                options.runs = 1;
            }
            if !explicit.contains(&"--out") {
                options.out = PathBuf::from("target/bench-smoke.md");
            }
            if !explicit.contains(&"--files") {
                options.files.clear();
            }
            if !explicit.contains(&"--mix") {
                options.mixes = vec![dataset::Mix::Default];
            }
            if !explicit.contains(&"--cache") && !explicit.contains(&"--warm") {
                options.caches.truncate(1);
            }
            options.criterion = false;
        }
        options.mixes.sort();
        options.mixes.dedup();
        options.caches.dedup();
        if options.mixes.is_empty() || options.caches.is_empty() {
            bail!("need at least one mix and one cache state\n\n{USAGE}");
        }
        options.tools.sort();
        options.tools.dedup();
        if options.tools.is_empty() {
            bail!("need at least one tool\n\n{USAGE}");
        }
        Ok(options)
    }

    /// The command line that reproduces this run, for the report.
    fn command(&self) -> String {
        let mut line = String::from("cargo xtask bench");
        if self.smoke {
            line.push_str(" --smoke");
        } else {
            line.push_str(&format!(
                " --size {} --runs {}",
                format_size(self.size),
                self.runs
            ));
        }
        if self.s3 {
            line.push_str(" --s3");
        }
        if !self.smoke {
            let files: Vec<String> = self.files.iter().map(u64::to_string).collect();
            line.push_str(&format!(
                " --files {}",
                if files.is_empty() {
                    "0".into()
                } else {
                    files.join(",")
                }
            ));
            if !self.criterion {
                line.push_str(" --no-criterion");
            }
            if !self.files_restore && !self.files.is_empty() {
                line.push_str(" --no-files-restore");
            }
        }
        if self.tools.len() == 1 {
            line.push_str(&format!(" --tools {}", self.tools[0].name()));
        }
        if self.seed != 1 {
            line.push_str(&format!(" --seed {}", self.seed));
        }
        if self.mixes != dataset::Mix::ALL && !(self.smoke && self.mixes == [dataset::Mix::Default])
        {
            let names: Vec<&str> = self.mixes.iter().map(|mix| mix.name()).collect();
            line.push_str(&format!(" --mix {}", names.join(",")));
        }
        if self.caches != [COLD, WARM] && !(self.smoke && self.caches == [COLD]) {
            line.push_str(&format!(" --cache {}", self.caches.join(",")));
        }
        if self.rto {
            line.push_str(" --rto");
        }
        line
    }
}

/// Parses `2GiB`, `32MiB`, `512KiB` (also `G`, `M`, `K`, `GB`...; all binary) or plain bytes.
fn parse_size(text: &str) -> Result<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a size like 2GiB"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("{text:?} is not a size like 2GiB"),
    };
    Ok(number << shift)
}

fn format_size(size: u64) -> String {
    match size {
        size if size % (1 << 30) == 0 => format!("{}GiB", size >> 30),
        size if size % (1 << 20) == 0 => format!("{}MiB", size >> 20),
        size if size % (1 << 10) == 0 => format!("{}KiB", size >> 10),
        size => size.to_string(),
    }
}

/// Entry point of `cargo xtask bench`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let root = process::project_root();
    let target_dir = process::target_dir();
    let bench_dir = target_dir.join("bench");
    fs::create_dir_all(&bench_dir)?;
    let mut options = options;
    let mut cache_note = None;
    if options.caches.contains(&COLD) && !measure::can_drop_page_cache() {
        if options.caches == [COLD] {
            bail!(
                "cannot write /proc/sys/vm/drop_caches (needs root); pass --cache warm to benchmark with a warm page cache"
            );
        }
        options.caches.retain(|&state| state != COLD);
        cache_note = Some(
            "the page cache could not be dropped (/proc/sys/vm/drop_caches needs root): warm runs only",
        );
    }
    // The tiny-files trees are measured once, in the first cache state.
    let cold = options.caches[0] == COLD;

    let programs = prepare_tools(&options.tools, &target_dir, options.smoke)?;
    let mut report = Report {
        command: options.command(),
        environment: environment(&programs, cache_note, &options),
        tools: options.tools.clone(),
        runs: options.runs,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..Report::default()
    };

    if options.criterion {
        report.criterion = Some(criterion::run(&target_dir)?);
    }
    // Room for a tree and its restore beside whatever the trash holds.
    let trash = Trash::new(
        bench_dir.join("trash"),
        options.size.saturating_mul(2) + scale::DISK_RESERVE,
    )?;

    if options.runs > 0 || options.rto {
        for &mix in &options.mixes {
            let data_name = format!(
                "data-v{}-{}-{}-seed{}",
                dataset::GENERATOR_VERSION,
                mix.name(),
                format_size(options.size),
                options.seed
            );
            // Emptied while there is unmeasured work ahead (generating the tree).
            trash.empty()?;
            let (base, summary) = cached_tree(&bench_dir, &data_name, |dir| {
                dataset::generate(dir, mix, options.size, options.seed)
            })?;
            report.datasets.push((mix, summary));
            let side_by_side_caches = if options.runs > 0 {
                options.caches.as_slice()
            } else {
                &[]
            };
            for &cache in side_by_side_caches {
                let mut backends = vec![Backend::Local];
                if options.s3 {
                    backends.push(Backend::S3);
                }
                for backend in backends {
                    println!("== mix {}, {cache} page cache", mix.name());
                    let results = side_by_side(
                        &options,
                        &programs,
                        &bench_dir,
                        &trash,
                        &base,
                        backend,
                        cache == COLD,
                    )?;
                    report.backends.push(report::Measured {
                        mix,
                        cache,
                        local: matches!(backend, Backend::Local),
                        results,
                    });
                }
            }
            if options.rto {
                println!(
                    "== RTO of mix {}, {} page cache",
                    mix.name(),
                    options.caches[0]
                );
                let arca = programs
                    .iter()
                    .find(|(tool, _)| *tool == Tool::Arca)
                    .context("--rto measures arca: add it to --tools")?;
                report.rto.push(rto::measure(
                    &arca.1,
                    &bench_dir.join("run-rto"),
                    &trash,
                    &base,
                    mix,
                    cold,
                    options.keep,
                )?);
            }
            if !options.keep {
                trash.discard(&base)?;
            }
        }
    }
    report.files_curve = scale::measure(
        &scale::Setup {
            programs: &programs,
            bench_dir: &bench_dir,
            trash: &trash,
            restore: options.files_restore,
            seed: options.seed,
            cold,
            keep: options.keep,
        },
        &options.files,
    )?;

    let out = root.join(&options.out);
    let notes = fs::read_to_string(&out)
        .map(|text| report::kept_notes(&text))
        .unwrap_or_else(|_| "(none yet)".into());
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&out, report.render(&notes)).with_context(|| format!("writing {}", out.display()))?;
    println!("bench: wrote {}", out.display());
    Ok(())
}

/// Where the repositories live.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Local,
    S3,
}

impl Backend {
    fn title(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::S3 => "S3 (local moto server)",
        }
    }
}

/// `options.runs` runs of every step for every tool against one kind of repository.
fn side_by_side(
    options: &Options,
    programs: &[(Tool, PathBuf)],
    bench_dir: &Path,
    trash: &Trash,
    base: &Path,
    backend: Backend,
    cold: bool,
) -> Result<Results> {
    let mut results = Results::default();
    let run_dir = bench_dir.join("run");
    for run in 0..options.runs {
        println!("== {} run {} of {}", backend.title(), run + 1, options.runs);
        trash.reset(&run_dir)?;
        // A fresh server per run: moto keeps every object in memory.
        let storage = Storage::start(backend, &run_dir)?;
        // With --s3, the local run also copies its repositories into a bucket.
        let copy_server = match (backend, options.s3) {
            (Backend::Local, true) => Some(s3::Server::start()?),
            _ => None,
        };
        let source = run_dir.join("source");
        copy_tree(base, &source)?;
        let source_arg = source.to_string_lossy().into_owned();
        // Alternate which tool goes first, so neither always meets a cold or warm system.
        let mut order: Vec<&(Tool, PathBuf)> = programs.iter().collect();
        if run % 2 == 1 {
            order.reverse();
        }
        let mut repos = Vec::new();
        for (tool, program) in &order {
            let (repo, env) = storage.repository(*tool)?;
            let runner = runner(*tool, program, &run_dir, cold, env);
            for (step, args) in [
                (Step::Init, vec!["init"]),
                (Step::FirstBackup, vec!["backup", source_arg.as_str()]),
                (Step::Unchanged, vec!["backup", source_arg.as_str()]),
            ] {
                let sample = runner.step(&repo, &args, step.slug())?;
                record(
                    &mut results,
                    step,
                    *tool,
                    sample,
                    Some(storage.size(&repo)?),
                );
            }
            repos.push((runner, repo));
        }
        dataset::mutate(&source, options.seed)?;
        for (runner, repo) in &repos {
            let tool = runner.tool;
            let sample = runner.step(repo, &["backup", &source_arg], Step::AfterMutate.slug())?;
            record(
                &mut results,
                Step::AfterMutate,
                tool,
                sample,
                Some(storage.size(repo)?),
            );

            let target = run_dir.join(format!("restore-{}", tool.name()));
            let target_arg = target.to_string_lossy();
            trash.settle();
            let sample = runner.step(
                repo,
                &["restore", "latest", "--target", &target_arg],
                Step::Restore.slug(),
            )?;
            record(&mut results, Step::Restore, tool, sample, None);
            let restored = restored_root(&target, &source);
            dataset::compare_trees(&source, &restored)
                .with_context(|| format!("{} restored a different tree", tool.name()))?;
            println!("    restore of {} is identical to the source", tool.name());
            trash.discard(&target)?;

            let sample = runner.step(repo, &["check", "--read-data"], Step::Check.slug())?;
            record(&mut results, Step::Check, tool, sample, None);

            if tool == Tool::Restic {
                restic_repository_steps(
                    &mut results,
                    &repos,
                    repo,
                    &run_dir,
                    trash,
                    &source,
                    backend,
                )?;
            }

            if let Some(server) = &copy_server {
                let (destination, mut env) = server.repository(&format!("copy-{}", tool.name()))?;
                env.push(("RESTIC_FROM_PASSWORD".into(), measure::PASSWORD.into()));
                let copier = Runner {
                    env,
                    ..runner.clone()
                };
                copier.step(&destination, &["init"], "copy-init")?;
                let sample = copier.step(
                    &destination,
                    &["copy", "--from-repo", repo],
                    Step::CopyToS3.slug(),
                )?;
                let copied = server.repository_bytes(&destination)?;
                record(&mut results, Step::CopyToS3, tool, sample, Some(copied));
            }

            // Forgetting is not measured; arca's prune marks what restic's
            // deletes (a later prune deletes it, docs/FORMAT.md §16).
            runner.step(repo, &["forget", "--keep-last", "1"], "forget")?;
            let sample = runner.step(repo, &["prune"], Step::Prune.slug())?;
            record(
                &mut results,
                Step::Prune,
                tool,
                sample,
                Some(storage.size(repo)?),
            );
        }
    }
    if !options.keep {
        trash.discard(&run_dir)?;
    }
    Ok(results)
}

/// Arca reading the repository restic wrote: `restore latest` (the snapshot
/// restic's own restore just restored, whose sample is recorded beside it)
/// compared with the source, and, on a local run, its migration into an
/// empty Arca repository. Nothing without arca among the tools.
fn restic_repository_steps(
    results: &mut Results,
    repos: &[(Runner, String)],
    restic_repo: &str,
    run_dir: &Path,
    trash: &Trash,
    source: &Path,
    backend: Backend,
) -> Result<()> {
    let Some((arca, _)) = repos.iter().find(|(runner, _)| runner.tool == Tool::Arca) else {
        return Ok(());
    };
    if let Some(restic_restore) = results
        .samples
        .get(&(Step::Restore, Tool::Restic))
        .and_then(|samples| samples.last().copied())
    {
        record(
            results,
            Step::RestoreFromRestic,
            Tool::Restic,
            restic_restore,
            None,
        );
    }
    let target = run_dir.join("restore-arca-from-restic");
    let target_arg = target.to_string_lossy();
    trash.settle();
    let sample = arca.step(
        restic_repo,
        &["restore", "latest", "--target", &target_arg],
        Step::RestoreFromRestic.slug(),
    )?;
    record(results, Step::RestoreFromRestic, Tool::Arca, sample, None);
    dataset::compare_trees(source, &restored_root(&target, source))
        .context("arca restored a different tree from restic's repository")?;
    println!("    arca's restore from restic's repository is identical to the source");
    trash.discard(&target)?;
    if let Backend::Local = backend {
        let migrated = run_dir.join("repo-migrated");
        let migrated_arg = migrated.to_string_lossy();
        let mut env = arca.env.clone();
        env.push(("RESTIC_FROM_PASSWORD".into(), measure::PASSWORD.into()));
        let migrator = Runner {
            env,
            ..arca.clone()
        };
        migrator.step(&migrated_arg, &["init"], "migrate-init")?;
        let sample = migrator.step(
            &migrated_arg,
            &["copy", "--from-repo", restic_repo],
            Step::MigrateFromRestic.slug(),
        )?;
        let bytes = dataset::tree_bytes(&migrated)?;
        record(
            results,
            Step::MigrateFromRestic,
            Tool::Arca,
            sample,
            Some(bytes),
        );
        trash.discard(&migrated)?;
    }
    Ok(())
}

fn runner(
    tool: Tool,
    program: &Path,
    run_dir: &Path,
    cold: bool,
    env: Vec<(String, String)>,
) -> Runner {
    Runner {
        tool,
        program: program.to_path_buf(),
        env,
        cache_home: run_dir.join(format!("cache-{}", tool.name())),
        log_dir: run_dir.join("logs"),
        cold,
    }
}

/// Stores the sample and, after init and backups, the repository size.
fn record(
    results: &mut Results,
    step: Step,
    tool: Tool,
    sample: measure::Sample,
    repo_bytes: Option<u64>,
) {
    results
        .samples
        .entry((step, tool))
        .or_default()
        .push(sample);
    if let Some(bytes) = repo_bytes {
        results
            .repo_bytes
            .entry((step, tool))
            .or_default()
            .push(bytes);
    }
}

/// Where the repositories of one side-by-side run live.
enum Storage {
    /// Directories in this run directory.
    Local(PathBuf),
    /// Buckets on a local S3 server.
    S3(s3::Server),
}

impl Storage {
    fn start(backend: Backend, run_dir: &Path) -> Result<Self> {
        match backend {
            Backend::Local => Ok(Storage::Local(run_dir.to_path_buf())),
            Backend::S3 => Ok(Storage::S3(s3::Server::start()?)),
        }
    }

    /// A fresh repository for `tool`: its URL and extra environment.
    fn repository(&self, tool: Tool) -> Result<(String, Vec<(String, String)>)> {
        match self {
            Storage::Local(run_dir) => {
                let repo = run_dir.join(format!("repo-{}", tool.name()));
                Ok((repo.to_string_lossy().into_owned(), Vec::new()))
            }
            Storage::S3(server) => server.repository(tool.name()),
        }
    }

    /// Bytes stored in the repository.
    fn size(&self, repo: &str) -> Result<u64> {
        match self {
            Storage::Local(_) => dataset::tree_bytes(Path::new(repo)),
            Storage::S3(server) => server.repository_bytes(repo),
        }
    }
}

/// Where a restore put the source tree: restic recreates the absolute path
/// under the target; a tool may also restore the directory itself or its contents.
fn restored_root(target: &Path, source: &Path) -> PathBuf {
    let absolute = target.join(source.strip_prefix("/").unwrap_or(source));
    let named = source.file_name().map(|name| target.join(name));
    [Some(absolute), named]
        .into_iter()
        .flatten()
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| target.to_path_buf())
}

/// The generated tree named `name` under `bench_dir`, reused when a completed
/// one is there (its summary is stored beside it), else built by `generate`.
fn cached_tree(
    bench_dir: &Path,
    name: &str,
    generate: impl FnOnce(&Path) -> Result<dataset::Summary>,
) -> Result<(PathBuf, dataset::Summary)> {
    let dir = bench_dir.join(name);
    let done = bench_dir.join(format!("{name}.done"));
    if let Ok(text) = fs::read_to_string(&done)
        && dir.is_dir()
        && let Some(summary) = parse_summary(&text)
    {
        println!("bench: reusing {}", dir.display());
        return Ok((dir, summary));
    }
    let _ = fs::remove_file(&done);
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    println!("bench: generating {}", dir.display());
    let summary = generate(&dir)?;
    fs::write(&done, summary_text(&summary))?;
    Ok((dir, summary))
}

/// One `category<TAB>bytes<TAB>files` line per category.
fn summary_text(summary: &dataset::Summary) -> String {
    let lines: Vec<String> = summary
        .categories
        .iter()
        .map(|(name, (bytes, files))| format!("{name}\t{bytes}\t{files}"))
        .collect();
    lines.join("\n")
}

fn parse_summary(text: &str) -> Option<dataset::Summary> {
    let mut summary = dataset::Summary::default();
    for line in text.lines() {
        let mut fields = line.split('\t');
        let (name, bytes, files) = (
            fields.next()?,
            fields.next()?.parse().ok()?,
            fields.next()?.parse().ok()?,
        );
        summary.categories.insert(name.to_string(), (bytes, files));
    }
    (!summary.categories.is_empty()).then_some(summary)
}

/// `cp -a`: keeps modification times, so the copy is as unchanged as the original.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    process::run(Command::new("cp").arg("-a").arg(from).arg(to))
}

/// The executable of each tool: arca built in release (in debug for `--smoke`,
/// which only proves the harness works and should not pay for a release build in
/// CI), restic from Debian (installed with apt-get when missing), and GNU time
/// for the measurements.
fn prepare_tools(tools: &[Tool], target_dir: &Path, smoke: bool) -> Result<Vec<(Tool, PathBuf)>> {
    let mut wanted: Vec<(&[&str], &str)> = vec![(&["/usr/bin/time", "true"], "time")];
    if tools.contains(&Tool::Restic) {
        wanted.push((&["restic", "version"], "restic"));
    }
    process::ensure_debian_packages(&wanted)?;
    let mut programs = Vec::new();
    for &tool in tools {
        let program = match tool {
            Tool::Arca => {
                let built = if smoke {
                    process::build_debug_binaries()?
                } else {
                    process::run(process::cargo().args(["build", "--release", "-p", "arca"]))?;
                    target_dir.join("release")
                };
                // Run a copy: other builds in this target directory must not swap
                // the binary in the middle of a benchmark.
                let copy = target_dir.join("bench/arca");
                fs::copy(built.join("arca"), &copy)
                    .with_context(|| format!("copying {}", built.join("arca").display()))?;
                copy
            }
            Tool::Restic => PathBuf::from("restic"),
        };
        programs.push((tool, program));
    }
    Ok(programs)
}

/// Machine, versions and conditions, for the report.
fn environment(
    programs: &[(Tool, PathBuf)],
    cache_note: Option<&str>,
    options: &Options,
) -> Vec<(String, String)> {
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "unknown".into())
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown");
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown".into(), |kib| report::bytes(kib * 1024.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut lines = vec![
        (
            "Date".into(),
            output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        (
            "CPU".into(),
            format!("{model}, {cores} cores available, {memory} RAM"),
        ),
        ("Kernel".into(), output("uname", &["-sr"])),
        (
            "Load average at start (1, 5, 15 min)".into(),
            fs::read_to_string("/proc/loadavg")
                .map(|text| {
                    text.split_whitespace()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|_| "unknown".into()),
        ),
        (
            "Commit".into(),
            output("git", &["describe", "--always", "--dirty"]),
        ),
        ("rustc".into(), output("rustc", &["--version"])),
    ];
    for (tool, program) in programs {
        let program = program.to_string_lossy();
        let version = match tool {
            Tool::Arca => output(&program, &["--version"]),
            Tool::Restic => output(&program, &["version"]),
        };
        lines.push((tool.name().into(), version));
    }
    lines.push((
        "Conditions".into(),
        format!(
            "{}; both tools with their defaults (restic: compression auto, its local cache; arca: its defaults), \
             password from RESTIC_PASSWORD, caches under a fresh XDG_CACHE_HOME per run; the order of the tools \
             alternates between runs; {}",
            cache_note.unwrap_or(
                "cold: page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before every step; warm: not dropped",
            ),
            if options.smoke { "smoke run with a debug build of arca: numbers are not meaningful" } else { "the machine may be shared with builds of other work (see Notes)" }
        ),
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("32M").unwrap(), 32 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("2TB").is_err());
        assert!(parse_size("GiB").is_err());
        assert_eq!(format_size(2 << 30), "2GiB");
        assert_eq!(format_size(96 << 20), "96MiB");
    }

    #[test]
    fn smoke_defaults_yield_to_explicit_flags() {
        let smoke = Options::parse(&args("--smoke")).unwrap();
        assert_eq!(
            (smoke.size, smoke.runs, smoke.criterion),
            (32 << 20, 1, false)
        );
        assert!(smoke.files.is_empty());
        assert_eq!(smoke.out, PathBuf::from("target/bench-smoke.md"));
        let sized = Options::parse(&args("--smoke --size 8MiB --tools restic")).unwrap();
        assert_eq!(
            (sized.size, sized.tools.clone()),
            (8 << 20, vec![Tool::Restic])
        );
        assert_eq!(sized.command(), "cargo xtask bench --smoke --tools restic");
        let full = Options::parse(&args("--files 0 --no-criterion")).unwrap();
        assert_eq!(
            full.command(),
            "cargo xtask bench --size 2GiB --runs 3 --files 0 --no-criterion"
        );
        assert!(Options::parse(&args("--runs")).is_err());
        assert!(Options::parse(&args("--bogus")).is_err());
        assert!(Options::parse(&args("--tools rustic")).is_err());
    }

    #[test]
    fn mixes_and_cache_states_parse_and_reproduce() {
        let all = Options::parse(&args("--mix all")).unwrap();
        assert_eq!(all.mixes, dataset::Mix::ALL);
        assert_eq!(all.caches, [COLD, WARM]);
        assert_eq!(
            Options::parse(&args("--smoke")).unwrap().mixes,
            [dataset::Mix::Default]
        );
        let some = Options::parse(&args("--mix media,db --cache warm --no-criterion")).unwrap();
        assert_eq!(some.mixes, [dataset::Mix::Database, dataset::Mix::Media]);
        assert_eq!(
            some.command(),
            "cargo xtask bench --size 2GiB --runs 3 --files 100000 --no-criterion --mix db,media --cache warm"
        );
        assert_eq!(Options::parse(&args("--warm")).unwrap().caches, [WARM]);
        let rto = Options::parse(&args("--runs 0 --rto --mix default --cache cold")).unwrap();
        assert!(rto.rto);
        assert!(!some.rto);
        assert!(
            rto.command().ends_with(" --mix default --cache cold --rto"),
            "{}",
            rto.command()
        );
        assert!(Options::parse(&args("--mix db,videos")).is_err());
        assert!(Options::parse(&args("--cache lukewarm")).is_err());
    }

    #[test]
    fn restored_root_finds_restics_absolute_layout() {
        let target =
            std::env::temp_dir().join(format!("arca-xtask-restored-{}", std::process::id()));
        let source = Path::new("/srv/data/source");
        fs::create_dir_all(target.join("srv/data/source")).unwrap();
        assert_eq!(
            restored_root(&target, source),
            target.join("srv/data/source")
        );
        fs::remove_dir_all(&target).unwrap();
        fs::create_dir_all(target.join("source")).unwrap();
        assert_eq!(restored_root(&target, source), target.join("source"));
        fs::remove_dir_all(&target).unwrap();
    }

    #[test]
    fn summary_cache_round_trips() {
        let mut summary = dataset::Summary::default();
        summary.categories.insert("log files".into(), (10, 2));
        summary.categories.insert("media".into(), (1 << 40, 7));
        let parsed = parse_summary(&summary_text(&summary)).unwrap();
        assert_eq!(parsed.categories, summary.categories);
        assert!(parse_summary("truncated\t1").is_none());
        assert!(parse_summary("").is_none());
    }
}
