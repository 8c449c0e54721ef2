//! The CPU and I/O stages of the backup pipeline, each on dedicated std
//! threads: readers (open, chunk, hash, deduplicate) and encoders (compress,
//! encrypt, append to the open pack).
//!
//! ```text
//! walker ──jobs──▶ readers ──chunks──▶ encoders ─▶ open packs ──packs──▶ uploads (async)
//!    │                │ content ids        ▲
//!    └──events──▶ assembler ──tree blobs───┘
//! ```
//!
//! Every channel is bounded and every large buffer is reused (each reader's
//! read buffer, each encoder's output, the pack buffers), so memory stays
//! bounded however large the backup, and the pipeline does not fault in
//! fresh memory for every megabyte it moves. A stage stops when its input
//! closes or its output's receiver is gone; a stage that fails records the
//! error in [`Shared`] and stops, and the stop cascades through the channels.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arca_chunk::{READ_ALIGN, StreamChunker};
use arca_crypto::BlobKey;
use arca_store::SpoolDir;
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::ahead::LargestFirst;
use super::claimed::ClaimedBlobs;
use super::level::AdaptiveLevel;
use super::metadata::nanos;
use crate::blob::{self, BlobType, Compression};
use crate::index::Index;
use crate::pack::{FinishedPack, PackBuffers, PackWriter, SPILL_BYTES};
use crate::progress::Progress;
use crate::{Error, Id, Repository};

/// Room in a pack buffer beyond the pack size: the blob that fills a pack
/// (usually ~1 MiB) lands in the same buffer.
const PACK_SLACK: usize = 2 << 20;

/// State every pipeline stage shares.
pub(crate) struct Shared {
    /// The repository written to.
    pub(crate) repo: Repository,
    /// Cores to keep busy: as many encoders run, and one more large-file reader.
    pub(crate) cores: usize,
    /// The repository's index as it was when the backup started.
    pub(crate) index: Index,
    /// Where progress and warnings go.
    pub(crate) progress: Arc<dyn Progress>,
    /// Buffers of the data packs being filled, waiting and uploading (or,
    /// spooling, of the part of a pack not yet written out); closed when a
    /// stop is requested so no encoder waits for one forever.
    pub(crate) pack_buffers: Arc<PackBuffers>,
    /// Where data packs are written as they fill, if the backend takes
    /// spool files; `None`: they are built in memory.
    spool_dir: Option<SpoolDir>,
    /// Blobs first seen during this backup (queued, packed or uploaded).
    claimed: Mutex<ClaimedBlobs>,
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
    /// Shared state for a backup into `repo` whose index is `index`, with
    /// `uploads` packs uploading at a time.
    pub(crate) fn new(
        repo: Repository,
        index: Index,
        progress: Arc<dyn Progress>,
        uploads: usize,
    ) -> Self {
        let (stop_sender, stop_receiver) = crossbeam_channel::bounded(0);
        let spool_dir = repo
            .backend()
            .spool_dir()
            .filter(|dir| can_spool_in(dir, progress.as_ref()));
        let cores = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        // Every encoder fills a data pack of its own. Spooling, a pack has
        // two buffers (one filling, one being written), each holding less
        // than `SPILL_BYTES` and the next blob; the pack gives them back when
        // it is finished, before its encoder starts the next. In memory, a
        // pack keeps its buffer until uploaded, or (a backend that drops a
        // pack's bytes once written: the local one, before its fsync) less.
        let (buffer_capacity, pack_buffers) = match spool_dir {
            Some(_) => (
                SPILL_BYTES + repo.config().chunker.max as usize + PACK_SLACK,
                2 * cores,
            ),
            None => (
                repo.config().pack_size as usize + PACK_SLACK,
                cores + uploads,
            ),
        };
        Shared {
            repo,
            cores,
            index,
            progress,
            pack_buffers: PackBuffers::new(buffer_capacity, pack_buffers),
            spool_dir,
            claimed: Mutex::new(ClaimedBlobs::default()),
            added: AddedCounters::default(),
            unreadable: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
            stop_sender: Mutex::new(Some(stop_sender)),
            stop_receiver,
        }
    }

