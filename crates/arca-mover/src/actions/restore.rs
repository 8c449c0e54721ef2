//! `restore`: the newest snapshot of the host (or the newest not after
//! `RESTORE_AS_OF`, skipping `SELECT_PREVIOUS` more) into `DATA_DIR`.
//!
//! The snapshot is restored into a staging directory inside the volume
//! first; the volume is only touched once that has fully succeeded. Then the
//! staged entries are swapped into place with renames, the file system is
//! synced, and only then does the action succeed (and the binary write the
//! success result). A marker file in the volume says "half swapped" for as
//! long as the swap runs, so a process killed in the middle leaves a volume
//! that says so instead of one that looks restored. A failed or killed
//! restore before the swap leaves the volume as it was (plus the staging
//! directory, which the next run removes).
//!
//! The repository may be a restic one (a VolSync user's existing history):
//! it is read with `arca_restic`, with the same selection, staging, swap and
//! report; nothing is written into it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use std::sync::Arc;

use arca_repo::progress::Progress;
use arca_repo::restore::{RestoreOptions, RestoreSummary, restore};
use arca_repo::select;
use arca_repo::snapshot::Snapshot;
use arca_repo::{Id, Repository};
use arca_restic::ResticRepository;

use super::Mover;
use crate::report::{RestoreOutcome, RestoreReport};
use crate::{Action, Error, Result};

/// The staging directory inside the volume: `tree/` receives the snapshot,
/// `replaced/` what the swap moves out of the way.
pub const RESTORE_STAGING: &str = ".arca-restore-staging";
/// Present in the volume while a swap is under way (it holds the snapshot ID).
pub const RESTORE_MARKER: &str = ".arca-restore-incomplete";

/// Entries of the volume's top level the swap never touches.
const KEEP: [&str; 3] = ["lost+found", RESTORE_STAGING, RESTORE_MARKER];

pub(super) async fn run(mover: &mut Mover<'_>) -> Result<RestoreReport> {
    let clock = Instant::now();
    let data_dir = mover.config.data_dir.clone();
    let nothing = |outcome| RestoreReport {
        outcome,
        snapshot_id: None,
        snapshot_time: None,
        files: 0,
        dirs: 0,
        bytes_restored: 0,
        bytes_read: 0,
        deleted: 0,
        skipped: 0,
        duration_seconds: clock.elapsed().as_secs_f64(),
    };
    fs::metadata(&data_dir).map_err(|err| Error::io(&data_dir, err))?;
    if !mover.repository_exists().await? {
        tracing::warn!("there is no repository at the location: nothing restored");
        return Ok(nothing(RestoreOutcome::NoRepository));
    }
    let source = Source::open(mover).await?;
    let snapshots = source.snapshots().await?;
    let Some((id, snapshot)) = select::pick(
        &snapshots,
        &mover.host_filter(),
        mover.config.restore_as_of,
        mover.config.select_previous,
    ) else {
        tracing::warn!(
            host = %mover.config.host,
            as_of = ?mover.config.restore_as_of,
            select_previous = mover.config.select_previous,
            "no eligible snapshot: nothing restored"
        );
        return Ok(nothing(RestoreOutcome::NoSnapshot));
    };
    let volume_in_snapshot = volume_path(&id, &snapshot)?;
    let staging = data_dir.join(RESTORE_STAGING);
    blocking(move_staging_aside(staging.clone())).await?;
    tracing::info!(
        snapshot = %id.short(),
        time = %snapshot.time,
        "restoring into the staging directory"
    );
    let ticker = mover.ticker(Action::Restore);
    let summary = source
        .restore(
            &id,
            &snapshot,
            &RestoreOptions::new(staging.join("tree")),
            ticker.progress(),
        )
        .await;
    ticker.finish();
    let summary = match summary {
        Ok(summary) => summary,
        Err(err) => {
            // The volume is untouched; free the space the staging took.
            let _ = blocking(move || remove_tree(&staging)).await;
            return Err(err);
        }
    };
    let staged_root = staging.join("tree").join(&volume_in_snapshot);
    let delete = mover.config.restore_delete;
    let (volume, marker_text) = (data_dir.clone(), id.to_hex());
    let deleted =
        blocking(move || swap_into_volume(&volume, &staged_root, &staging, delete, &marker_text))
            .await?;
    tracing::info!(
        snapshot = %id.short(),
        files = summary.files,
        bytes = summary.bytes_restored,
        deleted,
        "restored and synced"
    );
    Ok(RestoreReport {
        outcome: RestoreOutcome::Restored,
        snapshot_id: Some(id),
        snapshot_time: Some(snapshot.time),
        files: summary.files + summary.hardlinks,
        dirs: summary.dirs,
        bytes_restored: summary.bytes_restored,
        bytes_read: summary.bytes_read,
        deleted,
        skipped: summary.skipped.len() as u64,
        duration_seconds: clock.elapsed().as_secs_f64(),
    })
}

/// The repository restored from: Arca's own, or restic's (read only).
enum Source {
    Arca(Repository),
    Restic(ResticRepository),
}

