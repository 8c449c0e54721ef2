//! Packs: files in `data/` holding many blobs of one type, followed by a sealed
//! header that lists them.
//!
//! Layout (see `docs/FORMAT.md`, "Packs"):
//!
//! ```text
//! blob 0 ‖ blob 1 ‖ … ‖ blob n-1 ‖ seal(PackHeader, header) ‖ u32 LE length of the sealed header
//! header = version u8 (= 2) ‖ key_id u32 LE ‖ salt [16] ‖ n × entry       (format 2, written)
//!        | version u8 (= 1) ‖ n × entry                                   (format 1, read)
//! entry  = type u8 ‖ flags u8 (bit 0: compressed) ‖ content id [32] ‖ length u32 LE ‖ uncompressed length u32 LE (0 if not compressed)
//! ```
//!
//! In format 2 every blob is sealed under the blob key of `key_id` and
//! `salt` ([`arca_crypto::BlobKey`]); in format 1 each blob is an object
//! envelope of its own.
//!
//! Offsets are implicit: blob *i* starts where blob *i − 1* ends, and the blobs
//! must exactly fill the bytes before the sealed header. A pack's file name is
//! the storage ID (BLAKE3) of all its bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

mod spool;

use arca_crypto::{AUDIT_KEY_ID, BLOB_SALT_LEN, BlobKey, BlobKeyId, MasterKey, ObjectKind};
use arca_store::{DIRECT_IO_ALIGN, SpoolDir, SpoolFile};
use bytes::Bytes;

use self::spool::Spool;
use crate::blob::{BlobEnvelope, BlobType, Compression, EncodedBlob};
use crate::{Error, Id, Result};

/// Version byte at the start of the header plaintext of packs written now
/// (format 2: blobs under the pack's blob key).
pub const HEADER_VERSION: u8 = 2;
/// Version byte of format-1 headers (every blob its own envelope), still read.
pub const HEADER_VERSION_PER_BLOB: u8 = 1;
/// Bytes of a format-2 header before its entries: version, key id, salt.
pub const HEADER_PREFIX_LEN: usize = 1 + 4 + BLOB_SALT_LEN;
/// Bytes of one encoded header entry.
pub const HEADER_ENTRY_LEN: usize = 1 + 1 + 32 + 4 + 4;
/// Bytes of the trailer that holds the sealed header's length.
pub const TRAILER_LEN: usize = 4;
/// Flag bit: the blob's stored bytes are zstd-compressed.
pub(crate) const FLAG_COMPRESSED: u8 = 1;

/// A data pack written to disk as it fills (where the backend takes spool
/// files: a local repository) is written out whenever this much of it is
/// buffered: large enough for fast direct writes, small beside a pack.
pub(crate) const SPILL_BYTES: usize = 2 << 20;

/// Headroom over the pack size in the buffer of a pack built in memory: the
/// blob that fills a pack may end past the pack size.
pub(crate) const PACK_SLACK: usize = 1 << 20;

/// Where one blob sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackEntry {
    /// What the blob holds.
    pub blob_type: BlobType,
    /// Keyed content ID of the blob's plaintext.
    pub id: Id,
    /// Byte offset of the stored blob from the start of the pack.
    pub offset: u32,
    /// Stored (sealed) length in bytes.
    pub length: u32,
    /// `Some(plaintext length)` iff the stored bytes are zstd-compressed.
    pub uncompressed_length: Option<u32>,
}

/// Accumulates blobs of one type into a pack, in memory or, spooling, in a
/// file on disk as it fills.
#[derive(Debug)]
pub struct PackWriter {
    blob_type: BlobType,
    /// What every blob of the pack is sealed under.
    key: Arc<BlobKey>,
    /// The pack (the part not yet spooled) is `bytes[start..]`; the padding
    /// before it puts the pack at an address aligned for direct I/O in
    /// recycled buffers.
    bytes: Vec<u8>,
    start: usize,
    entries: Vec<PackEntry>,
    /// The pool slot of a recycled buffer.
    slot: Option<Arc<PackSlot>>,
    /// Where a spooling writer's bytes go.
    spool: Option<Spool>,
}

/// A bounded set of pack buffers.
///
/// Each buffer in use holds a slot; a backup takes one for each pack it
/// fills ([`PackWriter::recycling`] waits while every slot is taken), so
/// packs in memory, open, waiting and uploading, never cost more than
/// `limit` buffers. A slot is released when the finished pack is dropped
/// (its upload is over) or when every copy of its bytes is, whichever comes
/// first (a spooling writer's two slots when it finishes the pack); the
/// buffer itself comes back for reuse with the last copy of the bytes, so
/// filling pack after pack allocates, and faults in, no fresh
/// memory. Packs in these buffers start at an address aligned to
/// [`arca_store::DIRECT_IO_ALIGN`], so a local repository writes them with
/// direct I/O.
#[derive(Debug)]
pub struct PackBuffers {
    state: Mutex<PoolState>,
    released: Condvar,
    /// Capacity of a new buffer.
    capacity: usize,
    /// Slots, and free buffers kept, at most.
    limit: usize,
}

#[derive(Debug, Default)]
struct PoolState {
    free: Vec<Vec<u8>>,
    in_use: usize,
    closed: bool,
}

impl PackBuffers {
    /// A pool of `limit` (at least 2) slots for buffers of `capacity` bytes.
    pub fn new(capacity: usize, limit: usize) -> Arc<Self> {
        Arc::new(PackBuffers {
            state: Mutex::new(PoolState::default()),
            released: Condvar::new(),
            capacity,
            limit: limit.max(2),
        })
    }

    /// Slots taken and not yet released.
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    /// Wakes every waiting [`PackWriter::recycling`] with `None`, now and
    /// from now on (the writer is stopping).
    pub fn close(&self) {
        self.lock().closed = true;
        self.released.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().expect("pack buffer pool lock poisoned")
    }

