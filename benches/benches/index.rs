//! criterion bench: the in-memory index at 1 million blobs.
//!
//! Building it from index files (`add_file` + `finish`), and lookups per
//! second for hits and misses. Each entry is `Index::bytes_per_blob` bytes
//! (48), so 1M blobs take ~48 MB.

use arca_crypto::{BlobKeyId, Id};
use arca_repo::blob::{BlobEnvelope, BlobType};
use arca_repo::index::{Index, IndexFile, IndexPack};
use arca_repo::pack::PackEntry;
use criterion::{Criterion, Throughput, criterion_main};

const BLOBS: u64 = 1_000_000;
const BLOBS_PER_PACK: u64 = 16;
const LOOKUPS: u64 = 10_000;

/// A well-mixed pseudo-random 32-byte ID for `n` (IDs are hashes in real repositories).
fn id(n: u64) -> Id {
    Id::storage_id(&n.to_le_bytes())
}

fn index_files() -> Vec<IndexFile> {
    let packs: Vec<IndexPack> = (0..BLOBS / BLOBS_PER_PACK)
        .map(|p| IndexPack {
            id: id(u64::MAX - p),
            envelope: BlobEnvelope::Pack(BlobKeyId {
                key_id: 0,
                salt: [7; 16],
            }),
            blobs: (0..BLOBS_PER_PACK)
                .map(|i| PackEntry {
                    blob_type: BlobType::Data,
                    id: id(p * BLOBS_PER_PACK + i),
                    offset: (i * 1_048_625) as u32,
                    length: 1_048_625,
                    uncompressed_length: Some(2_097_152),
                })
                .collect(),
        })
        .collect();
    IndexFile { packs }.split(150_000)
}

fn build(files: &[IndexFile]) -> Index {
    let mut index = Index::default();
    for file in files {
        index.add_file(file);
    }
    index.finish();
    index
}

fn index(c: &mut Criterion) {
    let files = index_files();
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BLOBS));
    group.bench_function("build_1M", |b| b.iter(|| build(&files)));

    let index = build(&files);
    assert_eq!(index.len() as u64, BLOBS);
    assert!(index.bytes_per_blob() <= 48);
    let hits: Vec<Id> = (0..LOOKUPS).map(|n| id(n * (BLOBS / LOOKUPS))).collect();
    let misses: Vec<Id> = (0..LOOKUPS).map(|n| id(BLOBS + n)).collect();
    group.sample_size(50);
    group.throughput(Throughput::Elements(LOOKUPS));
    group.bench_function("lookup_hit_1M", |b| {
        b.iter(|| {
            hits.iter()
                .filter(|id| index.get(BlobType::Data, id).is_some())
                .count()
        })
    });
    group.bench_function("lookup_miss_1M", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|id| index.contains(BlobType::Data, id))
                .count()
        })
    });
    group.finish();
}

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    index(&mut criterion);
}

criterion_main!(benches);
