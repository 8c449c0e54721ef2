//! Deterministic benchmark data: a tree that looks like a persistent volume of a
//! database-backed application, a `mutate` step that changes about 5 % of it the
//! way such an application does, a many-tiny-files tree, and a byte-for-byte tree
//! comparison for checking restores.
//!
//! The same size and seed always give the same bytes: randomness comes from an
//! inline SplitMix64 (no `rand` in xtask) and text is drawn from a fixed word list
//! so it compresses like real text. This is benchmark input, not a stable fixture
//! format: the layout may change when the generator does.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Bumped whenever the generator's output changes, so cached trees are not reused.
pub(crate) const GENERATOR_VERSION: u32 = 1;

/// Database page size (PostgreSQL's); pages are rewritten whole by `mutate`.
const PAGE: usize = 8192;
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

    /// Total files over all categories.
    pub(crate) fn files(&self) -> u64 {
        self.categories.values().map(|(_, files)| files).sum()
    }
}

/// SplitMix64: tiny, fast, and good enough for test data (not for anything secret).
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift instead of a biased modulo.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Log-uniform in `lo..=hi`: many small values, a few large ones, like file sizes.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let (lo_ln, hi_ln) = ((lo as f64).ln(), (hi as f64).ln());
        ((lo_ln + unit * (hi_ln - lo_ln)).exp() as u64).clamp(lo, hi)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// Words for generated text: common English plus the vocabulary of logs and configs.
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "or",
    "an",
    "are",
    "was",
    "it",
    "not",
    "all",
    "which",
    "can",
    "has",
    "have",
    "will",
    "one",
    "new",
    "more",
    "other",
    "some",
    "time",
    "only",
    "first",
    "after",
    "when",
    "into",
    "over",
    "than",
    "then",
    "also",
    "about",
    "there",
    "their",
    "would",
    "could",
    "should",
    "order",
    "customer",
    "invoice",
    "payment",
    "account",
    "user",
    "session",
    "request",
    "response",
    "status",
    "error",
    "warning",
    "info",
    "debug",
    "trace",
    "timeout",
    "retry",
    "connection",
    "database",
    "query",
    "index",
    "table",
    "column",
    "row",
    "transaction",
    "commit",
    "rollback",
    "cache",
    "miss",
    "hit",
    "latency",
    "duration",
    "bytes",
    "records",
    "batch",
    "queue",
    "worker",
    "thread",
    "process",
    "service",
    "endpoint",
    "handler",
    "config",
    "enabled",
    "disabled",
    "true",
    "false",
    "null",
    "default",
    "value",
    "key",
    "name",
    "id",
    "type",
    "version",
    "host",
    "port",
    "path",
    "file",
    "directory",
    "volume",
    "storage",
    "backup",
    "restore",
    "snapshot",
    "cluster",
    "node",
    "pod",
    "namespace",
    "deployment",
    "replica",
    "shipping",
    "address",
    "street",
    "city",
    "country",
    "product",
    "price",
    "quantity",
    "discount",
    "total",
    "currency",
    "euro",
    "dollar",
    "report",
    "monthly",
    "weekly",
    "daily",
    "quarter",
    "revenue",
    "growth",
    "team",
    "project",
    "meeting",
    "schedule",
    "release",
    "feature",
    "bug",
    "fix",
    "test",
    "build",
    "deploy",
    "monitor",
    "alert",
    "metric",
    "dashboard",
    "owner",
    "manager",
    "support",
    "ticket",
    "priority",
    "high",
    "low",
    "medium",
    "critical",
    "resolved",
    "pending",
    "open",
    "closed",
    "approved",
    "rejected",
    "created",
    "updated",
    "deleted",
    "received",
    "sent",
    "delivered",
    "failed",
    "success",
    "started",
    "stopped",
    "running",
    "waiting",
    "ready",
    "healthy",
    "degraded",
];

fn push_word(rng: &mut Rng, out: &mut Vec<u8>) {
    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
    out.extend_from_slice(word.as_bytes());
}

/// Appends prose (words, punctuation, line breaks) until `out` is `len` bytes long.
fn push_text(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    while out.len() < end {
        push_word(rng, out);
        out.push(match rng.below(16) {
            0 => b'\n',
            1 => b',',
            2 => b'.',
            _ => b' ',
        });
    }
    out.truncate(end);
}

