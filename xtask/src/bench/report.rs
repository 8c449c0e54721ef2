//! Turning samples into `docs/PERFORMANCE.md`: medians per step and tool, the
//! Arca/restic ratio, the issue's targets, criterion's per-primitive numbers and
//! the hardware bound they imply.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::criterion::{Estimate, Throughput};
use super::measure::{Sample, Tool};
use crate::dataset::{Mix, Summary};

/// Lines between these markers are kept when the report is regenerated.
pub(crate) const NOTES_BEGIN: &str = "<!-- notes: kept across runs of cargo xtask bench -->";
/// End of the hand-written notes.
pub(crate) const NOTES_END: &str = "<!-- end of notes -->";

/// The measured steps of one side-by-side run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    /// `init` of an empty repository.
    Init,
    /// First backup into the empty repository.
    FirstBackup,
    /// Backup again with nothing changed.
    Unchanged,
    /// Backup after `dataset::mutate`.
    AfterMutate,
    /// Restore of the latest snapshot into an empty directory.
    Restore,
    /// `check --read-data`.
    Check,
    /// `prune` after forgetting all but the latest snapshot.
    Prune,
    /// `restore latest` from the repository restic wrote (arca reading
    /// restic's format; restic's own restore of the same snapshot beside it).
    RestoreFromRestic,
    /// `copy --from-repo` of restic's repository (every snapshot) into an
    /// empty local Arca repository: the migration (arca only).
    MigrateFromRestic,
    /// `copy --from-repo` of the local repository (all its snapshots) into
    /// an empty repository on the S3 server.
    CopyToS3,
}

impl Step {
    /// All steps in the order they run.
    pub(crate) const ALL: [Step; 10] = [
        Step::Init,
        Step::FirstBackup,
        Step::Unchanged,
        Step::AfterMutate,
        Step::Restore,
        Step::Check,
        Step::RestoreFromRestic,
        Step::MigrateFromRestic,
        Step::CopyToS3,
        Step::Prune,
    ];

    /// How the table names the step.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::FirstBackup => "first backup",
            Step::Unchanged => "unchanged re-backup",
            Step::AfterMutate => "backup after 5 % change",
            Step::Restore => "full restore",
            Step::Check => "check --read-data",
            Step::RestoreFromRestic => "restore from restic's repository",
            Step::MigrateFromRestic => "migration of restic's repository (copy --from-repo)",
            Step::Prune => "prune after forget --keep-last 1",
            Step::CopyToS3 => "copy of the repository to S3",
        }
    }

    /// Short name for log files.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Step::Init => "init",
            Step::FirstBackup => "backup-first",
            Step::Unchanged => "backup-unchanged",
            Step::AfterMutate => "backup-mutated",
            Step::Restore => "restore",
            Step::Check => "check",
            Step::RestoreFromRestic => "restore-restic",
            Step::MigrateFromRestic => "migrate-restic",
            Step::Prune => "prune",
            Step::CopyToS3 => "copy-s3",
        }
    }
}

/// Everything measured against one kind of repository (local or S3).
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// One sample per run, per step and tool.
    pub(crate) samples: BTreeMap<(Step, Tool), Vec<Sample>>,
    /// Repository size after the step (init and backups only), per run.
    pub(crate) repo_bytes: BTreeMap<(Step, Tool), Vec<u64>>,
}

impl Results {
    fn median(&self, step: Step, tool: Tool, metric: fn(&Sample) -> f64) -> Option<f64> {
        median(
            self.samples
                .get(&(step, tool))?
                .iter()
                .map(metric)
                .collect(),
        )
    }

    fn median_repo(&self, step: Step, tool: Tool) -> Option<f64> {
        median(
            self.repo_bytes
                .get(&(step, tool))?
                .iter()
                .map(|&bytes| bytes as f64)
                .collect(),
        )
    }
}

