//! `cargo xtask demo`: the README's first command. Builds `arca`, makes a small
//! sample directory and walks through a backup's life with the real binary:
//! init, backup, change, backup again, restore, byte-for-byte comparison,
//! `check --read-data`. Everything lives under `target/demo/`.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::process::{cargo, project_root, run as run_command};

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
    let size = sample::generate(&root.join(data))?;
    println!("{} MiB in {}", size / (1024 * 1024), data.display());

    say("create an encrypted repository (password from ARCA_PASSWORD)");
    arca.run(&["init"])?;
    say("first backup: everything is new");
    arca.run(&["backup", &data.to_string_lossy()])?;
    say("change one file and add another, then back up again: only the changes are stored");
    sample::change(&root.join(data))?;
    arca.run(&["backup", &data.to_string_lossy()])?;
    arca.run(&["snapshots"])?;
    say("restore the latest snapshot into an empty directory");
    arca.run(&["restore", "latest", "--target", &restored.to_string_lossy()])?;

    // Snapshots record absolute paths, so the copy lands under target/<absolute path>.
    let original = root.join(data).canonicalize()?;
    let copy = root.join(restored).join(original.strip_prefix("/")?);
    let differences = compare_trees(&original, &copy)?;
    ensure!(
        differences.is_empty(),
        "restored copy differs from the original:\n{}",
        differences.join("\n")
    );
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

/// Differences between two directory trees: entry types, file contents,
/// permission bits and symlink targets. Empty means identical.
fn compare_trees(a: &Path, b: &Path) -> anyhow::Result<Vec<String>> {
    let mut differences = Vec::new();
    compare_entry(a, b, &mut differences)?;
    Ok(differences)
}

fn compare_entry(a: &Path, b: &Path, differences: &mut Vec<String>) -> anyhow::Result<()> {
    let meta_a = fs::symlink_metadata(a).with_context(|| format!("cannot stat {}", a.display()))?;
    let Ok(meta_b) = fs::symlink_metadata(b) else {
        differences.push(format!("{}: missing", b.display()));
        return Ok(());
    };
    if meta_a.file_type() != meta_b.file_type() {
        differences.push(format!("{}: type differs", b.display()));
        return Ok(());
    }
    if meta_a.mode() != meta_b.mode() {
        differences.push(format!(
            "{}: mode {:o} instead of {:o}",
            b.display(),
            meta_b.mode(),
            meta_a.mode()
        ));
    }
    if meta_a.is_symlink() {
        if fs::read_link(a)? != fs::read_link(b)? {
            differences.push(format!("{}: symlink target differs", b.display()));
        }
    } else if meta_a.is_file() {
        if fs::read(a)? != fs::read(b)? {
            differences.push(format!("{}: content differs", b.display()));
        }
    } else if meta_a.is_dir() {
        let names_a = sorted_names(a)?;
        let names_b = sorted_names(b)?;
        for extra in names_b.iter().filter(|name| !names_a.contains(name)) {
            differences.push(format!("{}: not in the original", b.join(extra).display()));
        }
        for name in &names_a {
            compare_entry(&a.join(name), &b.join(name), differences)?;
        }
    }
    Ok(())
}

fn sorted_names(dir: &Path) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let mut names = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}

/// A deterministic sample directory: text, a database-like file of pages,
/// incompressible media with a duplicate, logs, a symlink, empty entries and
/// deep nesting: a few MiB that exercise dedup and compression.
mod sample {
    use super::*;

    const WORDS: &[&str] = &[
        "backup",
        "restore",
        "volume",
        "snapshot",
        "cluster",
        "encrypted",
        "chunk",
        "index",
        "pack",
        "the",
        "a",
        "of",
        "and",
        "to",
        "repository",
        "node",
        "storage",
        "object",
        "retention",
        "schedule",
    ];

    /// Writes the sample under `dir` and returns its total size in bytes.
    pub(super) fn generate(dir: &Path) -> anyhow::Result<u64> {
        let mut rng = SplitMix64(0x00a7_ca00_5eed);
        let mut total = 0;
        let mut write = |path: &str, bytes: Vec<u8>| -> anyhow::Result<()> {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().expect("sample paths have a parent"))?;
            total += bytes.len() as u64;
            fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
        };
        for i in 0..40 {
            let len = 2048 + rng.below(40 * 1024);
            write(&format!("docs/note-{i:02}.txt"), text(&mut rng, len))?;
        }
        write("deep/a/b/c/d/e/f/readme.txt", text(&mut rng, 1000))?;
        write("db/pages.db", pages(&mut rng, 256))?;
        let noise = random_bytes(&mut rng, 1024 * 1024);
        write("media/noise.bin", noise.clone())?;
        write("media/noise-copy.bin", noise)?;
        let log = (0..20_000)
            .map(|i| format!("2026-01-01T00:00:{:02}Z INFO request {i} served\n", i % 60));
        write("logs/app.log", log.collect::<String>().into_bytes())?;
        write("empty-file", Vec::new())?;
        fs::create_dir_all(dir.join("empty-dir"))?;
        symlink("logs/app.log", dir.join("latest.log"))?;
        Ok(total)
    }

    /// Rewrites a few database pages and adds a file.
    pub(super) fn change(dir: &Path) -> anyhow::Result<()> {
        let db = dir.join("db/pages.db");
        let mut bytes = fs::read(&db)?;
        let mut rng = SplitMix64(7);
        for page in [3, 100, 200] {
            let fresh = random_bytes(&mut rng, 8192);
            bytes[page * 8192..(page + 1) * 8192].copy_from_slice(&fresh);
        }
        fs::write(&db, bytes)?;
        fs::write(dir.join("docs/new-note.txt"), text(&mut rng, 5000))?;
        Ok(())
    }

    fn text(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
        let mut out = String::with_capacity(len + 16);
        while out.len() < len {
            out.push_str(WORDS[rng.below(WORDS.len())]);
            out.push(if rng.below(12) == 0 { '\n' } else { ' ' });
        }
        out.into_bytes()
    }

    /// 8 KiB pages, every other one compressible (mostly zeros plus a row).
    fn pages(rng: &mut SplitMix64, count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(count * 8192);
        for i in 0..count {
            if i % 2 == 0 {
                let mut page = vec![0u8; 8192];
                page[..512].copy_from_slice(&text(rng, 512)[..512]);
                out.extend_from_slice(&page);
            } else {
                out.extend_from_slice(&random_bytes(rng, 8192));
            }
        }
        out
    }

    fn random_bytes(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// SplitMix64: tiny, fast, deterministic; not for anything secret.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_trees_finds_every_kind_of_difference() {
        let tmp = std::env::temp_dir().join(format!("xtask-demo-test-{}", std::process::id()));
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        sample::generate(&a).unwrap();
        sample::generate(&b).unwrap();
        assert_eq!(compare_trees(&a, &b).unwrap(), Vec::<String>::new());

        sample::change(&b).unwrap();
        fs::remove_file(b.join("empty-file")).unwrap();
        let differences = compare_trees(&a, &b).unwrap();
        let expected = [
            "db/pages.db: content differs",
            "docs/new-note.txt: not in the original",
            "empty-file: missing",
        ];
        for needle in expected {
            assert!(
                differences.iter().any(|d| d.ends_with(needle)),
                "{needle} not in {differences:?}"
            );
        }
        assert_eq!(differences.len(), expected.len(), "{differences:?}");
        fs::remove_dir_all(&tmp).unwrap();
    }
}
