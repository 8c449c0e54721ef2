//! `cargo xtask bench --rto`: the measured recovery time (issue 22, "Measured RTO").
//!
//! Arca backs the mix's tree up into a fresh bucket on the S3 server (not measured), then:
//!
//! 1. download: every object of the repository fetched with plain GETs by one `curl
//!    --parallel` (SigV4 signed, as moto wants), [`CONNECTIONS`] at a time (arca's default for
//!    a cloud store), each written to a file, after dropping the page cache. These are the
//!    bytes a restore cannot avoid downloading, with no client work (decryption,
//!    decompression, hashing, chunk assembly) at all.
//! 2. write: `cp -a` of the tree, its source read into the page cache first (not measured),
//!    so what is timed is writing the tree's files, which a restore cannot avoid either (the
//!    restore's input is in the S3 server's memory, not on this disk).
//! 3. `arca restore latest --target DIR` after dropping the page cache: the restore alone, so
//!    the table shows what the drill's verification adds.
//! 4. `arca drill latest --target DIR --keep` after dropping the page cache: restore into an
//!    empty directory, verify every file against the snapshot, record the drill in the audit
//!    trail: the RTO a person would measure, from the command's start to its exit.
//!
//! The floor is the slower of 1 and 2 (a restore may overlap them, but cannot beat either);
//! the goal is a drill within twice it. The restored tree is compared with the source byte for
//! byte afterwards (not measured).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::measure::{self, Sample, Tool};
use super::s3;
use super::trash::Trash;
use crate::dataset::{self, Mix};

/// Concurrent GETs of the floor: arca-store's default for a cloud store (as restic's).
pub(super) const CONNECTIONS: usize = 5;

/// The goal: restore and verify within this multiple of the floor.
const GOAL: f64 = 2.0;

/// What one RTO measurement found.
#[derive(Debug, Clone)]
pub(crate) struct Rto {
    /// The data mix restored.
    pub(crate) mix: Mix,
    /// Whether the page cache was dropped before the download and the drill.
    pub(crate) cold: bool,
    /// Bytes of the tree's files.
    pub(crate) tree_bytes: u64,
    /// Objects and bytes in the repository's bucket (what the floor fetched).
    pub(crate) objects: usize,
    /// See [`Rto::objects`].
    pub(crate) repo_bytes: u64,
    /// Wall seconds of the floor's GETs.
    pub(crate) fetch: f64,
    /// Wall seconds of `cp -a` of the tree from the page cache.
    pub(crate) copy: f64,
    /// `arca restore` alone.
    pub(crate) restore: Sample,
    /// `arca drill` (restore and verify).
    pub(crate) drill: Sample,
}

/// Measures the RTO of the tree at `base` (the generated data of `mix`) with the arca at
/// `arca`, in `run_dir` (emptied first, removed after unless `keep`).
pub(super) fn measure(
    arca: &Path,
    run_dir: &Path,
    trash: &Trash,
    base: &Path,
    mix: Mix,
    cold: bool,
    keep: bool,
) -> Result<Rto> {
    trash.reset(run_dir)?;
    let server = s3::Server::start()?;
    let (repo, env) = server.repository("rto")?;
    let runner = super::runner(Tool::Arca, arca, run_dir, cold, env);
    let base_arg = base.to_string_lossy();
    runner.step(&repo, &["init"], "rto-init")?;
    runner.step(&repo, &["backup", &base_arg], "rto-backup")?;

    let objects = server.objects(&repo)?;
    let repo_bytes: u64 = objects.iter().map(|(_, size)| size).sum();
    let raw = run_dir.join("raw");
    fs::create_dir_all(&raw)?;
    println!(
        "  floor: GET {} objects ({}) from {}, {CONNECTIONS} at a time",
        objects.len(),
        super::report::bytes(repo_bytes as f64),
        server.endpoint()
    );
    let fetch = timed(cold, || fetch_all(&server, &repo, &objects, &raw))?;
    println!("    {fetch:.2} s wall");
    trash.discard(&raw)?;

    let copied = run_dir.join("copy");
    println!("  cp -a of the tree, its source in the page cache");
    dataset::list_files(base)?
        .iter()
        .try_for_each(|(path, _)| fs::read(base.join(path)).map(drop))?;
    let copy = timed(false, || super::copy_tree(base, &copied))?;
    println!("    {copy:.2} s wall");
    trash.discard(&copied)?;

    let restored = run_dir.join("restore");
    trash.settle();
    let restore = runner.step(
        &repo,
        &["restore", "latest", "--target", &restored.to_string_lossy()],
        "rto-restore",
    )?;
    trash.discard(&restored)?;

    let target = run_dir.join("drill");
    let target_arg = target.to_string_lossy();
    trash.settle();
    let drill = runner.step(
        &repo,
        &["drill", "latest", "--target", &target_arg, "--keep"],
        "rto-drill",
    )?;
    dataset::compare_trees(base, &super::restored_root(&target, base))
        .context("arca drill restored a different tree")?;
    println!("    the drill's copy is identical to the source");

    let tree_bytes = dataset::tree_bytes(base)?;
    if !keep {
        trash.discard(run_dir)?;
    }
    Ok(Rto {
        mix,
        cold,
        tree_bytes,
        objects: objects.len(),
        repo_bytes,
        fetch,
        copy,
        restore,
        drill,
    })
}

