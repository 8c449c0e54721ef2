//! Chunking `Read` streams through one reusable buffer.

use std::io::{ErrorKind, Read};

use crate::Chunker;

/// Bytes read ahead of the undecided part of a stream (at most `max`) by
/// default: the buffer starts this large and grows to `max` + this at most.
const READ_AHEAD: usize = 2 * 1024 * 1024;

/// Every read goes to an address and asks for a length that are multiples of
/// this, so a file opened with `O_DIRECT` (which needs 512- or 4096-byte
/// alignment) can be streamed: its offset stays aligned too, because a file
/// returns short reads only at its end.
pub const READ_ALIGN: usize = 4096;

/// Cuts streams into chunks through one buffer that it keeps from stream to
/// stream, so chunking many files allocates (and faults in) nothing new but
/// for the rare long chunk.
///
/// The buffer starts at the read-ahead (2 MiB unless set with
/// [`StreamChunker::with_read_ahead`], and at most `max`) and grows to `max` +
/// that only while a chunk is longer than what fits (after a run of
/// `max`-long chunks, until a shorter one); chunks are lent out as slices of
/// it (copy the ones to keep). Reads are aligned to [`READ_ALIGN`].
#[derive(Debug)]
pub struct StreamChunker {
    chunker: Chunker,
    /// Bytes read ahead of the undecided part, a multiple of [`READ_ALIGN`].
    read_ahead: usize,
    /// Fully initialised; one [`READ_ALIGN`] longer than the window in use,
    /// which starts at the first aligned address in it.
    buf: Vec<u8>,
}

impl StreamChunker {
    /// A stream chunker cutting with `chunker`'s parameters and key.
    pub fn new(chunker: Chunker) -> Self {
        StreamChunker::with_read_ahead(chunker, READ_AHEAD)
    }

    /// A stream chunker reading `bytes` ahead (rounded up to [`READ_ALIGN`]):
    /// one that mostly reads small files keeps its buffer that small, and
    /// grows it only for a stream that turns out longer.
    pub fn with_read_ahead(chunker: Chunker, bytes: usize) -> Self {
        StreamChunker {
            chunker,
            read_ahead: align_up(bytes.max(1)),
            buf: Vec::new(),
        }
    }

    /// Starts chunking `reader` from its current position.
    pub fn stream<R: Read>(&mut self, reader: R) -> ChunkStream<'_, R> {
        let max = self.chunker.params.max as usize;
        let ahead = align_up(self.read_ahead.min(max));
        if self.buf.len() < ahead + READ_ALIGN {
            self.buf.resize(ahead + READ_ALIGN, 0);
        }
        let start = window_start(&self.buf);
        ChunkStream {
            chunker: &self.chunker,
            buf: &mut self.buf,
            unit_len: ahead + READ_ALIGN,
            last_cut_at_max: false,
            scanned: 0,
            // Undecided bytes (< max) plus their alignment padding always
            // leave room for one more aligned read.
            max_window: align_up(max + ahead) + READ_ALIGN,
            reader,
            start,
            end: start,
            eof: false,
            failed: false,
        }
    }
}

/// `n` rounded up to a multiple of [`READ_ALIGN`].
fn align_up(n: usize) -> usize {
    n.next_multiple_of(READ_ALIGN)
}

/// Index of the first [`READ_ALIGN`]-aligned byte of `buf`.
fn window_start(buf: &[u8]) -> usize {
    buf.as_ptr().align_offset(READ_ALIGN)
}

