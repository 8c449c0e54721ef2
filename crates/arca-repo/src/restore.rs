//! Restore: writes a snapshot, or the part of it selected by include/exclude
//! patterns, back into a local directory.
//!
//! The snapshot's trees reproduce absolute paths, so `/home/u/data` in a
//! snapshot is restored to `<target>/home/u/data`. A restore runs in phases:
//!
//! 1. **Plan**: walk the snapshot's trees, apply the filter, pair up hardlinks
//!    and work out where every data blob goes (file and offset).
//! 2. **Create**: directories, empty files of the right length, symlinks,
//!    hardlinks, fifos and (as root) device nodes. Existing entries that the
//!    snapshot also contains are replaced; nothing else in the target is touched.
//! 3. **Content**: blobs grouped by pack and sorted by offset, so every pack is
//!    read with few ranged reads, by a bounded number of packs in parallel.
//!    Decryption, decompression and writing run on blocking threads, never on
//!    the async workers. All-zero blobs are skipped, leaving holes in sparse-
//!    capable filesystems.
//! 4. **Verify** (optional): re-read every restored file and check each blob's
//!    content ID.
//! 5. **Metadata**: ownership (when asked to, normally as root), xattrs, mode and
//!    times; directories last and deepest first so writing their contents does
//!    not change their times.
//!
//! Every item that could not be restored is collected; if there is any, the
//! restore ends with [`Error::RestoreFailed`] naming each one. This module is not
//! a mount and never deletes files that are not in the snapshot.

mod content;
pub mod filter;
mod fsops;
pub(crate) mod plan;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use self::fsops::ItemState;
use crate::progress::Progress;
use crate::snapshot::Snapshot;
use crate::{Error, Repository, Result};

pub use content::{MAX_GAP, MAX_RANGE, concurrent_reads, read_ranges};
pub use verify::verify_file;

/// What to restore and how.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Directory to restore into; created if missing.
    pub target: PathBuf,
    /// Glob patterns selecting what to restore (restic semantics, matched against
    /// the path inside the snapshot, e.g. `/home/u/*.txt`); empty = everything.
    /// The parent directories of included items are restored too.
    pub includes: Vec<String>,
    /// Glob patterns of items (and, for directories, everything below them) not to restore.
    pub excludes: Vec<String>,
    /// Re-read every restored file afterwards and check it against the snapshot.
    pub verify: bool,
    /// Replace existing files in the target that the snapshot also contains.
    /// When off, such files are left alone and reported as failures.
    pub overwrite: bool,
    /// Restore numeric owner and group (needs root). Defaults to whether the
    /// process runs as root.
    pub owner: bool,
}

impl RestoreOptions {
    /// Restore everything into `target`, overwriting files the snapshot contains,
    /// restoring ownership when running as root.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        RestoreOptions {
            target: target.into(),
            includes: Vec::new(),
            excludes: Vec::new(),
            verify: false,
            overwrite: true,
            owner: nix::unistd::geteuid().is_root(),
        }
    }
}

/// What a successful restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Regular files restored (hardlinks to an already restored file not counted).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// Extra names of hardlinked files.
    pub hardlinks: u64,
    /// Fifos and device nodes restored.
    pub special: u64,
    /// Bytes of file content restored (including zero runs left as holes).
    pub bytes_restored: u64,
    /// Bytes read from the repository.
    pub bytes_read: u64,
    /// Packs read from.
    pub packs_read: u64,
    /// Files whose content was re-read and checked (`verify`).
    pub files_verified: u64,
    /// Items deliberately not restored, with why (sockets, device nodes without
    /// root, xattrs the target filesystem does not support).
    pub skipped: Vec<(PathBuf, String)>,
}

/// One item that could not be restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreFailure {
    /// Path of the item in the target directory.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for RestoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// How many failures [`Error::RestoreFailed`]'s message spells out.
const FAILURES_SHOWN: usize = 5;

/// The message of [`Error::RestoreFailed`]: the count and the first few failures.
pub(crate) fn describe_failures(failures: &[RestoreFailure]) -> String {
    let mut out = format!("restore incomplete: {} item(s) failed", failures.len());
    for failure in failures.iter().take(FAILURES_SHOWN) {
        out.push_str("; ");
        out.push_str(&failure.to_string());
    }
    if failures.len() > FAILURES_SHOWN {
        out.push_str(&format!("; and {} more", failures.len() - FAILURES_SHOWN));
    }
    out
}

