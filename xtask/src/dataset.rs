//! Deterministic benchmark data: trees of several data mixes ([`Mix`]: the
//! persistent volume of a database-backed application, database files only,
//! incompressible media only, many small text files, a volume duplicated
//! across directories), a `mutate` step that changes about 5 % of any of them
//! the way an application does, a many-tiny-files tree, and a byte-for-byte
//! tree comparison for checking restores.
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
use arca_testdata::{
    Kind, PAGE, Rng, Volume, append_config, append_log, append_text, database_page,
};

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

/// What a benchmark tree holds. Each mix stresses another part of a backup:
/// compression (database files, ~3:1), its absence (media), per-file costs
/// (small files), deduplication (duplicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mix {
    /// The [`Volume`]'s own shares: database files, small files, logs,
    /// media, duplicates and shifted copies.
    Default,
    /// Database files only (8 KiB pages that zstd shrinks about 3:1).
    Database,
    /// Incompressible media files only.
    Media,
    /// Small text, configuration and JSON-ish files only (256 B to 32 KiB),
    /// a quarter of the size so that their number stays in the tens of
    /// thousands at the usual sizes.
    Small,
    /// A default volume of a quarter of the size in four directories: every
    /// file exists four times.
    Duplicates,
}

/// How many directories [`Mix::Duplicates`] holds its volume in.
const DUPLICATE_SITES: u64 = 4;

impl Mix {
    /// Every mix, in the order `--mix all` runs them.
    pub(crate) const ALL: [Mix; 5] = [
        Mix::Default,
        Mix::Database,
        Mix::Media,
        Mix::Small,
        Mix::Duplicates,
    ];

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mix::Default => "default",
            Mix::Database => "db",
            Mix::Media => "media",
            Mix::Small => "small",
            Mix::Duplicates => "dup",
        }
    }

    /// Parses a [`Mix::name`].
    pub(crate) fn parse(name: &str) -> Result<Self> {
        Mix::ALL
            .into_iter()
            .find(|mix| mix.name() == name)
            .with_context(|| {
                format!("unknown data mix {name:?}; use default, db, media, small, dup or all")
            })
    }

    /// What the report says the mix is.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Mix::Default => "the default volume (database files, small files, logs, media, copies)",
            Mix::Database => "database files only (8 KiB pages, zstd ~3:1)",
            Mix::Media => "incompressible media only",
            Mix::Small => "small text/config files only (a quarter of the size)",
            Mix::Duplicates => {
                "a default volume of a quarter of the size, four times in four directories"
            }
        }
    }

    /// The share of each kind of file in this mix's volume.
    fn percents(self) -> fn(Kind) -> u64 {
        match self {
            Mix::Database => |kind| if kind == Kind::Database { 100 } else { 0 },
            Mix::Media => |kind| if kind == Kind::Media { 100 } else { 0 },
            Mix::Small => |kind| if kind == Kind::SmallFile { 100 } else { 0 },
            Mix::Default | Mix::Duplicates => Kind::percent,
        }
    }
}

