//! Direct I/O (`O_DIRECT`) for the local backend's large objects.
//!
//! Through the page cache, every byte of a pack is copied by the kernel into
//! or out of a cache page that was just allocated for it; on the benchmark
//! machine (docs/PERFORMANCE.md) those copies ran at 0.7 GB/s and were the
//! largest cost after compression. With direct I/O the disk transfers
//! straight from or into the caller's buffer, and a backup or check does not
//! evict the page cache of the applications beside it.
//!
//! Direct I/O needs the buffer's address, the length and the file offset to
//! be multiples of the device's block size ([`DIRECT_IO_ALIGN`] covers every
//! common one). Writes take the aligned part of a buffer that starts aligned
//! (pack buffers are allocated that way; see `arca-repo`'s `PackBuffers`) and
//! write the tail through the cache; reads cover the requested range with an
//! aligned one in an aligned buffer (reused: see [`READ_BUFFERS`]). Where a
//! file system refuses direct I/O (`EINVAL` when opening or on a transfer),
//! the same call goes through the page cache instead, so the result never
//! depends on it. Durability is unchanged: `put` still fsyncs.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Alignment of direct transfers: address, length and file offset.
pub const DIRECT_IO_ALIGN: usize = 4096;

/// Objects smaller than this go through the page cache: the copy is cheap
/// and the metadata objects they are (index files, snapshots) are read again
/// soon.
const DIRECT_MIN_LEN: u64 = 256 * 1024;

/// Buffers of direct reads kept for the next ones, at most: as many as a
/// restore on two cores reads at once (its four pack workers; a check reads
/// three). A kept buffer is memory malloc cannot hand to anything else, so
/// no more are kept than the busiest pack reader needs: the restore of a
/// restic repository (eight reads of up to 8 MiB) peaked at 100–109 MiB
/// with buffers kept (four or eight) against 80–109 MiB without.
const KEPT_READ_BUFFERS: usize = 4;
/// Read buffers larger than this are not kept (packs are 16–24 MiB).
const KEPT_READ_BUFFER_MAX: usize = 48 << 20;

/// The buffers of dropped direct reads, kept for the next ones.
///
/// A check, restore, repack or copy reads pack after pack, 2–24 MiB at a
/// time, on whichever blocking thread is free. Freed, such a buffer stays
/// resident in the malloc arena of the thread that read it (past the first
/// one, glibc's mmap threshold has risen above their size), and the next
/// read, on another thread's arena, faults in fresh memory: `check
/// --read-data` of a 512 MiB tree peaked at 74–95 MiB from run to run,
/// although what it holds at once stays below Argon2id's 74 MiB. A fixed
/// mmap threshold gives such memory back, but faults every buffer in again
/// (60 % more page faults, and slower). Handing a finished buffer to the
/// next read keeps what is resident at what is in flight, with no fresh pages.
static READ_BUFFERS: ReadBuffers = ReadBuffers {
    free: std::sync::Mutex::new(Vec::new()),
};

/// Frees the read buffers kept for reuse (up to `KEPT_READ_BUFFERS` of up to 48 MiB): for a
/// caller whose reads are over for a while, such as a restore once the files' contents are
/// written, so that memory does not stay held through the phases after it. Buffers still in use
/// are kept when they come back, as always.
pub fn release_read_buffers() {
    READ_BUFFERS.release();
}

/// Kept read buffers (see [`READ_BUFFERS`]).
#[derive(Debug, Default)]
struct ReadBuffers {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ReadBuffers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A buffer of at least `len` initialised bytes: the smallest kept one
    /// that is large enough, else the largest kept one grown, else a new one.
    /// Its bytes are stale, not zeroed: a reader overwrites what it hands out.
    fn take(&'static self, len: usize) -> ReadBuffer {
        let mut free = self.lock();
        let fitting = (free.iter().enumerate())
            .filter(|(_, buffer)| buffer.len() >= len)
            .min_by_key(|(_, buffer)| buffer.len())
            .or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, buffer)| buffer.len())
            })
            .map(|(at, _)| at);
        let mut buffer = fitting.map(|at| free.swap_remove(at)).unwrap_or_default();
        drop(free);
        if buffer.len() < len {
            // Exactly: doubling would reserve up to twice a pack.
            buffer.reserve_exact(len - buffer.len());
            buffer.resize(len, 0);
        }
        ReadBuffer {
            bytes: buffer,
            pool: self,
        }
    }

    /// Frees every kept buffer.
    fn release(&self) {
        // Taken out first: the buffers are freed after the lock is let go.
        let kept = std::mem::take(&mut *self.lock());
        drop(kept);
    }

    /// Keeps `buffer` unless it is too large or enough are kept.
    fn keep(&self, buffer: Vec<u8>) {
        if buffer.len() > KEPT_READ_BUFFER_MAX {
            return;
        }
        let mut free = self.lock();
        if free.len() < KEPT_READ_BUFFERS {
            free.push(buffer);
        }
    }
}