/// Median of the values (mean of the middle two for an even count).
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// The command line that reproduces the run.
    pub(crate) command: String,
    /// When and where it ran, versions, cache policy: `(label, value)` lines.
    pub(crate) environment: Vec<(String, String)>,
    /// Tools compared, Arca first.
    pub(crate) tools: Vec<Tool>,
    /// Runs per step.
    pub(crate) runs: usize,
    /// CPU cores available to the tools.
    pub(crate) cores: usize,
    /// The generated tree of each data mix measured side by side.
    pub(crate) datasets: Vec<(Mix, Summary)>,
    /// Results per data mix, cache state and repository kind.
    pub(crate) backends: Vec<Measured>,
    /// criterion estimates, unless skipped.
    pub(crate) criterion: Option<Vec<Estimate>>,
    /// The cost curve in files (`--files`).
    pub(crate) files_curve: super::scale::Curve,
    /// Measured RTO per mix (`--rto`).
    pub(crate) rto: Vec<super::rto::Rto>,
}

/// One side-by-side run of every step: which data, cache state and repository.
#[derive(Debug)]
pub(crate) struct Measured {
    /// The data mix backed up.
    pub(crate) mix: Mix,
    /// "cold" (page cache dropped before every step) or "warm".
    pub(crate) cache: &'static str,
    /// Whether the repositories were local directories (else on the S3 server).
    pub(crate) local: bool,
    /// What was measured.
    pub(crate) results: Results,
}

impl Measured {
    /// How the report names this run: repository kind, mix and cache state.
    fn title(&self) -> String {
        format!(
            "{} repository, mix {}, {} page cache",
            if self.local {
                "local"
            } else {
                "S3 (local moto server)"
            },
            self.mix.name(),
            self.cache
        )
    }

    /// The short label of the worst-ratio table.
    fn label(&self) -> String {
        format!(
            "{}{}, {}",
            self.mix.name(),
            if self.local { "" } else { " on S3" },
            self.cache
        )
    }
}

/// The issue's targets: step, metric, the largest Arca/restic ratio that meets it.
const TARGETS: [(Step, Metric, f64, &str); 11] = [
    (
        Step::RestoreFromRestic,
        Metric::Wall,
        1.0,
        "restore from a restic repository at least as fast as restic",
    ),
    (
        Step::FirstBackup,
        Metric::Wall,
        1.0 / 3.0,
        "first backup ≥ 3× faster",
    ),
    (
        Step::Unchanged,
        Metric::Wall,
        1.0 / 5.0,
        "unchanged re-backup ≥ 5× faster",
    ),
    (
        Step::AfterMutate,
        Metric::Wall,
        1.0 / 3.0,
        "backup after 5 % change ≥ 3× faster",
    ),
    (
        Step::Restore,
        Metric::Wall,
        1.0 / 2.0,
        "full restore ≥ 2× faster",
    ),
    (
        Step::Check,
        Metric::Wall,
        1.0 / 2.0,
        "check --read-data ≥ 2× faster",
    ),
    (
        Step::Prune,
        Metric::Wall,
        1.0 / 2.0,
        "prune after forgetting ≥ 2× faster",
    ),
    (
        Step::Prune,
        Metric::Rss,
        1.0,
        "peak RSS during prune ≤ restic's",
    ),
    (
        Step::CopyToS3,
        Metric::Wall,
        1.0 / 2.0,
        "copy local → S3 ≥ 2× faster",
    ),
    (
        Step::FirstBackup,
        Metric::Rss,
        0.5,
        "peak RSS during first backup ≤ 0.5× restic's",
    ),
    (
        Step::FirstBackup,
        Metric::Repo,
        1.0,
        "repository size after first backup ≤ restic's",
    ),
];

#[derive(Debug, Clone, Copy)]
enum Metric {
    Wall,
    Cpu,
    Rss,
    Repo,
}

impl Metric {
    fn of(self, results: &Results, step: Step, tool: Tool) -> Option<f64> {
        match self {
            Metric::Wall => results.median(step, tool, |s| s.wall),
            Metric::Cpu => results.median(step, tool, |s| s.cpu),
            Metric::Rss => results.median(step, tool, |s| s.rss as f64),
            Metric::Repo => results.median_repo(step, tool),
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Metric::Wall | Metric::Cpu => format!("{value:.2} s"),
            Metric::Rss | Metric::Repo => bytes(value),
        }
    }

