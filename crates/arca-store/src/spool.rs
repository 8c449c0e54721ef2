//! Spool files: an object written piece by piece on local disk, then handed
//! whole to [`crate::Backend::put_file`].
//!
//! A writer that produces an object gradually (the backup filling a 16 MiB
//! pack) would otherwise hold all of it in memory until the `put`. Written
//! into a spool file in the backend's [`crate::Backend::spool_dir`] (a local
//! repository's own directory), the object costs no memory, and storing it
//! is an fsync and a rename: nothing is copied again.
//!
//! Pieces that start at an aligned address and are whole blocks, appended at
//! an aligned offset, are written directly (see [`crate::direct`]); the first
//! piece that is not, and everything after it, goes through the page cache.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use nix::fcntl::OFlag;

use crate::direct::{self, DIRECT_IO_ALIGN};
use crate::local::TEMP_PREFIX;
use crate::{Error, Result};

/// A temporary file being written, removed when dropped unless a backend has
/// stored it (moved it into place).
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
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
        direct::read(&self.path, None).map_err(|err| match err {
            direct::ReadError::Io(err) => self.error(&err),
            direct::ReadError::OutOfRange { .. } => {
                unreachable!("a whole-file read has no range to be out of")
            }
        })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
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
        if !self.stored.load(Ordering::Acquire) {
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
            prop_assert_eq!(fs::read(spool.path()).unwrap(), expected);
        }
    }

    #[test]
    fn a_spool_file_is_removed_unless_stored() {
        let dir = tempfile::tempdir().unwrap();
        let spool = SpoolFile::create(&dir.path().join("made")).unwrap();
        let path = spool.path().to_owned();
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
        let path = spool.path().to_owned();
        fs::rename(&path, dir.path().join("moved")).unwrap();
        fs::write(&path, b"a new file of that name").unwrap();
        spool.mark_stored();
        drop(spool);
        assert!(path.exists(), "stored: left alone");
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
