//! criterion bench: turning plaintext blobs into a finished pack.
//!
//! 16 MiB of 1 MiB blobs, text-like (compressed) and random (the probe rejects
//! compression): `encode_blob` (probe, zstd level 3, content ID, seal) for each
//! blob, then `PackWriter::add` and `finish` (sealed header, storage ID).
//! Single-threaded: one pipeline worker's throughput.

use arca_benches::random;
use arca_crypto::MasterKey;
use arca_repo::blob::{BlobType, Compression, encode_blob};
use arca_repo::pack::PackWriter;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};

const BLOB: usize = 1 << 20;
const BLOBS: usize = 16;

/// Random data with every byte reduced to 16 letters: ~2× compressible.
fn text_like(len: usize, state: u64) -> Vec<u8> {
    random(len, state)
        .into_iter()
        .map(|b| b'a' + (b & 0x0f))
        .collect()
}

fn packing(c: &mut Criterion) {
    let key = MasterKey::generate().expect("OS random number generator");
    let blob_key = std::sync::Arc::new(key.fresh_blob_key().expect("OS random number generator"));
    let mut group = c.benchmark_group("packing");
    group.throughput(Throughput::Bytes((BLOB * BLOBS) as u64));
    group.sample_size(10);
    for (name, make) in [
        ("text", text_like as fn(usize, u64) -> Vec<u8>),
        ("random", random),
    ] {
        let blobs: Vec<Vec<u8>> = (1..=BLOBS as u64).map(|seed| make(BLOB, seed)).collect();
        group.bench_function(BenchmarkId::new("encode_and_pack_16MiB", name), |b| {
            b.iter(|| {
                let mut writer = PackWriter::new(BlobType::Data, blob_key.clone());
                for plaintext in &blobs {
                    let id = key.content_id(plaintext);
                    let blob = encode_blob(
                        &blob_key,
                        BlobType::Data,
                        id,
                        plaintext,
                        Compression::default(),
                    )
                    .expect("encode");
                    writer.add(&blob).unwrap();
                }
                writer.finish(&key).expect("finish")
            })
        });
    }
    group.finish();
}

/// Runs every bench in this file (what `criterion_group!` would generate, but documented).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    packing(&mut criterion);
}

criterion_main!(benches);
