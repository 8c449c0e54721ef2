//! The per-primitive numbers: runs the criterion benches of `arca-benches` and
//! reads back what criterion wrote under `target/criterion/`.
//!
//! criterion's JSON files are flat and stable (`benchmark.json`,
//! `estimates.json`); the few fields needed are picked out by key rather than
//! pulling a JSON parser into xtask.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::process;

/// How criterion counted one iteration's work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Throughput {
    /// Bytes processed per iteration.
    Bytes(f64),
    /// Elements (lookups, blobs, ...) processed per iteration.
    Elements(f64),
}

/// One benchmark's median time per iteration and what an iteration processes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Estimate {
    /// criterion's `group/function/parameter` id.
    pub(crate) id: String,
    /// Median nanoseconds per iteration.
    pub(crate) median_ns: f64,
    /// Work per iteration, when the bench declared it.
    pub(crate) throughput: Option<Throughput>,
}

impl Estimate {
    /// Bytes per second on one core, for byte-throughput benches.
    pub(crate) fn bytes_per_second(&self) -> Option<f64> {
        match self.throughput {
            Some(Throughput::Bytes(bytes)) => Some(bytes / self.median_ns * 1e9),
            _ => None,
        }
    }
}

/// Runs `cargo bench -p arca-benches --bench '*' -- --noplot` (not the lib's
/// unit-test harness, which rejects criterion's flags) and returns the estimates it
/// produced (those written by this run only, sorted by id).
pub(crate) fn run(target_dir: &Path) -> Result<Vec<Estimate>> {
    let started = SystemTime::now();
    process::run(process::cargo().args([
        "bench",
        "-p",
        "arca-benches",
        "--bench",
        "*",
        "--",
        "--noplot",
    ]))?;
    let mut estimates = Vec::new();
    collect(&target_dir.join("criterion"), started, &mut estimates)?;
    estimates.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(estimates)
}

fn collect(dir: &Path, since: SystemTime, out: &mut Vec<Estimate>) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let benchmark = path.join("benchmark.json");
        let fresh = fs::metadata(&benchmark)
            .and_then(|meta| meta.modified())
            .is_ok_and(|time| time >= since);
        if path.file_name().is_some_and(|name| name == "new") && fresh {
            let read = |name: &str| {
                let file = path.join(name);
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
            };
            out.push(
                parse(&read("benchmark.json")?, &read("estimates.json")?)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        } else {
            collect(&path, since, out)?;
        }
    }
    Ok(())
}

/// Builds an [`Estimate`] from criterion's `benchmark.json` and `estimates.json`.
fn parse(benchmark: &str, estimates: &str) -> Result<Estimate> {
    let id = string_after(benchmark, "\"full_id\":").context("no full_id in benchmark.json")?;
    let median = &estimates[estimates
        .find("\"median\":")
        .context("no median in estimates.json")?..];
    let median_ns =
        number_after(median, "\"point_estimate\":").context("no median point_estimate")?;
    let throughput = ["\"Bytes\":", "\"BytesDecimal\":"]
        .iter()
        .find_map(|key| number_after(benchmark, key))
        .map(Throughput::Bytes)
        .or_else(|| number_after(benchmark, "\"Elements\":").map(Throughput::Elements));
    Ok(Estimate {
        id,
        median_ns,
        throughput,
    })
}

fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = text[text.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn string_after(text: &str, key: &str) -> Option<String> {
    let rest = text[text.find(key)? + key.len()..]
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes copied from criterion 0.5 output.
    const BENCHMARK: &str = r#"{"group_id":"chunking","function_id":"cut_points","value_str":null,"throughput":{"Bytes":67108864},"full_id":"chunking/cut_points","directory_name":"chunking/cut_points","title":"chunking/cut_points"}"#;
    const ESTIMATES: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.5e7,"standard_error":1.0},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":50000000.0,"standard_error":1.0},"median_abs_dev":null,"slope":null,"std_dev":null}"#;

    #[test]
    fn reads_id_median_and_byte_throughput() {
        let estimate = parse(BENCHMARK, ESTIMATES).unwrap();
        assert_eq!(estimate.id, "chunking/cut_points");
        assert_eq!(estimate.median_ns, 5e7);
        assert_eq!(estimate.throughput, Some(Throughput::Bytes(67108864.0)));
        // 64 MiB in 50 ms.
        assert_eq!(estimate.bytes_per_second(), Some(67108864.0 * 20.0));
    }

    #[test]
    fn elements_and_missing_throughput() {
        let elements = BENCHMARK.replace(r#"{"Bytes":67108864}"#, r#"{"Elements":1000}"#);
        let estimate = parse(&elements, ESTIMATES).unwrap();
        assert_eq!(estimate.throughput, Some(Throughput::Elements(1000.0)));
        assert_eq!(estimate.bytes_per_second(), None);
        let none = BENCHMARK.replace(r#"{"Bytes":67108864}"#, "null");
        assert_eq!(parse(&none, ESTIMATES).unwrap().throughput, None);
        assert!(parse("{}", ESTIMATES).is_err());
    }
}
