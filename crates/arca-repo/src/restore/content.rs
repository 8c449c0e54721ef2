//! Writing file content, pack by pack.
//!
//! Each pack is read with one ranged read per run of needed blobs (runs closer
//! than [`MAX_GAP`] are merged, so a pack that is mostly needed is read in one
//! go), at most [`MAX_RANGE`] bytes at a time. A bounded number of packs is in
//! flight, which bounds memory to about [`concurrent_reads`] × [`MAX_RANGE`]. Decoding and
//! writing happen on the blocking pool.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::plan::{PackJob, Plan, Target};
use crate::blob::{BlobType, decode_blob};
use crate::progress::Progress;
use crate::{Id, Repository};

/// Unneeded bytes between two needed blobs that are still read rather than
/// starting a second request: a request costs more than this much transfer.
pub const MAX_GAP: u64 = 1024 * 1024;
/// Largest single ranged read (unless one blob is larger). The reads in
/// flight are most of a restore's memory: at 16 MiB, four of them put a
/// restore's peak above restic's; at 8 MiB a whole pack is still two reads.
pub const MAX_RANGE: u64 = 8 * 1024 * 1024;

/// Files one range writer keeps open at most (blobs arrive in pack order, so
/// a small cache catches the common case of consecutive blobs of one file).
const MAX_OPEN_FILES: usize = 32;

/// Where content goes: the plan's files below `target`, except those that
/// already failed.
#[derive(Debug)]
pub(crate) struct Destination {
    pub(crate) plan: Arc<Plan>,
    pub(crate) target: PathBuf,
    /// Per entry of `Plan::files`: whether to write it.
    pub(crate) wanted: Vec<bool>,
}

impl Destination {
    fn path(&self, file: usize) -> PathBuf {
        self.plan.file_path_under(&self.target, file)
    }

    /// The places blob `blob` goes to in files that are written.
    fn wanted_targets(&self, blob: usize) -> impl Iterator<Item = &Target> {
        self.plan
            .blob_targets(blob)
            .iter()
            .filter(|target| self.wanted[target.file as usize])
    }
}

/// What writing content did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) bytes_restored: u64,
    pub(crate) bytes_read: u64,
    pub(crate) packs_read: u64,
    /// `(index into Plan::files, reason)`.
    pub(crate) failures: Vec<(usize, String)>,
}

/// Ranged reads in flight (one per pack being restored): enough to keep a
/// remote store busy, few enough to bound memory to about this many times
/// [`MAX_RANGE`].
pub fn concurrent_reads() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).clamp(4, 16))
}

/// Reads every pack in `jobs` and writes its blobs into the wanted files of
/// `dest` (which exist with their final length).
pub(crate) async fn write_packs(
    repo: &Repository,
    jobs: Vec<PackJob>,
    dest: Arc<Destination>,
    progress: Arc<dyn Progress>,
) -> Written {
    let results: Vec<Written> = futures::stream::iter(jobs)
        .map(|job| restore_pack(repo.clone(), job, dest.clone(), progress.clone()))
        .buffer_unordered(concurrent_reads())
        .collect()
        .await;
    let mut total = Written::default();
    for written in results {
        total.bytes_restored += written.bytes_restored;
        total.bytes_read += written.bytes_read;
        total.packs_read += written.packs_read;
        total.failures.extend(written.failures);
    }
    total
}

