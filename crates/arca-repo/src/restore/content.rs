//! Writing file content, pack by pack.
//!
//! Each pack is read with one ranged read per run of needed blobs (runs closer
//! than [`MAX_GAP`] are merged, so a pack that is mostly needed is read in one
//! go), at most [`MAX_RANGE`] bytes at a time. A bounded number of packs is in
//! flight, which bounds memory to about `workers × MAX_RANGE`. Decoding and
//! writing happen on the blocking pool.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::plan::{BlobJob, PackJob};
use crate::blob::{BlobType, decode_blob};
use crate::progress::Progress;
use crate::{Id, Repository};

/// Unneeded bytes between two needed blobs that are still read rather than
/// starting a second request: a request costs more than this much transfer.
const MAX_GAP: u64 = 1024 * 1024;
/// Largest single ranged read (unless one blob is larger).
const MAX_RANGE: u64 = 16 * 1024 * 1024;

/// Files one range writer keeps open at most (blobs arrive in pack order, so
/// a small cache catches the common case of consecutive blobs of one file).
const MAX_OPEN_FILES: usize = 32;

/// What writing content did.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) bytes_restored: u64,
    pub(crate) bytes_read: u64,
    pub(crate) packs_read: u64,
    /// `(index into Plan::files, reason)`.
    pub(crate) failures: Vec<(usize, String)>,
}

/// Packs processed concurrently: enough to keep a remote store busy, few
/// enough to bound memory.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).clamp(4, 16))
}

/// Reads every pack in `jobs` and writes its blobs into `files` (absolute
/// paths, indexed like `Plan::files`; the files exist with their final length).
pub(crate) async fn write_packs(
    repo: &Repository,
    jobs: Vec<PackJob>,
    files: Arc<Vec<PathBuf>>,
    progress: Arc<dyn Progress>,
) -> Written {
    let results: Vec<Written> = futures::stream::iter(jobs)
        .map(|job| restore_pack(repo.clone(), job, files.clone(), progress.clone()))
        .buffer_unordered(workers())
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
    files: Arc<Vec<PathBuf>>,
    progress: Arc<dyn Progress>,
) -> Written {
    let path = Repository::pack_path(&job.pack);
    let mut written = Written {
        packs_read: 1,
        ..Written::default()
    };
    for (range, blobs) in split_into_ranges(job.blobs) {
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
                fail_all(&blobs, &reason, &mut written);
                continue;
            }
            Err(e) => {
                fail_all(
                    &blobs,
                    &format!("cannot read pack {}: {e}", job.pack),
                    &mut written,
                );
                continue;
            }
        };
        written.bytes_read += expected;
        let blobs = Arc::new(blobs);
        let task = {
            let (repo, files, progress, blobs) =
                (repo.clone(), files.clone(), progress.clone(), blobs.clone());
            let (pack, start) = (job.pack, range.start);
            tokio::task::spawn_blocking(move || {
                write_blobs(
                    &repo,
                    pack,
                    &bytes,
                    start,
                    &blobs,
                    &files,
                    progress.as_ref(),
                )
            })
        };
        match task.await {
            Ok(range_written) => {
                written.bytes_restored += range_written.bytes_restored;
                written.failures.extend(range_written.failures);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => fail_all(
                &blobs,
                &format!("restore task cancelled: {e}"),
                &mut written,
            ),
        }
    }
    written
}

fn fail_all(blobs: &[BlobJob], reason: &str, written: &mut Written) {
    for blob in blobs {
        for &(file, _) in &blob.targets {
            written
                .failures
                .push((file, format!("data blob {}: {reason}", blob.id)));
        }
    }
}

/// Groups blobs (sorted by offset) into byte ranges of the pack to read.
fn split_into_ranges(blobs: Vec<BlobJob>) -> Vec<(Range<u64>, Vec<BlobJob>)> {
    let mut ranges: Vec<(Range<u64>, Vec<BlobJob>)> = Vec::new();
    for blob in blobs {
        let start = u64::from(blob.location.offset);
        let end = start + u64::from(blob.location.length);
        match ranges.last_mut() {
            Some((range, members))
                if start <= range.end + MAX_GAP && end - range.start <= MAX_RANGE =>
            {
                range.end = range.end.max(end);
                members.push(blob);
            }
            _ => ranges.push((start..end, vec![blob])),
        }
    }
    ranges
}

/// Decodes the blobs of one range and writes each to all its targets.
fn write_blobs(
    repo: &Repository,
    pack: Id,
    bytes: &Bytes,
    range_start: u64,
    blobs: &[BlobJob],
    files: &[PathBuf],
    progress: &dyn Progress,
) -> Written {
    let mut written = Written::default();
    let mut open_files: HashMap<usize, File> = HashMap::new();
    for blob in blobs {
        let start = (u64::from(blob.location.offset) - range_start) as usize;
        let stored = &bytes[start..start + blob.location.length as usize];
        let plaintext = match decode_blob(
            repo.key(),
            BlobType::Data,
            stored,
            blob.location.uncompressed_length,
            &blob.id,
        ) {
            Ok(plaintext) => plaintext,
            Err(e) => {
                fail_all(
                    std::slice::from_ref(blob),
                    &format!("in pack {pack}: {e}"),
                    &mut written,
                );
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
        for &(file, offset) in &blob.targets {
            if !all_zero {
                let result = match open_files.entry(file) {
                    std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
                    std::collections::hash_map::Entry::Vacant(entry) => OpenOptions::new()
                        .write(true)
                        .open(&files[file])
                        .map(|f| entry.insert(f)),
                }
                .and_then(|f| f.write_all_at(&plaintext, offset));
                if let Err(e) = result {
                    written.failures.push((
                        file,
                        format!("writing {} bytes at offset {offset}: {e}", plaintext.len()),
                    ));
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
    use crate::index::BlobLocation;

    fn job(offset: u32, length: u32) -> BlobJob {
        BlobJob {
            id: Id::default(),
            location: BlobLocation {
                pack: Id::default(),
                blob_type: BlobType::Data,
                offset,
                length,
                uncompressed_length: None,
            },
            targets: vec![(0, 0)],
        }
    }

    fn ranges_of(blobs: Vec<BlobJob>) -> Vec<(Range<u64>, usize)> {
        split_into_ranges(blobs)
            .into_iter()
            .map(|(r, members)| (r, members.len()))
            .collect()
    }

    #[test]
    fn adjacent_and_nearby_blobs_share_one_read() {
        let gap = MAX_GAP as u32;
        let got = ranges_of(vec![job(0, 100), job(100, 50), job(150 + gap, 10)]);
        assert_eq!(got, vec![(0..160 + u64::from(gap), 3)]);
    }

    #[test]
    fn distant_blobs_get_separate_reads() {
        let far = MAX_GAP as u32 + 151;
        let got = ranges_of(vec![job(0, 100), job(100, 50), job(far, 10)]);
        assert_eq!(
            got,
            vec![(0..150, 2), (u64::from(far)..u64::from(far) + 10, 1)]
        );
    }

    #[test]
    fn ranges_are_capped_but_one_big_blob_still_fits() {
        let big = MAX_RANGE as u32;
        let got = ranges_of(vec![job(0, 100), job(100, big), job(100 + big, 10)]);
        assert_eq!(
            got,
            vec![
                (0..100, 1),
                (100..100 + u64::from(big), 1),
                (100 + u64::from(big)..110 + u64::from(big), 1)
            ]
        );
    }
}
