//! Chunking a `Read` stream with a bounded, zero-copy buffer.

use std::io::{ErrorKind, Read};

use bytes::{Bytes, BytesMut};

use crate::Chunker;

/// Iterator behind [`Chunker::chunks`].
///
/// Invariant before each cut: `buf` holds at least `max` bytes, or all that is
/// left of the input. That is all a cut decision looks at, which is why the
/// boundaries equal those of [`Chunker::cut_points`].
pub(crate) struct Chunks<R> {
    chunker: Chunker,
    reader: R,
    buf: BytesMut,
    /// The reader returned 0 bytes: whatever is in `buf` is the rest of the input.
    eof: bool,
    /// A read error was yielded; the stream is over.
    failed: bool,
}

impl<R: Read> Chunks<R> {
    pub(crate) fn new(chunker: Chunker, reader: R) -> Self {
        Chunks {
            chunker,
            reader,
            buf: BytesMut::new(),
            eof: false,
            failed: false,
        }
    }

    /// Reads until `buf` holds at least `max` bytes or the input ends.
    ///
    /// Each refill makes room for `2 × max` bytes, so one allocation serves
    /// several chunks and only the tail left from the previous refill (under
    /// `max` bytes) is ever copied. Every allocation is exactly `2 × max`.
    fn refill(&mut self) -> std::io::Result<()> {
        let max = self.chunker.params.max as usize;
        if self.eof || self.buf.len() >= max {
            return Ok(());
        }
        let mut filled = self.buf.len();
        // Reuse the allocation if every chunk cut from it has been dropped;
        // otherwise start a new one of exactly 2 × max (`reserve` could grow
        // it by doubling instead).
        if !self.buf.try_reclaim(2 * max - filled) {
            let mut fresh = BytesMut::with_capacity(2 * max);
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
        // `Read` needs initialised bytes to read into.
        self.buf.resize(2 * max, 0);
        let result = loop {
            if filled >= max {
                break Ok(());
            }
            match self.reader.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break Ok(());
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.truncate(filled);
        result
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = std::io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Err(e) = self.refill() {
            self.failed = true;
            return Some(Err(e));
        }
        if self.buf.is_empty() {
            return None;
        }
        let len = self.chunker.next_cut(&self.buf);
        Some(Ok(self.buf.split_to(len).freeze()))
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

    /// The buffer never grows past 2 × max, whether the consumer keeps every
    /// chunk (each refill needs a fresh allocation) or drops them at once
    /// (each refill reuses the old one).
    #[test]
    fn buffer_stays_within_two_max() {
        let params = ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16 * 1024,
        };
        let chunker = Chunker::new(params, &[3; 32]).unwrap();
        let data = pseudo_random(1 << 20);
        for keep in [true, false] {
            let mut chunks = Chunks::new(chunker.clone(), std::io::Cursor::new(&data));
            let mut kept = Vec::new();
            let mut total = 0;
            while let Some(chunk) = chunks.next() {
                let chunk = chunk.unwrap();
                assert!(
                    chunks.buf.capacity() <= 2 * params.max as usize,
                    "keep = {keep}"
                );
                total += chunk.len();
                if keep {
                    kept.push(chunk);
                }
            }
            assert_eq!(total, data.len());
        }
    }
}