    /// A slot and a buffer, once a slot is free; `None` once the pool is closed.
    fn take(self: &Arc<Self>) -> Option<(Arc<PackSlot>, Vec<u8>)> {
        let mut state = self
            .released
            .wait_while(self.lock(), |state| {
                !state.closed && state.in_use >= self.limit
            })
            .expect("pack buffer pool lock poisoned");
        if state.closed {
            return None;
        }
        state.in_use += 1;
        let buffer = state
            .free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity + DIRECT_IO_ALIGN));
        let slot = PackSlot {
            pool: Arc::clone(self),
            released: AtomicBool::new(false),
        };
        Some((Arc::new(slot), buffer))
    }

    /// Keeps `buffer` for reuse, unless the buffers in use and kept already
    /// reach the limit (a backend held on to this one past its upload).
    fn keep(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut state = self.lock();
        if state.free.len() + state.in_use < self.limit {
            state.free.push(buffer);
        }
    }
}

/// One buffer's claim on a [`PackBuffers`] slot, released once.
#[derive(Debug)]
struct PackSlot {
    pool: Arc<PackBuffers>,
    released: AtomicBool,
}

impl PackSlot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.pool.lock().in_use -= 1;
            self.pool.released.notify_one();
        }
    }

    /// Releases the slot and gives `buffer` back to the pool for reuse.
    fn give_back(&self, buffer: Vec<u8>) {
        self.release();
        self.pool.keep(buffer);
    }
}

/// The bytes of a finished pack (`bytes[start..]`); releases the slot and
/// returns the buffer to the pool when the last copy is dropped.
struct Recycled {
    bytes: Vec<u8>,
    start: usize,
    slot: Arc<PackSlot>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        self.slot.give_back(std::mem::take(&mut self.bytes));
    }
}

/// A complete pack, ready for [`crate::Repository::save_pack`].
#[derive(Debug)]
pub struct FinishedPack {
    /// Storage ID of the pack's bytes; the pack's file name.
    pub id: Id,
    /// How its blobs are sealed.
    pub envelope: BlobEnvelope,
    /// The whole pack file.
    pub contents: PackContents,
    /// The blobs it holds, in order.
    pub entries: Vec<PackEntry>,
    /// The pool slot of a recycled buffer, released when the pack is dropped.
    slot: Option<Arc<PackSlot>>,
}

/// Where a finished pack's bytes are.
#[derive(Debug)]
pub enum PackContents {
    /// In memory.
    Memory(Bytes),
    /// In a spool file, for [`arca_store::Backend::put_file`].
    Spooled(Arc<SpoolFile>),
}

impl PackContents {
    /// The bytes (read back from disk if spooled).
    pub fn to_bytes(&self) -> Result<Bytes> {
        match self {
            PackContents::Memory(bytes) => Ok(bytes.clone()),
            PackContents::Spooled(file) => Ok(file.read_all()?),
        }
    }
}

impl Drop for FinishedPack {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.release();
        }
    }
}

impl PackWriter {
    /// An empty pack for blobs of `blob_type`, sealed under `key`.
    pub fn new(blob_type: BlobType, key: Arc<BlobKey>) -> Self {
        PackWriter {
            blob_type,
            key,
            bytes: Vec::new(),
            start: 0,
            entries: Vec::new(),
            slot: None,
            spool: None,
        }
    }

    /// An empty pack whose buffer has room for `capacity` bytes.
    pub fn with_capacity(blob_type: BlobType, key: Arc<BlobKey>, capacity: usize) -> Self {
        let mut writer = PackWriter::new(blob_type, key);
        writer.bytes.reserve_exact(capacity);
        writer
    }

    /// An empty pack whose buffer comes from `buffers` (waiting for one if
    /// all are in use) and goes back there when the finished pack's bytes are
    /// dropped; `None` if the pool is closed.
    pub fn recycling(
        blob_type: BlobType,
        key: Arc<BlobKey>,
        buffers: &Arc<PackBuffers>,
    ) -> Option<Self> {
        let (slot, mut bytes) = buffers.take()?;
        let start = bytes.as_ptr().align_offset(DIRECT_IO_ALIGN);
        bytes.resize(start, 0);
        Some(PackWriter {
            blob_type,
            key,
            bytes,
            start,
            entries: Vec::new(),
            slot: Some(slot),
            spool: None,
        })
    }

    /// An empty pack written to `file` as it fills: once its buffer holds
    /// `spill_at` bytes, the whole blocks in it go to a thread of the pack's
    /// own that writes them out (directly) while the writer fills a second
    /// buffer. Both buffers come from `buffers`, as for
    /// [`PackWriter::recycling`], and go back when the pack is finished (so
    /// the pool needs two slots for every spooling pack open at a time).
    /// `Ok(None)` if the pool is closed.
    pub fn spooling(
        blob_type: BlobType,
        key: Arc<BlobKey>,
        buffers: &Arc<PackBuffers>,
        file: SpoolFile,
        spill_at: usize,
    ) -> Result<Option<Self>> {
        let Some(mut writer) = PackWriter::recycling(blob_type, key, buffers) else {
            return Ok(None);
        };
        let Some((spare_slot, spare)) = buffers.take() else {
            return Ok(None);
        };
        writer.spool = Some(Spool::start(file, spare, spare_slot, spill_at)?);
        Ok(Some(writer))
    }

    /// The type of blob this pack takes.
    pub fn blob_type(&self) -> BlobType {
        self.blob_type
    }

    /// The blob key every blob of this pack is sealed under.
    pub fn key(&self) -> &Arc<BlobKey> {
        &self.key
    }

    /// Appends a blob.
    ///
    /// # Panics
    /// If the blob's type differs from the pack's (data and tree blobs live in
    /// separate packs), or if the pack would exceed 4 GiB (callers finish packs
    /// at [`crate::config::Config::pack_size`], which is far smaller). Both are
    /// caller bugs, not data errors.
    ///
    /// # Errors
    /// Only a spooling writer fails, if its file cannot be written.
    pub fn add(&mut self, blob: &EncodedBlob) -> Result<()> {
        self.add_stored(
            blob.blob_type,
            blob.id,
            &blob.bytes,
            blob.uncompressed_length,
            &blob.key,
        )
    }

