//! `restore --verify`: re-read restored files and check every blob's content ID.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use arca_crypto::MasterKey;

use super::plan::Plan;
use crate::{Error, Id, Result};

/// Checks that the file at `path` holds exactly the blobs `content` (content
/// ID and plaintext length, in order): each run of bytes must hash to its ID
/// under `key`, and the file must end where the last blob ends.
///
/// Returns [`Error::VerifyFailed`] naming the first mismatching byte range and
/// blob, and [`Error::Io`] if the file cannot be read.
pub fn verify_file(key: &MasterKey, path: &Path, content: &[(Id, u64)]) -> Result<()> {
    verify_file_into(key, path, content, &mut Vec::new())
}

/// [`verify_file`] reading through `buf`, which keeps its size for the next
/// file: a fresh blob-sized buffer per file is memory the kernel maps and
/// zeroes anew each time, which cost more system time than the reads.
fn verify_file_into(
    key: &MasterKey,
    path: &Path,
    content: &[(Id, u64)],
    buf: &mut Vec<u8>,
) -> Result<()> {
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut offset = 0u64;
    for (id, len) in content {
        // A blob's length is at most the chunker's maximum, far below usize.
        let want = usize::try_from(*len).expect("a blob fits in memory");
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let span = &mut buf[..want];
        let read = read_up_to(&mut file, span).map_err(io_error)?;
        if read != want {
            return Err(Error::VerifyFailed {
                path: path.to_owned(),
                reason: format!(
                    "file ends at byte {}, inside blob {id} (bytes {offset}..{})",
                    offset + read as u64,
                    offset + len
                ),
            });
        }
        if key.content_id(span) != *id {
            return Err(Error::VerifyFailed {
                path: path.to_owned(),
                reason: format!("bytes {offset}..{} do not match blob {id}", offset + len),
            });
        }
        offset += len;
    }
    let mut probe = [0u8; 1];
    if file.read(&mut probe).map_err(io_error)? != 0 {
        return Err(Error::VerifyFailed {
            path: path.to_owned(),
            reason: format!("file is longer than the {offset} bytes in the snapshot"),
        });
    }
    Ok(())
}

/// Fills `buf` from `file`; returns how much it read (less only at the end
/// of the file).
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What [`verify_files`] found.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    pub(crate) checked: u64,
    /// `(index into Plan::files, reason)`.
    pub(crate) failures: Vec<(usize, String)>,
}

/// Verifies the plan's files numbered `files` (indices into `Plan::files`),
/// restored below `target`, on one thread per core. Blocking; CPU-bound.
pub(crate) fn verify_files(
    key: &MasterKey,
    plan: &Plan,
    target: &Path,
    files: &[usize],
) -> Verified {
    let next = AtomicUsize::new(0);
    let result = Mutex::new(Verified::default());
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut buf = Vec::new();
                while let Some(&file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let content = plan.file_content(file);
                    let path = plan.file_path_under(target, file);
                    let outcome = verify_file_into(key, &path, &content, &mut buf);
                    let mut result = result
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    result.checked += 1;
                    if let Err(e) = outcome {
                        result.failures.push((file, verify_reason(e)));
                    }
                }
            });
        }
    });
    result
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The reason part of a verify error (the path is reported separately).
fn verify_reason(e: Error) -> String {
    match e {
        Error::VerifyFailed { reason, .. } => format!("verify failed: {reason}"),
        Error::Io { source, .. } => format!("verify failed: {source}"),
        other => format!("verify failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_key;

    /// The buffer a thread reuses still holds the previous file's bytes: a
    /// file cut short must fail, not be completed from those stale bytes.
    #[test]
    fn a_reused_buffer_never_stands_in_for_missing_bytes() {
        let key = test_key();
        let dir = tempfile::tempdir().unwrap();
        let whole: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (first, second) = whole.split_at(60_000);
        let content = [
            (key.content_id(first), first.len() as u64),
            (key.content_id(second), second.len() as u64),
        ];
        let full = dir.path().join("full");
        std::fs::write(&full, &whole).unwrap();
        let mut buf = Vec::new();
        verify_file_into(key, &full, &content, &mut buf).unwrap();

        // Same blobs, file truncated inside the second one; the buffer
        // still holds the second blob's bytes from the run above.
        let short = dir.path().join("short");
        std::fs::write(&short, &whole[..90_000]).unwrap();
        buf[..second.len()].copy_from_slice(second);
        let err = verify_file_into(key, &short, &content, &mut buf).unwrap_err();
        assert!(err.to_string().contains("file ends at byte 90000"), "{err}");

        // And a file whose bytes differ where the buffer had the right ones.
        let mut changed = whole.clone();
        changed[70_000] ^= 1;
        std::fs::write(&short, &changed).unwrap();
        let err = verify_file_into(key, &short, &content, &mut buf).unwrap_err();
        assert!(err.to_string().contains("do not match"), "{err}");
    }
}