/// Writes the tree of data mix `mix` of about `size` bytes that `seed`
/// determines under `root` (which must not exist yet).
pub(crate) fn generate(root: &Path, mix: Mix, size: u64, seed: u64) -> Result<Summary> {
    if root.exists() {
        bail!(
            "{} already exists; remove it or pick another directory",
            root.display()
        );
    }
    match mix {
        Mix::Small => generate_volume(root, Volume::with_percents(size / 4, seed, mix.percents())),
        Mix::Duplicates => {
            let first = root.join("site-0");
            let mut summary = generate_volume(&first, Volume::new(size / DUPLICATE_SITES, seed))?;
            for site in 1..DUPLICATE_SITES {
                for (path, len) in list_files(&first)? {
                    let (from, to) = (
                        first.join(&path),
                        root.join(format!("site-{site}")).join(&path),
                    );
                    if let Some(parent) = to.parent() {
                        fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                    fs::copy(&from, &to).with_context(|| {
                        format!("copying {} to {}", from.display(), to.display())
                    })?;
                    summary.add("copies of the whole volume", len);
                }
            }
            Ok(summary)
        }
        Mix::Default | Mix::Database | Mix::Media => {
            generate_volume(root, Volume::with_percents(size, seed, mix.percents()))
        }
    }
}

/// Writes `volume` under `root`: its files, then its copies, read back from
/// disk so that no more than one file is held at a time.
fn generate_volume(root: &Path, mut volume: Volume) -> Result<Summary> {
    let mut summary = Summary::default();
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

/// The kind of a generated file, from the directories on its path (a
/// [`Mix::Duplicates`] tree nests volumes one level down).
fn kind_of(path: &Path) -> Option<Kind> {
    Kind::ALL.into_iter().find(|kind| {
        let dir = Path::new(kind.dir());
        path.ancestors().any(|ancestor| ancestor.ends_with(dir))
    })
}

/// `first`, or `other` if `first` is empty.
fn or_else<T>(first: Vec<T>, other: Vec<T>) -> Vec<T> {
    if first.is_empty() { other } else { first }
}

/// Changes about 5 % of a tree made by [`generate`] the way an application
/// does: rewrites runs of random pages of the database files (3 %), appends
/// to the logs (1 %), adds new small files (0.5 %) and deletes some (0.5 %).
/// A mix without database files has pages of its other files rewritten with
/// content of their kind; one without logs gets its appends on small files,
/// else on those other files; one without small files loses none.
/// Deterministic: the same tree and seed give the same result.
pub(crate) fn mutate(root: &Path, seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed ^ 0x6d75_7461_7465);
    let files = list_files(root)?;
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let of_kind = |kind: Kind| -> Vec<&(PathBuf, u64)> {
        files
            .iter()
            .filter(|(path, _)| kind_of(path) == Some(kind))
            .collect()
    };
    let paged: Vec<&(PathBuf, u64)> = files
        .iter()
        .filter(|(_, len)| *len >= PAGE as u64)
        .collect();
    let db = or_else(of_kind(Kind::Database), paged);
    let logs = or_else(
        of_kind(Kind::Log),
        or_else(of_kind(Kind::SmallFile), db.clone()),
    );
    let small = of_kind(Kind::SmallFile);
    if db.is_empty() {
        bail!(
            "{} has no file of a page or more to change; is it a tree made by the dataset generator?",
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
            match kind_of(path.strip_prefix(root).unwrap_or(&path)) {
                Some(Kind::Database) => database_page(&mut rng, page_no, 2, &mut page),
                kind => {
                    page.clear();
                    append_content(&mut rng, kind, &mut page, PAGE, &mut 0);
                }
            }
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
        // At most what is left of the 1 %: small files must not grow by a lot.
        let len = rng
            .range(4 * KIB, 256 * KIB)
            .min(total / 100 - appended + 1) as usize;
        append_content(&mut rng, kind_of(path), &mut buf, len, &mut clock);
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

/// Appends `len` bytes of content like a file of `kind` holds: log lines
/// (continuing `clock`), text, or random bytes (media and copies of it).
fn append_content(
    rng: &mut Rng,
    kind: Option<Kind>,
    out: &mut Vec<u8>,
    len: usize,
    clock: &mut u64,
) {
    match kind {
        Some(Kind::Log) => append_log(rng, out, len, clock),
        Some(Kind::SmallFile | Kind::Database) => append_text(rng, out, len),
        _ => {
            let start = out.len();
            out.resize(start + len, 0);
            rng.fill(&mut out[start..]);
        }
    }
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
        let summary = generate(&a, Mix::Default, 4 * MIB, 7).unwrap();
        generate(&b, Mix::Default, 4 * MIB, 7).unwrap();
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

    /// Bytes in differing 8 KiB blocks plus bytes of files only in `after`.
    fn changed_bytes(before: &Path, after: &Path) -> u64 {
        let (old, new) = (list_files(before).unwrap(), list_files(after).unwrap());
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
        changed
    }

    #[test]
    fn mutate_changes_about_five_percent_of_every_mix() {
        let base = scratch("mutate");
        for mix in Mix::ALL {
            let (before, after) = (base.join("before"), base.join("after"));
            let summary = generate(&before, mix, 8 * MIB, 3).unwrap();
            generate(&after, mix, 8 * MIB, 3).unwrap();
            mutate(&after, 3).unwrap();
            let total = tree_bytes(&before).unwrap();
            assert_eq!(summary.bytes(), total, "{}", mix.name());
            let changed = changed_bytes(&before, &after);
            let percent = changed * 100 / total;
            assert!(
                (3..=8).contains(&percent),
                "{}: changed {changed} of {total} bytes ({percent} %)",
                mix.name()
            );
            fs::remove_dir_all(&base).unwrap();
        }
    }

    #[test]
    fn mixes_hold_what_they_say() {
        let base = scratch("mixes");
        let kinds = |mix| {
            let root = base.join(Mix::name(mix));
            generate(&root, mix, 4 * MIB, 5).unwrap();
            let files = list_files(&root).unwrap();
            let kinds: std::collections::BTreeSet<Option<Kind>> =
                files.iter().map(|(path, _)| kind_of(path)).collect();
            (files, kinds)
        };
        assert_eq!(kinds(Mix::Database).1, [Some(Kind::Database)].into());
        assert_eq!(kinds(Mix::Media).1, [Some(Kind::Media)].into());
        let (small, small_kinds) = kinds(Mix::Small);
        assert_eq!(small_kinds, [Some(Kind::SmallFile)].into());
        assert!(small.len() > 50, "{}", small.len());
        let (dup, _) = kinds(Mix::Duplicates);
        let site = |n: u64| -> Vec<(PathBuf, u64)> {
            dup.iter()
                .filter_map(|(path, len)| {
                    Some((
                        path.strip_prefix(format!("site-{n}")).ok()?.to_path_buf(),
                        *len,
                    ))
                })
                .collect()
        };
        assert!(!site(0).is_empty());
        assert!((1..DUPLICATE_SITES).all(|n| site(n) == site(0)));
        compare_trees(&base.join("dup/site-0"), &base.join("dup/site-3")).unwrap();
        assert!(Mix::parse("videos").is_err());
        assert!(
            Mix::ALL
                .iter()
                .all(|&mix| Mix::parse(mix.name()).unwrap() == mix)
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