/// A direct read's buffer, given back to its pool when the last copy of
/// the bytes read into it is dropped.
struct ReadBuffer {
    bytes: Vec<u8>,
    pool: &'static ReadBuffers,
}

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        self.pool.keep(std::mem::take(&mut self.bytes));
    }
}

/// Whether `err` is the file system refusing direct I/O.
pub(crate) fn is_refused(err: &io::Error) -> bool {
    err.raw_os_error() == Some(Errno::EINVAL as i32)
}

/// Turns `O_DIRECT` on or off for an open file (a reader falling back to the
/// page cache after the file system refused a direct transfer uses this too).
pub fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// A zeroed buffer of `len` bytes starting at an aligned address: the
/// buffer is `vec[start..start + len]`.
pub(crate) fn aligned_buffer(len: usize) -> (Vec<u8>, usize) {
    let vec = vec![0; len + DIRECT_IO_ALIGN];
    let start = vec.as_ptr().align_offset(DIRECT_IO_ALIGN);
    (vec, start)
}

/// Writes all of `data` at offset 0 of the new, empty `file`: directly if
/// it is large and starts at an aligned address, through the cache
/// otherwise (and for the unaligned tail).
pub(crate) fn write_new(file: &File, data: &[u8]) -> io::Result<()> {
    let aligned_len = data.len() / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN;
    let direct = data.len() as u64 >= DIRECT_MIN_LEN
        && data.as_ptr().align_offset(DIRECT_IO_ALIGN) == 0
        && set_direct(file, true).is_ok();
    if direct {
        let written = file.write_all_at(&data[..aligned_len], 0);
        set_direct(file, false)?;
        match written {
            Ok(()) => return file.write_all_at(&data[aligned_len..], aligned_len as u64),
            // Written again from the start through the cache.
            Err(err) if is_refused(&err) => {}
            Err(err) => return Err(err),
        }
    }
    file.write_all_at(data, 0)
}

/// Opens `path` for reading, directly if `direct` and the file system allows.
/// Returns the file and whether it is open for direct reads.
fn open_for_read(path: &Path, direct: bool) -> io::Result<(File, bool)> {
    if direct {
        match File::options()
            .read(true)
            .custom_flags(OFlag::O_DIRECT.bits())
            .open(path)
        {
            Ok(file) => return Ok((file, true)),
            Err(err) if is_refused(&err) => {}
            Err(err) => return Err(err),
        }
    }
    Ok((File::open(path)?, false))
}

/// What [`read`] found wrong with the requested range.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// `range` ends past the file's `size` (or is reversed).
    OutOfRange {
        range: Range<u64>,
        size: u64,
    },
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        ReadError::Io(err)
    }
}

/// Reads `range` of the file at `path` (all of it for `None`).
pub(crate) fn read(path: &Path, range: Option<Range<u64>>) -> Result<Bytes, ReadError> {
    // The size decides before the open whether to read directly only for
    // ranges; a whole object is opened directly and read through the cache
    // if it turns out small.
    let wanted = range
        .as_ref()
        .map_or(DIRECT_MIN_LEN, |r| r.end.saturating_sub(r.start));
    let (file, direct) = open_for_read(path, wanted >= DIRECT_MIN_LEN)?;
    read_open(&file, direct, range)
}

