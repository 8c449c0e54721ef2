//! `cargo xtask bench --files N,M,...`: the cost curve in files (issue 23, "Scale").
//!
//! For each count, one at a time (the tree and the repositories are deleted before
//! the next count unless `--keep`): a tree of `count` tiny files (16–512 bytes, 1000
//! per directory), then per tool a first backup into an empty repository, an
//! unchanged re-backup and, unless `--no-files-restore`, a restore into an empty
//! directory (compared with the source byte for byte; skipped when the disk has no
//! room for a second copy of the tree and [`DISK_RESERVE`] beside it). Before the first count each tool backs
//! up an empty directory: the fixed cost (key derivation, runtime, thread stacks)
//! that the per-file cost is stated beyond. The report shows every step and, where
//! two or more counts were measured, whether time stayed linear (CPU per file at
//! the largest count over the smallest) and memory bounded (peak RSS added per
//! added file).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::measure::{Runner, Sample, Tool};
use super::report::bytes;
use super::trash::Trash;
use crate::dataset;

/// Free space the restore step leaves on the disk (others share it).
pub(crate) const DISK_RESERVE: u64 = 8 << 30;

/// What one tool cost on one tree of tiny files.
#[derive(Debug, Clone)]
pub(crate) struct Point {
    /// Number of files in the tree.
    pub(crate) files: u64,
    /// The tool measured.
    pub(crate) tool: Tool,
    /// First backup into an empty repository.
    pub(crate) backup: Sample,
    /// Backup again with nothing changed.
    pub(crate) unchanged: Sample,
    /// Restore into an empty directory; `None` when not asked for or the disk
    /// had no room for it.
    pub(crate) restore: Option<Sample>,
    /// Repository size after the first backup.
    pub(crate) repo_bytes: u64,
}

/// The whole curve: the fixed cost per tool and every measured point.
#[derive(Debug, Clone, Default)]
pub(crate) struct Curve {
    /// First backup of an empty directory, per tool.
    pub(crate) floors: Vec<(Tool, Sample)>,
    /// In the order measured (counts as given, tools in order per count).
    pub(crate) points: Vec<Point>,
    /// Whether restores were asked for (else `Point::restore` is always `None`).
    pub(crate) restore: bool,
}

/// The measured steps of a point, in order.
const STEPS: [&str; 3] = ["first backup", "unchanged re-backup", "restore"];

impl Point {
    /// The sample of step `index` of [`STEPS`].
    fn step(&self, index: usize) -> Option<&Sample> {
        match index {
            0 => Some(&self.backup),
            1 => Some(&self.unchanged),
            _ => self.restore.as_ref(),
        }
    }
}

/// What the curve is measured with.
pub(crate) struct Setup<'a> {
    pub(crate) programs: &'a [(Tool, PathBuf)],
    pub(crate) bench_dir: &'a Path,
    pub(crate) trash: &'a Trash,
    /// Whether to restore each tree as well (when the disk has room).
    pub(crate) restore: bool,
    pub(crate) seed: u64,
    pub(crate) cold: bool,
    pub(crate) keep: bool,
}

/// Measures every count in `counts` for every tool (see the module comment).
pub(crate) fn measure(setup: &Setup<'_>, counts: &[u64]) -> Result<Curve> {
    let mut curve = Curve {
        restore: setup.restore,
        ..Curve::default()
    };
    if counts.is_empty() {
        return Ok(curve);
    }
    let floor_dir = setup.bench_dir.join("run-files-floor");
    setup.trash.reset(&floor_dir)?;
    let empty = floor_dir.join("empty");
    fs::create_dir_all(&empty)?;
    for (tool, program) in setup.programs {
        println!("== empty directory: {}", tool.name());
        let runner = super::runner(*tool, program, &floor_dir, setup.cold, Vec::new());
        let repo = floor_dir.join(format!("repo-{}", tool.name()));
        let repo_arg = repo.to_string_lossy();
        runner.step(&repo_arg, &["init"], "init")?;
        let sample = runner.step(&repo_arg, &["backup", &empty.to_string_lossy()], "backup")?;
        curve.floors.push((*tool, sample));
    }
    setup.trash.discard(&floor_dir)?;
    for &count in counts {
        curve.points.extend(measure_count(setup, count)?);
    }
    Ok(curve)
}