/// Wall seconds of `work`, after dropping the page cache when `cold` (else
/// after writing back dirty pages, as before every measured step).
fn timed(cold: bool, work: impl FnOnce() -> Result<()>) -> Result<f64> {
    if cold {
        measure::drop_page_cache()?;
    } else {
        measure::flush_dirty_pages()?;
    }
    let start = Instant::now();
    work()?;
    Ok(start.elapsed().as_secs_f64())
}

/// GETs every object into a file under `dir` (named by its position) with one curl, SigV4
/// signed, [`CONNECTIONS`] transfers at a time over reused connections; fails if curl fails
/// or any file's length differs from the listing's.
fn fetch_all(server: &s3::Server, repo: &str, objects: &[(String, u64)], dir: &Path) -> Result<()> {
    let mut config = String::new();
    for (index, (key, _)) in objects.iter().enumerate() {
        let url = server.object_url(repo, key)?;
        let output = dir.join(index.to_string());
        config.push_str(&format!(
            "url = \"{url}\"\noutput = \"{}\"\n",
            output.display()
        ));
    }
    let list = dir.join("curl.config");
    fs::write(&list, config)?;
    let status = Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--no-progress-meter",
            "--parallel",
        ])
        .args(["--parallel-max", &CONNECTIONS.to_string()])
        .args([
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            &s3::Server::curl_user(),
        ])
        .arg("--config")
        .arg(&list)
        .status()
        .context("running curl")?;
    if !status.success() {
        bail!("curl failed ({status})");
    }
    for (index, (key, size)) in objects.iter().enumerate() {
        let got = fs::metadata(dir.join(index.to_string()))?.len();
        if got != *size {
            bail!("{key}: fetched {got} bytes, the listing says {size}");
        }
    }
    Ok(())
}

impl Rto {
    /// The floor: the slower of downloading the repository and writing the tree.
    fn floor(&self) -> f64 {
        self.fetch.max(self.copy)
    }

    /// The drill's wall time over the floor.
    fn ratio(&self) -> f64 {
        self.drill.wall / self.floor()
    }
}

/// The report's section: one row per mix, and how it is measured.
pub(crate) fn render(out: &mut String, measured: &[Rto]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "## Measured RTO: restore and verify from S3\n");
    let _ = writeln!(
        out,
        "`arca drill latest --target DIR --keep` (restore into an empty directory, verify every \
         file against the snapshot) from a repository on the S3 server, against the floor: the \
         slower of downloading every object of the same repository with plain GETs (`curl \
         --parallel`, {CONNECTIONS} at a time, arca's default for a cloud store) into files, and \
         writing the tree (`cp -a` from the page cache). Goal: the drill within {GOAL}× the \
         floor (xtask/src/bench/rto.rs).\n"
    );
    let _ = writeln!(
        out,
        "| Mix | Page cache | Tree | Repository (objects) | Download (GETs) | Write (`cp -a`) | arca restore (CPU) | arca drill | CPU | Peak RSS | Drill / floor | Goal ≤ {GOAL}× |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for rto in measured {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} ({}) | {:.1} s | {:.1} s | {:.1} s ({:.1} s) | {:.1} s | {:.1} s | {} | {:.2}× | {} |",
            rto.mix.name(),
            if rto.cold { "cold" } else { "warm" },
            super::report::bytes(rto.tree_bytes as f64),
            super::report::bytes(rto.repo_bytes as f64),
            rto.objects,
            rto.fetch,
            rto.copy,
            rto.restore.wall,
            rto.restore.cpu,
            rto.drill.wall,
            rto.drill.cpu,
            super::report::bytes(rto.drill.rss as f64),
            rto.ratio(),
            if rto.ratio() <= GOAL {
                "met"
            } else {
                "**missed**"
            },
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_judges_the_ratio_against_the_goal() {
        let rto = |drill: f64| Rto {
            mix: Mix::Default,
            cold: true,
            tree_bytes: 2 << 30,
            objects: 120,
            repo_bytes: 1 << 30,
            fetch: 10.0,
            copy: 4.0,
            restore: Sample {
                wall: 15.0,
                cpu: 20.0,
                rss: 100 << 20,
            },
            drill: Sample {
                wall: drill,
                cpu: 30.0,
                rss: 200 << 20,
            },
        };
        let mut out = String::new();
        let mut write_bound = rto(30.0);
        write_bound.copy = 20.0;
        render(&mut out, &[rto(19.0), rto(21.0), write_bound]);
        assert!(
            out.contains("| 10.0 s | 4.0 s | 15.0 s (20.0 s) | 19.0 s |"),
            "{out}"
        );
        assert!(out.contains("| 1.90× | met |"), "{out}");
        assert!(out.contains("| 2.10× | **missed** |"), "{out}");
        assert!(
            out.contains(
                "| 20.0 s | 15.0 s (20.0 s) | 30.0 s | 30.0 s | 200.0 MiB | 1.50× | met |"
            ),
            "the slower of download and write is the floor: {out}"
        );
    }
}