    /// Appends a blob's stored form, sealed under `sealed_by`, from a slice
    /// (a repack copies blobs out of the pack it read, without a buffer per
    /// blob): as it is if `sealed_by` is the pack's key, else opened and
    /// sealed again under the pack's key (a writer drew a new key meanwhile;
    /// a blob is never stored under a key its pack does not name). Panics
    /// as [`PackWriter::add`]; fails as it, and with [`Error::Corrupt`] if
    /// the blob does not open.
    pub fn add_stored(
        &mut self,
        blob_type: BlobType,
        id: Id,
        stored: &[u8],
        uncompressed_length: Option<u32>,
        sealed_by: &BlobKey,
    ) -> Result<()> {
        if sealed_by.id() != self.key.id() {
            let opened = sealed_by
                .open(blob_type.object_kind(), stored)
                .map_err(|e| Error::corrupt(format!("{blob_type} blob {id}"), e))?;
            return self.add_opened(blob_type, id, &opened, uncompressed_length);
        }
        let offset = self.start_blob(blob_type, id);
        self.bytes.extend_from_slice(stored);
        self.end_blob(blob_type, id, offset, uncompressed_length);
        self.spill(false)
    }

    /// Seals a blob's opened stored form (compressed, as
    /// `uncompressed_length` says, or not) under the pack's key and appends
    /// it: how a blob moves out of a pack sealed otherwise (see
    /// [`crate::blob::open_stored`]). Panics and fails as [`PackWriter::add`].
    pub fn add_opened(
        &mut self,
        blob_type: BlobType,
        id: Id,
        opened: &[u8],
        uncompressed_length: Option<u32>,
    ) -> Result<()> {
        let offset = self.start_blob(blob_type, id);
        self.key
            .seal_into(blob_type.object_kind(), opened, &mut self.bytes)?;
        self.end_blob(blob_type, id, offset, uncompressed_length);
        self.spill(false)
    }

    /// Compresses (where that pays off, see
    /// [`crate::blob::append_stored_form`]) and seals a blob straight into
    /// the pack's buffer: the same bytes as [`PackWriter::add`] of the
    /// [`crate::blob::encode_blob`] result, without a buffer of its own.
    /// The buffer does not grow if it [`fits`](PackWriter::fits)
    /// [`crate::blob::max_sealed_len`] of the plaintext. Panics and fails as
    /// [`PackWriter::add`], and as `append_stored_form` for a blob over 4 GiB.
    pub fn add_encoding(
        &mut self,
        blob_type: BlobType,
        id: Id,
        plaintext: &[u8],
        compression: Compression,
    ) -> Result<()> {
        let offset = self.start_blob(blob_type, id);
        let uncompressed_length =
            self.key
                .seal_with(blob_type.object_kind(), &mut self.bytes, |out| {
                    crate::blob::append_stored_form(plaintext, compression, out)
                })?;
        self.end_blob(blob_type, id, offset, uncompressed_length);
        self.spill(false)
    }

    /// A spooling writer hands the whole blocks in its buffer to its thread
    /// once there are `spill_at` bytes (any number if `all`), and goes on in
    /// its other buffer, starting with the partial block left over.
    fn spill(&mut self, all: bool) -> Result<()> {
        let Some(spool) = &mut self.spool else {
            return Ok(());
        };
        let buffered = self.bytes.len() - self.start;
        let whole = buffered / DIRECT_IO_ALIGN * DIRECT_IO_ALIGN;
        if whole == 0 || (!all && buffered < spool.spill_at) {
            return Ok(());
        }
        let mut next = spool.take_next()?;
        next.clear();
        let next_start = next.as_ptr().align_offset(DIRECT_IO_ALIGN);
        next.resize(next_start, 0);
        next.extend_from_slice(&self.bytes[self.start + whole..]);
        let full = std::mem::replace(&mut self.bytes, next);
        let blocks = self.start..self.start + whole;
        self.start = next_start;
        spool.hand_over(full, blocks)
    }

    /// Where the next blob starts; checks its type.
    fn start_blob(&self, blob_type: BlobType, id: Id) -> u32 {
        assert_eq!(
            blob_type, self.blob_type,
            "blob {id} added to a pack of another type"
        );
        u32::try_from(self.len()).expect("pack offsets fit in u32")
    }

    /// Records the blob appended since `offset`.
    fn end_blob(
        &mut self,
        blob_type: BlobType,
        id: Id,
        offset: u32,
        uncompressed_length: Option<u32>,
    ) {
        let end = u32::try_from(self.len()).expect("packs stay below 4 GiB");
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset,
            length: end - offset,
            uncompressed_length,
        });
    }

    /// Whether a blob of `len` stored bytes, and then the sealed header
    /// (which grows by an entry per blob) and the trailer, still fit in the
    /// pack's buffer without growing it.
    pub fn fits(&self, len: usize) -> bool {
        let header = HEADER_PREFIX_LEN + (self.entries.len() + 1) * HEADER_ENTRY_LEN;
        let tail = header + arca_crypto::SEAL_OVERHEAD + TRAILER_LEN;
        self.bytes.len() + len + tail <= self.bytes.capacity()
    }

    /// Bytes of blob data so far (the header is added by [`PackWriter::finish`]).
    pub fn len(&self) -> usize {
        let spooled = self.spool.as_ref().map_or(0, Spool::len);
        usize::try_from(spooled).expect("packs fit in memory addresses") + self.bytes.len()
            - self.start
    }

    /// Whether no blob was added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of blobs so far.
    pub fn blob_count(&self) -> usize {
        self.entries.len()
    }

    /// Appends the sealed header and trailer and names the pack. A spooling
    /// writer writes everything out and hands its buffer back.
    pub fn finish(mut self, key: &MasterKey) -> Result<FinishedPack> {
        self.spill(true)?;
        let envelope = BlobEnvelope::Pack(self.key.id());
        let header = encode_header(envelope, &self.entries);
        let before = self.bytes.len();
        key.seal_into(ObjectKind::PackHeader, &header, &mut self.bytes)?;
        let sealed_len = u32::try_from(self.bytes.len() - before).expect("pack headers fit in u32");
        self.bytes.extend_from_slice(&sealed_len.to_le_bytes());
        let entries = std::mem::take(&mut self.entries);
        if let Some(spool) = self.spool.take() {
            let rest = self.start..self.bytes.len();
            let (written, buffer) = spool.finish(std::mem::take(&mut self.bytes), rest);
            // Drop hands the buffer back to the pool.
            self.bytes = buffer.unwrap_or_default();
            let (file, id) = written?;
            return Ok(FinishedPack {
                id,
                envelope,
                contents: PackContents::Spooled(Arc::new(file)),
                entries,
                slot: None,
            });
        }
        let id = Id::storage_id(&self.bytes[self.start..]);
        let bytes = std::mem::take(&mut self.bytes);
        let slot = self.slot.take();
        let bytes = match &slot {
            Some(slot) => Bytes::from_owner(Recycled {
                bytes,
                start: self.start,
                slot: Arc::clone(slot),
            }),
            None => Bytes::from(bytes).slice(self.start..),
        };
        Ok(FinishedPack {
            id,
            envelope,
            contents: PackContents::Memory(bytes),
            entries,
            slot,
        })
    }
}

