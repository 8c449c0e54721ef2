//! `cargo xtask fuzz [TARGET] [--seconds N] [--build-only]`: runs the
//! cargo-fuzz targets in `fuzz/` with nightly, installing cargo-fuzz if it is
//! missing.
//!
//! `fuzz/` is a workspace member, so `cargo clippy --workspace --all-targets`
//! (the clippy step of `cargo xtask test`) type-checks and lints the targets on
//! stable. Building them for fuzzing needs nightly and sanitizer flags, which
//! cargo-fuzz passes to its own build only (into `target/<host triple>/`); a
//! full sanitizer build takes about six minutes of a 2-core machine for no
//! finding, so CI leaves it to this command.

use std::process::Command;

use anyhow::{Context, bail};

use crate::process::{project_root, run as run_command, succeeds};

const DEFAULT_SECONDS: u64 = 30;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let selected: Vec<String> = match &options.target {
        Some(target) if all.contains(target) => vec![target.clone()],
        Some(target) => bail!("no fuzz target {target:?}; targets: {}", all.join(", ")),
        None => all,
    };
    if options.build_only {
        return run_command(nightly_fuzz().arg("build"));
    }
    for target in &selected {
        println!("\n==> fuzzing {target} for {} s", options.seconds);
        run_command(nightly_fuzz().args([
            "run",
            target,
            "--",
            &format!("-max_total_time={}", options.seconds),
        ]))?;
    }
    println!(
        "\nno crashes in {} target(s), {} s each",
        selected.len(),
        options.seconds
    );
    Ok(())
}

#[derive(Debug, PartialEq)]
struct Options {
    target: Option<String>,
    seconds: u64,
    build_only: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Options {
            target: None,
            seconds: DEFAULT_SECONDS,
            build_only: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--build-only" => options.build_only = true,
                "--seconds" => {
                    let value = args.next().context("--seconds needs a number")?;
                    options.seconds = value
                        .parse()
                        .with_context(|| format!("--seconds {value:?} is not a number"))?;
                }
                flag if flag.starts_with('-') => bail!("unknown option {flag:?}"),
                target if options.target.is_none() => options.target = Some(target.to_string()),
                extra => bail!("unexpected argument {extra:?}: give at most one target"),
            }
        }
        Ok(options)
    }
}

/// Target names as declared in `fuzz/Cargo.toml` (`[[bin]] name = "..."`).
fn targets() -> anyhow::Result<Vec<String>> {
    let manifest_path = project_root().join("fuzz/Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    Ok(bin_names(&manifest))
}

fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name") {
            let value = value
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            names.push(value.to_string());
        }
    }
    names
}

/// `cargo fuzz` on the nightly toolchain, with the outer (stable) cargo's
/// environment removed so it cannot pin the toolchain back.
fn nightly_fuzz() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(project_root())
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    cmd
}

fn has_nightly() -> bool {
    succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
}

fn has_cargo_fuzz() -> bool {
    succeeds(
        Command::new("cargo")
            .args(["fuzz", "--version"])
            .env_remove("CARGO"),
    )
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if !has_nightly() {
        run_command(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !has_cargo_fuzz() {
        run_command(
            Command::new("cargo")
                .args(["install", "cargo-fuzz", "--locked"])
                .env_remove("CARGO"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn options_parse() {
        assert_eq!(
            Options::parse(&strings(&["tree", "--seconds", "5"])).unwrap(),
            Options {
                target: Some("tree".into()),
                seconds: 5,
                build_only: false
            }
        );
        assert_eq!(
            Options::parse(&strings(&["--build-only"])).unwrap(),
            Options {
                target: None,
                seconds: DEFAULT_SECONDS,
                build_only: true
            }
        );
        assert!(Options::parse(&strings(&["--seconds", "x"])).is_err());
        assert!(Options::parse(&strings(&["a", "b"])).is_err());
        assert!(Options::parse(&strings(&["--fast"])).is_err());
    }

    #[test]
    fn bin_names_come_from_bin_sections_only() {
        let manifest = "[package]\nname = \"arca-fuzz\"\n\n[[bin]]\nname = \"tree\"\npath = \"x\"\n\n[[bin]]\nname=\"pack_header\"\n";
        assert_eq!(bin_names(manifest), ["tree", "pack_header"]);
    }

    #[test]
    fn the_real_manifest_declares_targets_that_exist() {
        let names = targets().unwrap();
        assert!(!names.is_empty());
        for name in names {
            assert!(
                project_root()
                    .join("fuzz/fuzz_targets")
                    .join(format!("{name}.rs"))
                    .exists(),
                "{name}"
            );
        }
    }
}
