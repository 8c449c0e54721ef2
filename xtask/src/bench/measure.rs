//! Running one tool command as a measured step: wall time, user+sys CPU and
//! peak RSS of the child (from GNU time, which reads them from `wait4`), plus
//! the size of the repository directory.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The password both tools get, through `RESTIC_PASSWORD` (which arca reads too).
pub(crate) const PASSWORD: &str = "arca-bench-password";

/// The two programs compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tool {
    /// `target/release/arca`.
    Arca,
    /// Debian's `restic`.
    Restic,
}

impl Tool {
    /// Lower-case name, as used on the command line and in file names.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Arca => "arca",
            Tool::Restic => "restic",
        }
    }

    /// Parses `arca` or `restic`.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match name {
            "arca" => Ok(Tool::Arca),
            "restic" => Ok(Tool::Restic),
            other => bail!("unknown tool {other:?}; use arca and/or restic"),
        }
    }
}

/// What one measured step cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Elapsed seconds.
    pub(crate) wall: f64,
    /// User plus system CPU seconds of the child.
    pub(crate) cpu: f64,
    /// Peak resident set size of the child, in bytes.
    pub(crate) rss: u64,
}

/// A tool bound to its executable and to the environment of one benchmark run.
#[derive(Debug, Clone)]
pub(crate) struct Runner {
    /// Which tool this is.
    pub(crate) tool: Tool,
    /// The executable.
    pub(crate) program: PathBuf,
    /// Extra environment (S3 credentials).
    pub(crate) env: Vec<(String, String)>,
    /// `XDG_CACHE_HOME` for the child, so each run starts with an empty cache.
    pub(crate) cache_home: PathBuf,
    /// Where each step's output goes (one log file per tool and step).
    pub(crate) log_dir: PathBuf,
    /// Whether to drop the page cache before each step.
    pub(crate) cold: bool,
}

impl Runner {
    /// Runs `<program> -r <repo> <args>`, failing loudly (with the end of its
    /// output) unless it exits successfully.
    pub(crate) fn step(&self, repo: &str, args: &[&str], label: &str) -> Result<Sample> {
        if self.cold {
            drop_page_cache()?;
        } else {
            flush_dirty_pages()?;
        }
        fs::create_dir_all(&self.log_dir)?;
        let log_path = self
            .log_dir
            .join(format!("{}-{label}.log", self.tool.name()));
        let times_path = self
            .log_dir
            .join(format!("{}-{label}.time", self.tool.name()));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-f")
            .arg("%U %S %M")
            .arg("-o")
            .arg(&times_path)
            .arg(&self.program)
            .args(["-r", repo])
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("ARCA_PASSWORD")
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("ARCA_REPOSITORY")
            .env("XDG_CACHE_HOME", &self.cache_home)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let line = format!("{} -r {repo} {}", self.tool.name(), args.join(" "));
        println!("  $ {line}");
        let start = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("cannot start /usr/bin/time for `{line}`"))?;
        let wall = start.elapsed().as_secs_f64();
        if !status.success() {
            let output = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = output.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "`{line}` failed ({status}); last lines of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
        }
        let times = fs::read_to_string(&times_path)
            .with_context(|| format!("reading {}", times_path.display()))?;
        let sample = parse_time_output(&times, wall)
            .with_context(|| format!("parsing {}", times_path.display()))?;
        println!(
            "    {:.2} s wall, {:.2} s CPU, {} MiB peak RSS",
            sample.wall,
            sample.cpu,
            sample.rss >> 20
        );
        Ok(sample)
    }
}

/// Parses the last line of `/usr/bin/time -f "%U %S %M"` output.
fn parse_time_output(text: &str, wall: f64) -> Result<Sample> {
    let line = text
        .lines()
        .last()
        .context("empty output from /usr/bin/time")?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [user, sys, rss_kib] = fields[..] else {
        bail!("expected `user sys maxrss`, got {line:?}");
    };
    Ok(Sample {
        wall,
        cpu: user.parse::<f64>()? + sys.parse::<f64>()?,
        rss: rss_kib.parse::<u64>()? * 1024,
    })
}

/// Writes every dirty page back, keeping the cache. Every measured step
/// starts with none: the trees the bench sets aside (see `trash`) are not
/// deleted, so their pages stay dirty, and a step that writes would
/// otherwise be throttled into writing them back (a `cp -a` of 2 GiB took
/// 8.1 s instead of 2.2 s after the RTO's 965 MiB download was set aside).
pub(crate) fn flush_dirty_pages() -> Result<()> {
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync failed ({status})");
    }
    Ok(())
}

/// Flushes dirty pages and drops the page cache, so every step reads from disk.
pub(crate) fn drop_page_cache() -> Result<()> {
    flush_dirty_pages()?;
    fs::write("/proc/sys/vm/drop_caches", "3").context(
        "cannot drop the page cache (needs root); pass --warm to benchmark with a warm cache",
    )
}

/// Whether this process may drop the page cache.
pub(crate) fn can_drop_page_cache() -> bool {
    fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/vm/drop_caches")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gnu_time_output_even_after_a_warning_line() {
        let sample = parse_time_output(
            "Command exited with non-zero status 1\n1.50 0.25 20480\n",
            3.0,
        )
        .unwrap();
        assert_eq!(sample.cpu, 1.75);
        assert_eq!(sample.rss, 20480 * 1024);
        assert_eq!(sample.wall, 3.0);
        assert!(parse_time_output("1.5 0.2\n", 1.0).is_err());
        assert!(parse_time_output("", 1.0).is_err());
    }

    #[test]
    fn measures_a_real_child() {
        let dir = std::env::temp_dir().join(format!("arca-xtask-measure-{}", std::process::id()));
        let runner = Runner {
            tool: Tool::Restic,
            program: PathBuf::from("/bin/sh"),
            env: Vec::new(),
            cache_home: dir.clone(),
            log_dir: dir.clone(),
            cold: false,
        };
        // dash rejects `-r`, so this is a failing child; `true` ignores its arguments.
        let err = runner.step("unused", &[], "fails").unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        let runner = Runner {
            program: PathBuf::from("/bin/true"),
            ..runner
        };
        let sample = runner.step("unused", &[], "true").unwrap();
        assert!(sample.rss > 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
