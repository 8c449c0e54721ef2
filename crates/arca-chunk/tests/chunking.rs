//! Chunking through the public API: size bounds, determinism, keyed boundaries,
//! stream/slice equivalence and the deduplication property.

use std::collections::HashSet;
use std::io::{self, Cursor, ErrorKind, Read};

use arca_chunk::{Chunker, ChunkerParams, StreamChunker};
use proptest::prelude::*;

/// Small bounds so proptest inputs span many chunks.
const SMALL: ChunkerParams = ChunkerParams {
    min: 1024,
    avg: 4096,
    max: 16 * 1024,
};

/// Deterministic pseudo-random bytes (BLAKE3 XOF of `seed`): incompressible and
/// fast to make even in the dev profile.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut data);
    data
}

/// Valid parameters across the supported range, scaled down to keep inputs small.
fn small_params() -> impl Strategy<Value = ChunkerParams> {
    (9u32..=14)
        .prop_flat_map(|bits| {
            let avg = 1 << bits;
            (Just(avg), 128..avg / 2, (avg / 2 + 1).max(512)..=avg * 2)
        })
        .prop_map(|(avg, half_min, half_max)| ChunkerParams {
            min: half_min * 2,
            avg,
            max: half_max * 2,
        })
}

/// A reader that returns at most `sizes[i]` bytes per call (cycling) and
/// `Interrupted` on every `interrupt_every`-th call (never if 0; 1 would never
/// make progress).
struct AwkwardReader<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    interrupt_every: usize,
    calls: usize,
}

impl Read for AwkwardReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(self.interrupt_every) {
            return Err(ErrorKind::Interrupted.into());
        }
        let n = self.sizes[self.calls % self.sizes.len()]
            .min(buf.len())
            .min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn stream_lengths<R: Read>(chunker: &Chunker, reader: R, data: &[u8]) -> Vec<usize> {
    let mut rebuilt = Vec::with_capacity(data.len());
    let mut lengths = Vec::new();
    let mut streams = StreamChunker::new(chunker.clone());
    let mut stream = streams.stream(reader);
    while let Some(chunk) = stream.next_chunk() {
        let chunk = chunk.unwrap();
        rebuilt.extend_from_slice(chunk);
        lengths.push(chunk.len());
    }
    assert!(rebuilt == data, "chunks do not concatenate to the input");
    lengths
}