/// Restores `snapshot` (or the selected part of it) into `opts.target`.
///
/// Returns the summary if every selected item was restored, and
/// [`Error::RestoreFailed`] listing each failed item otherwise (the others are
/// still restored). Errors that prevent any restore (unreadable index or root
/// tree, bad patterns, target not creatable) are returned as they are.
pub async fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreSummary> {
    let filter = filter::PathFilter::new(&opts.includes, &opts.excludes)?;
    let index = repo.load_index().await?;
    let plan = plan::build(repo, index, &snapshot.tree, &filter).await?;
    let total_bytes = plan.files.iter().map(|f| f.size).sum();
    progress.set_total(plan.files.len() as u64, total_bytes);
    tracing::debug!(
        items = plan.items.len(),
        files = plan.files.len(),
        blobs = plan.blob_count(),
        bytes = total_bytes,
        unrestorable = plan.failures.len(),
        "restore planned"
    );

    let target = opts.target.clone();
    std::fs::create_dir_all(&target).map_err(|source| Error::Io {
        path: target.clone(),
        source,
    })?;

    let mut failures: Vec<RestoreFailure> = plan
        .failures
        .iter()
        .map(|(rel, reason)| RestoreFailure {
            path: target.join(rel),
            reason: reason.clone(),
        })
        .collect();
    let plan = Arc::new(plan);

    let created = {
        let (plan, target, overwrite, progress) = (
            plan.clone(),
            target.clone(),
            opts.overwrite,
            progress.clone(),
        );
        blocking(move || fsops::create_items(&plan, &target, overwrite, progress.as_ref())).await?
    };
    let mut summary = RestoreSummary {
        files: created.files,
        dirs: created.dirs,
        symlinks: created.symlinks,
        hardlinks: created.hardlinks,
        special: created.special,
        skipped: created.skipped,
        ..RestoreSummary::default()
    };
    let mut states = created.states;

    let file_ok = |states: &[ItemState], file: usize| {
        states[plan.files[file].item as usize] == ItemState::Created
    };
    let jobs = plan.pack_jobs(|file| file_ok(&states, file));
    tracing::debug!(
        packs = jobs.len(),
        "restore: items created, writing content"
    );
    let dest = Arc::new(content::Destination {
        plan: plan.clone(),
        target: target.clone(),
        wanted: (0..plan.files.len())
            .map(|file| file_ok(&states, file))
            .collect(),
    });
    let written = content::write_packs(repo, jobs, dest, progress.clone()).await;
    // The local backend's kept read buffers (up to ~46 MiB at 16 MiB ranges) would otherwise
    // stay held through verification and metadata, on top of the plan.
    arca_store::release_read_buffers();
    tracing::debug!(
        bytes_read = written.bytes_read,
        failures = written.failures.len(),
        "restore: content written"
    );
    summary.bytes_restored = written.bytes_restored;
    summary.bytes_read = written.bytes_read;
    summary.packs_read = written.packs_read;
    for (file, reason) in written.failures {
        states[plan.files[file].item as usize].fail(reason);
    }

    if opts.verify {
        let candidates: Vec<usize> = (0..plan.files.len())
            .filter(|&file| file_ok(&states, file))
            .collect();
        let verified = {
            let (repo, plan, target) = (repo.clone(), plan.clone(), target.clone());
            blocking(move || verify::verify_files(repo.key(), &plan, &target, &candidates)).await?
        };
        summary.files_verified = verified.checked;
        for (file, reason) in verified.failures {
            states[plan.files[file].item as usize].fail(reason);
        }
    }

    // Metadata last, so nothing above changes it again.
    let (applied, mut states) = {
        let (plan, target, owner, progress) =
            (plan.clone(), target.clone(), opts.owner, progress.clone());
        blocking(move || {
            let applied = fsops::apply_metadata(&plan, &states, &target, owner, progress.as_ref());
            (applied, states)
        })
        .await?
    };
    summary.skipped.extend(applied.skipped);
    for (item, reason) in applied.failures {
        states[item].fail(reason);
    }

    for (item, state) in states.into_iter().enumerate() {
        if let ItemState::Failed(reason) = state {
            let path = plan.items.path_under(&target, item);
            failures.push(RestoreFailure { path, reason });
        }
    }
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    if failures.is_empty() {
        Ok(summary)
    } else {
        Err(Error::RestoreFailed { failures })
    }
}

/// Runs filesystem or CPU work on tokio's blocking pool; a panic there is
/// resumed here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("restore cancelled: {e}")),
        }),
    }
}
