//! The CPU and I/O stages of the backup pipeline, each on dedicated std
//! threads: readers (open, chunk, hash, deduplicate), encoders (compress,
//! encrypt) and the packer (collect blobs into packs).
//!
//! ```text
//! walker ──jobs──▶ readers ──chunks──▶ encoders ──blobs──▶ packer ──packs──▶ uploads (async)
//!    │                │ content ids                  ▲
//!    └──events──▶ assembler ──────────tree blobs─────┘
//! ```
//!
//! Every channel is bounded, so memory stays bounded however large the
//! backup. A stage stops when its input closes or its output's receiver is
//! gone; a stage that fails records the error in [`Shared`] and stops, and
//! the stop cascades through the channels.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arca_chunk::Chunker;
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use nix::fcntl::OFlag;

use super::metadata::nanos;
use crate::blob::{self, BlobType, Compression, EncodedBlob};
use crate::index::Index;
use crate::pack::{FinishedPack, PackWriter};
use crate::progress::Progress;
use crate::{Error, Id, Repository};

/// State every pipeline stage shares.
pub(crate) struct Shared {
    /// The repository written to.
    pub(crate) repo: Repository,
    /// The repository's index as it was when the backup started.
    pub(crate) index: Index,
    /// Where progress and warnings go.
    pub(crate) progress: Arc<dyn Progress>,
    /// Blobs first seen during this backup (queued, packed or uploaded).
    in_flight: Mutex<HashSet<(BlobType, Id)>>,
    /// Counters for the snapshot summary.
    pub(crate) added: AddedCounters,
    /// Items that could not be backed up, with the reason.
    unreadable: Mutex<Vec<(PathBuf, String)>>,
    /// The first fatal error of any stage.
    failure: Mutex<Option<Error>>,
    /// Set when the backup must stop early; stages check it between items.
    stop: AtomicBool,
    /// Dropped (disconnecting [`Shared::stop_signal`]) when a stop is requested,
    /// to wake stages blocked on a channel that may never deliver.
    stop_sender: Mutex<Option<Sender<()>>>,
    /// Never delivers a message; disconnects when a stop is requested.
    stop_receiver: Receiver<()>,
}

/// What this backup added to the repository.
#[derive(Debug, Default)]
pub(crate) struct AddedCounters {
    /// New data blobs.
    pub(crate) data_blobs: AtomicU64,
    /// New tree blobs.
    pub(crate) tree_blobs: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub(crate) bytes: AtomicU64,
    /// Stored (compressed, sealed) bytes of new blobs.
    pub(crate) bytes_packed: AtomicU64,
}

impl Shared {
    /// Shared state for a backup into `repo` whose index is `index`.
    pub(crate) fn new(repo: Repository, index: Index, progress: Arc<dyn Progress>) -> Self {
        let (stop_sender, stop_receiver) = crossbeam_channel::bounded(0);
        Shared {
            repo,
            index,
            progress,
            in_flight: Mutex::new(HashSet::new()),
            added: AddedCounters::default(),
            unreadable: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
            stop_sender: Mutex::new(Some(stop_sender)),
            stop_receiver,
        }
    }

    /// Whether a blob must be stored: it is neither in the repository nor
    /// already queued by this backup. Returns `true` exactly once per new blob.
    pub(crate) fn claim_new_blob(&self, blob_type: BlobType, id: Id) -> bool {
        !self.index.contains(blob_type, &id)
            && self
                .in_flight
                .lock()
                .expect("in-flight set lock poisoned")
                .insert((blob_type, id))
    }

    /// Reports a non-fatal problem with one item that is still backed up.
    pub(crate) fn warn(&self, path: &std::path::Path, message: &str) {
        tracing::warn!(path = %path.display(), "{message}");
        self.progress.warn(path, message);
    }

    /// Reports an item that could not be backed up and is left out of the snapshot.
    pub(crate) fn unreadable(&self, path: PathBuf, message: String) {
        self.warn(&path, &message);
        self.unreadable
            .lock()
            .expect("unreadable list lock poisoned")
            .push((path, message));
    }

    /// The items reported through [`Shared::unreadable`], in report order.
    pub(crate) fn take_unreadable(&self) -> Vec<(PathBuf, String)> {
        std::mem::take(
            &mut *self
                .unreadable
                .lock()
                .expect("unreadable list lock poisoned"),
        )
    }

    /// Records a fatal error (the first one wins) and asks every stage to stop.
    pub(crate) fn fail(&self, error: Error) {
        self.failure
            .lock()
            .expect("failure lock poisoned")
            .get_or_insert(error);
        self.request_stop();
    }