/// Appends log lines with increasing timestamps until `out` is `len` bytes longer.
fn push_log(rng: &mut Rng, out: &mut Vec<u8>, len: usize, clock: &mut u64) {
    const LEVELS: [&str; 4] = ["INFO ", "INFO ", "WARN ", "DEBUG"];
    let end = out.len() + len;
    while out.len() < end {
        *clock += rng.range(1, 2_000);
        let (secs, millis) = (*clock / 1000, *clock % 1000);
        let line = format!(
            "2026-01-{:02}T{:02}:{:02}:{:02}.{millis:03}Z {} [worker-{}] request_id={:016x} status={} took={}ms ",
            1 + secs / 86_400 % 28,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            LEVELS[rng.below(4) as usize],
            rng.below(8),
            rng.next_u64(),
            [200, 200, 200, 201, 404, 500][rng.below(6) as usize],
            rng.log_uniform(1, 5_000),
        );
        out.extend_from_slice(line.as_bytes());
        let words = rng.range(3, 12);
        for _ in 0..words {
            push_word(rng, out);
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out.truncate(end);
}

/// Appends YAML-like `key: value` configuration until `out` is `len` bytes longer.
fn push_config(rng: &mut Rng, out: &mut Vec<u8>, len: usize) {
    let end = out.len() + len;
    while out.len() < end {
        for _ in 0..rng.below(3) {
            out.extend_from_slice(b"  ");
        }
        push_word(rng, out);
        out.push(b'_');
        push_word(rng, out);
        out.extend_from_slice(b": ");
        match rng.below(3) {
            0 => out.extend_from_slice(rng.below(65_536).to_string().as_bytes()),
            1 => push_word(rng, out),
            _ => out.extend_from_slice(format!("\"{:08x}\"", rng.next_u64() as u32).as_bytes()),
        }
        out.push(b'\n');
    }
    out.truncate(end);
}

/// One database page: a header, rows (ids, timestamps, random UUIDs, text) and
/// zeroed free space, so it compresses partly, like a real heap page.
fn write_page(rng: &mut Rng, page_no: u64, lsn: u64, page: &mut Vec<u8>) {
    page.clear();
    page.extend_from_slice(&lsn.to_le_bytes());
    page.extend_from_slice(&(page_no as u32).to_le_bytes());
    page.extend_from_slice(&[0; 12]);
    let used = rng.range(PAGE as u64 * 6 / 10, PAGE as u64) as usize;
    let mut row = page_no * 64;
    while page.len() < used {
        row += 1;
        page.extend_from_slice(&row.to_le_bytes());
        page.extend_from_slice(&(1_767_225_600 + row * 7).to_le_bytes());
        let mut uuid = [0; 16];
        rng.fill(&mut uuid);
        page.extend_from_slice(&uuid);
        let text = rng.range(16, 160) as usize;
        push_text(rng, page, text);
    }
    page.truncate(used);
    page.resize(PAGE, 0);
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Builds the persistent-volume-like tree of about `size` bytes under `root`
/// (which must not exist yet).
///
/// Shares: 40 % database files of 8 KiB pages, 15 % small text/config files
/// (tens of thousands at 2 GiB), 5 % logs, 25 % incompressible media, 8 % exact
/// duplicates and 7 % shifted copies (a few bytes inserted at the front) of
/// database and media files.
pub(crate) fn generate(root: &Path, size: u64, seed: u64) -> Result<Summary> {
    if root.exists() {
        bail!(
            "{} already exists; remove it or pick another directory",
            root.display()
        );
    }
    let mut rng = Rng::new(seed);
    let mut summary = Summary::default();
    let share = |percent: u64| size * percent / 100;
    let mut big_files = Vec::new();

    // Database relation files: 8 KiB pages, files up to ~256 MiB.
    let db_budget = share(40);
    let db_files = (db_budget / (192 * MIB)).max(2);
    let mut page = Vec::with_capacity(PAGE);
    let mut buf = Vec::new();
    for index in 0..db_files {
        let pages = (db_budget / db_files / PAGE as u64).max(1);
        let path = root.join(format!("pgdata/base/16384/{}", 24_576 + index));
        let mut file = create(&path)?;
        for page_no in 0..pages {
            write_page(&mut rng, page_no, 1, &mut page);
            buf.extend_from_slice(&page);
            if buf.len() >= 4 * MIB as usize {
                file.write_all(&buf)
                    .with_context(|| format!("writing {}", path.display()))?;
                buf.clear();
            }
        }
        file.write_all(&buf)
            .with_context(|| format!("writing {}", path.display()))?;
        buf.clear();
        summary.add("database files (8 KiB pages)", pages * PAGE as u64);
        big_files.push(path);
    }

    // Small files: configs, documents, JSON-ish records; 100 per directory.
    let mut remaining = share(15);
    let mut index = 0u64;
    while remaining > 0 {
        let len = rng.log_uniform(256, 32 * KIB).min(remaining) as usize;
        let (ext, kind) =
            [("yaml", 0), ("txt", 1), ("json", 2), ("html", 1)][rng.below(4) as usize];
        buf.clear();
        match kind {
            0 => push_config(&mut rng, &mut buf, len),
            1 => push_text(&mut rng, &mut buf, len),
            _ => {
                let mut clock = rng.below(1 << 30);
                push_log(&mut rng, &mut buf, len, &mut clock);
            }
        }
        let path = root.join(small_file_path(index, ext));
        write_file(&path, &buf)?;
        summary.add("small text/config files", len as u64);
        remaining -= len as u64;
        index += 1;
    }

    // Logs: a few files that `mutate` appends to.
    let log_files = 8;
    let mut clock = 0;
    for index in 0..log_files {
        buf.clear();
        push_log(
            &mut rng,
            &mut buf,
            (share(5) / log_files) as usize,
            &mut clock,
        );
        write_file(&root.join(format!("logs/service-{index}.log")), &buf)?;
        summary.add("log files", buf.len() as u64);
    }

    // Media: incompressible blobs of 256 KiB .. 64 MiB.
    let mut remaining = share(25);
    let mut index = 0;
    while remaining > 0 {
        let len = rng.log_uniform(256 * KIB, 64 * MIB).min(remaining);
        buf.resize(len as usize, 0);
        rng.fill(&mut buf);
        let path = root.join(format!("media/album-{}/IMG_{index:04}.jpg", index / 50));
        write_file(&path, &buf)?;
        summary.add("incompressible media", len);
        big_files.push(path);
        remaining -= len;
        index += 1;
    }

    // Duplicates (whole-file dedup) and shifted copies (chunk-boundary resync).
    for (percent, shifted, dir, category) in [
        (8, false, "backups/copy", "exact duplicates"),
        (7, true, "backups/shifted", "shifted copies"),
    ] {
        let mut remaining = share(percent);
        let mut copy = 0;
        while remaining > 0 {
            // Only files that fit the remaining budget, so the tree stays close to `size`.
            let fitting: Vec<&PathBuf> = big_files
                .iter()
                .filter(|path| fs::metadata(path).is_ok_and(|meta| meta.len() <= remaining))
                .collect();
            if fitting.is_empty() {
                break;
            }
            let source = fitting[rng.below(fitting.len() as u64) as usize];
            let mut content =
                fs::read(source).with_context(|| format!("reading {}", source.display()))?;
            if shifted {
                let mut prefix = vec![0; rng.range(1, 16) as usize];
                rng.fill(&mut prefix);
                content.splice(0..0, prefix);
            }
            let name = source
                .file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default();
            write_file(&root.join(format!("{dir}/{copy}-{name}")), &content)?;
            summary.add(category, content.len() as u64);
            remaining = remaining.saturating_sub(content.len() as u64);
            copy += 1;
        }
    }
    Ok(summary)
}

fn small_file_path(index: u64, ext: &str) -> String {
    format!(
        "app/site-{:02}/dir-{:03}/file-{index:06}.{ext}",
        index / 5_000,
        index / 100 % 50
    )
}

fn create(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    File::create(path).with_context(|| format!("creating {}", path.display()))
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
    let (db, logs, small) = (under("pgdata"), under("logs"), under("app"));
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
            write_page(&mut rng, page_no, 2, &mut page);
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
        push_log(&mut rng, &mut buf, len, &mut clock);
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
        push_config(&mut rng, &mut buf, len);
        write_file(&root.join(format!("app/uploads/new-{index:05}.yaml")), &buf)?;
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
        push_config(&mut rng, &mut buf, len);
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

    #[test]
    fn text_compresses_and_media_does_not() {
        // A crude order-0 entropy estimate stands in for zstd (no zstd in xtask).
        fn bits_per_byte(bytes: &[u8]) -> f64 {
            let mut counts = [0u64; 256];
            bytes.iter().for_each(|&b| counts[b as usize] += 1);
            let n = bytes.len() as f64;
            counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
                .sum()
        }
        let mut rng = Rng::new(5);
        let mut text = Vec::new();
        push_text(&mut rng, &mut text, 64 * 1024);
        assert_eq!(text.len(), 64 * 1024);
        let mut media = vec![0; 64 * 1024];
        rng.fill(&mut media);
        assert!(bits_per_byte(&text) < 5.0);
        assert!(bits_per_byte(&media) > 7.9);
    }
}
