//! Chunking `Read` streams through one reusable buffer.

use std::io::{ErrorKind, Read};

use crate::Chunker;

/// Bytes read ahead of the undecided part of a stream (at most `max`): the
/// buffer starts this large and grows to `max` + this at most.
const READ_AHEAD: usize = 2 * 1024 * 1024;

/// Cuts streams into chunks through one buffer that it keeps from stream to
/// stream, so chunking many files allocates (and faults in) nothing new.
///
/// The buffer starts at 2 MiB (or `max`, if smaller) and grows to `max` + that
/// only when a chunk is longer than what fits; chunks are lent out as slices
/// of it (copy the ones to keep).
#[derive(Debug)]
pub struct StreamChunker {
    chunker: Chunker,
    /// Fully initialised; its length is the buffer's current size.
    buf: Vec<u8>,
}

impl StreamChunker {
    /// A stream chunker cutting with `chunker`'s parameters and key.
    pub fn new(chunker: Chunker) -> Self {
        StreamChunker {
            chunker,
            buf: Vec::new(),
        }
    }

    /// Starts chunking `reader` from its current position.
    pub fn stream<R: Read>(&mut self, reader: R) -> ChunkStream<'_, R> {
        let ahead = READ_AHEAD.min(self.chunker.params.max as usize);
        if self.buf.len() < ahead {
            self.buf.resize(ahead, 0);
        }
        ChunkStream {
            chunker: &self.chunker,
            buf: &mut self.buf,
            max_buf: self.chunker.params.max as usize + ahead,
            reader,
            start: 0,
            end: 0,
            eof: false,
            failed: false,
        }
    }
}

/// One stream being chunked by a [`StreamChunker`]; see
/// [`ChunkStream::next_chunk`].
#[derive(Debug)]
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    buf: &'a mut Vec<u8>,
    /// The size the buffer may grow to.
    max_buf: usize,
    reader: R,
    /// `buf[start..end]` is read but not yet handed out.
    start: usize,
    end: usize,
    /// The reader is exhausted: the window is the rest of the input.
    eof: bool,
    /// A read error was returned; the stream is over.
    failed: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    /// The next chunk, `None` at the end of the input.
    ///
    /// Boundaries are identical to [`Chunker::cut_points`] over the whole
    /// input. Reads interrupted by a signal are retried; any other read error
    /// is returned once and ends the stream.
    pub fn next_chunk(&mut self) -> Option<std::io::Result<&[u8]>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(len) = self.certain_cut() {
                let chunk = &self.buf[self.start..self.start + len];
                self.start += len;
                return Some(Ok(chunk));
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

    /// Length of the next chunk if the window already decides it.
    ///
    /// FastCDC scans forward from the chunk start, testing each position with
    /// a mask that depends only on the position (stricter before `avg`), and
    /// stops at the first match or after `max` bytes. So a match inside the
    /// window is final whatever follows; so is any cut once the window holds
    /// `max` bytes or the rest of the input. Otherwise more input is needed.
    fn certain_cut(&self) -> Option<usize> {
        let window = &self.buf[self.start..self.end];
        if window.is_empty() {
            return None;
        }
        let len = self.chunker.next_cut(window);
        let certain =
            len < window.len() || self.eof || window.len() >= self.chunker.params.max as usize;
        certain.then_some(len)
    }

    /// Moves the undecided window (under `max` bytes, usually part of one
    /// chunk) to the front of the buffer, grows the buffer if the window
    /// fills it, and reads until the buffer is full or the input ends.
    fn refill(&mut self) -> std::io::Result<()> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            let grown = (2 * self.buf.len()).min(self.max_buf);
            self.buf.resize(grown, 0);
        }
        while self.end < self.buf.len() {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

    const PARAMS: ChunkerParams = ChunkerParams {
        min: 1024,
        avg: 4096,
        max: 16 * 1024,
    };

    /// The buffer stays within `max` + read-ahead, and one stream chunker
    /// serves stream after stream with the same boundaries each time.
    #[test]
    fn buffer_is_bounded_and_reused_across_streams() {
        let chunker = Chunker::new(PARAMS, &[3; 32]).unwrap();
        let mut streams = StreamChunker::new(chunker.clone());
        for len in [1 << 20, 10, 0, 300_000] {
            let data = pseudo_random(len);
            let mut stream = streams.stream(std::io::Cursor::new(&data));
            let mut lengths = Vec::new();
            let mut rebuilt = Vec::new();
            while let Some(chunk) = stream.next_chunk() {
                let chunk = chunk.unwrap();
                lengths.push(chunk.len());
                rebuilt.extend_from_slice(chunk);
            }
            assert!(rebuilt == data);
            assert_eq!(lengths, chunker.cut_points(&data));
            assert!(streams.buf.len() <= 2 * PARAMS.max as usize);
        }
    }

    /// Zeros never match the gear mask, so every chunk is `max` long: the
    /// buffer must grow past its initial size to decide them.
    #[test]
    fn chunks_of_max_length_grow_the_buffer_once() {
        let params = ChunkerParams {
            min: 64 * 1024,
            avg: 256 * 1024,
            max: 6 * 1024 * 1024,
        };
        let chunker = Chunker::new(params, &[5; 32]).unwrap();
        let data = vec![0u8; 20 * 1024 * 1024];
        let mut streams = StreamChunker::new(chunker.clone());
        let mut stream = streams.stream(&data[..]);
        let mut lengths = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            lengths.push(chunk.unwrap().len());
        }
        assert_eq!(lengths, chunker.cut_points(&data));
        assert_eq!(lengths[0], params.max as usize);
        assert!(streams.buf.len() > READ_AHEAD);
        assert!(streams.buf.len() <= params.max as usize + READ_AHEAD);
    }
}