    /// Whether a blob must be stored: it is neither in the repository nor
    /// already queued by this backup. Returns `true` exactly once per new
    /// blob; stops the backup if that cannot be known.
    pub(crate) fn claim_new_blob(&self, blob_type: BlobType, id: Id) -> Result<bool, Stopped> {
        if self.index.contains(blob_type, &id) {
            return Ok(false);
        }
        let claimed = self
            .claimed
            .lock()
            .expect("claimed set lock poisoned")
            .insert(blob_type, &id);
        claimed.map_err(|e| {
            self.fail(Error::BackupIncomplete {
                reason: format!(
                    "reading the set of new blobs back from its temporary file failed: {e}"
                ),
            })
        })
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

    /// Records a fatal error (the first one wins) and asks every stage to
    /// stop; the failing stage returns the [`Stopped`] this returns.
    pub(crate) fn fail(&self, error: Error) -> Stopped {
        self.failure
            .lock()
            .expect("failure lock poisoned")
            .get_or_insert(error);
        self.request_stop();
        Stopped
    }

    /// Asks every stage to stop at its next check.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.pack_buffers.close();
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

    /// A new, empty data pack: spooling to a new file if the backend takes
    /// spool files, in memory otherwise. Waits while every pack buffer is in use.
    fn new_data_pack(&self) -> Result<PackWriter, Stopped> {
        let key = self.repo.blob_key().map_err(|e| self.fail(e))?;
        let Some(dir) = &self.spool_dir else {
            return PackWriter::recycling(BlobType::Data, key, &self.pack_buffers).ok_or(Stopped);
        };
        let spooling = dir.create().map_err(Error::from).and_then(|file| {
            PackWriter::spooling(BlobType::Data, key, &self.pack_buffers, file, SPILL_BYTES)
        });
        spooling.map_err(|e| self.fail(e))?.ok_or(Stopped)
    }

    /// The recorded fatal error, if any.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.lock().expect("failure lock poisoned").take()
    }
}

/// Whether a spool file can be made in `dir`; if not (a read-only or full
/// temporary directory), says so, and the backup builds its packs in memory.
fn can_spool_in(dir: &SpoolDir, progress: &dyn Progress) -> bool {
    match dir.create() {
        Ok(_) => true,
        Err(err) => {
            let message = format!("cannot spool packs here, building them in memory: {err}");
            tracing::warn!(dir = %dir.path().display(), "{message}");
            progress.warn(dir.path(), &message);
            false
        }
    }
}

/// The marker of a stage that stopped because the pipeline is shutting down
/// (a channel closed or a stop was requested); the reason is in [`Shared`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Blobs handed to an encoder together.
pub(crate) type EncodeBatch = Vec<EncodeJob>;

/// A reader queues the new blobs it found once they add up to this many
/// bytes (a larger blob goes at once), or before it waits for its next file:
/// a tree of small files then costs the encoders one hand-off per batch
/// instead of one wake-up per file.
const ENCODE_BATCH_BYTES: usize = 256 * 1024;

/// A blob to compress, encrypt and pack.
#[derive(Debug)]
pub(crate) struct EncodeJob {
    /// Data or tree.
    pub(crate) blob_type: BlobType,
    /// Keyed content ID of `plaintext`.
    pub(crate) id: Id,
    /// The blob's plaintext.
    pub(crate) plaintext: Vec<u8>,
}

/// Files up to this size go to readers of their own ([`FileQueues`]).
pub(crate) const SMALL_FILE_BYTES: u64 = 256 * 1024;

/// The readers' queues. Reading a small file is mostly waiting for the disk,
/// so small files get many readers, each with a buffer of little more than
/// [`SMALL_FILE_BYTES`]; large ones get a few readers with large buffers, which
/// also keeps a large file from holding up the small ones behind it.
pub(crate) struct FileQueues {
    pub(crate) small: Sender<FileJob>,
    pub(crate) large: Sender<FileJob>,
}

impl FileQueues {
    /// Queues `job` for a reader of its size (waiting for room).
    pub(crate) fn send(&self, job: FileJob) -> Result<(), Stopped> {
        let queue = if job.size <= SMALL_FILE_BYTES {
            &self.small
        } else {
            &self.large
        };
        queue.send(job).map_err(|_| Stopped)
    }
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
    /// Set when nobody will take the result (a read ahead the walker did
    /// not use): the read stops, or does not start.
    pub(crate) cancelled: Option<Arc<AtomicBool>>,
    /// Held until the read ends if the scout chose it largest-first.
    pub(crate) largest_first: Option<LargestFirst>,
}

impl FileJob {
    fn is_cancelled(&self) -> bool {
        self.cancelled
            .as_ref()
            .is_some_and(|cancelled| cancelled.load(Ordering::Relaxed))
    }
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
    /// The file could not be read (why); it is reported and left out of the snapshot.
    Unreadable(String),
}

