//! Running child processes the way every task wants: echoed, in the
//! workspace root, failing loudly with the command line in the error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The workspace root (the parent of this crate's directory).
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// A `cargo` command (the same cargo that runs xtask) in the workspace root.
///
/// The variables `cargo run` set for xtask itself are removed: some
/// dependencies' builds track them (ring's, for one), so passing them on
/// would make every nested build rebuild those crates and, sharing `target/`,
/// invalidate the artifacts of plain `cargo` runs (and vice versa).
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(project_root());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Builds the debug `arca`, `arca-agent`, `arca-controller` and `arca-e2e` executables
/// exactly as `cargo test --workspace` builds them, and returns the directory
/// they are in.
///
/// Cargo resolves features for the packages a command selects, dev-dependencies
/// included for tests, and `cargo build -p arca` selects only `arca`: after the
/// test step of `cargo xtask test` that rebuilt about sixty crates (tokio,
/// object_store, kube, every arca crate) for each binary, minutes of a 2-core
/// CI run. `--workspace` with an integration test of each binary's package
/// keeps the test step's resolution (checked with `--unit-graph`), so there it
/// compiles nothing; run alone, it builds only those tests besides.
pub(crate) fn build_debug_binaries() -> anyhow::Result<PathBuf> {
    // The integration tests of bins/arca, bins/arca-agent, bins/arca-controller, crates/arca-e2e.
    let tests = ["cli", "agent", "controller", "e2e_driver"].map(|test| format!("--test={test}"));
    run(cargo()
        .args(["test", "--workspace", "--no-run", "--quiet"])
        .args(tests))?;
    Ok(target_dir().join("debug"))
}

/// Where cargo puts what it builds for this workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// Whether `cargo run` sets this variable for the program it runs.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Prints the command line, runs it with inherited stdio and fails unless it
/// exits successfully.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Whether the command can be started and exits successfully; its output is
/// discarded. Used to probe for optional tools.
pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs the Debian packages whose probe command does not run, with one
/// `apt-get update` first: the project's own way to get the real tools its
/// tests and benchmarks use (restic, promtool, GNU time), so a clean machine
/// needs nothing installed by hand. Each entry is `(probe, package)`, where
/// the probe is a program and arguments that exit 0 once the package is in.
pub(crate) fn ensure_debian_packages(wanted: &[(&[&str], &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(probe, _)| {
            let (program, args) = probe.split_first().expect("a probe names a program");
            !succeeds(Command::new(program).args(args))
        })
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // Another apt-get (an unattended upgrade, a second xtask) may hold apt's
    // locks for a while: wait for them instead of failing the whole run.
    let apt_get = || {
        let mut command = Command::new("apt-get");
        command.args(["-o", "DPkg::Lock::Timeout=600"]);
        command
    };
    run(apt_get().arg("update"))
        .and_then(|()| {
            run(apt_get()
                .args(["install", "-y", "--no-install-recommends"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(&missing))
        })
        .with_context(|| {
            format!(
                "installing {} (needs Debian/Ubuntu and root)",
                missing.join(" ")
            )
        })
}

/// The command line as a user would type it (program name without its path).
fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(
            cmd.get_args()
                .map(OsStr::to_string_lossy)
                .map(|arg| quote(&arg)),
        )
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:+,@%".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_a_shell_would_need() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["clippy", "--", "-D", "warnings", "two words", "it's"]);
        assert_eq!(
            display(&cmd),
            r"cargo clippy -- -D warnings 'two words' 'it'\''s'"
        );
    }

    #[test]
    fn nested_cargo_does_not_inherit_what_cargo_run_set_for_xtask() {
        // This test runs under cargo, which sets these for the test binary too.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let cmd = cargo();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name)
            .collect();
        assert!(
            removed.contains(&OsStr::new("CARGO_PKG_NAME")),
            "{removed:?}"
        );
        assert!(
            removed.contains(&OsStr::new("CARGO_MANIFEST_DIR")),
            "{removed:?}"
        );
        assert!(!set_by_cargo_run("CARGO_HOME") && !set_by_cargo_run("CARGO_TARGET_DIR"));
    }

    #[test]
    fn run_reports_the_failing_command() {
        let err = run(Command::new("false").arg("x")).unwrap_err();
        assert!(err.to_string().contains("`false x` failed"), "{err}");
    }
}
