//! Deterministic benchmark data: a tree that looks like a persistent volume of a
//! database-backed application, a `mutate` step that changes about 5 % of it the
//! way such an application does, a many-tiny-files tree, and a byte-for-byte tree
//! comparison for checking restores.
//!
//! The content comes from `arca-testdata`, which the criterion benches share:
//! the same size and seed always give the same bytes. This is benchmark input,
//! not a stable fixture format: the layout may change when the generator does.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub(crate) use arca_testdata::GENERATOR_VERSION;
use arca_testdata::{Kind, PAGE, Rng, Volume, append_config, append_log, database_page};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// What a generated tree holds, for the report.
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// Bytes and file count per category, keyed by category name.
    pub(crate) categories: BTreeMap<String, (u64, u64)>,
}

impl Summary {
    fn add(&mut self, category: &str, bytes: u64) {
        let entry = self.categories.entry(category.to_string()).or_default();
        entry.0 += bytes;
        entry.1 += 1;
    }

    /// Total bytes over all categories.
    pub(crate) fn bytes(&self) -> u64 {
        self.categories.values().map(|(bytes, _)| bytes).sum()
    }

    /// Bytes of the categories that copy other files' content
    /// ([`Kind::is_copy`]): what deduplication keeps from a first backup's
    /// compression and encryption.
    pub(crate) fn copied_bytes(&self) -> u64 {
        Kind::ALL
            .iter()
            .filter(|kind| kind.is_copy())
            .filter_map(|kind| self.categories.get(kind.name()))
            .map(|(bytes, _)| bytes)
            .sum()
    }