/// Reader thread: reads files from `jobs` (the walker's) and `ahead` (the
/// read-ahead's, only when `jobs` is empty: the assembler waits for the
/// walker's files in order) until both close.
pub(crate) fn run_reader(
    shared: &Shared,
    chunker: &mut StreamChunker,
    jobs: &Receiver<FileJob>,
    ahead: &Receiver<FileJob>,
    encode: &Sender<EncodeBatch>,
) {
    let mut pending = PendingBlobs::default();
    loop {
        let mut job = match jobs.try_recv().or_else(|_| ahead.try_recv()) {
            Ok(job) => job,
            // No file waiting: queue what this reader holds before it
            // sleeps, or ends if no more files will come.
            Err(_) => {
                if pending.send(encode).is_err() {
                    shared.request_stop();
                    return;
                }
                match next_job(jobs, ahead) {
                    Some(job) => job,
                    None => return,
                }
            }
        };
        if shared.stopping() {
            return;
        }
        let result = match read_file(shared, chunker, &job, &mut pending, encode) {
            Ok(result) => result,
            Err(ReadError::Stopped) => return,
            Err(ReadError::Cancelled) => continue,
            // Reported by the assembler: a file read ahead may never be taken.
            Err(ReadError::Unreadable(message)) => FileResult::Unreadable(message),
        };
        // The read is over: the scout may choose the next largest file.
        drop(job.largest_first.take());
        // The assembler may be gone when the pipeline is stopping; nothing to do then.
        let _ = job.result.send(result);
    }
}

/// Waits for a job from either queue; `None` once both are closed and empty.
fn next_job(jobs: &Receiver<FileJob>, ahead: &Receiver<FileJob>) -> Option<FileJob> {
    crossbeam_channel::select! {
        recv(jobs) -> job => job.ok().or_else(|| ahead.recv().ok()),
        recv(ahead) -> job => job.ok().or_else(|| jobs.recv().ok()),
    }
}

/// The new blobs a reader holds until they make a batch.
#[derive(Default)]
struct PendingBlobs {
    batch: EncodeBatch,
    bytes: usize,
}

impl PendingBlobs {
    /// Adds a blob; queues the batch once it is large enough.
    fn push(&mut self, job: EncodeJob, encode: &Sender<EncodeBatch>) -> Result<(), Stopped> {
        self.bytes += job.plaintext.len();
        self.batch.push(job);
        if self.bytes >= ENCODE_BATCH_BYTES {
            self.send(encode)?;
        }
        Ok(())
    }

    /// Queues the blobs held, if any (waiting for room).
    fn send(&mut self, encode: &Sender<EncodeBatch>) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        encode
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| Stopped)
    }
}

/// Why [`read_file`] produced no content.
enum ReadError {
    /// The file could not be opened or read (message for the user).
    Unreadable(String),
    /// The pipeline is stopping.
    Stopped,
    /// Nobody will take the result ([`FileJob::cancelled`]).
    Cancelled,
}

