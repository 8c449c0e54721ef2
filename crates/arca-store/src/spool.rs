//! Spool files: an object written piece by piece on local disk, then handed
//! whole to [`crate::Backend::put_file`].
//!
//! A writer that produces an object gradually (the backup filling a 16 MiB
//! pack) would otherwise hold all of it in memory until the `put`. Written
//! into a spool file where the backend's [`crate::Backend::spool_dir`] says,
//! the object costs no memory. In a local repository's own directory
//! ([`SpoolDir::InPlace`]) storing it is an fsync and a rename: nothing is
//! copied again. For an object store ([`SpoolDir::Temporary`]) it is an
//! unnamed file in a local temporary directory that the backend uploads
//! from, a part at a time; having no name, it disappears when closed, also
//! when the process is killed, so nothing stale is ever left to clean up.
//!
//! Pieces that start at an aligned address and are whole blocks, appended at
//! an aligned offset, are written directly (see [`crate::direct`]); the first
//! piece that is not, and everything after it, goes through the page cache.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use nix::fcntl::OFlag;

use crate::direct::{self, DIRECT_IO_ALIGN};
use crate::local::TEMP_PREFIX;
use crate::{Error, Result};

/// Where a backend wants the objects a writer builds gradually
/// ([`crate::Backend::spool_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolDir {
    /// The repository's own directory: spool files are named there (so
    /// listings skip them) and stored by a rename.
    InPlace(PathBuf),
    /// A local temporary directory (the system's, `TMPDIR`, unless
    /// configured): spool files are unnamed and uploaded from.
    Temporary(PathBuf),
}

impl SpoolDir {
    /// A new, empty spool file of the kind this directory takes.
    pub fn create(&self) -> Result<SpoolFile> {
        match self {
            SpoolDir::InPlace(dir) => SpoolFile::create(dir),
            SpoolDir::Temporary(dir) => SpoolFile::create_unnamed(dir),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        match self {
            SpoolDir::InPlace(dir) | SpoolDir::Temporary(dir) => dir,
        }
    }
}

/// A temporary file being written, removed when dropped unless a backend has
/// stored it (moved it into place).
#[derive(Debug)]
pub struct SpoolFile {
    /// The file's path, or for an unnamed file its directory (for messages).
    path: PathBuf,
    /// Whether the file has a name at `path` (else it is unnamed and
    /// vanishes with its last descriptor).
    named: bool,
    /// Open for reading and writing.
    file: File,
    len: u64,
    /// Whether the file is (still) open for direct writes.
    direct: bool,
    /// Set by a backend that moved the file into the repository.
    stored: AtomicBool,
}

impl SpoolFile {
    /// A new, empty spool file in `dir` (created if missing), named so that
    /// listings of a local repository skip it.
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(format!("{TEMP_PREFIX}spool-{:016x}", rand::random::<u64>()));
        let error = |err: &io::Error| spool_error(&path, err);
        fs::create_dir_all(dir).map_err(|err| error(&err))?;
        let open = |flags: OFlag| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(flags.bits())
                .open(&path)
        };
        let (file, direct) = match open(OFlag::O_DIRECT) {
            Ok(file) => (file, true),
            Err(err) if direct::is_refused(&err) => {
                (open(OFlag::empty()).map_err(|e| error(&e))?, false)
            }
            Err(err) => return Err(error(&err)),
        };
        Ok(SpoolFile {
            path,
            named: true,
            file,
            len: 0,
            direct,
            stored: AtomicBool::new(false),
        })
    }

    /// A new, empty spool file without a name in `dir` (created if missing):
    /// `O_TMPFILE` where the file system has it, else created and unlinked at
    /// once. Nothing of it outlives the process, however that ends.
    pub fn create_unnamed(dir: &Path) -> Result<Self> {
        let error = |err: &io::Error| spool_error(dir, err);
        fs::create_dir_all(dir).map_err(|err| error(&err))?;
        let file = tempfile::tempfile_in(dir).map_err(|err| error(&err))?;
        let direct = match direct::set_direct(&file, true) {
            Ok(()) => true,
            Err(err) if direct::is_refused(&err) => false,
            Err(err) => return Err(error(&err)),
        };
        Ok(SpoolFile {
            path: dir.to_owned(),
            named: false,
            file,
            len: 0,
            direct,
            stored: AtomicBool::new(false),
        })
    }

    /// Appends `data` at the end of the file.
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        let aligned = data.as_ptr().align_offset(DIRECT_IO_ALIGN) == 0
            && data.len().is_multiple_of(DIRECT_IO_ALIGN)
            && self.len.is_multiple_of(DIRECT_IO_ALIGN as u64);
        if self.direct && !aligned {
            self.go_through_cache()?;
        }
        let written = match self.file.write_all_at(data, self.len) {
            Err(err) if self.direct && direct::is_refused(&err) => {
                self.go_through_cache()?;
                self.file.write_all_at(data, self.len)
            }
            other => other,
        };
        written.map_err(|err| self.error(&err))?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn go_through_cache(&mut self) -> Result<()> {
        direct::set_direct(&self.file, false).map_err(|err| self.error(&err))?;
        self.direct = false;
        Ok(())
    }

    fn error(&self, err: &io::Error) -> Error {
        spool_error(&self.path, err)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole contents, read back (for backends that upload from memory).
    pub fn read_all(&self) -> Result<Bytes> {
        self.read_range(0..self.len)
    }

    /// `range` of the contents, read back: directly (bypassing the page
    /// cache, where the pieces were written directly too) if it is large.
    pub fn read_range(&self, range: Range<u64>) -> Result<Bytes> {
        // Direct for the read whatever the appends left (the last piece of a
        // pack is unaligned), then back as they left it.
        let direct = self.direct || direct::set_direct(&self.file, true).is_ok();
        let read = direct::read_open(&self.file, direct, Some(range));
        direct::set_direct(&self.file, self.direct).map_err(|err| self.error(&err))?;
        read.map_err(|err| match err {
            direct::ReadError::Io(err) => self.error(&err),
            direct::ReadError::OutOfRange { range, size } => Error::permanent(
                self.path.display().to_string(),
                format!(
                    "spool file range {}..{} is outside its {size} bytes",
                    range.start, range.end
                ),
            ),
        })
    }

    /// The file's path, if it has a name.
    pub(crate) fn name(&self) -> Option<&Path> {
        self.named.then_some(self.path.as_path())
    }

    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Records that a backend moved the file into place: nothing to remove.
    pub(crate) fn mark_stored(&self) {
        self.stored.store(true, Ordering::Release);
    }
}