    /// An arca/restic ratio of this metric: repository sizes to three
    /// decimals, since their target sits at 1× and they differ by tenths
    /// of a percent.
    fn ratio(self, value: f64) -> String {
        match self {
            Metric::Repo => format!("{value:.3}×"),
            Metric::Wall | Metric::Cpu | Metric::Rss => format!("{value:.2}×"),
        }
    }
}

/// Human-readable binary size.
pub(crate) fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = value;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{value:.0} B"),
        _ if value < 10.0 => format!("{value:.2} {}", UNITS[unit]),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

fn ratio(arca: Option<f64>, restic: Option<f64>) -> String {
    match (arca, restic) {
        (Some(arca), Some(restic)) if restic > 0.0 => format!("{:.2}×", arca / restic),
        _ => "–".to_string(),
    }
}

impl Report {
    /// The whole Markdown document; `notes` is the kept hand-written section.
    pub(crate) fn render(&self, notes: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Performance: Arca and restic side by side\n");
        let _ = writeln!(
            out,
            "Generated by `cargo xtask bench` (xtask/src/bench.rs); only the Notes section is written by hand.\n"
        );
        let _ = writeln!(out, "Reproduce with:\n\n```sh\n{}\n```\n", self.command);
        let _ = writeln!(out, "## Machine and versions\n");
        for (label, value) in &self.environment {
            let _ = writeln!(out, "- {label}: {value}");
        }
        out.push('\n');
        for (mix, dataset) in &self.datasets {
            self.render_dataset(&mut out, *mix, dataset);
        }
        for measured in &self.backends {
            self.render_results(&mut out, &measured.title(), &measured.results);
        }
        if self.tools.len() == 2 && !self.backends.is_empty() {
            self.render_worst(&mut out);
            self.render_targets(&mut out);
        }
        if let Some(estimates) = &self.criterion {
            self.render_criterion(&mut out, estimates);
        }
        if !self.files_curve.points.is_empty() {
            super::scale::render(&mut out, &self.files_curve);
        }
        if !self.rto.is_empty() {
            super::rto::render(&mut out, &self.rto);
        }
        let _ = writeln!(
            out,
            "## Notes\n\n{NOTES_BEGIN}\n{}\n{NOTES_END}",
            notes.trim_matches('\n')
        );
        out
    }

    fn render_dataset(&self, out: &mut String, mix: Mix, dataset: &Summary) {
        let _ = writeln!(out, "## Dataset: mix {}\n", mix.name());
        let _ = writeln!(
            out,
            "{}. Generated by `arca-testdata` and written by `xtask/src/dataset.rs` (seeded, byte-for-byte reproducible): {} in {} files.\n",
            mix.description(),
            bytes(dataset.bytes() as f64),
            dataset.files()
        );
        let _ = writeln!(out, "| part | size | files |\n|---|---:|---:|");
        for (name, (size, files)) in &dataset.categories {
            let _ = writeln!(out, "| {name} | {} | {files} |", bytes(*size as f64));
        }
        let _ = writeln!(
            out,
            "\nThe mutate step (between the unchanged re-backup and the backup after change) rewrites random 8 KiB \
             pages of the database files (3 % of the data; in a mix without them, of its other files), appends to \
             the logs (1 %; else to small files, else to the other files), adds small files (0.5 %) and deletes some \
             (0.5 %, if the mix has small files).\n"
        );
    }