impl Drop for PackWriter {
    /// A recycling writer hands its buffer back: dropped unfinished (the
    /// backup stopped), or spooling, once finished.
    fn drop(&mut self) {
        if let Some(spool) = self.spool.take() {
            // The unfinished pack's file goes with its thread.
            drop(spool.abandon());
        }
        if let Some(slot) = self.slot.take() {
            slot.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

/// The open packs, one per blob type, of a writer that fills packs while
/// earlier ones are sealed and uploaded (a repack, a copy). Data packs spool
/// to disk as they fill where the backend takes spool files (as a backup's
/// do), so such a writer holds a few MiB of them, not whole packs, in
/// memory; tree packs (small, and cached) are built in memory.
#[derive(Debug)]
pub(crate) struct OpenPacks {
    /// Data, tree.
    open: [Option<PackWriter>; 2],
    /// Where new packs get their blob key.
    repo: crate::Repository,
    spool_dir: Option<SpoolDir>,
    /// Buffers of the spooling data packs: two for the open one and two for
    /// each still being finished by an upload task, so opening a pack never
    /// waits.
    buffers: Arc<PackBuffers>,
    pack_size: usize,
}

impl OpenPacks {
    /// Open packs for `repo`, whose writer finishes at most `uploads` packs
    /// at once (while it fills the next).
    pub(crate) fn new(repo: &crate::Repository, uploads: usize) -> Self {
        let config = repo.config();
        OpenPacks {
            open: [None, None],
            repo: repo.clone(),
            spool_dir: repo.backend().spool_dir(),
            buffers: PackBuffers::new(
                SPILL_BYTES + config.chunker.max as usize + PACK_SLACK,
                2 * (1 + uploads),
            ),
            pack_size: config.pack_size as usize,
        }
    }

    /// The open pack for blobs of `blob_type`, opened if there is none.
    pub(crate) fn for_type(&mut self, blob_type: BlobType) -> Result<&mut PackWriter> {
        let slot = &mut self.open[usize::from(blob_type == BlobType::Tree)];
        if slot.is_none() {
            let spool_file = match (&self.spool_dir, blob_type) {
                (Some(dir), BlobType::Data) => match dir.create() {
                    Ok(file) => Some(file),
                    Err(error) => {
                        tracing::warn!(%error, "cannot spool packs, building them in memory");
                        self.spool_dir = None;
                        None
                    }
                },
                _ => None,
            };
            let key = self.repo.blob_key()?;
            *slot = Some(match spool_file {
                Some(file) => {
                    PackWriter::spooling(blob_type, key, &self.buffers, file, SPILL_BYTES)?
                        .expect("the open packs' buffer pool is never closed")
                }
                None => PackWriter::with_capacity(blob_type, key, self.pack_size + PACK_SLACK),
            });
        }
        Ok(slot.as_mut().expect("just opened"))
    }

    /// The open pack for blobs of `blob_type` if it has reached the pack
    /// size (it is then no longer open).
    pub(crate) fn take_full(&mut self, blob_type: BlobType) -> Option<PackWriter> {
        let slot = &mut self.open[usize::from(blob_type == BlobType::Tree)];
        slot.take_if(|writer| writer.len() >= self.pack_size)
    }

    /// Every pack still open, however full.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = PackWriter> + '_ {
        self.open.iter_mut().filter_map(Option::take)
    }
}

/// A decoded pack header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackHeader {
    /// How the pack's blobs are sealed: format 2 names its blob key.
    pub envelope: BlobEnvelope,
    /// The blobs, in order.
    pub entries: Vec<PackEntry>,
}

/// Encodes the plaintext header for `entries` (which must be contiguous from
/// offset 0, as [`PackWriter`] makes them) of a pack sealed as `envelope`:
/// format 2 for a pack blob key, format 1 (only written by tests, as
/// builds before format 2 did) for blobs sealed one by one.
pub fn encode_header(envelope: BlobEnvelope, entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_PREFIX_LEN + entries.len() * HEADER_ENTRY_LEN);
    match envelope {
        BlobEnvelope::Pack(key) => {
            out.push(HEADER_VERSION);
            out.extend_from_slice(&key.key_id.to_le_bytes());
            out.extend_from_slice(&key.salt);
        }
        BlobEnvelope::PerBlob => out.push(HEADER_VERSION_PER_BLOB),
    }
    for entry in entries {
        out.push(entry.blob_type.to_byte());
        out.push(if entry.uncompressed_length.is_some() {
            FLAG_COMPRESSED
        } else {
            0
        });
        out.extend_from_slice(&entry.id.0);
        out.extend_from_slice(&entry.length.to_le_bytes());
        out.extend_from_slice(&entry.uncompressed_length.unwrap_or(0).to_le_bytes());
    }
    out
}