fn spool_error(path: &Path, err: &io::Error) -> Error {
    Error::from_io(&path.display().to_string(), "spool file", err)
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if self.named && !self.stored.load(Ordering::Acquire) {
            // Best effort: a leftover is skipped by listings and harmless.
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + seed + i / 4093) as u8).collect()
    }

    /// A copy of `data` at an aligned address, as a pack buffer holds it.
    fn aligned_copy(data: &[u8]) -> (Vec<u8>, usize) {
        let (mut vec, start) = direct::aligned_buffer(data.len());
        vec[start..start + data.len()].copy_from_slice(data);
        (vec, start)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// However the pieces are sized and aligned, the file holds exactly
        /// their concatenation.
        #[test]
        fn the_file_is_the_pieces_in_order(
            pieces in prop::collection::vec((0usize..300_000, any::<bool>(), any::<bool>()), 0..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = SpoolFile::create(dir.path()).unwrap();
            let mut expected = Vec::new();
            for (n, (len, aligned, whole_blocks)) in pieces.into_iter().enumerate() {
                let len = if whole_blocks { len / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN } else { len };
                let data = pattern(len, n);
                if aligned {
                    let (vec, start) = aligned_copy(&data);
                    spool.append(&vec[start..start + len]).unwrap();
                } else {
                    spool.append(&data).unwrap();
                }
                expected.extend_from_slice(&data);
            }
            prop_assert_eq!(spool.len(), expected.len() as u64);
            prop_assert_eq!(&spool.read_all().unwrap()[..], &expected[..]);
            prop_assert_eq!(fs::read(spool.name().unwrap()).unwrap(), expected);
        }
    }

    #[test]
    fn a_spool_file_is_removed_unless_stored() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolFile::create(&dir.path().join("made")).unwrap();
        let path = spool.name().unwrap().to_owned();
        assert!(path.exists());
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(TEMP_PREFIX),
            "listings skip it"
        );
        drop(spool);
        assert!(!path.exists(), "dropped unstored: removed");

        let spool = SpoolFile::create(dir.path()).unwrap();
        let path = spool.name().unwrap().to_owned();
        fs::rename(&path, dir.path().join("moved")).unwrap();
        fs::write(&path, b"a new file of that name").unwrap();
        spool.mark_stored();
        drop(spool);
        assert!(path.exists(), "stored: left alone");
    }

    /// An unnamed spool file never shows in its directory, and reads back
    /// what was appended, in any range, also after an unaligned piece.
    #[test]
    fn an_unnamed_spool_file_reads_back_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = SpoolDir::Temporary(dir.path().to_owned()).create().unwrap();
        assert_eq!(spool.name(), None);
        let (first, second) = (pattern(1 << 20, 1), pattern(300_001, 2));
        let (vec, start) = aligned_copy(&first);
        spool.append(&vec[start..start + first.len()]).unwrap();
        spool.append(&second).unwrap();
        let expected = [first, second].concat();
        assert_eq!(&spool.read_all().unwrap()[..], &expected[..]);
        let len = expected.len() as u64;
        for range in [0..4096, 5..700_000, 4096..len, len - 1..len, len..len] {
            let (from, to) = (range.start as usize, range.end as usize);
            assert_eq!(&spool.read_range(range).unwrap()[..], &expected[from..to]);
        }
        assert!(spool.read_range(0..len + 1).is_err(), "past the end");
        spool.append(b"more").unwrap();
        assert_eq!(spool.len(), len + 4);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_spool_file_where_none_can_be_made_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        fs::write(&not_a_dir, b"x").unwrap();
        let err = SpoolFile::create(&not_a_dir).unwrap_err();
        assert!(err.to_string().contains("spool"), "{err}");
    }
}