impl Source {
    /// Opens the repository: as restic's if it is one (three small reads
    /// to tell), else as Arca's.
    async fn open(mover: &mut Mover<'_>) -> Result<Source> {
        let backend = Arc::clone(&mover.store()?.backend);
        let is_restic = arca_restic::is_restic_repository(backend.as_ref())
            .await
            .map_err(restic_error)?;
        if !is_restic {
            return Ok(Source::Arca(mover.repository().await?));
        }
        let password = mover.password().await?;
        let restic = ResticRepository::open(backend, password.as_bytes())
            .await
            .map_err(restic_error)?;
        tracing::info!("the repository is a restic repository: restoring from it read-only");
        Ok(Source::Restic(restic))
    }

    async fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        match self {
            Source::Arca(repository) => Ok(repository.list_snapshots().await?),
            Source::Restic(restic) => restic.arca_snapshots().await.map_err(restic_error),
        }
    }

    async fn restore(
        &self,
        id: &Id,
        snapshot: &Snapshot,
        options: &RestoreOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<RestoreSummary> {
        match self {
            Source::Arca(repository) => Ok(restore(repository, snapshot, options, progress).await?),
            Source::Restic(restic) => {
                let original = restic.load_snapshot(id).await.map_err(restic_error)?;
                arca_restic::restore::restore(restic, &original, options, progress)
                    .await
                    .map_err(restic_error)
            }
        }
    }
}

/// A restic error as the mover's, classed as the same failure of an Arca
/// repository would be (wrong password 12, damage 13, storage 11).
fn restic_error(error: arca_restic::Error) -> Error {
    Error::Repo(error.into_repo())
}

/// Where the volume is inside the snapshot's tree: its one path, relative.
/// A snapshot of several paths is not a volume's.
fn volume_path(id: &Id, snapshot: &Snapshot) -> Result<PathBuf> {
    let unrestorable = |reason: String| Error::Unrestorable {
        snapshot: id.short(),
        reason,
    };
    let [path] = snapshot.paths.as_slice() else {
        return Err(unrestorable(format!(
            "it records {} paths ({}); the agent restores snapshots of one volume",
            snapshot.paths.len(),
            snapshot.paths.join(", ")
        )));
    };
    Ok(Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect())
}

/// Runs blocking file system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|err| {
        Error::io(
            PathBuf::new(),
            std::io::Error::other(format!("a file system task stopped: {err}")),
        )
    })?
}

/// Removes what an earlier, interrupted run left in the staging directory.
fn move_staging_aside(staging: PathBuf) -> impl FnOnce() -> Result<()> + Send + 'static {
    move || {
        if fs::symlink_metadata(&staging).is_ok() {
            tracing::info!(path = %staging.display(), "removing an interrupted restore's staging directory");
            remove_tree(&staging)?;
        }
        Ok(())
    }
}

/// Moves every entry of `staged_root` into `volume`, replacing what is
/// there; without `delete`, entries of replaced directories that the
/// snapshot lacks are carried over into the new ones (restic's restore
/// without `--delete` keeps them too). With `delete`, top-level entries the
/// snapshot lacks are removed as well. Returns how many top-level entries
/// were removed that way.
fn swap_into_volume(
    volume: &Path,
    staged_root: &Path,
    staging: &Path,
    delete: bool,
    marker_text: &str,
) -> Result<u64> {
    let staged_meta =
        fs::symlink_metadata(staged_root).map_err(|err| Error::io(staged_root, err))?;
    if !staged_meta.is_dir() {
        return Err(Error::io(
            staged_root,
            std::io::Error::other("the snapshot's volume path is not a directory"),
        ));
    }
    // Everything restored is on disk before the volume changes.
    sync_file_system(volume)?;
    let marker = volume.join(RESTORE_MARKER);
    write_synced(&marker, marker_text)?;
    sync_dir(volume)?;

    let replaced = staging.join("replaced");
    fs::create_dir(&replaced).map_err(|err| Error::io(&replaced, err))?;
    let mut trash = Trash {
        dir: replaced,
        next: 0,
    };
    let staged_names = names(staged_root)?;
    for name in &staged_names {
        if KEEP.iter().any(|keep| name == *keep) {
            continue;
        }
        let (new, live) = (staged_root.join(name), volume.join(name));
        install(&new, &live, delete, &mut trash)?;
    }
    let mut deleted = 0;
    if delete {
        for name in names(volume)? {
            if !staged_names.contains(&name) && !KEEP.iter().any(|keep| name == *keep) {
                trash.take(&volume.join(&name))?;
                deleted += 1;
            }
        }
    }
    // The volume's root takes the snapshot's permissions where allowed
    // (a non-root mover may not own the mount point).
    let _ = fs::set_permissions(
        volume,
        fs::Permissions::from_mode(staged_meta.permissions().mode()),
    );
    sync_file_system(volume)?;
    fs::remove_file(&marker).map_err(|err| Error::io(&marker, err))?;
    sync_dir(volume)?;
    if let Err(err) = remove_tree(staging) {
        tracing::warn!(%err, "cannot remove the staging directory; the next restore will");
    }
    Ok(deleted)
}