/// One tree of `count` tiny files: every step, once per tool.
fn measure_count(setup: &Setup<'_>, count: u64) -> Result<Vec<Point>> {
    let Setup {
        programs,
        bench_dir,
        trash,
        ..
    } = *setup;
    // Emptied while there is unmeasured work ahead (generating the tree).
    trash.empty()?;
    let (tree, _) = super::cached_tree(
        bench_dir,
        &format!("files-v{}-{count}", dataset::GENERATOR_VERSION),
        |dir| dataset::generate_many_files(dir, count, setup.seed),
    )?;
    let tree_arg = tree.to_string_lossy();
    let run_dir = bench_dir.join(format!("run-files-{count}"));
    trash.reset(&run_dir)?;
    // What a restore needs on the disk, if restores are asked for.
    let tree_disk = setup.restore.then(|| disk_usage(&tree)).transpose()?;
    let mut measured = Vec::new();
    for (tool, program) in programs {
        println!("== {count} tiny files: {}", tool.name());
        let runner = super::runner(*tool, program, &run_dir, setup.cold, Vec::new());
        let repo = run_dir.join(format!("repo-{}", tool.name()));
        let repo_arg = repo.to_string_lossy();
        runner.step(&repo_arg, &["init"], "init")?;
        let backup = runner.step(&repo_arg, &["backup", &tree_arg], "backup")?;
        let repo_bytes = dataset::tree_bytes(&repo)?;
        let unchanged = runner.step(&repo_arg, &["backup", &tree_arg], "backup-unchanged")?;
        let restore = match tree_disk {
            Some(tree_disk) => {
                restore_if_room(&runner, &repo_arg, &tree, tree_disk, &run_dir, trash)?
            }
            None => None,
        };
        measured.push(Point {
            files: count,
            tool: *tool,
            backup,
            unchanged,
            restore,
            repo_bytes,
        });
    }
    if !setup.keep {
        trash.discard(&run_dir)?;
        trash.discard(&tree)?;
    }
    Ok(measured)
}

/// Restores the latest snapshot of `repo` into an empty directory under
/// `run_dir` and compares it with `tree`, if the disk has room for a copy of
/// `tree_disk` bytes with [`DISK_RESERVE`] to spare.
fn restore_if_room(
    runner: &Runner,
    repo: &str,
    tree: &Path,
    tree_disk: u64,
    run_dir: &Path,
    trash: &Trash,
) -> Result<Option<Sample>> {
    let mut available = available_space(run_dir)?;
    if available < tree_disk + DISK_RESERVE {
        trash.empty()?;
        available = available_space(run_dir)?;
    }
    if available < tree_disk + DISK_RESERVE {
        println!(
            "    restore skipped: {} free, the tree takes {} and {} must stay free",
            bytes(available as f64),
            bytes(tree_disk as f64),
            bytes(DISK_RESERVE as f64)
        );
        return Ok(None);
    }
    let name = runner.tool.name();
    let target = run_dir.join(format!("restore-{name}"));
    trash.settle();
    let sample = runner.step(
        repo,
        &["restore", "latest", "--target", &target.to_string_lossy()],
        "restore",
    )?;
    dataset::compare_trees(tree, &super::restored_root(&target, tree))
        .with_context(|| format!("{name} restored a different tree"))?;
    println!("    restore of {name} is identical to the source");
    trash.discard(&target)?;
    Ok(Some(sample))
}

/// Bytes `path` takes on disk (`du -s -B1`): blocks, not file lengths.
fn disk_usage(path: &Path) -> Result<u64> {
    let text = command_output(Command::new("du").arg("-s").arg("-B1").arg(path))?;
    parse_du(&text).with_context(|| format!("unexpected du output {text:?}"))
}

/// Bytes available to this user on the filesystem of `path` (`df -B1`).
pub(crate) fn available_space(path: &Path) -> Result<u64> {
    let text = command_output(
        Command::new("df")
            .arg("-B1")
            .arg("--output=avail")
            .arg(path),
    )?;
    parse_df_available(&text).with_context(|| format!("unexpected df output {text:?}"))
}

