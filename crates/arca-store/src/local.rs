//! The local filesystem backend (also what an NFS mount is).
//!
//! Written on `std::fs` rather than object_store's `LocalFileSystem` because
//! that one does not fsync: a crash after `put` returned could lose the object.
//! Here `put` writes a temporary file in the target directory, fsyncs it, renames
//! it into place and fsyncs the directory, so the object is either whole and
//! durable or absent.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::{Backend, Error, ObjectMeta, Result, SpoolDir, SpoolFile, direct};

/// Temporary files being written start with this; listings skip them.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Directories deeper than this are not listed (guards against symlink loops).
const MAX_LIST_DEPTH: usize = 16;

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root`; the directory is created on the first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    /// Maps an object path to a file path, refusing anything that could escape the root.
    fn file_path(&self, path: &str) -> Result<PathBuf> {
        let is_temp_name = path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with(TEMP_PREFIX));
        if !crate::is_valid_object_path(path) || is_temp_name {
            return Err(Error::invalid_object_path(
                self.root.display().to_string(),
                path,
            ));
        }
        Ok(self.root.join(path))
    }
}

impl std::fmt::Display for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "local:{}", self.root.display())
    }
}

/// Runs blocking filesystem work off the async worker threads.
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| Error::permanent(what, format!("filesystem task failed: {err}")))?
}

fn io_error(file: &Path, object: &str, err: &io::Error) -> Error {
    Error::from_io(&file.display().to_string(), object, err)
}

/// See [`LocalBackend`]'s `connections`.
const LOCAL_CONNECTIONS: usize = 2;

#[async_trait::async_trait]
impl Backend for LocalBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        let file = self.file_path(path)?;
        let object = path.to_owned();
        blocking(path, move || read_object(&file, &object, None)).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let file = self.file_path(path)?;
        let object = path.to_owned();
        blocking(path, move || read_object(&file, &object, Some(range))).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let file = self.file_path(path)?;
        let root = self.root.clone();
        let object = path.to_owned();
        blocking(path, move || write_atomically(&root, &file, &object, data)).await
    }

    /// Renames the spool file into place if it is in this repository's
    /// directory (where [`LocalBackend::spool_dir`] puts them); copies it otherwise.
    async fn put_file(&self, path: &str, spool: Arc<SpoolFile>) -> Result<()> {
        let file = self.file_path(path)?;
        let root = self.root.clone();
        let object = path.to_owned();
        let Some(name) = spool
            .name()
            .filter(|name| name.parent() == Some(root.as_path()))
        else {
            return crate::put_file_contents(self, path, spool).await;
        };
        let name = name.to_owned();
        blocking(path, move || {
            move_into_place(&root, &name, spool.file(), spool.len(), &file)
                .map_err(|err| io_error(&file, &object, &err))?;
            spool.mark_stored();
            Ok(())
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let file = self.file_path(path)?;
        let object = path.to_owned();
        blocking(path, move || match fs::remove_file(&file) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(io_error(&file, &object, &err))
            }
            _ => Ok(()),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking("list", move || list_prefix(&root, &prefix)).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let file = self.file_path(path)?;
        let object = path.to_owned();
        blocking(path, move || match fs::metadata(&file) {
            Ok(meta) if meta.is_file() => Ok(ObjectMeta {
                path: object,
                size: meta.len(),
            }),
            Ok(_) => Err(Error::NotFound { path: object }),
            Err(err) => Err(io_error(&file, &object, &err)),
        })
        .await
    }

    /// Two, as restic's local backend: one disk gains little from more
    /// writes at once (a first backup with two pack uploads at a time took
    /// the same time as with one; docs/PERFORMANCE.md).
    fn connections(&self) -> Option<usize> {
        Some(LOCAL_CONNECTIONS)
    }

    /// The repository's root: a spool file there is stored by a rename.
    fn spool_dir(&self) -> Option<SpoolDir> {
        Some(SpoolDir::InPlace(self.root.clone()))
    }
}

/// Reads `range` of the object (all of it for `None`); large reads are direct
/// (see [`crate::direct`]).
fn read_object(file: &Path, object: &str, range: Option<Range<u64>>) -> Result<Bytes> {
    direct::read(file, range).map_err(|err| match err {
        direct::ReadError::Io(err) => io_error(file, object, &err),
        direct::ReadError::OutOfRange { range, size } => Error::permanent(
            file.display().to_string(),
            format!(
                "range {}..{} is outside the object (size {size})",
                range.start, range.end
            ),
        ),
    })
}

/// Temp file, fsync, size check, rename, directory fsync. Directories are created
/// on demand (so a fresh shard costs nothing until it is used).
///
/// Large objects are written directly (see [`crate::direct`]). `data` is
/// dropped as soon as it is written, before the fsync:
/// a caller that recycles its buffers (the backup's pack buffers) gets them
/// back while the disk is still busy.
fn write_atomically(root: &Path, file: &Path, object: &str, data: Bytes) -> Result<()> {
    let dir = file.parent().unwrap_or(root);
    let temp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
    let handle = match create_new(&temp) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            create_dirs(root, dir).map_err(|err| io_error(dir, object, &err))?;
            create_new(&temp)
        }
        other => other,
    }
    .map_err(|err| io_error(&temp, object, &err))?;
    let len = data.len() as u64;
    let written = direct::write_new(&handle, &data).and_then(|()| {
        drop(data);
        move_into_place(root, &temp, &handle, len, file)
    });
    if let Err(err) = written {
        // Best effort: a leftover temp file is ignored by `list` and harmless.
        let _ = fs::remove_file(&temp);
        return Err(io_error(file, object, &err));
    }
    Ok(())
}

/// Makes the written temp file `handle` at `temp` durable and renames it to
/// `file`: fsync, size check (`len`), rename (creating `file`'s directories
/// if missing), fsync of `file`'s directory.
fn move_into_place(
    root: &Path,
    temp: &Path,
    handle: &File,
    len: u64,
    file: &Path,
) -> io::Result<()> {
    handle.sync_all()?;
    let size = handle.metadata()?.len();
    if size != len {
        return Err(io::Error::other(format!(
            "wrote {len} bytes but the file has {size}"
        )));
    }
    let dir = file.parent().unwrap_or(root);
    match fs::rename(temp, file) {
        Err(err) if err.kind() == io::ErrorKind::NotFound && temp.exists() => {
            create_dirs(root, dir)?;
            fs::rename(temp, file)
        }
        other => other,
    }?;
    sync_dir(dir)
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Creates `dir` and makes the new directory entries durable by syncing the parent
/// of every directory from `dir` up to and including the root. Runs once per new
/// shard directory, so the few extra fsyncs don't matter.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut child = dir;
    while let Some(parent) = child.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        sync_dir(parent)?;
        if child == root {
            break;
        }
        child = parent;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        // Some filesystems (certain FUSE and network mounts) cannot fsync a directory;
        // the rename is then as durable as that filesystem makes it (restic does the same).
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn list_prefix(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    // Walk only the deepest directory the prefix names completely.
    let start = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut found = Vec::new();
    let mut pending = vec![(root.join(start), start.to_owned())];
    while let Some((dir, rel)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io_error(&dir, prefix, &err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| io_error(&dir, prefix, &err))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not an object Arca wrote
            };
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // Follow symlinks: a shard directory may be linked to another disk.
            let meta = match fs::metadata(entry.path()) {
                Ok(meta) => meta,
                // Deleted while listing (or a dangling link): it is simply not there.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_error(&entry.path(), prefix, &err)),
            };
            if meta.is_dir() {
                let wanted =
                    rel_path.starts_with(prefix) || prefix.starts_with(&format!("{rel_path}/"));
                // The depth bound stops symlink loops; repositories are 3 levels deep.
                if wanted && rel_path.matches('/').count() < MAX_LIST_DEPTH {
                    pending.push((entry.path(), rel_path));
                }
            } else if meta.is_file() && rel_path.starts_with(prefix) {
                let size = meta.len();
                found.push(ObjectMeta {
                    path: rel_path,
                    size,
                });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_file_in_the_repository_is_moved_not_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        let inode = |path: &Path| fs::metadata(path).unwrap().ino();
        let mut spool = backend.spool_dir().unwrap().create().unwrap();
        spool.append(b"pack bytes").unwrap();
        let spooled_inode = inode(spool.name().unwrap());
        backend
            .put_file("data/cd/pack", Arc::new(spool))
            .await
            .unwrap();
        let stored = dir.path().join("data/cd/pack");
        assert_eq!(inode(&stored), spooled_inode, "renamed into place");
        assert_eq!(fs::read(&stored).unwrap(), b"pack bytes");

        // One made elsewhere is copied, and the original removed with it.
        let elsewhere = tempfile::tempdir().unwrap();
        let mut spool = SpoolFile::create(elsewhere.path()).unwrap();
        spool.append(b"other").unwrap();
        backend
            .put_file("data/cd/other", Arc::new(spool))
            .await
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("data/cd/other")).unwrap(),
            b"other"
        );
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn temp_files_are_invisible_and_unaddressable() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        backend
            .put("data/ab/x", Bytes::from_static(b"x"))
            .await
            .unwrap();
        fs::write(dir.path().join("data/ab/.tmp-leftover"), b"partial").unwrap();
        let listed = backend.list("data/").await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectMeta {
                path: "data/ab/x".into(),
                size: 1
            }]
        );
        assert!(backend.get("data/ab/.tmp-leftover").await.is_err());
    }

    #[tokio::test]
    async fn listing_follows_symlinked_directories_without_looping() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("other-disk");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("pack"), b"1234").unwrap();
        fs::create_dir_all(dir.path().join("repo/data")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("repo/data/ab")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("repo"), dir.path().join("repo/loop")).unwrap();
        let backend = LocalBackend::new(dir.path().join("repo"));
        let listed = backend.list("data/").await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectMeta {
                path: "data/ab/pack".into(),
                size: 4
            }]
        );
        // The loop is cut at the depth bound instead of running forever.
        let all = backend.list("").await.unwrap();
        assert!(all.iter().any(|m| m.path == "data/ab/pack"));
        assert!(
            all.iter()
                .all(|m| m.path.matches('/').count() <= MAX_LIST_DEPTH + 1)
        );
    }

    #[tokio::test]
    async fn paths_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("repo"));
        for path in ["../outside", "/etc/passwd", "a//b", "a/./b", "", "data/"] {
            let err = backend
                .put(path, Bytes::from_static(b"x"))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("invalid object path"),
                "{path}: {err}"
            );
        }
        assert!(!dir.path().join("outside").exists());
    }

    #[tokio::test]
    async fn put_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        for i in 0..5 {
            backend
                .put("keys/k", Bytes::from(vec![i; 100]))
                .await
                .unwrap();
        }
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k")]);
        assert_eq!(backend.get("keys/k").await.unwrap(), vec![4u8; 100]);
    }

    #[tokio::test]
    async fn permission_denied_is_permanent_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path());
        backend
            .put("data/f", Bytes::from_static(b"x"))
            .await
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o500)).unwrap();
        let result = backend.put("data/g", Bytes::from_static(b"y")).await;
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o700)).unwrap();
        if nix_is_root() {
            // root ignores directory permissions; nothing to assert about denial.
            result.unwrap();
            return;
        }
        let err = result.unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("permission denied"), "{err}");
        assert!(err.to_string().contains("data"), "{err}");
    }

    fn nix_is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
    }

    #[test]
    fn disk_full_is_permanent_with_a_clear_message() {
        let err = Error::from_io(
            "/srv/repo/data/ab/x",
            "data/ab/x",
            &io::Error::from_raw_os_error(28), // ENOSPC
        );
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("no space left on device at /srv/repo/data/ab/x"),
            "{err}"
        );
    }
}
