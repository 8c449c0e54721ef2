//! Test support shared by the unit tests of this crate: an in-memory backend
//! whose contents tests can inspect and damage, proptest strategies, and the
//! fixtures the integration tests use too (`common`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arca_store::{Backend, ObjectMeta};
use bytes::Bytes;
use proptest::prelude::*;

use crate::Id;
use crate::blob::BlobType;
// What `common` names through its parent module.
use crate::{Repository, index::Index, repository::InitOptions, tree::Node, tree::Tree};

/// Also compiled into the integration tests; it lives with them because
/// this module exists only in unit-test builds. Each side uses a subset.
#[allow(dead_code)]
#[path = "../tests/repo_fixtures/common.rs"]
mod common;

pub(crate) use common::{InterceptWrites, WriteHook, noise, small_repo_options, tree_at};

/// A [`Backend`] over a `BTreeMap`, for unit tests that need to look at or
/// tamper with stored objects.
#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Bytes>>,
    /// When set, `put` stores only half of the bytes and reports success,
    /// like a broken store.
    short_writes: AtomicBool,
}

impl MemoryBackend {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(MemoryBackend::default())
    }

    /// Paths of all objects starting with `prefix`.
    pub(crate) fn paths(&self, prefix: &str) -> Vec<String> {
        let objects = self.objects.lock().unwrap();
        objects
            .keys()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Replaces an object's bytes behind the repository's back.
    pub(crate) fn tamper(&self, path: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(path).expect("object to tamper with exists");
        let mut bytes = object.to_vec();
        change(&mut bytes);
        *object = Bytes::from(bytes);
    }

    /// Makes later `put`s silently store a prefix only.
    pub(crate) fn break_writes(&self) {
        self.short_writes.store(true, Ordering::SeqCst);
    }

    fn not_found(path: &str) -> arca_store::Error {
        arca_store::Error::NotFound {
            path: path.to_owned(),
        }
    }
}

impl std::fmt::Display for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory:")
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, path: &str) -> arca_store::Result<Bytes> {
        self.objects
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or_else(|| Self::not_found(path))
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> arca_store::Result<Bytes> {
        let object = self.get(path).await?;
        let end = (range.end as usize).min(object.len());
        let start = (range.start as usize).min(end);
        Ok(object.slice(start..end))
    }

    async fn put(&self, path: &str, mut data: Bytes) -> arca_store::Result<()> {
        if self.short_writes.load(Ordering::SeqCst) {
            data.truncate(data.len() / 2);
        }
        self.objects.lock().unwrap().insert(path.to_owned(), data);
        Ok(())
    }

    async fn delete(&self, path: &str) -> arca_store::Result<()> {
        self.objects.lock().unwrap().remove(path);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> arca_store::Result<Vec<ObjectMeta>> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(p, b)| ObjectMeta {
                path: p.clone(),
                size: b.len() as u64,
            })
            .collect())
    }

    async fn head(&self, path: &str) -> arca_store::Result<ObjectMeta> {
        let size = self.get(path).await?.len() as u64;
        Ok(ObjectMeta {
            path: path.to_owned(),
            size,
        })
    }
}

pub(crate) fn any_id() -> impl Strategy<Value = Id> {
    any::<[u8; 32]>().prop_map(Id)
}

pub(crate) fn any_blob_type() -> impl Strategy<Value = BlobType> {
    prop_oneof![Just(BlobType::Data), Just(BlobType::Tree)]
}

/// A plausible uncompressed length: `None`, or a non-zero length.
pub(crate) fn any_envelope() -> impl Strategy<Value = crate::blob::BlobEnvelope> {
    prop_oneof![
        Just(crate::blob::BlobEnvelope::PerBlob),
        (0u32..arca_crypto::AUDIT_KEY_ID, any::<[u8; 16]>()).prop_map(|(key_id, salt)| {
            crate::blob::BlobEnvelope::Pack(arca_crypto::BlobKeyId { key_id, salt })
        }),
    ]
}

pub(crate) fn any_uncompressed_length() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(1..=u32::MAX)
}

/// The master key unit tests share (generating one per case is wasteful).
pub(crate) fn test_key() -> &'static arca_crypto::MasterKey {
    static KEY: std::sync::OnceLock<arca_crypto::MasterKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| arca_crypto::MasterKey::generate().expect("OS RNG works"))
}

/// A blob key of [`test_key`], as a writer session draws one.
pub(crate) fn test_blob_key() -> Arc<arca_crypto::BlobKey> {
    static KEY: std::sync::OnceLock<Arc<arca_crypto::BlobKey>> = std::sync::OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(test_key().fresh_blob_key().expect("OS RNG works"))))
}