/// Puts `new` at `live`, moving whatever is at `live` into the trash.
fn install(new: &Path, live: &Path, delete: bool, trash: &mut Trash) -> Result<()> {
    match fs::symlink_metadata(live) {
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io(live, err)),
        Ok(live_meta) => {
            if !delete && live_meta.is_dir() && is_dir(new)? {
                carry_over(live, new)?;
            }
            trash.take(live)?;
        }
    }
    fs::rename(new, live).map_err(|err| Error::io(live, err))
}

/// Moves the entries of the directory `old` that the directory `new` lacks
/// into `new`, recursing into directories both have.
fn carry_over(old: &Path, new: &Path) -> Result<()> {
    for name in names(old)? {
        let (from, to) = (old.join(&name), new.join(&name));
        match fs::symlink_metadata(&to) {
            Err(err) if err.kind() == ErrorKind::NotFound => {
                fs::rename(&from, &to).map_err(|err| Error::io(&to, err))?;
            }
            Err(err) => return Err(Error::io(&to, err)),
            Ok(meta) if meta.is_dir() && is_dir(&from)? => carry_over(&from, &to)?,
            Ok(_) => {} // the snapshot's version wins
        }
    }
    Ok(())
}

/// Where replaced entries go until the staging directory is removed.
struct Trash {
    dir: PathBuf,
    next: u64,
}

impl Trash {
    fn take(&mut self, path: &Path) -> Result<()> {
        let to = self.dir.join(self.next.to_string());
        self.next += 1;
        fs::rename(path, &to).map_err(|err| Error::io(path, err))
    }
}

fn is_dir(path: &Path) -> Result<bool> {
    Ok(fs::symlink_metadata(path)
        .map_err(|err| Error::io(path, err))?
        .is_dir())
}

fn names(dir: &Path) -> Result<BTreeSet<OsString>> {
    fs::read_dir(dir)
        .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
        .map_err(|err| Error::io(dir, err))
}

fn write_synced(path: &Path, text: &str) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|err| Error::io(path, err))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|err| Error::io(path, err))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| Error::io(dir, err))
}

/// Flushes the whole file system holding `path` (VolSync's `sync -f`).
fn sync_file_system(path: &Path) -> Result<()> {
    let dir = fs::File::open(path).map_err(|err| Error::io(path, err))?;
    nix::unistd::syncfs(&dir).map_err(|errno| Error::io(path, errno.into()))
}

/// `rm -rf`, also through directories a restore made read-only.
fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path).map_err(|err| Error::io(path, err))
        }
        Err(err) => Err(Error::io(path, err)),
    }
}

/// Gives the owner full access to every directory below `path` (best effort).
fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(
        path,
        fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
    }

    fn listing(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, fs::read_to_string(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    fn swap(delete: bool) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("volume");
        tree(
            &volume,
            &[
                ("lost+found/x", "fsck"),
                ("keep.txt", "old only"),
                ("both.txt", "old"),
                ("d/old-only", "old"),
                ("d/both", "old"),
                ("d/e/old-deep", "old"),
                ("file-becomes-dir", "old"),
            ],
        );
        let staging = volume.join(RESTORE_STAGING);
        let staged_root = staging.join("tree/data");
        tree(
            &staged_root,
            &[
                ("both.txt", "new"),
                ("new.txt", "new"),
                ("d/both", "new"),
                ("d/e/new-deep", "new"),
                ("file-becomes-dir/inner", "new"),
            ],
        );
        let deleted = swap_into_volume(&volume, &staged_root, &staging, delete, "id").unwrap();
        assert_eq!(deleted, u64::from(delete), "keep.txt only");
        assert!(!staging.exists() && !volume.join(RESTORE_MARKER).exists());
        listing(&volume)
    }

    #[test]
    fn swap_without_delete_keeps_what_the_snapshot_lacks() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            swap(false),
            pairs(&[
                ("both.txt", "new"),
                ("d/both", "new"),
                ("d/e/new-deep", "new"),
                ("d/e/old-deep", "old"),
                ("d/old-only", "old"),
                ("file-becomes-dir/inner", "new"),
                ("keep.txt", "old only"),
                ("lost+found/x", "fsck"),
                ("new.txt", "new"),
            ])
        );
        assert_eq!(
            swap(true),
            pairs(&[
                ("both.txt", "new"),
                ("d/both", "new"),
                ("d/e/new-deep", "new"),
                ("file-becomes-dir/inner", "new"),
                ("lost+found/x", "fsck"),
                ("new.txt", "new"),
            ])
        );
    }

    #[test]
    fn read_only_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(RESTORE_STAGING);
        tree(&staging, &[("tree/data/ro/file", "x")]);
        fs::set_permissions(
            staging.join("tree/data/ro"),
            fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        move_staging_aside(staging.clone())().unwrap();
        assert!(!staging.exists());
    }
}
