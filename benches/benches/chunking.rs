//! criterion bench: keyed FastCDC over 64 MiB of random data (incompressible, so
//! chunk sizes are typical rather than all `max` as with uniform bytes) with the
//! default parameters, as a slice (`cut_points`) and as a stream (`StreamChunker`).

use std::io::Cursor;

use arca_benches::random;
use arca_chunk::{Chunker, ChunkerParams, StreamChunker};
use criterion::{Criterion, Throughput};

const LEN: usize = 64 << 20;

fn chunking(c: &mut Criterion) {
    let data = random(LEN, 0x9e37_79b9_7f4a_7c15);
    let chunker = Chunker::new(ChunkerParams::default(), &[7; 32]).expect("default params");
    let mut group = c.benchmark_group("chunking");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(10);
    group.bench_function("cut_points/64MiB", |b| b.iter(|| chunker.cut_points(&data)));
    let mut streams = StreamChunker::new(chunker.clone());
    group.bench_function("stream/64MiB", |b| {
        b.iter(|| {
            let mut stream = streams.stream(Cursor::new(&data));
            let mut total = 0;
            while let Some(chunk) = stream.next_chunk() {
                total += chunk.expect("in-memory read").len();
            }
            total
        })
    });
    group.finish();
}

// What criterion_group!/criterion_main! expand to, written out because the
// macro's generated `pub fn` cannot carry the docs `missing_docs` asks for.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    chunking(&mut criterion);
    criterion.final_summary();
}
