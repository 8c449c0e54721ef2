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
    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for (id, len) in content {
        buf.clear();
        let read = (&mut file)
            .take(*len)
            .read_to_end(&mut buf)
            .map_err(io_error)?;
        if read as u64 != *len {
            return Err(Error::VerifyFailed {
                path: path.to_owned(),
                reason: format!(
                    "file ends at byte {}, inside blob {id} (bytes {offset}..{})",
                    offset + read as u64,
                    offset + len
                ),
            });
        }
        if key.content_id(&buf) != *id {
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
                while let Some(&file) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let content: Vec<(Id, u64)> = plan.files[file]
                        .extents
                        .iter()
                        .map(|e| (e.id, e.len))
                        .collect();
                    let outcome = verify_file(key, &target.join(plan.file_path(file)), &content);
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
