//! `cargo xtask demo`: the README's first command. Builds `arca`, makes a small
//! sample directory and walks through a backup's life with the real binary:
//! init, backup, change, backup again, restore, byte-for-byte comparison,
//! `check --read-data`. Everything lives under `target/demo/`.
//!
//! The sample is the benchmark's generator at a small size: databases, text,
//! logs, media and duplicates, changed the way a database changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::dataset;
use crate::process::{cargo, project_root, run as run_command};

/// Size of the sample directory.
const SAMPLE_BYTES: u64 = 8 * 1024 * 1024;
const SEED: u64 = 2026;

/// The demo repository's password. Not a secret: the demo sets it in the
/// environment of each `arca` command, exactly like a user would.
const DEMO_PASSWORD: &str = "demo-password-not-secret";

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    if let Some(arg) = args.first() {
        bail!("`cargo xtask demo` takes no arguments, got {arg:?}");
    }
    run_command(cargo().args(["build", "--release", "-p", "arca"]))?;

    let root = project_root();
    let demo = root.join("target/demo");
    if demo.exists() {
        fs::remove_dir_all(&demo)
            .with_context(|| format!("cannot remove the previous demo at {}", demo.display()))?;
    }
    let data = Path::new("target/demo/data");
    let restored = Path::new("target/demo/restore");
    let arca = Arca {
        binary: root.join("target/release/arca"),
        repository: "target/demo/repo",
    };

    say("a sample directory to protect");
    let sample = dataset::generate(&root.join(data), dataset::Mix::Default, SAMPLE_BYTES, SEED)?;
    println!(
        "{} files, {:.1} MiB in {}",
        sample.files(),
        sample.bytes() as f64 / (1024.0 * 1024.0),
        data.display()
    );

    say("create an encrypted repository (password from ARCA_PASSWORD)");
    arca.run(&["init"])?;
    say("first backup: everything is new");
    arca.run(&["backup", &data.to_string_lossy()])?;
    say("change about 5 % of the data, then back up again: only the changes are stored");
    dataset::mutate(&root.join(data), SEED)?;
    arca.run(&["backup", &data.to_string_lossy()])?;
    arca.run(&["snapshots"])?;
    say("restore the latest snapshot into an empty directory");
    arca.run(&["restore", "latest", "--target", &restored.to_string_lossy()])?;

    // Snapshots record absolute paths, so the copy lands under target/<absolute path>.
    let original = root.join(data).canonicalize()?;
    let copy = root.join(restored).join(original.strip_prefix("/")?);
    dataset::compare_trees(&original, &copy)?;
    say("restored copy is byte-for-byte identical to the original");

    say("verify every byte stored in the repository");
    arca.run(&["check", "--read-data"])?;

    say("done");
    println!("repository: {}", root.join(arca.repository).display());
    println!("restored:   {}", copy.display());
    println!(
        "try:        ARCA_PASSWORD={DEMO_PASSWORD} target/release/arca -r {} ls latest",
        arca.repository
    );
    Ok(())
}

fn say(what: &str) {
    println!("\n==> {what}");
}

/// The release `arca` binary pointed at the demo repository.
struct Arca {
    binary: PathBuf,
    repository: &'static str,
}

impl Arca {
    fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(project_root())
            .args(["-r", self.repository])
            .args(args)
            .env("ARCA_PASSWORD", DEMO_PASSWORD);
        // Password sources that would take precedence over ARCA_PASSWORD.
        for var in [
            "ARCA_PASSWORD_FILE",
            "RESTIC_PASSWORD_FILE",
            "ARCA_PASSWORD_COMMAND",
            "RESTIC_PASSWORD_COMMAND",
        ] {
            cmd.env_remove(var);
        }
        run_command(&mut cmd)
    }
}