/// Opens, chunks and hashes one file, adding copies of the chunks not yet in
/// the repository to `pending` for encoding. The reader's buffer is reused
/// from file to file; only new chunks are copied out of it.
fn read_file(
    shared: &Shared,
    chunker: &mut StreamChunker,
    job: &FileJob,
    pending: &mut PendingBlobs,
    encode: &Sender<EncodeBatch>,
) -> Result<FileResult, ReadError> {
    if job.is_cancelled() {
        return Err(ReadError::Cancelled);
    }
    let (mut file, before) = SourceFile::open(&job.path)
        .map_err(|e| ReadError::Unreadable(format!("cannot open: {e}")))?;
    if !before.is_file() {
        return Err(ReadError::Unreadable("no longer a regular file".into()));
    }
    let mut ids = Vec::new();
    let mut size = 0u64;
    let mut stream = chunker.stream(&mut file);
    while let Some(chunk) = stream.next_chunk() {
        let chunk = chunk
            .map_err(|e| ReadError::Unreadable(format!("read failed after {size} bytes: {e}")))?;
        if shared.stopping() {
            return Err(ReadError::Stopped);
        }
        if job.is_cancelled() {
            return Err(ReadError::Cancelled);
        }
        let id = shared.repo.key().content_id(chunk);
        size += chunk.len() as u64;
        shared.progress.add_bytes(chunk.len() as u64);
        ids.push(id);
        if shared
            .claim_new_blob(BlobType::Data, id)
            .map_err(|Stopped| ReadError::Stopped)?
        {
            let job = EncodeJob {
                blob_type: BlobType::Data,
                id,
                plaintext: chunk.to_vec(),
            };
            pending.push(job, encode).map_err(|Stopped| {
                shared.request_stop();
                ReadError::Stopped
            })?;
        }
    }
    let after_mtime = file
        .file
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

/// A file the walker found, open for reading.
///
/// Opened with `O_DIRECT` where the file system takes it: the disk's data goes
/// straight into the reader's aligned buffer (see [`arca_chunk::READ_ALIGN`])
/// instead of being copied out of fresh page-cache pages, which was a third
/// of the readers' CPU time, and a backup does not push the applications'
/// own data out of the page cache. The kernel keeps direct reads coherent
/// with pages an application has dirtied.
struct SourceFile {
    file: File,
    direct: bool,
    /// Bytes read so far.
    position: u64,
    /// The file's size when opened.
    len: u64,
}

impl SourceFile {
    /// `O_NOFOLLOW`: a file replaced by a symlink since the walk is not
    /// followed; `O_NONBLOCK`: one replaced by a FIFO does not hang the reader;
    /// `O_NOATIME` (Linux, where permitted: the owner or root) keeps the
    /// backup from changing access times. Returns the open file's metadata
    /// too.
    fn open(path: &std::path::Path) -> std::io::Result<(Self, std::fs::Metadata)> {
        let open = |flags: OFlag| {
            File::options()
                .read(true)
                .custom_flags(flags.bits())
                .open(path)
        };
        let mut flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            flags |= OFlag::O_NOATIME | OFlag::O_DIRECT;
        }
        loop {
            match open(flags) {
                Ok(file) => {
                    let metadata = file.metadata()?;
                    let source = SourceFile {
                        len: metadata.len(),
                        file,
                        direct: flags.contains(OFlag::O_DIRECT),
                        position: 0,
                    };
                    return Ok((source, metadata));
                }
                // The file system has no direct I/O.
                Err(e) if has_errno(&e, Errno::EINVAL) && flags.contains(OFlag::O_DIRECT) => {
                    flags.remove(OFlag::O_DIRECT);
                }
                Err(e) if has_errno(&e, Errno::EPERM) && flags.contains(OFlag::O_NOATIME) => {
                    flags.remove(OFlag::O_NOATIME);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `err` is the OS error `errno`.
fn has_errno(err: &std::io::Error, errno: Errno) -> bool {
    err.raw_os_error() == Some(errno as i32)
}

impl std::io::Read for SourceFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // A direct read reaching past the end of the file has the kernel
        // zero the rest of the buffer: ask for no more than the file holds
        // (a file that grew is read on uncapped).
        let remaining = self.len.saturating_sub(self.position);
        let len = match usize::try_from(remaining.next_multiple_of(READ_ALIGN as u64)) {
            Ok(capped) if self.direct && capped > 0 => buf.len().min(capped),
            _ => buf.len(),
        };
        let buf = &mut buf[..len];
        let read = match (&self.file).read(buf) {
            // A direct read the file system will not do as asked (alignment
            // it needs beyond ours, an offset left unaligned by a short read).
            Err(e) if self.direct && has_errno(&e, Errno::EINVAL) => {
                arca_store::set_direct(&self.file, false)?;
                self.direct = false;
                (&self.file).read(buf)
            }
            read => read,
        }?;
        self.position += read as u64;
        Ok(read)
    }
}

/// What the encoders share: the open tree pack, and how many of them still run.
///
/// Each encoder fills a data pack of its own, compressing and sealing every
/// blob straight into the pack's buffer, so no lock is held while a blob is
/// encoded and no encoder needs a buffer for compressed blobs (heaptrack put
/// 13.8 MB of a 2 GiB backup's peak in those). Tree blobs are few and
/// mostly small: each is encoded on its own and copied into the one tree pack.
pub(crate) struct Packer {
    trees: Mutex<PackWriter>,
    /// A pack is finished once it holds this many bytes.
    pack_size: usize,
    /// Encoders still running; the last one to stop finishes the tree pack.
    encoders: AtomicUsize,
    /// The zstd level of data blobs, from whether the encoders wait for the uploads.
    level: AdaptiveLevel,
}

/// A tree pack's buffer is reserved whole, like a data pack's, rather than
/// doubled as it fills: a doubling holds the old and the new copy at once
/// (24 MiB on the way to a 16 MiB pack; heaptrack on a million tiny files put
/// 25 MB of the peak there). Pages are only faulted in as they are written.
fn new_tree_pack(pack_size: usize, key: Arc<BlobKey>) -> PackWriter {
    PackWriter::with_capacity(BlobType::Tree, key, pack_size + PACK_SLACK)
}

impl Packer {
    /// Packs of `pack_size` bytes, filled by `encoders` threads, with data
    /// blobs compressed at `compression` or harder (see [`AdaptiveLevel`]);
    /// the first tree pack is sealed under `key`.
    pub(crate) fn new(
        pack_size: usize,
        encoders: usize,
        compression: Compression,
        key: Arc<BlobKey>,
    ) -> Self {
        Packer {
            trees: Mutex::new(new_tree_pack(pack_size, key)),
            pack_size,
            encoders: AtomicUsize::new(encoders),
            level: AdaptiveLevel::new(compression),
        }
    }

    /// Whether `writer`, holding some blobs, is done before a blob of at
    /// most `sealed_len` bytes: it holds `pack_size` bytes, or (a data pack,
    /// whose pooled buffer must not grow) has no room left for the blob.
    fn is_full(&self, writer: &PackWriter, sealed_len: usize) -> bool {
        !writer.is_empty()
            && (writer.len() >= self.pack_size
                || (writer.blob_type() == BlobType::Data && !writer.fits(sealed_len)))
    }

    /// Encodes a data blob into the encoder's `open` pack, first queueing
    /// that pack for upload if it is full and taking a buffer for a new one
    /// from the backup's pool (waiting while all are in use), at the level
    /// [`AdaptiveLevel`] chooses from how long such waits took so far.
    /// Returns the blob's stored size.
    ///
    /// A spooling pack's writer may also wait inside `add_encoding` for its
    /// file's writes; that counts as encoding, so it can only keep the level
    /// at the configured one.
    fn add_data(
        &self,
        shared: &Shared,
        open: &mut Option<PackWriter>,
        job: &EncodeJob,
        packs: &tokio::sync::mpsc::Sender<FinishedPack>,
    ) -> Result<usize, Stopped> {
        let waiting = Instant::now();
        let max_len = blob::max_sealed_len(job.plaintext.len());
        if let Some(full) = open.take_if(|writer| self.is_full(writer, max_len)) {
            upload(shared, full, packs)?;
        }
        let writer = match open {
            Some(writer) => writer,
            empty @ None => empty.insert(shared.new_data_pack()?),
        };
        let encoding = Instant::now();
        let before = writer.len();
        writer
            .add_encoding(BlobType::Data, job.id, &job.plaintext, self.level.current())
            .map_err(|e| shared.fail(e))?;
        self.level
            .record(encoding.elapsed(), encoding.duration_since(waiting));
        Ok(writer.len() - before)
    }

    /// Encodes a tree blob and appends it to the tree pack, queueing the
    /// pack for upload once it is full. Returns the blob's stored size.
    fn add_tree(
        &self,
        shared: &Shared,
        compression: Compression,
        job: &EncodeJob,
        packs: &tokio::sync::mpsc::Sender<FinishedPack>,
    ) -> Result<usize, Stopped> {
        let key = shared.repo.blob_key().map_err(|e| shared.fail(e))?;
        let blob = blob::encode_blob(&key, BlobType::Tree, job.id, &job.plaintext, compression)
            .map_err(|e| shared.fail(e))?;
        let full = {
            let mut trees = self.trees.lock().expect("tree pack lock poisoned");
            let full = self
                .is_full(&trees, blob.bytes.len())
                .then(|| std::mem::replace(&mut *trees, new_tree_pack(self.pack_size, key)));
            trees.add(&blob).map_err(|e| shared.fail(e))?;
            full
        };
        if let Some(full) = full {
            upload(shared, full, packs)?;
        }
        Ok(blob.bytes.len())
    }

    /// Called by each encoder as it stops: the last one gets the tree pack.
    fn encoder_stopped(&self) -> Option<PackWriter> {
        if self.encoders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let mut trees = self.trees.lock().expect("tree pack lock poisoned");
        let key = Arc::clone(trees.key());
        Some(std::mem::replace(
            &mut *trees,
            PackWriter::new(BlobType::Tree, key),
        ))
    }
}

/// Encoder thread: compresses and seals blobs until `jobs` closes, into a
/// data pack of its own and the shared tree pack, handing full packs to the
/// uploads. As it stops, it hands over its partial data pack, and the last
/// encoder to stop the partial tree pack (unless the backup is stopping).
pub(crate) fn run_encoder(
    shared: &Shared,
    compression: Compression,
    jobs: &Receiver<EncodeBatch>,
    packer: &Packer,
    packs: &tokio::sync::mpsc::Sender<FinishedPack>,
) {
    let mut data = None;
    let encoded = encode_blobs(shared, compression, jobs, packer, &mut data, packs);
    let trees = packer.encoder_stopped();
    if encoded.is_ok() && !shared.stopping() {
        for writer in [data, trees].into_iter().flatten() {
            if !writer.is_empty() && upload(shared, writer, packs).is_err() {
                return;
            }
        }
    }
}

fn encode_blobs(
    shared: &Shared,
    compression: Compression,
    jobs: &Receiver<EncodeBatch>,
    packer: &Packer,
    data: &mut Option<PackWriter>,
    packs: &tokio::sync::mpsc::Sender<FinishedPack>,
) -> Result<(), Stopped> {
    for job in jobs.iter().flatten() {
        if shared.stopping() {
            return Err(Stopped);
        }
        let (stored_len, counter) = match job.blob_type {
            BlobType::Data => (
                packer.add_data(shared, data, &job, packs)?,
                &shared.added.data_blobs,
            ),
            BlobType::Tree => (
                packer.add_tree(shared, compression, &job, packs)?,
                &shared.added.tree_blobs,
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let added = &shared.added;
        added
            .bytes
            .fetch_add(job.plaintext.len() as u64, Ordering::Relaxed);
        added
            .bytes_packed
            .fetch_add(stored_len as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Seals a pack's header and queues the pack for upload (waiting for room).
fn upload(
    shared: &Shared,
    writer: PackWriter,
    packs: &tokio::sync::mpsc::Sender<FinishedPack>,
) -> Result<(), Stopped> {
    let pack = writer
        .finish(shared.repo.key())
        .map_err(|e| shared.fail(e))?;
    packs.blocking_send(pack).map_err(|_| shared.stopped())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(len: usize, n: u8) -> EncodeJob {
        EncodeJob {
            blob_type: BlobType::Data,
            id: Id([n; 32]),
            plaintext: vec![n; len],
        }
    }

    #[test]
    fn pending_blobs_go_out_once_they_make_a_batch_or_when_sent() {
        let (encode, queued) = crossbeam_channel::unbounded();
        let mut pending = PendingBlobs::default();
        let small = ENCODE_BATCH_BYTES / 4;
        for n in 0..3 {
            pending.push(blob(small, n), &encode).unwrap();
        }
        assert!(queued.is_empty(), "three quarters of a batch stay");
        pending.push(blob(small, 3), &encode).unwrap();
        let batch = queued.try_recv().unwrap();
        let ids: Vec<u8> = batch.iter().map(|job| job.id.0[0]).collect();
        assert_eq!(ids, [0, 1, 2, 3], "a full batch goes in order");

        pending
            .push(blob(ENCODE_BATCH_BYTES * 2, 4), &encode)
            .unwrap();
        assert_eq!(
            queued.try_recv().unwrap().len(),
            1,
            "a large blob goes at once"
        );

        pending.push(blob(10, 5), &encode).unwrap();
        assert!(queued.is_empty());
        pending.send(&encode).unwrap();
        assert_eq!(queued.try_recv().unwrap()[0].id.0[0], 5, "send empties it");
        pending.send(&encode).unwrap();
        assert!(queued.is_empty(), "nothing held, nothing sent");

        drop(queued);
        pending.push(blob(10, 6), &encode).unwrap();
        assert_eq!(pending.send(&encode), Err(Stopped));
    }

    #[test]
    fn files_go_to_the_reader_pool_of_their_size() {
        let (small, small_jobs) = crossbeam_channel::unbounded();
        let (large, large_jobs) = crossbeam_channel::unbounded();
        let queues = FileQueues { small, large };
        for size in [1, SMALL_FILE_BYTES, SMALL_FILE_BYTES + 1] {
            let (result, _) = crossbeam_channel::bounded(1);
            let job = FileJob {
                path: PathBuf::from("f"),
                size,
                mtime_ns: 0,
                result,
                cancelled: None,
                largest_first: None,
            };
            queues.send(job).unwrap();
        }
        let sizes = |jobs: &Receiver<FileJob>| jobs.try_iter().map(|j| j.size).collect::<Vec<_>>();
        assert_eq!(sizes(&small_jobs), [1, SMALL_FILE_BYTES]);
        assert_eq!(sizes(&large_jobs), [SMALL_FILE_BYTES + 1]);
    }
}