fn command_output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first field of `du -s` output: `12345<TAB>/path`.
fn parse_du(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The number below the header of `df --output=avail`.
fn parse_df_available(text: &str) -> Option<u64> {
    text.lines().nth(1)?.trim().parse().ok()
}

/// Per file cost of one step between the smallest and the largest count of a tool.
#[derive(Debug, Clone, PartialEq)]
struct Trend {
    smallest: u64,
    largest: u64,
    /// CPU seconds per file at the largest count over that at the smallest.
    cpu_per_file_ratio: f64,
    /// The same for wall time.
    wall_per_file_ratio: f64,
    /// Peak RSS added per file added between the two counts (negative if it fell).
    rss_per_added_file: f64,
}

/// The [`Trend`] of step `step` (index into [`STEPS`]) over `points` of one
/// tool, if it was measured at two or more counts.
fn trend(points: &[&Point], step: usize) -> Option<Trend> {
    let mut measured: Vec<(u64, &Sample)> = points
        .iter()
        .filter_map(|point| Some((point.files, point.step(step)?)))
        .collect();
    measured.sort_by_key(|(files, _)| *files);
    let (&(smallest, small), &(largest, large)) = (measured.first()?, measured.last()?);
    if largest == smallest {
        return None;
    }
    let per_file = |value: f64, files: u64| value / files as f64;
    Some(Trend {
        smallest,
        largest,
        cpu_per_file_ratio: per_file(large.cpu, largest) / per_file(small.cpu, smallest),
        wall_per_file_ratio: per_file(large.wall, largest) / per_file(small.wall, smallest),
        rss_per_added_file: (large.rss as f64 - small.rss as f64) / (largest - smallest) as f64,
    })
}

/// Seconds per million files.
fn per_million(seconds: f64, files: u64) -> f64 {
    seconds * 1e6 / files as f64
}

/// The curve as Markdown.
pub(crate) fn render(out: &mut String, curve: &Curve) {
    let _ = writeln!(out, "## Many tiny files: the cost curve (one run each)\n");
    let _ = writeln!(
        out,
        "Trees of 16–512 byte files, 1000 per directory, measured one count at a time \
         (xtask/src/bench/scale.rs). Per file beyond the baseline: peak RSS less that of the \
         same tool's first backup of an empty directory, divided by the file count.\n"
    );
    for (tool, floor) in &curve.floors {
        let _ = writeln!(
            out,
            "Baseline, {}: first backup of an empty directory {:.2} s wall, {:.2} s CPU, {} peak RSS.\n",
            tool.name(),
            floor.wall,
            floor.cpu,
            bytes(floor.rss as f64)
        );
    }
    let _ = writeln!(
        out,
        "| files | tool | step | wall | CPU | wall per million files | CPU per million files | peak RSS | RSS per file beyond the baseline | repository |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for point in &curve.points {
        let floor = curve
            .floors
            .iter()
            .find(|(tool, _)| *tool == point.tool)
            .map_or(0, |(_, floor)| floor.rss);
        let steps = if curve.restore { STEPS.len() } else { 2 };
        for (index, title) in STEPS.iter().enumerate().take(steps) {
            let repository = if index == 0 {
                bytes(point.repo_bytes as f64)
            } else {
                "–".into()
            };
            let Some(sample) = point.step(index) else {
                let _ = writeln!(
                    out,
                    "| {} | {} | {title} | skipped: no room on the disk for a second copy of the tree | | | | | | |",
                    point.files,
                    point.tool.name()
                );
                continue;
            };
            let beyond = sample.rss.saturating_sub(floor) as f64 / point.files as f64;
            let _ = writeln!(
                out,
                "| {} | {} | {title} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | {} | {beyond:.1} B | {repository} |",
                point.files,
                point.tool.name(),
                sample.wall,
                sample.cpu,
                per_million(sample.wall, point.files),
                per_million(sample.cpu, point.files),
                bytes(sample.rss as f64),
            );
        }
    }
    out.push('\n');
    let mut tools: Vec<Tool> = curve.points.iter().map(|point| point.tool).collect();
    tools.sort();
    tools.dedup();
    let mut trends = String::new();
    for tool in tools {
        let points: Vec<&Point> = curve
            .points
            .iter()
            .filter(|point| point.tool == tool)
            .collect();
        for (index, title) in STEPS.iter().enumerate() {
            if let Some(trend) = trend(&points, index) {
                let _ = writeln!(
                    trends,
                    "| {} | {title} | {} → {} | {:.2}× | {:.2}× | {:.1} B |",
                    tool.name(),
                    trend.smallest,
                    trend.largest,
                    trend.cpu_per_file_ratio,
                    trend.wall_per_file_ratio,
                    trend.rss_per_added_file
                );
            }
        }
    }
    if !trends.is_empty() {
        let _ = writeln!(
            out,
            "Linear time means a per-file ratio near 1× between the smallest and the largest count; \
             bounded memory means peak RSS added per added file near 0 B.\n\n\
             | tool | step | files | CPU per file, largest / smallest | wall per file, largest / smallest | peak RSS added per added file |\n\
             |---|---|---|---:|---:|---:|\n{trends}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall: f64, cpu: f64, rss_mib: u64) -> Sample {
        Sample {
            wall,
            cpu,
            rss: rss_mib << 20,
        }
    }

    fn point(files: u64, cpu: f64, rss_mib: u64, restore: bool) -> Point {
        Point {
            files,
            tool: Tool::Arca,
            backup: sample(cpu / 2.0, cpu, rss_mib),
            unchanged: sample(cpu / 10.0, cpu / 5.0, rss_mib / 2),
            restore: restore.then(|| sample(cpu, cpu, 80)),
            repo_bytes: files * 400,
        }
    }

    #[test]
    fn disk_tools_output_parses() {
        assert_eq!(parse_du("4096000\t/tmp/tree\n"), Some(4_096_000));
        assert_eq!(parse_du(""), None);
        assert_eq!(
            parse_df_available("       Avail\n48318382080\n"),
            Some(48_318_382_080)
        );
        assert_eq!(parse_df_available("Avail\n"), None);
    }

    #[test]
    fn trend_compares_per_file_cost_of_smallest_and_largest_count() {
        let points = [
            point(4_000_000, 160.0, 164, false),
            point(1_000_000, 34.0, 100, true),
            point(2_000_000, 70.0, 132, true),
        ];
        let points: Vec<&Point> = points.iter().collect();
        let backup = trend(&points, 0).unwrap();
        assert_eq!((backup.smallest, backup.largest), (1_000_000, 4_000_000));
        // 40 µs per file against 34 µs.
        assert!((backup.cpu_per_file_ratio - 40.0 / 34.0).abs() < 1e-9);
        assert!((backup.wall_per_file_ratio - 40.0 / 34.0).abs() < 1e-9);
        // 64 MiB more for 3 M more files.
        assert!((backup.rss_per_added_file - (64 << 20) as f64 / 3e6).abs() < 1e-9);
        // The restore was skipped at 4 M, so its trend ends at 2 M.
        let restore = trend(&points, 2).unwrap();
        assert_eq!((restore.smallest, restore.largest), (1_000_000, 2_000_000));
        assert_eq!(restore.rss_per_added_file, 0.0);
        assert_eq!(trend(&points[..1], 0), None);
    }

    #[test]
    fn render_states_per_million_beyond_baseline_skips_and_trends() {
        let curve = Curve {
            floors: vec![(Tool::Arca, sample(0.2, 0.3, 68))],
            points: vec![
                point(1_000_000, 34.0, 100, true),
                point(2_000_000, 70.0, 132, false),
            ],
            restore: true,
        };
        let mut text = String::new();
        render(&mut text, &curve);
        assert!(
            text.contains("Baseline, arca: first backup of an empty directory 0.20 s wall, 0.30 s CPU, 68.0 MiB peak RSS."),
            "{text}"
        );
        // (100 - 68) MiB over 1 M files.
        assert!(
            text.contains("| 1000000 | arca | first backup | 17.00 s | 34.00 s | 17.00 s | 34.00 s | 100.0 MiB | 33.6 B | 381.5 MiB |"),
            "{text}"
        );
        assert!(
            text.contains("| 2000000 | arca | first backup | 35.00 s | 70.00 s | 17.50 s | 35.00 s | 132.0 MiB | 33.6 B | 762.9 MiB |"),
            "{text}"
        );
        // An unchanged re-backup below the floor counts as nothing beyond it.
        assert!(
            text.contains("| 1000000 | arca | unchanged re-backup | 3.40 s | 6.80 s | 3.40 s | 6.80 s | 50.0 MiB | 0.0 B | – |"),
            "{text}"
        );
        assert!(
            text.contains("| 2000000 | arca | restore | skipped: no room on the disk"),
            "{text}"
        );
        assert!(
            text.contains("| arca | first backup | 1000000 → 2000000 | 1.03× | 1.03× | 33.6 B |"),
            "{text}"
        );
        // One restore measured: no trend for it.
        assert!(!text.contains("| arca | restore | 1000000 →"), "{text}");
        // Without restores asked for, no restore rows.
        let mut text = String::new();
        render(
            &mut text,
            &Curve {
                restore: false,
                ..curve
            },
        );
        assert!(!text.contains("| restore |"), "{text}");
        assert!(
            text.contains("| 2000000 | arca | unchanged re-backup |"),
            "{text}"
        );
    }
}