    /// Asks every stage to stop at its next check.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_sender.lock().expect("stop lock poisoned").take();
    }

    /// For a stage that found a channel closed: the pipeline is coming apart,
    /// so every other stage must stop too (a stage blocked on a result that
    /// will never come is woken through [`Shared::stop_signal`]).
    pub(crate) fn stopped(&self) -> Stopped {
        self.request_stop();
        Stopped
    }

    /// A channel that disconnects once a stop is requested (for `select!`).
    pub(crate) fn stop_signal(&self) -> &Receiver<()> {
        &self.stop_receiver
    }

    /// Whether stages should stop.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The recorded fatal error, if any.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.lock().expect("failure lock poisoned").take()
    }
}

/// The marker of a stage that stopped because the pipeline is shutting down
/// (a channel closed or a stop was requested); the reason is in [`Shared`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// A blob to compress, encrypt and pack.
#[derive(Debug)]
pub(crate) struct EncodeJob {
    /// Data or tree.
    pub(crate) blob_type: BlobType,
    /// Keyed content ID of `plaintext`.
    pub(crate) id: Id,
    /// The blob's plaintext.
    pub(crate) plaintext: Bytes,
}

/// A regular file to read, with the slot its result goes to.
#[derive(Debug)]
pub(crate) struct FileJob {
    /// Absolute path.
    pub(crate) path: PathBuf,
    /// Size seen by the walker.
    pub(crate) size: u64,
    /// Modification time (ns) seen by the walker.
    pub(crate) mtime_ns: i64,
    /// Receives the result exactly once.
    pub(crate) result: Sender<FileResult>,
}

/// What reading a file produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileResult {
    /// The file was read; its content blobs are queued or already stored.
    Read {
        /// Content IDs in order.
        content: Vec<Id>,
        /// Bytes actually read (differs from the walker's size if the file changed).
        size: u64,
    },
    /// The file could not be read; it is reported and left out of the snapshot.
    Unreadable,
}

/// Reader thread: reads files from `jobs` until it closes.
pub(crate) fn run_reader(
    shared: &Shared,
    chunker: &Chunker,
    jobs: &Receiver<FileJob>,
    encode: &Sender<EncodeJob>,
) {
    for job in jobs {
        if shared.stopping() {
            return;
        }
        let result = match read_file(shared, chunker, &job, encode) {
            Ok(result) => result,
            Err(ReadError::Stopped) => return,
            Err(ReadError::Unreadable(message)) => {
                shared.unreadable(job.path.clone(), message);
                FileResult::Unreadable
            }
        };
        // The assembler may be gone when the pipeline is stopping; nothing to do then.
        let _ = job.result.send(result);
    }
}

/// Why [`read_file`] produced no content.
enum ReadError {
    /// The file could not be opened or read (message for the user).
    Unreadable(String),
    /// The pipeline is stopping.
    Stopped,
}

/// Opens, chunks and hashes one file, queueing chunks not yet in the
/// repository for encoding.
///
/// Files up to one maximum chunk long (most files) are read whole into a
/// buffer of their own size and cut in place; the streaming chunker, whose
/// buffer is two maximum chunks, is only used for larger files. Chunks share
/// their file's buffer, so a small file pins only its own size while its
/// chunks wait for the encoders.
fn read_file(
    shared: &Shared,
    chunker: &Chunker,
    job: &FileJob,
    encode: &Sender<EncodeJob>,
) -> Result<FileResult, ReadError> {
    let file = open_unfollowed(&job.path)
        .map_err(|e| ReadError::Unreadable(format!("cannot open: {e}")))?;
    let before = file
        .metadata()
        .map_err(|e| ReadError::Unreadable(format!("cannot stat: {e}")))?;
    if !before.is_file() {
        return Err(ReadError::Unreadable("no longer a regular file".into()));
    }
    let mut content = FileContent {
        shared,
        encode,
        ids: Vec::new(),
        size: 0,
    };
    let whole_limit = u64::from(chunker.params().max);
    let mut head = Vec::with_capacity(job.size.min(whole_limit) as usize + 1);
    (&file)
        .take(whole_limit + 1)
        .read_to_end(&mut head)
        .map_err(|e| ReadError::Unreadable(format!("read failed: {e}")))?;
    if head.len() as u64 <= whole_limit {
        let head = Bytes::from(head);
        let mut start = 0;
        for len in chunker.cut_points(&head) {
            content.add(head.slice(start..start + len))?;
            start += len;
        }
    } else {
        // The file is (or grew) larger than one chunk: stream the rest after what was read.
        for chunk in chunker.chunks(std::io::Cursor::new(head).chain(&file)) {
            let chunk = chunk.map_err(|e| {
                ReadError::Unreadable(format!("read failed after {} bytes: {e}", content.size))
            })?;
            content.add(chunk)?;
        }
    }
    let FileContent { ids, size, .. } = content;
    let after_mtime = file
        .metadata()
        .map(|m| nanos(m.mtime(), m.mtime_nsec()))
        .ok();
    if size != job.size || after_mtime != Some(job.mtime_ns) {
        shared.warn(
            &job.path,
            &format!(
                "file changed while it was read; stored as read ({size} bytes, {} when listed)",
                job.size
            ),
        );
    }
    Ok(FileResult::Read { content: ids, size })
}