async fn restore_pack(
    repo: Repository,
    job: PackJob,
    dest: Arc<Destination>,
    progress: Arc<dyn Progress>,
) -> Written {
    let path = Repository::pack_path(&job.pack);
    let mut written = Written {
        packs_read: 1,
        ..Written::default()
    };
    for (range, blobs) in split_into_ranges(&dest.plan, job.blobs) {
        let expected = range.end - range.start;
        let bytes = match repo.backend().get_range(&path, range.clone()).await {
            Ok(bytes) if bytes.len() as u64 == expected => bytes,
            Ok(bytes) => {
                let reason = format!(
                    "pack {} is truncated: bytes {}..{} returned {} bytes",
                    job.pack,
                    range.start,
                    range.end,
                    bytes.len()
                );
                fail_all(&dest, &blobs, &reason, &mut written);
                continue;
            }
            Err(e) => {
                let reason = format!("cannot read pack {}: {e}", job.pack);
                fail_all(&dest, &blobs, &reason, &mut written);
                continue;
            }
        };
        written.bytes_read += expected;
        let blobs = Arc::new(blobs);
        let task = {
            let (repo, dest, progress, blobs) =
                (repo.clone(), dest.clone(), progress.clone(), blobs.clone());
            let (pack, start) = (job.pack, range.start);
            tokio::task::spawn_blocking(move || {
                write_blobs(&repo, &dest, pack, &bytes, start, &blobs, progress.as_ref())
            })
        };
        match task.await {
            Ok(range_written) => {
                written.bytes_restored += range_written.bytes_restored;
                written.failures.extend(range_written.failures);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                let reason = format!("restore task cancelled: {e}");
                fail_all(&dest, &blobs, &reason, &mut written);
            }
        }
    }
    written
}

/// Records `reason` for every wanted file that the blobs numbered `blobs` go to.
fn fail_all(dest: &Destination, blobs: &[usize], reason: &str, written: &mut Written) {
    for &blob in blobs {
        let id = dest.plan.blob_id(blob);
        for target in dest.wanted_targets(blob) {
            written
                .failures
                .push((target.file as usize, format!("data blob {id}: {reason}")));
        }
    }
}

/// Groups blobs of `plan` (sorted by offset) into byte ranges of the pack to
/// read.
fn split_into_ranges(plan: &Plan, blobs: Vec<usize>) -> Vec<(Range<u64>, Vec<usize>)> {
    read_ranges(
        blobs,
        |&blob| {
            let location = plan.blob_location(blob);
            let start = u64::from(location.offset);
            start..start + u64::from(location.length)
        },
        MAX_RANGE,
    )
}

/// Groups the blobs of one pack, sorted by where they start (`extent` gives
/// each blob's stored bytes), into the ranged reads that fetch them: a blob
/// joins the previous read if it starts at most [`MAX_GAP`] bytes after that
/// read ends and the read stays within `max_range` bytes (one larger blob
/// gets a read of its own). Every blob is in exactly one read, in order.
/// Shared with the restore of restic repositories.
pub fn read_ranges<T>(
    blobs: impl IntoIterator<Item = T>,
    extent: impl Fn(&T) -> Range<u64>,
    max_range: u64,
) -> Vec<(Range<u64>, Vec<T>)> {
    let mut ranges: Vec<(Range<u64>, Vec<T>)> = Vec::new();
    for blob in blobs {
        let Range { start, end } = extent(&blob);
        match ranges.last_mut() {
            Some((range, members))
                if start <= range.end + MAX_GAP
                    && end.max(range.end) - range.start <= max_range =>
            {
                range.end = range.end.max(end);
                members.push(blob);
            }
            _ => ranges.push((start..end, vec![blob])),
        }
    }
    ranges
}