    fn render_results(&self, out: &mut String, backend: &str, results: &Results) {
        let _ = writeln!(
            out,
            "## Side by side: {backend} (medians of {} runs)\n",
            self.runs
        );
        let names: Vec<&str> = self.tools.iter().map(|tool| tool.name()).collect();
        let mut header = String::from("| step |");
        let mut rule = String::from("|---|");
        for metric in ["wall", "CPU (user+sys)", "peak RSS"] {
            for name in &names {
                let _ = write!(header, " {name} {metric} |");
                rule.push_str("---:|");
            }
            if self.tools.len() == 2 {
                header.push_str(" arca/restic |");
                rule.push_str("---:|");
            }
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for step in Step::ALL {
            let mut row = format!("| {} |", step.title());
            for metric in [Metric::Wall, Metric::Cpu, Metric::Rss] {
                let values: Vec<Option<f64>> = self
                    .tools
                    .iter()
                    .map(|&tool| metric.of(results, step, tool))
                    .collect();
                for value in &values {
                    let _ = write!(
                        row,
                        " {} |",
                        value.map_or("–".to_string(), |v| metric.format(v))
                    );
                }
                if let [arca, restic] = values[..] {
                    let _ = write!(row, " {} |", ratio(arca, restic));
                }
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out, "\nRepository size after each step:\n");
        let _ = writeln!(
            out,
            "| after | {} |{}\n|---|{}",
            names.join(" | "),
            if self.tools.len() == 2 {
                " arca/restic |"
            } else {
                ""
            },
            "---:|".repeat(self.tools.len() + usize::from(self.tools.len() == 2))
        );
        for step in [
            Step::Init,
            Step::FirstBackup,
            Step::Unchanged,
            Step::AfterMutate,
        ] {
            let values: Vec<Option<f64>> = self
                .tools
                .iter()
                .map(|&tool| Metric::Repo.of(results, step, tool))
                .collect();
            let mut row = format!("| {} |", step.title());
            for value in &values {
                let _ = write!(row, " {} |", value.map_or("–".to_string(), bytes));
            }
            if let [arca, restic] = values[..] {
                let _ = write!(row, " {} |", ratio(arca, restic));
            }
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(
            out,
            "\nEvery run's wall times (seconds), for judging the spread:\n"
        );
        for ((step, tool), samples) in &results.samples {
            let walls: Vec<String> = samples.iter().map(|s| format!("{:.2}", s.wall)).collect();
            let _ = writeln!(
                out,
                "- {} {}: {}",
                tool.name(),
                step.title(),
                walls.join(", ")
            );
        }
        out.push('\n');
    }

    /// The largest arca/restic ratio of `metric` at `step` over the local
    /// runs (every mix and cache state), with the run's label.
    fn worst(&self, step: Step, metric: Metric) -> Option<(f64, String)> {
        self.backends
            .iter()
            .filter(|measured| measured.local)
            .filter_map(|measured| {
                let arca = metric.of(&measured.results, step, Tool::Arca)?;
                let restic = metric.of(&measured.results, step, Tool::Restic)?;
                (restic > 0.0).then(|| (arca / restic, measured.label()))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    fn render_worst(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Worst ratio to restic over the mixes and cache states measured (local repository)\n"
        );
        let _ = writeln!(
            out,
            "| step | wall arca/restic (where) | CPU arca/restic (where) | peak RSS arca/restic (where) | repository arca/restic (where) |\n|---|---:|---:|---:|---:|"
        );
        let cell = |step, metric| {
            self.worst(step, metric)
                .map_or("–".to_string(), |(value, label)| {
                    format!("{} ({label})", metric.ratio(value))
                })
        };
        for step in Step::ALL {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                step.title(),
                cell(step, Metric::Wall),
                cell(step, Metric::Cpu),
                cell(step, Metric::Rss),
                cell(step, Metric::Repo)
            );
        }
        out.push('\n');
    }

    fn render_targets(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Targets of issues 4 and 23 (local repository, worst mix and cache state)\n"
        );
        let _ = writeln!(
            out,
            "| target | arca/restic | needed | met |\n|---|---:|---:|---|"
        );
        for (step, metric, limit, title) in TARGETS {
            let (measured, met) = match self.worst(step, metric) {
                Some((value, label)) => {
                    let verdict = if value <= limit {
                        "yes".to_string()
                    } else {
                        format!(
                            "**no** (arca must get {:.0} % better)",
                            (1.0 - limit / value) * 100.0
                        )
                    };
                    (format!("{} ({label})", metric.ratio(value)), verdict)
                }
                _ => ("–".to_string(), "not measured".to_string()),
            };
            let _ = writeln!(out, "| {title} | {measured} | ≤ {limit:.2}× | {met} |");
        }
        out.push('\n');
    }

    fn render_criterion(&self, out: &mut String, estimates: &[Estimate]) {
        let _ = writeln!(
            out,
            "## Primitives on one core (criterion, `cargo bench -p arca-benches`)\n"
        );
        if estimates.is_empty() {
            let _ = writeln!(
                out,
                "criterion produced no results (are the benches in benches/benches/ written yet?).\n"
            );
            return;
        }
        let _ = writeln!(
            out,
            "| benchmark | median time | throughput |\n|---|---:|---:|"
        );
        for estimate in estimates {
            let rate = match estimate.throughput {
                Some(Throughput::Bytes(_)) => {
                    format!(
                        "{}/s",
                        bytes(estimate.bytes_per_second().unwrap_or_default())
                    )
                }
                Some(Throughput::Elements(elements)) => {
                    format!("{:.2} M elements/s", elements / estimate.median_ns * 1e3)
                }
                None => "–".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {rate} |",
                estimate.id,
                duration(estimate.median_ns)
            );
        }
        out.push('\n');
        self.render_bound(out, estimates);
    }

    /// The first-backup throughput the primitives allow, against the measured one.
    ///
    /// Rates are per byte of the tree: chunking and hashing see every byte,
    /// compression and encryption only the bytes left after deduplication
    /// (the dataset's copies never reach them), so a stage that sees a
    /// fraction `f` of the tree at `r` bytes/s allows `r / f` bytes/s of tree.
    fn render_bound(&self, out: &mut String, estimates: &[Estimate]) {
        let cores = self.cores.max(1) as f64;
        let dataset = self
            .datasets
            .iter()
            .find(|(mix, _)| *mix == Mix::Default)
            .map(|(_, dataset)| dataset);
        let new_share = dataset
            .filter(|dataset| dataset.bytes() > 0)
            .map_or(1.0, |dataset| {
                1.0 - dataset.copied_bytes() as f64 / dataset.bytes() as f64
            });
        let mut stages = Vec::new();
        for (stage, prefix, input) in BACKUP_STAGES {
            // The slowest matching benchmark stands for the stage: a conservative bound.
            let slowest = estimates
                .iter()
                .filter(|e| e.id.starts_with(prefix))
                .filter_map(|e| Some((e.bytes_per_second()?, e.id.as_str())))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((rate, id)) = slowest {
                let share = match input {
                    StageInput::EveryByte => 1.0,
                    StageInput::NewBytes => new_share,
                };
                stages.push((stage, id, rate, share));
            }
        }
        if stages.is_empty() {
            return;
        }
        let _ = writeln!(out, "### Distance to the hardware limit (first backup)\n");
        let _ = writeln!(
            out,
            "| backup stage | slowest matching benchmark | one core | share of the tree it sees | tree bytes on all {cores} cores |\n|---|---|---:|---:|---:|"
        );
        for (stage, id, rate, share) in &stages {
            let _ = writeln!(
                out,
                "| {stage} | {id} | {}/s | {:.0} % | {}/s |",
                bytes(*rate),
                share * 100.0,
                bytes(rate / share * cores)
            );
        }
        let slowest = stages
            .iter()
            .map(|(_, _, rate, share)| rate / share)
            .fold(f64::INFINITY, f64::min)
            * cores;
        let serial = cores
            / stages
                .iter()
                .map(|(_, _, rate, share)| share / rate)
                .sum::<f64>();
        let _ = writeln!(
            out,
            "\nThe dataset's copies ({:.0} % of it) are chunked and hashed but deduplicated before compression \
             and encryption. Bound from the slowest stage on all cores: {}/s of tree. Bound if every byte passes \
             every stage it reaches (stages share the cores): {}/s.",
            (1.0 - new_share) * 100.0,
            bytes(slowest),
            bytes(serial)
        );
        let default_local = self
            .backends
            .iter()
            .find(|measured| measured.local && measured.mix == Mix::Default);
        let measured = dataset.zip(default_local).and_then(|(dataset, measured)| {
            let wall = measured
                .results
                .median(Step::FirstBackup, Tool::Arca, |s| s.wall)?;
            Some(dataset.bytes() as f64 / wall)
        });
        if let Some(measured) = measured {
            let _ = writeln!(
                out,
                "Arca's first backup ran at {}/s: {:.0} % of the slowest-stage bound (target ≥ 60 %), {:.0} % of \
                 the all-stages bound.",
                bytes(measured),
                measured / slowest * 100.0,
                measured / serial * 100.0
            );
        }
        out.push('\n');
    }
}

/// Which bytes of a first backup's tree a pipeline stage sees.
#[derive(Debug, Clone, Copy)]
enum StageInput {
    /// Every byte read.
    EveryByte,
    /// Only bytes whose chunks are new to the repository.
    NewBytes,
}

/// Backup pipeline stages, the prefix of the criterion ids (benches/benches/*.rs)
/// that measure them, and what they see. Compression is measured as the
/// encoders run it (probe, zstd 3 where it pays) on the dataset generator's
/// own content, since zstd's speed depends on the data.
const BACKUP_STAGES: [(&str, &str, StageInput); 4] = [
    ("chunking", "chunking/", StageInput::EveryByte),
    (
        "keyed hashing (content id)",
        "content_id/",
        StageInput::EveryByte,
    ),
    (
        "compression (probe, zstd 3)",
        "compression_stage/",
        StageInput::NewBytes,
    ),
    (
        "encryption (AES-256-GCM seal)",
        "envelope/seal/",
        StageInput::NewBytes,
    ),
];

fn duration(ns: f64) -> String {
    match ns {
        ns if ns >= 1e9 => format!("{:.2} s", ns / 1e9),
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}

/// The notes section of an existing report, or a placeholder.
pub(crate) fn kept_notes(existing: &str) -> String {
    existing
        .split_once(NOTES_BEGIN)
        .and_then(|(_, rest)| rest.split_once(NOTES_END))
        .map(|(notes, _)| notes.to_string())
        .unwrap_or_else(|| "(none yet)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall: f64, rss: u64) -> Sample {
        Sample {
            wall,
            cpu: wall * 1.5,
            rss,
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn report_shows_medians_ratios_and_target_verdicts_and_keeps_notes() {
        let mut results = Results::default();
        results.samples.insert(
            (Step::FirstBackup, Tool::Arca),
            vec![
                sample(1.0, 100 << 20),
                sample(9.0, 100 << 20),
                sample(2.0, 100 << 20),
            ],
        );
        results.samples.insert(
            (Step::FirstBackup, Tool::Restic),
            vec![sample(8.0, 400 << 20); 3],
        );
        results
            .repo_bytes
            .insert((Step::FirstBackup, Tool::Arca), vec![3 << 30; 3]);
        results
            .repo_bytes
            .insert((Step::FirstBackup, Tool::Restic), vec![2 << 30; 3]);
        let report = Report {
            command: "cargo xtask bench".into(),
            tools: vec![Tool::Arca, Tool::Restic],
            runs: 3,
            backends: vec![Measured {
                mix: Mix::Database,
                cache: "cold",
                local: true,
                results,
            }],
            ..Report::default()
        };
        let text = report.render("my analysis");
        // Median wall 2.0 vs 8.0 → 0.25×, which meets "≥ 3× faster".
        assert!(
            text.contains("| first backup | 2.00 s | 8.00 s | 0.25× |"),
            "{text}"
        );
        assert!(
            text.contains("| first backup ≥ 3× faster | 0.25× (db, cold) | ≤ 0.33× | yes |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| peak RSS during first backup ≤ 0.5× restic's | 0.25× (db, cold) | ≤ 0.50× | yes |"
            ),
            "{text}"
        );
        assert!(text.contains("| repository size after first backup ≤ restic's | 1.500× (db, cold) | ≤ 1.00× | **no** (arca must get 33 % better) |"), "{text}");
        assert!(
            text.contains("| unchanged re-backup ≥ 5× faster | – | ≤ 0.20× | not measured |"),
            "{text}"
        );
        assert_eq!(kept_notes(&text).trim(), "my analysis");
        assert_eq!(kept_notes("no markers"), "(none yet)");
    }

    #[test]
    fn hardware_bound_uses_the_slowest_benchmark_of_each_stage_and_what_it_sees() {
        let estimate = |id: &str, mib_per_s: f64| Estimate {
            id: id.into(),
            // One MiB per iteration.
            median_ns: 1e9 / mib_per_s,
            throughput: Some(Throughput::Bytes(1024.0 * 1024.0)),
        };
        let estimates = [
            estimate("chunking/cut_points/64MiB", 1000.0),
            estimate("content_id/1MiB", 1000.0),
            estimate("compression_stage/volume/64MiB", 200.0),
            // zstd alone is a primitive, not the stage: the stage's bench stands for it.
            estimate("zstd/compress/text-level3", 100.0),
            estimate("zstd/decompress/text-level3", 10.0),
            estimate("envelope/seal/1MiB", 400.0),
        ];
        let mut results = Results::default();
        results
            .samples
            .insert((Step::FirstBackup, Tool::Arca), vec![sample(4.0, 1)]);
        let mut dataset = Summary::default();
        dataset
            .categories
            .insert("small text/config files".into(), (800 << 20, 1));
        dataset
            .categories
            .insert("exact duplicates".into(), (200 << 20, 1));
        let report = Report {
            cores: 2,
            tools: vec![Tool::Arca],
            datasets: vec![(Mix::Default, dataset)],
            backends: vec![Measured {
                mix: Mix::Default,
                cache: "warm",
                local: true,
                results,
            }],
            criterion: Some(estimates.to_vec()),
            ..Report::default()
        };
        let text = report.render("");
        // The duplicates (20 %) skip compression and encryption: 200 MiB/s of new
        // bytes is 250 MiB/s of tree per core.
        assert!(
            text.contains(
                "| compression (probe, zstd 3) | compression_stage/volume/64MiB | 200.0 MiB/s | 80 % | 500.0 MiB/s |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| chunking | chunking/cut_points/64MiB | 1000.0 MiB/s | 100 % | 1.95 GiB/s |"
            ),
            "{text}"
        );
        assert!(text.contains("copies (20 % of it)"), "{text}");
        // Slowest stage on 2 cores: 500 MiB/s; the stages in series on 2 cores:
        // 2 / (1/1000 + 1/1000 + 0.8/200 + 0.8/400) = 250 MiB/s; measured 1000 MiB / 4 s = 250 MiB/s.
        assert!(
            text.contains("slowest stage on all cores: 500.0 MiB/s of tree"),
            "{text}"
        );
        assert!(
            text.contains("(stages share the cores): 250.0 MiB/s"),
            "{text}"
        );
        assert!(
            text.contains("ran at 250.0 MiB/s: 50 % of the slowest-stage bound"),
            "{text}"
        );
        assert!(text.contains("100 % of the all-stages bound"), "{text}");
    }

    #[test]
    fn targets_take_the_worst_local_mix_and_name_it() {
        // restic: 4 s wall, 6 s CPU.
        let run = |mix, local, arca_wall, arca_cpu| {
            let mut results = Results::default();
            let arca = Sample {
                cpu: arca_cpu,
                ..sample(arca_wall, 1)
            };
            results
                .samples
                .insert((Step::Restore, Tool::Arca), vec![arca]);
            results
                .samples
                .insert((Step::Restore, Tool::Restic), vec![sample(4.0, 1)]);
            Measured {
                mix,
                cache: "warm",
                local,
                results,
            }
        };
        let report = Report {
            tools: vec![Tool::Arca, Tool::Restic],
            runs: 1,
            backends: vec![
                run(Mix::Default, true, 1.0, 3.0),
                run(Mix::Media, true, 3.0, 1.5),
                // S3 runs have targets of their own: not the local worst.
                run(Mix::Small, false, 8.0, 12.0),
            ],
            ..Report::default()
        };
        let text = report.render("");
        assert!(
            text.contains("| full restore ≥ 2× faster | 0.75× (media, warm) | ≤ 0.50× | **no**"),
            "{text}"
        );
        assert!(
            text.contains(
                "| full restore | 0.75× (media, warm) | 0.50× (default, warm) | 1.00× (media, warm) | – |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "## Side by side: S3 (local moto server) repository, mix small, warm page cache"
            ),
            "{text}"
        );
    }

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(15.0 * 1024.0), "15.0 KiB");
        assert_eq!(bytes(2.0 * 1024.0 * 1024.0 * 1024.0), "2.00 GiB");
    }
}