/// The content list of a file being read.
struct FileContent<'a> {
    shared: &'a Shared,
    encode: &'a Sender<EncodeJob>,
    ids: Vec<Id>,
    size: u64,
}

impl FileContent<'_> {
    /// Hashes the next chunk and queues it for encoding if it is new.
    fn add(&mut self, chunk: Bytes) -> Result<(), ReadError> {
        let shared = self.shared;
        if shared.stopping() {
            return Err(ReadError::Stopped);
        }
        let id = shared.repo.key().content_id(&chunk);
        self.size += chunk.len() as u64;
        shared.progress.add_bytes(chunk.len() as u64);
        self.ids.push(id);
        if shared.claim_new_blob(BlobType::Data, id) {
            let job = EncodeJob {
                blob_type: BlobType::Data,
                id,
                plaintext: chunk,
            };
            self.encode.send(job).map_err(|_| {
                shared.request_stop();
                ReadError::Stopped
            })?;
        }
        Ok(())
    }
}

/// Opens a file the walker found for reading. `O_NOFOLLOW`: a file replaced
/// by a symlink since the walk is not followed; `O_NONBLOCK`: one replaced by
/// a FIFO does not hang the reader; `O_NOATIME` (Linux, where permitted: the
/// owner or root) keeps the backup from changing access times.
fn open_unfollowed(path: &std::path::Path) -> std::io::Result<File> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let open = |flags: OFlag| {
        File::options()
            .read(true)
            .custom_flags(flags.bits())
            .open(path)
    };
    #[cfg(any(target_os = "linux", target_os = "android"))]
    match open(flags | OFlag::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EPERM as i32) => {}
        opened => return opened,
    }
    open(flags)
}

/// Encoder thread: compresses and seals blobs until `jobs` closes.
pub(crate) fn run_encoder(
    shared: &Shared,
    compression: Compression,
    jobs: &Receiver<EncodeJob>,
    packer: &Sender<EncodedBlob>,
) {
    let key = shared.repo.key();
    for job in jobs {
        if shared.stopping() {
            return;
        }
        let encoded =
            match blob::encode_blob(key, job.blob_type, job.id, &job.plaintext, compression) {
                Ok(encoded) => encoded,
                Err(e) => return shared.fail(e),
            };
        let counter = match job.blob_type {
            BlobType::Data => &shared.added.data_blobs,
            BlobType::Tree => &shared.added.tree_blobs,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        shared
            .added
            .bytes
            .fetch_add(job.plaintext.len() as u64, Ordering::Relaxed);
        shared
            .added
            .bytes_packed
            .fetch_add(encoded.bytes.len() as u64, Ordering::Relaxed);
        if packer.send(encoded).is_err() {
            return shared.request_stop();
        }
    }
}

/// Packer thread: appends blobs to one open pack per blob type and hands
/// each pack to the uploads once it reaches `pack_size` bytes; the last,
/// smaller packs when `blobs` closes.
pub(crate) fn run_packer(
    shared: &Shared,
    pack_size: usize,
    blobs: &Receiver<EncodedBlob>,
    packs: &tokio::sync::mpsc::Sender<FinishedPack>,
) {
    let key = shared.repo.key();
    let mut data = PackWriter::new(BlobType::Data);
    let mut trees = PackWriter::new(BlobType::Tree);
    let finish = |writer: PackWriter| -> Result<(), Stopped> {
        let pack = writer.finish(key).map_err(|e| {
            shared.fail(e);
            Stopped
        })?;
        packs.blocking_send(pack).map_err(|_| shared.stopped())
    };
    for blob in blobs {
        let writer = match blob.blob_type {
            BlobType::Data => &mut data,
            BlobType::Tree => &mut trees,
        };
        writer.add(&blob);
        if writer.len() >= pack_size {
            let full = std::mem::replace(writer, PackWriter::new(blob.blob_type));
            if finish(full).is_err() {
                return;
            }
        }
    }
    if shared.stopping() {
        return;
    }
    for writer in [data, trees] {
        if !writer.is_empty() && finish(writer).is_err() {
            return;
        }
    }
}