/// Decodes the blobs of one range and writes each to all its wanted files.
fn write_blobs(
    repo: &Repository,
    dest: &Destination,
    pack: Id,
    bytes: &Bytes,
    range_start: u64,
    blobs: &[usize],
    progress: &dyn Progress,
) -> Written {
    let mut written = Written::default();
    let mut open_files: HashMap<usize, File> = HashMap::new();
    for &blob in blobs {
        let (id, location) = (dest.plan.blob_id(blob), dest.plan.blob_location(blob));
        let start = (u64::from(location.offset) - range_start) as usize;
        let stored = &bytes[start..start + location.length as usize];
        let plaintext = match decode_blob(
            repo.key(),
            location.envelope,
            BlobType::Data,
            stored,
            location.uncompressed_length,
            &id,
        ) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                fail_all(dest, &[blob], &format!("in pack {pack}: {e}"), &mut written);
                continue;
            }
        };
        // Many small files can share one range; don't hold a descriptor for each.
        if open_files.len() >= MAX_OPEN_FILES {
            open_files.clear();
        }
        // Files were created at their final length, so zeros are already there:
        // skipping the write leaves a hole on filesystems that support them.
        let all_zero = plaintext.iter().all(|&b| b == 0);
        for target in dest.wanted_targets(blob) {
            let (file, offset) = (target.file as usize, target.offset);
            if !all_zero {
                let result = match open_files.entry(file) {
                    Entry::Occupied(entry) => Ok(entry.into_mut()),
                    Entry::Vacant(entry) => OpenOptions::new()
                        .write(true)
                        .open(dest.path(file))
                        .map(|f| entry.insert(f)),
                }
                .and_then(|f| f.write_all_at(&plaintext, offset));
                if let Err(e) = result {
                    let reason =
                        format!("writing {} bytes at offset {offset}: {e}", plaintext.len());
                    written.failures.push((file, reason));
                    continue;
                }
            }
            written.bytes_restored += plaintext.len() as u64;
            progress.add_bytes(plaintext.len() as u64);
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored bytes of a blob in its pack.
    fn stored(offset: u32, length: u32) -> Range<u64> {
        u64::from(offset)..u64::from(offset) + u64::from(length)
    }

    /// The reads of blobs numbered by their place in `blobs`.
    fn ranges_of(blobs: Vec<Range<u64>>) -> Vec<(Range<u64>, Vec<usize>)> {
        read_ranges(0..blobs.len(), |&blob| blobs[blob].clone(), MAX_RANGE)
    }

    #[test]
    fn adjacent_and_nearby_blobs_share_one_read() {
        let gap = MAX_GAP as u32;
        let got = ranges_of(vec![stored(0, 100), stored(100, 50), stored(150 + gap, 10)]);
        assert_eq!(got, vec![(0..160 + u64::from(gap), vec![0, 1, 2])]);
    }

    #[test]
    fn distant_blobs_get_separate_reads() {
        let far = MAX_GAP as u32 + 151;
        let got = ranges_of(vec![stored(0, 100), stored(100, 50), stored(far, 10)]);
        assert_eq!(
            got,
            vec![
                (0..150, vec![0, 1]),
                (u64::from(far)..u64::from(far) + 10, vec![2])
            ]
        );
    }

    #[test]
    fn ranges_are_capped_but_one_big_blob_still_fits() {
        let big = MAX_RANGE as u32;
        let got = ranges_of(vec![
            stored(0, 100),
            stored(100, big),
            stored(100 + big, 10),
        ]);
        let big = u64::from(big);
        assert_eq!(
            got,
            vec![
                (0..100, vec![0]),
                (100..100 + big, vec![1]),
                (100 + big..110 + big, vec![2])
            ]
        );
    }

    /// Blobs one after another in a pack: `(gap before it, length)` pairs.
    fn laid_out(shape: &[(u64, u64)]) -> Vec<Range<u64>> {
        let mut at = 0;
        shape
            .iter()
            .map(|&(gap, len)| {
                let start = at + gap;
                at = start + len;
                start..at
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn read_ranges_cover_every_blob_once_in_order_within_the_limits(
            shape in proptest::collection::vec((0..2 * MAX_GAP, 1..MAX_RANGE / 3), 0..40)
        ) {
            let blobs = laid_out(&shape);
            let ranges = read_ranges(blobs.clone(), Range::clone, MAX_RANGE);
            let members: Vec<Range<u64>> =
                ranges.iter().flat_map(|(_, m)| m.iter().cloned()).collect();
            proptest::prop_assert_eq!(&members, &blobs);
            for (range, members) in &ranges {
                proptest::prop_assert_eq!(range.start, members[0].start);
                proptest::prop_assert_eq!(range.end, members[members.len() - 1].end);
                proptest::prop_assert!(
                    range.end - range.start <= MAX_RANGE || members.len() == 1
                );
                for pair in members.windows(2) {
                    proptest::prop_assert!(pair[1].start <= pair[0].end + MAX_GAP);
                }
            }
            // A read ends only where the next blob could not have joined it.
            for pair in ranges.windows(2) {
                let (previous, next) = (&pair[0].0, &pair[1].1[0]);
                proptest::prop_assert!(
                    next.start > previous.end + MAX_GAP || next.end - previous.start > MAX_RANGE
                );
            }
        }
    }
}