/// Decodes a plaintext header; `blobs_len` is the number of bytes before the
/// sealed header, which the blobs must fill exactly.
pub fn decode_header(header: &[u8], blobs_len: u64) -> Result<PackHeader> {
    let bad = |reason: String| Error::corrupt("pack header", reason);
    let (&version, rest) = header
        .split_first()
        .ok_or_else(|| bad("empty header".into()))?;
    let (envelope, body) = match version {
        HEADER_VERSION => {
            let (key_id, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("truncated key id".into()))?;
            let (salt, body) = rest
                .split_first_chunk::<BLOB_SALT_LEN>()
                .ok_or_else(|| bad("truncated salt".into()))?;
            let key_id = u32::from_le_bytes(*key_id);
            if key_id == AUDIT_KEY_ID {
                return Err(bad(format!("key id {key_id:#x} names no data key")));
            }
            let key = BlobKeyId {
                key_id,
                salt: *salt,
            };
            (BlobEnvelope::Pack(key), body)
        }
        HEADER_VERSION_PER_BLOB => (BlobEnvelope::PerBlob, rest),
        _ => {
            return Err(bad(format!(
                "unsupported header version {version}; this build reads versions \
                 {HEADER_VERSION_PER_BLOB} and {HEADER_VERSION} (upgrade arca?)"
            )));
        }
    };
    if body.len() % HEADER_ENTRY_LEN != 0 {
        return Err(bad(format!(
            "{} bytes of entries is not a multiple of {HEADER_ENTRY_LEN}",
            body.len()
        )));
    }
    let mut entries = Vec::with_capacity(body.len() / HEADER_ENTRY_LEN);
    let mut offset: u64 = 0;
    for record in body.chunks_exact(HEADER_ENTRY_LEN) {
        let (blob_type, id, length, uncompressed_length) = decode_blob_record(record)
            .map_err(|reason| bad(format!("entry {}: {reason}", entries.len())))?;
        let end = offset + u64::from(length);
        if end > blobs_len {
            return Err(bad(format!(
                "entry {} ends at byte {end}, past the blob area ({blobs_len} bytes)",
                entries.len()
            )));
        }
        entries.push(PackEntry {
            blob_type,
            id,
            offset: offset as u32,
            length,
            uncompressed_length,
        });
        offset = end;
    }
    if offset != blobs_len {
        return Err(bad(format!(
            "blobs cover {offset} bytes but the pack has {blobs_len} bytes before its header"
        )));
    }
    Ok(PackHeader { envelope, entries })
}

/// Decodes `type u8 ‖ flags u8 ‖ id [32] ‖ length u32 ‖ uncompressed u32`, the
/// blob record shared by pack headers and index files.
pub(crate) fn decode_blob_record(
    record: &[u8],
) -> std::result::Result<(BlobType, Id, u32, Option<u32>), String> {
    let blob_type =
        BlobType::from_byte(record[0]).ok_or_else(|| format!("unknown blob type {}", record[0]))?;
    let flags = record[1];
    if flags & !FLAG_COMPRESSED != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let id = Id(record[2..34].try_into().expect("32 bytes"));
    let length = u32::from_le_bytes(record[34..38].try_into().expect("4 bytes"));
    let uncompressed = u32::from_le_bytes(record[38..42].try_into().expect("4 bytes"));
    let uncompressed_length = match (flags & FLAG_COMPRESSED != 0, uncompressed) {
        (true, 0) => return Err("compressed blob with uncompressed length 0".into()),
        (true, n) => Some(n),
        (false, 0) => None,
        (false, n) => return Err(format!("uncompressed blob with uncompressed length {n}")),
    };
    Ok((blob_type, id, length, uncompressed_length))
}

/// The sealed header's length, from a pack's last [`TRAILER_LEN`] bytes.
pub fn header_len_from_trailer(trailer: &[u8; TRAILER_LEN]) -> u32 {
    u32::from_le_bytes(*trailer)
}

/// Opens and decodes a sealed header, given the total pack length.
pub fn open_header(key: &MasterKey, sealed_header: &[u8], pack_len: u64) -> Result<PackHeader> {
    let overhead = sealed_header.len() as u64 + TRAILER_LEN as u64;
    let blobs_len = pack_len.checked_sub(overhead).ok_or_else(|| {
        Error::corrupt(
            "pack header",
            format!("header length {} exceeds the pack", sealed_header.len()),
        )
    })?;
    let header = key
        .open(ObjectKind::PackHeader, sealed_header)
        .map_err(|e| Error::corrupt("pack header", e))?;
    decode_header(&header, blobs_len)
}

