//! Writing a pack to disk as it fills, on a thread of the pack's own.
//!
//! A spooling [`super::PackWriter`] fills one of two buffers while the other
//! is written: a spill hands the full buffer to the pack's writer thread and
//! goes on in the other one, so the encoder that spills (holding the open
//! pack) only waits for the disk when the previous spill is still being
//! written. The thread writes and hashes the pieces in the order they were
//! handed over, which is the pack's byte order.

use std::ops::Range;
use std::sync::Arc;
use std::thread::JoinHandle;

use arca_crypto::StorageIdHasher;
use arca_store::SpoolFile;
use crossbeam_channel::{Receiver, Sender};

use super::PackSlot;
use crate::{Error, Id, Result};

/// A buffer and the part of it to write.
type Piece = (Vec<u8>, Range<usize>);

/// The writer thread of one spooling pack.
#[derive(Debug)]
pub(super) struct Spool {
    /// Pieces for the thread, in pack order.
    pieces: Sender<Piece>,
    /// Buffers the thread has written, back for the next spill.
    written: Receiver<Vec<u8>>,
    /// The second buffer, until the first spill.
    spare: Option<Vec<u8>>,
    /// The pool slot of the second buffer.
    spare_slot: Arc<PackSlot>,
    thread: JoinHandle<Result<(SpoolFile, Id)>>,
    /// Bytes handed to the thread so far.
    len: u64,
    /// The writer spills once its buffer holds this many bytes.
    pub(super) spill_at: usize,
}

impl Spool {
    /// Starts the thread writing to `file`; `spare` (from the pool, taken
    /// with `spare_slot`) is the buffer filled after the first spill.
    pub(super) fn start(
        file: SpoolFile,
        spare: Vec<u8>,
        spare_slot: Arc<PackSlot>,
        spill_at: usize,
    ) -> Result<Self> {
        let (pieces, to_write) = crossbeam_channel::unbounded();
        let (was_written, written) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("arca-pack-spool".into())
            .spawn(move || write_pieces(file, &to_write, &was_written))
            .map_err(|err| Error::BackupIncomplete {
                reason: format!("cannot start a pack writer thread: {err}"),
            })?;
        Ok(Spool {
            pieces,
            written,
            spare: Some(spare),
            spare_slot,
            thread,
            len: 0,
            spill_at,
        })
    }

    /// Bytes handed to the thread so far.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The buffer to fill next: the spare one, or the one the thread wrote
    /// last (waiting while it still writes it).
    pub(super) fn take_next(&mut self) -> Result<Vec<u8>> {
        match self.spare.take() {
            Some(spare) => Ok(spare),
            None => self.written.recv().map_err(|_| thread_gone()),
        }
    }

    /// Hands `buffer[range]` to the thread.
    pub(super) fn hand_over(&mut self, buffer: Vec<u8>, range: Range<usize>) -> Result<()> {
        self.len += range.len() as u64;
        self.pieces.send((buffer, range)).map_err(|_| thread_gone())
    }

    /// Hands over the last piece and waits for the thread: the file with the
    /// storage ID of its bytes, and the buffer that goes back with the
    /// writer's own slot (the other one goes back here).
    pub(super) fn finish(
        self,
        last: Vec<u8>,
        range: Range<usize>,
    ) -> (Result<(SpoolFile, Id)>, Option<Vec<u8>>) {
        let handed = self.pieces.send((last, range)).map_err(|_| thread_gone());
        let (written, buffer) = self.stop();
        (handed.and(written), buffer)
    }

    /// Stops the thread without finishing the pack (its file is removed) and
    /// returns the buffer for the writer's own slot.
    pub(super) fn abandon(self) -> Option<Vec<u8>> {
        self.stop().1
    }

    fn stop(self) -> (Result<(SpoolFile, Id)>, Option<Vec<u8>>) {
        let Spool {
            pieces,
            written,
            spare,
            spare_slot,
            thread,
            ..
        } = self;
        drop(pieces);
        let result = thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let mut buffers = spare.into_iter().chain(written.try_iter());
        match buffers.next() {
            Some(buffer) => spare_slot.give_back(buffer),
            None => spare_slot.release(),
        }
        (result, buffers.next())
    }
}

fn thread_gone() -> Error {
    Error::BackupIncomplete {
        reason: "a pack writer thread stopped early".into(),
    }
}

/// The thread: appends each piece to `file` and hashes it, and sends the
/// buffer back. After a failed write it only sends buffers back; the error
/// is reported when the pack is finished.
fn write_pieces(
    mut file: SpoolFile,
    pieces: &Receiver<Piece>,
    written: &Sender<Vec<u8>>,
) -> Result<(SpoolFile, Id)> {
    let mut hasher = StorageIdHasher::default();
    let mut failure = None;
    for (buffer, range) in pieces {
        if failure.is_none() {
            let piece = &buffer[range];
            match file.append(piece) {
                Ok(()) => hasher.update(piece),
                Err(err) => failure = Some(err),
            }
        }
        // The writer may be gone already; the buffer is then freed here.
        let _ = written.send(buffer);
    }
    match failure {
        Some(err) => Err(err.into()),
        None => Ok((file, hasher.id())),
    }
}
