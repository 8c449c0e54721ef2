//! criterion bench: zstd on 1 MiB blobs, and the compressibility probe.
//!
//! Levels 1 and 3 on text-like data (pseudo-random words: compresses ~3×) and
//! on random data (incompressible), compress and decompress; plus
//! `worth_compressing`, the probe that decides whether a blob is compressed at
//! all (it costs one level-1 pass over 64 KiB).

use arca_benches::random;
use arca_repo::blob::worth_compressing;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};

const BLOB: usize = 1 << 20;

/// Words drawn at random from a small vocabulary, like logs or source text.
fn text(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "backup",
        "restore",
        "the",
        "of",
        "snapshot",
        "error",
        "INFO",
        "WARN",
        "request",
        "id=",
        "pack",
        "index",
        "tree",
        "node",
        "volume",
        "pod",
        "namespace",
        "2026-11-23T22:09:00Z",
        "ok",
        "failed",
        "retry",
        "bytes",
        "\n",
        "{",
        "}",
        "=",
        "[",
        "]",
        ":",
        "0",
        "1",
        "42",
    ];
    let picks = random(len, 7);
    let mut out = Vec::with_capacity(len + 32);
    for pick in picks {
        if out.len() >= len {
            break;
        }
        out.extend_from_slice(WORDS[pick as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
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

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    zstd_levels(&mut criterion);
    probe(&mut criterion);
}

criterion_main!(benches);