/// Reads the entries of a whole pack file (untrusted bytes).
pub fn parse_header(key: &MasterKey, pack_bytes: &[u8]) -> Result<PackHeader> {
    let bad = |reason: String| Error::corrupt("pack header", reason);
    let trailer_start = pack_bytes.len().checked_sub(TRAILER_LEN).ok_or_else(|| {
        bad(format!(
            "pack of {} bytes is too short for a trailer",
            pack_bytes.len()
        ))
    })?;
    let trailer: &[u8; TRAILER_LEN] = pack_bytes[trailer_start..]
        .try_into()
        .expect("TRAILER_LEN bytes");
    let header_len = header_len_from_trailer(trailer) as usize;
    let header_start = trailer_start.checked_sub(header_len).ok_or_else(|| {
        bad(format!(
            "header length {header_len} exceeds the pack ({} bytes)",
            pack_bytes.len()
        ))
    })?;
    open_header(
        key,
        &pack_bytes[header_start..trailer_start],
        pack_bytes.len() as u64,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::blob::{encode_blob, max_sealed_len};
    use crate::testing::{
        any_blob_type, any_envelope, any_id, any_uncompressed_length, test_blob_key, test_key,
    };

    /// Entries laid out contiguously from offset 0, as a pack writer makes them.
    fn any_entries() -> impl Strategy<Value = Vec<PackEntry>> {
        proptest::collection::vec(
            (
                any_blob_type(),
                any_id(),
                0u32..100_000,
                any_uncompressed_length(),
            ),
            0..50,
        )
        .prop_map(|raw| {
            let mut offset = 0;
            raw.into_iter()
                .map(|(blob_type, id, length, uncompressed_length)| {
                    let entry = PackEntry {
                        blob_type,
                        id,
                        offset,
                        length,
                        uncompressed_length,
                    };
                    offset += length;
                    entry
                })
                .collect()
        })
    }

    fn blobs_len(entries: &[PackEntry]) -> u64 {
        entries.iter().map(|e| u64::from(e.length)).sum()
    }

    /// The whole pack file.
    fn bytes(pack: &FinishedPack) -> Bytes {
        pack.contents.to_bytes().unwrap()
    }

    fn pack_of(blob_type: BlobType, plaintexts: &[&[u8]]) -> FinishedPack {
        let key = test_key();
        let mut writer = PackWriter::new(blob_type, test_blob_key());
        for plaintext in plaintexts {
            let id = key.content_id(plaintext);
            writer
                .add(
                    &encode_blob(
                        &test_blob_key(),
                        blob_type,
                        id,
                        plaintext,
                        Compression::default(),
                    )
                    .unwrap(),
                )
                .unwrap();
        }
        writer.finish(key).unwrap()
    }

    #[test]
    fn writer_layout_matches_the_header() {
        let plaintexts: [&[u8]; 3] = [b"one", &[b'x'; 5000], b""];
        let pack = pack_of(BlobType::Data, &plaintexts);
        assert_eq!(pack.id, Id::storage_id(&bytes(&pack)));
        assert_eq!(pack.entries.len(), 3);
        assert_eq!(pack.entries[1].uncompressed_length, Some(5000));
        let parsed = parse_header(test_key(), &bytes(&pack)).unwrap().entries;
        assert_eq!(parsed, pack.entries);
        assert_blobs_decode_to(&pack, &plaintexts);
    }

    /// `plaintext` as an uncompressed data blob.
    fn uncompressed_data_blob(plaintext: &[u8]) -> EncodedBlob {
        let key = test_key();
        encode_blob(
            &test_blob_key(),
            BlobType::Data,
            key.content_id(plaintext),
            plaintext,
            Compression::OFF,
        )
        .unwrap()
    }

    /// Every blob of `pack` decodes (and verifies) to the matching plaintext.
    fn assert_blobs_decode_to(pack: &FinishedPack, plaintexts: &[&[u8]]) {
        assert_eq!(pack.entries.len(), plaintexts.len());
        let bytes = bytes(pack);
        for (entry, plaintext) in pack.entries.iter().zip(plaintexts) {
            let stored = &bytes[entry.offset as usize..(entry.offset + entry.length) as usize];
            let decoded = crate::blob::decode_blob(
                test_key(),
                pack.envelope,
                entry.blob_type,
                stored,
                entry.uncompressed_length,
                &entry.id,
            )
            .unwrap();
            assert_eq!(decoded, *plaintext);
        }
    }

    /// Encoding blobs straight into a pack gives the same layout and
    /// contents as adding encoded blobs, and a buffer with room for the
    /// worst case does not grow.
    #[test]
    fn add_encoding_matches_add() {
        let key = test_key();
        let noise: Vec<u8> = (0..5000).map(|_| rand::random::<u8>()).collect();
        let plaintexts: [&[u8]; 4] = [b"one", &[b'x'; 5000], b"", &noise];
        let room = plaintexts
            .iter()
            .map(|p| max_sealed_len(p.len()))
            .sum::<usize>();
        let mut writer = PackWriter::with_capacity(BlobType::Data, test_blob_key(), room + 1024);
        let buffer = writer.bytes.as_ptr();
        for plaintext in plaintexts {
            let id = key.content_id(plaintext);
            assert!(writer.fits(max_sealed_len(plaintext.len())));
            writer
                .add_encoding(BlobType::Data, id, plaintext, Compression::default())
                .unwrap();
        }
        assert_eq!(writer.bytes.as_ptr(), buffer, "the buffer did not move");
        let sealed = writer.finish(key).unwrap();
        let added = pack_of(BlobType::Data, &plaintexts);
        assert_eq!(sealed.entries, added.entries);
        assert_eq!(
            parse_header(key, &bytes(&sealed)).unwrap().entries,
            sealed.entries
        );
        assert_blobs_decode_to(&sealed, &plaintexts);
    }

    /// A writer with reserved room fills it without reallocating.
    #[test]
    fn a_reserved_pack_fills_without_growing() {
        let key = test_key();
        let mut writer = PackWriter::with_capacity(BlobType::Data, test_blob_key(), 64 * 1024);
        let reserved = writer.bytes.capacity();
        assert!(reserved >= 64 * 1024);
        let buffer = writer.bytes.as_ptr();
        let blob = uncompressed_data_blob(&[7; 1000]);
        let mut added = 0;
        while writer.len() + blob.bytes.len() <= 64 * 1024 {
            writer.add(&blob).unwrap();
            added += 1;
        }
        assert!(added > 50);
        assert_eq!(writer.bytes.capacity(), reserved);
        assert_eq!(writer.bytes.as_ptr(), buffer, "never moved");
        let pack = writer.finish(key).unwrap();
        assert_eq!(
            parse_header(key, &bytes(&pack)).unwrap().entries.len(),
            added
        );
    }

    /// A finished pack's slot is free once the pack is dropped; its buffer
    /// serves the next pack once every copy of the bytes is dropped too; an
    /// unfinished writer hands both back when dropped.
    #[test]
    fn pack_buffers_come_back_after_the_last_copy_is_dropped() {
        let key = test_key();
        let buffers = PackBuffers::new(64 * 1024, 2);
        let mut writer = PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap();
        let blob = uncompressed_data_blob(b"abc");
        writer.add(&blob).unwrap();
        let pack = writer.finish(key).unwrap();
        assert_eq!(
            parse_header(key, &bytes(&pack)).unwrap().entries,
            pack.entries
        );
        assert_eq!(
            bytes(&pack).as_ptr().align_offset(DIRECT_IO_ALIGN),
            0,
            "pooled packs are aligned for direct I/O"
        );
        let copy = bytes(&pack).clone();
        drop(pack);
        assert_eq!(buffers.in_use(), 0, "the upload is over: the slot is free");
        assert_eq!(
            buffers.lock().free.len(),
            0,
            "a copy still holds the buffer"
        );
        drop(copy);
        assert_eq!(buffers.lock().free.len(), 1);
        let reused = PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap();
        assert!(reused.is_empty());
        assert_eq!(
            reused.bytes.capacity(),
            64 * 1024 + DIRECT_IO_ALIGN,
            "the returned buffer keeps its capacity"
        );
        drop(reused);
        assert_eq!(buffers.in_use(), 0);
    }

    /// A pack filled while `fits` says so never outgrows its pooled buffer,
    /// header included, even with thousands of tiny blobs.
    #[test]
    fn a_pack_filled_while_it_fits_keeps_its_buffer() {
        let key = test_key();
        let buffers = PackBuffers::new(256 * 1024, 2);
        let mut writer = PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap();
        let capacity = writer.bytes.capacity();
        let mut n = 0u32;
        loop {
            let blob = uncompressed_data_blob(&n.to_le_bytes());
            if !writer.fits(blob.bytes.len()) {
                break;
            }
            writer.add(&blob).unwrap();
            n += 1;
        }
        assert!(n > 1000, "{n} blobs");
        let pack = writer.finish(key).unwrap();
        assert!(bytes(&pack).len() <= capacity);
        assert_eq!(
            parse_header(key, &bytes(&pack)).unwrap().entries.len(),
            n as usize
        );
        drop(pack);
        let reused = PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap();
        assert_eq!(
            reused.bytes.capacity(),
            capacity,
            "the buffer was not reallocated"
        );
    }

    /// With every buffer in use a writer waits; closing the pool releases it
    /// with `None`.
    #[test]
    fn a_spooling_writer_dropped_unfinished_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let buffers = PackBuffers::new(64 * 1024, 2);
        let file = SpoolFile::create(dir.path()).unwrap();
        let mut writer =
            PackWriter::spooling(BlobType::Data, test_blob_key(), &buffers, file, 4096)
                .unwrap()
                .unwrap();
        writer.add(&uncompressed_data_blob(&[7; 10_000])).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "spilled to its file"
        );
        drop(writer);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "file removed"
        );
        assert_eq!(buffers.in_use(), 0, "buffer back in the pool");
    }

    #[test]
    fn closing_the_pool_releases_a_waiting_writer() {
        let buffers = PackBuffers::new(1024, 2);
        let held = [
            PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap(),
            PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).unwrap(),
        ];
        let waiting = std::thread::spawn({
            let buffers = Arc::clone(&buffers);
            move || PackWriter::recycling(BlobType::Data, test_blob_key(), &buffers).is_none()
        });
        buffers.close();
        assert!(waiting.join().unwrap(), "a closed pool hands out no buffer");
        drop(held);
        assert_eq!(buffers.in_use(), 0);
    }

    #[test]
    fn empty_pack_round_trips() {
        let pack = PackWriter::new(BlobType::Tree, test_blob_key())
            .finish(test_key())
            .unwrap();
        assert!(pack.entries.is_empty());
        assert_eq!(
            parse_header(test_key(), &bytes(&pack)).unwrap().entries,
            vec![]
        );
    }

    #[test]
    fn writer_counts() {
        let mut writer = PackWriter::new(BlobType::Data, test_blob_key());
        assert!(writer.is_empty());
        let blob = uncompressed_data_blob(b"abc");
        writer.add(&blob).unwrap();
        writer.add(&blob).unwrap();
        assert_eq!(writer.blob_count(), 2);
        assert_eq!(writer.len(), 2 * blob.bytes.len());
    }

    #[test]
    #[should_panic(expected = "another type")]
    fn mixing_blob_types_is_a_bug() {
        let key = test_key();
        let blob = encode_blob(
            &test_blob_key(),
            BlobType::Tree,
            key.content_id(b"{}"),
            b"{}",
            Compression::OFF,
        )
        .unwrap();
        PackWriter::new(BlobType::Data, test_blob_key())
            .add(&blob)
            .unwrap();
    }

    #[test]
    fn damaged_packs_are_corrupt() {
        let pack = pack_of(BlobType::Data, &[b"alpha", b"beta"]);
        let bytes = bytes(&pack).to_vec();
        let is_corrupt =
            |bytes: &[u8]| matches!(parse_header(test_key(), bytes), Err(Error::Corrupt { .. }));
        assert!(is_corrupt(&bytes[..bytes.len() - 1]), "truncated trailer");
        assert!(
            is_corrupt(&bytes[1..]),
            "truncated front: blobs no longer fill the space"
        );
        assert!(is_corrupt(&[]), "empty");
        let mut flipped = bytes.clone();
        let header_byte = bytes.len() - 10;
        flipped[header_byte] ^= 0x80;
        assert!(is_corrupt(&flipped), "flipped header bit");
        let mut huge_len = bytes.clone();
        let trailer = bytes.len() - 4;
        huge_len[trailer..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(is_corrupt(&huge_len), "header length past the start");
    }

    #[test]
    fn header_records_are_checked() {
        let entry = PackEntry {
            blob_type: BlobType::Data,
            id: Id::default(),
            offset: 0,
            length: 10,
            uncompressed_length: None,
        };
        let key = BlobKeyId {
            key_id: 7,
            salt: [9; BLOB_SALT_LEN],
        };
        let good = encode_header(BlobEnvelope::Pack(key), &[entry]);
        assert_eq!(good.len(), HEADER_PREFIX_LEN + HEADER_ENTRY_LEN);
        assert_eq!(
            decode_header(&good, 10).unwrap(),
            PackHeader {
                envelope: BlobEnvelope::Pack(key),
                entries: vec![entry]
            }
        );
        assert!(
            decode_header(&good, 11).is_err(),
            "blobs must fill the area exactly"
        );
        assert!(decode_header(&good, 9).is_err(), "blob past the area");
        let mut bad_version = good.clone();
        bad_version[0] = 3;
        assert!(decode_header(&bad_version, 10).is_err());
        let mut no_data_key = good.clone();
        no_data_key[1..5].copy_from_slice(&AUDIT_KEY_ID.to_le_bytes());
        assert!(
            decode_header(&no_data_key, 10).is_err(),
            "key id 0xffffffff"
        );
        let p = HEADER_PREFIX_LEN;
        let mut bad_type = good.clone();
        bad_type[p] = 7;
        assert!(decode_header(&bad_type, 10).is_err());
        let mut bad_flags = good.clone();
        bad_flags[p + 1] = 0x02;
        assert!(decode_header(&bad_flags, 10).is_err());
        let mut compressed_zero = good.clone();
        compressed_zero[p + 1] = FLAG_COMPRESSED;
        assert!(
            decode_header(&compressed_zero, 10).is_err(),
            "compressed with length 0"
        );
        let mut plain_with_length = good.clone();
        plain_with_length[p + HEADER_ENTRY_LEN - 4] = 5;
        assert!(
            decode_header(&plain_with_length, 10).is_err(),
            "uncompressed blob with a length"
        );
        assert!(
            decode_header(&good[..good.len() - 1], 10).is_err(),
            "partial record"
        );
        for cut in 1..p {
            assert!(decode_header(&good[..cut], 0).is_err(), "{cut}-byte prefix");
        }
        // Format 1, as builds before format 2 wrote it: version 1, no key.
        let v1 = encode_header(BlobEnvelope::PerBlob, &[entry]);
        assert_eq!(v1[0], HEADER_VERSION_PER_BLOB);
        assert_eq!(v1.len(), 1 + HEADER_ENTRY_LEN);
        assert_eq!(
            decode_header(&v1, 10).unwrap(),
            PackHeader {
                envelope: BlobEnvelope::PerBlob,
                entries: vec![entry]
            }
        );
    }

    /// A blob sealed under another key than its pack's is sealed again as
    /// it is added, never stored under a key its pack does not name.
    #[test]
    fn blobs_under_another_key_are_sealed_again() {
        let other = Arc::new(test_key().fresh_blob_key().unwrap());
        let plaintext = b"sealed under another salt";
        let blob = encode_blob(
            &other,
            BlobType::Data,
            test_key().content_id(plaintext),
            plaintext,
            Compression::OFF,
        )
        .unwrap();
        let mut writer = PackWriter::new(BlobType::Data, test_blob_key());
        writer.add(&blob).unwrap();
        let pack = writer.finish(test_key()).unwrap();
        assert_eq!(pack.envelope, BlobEnvelope::Pack(test_blob_key().id()));
        let stored = bytes(&pack);
        assert_ne!(&stored[..blob.bytes.len()], &blob.bytes[..]);
        assert_blobs_decode_to(&pack, &[plaintext]);
        let mut damaged = blob.clone();
        damaged.bytes[20] ^= 1;
        let mut writer = PackWriter::new(BlobType::Data, test_blob_key());
        assert!(matches!(writer.add(&damaged), Err(Error::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn header_round_trips(envelope in any_envelope(), entries in any_entries()) {
            let encoded = encode_header(envelope, &entries);
            let prefix = if envelope == BlobEnvelope::PerBlob { 1 } else { HEADER_PREFIX_LEN };
            prop_assert_eq!(encoded.len(), prefix + entries.len() * HEADER_ENTRY_LEN);
            prop_assert_eq!(
                decode_header(&encoded, blobs_len(&entries)).unwrap(),
                PackHeader { envelope, entries }
            );
        }

        #[test]
        fn writer_then_parse_round_trips(
            blob_type in any_blob_type(),
            plaintexts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20),
        ) {
            let refs: Vec<&[u8]> = plaintexts.iter().map(Vec::as_slice).collect();
            let pack = pack_of(blob_type, &refs);
            prop_assert_eq!(parse_header(test_key(), &bytes(&pack)).unwrap().entries, pack.entries.clone());
        }

        /// A pack written to disk as it fills holds the same blobs and
        /// entries as one built in memory, and is named by its bytes; its buffer never
        /// grows past what it was given and is back in the pool once the pack
        /// is finished.
        #[test]
        fn a_spooled_pack_is_the_pack_built_in_memory(
            lens in proptest::collection::vec(0usize..40_000, 0..24),
            spill_at in 1usize..20_000,
        ) {
            let key = test_key();
            let blobs: Vec<EncodedBlob> = lens
                .iter()
                .enumerate()
                .map(|(n, &len)| {
                    let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + n) as u8).collect();
                    uncompressed_data_blob(&plaintext)
                })
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let buffers = PackBuffers::new(64 * 1024, 2);
            let file = SpoolFile::create(dir.path()).unwrap();
            let mut spooling = PackWriter::spooling(BlobType::Data, test_blob_key(), &buffers, file, spill_at).unwrap().unwrap();
            let capacity = spooling.bytes.capacity();
            let mut in_memory = PackWriter::new(BlobType::Data, test_blob_key());
            for blob in &blobs {
                spooling.add(blob).unwrap();
                in_memory.add(blob).unwrap();
                prop_assert_eq!(spooling.len(), in_memory.len());
                prop_assert!(spooling.bytes.len() - spooling.start < spill_at.max(DIRECT_IO_ALIGN));
            }
            prop_assert_eq!(spooling.bytes.capacity(), capacity, "the buffer never grew");
            let spooled = spooling.finish(key).unwrap();
            let expected = in_memory.finish(key).unwrap();
            prop_assert!(matches!(spooled.contents, PackContents::Spooled(_)));
            let (spooled_bytes, expected_bytes) = (bytes(&spooled), bytes(&expected));
            prop_assert_eq!(spooled.id, Id::storage_id(&spooled_bytes));
            prop_assert_eq!(&spooled.entries, &expected.entries);
            prop_assert_eq!(parse_header(key, &spooled_bytes).unwrap().entries, expected.entries.clone());
            // The same blobs; the sealed headers differ only by their nonces.
            let blobs_len = blobs_len(&spooled.entries) as usize;
            prop_assert_eq!(&spooled_bytes[..blobs_len], &expected_bytes[..blobs_len]);
            prop_assert_eq!(spooled_bytes.len(), expected_bytes.len());
            prop_assert_eq!(buffers.in_use(), 0, "the buffer is back in the pool");
        }

        #[test]
        fn damaged_headers_decode_canonically_or_not_at_all(
            envelope in any_envelope(),
            entries in any_entries(),
            position in any::<proptest::sample::Index>(),
            value in any::<u8>(),
        ) {
            let mut header = encode_header(envelope, &entries);
            let i = position.index(header.len());
            header[i] = value;
            if let Ok(decoded) = decode_header(&header, blobs_len(&entries)) {
                prop_assert_eq!(encode_header(decoded.envelope, &decoded.entries), header);
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..500), blobs_len in any::<u64>()) {
            let _ = decode_header(&bytes, blobs_len);
            let _ = parse_header(test_key(), &bytes);
        }
    }
}
