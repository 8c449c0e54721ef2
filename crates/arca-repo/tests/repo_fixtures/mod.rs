//! Shared by the restore and check integration tests: small real
//! repositories in temp dirs and deterministic test content.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arca_chunk::ChunkerParams;
use arca_crypto::KdfParams;
use arca_repo::Repository;
use arca_repo::backup::{BackupOptions, backup};
use arca_repo::progress::NoProgress;
use arca_repo::repository::InitOptions;
use arca_repo::snapshot::Snapshot;
use arca_store::LocalBackend;

/// A fresh repository in `dir` with cheap key derivation, small chunks
/// (16/64/256 KiB) and the smallest packs (1 MiB).
pub(crate) async fn new_repo(dir: &Path) -> Repository {
    let opts = InitOptions {
        kdf: KdfParams::new(8 * 1024, 1, 1).unwrap(),
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_size: 1024 * 1024,
        ..InitOptions::default()
    };
    Repository::init(Arc::new(LocalBackend::new(dir)), b"test password", opts)
        .await
        .unwrap()
}

/// Backs up `source` and returns the snapshot's ID and the snapshot.
pub(crate) async fn backup_dir(repo: &Repository, source: &Path) -> (arca_repo::Id, Snapshot) {
    let opts = BackupOptions {
        paths: vec![source.to_owned()],
        ..BackupOptions::default()
    };
    let outcome = backup(repo, &opts, Arc::new(NoProgress)).await.unwrap();
    assert!(outcome.unreadable.is_empty(), "{:?}", outcome.unreadable);
    (outcome.snapshot_id, outcome.snapshot)
}

/// Where `source` (an absolute path that was backed up) lands under `target`.
pub(crate) fn restored(target: &Path, source: &Path) -> PathBuf {
    target.join(source.strip_prefix("/").unwrap())
}

/// Deterministic pseudo-random bytes (xorshift), so content neither
/// compresses nor deduplicates across seeds.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}