/// One stream being chunked by a [`StreamChunker`]; see
/// [`ChunkStream::next_chunk`].
#[derive(Debug)]
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    buf: &'a mut Vec<u8>,
    /// The buffer's length before a long chunk grows it.
    unit_len: usize,
    /// The last chunk cut was `max` long (say, in a run of zeros).
    last_cut_at_max: bool,
    /// How many undecided bytes were already scanned for a cut in vain.
    scanned: usize,
    /// The size the window may grow to.
    max_window: usize,
    reader: R,
    /// `buf[start..end]` is read but not yet cut.
    start: usize,
    end: usize,
    eof: bool,
    /// A read failed; the stream ends.
    failed: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    /// The next chunk, `None` at the end of the stream (or after a read
    /// error, which is returned once). The chunk borrows the stream's buffer.
    pub fn next_chunk(&mut self) -> Option<std::io::Result<&[u8]>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(len) = self.certain_cut() {
                let chunk = &self.buf[self.start..self.start + len];
                self.start += len;
                self.scanned = 0;
                self.last_cut_at_max = len == self.chunker.params.max as usize;
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

    /// The length of the next chunk if more data cannot change it: a cut
    /// inside the buffered bytes, the end of the stream, or `max` reached.
    fn certain_cut(&mut self) -> Option<usize> {
        let window = &self.buf[self.start..self.end];
        if window.is_empty() {
            return None;
        }
        let len = self.chunker.next_cut_after(window, self.scanned);
        let certain =
            len < window.len() || self.eof || window.len() >= self.chunker.params.max as usize;
        if !certain {
            self.scanned = window.len();
        }
        certain.then_some(len)
    }

    /// Moves the undecided bytes so that they end on an aligned address
    /// (growing the buffer if they fill it, shrinking it back once a long
    /// chunk is cut), then reads until the buffer is full or the stream ends.
    fn refill(&mut self) -> std::io::Result<()> {
        let pending = self.end - self.start;
        let padding = align_up(pending) - pending;
        let window = |buf: &[u8]| (buf.len() - window_start(buf)) / READ_ALIGN * READ_ALIGN;
        // A long chunk grew the buffer. Long chunks are rare, and a grown
        // buffer is all resident (three readers' were a quarter of a 2 GiB
        // backup's peak RSS): give the memory back once the chunk is cut,
        // unless chunks keep coming at `max` (a run of zeros) and would grow
        // it again at once.
        if self.buf.len() > self.unit_len
            && !self.last_cut_at_max
            && padding + pending < self.unit_len - READ_ALIGN
        {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf.truncate(self.unit_len);
            self.buf.shrink_to_fit();
            (self.start, self.end) = (0, pending);
        }
        if padding + pending == window(self.buf) {
            let grown = (2 * window(self.buf)).min(self.max_window);
            self.buf.resize(grown + READ_ALIGN, 0);
        }
        let base = window_start(self.buf);
        let limit = base + window(self.buf);
        self.buf.copy_within(self.start..self.end, base + padding);
        self.start = base + padding;
        self.end = self.start + pending;
        while self.end < limit {
            match self.reader.read(&mut self.buf[self.end..limit]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    // Likely the end of a file: reading on from an unaligned
                    // address would fail under `O_DIRECT`; the next refill
                    // realigns.
                    if !n.is_multiple_of(READ_ALIGN) {
                        break;
                    }
                }
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
            assert!(streams.buf.len() <= 2 * PARAMS.max as usize + 2 * READ_ALIGN);
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
        assert!(streams.buf.len() <= params.max as usize + READ_AHEAD + 2 * READ_ALIGN);
    }

    /// A long chunk grows the buffer only while it is being cut: the memory
    /// goes back once it is (unlike in a run of `max`-long chunks, above),
    /// and the cuts stay the same.
    #[test]
    fn a_long_chunk_grows_the_buffer_only_while_it_is_cut() {
        let params = ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 1024 * 1024,
        };
        let chunker = Chunker::new(params, &[7; 32]).unwrap();
        let read_ahead = 256 * 1024;
        let mut data = pseudo_random(512 * 1024);
        data.extend(vec![0u8; 2 * 1024 * 1024]);
        data.extend(pseudo_random(2 * 1024 * 1024));
        let mut streams = StreamChunker::with_read_ahead(chunker.clone(), read_ahead);
        let mut stream = streams.stream(&data[..]);
        let (mut lengths, mut largest_buffer) = (Vec::new(), 0);
        while let Some(chunk) = stream.next_chunk() {
            lengths.push(chunk.unwrap().len());
            largest_buffer = largest_buffer.max(stream.buf.len());
        }
        assert_eq!(lengths, chunker.cut_points(&data));
        assert!(lengths.contains(&(params.max as usize)));
        assert!(largest_buffer > params.max as usize);
        assert_eq!(streams.buf.len(), read_ahead + READ_ALIGN);
    }

    /// A small read-ahead keeps the buffer small for short streams and cuts
    /// long ones exactly as the default does.
    #[test]
    fn a_small_read_ahead_keeps_the_buffer_small_and_cuts_the_same() {
        let chunker = Chunker::new(PARAMS, &[9; 32]).unwrap();
        let read_ahead = 8192;
        let mut small = StreamChunker::with_read_ahead(chunker.clone(), read_ahead);
        let short: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut stream = small.stream(&short[..]);
        let mut rebuilt = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            rebuilt.extend_from_slice(chunk.unwrap());
        }
        assert_eq!(rebuilt, short);
        assert_eq!(small.buf.len(), read_ahead + READ_ALIGN);

        let mut state = 1u64;
        let long: Vec<u8> = (0..3 * PARAMS.max as usize)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect();
        let mut lengths = Vec::new();
        let mut stream = small.stream(&long[..]);
        while let Some(chunk) = stream.next_chunk() {
            lengths.push(chunk.unwrap().len());
        }
        assert_eq!(lengths, chunker.cut_points(&long));
    }

    /// A reader that fails unless every read is aligned the way `O_DIRECT`
    /// needs, and that returns fewer bytes than asked for only at its end.
    struct DirectLike<'a> {
        data: &'a [u8],
        reads: usize,
    }

    impl Read for DirectLike<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let aligned = (buf.as_ptr() as usize).is_multiple_of(READ_ALIGN)
                && buf.len().is_multiple_of(READ_ALIGN);
            if !aligned {
                return Err(std::io::Error::from(ErrorKind::InvalidInput));
            }
            if self.data.is_empty() {
                return Ok(0);
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.reads += 1;
            Ok(n)
        }
    }

    /// Reads stay aligned however the cuts fall, including when the buffer
    /// grows for `max`-long chunks, across stream after stream.
    #[test]
    fn reads_are_aligned_for_direct_io() {
        let params = ChunkerParams {
            min: 4000,
            avg: 8192,
            max: 40_000,
        };
        let chunker = Chunker::new(params, &[7; 32]).unwrap();
        let mut streams = StreamChunker::new(chunker.clone());
        let mut zeros_then_noise = vec![0u8; 200_000];
        zeros_then_noise.extend(pseudo_random(300_001));
        for data in [
            pseudo_random(1_000_003),
            zeros_then_noise,
            pseudo_random(4095),
        ] {
            let mut reader = DirectLike {
                data: &data,
                reads: 0,
            };
            let mut stream = streams.stream(&mut reader);
            let mut lengths = Vec::new();
            while let Some(chunk) = stream.next_chunk() {
                lengths.push(chunk.unwrap().len());
            }
            assert_eq!(lengths, chunker.cut_points(&data));
            assert!(reader.reads > 1 || data.len() < params.max as usize);
        }
    }
}
