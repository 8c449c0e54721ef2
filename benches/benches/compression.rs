//! criterion bench: zstd on 1 MiB blobs, the compressibility probe, and the
//! backup pipeline's compression stage on a volume's content.
//!
//! - `zstd`: levels 1 and 3 on prose (`arca_testdata::append_text`, compresses
//!   ~3×) and on random data (incompressible), compress and decompress.
//! - `compression_probe`: `worth_compressing`, which decides whether a blob is
//!   compressed at all (one level-1 pass over 64 KiB).
//! - `compression_stage`: what a backup's encoders do to every new chunk before
//!   sealing it (`append_stored_form`: probe, zstd 3 where it pays, else a
//!   copy), over the chunks of the content a `cargo xtask bench` volume
//!   stores: database pages, small files, logs and media in the volume's
//!   proportions, without its copies (deduplication keeps those from the
//!   stage). This is the stage the harness's hardware bound is taken from.

use std::time::Duration;

use arca_benches::random;
use arca_chunk::{Chunker, ChunkerParams};
use arca_repo::blob::{Compression, append_stored_form, worth_compressing};
use arca_testdata::{Rng, Volume, append_text};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};

const BLOB: usize = 1 << 20;
/// Size of the volume whose content the stage bench compresses (85 % of it is
/// content of its own); large enough for every kind in its proportion.
const VOLUME: u64 = 64 << 20;

fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    append_text(&mut Rng::new(7), &mut out, len);
    out
}

fn zstd_levels(c: &mut Criterion) {
    let mut group = c.benchmark_group("zstd");
    group.throughput(Throughput::Bytes(BLOB as u64));
    for (data_name, data) in [("text", text(BLOB)), ("random", random(BLOB, 1))] {
        for level in [1, 3] {
            let mut compressor = zstd::bulk::Compressor::new(level).expect("zstd level");
            let param = format!("{data_name}-level{level}");
            group.bench_function(BenchmarkId::new("compress", &param), |b| {
                b.iter(|| compressor.compress(&data).expect("compress"))
            });
            let compressed = compressor.compress(&data).expect("compress");
            let mut decompressor = zstd::bulk::Decompressor::new().expect("zstd");
            group.bench_function(BenchmarkId::new("decompress", &param), |b| {
                b.iter(|| {
                    decompressor
                        .decompress(&compressed, BLOB)
                        .expect("decompress")
                })
            });
        }
    }
    group.finish();
}

fn probe(c: &mut Criterion) {
    let mut group = c.benchmark_group("compression_probe");
    group.throughput(Throughput::Bytes(BLOB as u64));
    for (name, data) in [("text", text(BLOB)), ("random", random(BLOB, 1))] {
        group.bench_function(name, |b| b.iter(|| worth_compressing(&data)));
    }
    group.finish();
}

fn stage(c: &mut Criterion) {
    let chunker = Chunker::new(ChunkerParams::default(), &[7; 32]).expect("default params");
    let files: Vec<Vec<u8>> = Volume::new(VOLUME, 1).map(|file| file.bytes).collect();
    let chunks: Vec<&[u8]> = files
        .iter()
        .flat_map(|bytes| {
            let mut rest = bytes.as_slice();
            chunker.cut_points(bytes).into_iter().map(move |len| {
                let (chunk, tail) = rest.split_at(len);
                rest = tail;
                chunk
            })
        })
        .collect();
    let total: usize = chunks.iter().map(|chunk| chunk.len()).sum();
    let mut group = c.benchmark_group("compression_stage");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    let mut out = Vec::new();
    group.bench_function(BenchmarkId::new("volume", "64MiB"), |b| {
        b.iter(|| {
            let mut stored = 0;
            for chunk in &chunks {
                out.clear();
                append_stored_form(chunk, Compression::default(), &mut out).expect("encode");
                stored += out.len();
            }
            stored
        })
    });
    group.finish();
}

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    zstd_levels(&mut criterion);
    probe(&mut criterion);
    stage(&mut criterion);
}

criterion_main!(benches);