fn assert_within_bounds(lengths: &[usize], params: ChunkerParams) {
    let (min, max) = (params.min as usize, params.max as usize);
    if let Some((last, rest)) = lengths.split_last() {
        for (i, len) in rest.iter().enumerate() {
            assert!(
                (min..=max).contains(len),
                "chunk {i} is {len} bytes, outside {min}..={max}"
            );
        }
        assert!((1..=max).contains(last), "last chunk is {last} bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn slice_chunks_are_deterministic_and_bounded(
        seed in any::<u64>(),
        len in 0usize..300_000,
        params in small_params(),
        key in any::<[u8; 32]>(),
    ) {
        let data = pseudo_random(seed, len);
        let chunker = Chunker::new(params, &key).unwrap();
        let lengths = chunker.cut_points(&data);
        prop_assert_eq!(lengths.iter().sum::<usize>(), len);
        assert_within_bounds(&lengths, params);
        prop_assert_eq!(&chunker.clone().cut_points(&data), &lengths);
        prop_assert_eq!(&Chunker::new(params, &key).unwrap().cut_points(&data), &lengths);
    }

    #[test]
    fn stream_matches_slice_whatever_the_reads(
        seed in any::<u64>(),
        len in 0usize..200_000,
        sizes in prop::collection::vec(1usize..40_000, 1..6),
        interrupt_every in prop::sample::select(vec![0usize, 2, 3]),
        params in small_params(),
    ) {
        let data = pseudo_random(seed, len);
        let chunker = Chunker::new(params, &[5; 32]).unwrap();
        let reader = AwkwardReader { data: &data, sizes, interrupt_every, calls: 0 };
        prop_assert_eq!(stream_lengths(&chunker, reader, &data), chunker.cut_points(&data));
    }
}

#[test]
fn stream_matches_slice_with_default_params() {
    // Enough data for several refills of the 2 × 8 MiB buffer.
    let data = pseudo_random(1, 40 << 20);
    let chunker = Chunker::new(ChunkerParams::default(), &[8; 32]).unwrap();
    let lengths = chunker.cut_points(&data);
    assert_within_bounds(&lengths, ChunkerParams::default());
    assert_eq!(stream_lengths(&chunker, Cursor::new(&data), &data), lengths);
}

#[test]
fn empty_input_has_no_chunks() {
    let chunker = Chunker::new(SMALL, &[0; 32]).unwrap();
    assert!(chunker.cut_points(&[]).is_empty());
    assert!(
        StreamChunker::new(chunker.clone())
            .stream(io::empty())
            .next_chunk()
            .is_none()
    );
}

#[test]
fn input_shorter_than_min_is_one_chunk() {
    let chunker = Chunker::new(SMALL, &[0; 32]).unwrap();
    assert_eq!(chunker.cut_points(&[1; 100]), [100]);
}

#[test]
fn uniform_data_is_cut_at_max() {
    let chunker = Chunker::new(SMALL, &[0; 32]).unwrap();
    let lengths = chunker.cut_points(&vec![0u8; 100_000]);
    let max = SMALL.max as usize;
    assert_eq!(lengths[..lengths.len() - 1], vec![max; 100_000 / max]);
    assert_eq!(lengths.last(), Some(&(100_000 % max)));
}

#[test]
fn average_chunk_size_is_near_avg() {
    let data = pseudo_random(2, 4 << 20);
    let chunker = Chunker::new(SMALL, &[1; 32]).unwrap();
    let count = chunker.cut_points(&data).len();
    let mean = data.len() / count;
    // Level-1 normalisation with min = avg / 4 lands the mean a little above avg.
    assert!(
        (SMALL.avg as usize..2 * SMALL.avg as usize).contains(&mean),
        "mean chunk {mean} bytes over {count} chunks"
    );
}

#[test]
fn different_keys_cut_differently() {
    let data = pseudo_random(3, 1 << 20);
    let a = Chunker::new(SMALL, &[1; 32]).unwrap().cut_points(&data);
    let b = Chunker::new(SMALL, &[2; 32]).unwrap().cut_points(&data);
    let mut key = [1; 32];
    key[31] ^= 1;
    let c = Chunker::new(SMALL, &key).unwrap().cut_points(&data);
    assert_ne!(a, b);
    assert_ne!(a, c);
    // Not just shifted: almost no boundary positions in common.
    let offsets = |lengths: &[usize]| -> HashSet<usize> {
        lengths
            .iter()
            .scan(0, |end, len| {
                *end += len;
                Some(*end)
            })
            .collect()
    };
    let common = offsets(&a).intersection(&offsets(&b)).count();
    assert!(
        common * 10 < a.len(),
        "{common} of {} boundaries shared",
        a.len()
    );
}

/// Fraction of `edited`'s bytes that sit in chunks also present in `original`.
fn shared_fraction(chunker: &Chunker, original: &[u8], edited: &[u8]) -> f64 {
    let chunks_of = |data: &[u8]| -> Vec<(blake3::Hash, usize)> {
        let mut offset = 0;
        chunker
            .cut_points(data)
            .into_iter()
            .map(|len| {
                let chunk = &data[offset..offset + len];
                offset += len;
                (blake3::hash(chunk), len)
            })
            .collect()
    };
    let known: HashSet<blake3::Hash> = chunks_of(original).into_iter().map(|(h, _)| h).collect();
    let shared: usize = chunks_of(edited)
        .into_iter()
        .filter(|(hash, _)| known.contains(hash))
        .map(|(_, len)| len)
        .sum();
    shared as f64 / edited.len() as f64
}

#[test]
fn insertion_at_the_front_keeps_most_chunks() {
    let original = pseudo_random(4, 64 << 20);
    let mut edited = b"few".to_vec();
    edited.extend_from_slice(&original);
    for params in [ChunkerParams::default(), SMALL] {
        let chunker = Chunker::new(params, &[4; 32]).unwrap();
        let shared = shared_fraction(&chunker, &original, &edited);
        assert!(
            shared >= 0.9,
            "{params:?}: only {:.1} % shared",
            shared * 100.0
        );
    }
}

#[test]
fn edit_in_the_middle_keeps_most_chunks() {
    let original = pseudo_random(5, 8 << 20);
    let mut edited = original.clone();
    edited.splice(4 << 20..(4 << 20) + 10, *b"0123456789abcdef");
    let chunker = Chunker::new(SMALL, &[5; 32]).unwrap();
    let shared = shared_fraction(&chunker, &original, &edited);
    assert!(shared >= 0.99, "only {:.2} % shared", shared * 100.0);
}

#[test]
fn read_error_is_yielded_once_then_the_stream_ends() {
    struct FailingReader {
        good: Cursor<Vec<u8>>,
    }
    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.good.read(buf)? {
                0 => Err(io::Error::new(ErrorKind::PermissionDenied, "disk says no")),
                n => Ok(n),
            }
        }
    }
    // Several chunks of good data, so some come out before the error.
    let data = pseudo_random(6, 100_000);
    let chunker = Chunker::new(SMALL, &[6; 32]).unwrap();
    let mut streams = StreamChunker::new(chunker.clone());
    let mut stream = streams.stream(FailingReader {
        good: Cursor::new(data.clone()),
    });
    let mut lengths = Vec::new();
    let err = loop {
        match stream.next_chunk().expect("the stream ends with the error") {
            Ok(chunk) => lengths.push(chunk.len()),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(stream.next_chunk().is_none(), "nothing after the error");
    assert!(!lengths.is_empty());
    let expected = chunker.cut_points(&data);
    assert_eq!(lengths, expected[..lengths.len()]);
}

#[test]
fn stream_chunker_outlives_the_chunker_and_crosses_threads() {
    let data = pseudo_random(7, 300_000);
    let chunker = Chunker::new(SMALL, &[7; 32]).unwrap();
    let expected = chunker.cut_points(&data);
    let mut streams = StreamChunker::new(chunker.clone());
    drop(chunker);
    let lengths = std::thread::spawn(move || {
        let mut stream = streams.stream(Cursor::new(data));
        let mut lengths = Vec::new();
        while let Some(chunk) = stream.next_chunk() {
            lengths.push(chunk.unwrap().len());
        }
        lengths
    })
    .join()
    .unwrap();
    assert_eq!(lengths, expected);
}
