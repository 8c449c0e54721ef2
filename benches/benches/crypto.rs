//! criterion bench: the envelope (seal, open), keyed content IDs, key files.
//!
//! Sizes: 16 KiB (a small tree blob) and 1 MiB (a typical data blob), which
//! `cargo xtask bench` takes for the encryption stage's throughput; 1 KiB (a
//! small file) apart, as `per_object`, where the fixed cost of each object
//! (random salt and nonce, key derivation) shows; plus opening a key file with
//! the default Argon2id parameters.

use arca_crypto::{KdfParams, KeyFile, MasterKey, ObjectKind};
use criterion::{BenchmarkId, Criterion, Throughput};

fn envelope(c: &mut Criterion) {
    seal_and_open(c, "envelope", &[("16KiB", 16 << 10), ("1MiB", 1 << 20)]);
    seal_and_open(c, "per_object", &[("1KiB", 1 << 10)]);
}

fn seal_and_open(c: &mut Criterion, group_name: &str, sizes: &[(&str, usize)]) {
    let key = MasterKey::generate().expect("OS random number generator");
    let mut group = c.benchmark_group(group_name);
    for &(name, size) in sizes {
        let plaintext = vec![0x5a_u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut out = Vec::with_capacity(size + arca_crypto::SEAL_OVERHEAD);
        group.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| {
                out.clear();
                key.seal_into(ObjectKind::DataBlob, &plaintext, &mut out)
                    .expect("seal");
            })
        });
        let sealed = key.seal(ObjectKind::DataBlob, &plaintext).expect("seal");
        group.bench_function(BenchmarkId::new("open", name), |b| {
            b.iter(|| key.open(ObjectKind::DataBlob, &sealed).expect("open"))
        });
    }
    group.finish();
}

fn content_id(c: &mut Criterion) {
    let key = MasterKey::generate().expect("OS random number generator");
    let data = vec![0xa5_u8; 1 << 20];
    let mut group = c.benchmark_group("content_id");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("1MiB", |b| b.iter(|| key.content_id(&data)));
    group.finish();
}

/// Unlocking a repository: Argon2id with the default parameters (64 MiB, t = 3).
fn key_file(c: &mut Criterion) {
    let key = MasterKey::generate().expect("OS random number generator");
    let file = KeyFile::create(&key, b"password", KdfParams::default(), "host", "user")
        .expect("create key file");
    let mut group = c.benchmark_group("key_file");
    group.sample_size(10);
    group.bench_function("open/default_params", |b| {
        b.iter(|| file.open(b"password").expect("open"))
    });
    group.finish();
}

// What criterion_group!/criterion_main! expand to, written out because the
// macro's generated `pub fn` cannot carry the docs `missing_docs` asks for.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    envelope(&mut criterion);
    content_id(&mut criterion);
    key_file(&mut criterion);
    criterion.final_summary();
}