    /// Total files over all categories.
    pub(crate) fn files(&self) -> u64 {
        self.categories.values().map(|(_, files)| files).sum()
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the [`Volume`] of about `size` bytes that `seed` determines under
/// `root` (which must not exist yet): its files, then its copies, read back
/// from disk so that no more than one file is held at a time.
pub(crate) fn generate(root: &Path, size: u64, seed: u64) -> Result<Summary> {
    if root.exists() {
        bail!(
            "{} already exists; remove it or pick another directory",
            root.display()
        );
    }
    let mut summary = Summary::default();
    let mut volume = Volume::new(size, seed);
    for file in volume.by_ref() {
        write_file(&root.join(&file.path), &file.bytes)?;
        summary.add(file.kind.name(), file.bytes.len() as u64);
    }
    for copy in volume.copies() {
        let source = root.join(&copy.source);
        let content = fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        let mut bytes = copy.prefix;
        bytes.extend_from_slice(&content);
        write_file(&root.join(&copy.path), &bytes)?;
        summary.add(copy.kind.name(), bytes.len() as u64);
    }
    Ok(summary)
}

/// Changes about 5 % of a tree made by [`generate`] the way a database-backed
/// application does: rewrites runs of random pages of the database files (3 %), appends
/// to the logs (1 %), adds new small files (0.5 %) and deletes some (0.5 %).
/// Deterministic: the same tree and seed give the same result.
pub(crate) fn mutate(root: &Path, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed ^ 0x6d75_7461_7465);
    let files = list_files(root)?;
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let under = |dir: &str| -> Vec<&(PathBuf, u64)> {
        files
            .iter()
            .filter(|(path, _)| path.starts_with(dir))
            .collect()
    };
    let (db, logs, small) = (
        under(Kind::Database.dir()),
        under(Kind::Log.dir()),
        under(Kind::SmallFile.dir()),
    );
    if db.is_empty() || logs.is_empty() || small.is_empty() {
        bail!(
            "{} is not a tree made by the dataset generator",
            root.display()
        );
    }

    // Pages are rewritten in runs of 1..32 neighbours (updates of related rows,
    // index splits) at random places, rather than scattered one by one.
    let mut page = Vec::with_capacity(PAGE);
    let mut pages_left = (total * 3 / 100 / PAGE as u64).max(1);
    while pages_left > 0 {
        let (path, len) = db[rng.below(db.len() as u64) as usize];
        let file_pages = (len / PAGE as u64).max(1);
        let first = rng.below(file_pages);
        let run = rng.range(1, 32).min(pages_left).min(file_pages - first);
        let path = root.join(path);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::Start(first * PAGE as u64))?;
        for page_no in first..first + run {
            database_page(&mut rng, page_no, 2, &mut page);
            file.write_all(&page)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        pages_left -= run;
    }

    let mut clock = 1 << 32;
    let mut appended = 0;
    let mut buf = Vec::new();
    while appended < total / 100 {
        let (path, _) = logs[rng.below(logs.len() as u64) as usize];
        buf.clear();
        let len = rng.range(4 * KIB, 256 * KIB) as usize;
        append_log(&mut rng, &mut buf, len, &mut clock);
        let path = root.join(path);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(&buf)
            .with_context(|| format!("appending to {}", path.display()))?;
        appended += buf.len() as u64;
    }

    let mut added = 0;
    let mut index = 0;
    while added < total / 200 {
        buf.clear();
        let len = rng.log_uniform(256, 32 * KIB) as usize;
        append_config(&mut rng, &mut buf, len);
        write_file(
            &root.join(format!(
                "{}/uploads/new-{index:05}.yaml",
                Kind::SmallFile.dir()
            )),
            &buf,
        )?;
        added += len as u64;
        index += 1;
    }

    // Delete a random selection of the original small files (Fisher-Yates prefix).
    let mut victims = small;
    let mut deleted = 0;
    for index in 0..victims.len() {
        if deleted >= total / 200 {
            break;
        }
        let pick = index + rng.below((victims.len() - index) as u64) as usize;
        victims.swap(index, pick);
        let (path, len) = victims[index];
        let path = root.join(path);
        fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        deleted += len;
    }
    Ok(())
}

/// Builds a tree of `count` tiny text files (16..512 bytes, 1000 per directory)
/// under `root`, for measuring memory against the number of files.
pub(crate) fn generate_many_files(root: &Path, count: u64, seed: u64) -> Result<Summary> {
    if root.exists() {
        bail!(
            "{} already exists; remove it or pick another directory",
            root.display()
        );
    }
    let mut rng = Rng::new(seed);
    let mut summary = Summary::default();
    let mut buf = Vec::new();
    for index in 0..count {
        if index % 1000 == 0 {
            let dir = root.join(format!("d{:04}", index / 1000));
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        buf.clear();
        let len = rng.range(16, 512) as usize;
        append_config(&mut rng, &mut buf, len);
        let path = root.join(format!("d{:04}/f{index:07}.conf", index / 1000));
        fs::write(&path, &buf).with_context(|| format!("writing {}", path.display()))?;
        summary.add("tiny files", len as u64);
    }
    Ok(summary)
}

/// Every regular file under `root` as (path relative to `root`, length), sorted;
/// fails on anything that is neither a file nor a directory.
pub(crate) fn list_files(root: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = root.join(&relative);
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                files.push((path, entry.metadata()?.len()));
            } else {
                bail!(
                    "{} is neither a file nor a directory",
                    root.join(path).display()
                );
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Total length of the regular files under `root` (also the size of a local repository).
pub(crate) fn tree_bytes(root: &Path) -> Result<u64> {
    Ok(list_files(root)?.iter().map(|(_, len)| len).sum())
}

/// Checks that `restored` holds exactly the files of `original` with the same
/// bytes; the error names the first difference.
pub(crate) fn compare_trees(original: &Path, restored: &Path) -> Result<()> {
    let (expected, actual) = (list_files(original)?, list_files(restored)?);
    if let Some((path, _)) = expected
        .iter()
        .find(|entry| actual.binary_search(entry).is_err())
    {
        bail!(
            "{} is missing or has the wrong size in the restore {}",
            path.display(),
            restored.display()
        );
    }
    if let Some((path, _)) = actual
        .iter()
        .find(|entry| expected.binary_search(entry).is_err())
    {
        bail!(
            "{} is in the restore {} but not in the original",
            path.display(),
            restored.display()
        );
    }
    let (mut left, mut right) = (vec![0; MIB as usize], vec![0; MIB as usize]);
    for (path, len) in &expected {
        let (mut a, mut b) = (open(&original.join(path))?, open(&restored.join(path))?);
        let mut offset = 0;
        while offset < *len {
            let step = (len - offset).min(MIB) as usize;
            a.read_exact(&mut left[..step])?;
            b.read_exact(&mut right[..step])?;
            if left[..step] != right[..step] {
                bail!(
                    "{} differs from the original in the restore {} (within bytes {offset}..{})",
                    path.display(),
                    restored.display(),
                    offset + step as u64
                );
            }
            offset += step as u64;
        }
    }
    Ok(())
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("opening {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("arca-xtask-dataset-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn same_seed_same_tree_and_mutate_is_deterministic_and_restorable_by_copy() {
        let base = scratch("det");
        let (a, b) = (base.join("a"), base.join("b"));
        let summary = generate(&a, 4 * MIB, 7).unwrap();
        generate(&b, 4 * MIB, 7).unwrap();
        compare_trees(&a, &b).unwrap();
        assert_eq!(summary.bytes(), tree_bytes(&a).unwrap());
        assert!(summary.files() > 50, "{summary:?}");

        mutate(&a, 1).unwrap();
        let err = compare_trees(&b, &a).unwrap_err().to_string();
        assert!(
            err.contains("differs") || err.contains("missing") || err.contains("not in"),
            "{err}"
        );
        mutate(&b, 1).unwrap();
        compare_trees(&a, &b).unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn mutate_changes_about_five_percent() {
        let base = scratch("mutate");
        let (before, after) = (base.join("before"), base.join("after"));
        generate(&before, 8 * MIB, 3).unwrap();
        generate(&after, 8 * MIB, 3).unwrap();
        mutate(&after, 3).unwrap();
        // Count bytes in 8 KiB blocks that differ, plus files only on one side.
        let (old, new) = (list_files(&before).unwrap(), list_files(&after).unwrap());
        let mut changed = 0u64;
        for (path, len) in &new {
            match old.iter().find(|(p, _)| p == path) {
                None => changed += len,
                Some((_, old_len)) => {
                    let (x, y) = (
                        fs::read(before.join(path)).unwrap(),
                        fs::read(after.join(path)).unwrap(),
                    );
                    changed += len.saturating_sub(*old_len);
                    let common = x.len().min(y.len());
                    changed += x[..common]
                        .chunks(PAGE)
                        .zip(y[..common].chunks(PAGE))
                        .filter(|(p, q)| p != q)
                        .map(|(p, _)| p.len() as u64)
                        .sum::<u64>();
                }
            }
        }
        let total = tree_bytes(&before).unwrap();
        let percent = changed * 100 / total;
        assert!(
            (3..=8).contains(&percent),
            "changed {changed} of {total} bytes ({percent} %)"
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn compare_trees_finds_a_flipped_byte_and_an_extra_file() {
        let base = scratch("compare");
        let (a, b) = (base.join("a"), base.join("b"));
        generate_many_files(&a, 30, 1).unwrap();
        generate_many_files(&b, 30, 1).unwrap();
        compare_trees(&a, &b).unwrap();
        let victim = b.join("d0000/f0000017.conf");
        let mut bytes = fs::read(&victim).unwrap();
        bytes[3] ^= 1;
        fs::write(&victim, bytes).unwrap();
        let err = compare_trees(&a, &b).unwrap_err().to_string();
        assert!(err.contains("f0000017.conf differs"), "{err}");
        fs::copy(a.join("d0000/f0000017.conf"), &victim).unwrap();
        fs::write(b.join("extra"), b"x").unwrap();
        let err = compare_trees(&a, &b).unwrap_err().to_string();
        assert!(err.contains("extra is in the restore"), "{err}");
        fs::remove_dir_all(&base).unwrap();
    }
}