/// Reads `range` of the open `file` (all of it for `None`), `direct` if it is
/// open for direct reads: large ranges directly into an aligned buffer, the
/// rest (and all of it where the file system refuses) through the cache,
/// turning `O_DIRECT` off.
pub(crate) fn read_open(
    file: &File,
    direct: bool,
    range: Option<Range<u64>>,
) -> Result<Bytes, ReadError> {
    let size = file.metadata()?.len();
    let range = range.unwrap_or(0..size);
    if range.start > range.end || range.end > size {
        return Err(ReadError::OutOfRange { range, size });
    }
    if !direct || range.end - range.start < DIRECT_MIN_LEN {
        if direct {
            set_direct(file, false)?;
        }
        let mut buf = vec![0; (range.end - range.start) as usize];
        file.read_exact_at(&mut buf, range.start)?;
        return Ok(Bytes::from(buf));
    }
    let align = DIRECT_IO_ALIGN as u64;
    let first = range.start / align * align;
    let last = range.end.next_multiple_of(align);
    let mut buffer = READ_BUFFERS.take((last - first) as usize + DIRECT_IO_ALIGN);
    let vec = &mut buffer.bytes;
    let start = vec.as_ptr().align_offset(DIRECT_IO_ALIGN);
    // Bytes wanted, counted from `first`; the aligned reads may end past
    // them (never past the end of the file).
    let wanted = (range.end - first) as usize;
    let mut done = 0;
    while done < wanted {
        let window = &mut vec[start + done..start + (last - first) as usize];
        match file.read_at(window, first + done as u64) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => done += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Refused (or an offset left unaligned by a short read): the
            // rest through the cache.
            Err(err) if is_refused(&err) => {
                set_direct(file, false)?;
                file.read_exact_at(&mut vec[start + done..start + wanted], first + done as u64)?;
                done = wanted;
            }
            Err(err) => return Err(err.into()),
        }
    }
    let skip = (range.start - first) as usize;
    Ok(Bytes::from_owner(buffer).slice(start + skip..start + wanted))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// An aligned buffer holding `data`, as pack buffers are.
    fn aligned_copy(data: &[u8]) -> Bytes {
        let (mut vec, start) = aligned_buffer(data.len());
        vec[start..start + data.len()].copy_from_slice(data);
        Bytes::from(vec).slice(start..start + data.len())
    }

    #[test]
    fn aligned_buffers_start_aligned() {
        for len in [0, 1, 4096, 1 << 20] {
            let (vec, start) = aligned_buffer(len);
            assert_eq!(vec[start..].as_ptr().align_offset(DIRECT_IO_ALIGN), 0);
            assert!(vec.len() - start >= len);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the length, alignment of the source and range asked
        /// for, what is read back is exactly what was written.
        #[test]
        fn written_and_read_back_byte_for_byte(
            len in 0usize..1_200_000,
            aligned in any::<bool>(),
            cut in (0.0f64..1.0, 0.0f64..1.0),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("object");
            let data = pattern(len);
            let source = if aligned { aligned_copy(&data) } else { Bytes::from(data.clone()) };
            let file = File::options().write(true).create_new(true).open(&path).unwrap();
            write_new(&file, &source).unwrap();
            drop(file);
            prop_assert_eq!(std::fs::read(&path).unwrap(), data.clone());
            prop_assert_eq!(read(&path, None).unwrap(), data.clone());
            let (a, b) = ((cut.0 * len as f64) as u64, (cut.1 * len as f64) as u64);
            let range = a.min(b)..a.max(b);
            let expected = &data[range.start as usize..range.end as usize];
            prop_assert_eq!(read(&path, Some(range)).unwrap(), expected);
        }
    }

    #[test]
    fn read_buffers_are_reused_smallest_fitting_first_and_kept_bounded() {
        let pool: &'static ReadBuffers = Box::leak(Box::default());
        let (small, large) = (pool.take(1000), pool.take(5000));
        let (small_at, large_at) = (small.bytes.as_ptr(), large.bytes.as_ptr());
        drop((small, large));
        // Fits both: the smaller one; then only the larger one fits.
        let first = pool.take(900);
        assert_eq!(first.bytes.as_ptr(), small_at);
        let second = pool.take(2000);
        assert_eq!(second.bytes.as_ptr(), large_at);
        assert!(second.bytes.len() >= 2000);
        drop((first, second));
        // Nothing fits: the largest kept one grows rather than a new one
        // joining the pool.
        let grown = pool.take(9000);
        assert_eq!(grown.bytes.len(), 9000);
        assert_eq!(pool.lock().len(), 1);
        drop(grown);

        let many: Vec<ReadBuffer> = (0..KEPT_READ_BUFFERS + 3).map(|_| pool.take(64)).collect();
        drop(many);
        assert_eq!(pool.lock().len(), KEPT_READ_BUFFERS);
        // Released: nothing kept, and a buffer in use still comes back.
        let in_use = pool.take(64);
        pool.release();
        assert!(pool.lock().is_empty());
        drop(in_use);
        assert_eq!(pool.lock().len(), 1);
        pool.release();
        drop(pool.take(KEPT_READ_BUFFER_MAX + 1));
        assert!(pool.lock().is_empty(), "too large to keep");
    }

    #[test]
    fn ranges_past_the_end_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        std::fs::write(&path, pattern(1 << 20)).unwrap();
        let err = read(&path, Some(1000..(1 << 20) + 1)).unwrap_err();
        assert!(
            matches!(err, ReadError::OutOfRange { size, .. } if size == 1 << 20),
            "{err:?}"
        );
    }
}
