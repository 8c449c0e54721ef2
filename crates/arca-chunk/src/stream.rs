//! Chunking a `Read` stream with a bounded, zero-copy buffer.

use std::io::Read;

use bytes::Bytes;

use crate::Chunker;

/// Iterator behind [`Chunker::chunks`].
///
/// A chunk is handed out only once its end is certain (see
/// [`Chunks::certain_cut`]), which is why the boundaries equal those of
/// [`Chunker::cut_points`] over the whole input.
pub(crate) struct Chunks<R> {
    chunker: Chunker,
    reader: R,
    /// Read but not yet handed out; chunks are split off its front.
    window: Bytes,
    /// The reader is exhausted: whatever is in `window` is the rest of the input.
    eof: bool,
    /// A read error was yielded; the stream is over.
    failed: bool,
}

impl<R: Read> Chunks<R> {
    pub(crate) fn new(chunker: Chunker, reader: R) -> Self {
        Chunks {
            chunker,
            reader,
            window: Bytes::new(),
            eof: false,
            failed: false,
        }
    }

    /// Length of the next chunk if `window` already decides it.
    ///
    /// FastCDC scans forward from the chunk start, testing each position with
    /// a mask that depends only on the position (stricter before `avg`), and
    /// stops at the first match or after `max` bytes. So a match inside the
    /// window is final whatever follows; so is any cut once the window holds
    /// `max` bytes or the rest of the input. Otherwise more input is needed.
    fn certain_cut(&self) -> Option<usize> {
        if self.window.is_empty() {
            return None;
        }
        let available = self.window.len();
        let len = self.chunker.next_cut(&self.window);
        let certain = len < available || self.eof || available >= self.chunker.params.max as usize;
        certain.then_some(len)
    }

    /// Moves the undecided rest of the window (under `max` bytes, usually
    /// part of one chunk) to a new buffer of `2 × max` bytes and fills that
    /// from the reader.
    ///
    /// So one allocation serves many chunks, the window never exceeds
    /// `2 × max`, and little is copied twice. Chunks cut from a buffer keep
    /// that buffer alive until they are dropped.
    fn refill(&mut self) -> std::io::Result<()> {
        let capacity = 2 * self.chunker.params.max as usize;
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(&self.window);
        let wanted = capacity - buf.len();
        // `read_to_end` retries `Interrupted` and reads straight into the
        // spare capacity; `take` stops it from growing the allocation.
        let result = (&mut self.reader).take(wanted as u64).read_to_end(&mut buf);
        if matches!(result, Ok(n) if n < wanted) {
            self.eof = true;
        }
        self.window = Bytes::from(buf);
        result.map(drop)
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = std::io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(len) = self.certain_cut() {
                return Some(Ok(self.window.split_to(len)));
            }
            if self.eof {
                return None;
            }
            if let Err(e) = self.refill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkerParams;

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        blake3::Hasher::new()
            .update(b"stream test")
            .finalize_xof()
            .fill(&mut data);
        data
    }

    /// The window never grows past 2 × max, and chunks the consumer keeps
    /// stay intact while later ones are read.
    #[test]
    fn window_is_bounded_and_kept_chunks_stay_intact() {
        let params = ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16 * 1024,
        };
        let chunker = Chunker::new(params, &[3; 32]).unwrap();
        let data = pseudo_random(1 << 20);
        let mut chunks = Chunks::new(chunker, std::io::Cursor::new(&data));
        let mut kept = Vec::new();
        while let Some(chunk) = chunks.next() {
            kept.push(chunk.unwrap());
            assert!(chunks.window.len() <= 2 * params.max as usize);
        }
        assert!(kept.len() > 100);
        assert!(kept.concat() == data);
    }
}
