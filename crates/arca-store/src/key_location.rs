//! [`KeyLocationBackend`]: a repository whose key material lives apart from
//! its data.
//!
//! Objects under `keys/` and `keyring/` (the key files and data keyrings of
//! docs/FORMAT.md §6 and §20) go to and come from a second backend, the *key
//! location*; everything else (config, packs, index, snapshots, holds,
//! audit) stays in the data backend. Copies of the data storage (versioned
//! buckets, storage snapshots, replicas) then hold no key material, which is
//! what makes deleting keys an erasure (docs/FORMAT.md §20, "Key material in
//! a separate location"). This is routing only: it neither encrypts nor
//! checks anything itself.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Backend, ObjectMeta, Result, SpoolDir, SpoolFile};

/// The top-level directories that live in the key location.
pub const KEY_DIRS: [&str; 2] = ["keys/", "keyring/"];

/// A data backend and a key location seen as one repository; see the module docs.
#[derive(Debug)]
pub struct KeyLocationBackend {
    data: Arc<dyn Backend>,
    keys: Arc<dyn Backend>,
}

impl KeyLocationBackend {
    /// Routes `keys/` and `keyring/` to `keys`, the rest to `data`.
    pub fn new(data: Arc<dyn Backend>, keys: Arc<dyn Backend>) -> Self {
        KeyLocationBackend { data, keys }
    }

    fn route(&self, path: &str) -> &Arc<dyn Backend> {
        if is_key_path(path) {
            &self.keys
        } else {
            &self.data
        }
    }
}

fn is_key_path(path: &str) -> bool {
    KEY_DIRS.iter().any(|dir| path.starts_with(dir))
}

impl std::fmt::Display for KeyLocationBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (keys in {})", self.data, self.keys)
    }
}

#[async_trait::async_trait]
impl Backend for KeyLocationBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        self.route(path).get(path).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.route(path).get_range(path, range).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.route(path).put(path, data).await
    }

    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        self.route(path).put_file(path, file).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.route(path).delete(path).await
    }

    /// A prefix inside a key directory lists the key location; a prefix
    /// that covers a key directory (the empty one, say) lists both, with
    /// any stray key objects of the data backend left out.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if is_key_path(prefix) {
            return self.keys.list(prefix).await;
        }
        let mut listed = self.data.list(prefix).await?;
        if KEY_DIRS.iter().any(|dir| dir.starts_with(prefix)) {
            listed.retain(|meta| !is_key_path(&meta.path));
            listed.extend(self.keys.list(prefix).await?);
            listed.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(listed)
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.route(path).head(path).await
    }

    fn put_requests(&self, size: u64) -> u64 {
        self.data.put_requests(size)
    }
    fn put_file_requests(&self, size: u64) -> u64 {
        self.data.put_file_requests(size)
    }

    fn connections(&self) -> Option<usize> {
        self.data.connections()
    }

    /// Only the data backend's: writers spool packs, never key files.
    fn spool_dir(&self) -> Option<SpoolDir> {
        self.data.spool_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalBackend;

    #[tokio::test]
    async fn key_objects_go_to_the_key_location_and_the_rest_to_the_data() {
        let (data_dir, key_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let data: Arc<dyn Backend> = Arc::new(LocalBackend::new(data_dir.path()));
        let keys: Arc<dyn Backend> = Arc::new(LocalBackend::new(key_dir.path()));
        let both = KeyLocationBackend::new(data.clone(), keys.clone());
        for path in ["config", "keys/k1", "keyring/r1", "data/ab/p1", "keysake/x"] {
            both.put(path, Bytes::from(path.to_owned())).await.unwrap();
            assert_eq!(&both.get(path).await.unwrap()[..], path.as_bytes());
        }
        let paths = |metas: Vec<ObjectMeta>| -> Vec<String> {
            metas.into_iter().map(|meta| meta.path).collect()
        };
        assert_eq!(
            paths(keys.list("").await.unwrap()),
            ["keyring/r1", "keys/k1"]
        );
        assert_eq!(
            paths(data.list("").await.unwrap()),
            ["config", "data/ab/p1", "keysake/x"]
        );
        assert_eq!(
            paths(both.list("").await.unwrap()),
            ["config", "data/ab/p1", "keyring/r1", "keys/k1", "keysake/x"]
        );
        assert_eq!(paths(both.list("keys/").await.unwrap()), ["keys/k1"]);
        assert_eq!(
            paths(both.list("key").await.unwrap()),
            ["keyring/r1", "keys/k1", "keysake/x"]
        );
        both.delete("keys/k1").await.unwrap();
        assert!(keys.list("keys/").await.unwrap().is_empty());
        assert!(format!("{both}").contains("keys in"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Through the router, every listing is what one store holding all
        /// the objects would list, and the key location holds exactly the
        /// key objects.
        #[test]
        fn listings_match_a_single_store(
            objects in proptest::collection::btree_set(
                (
                    proptest::sample::select(vec!["keys/", "keyring/", "keysake/", "data/ab/", "k", ""]),
                    "[a-z]{1,3}",
                ),
                0..12,
            ),
            prefix in proptest::sample::select(vec!["", "k", "key", "keys", "keys/", "keyring/", "d", "data/"]),
        ) {
            let paths: std::collections::BTreeSet<String> =
                objects.iter().map(|(dir, name)| format!("{dir}{name}")).collect();
            let (data_dir, key_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let keys: Arc<dyn Backend> = Arc::new(LocalBackend::new(key_dir.path()));
            let both = KeyLocationBackend::new(Arc::new(LocalBackend::new(data_dir.path())), keys.clone());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (listed, in_keys) = runtime.block_on(async {
                for path in &paths {
                    both.put(path, Bytes::new()).await.unwrap();
                }
                (both.list(prefix).await.unwrap(), keys.list("").await.unwrap())
            });
            let listed: Vec<String> = listed.into_iter().map(|meta| meta.path).collect();
            let expected: Vec<String> =
                paths.iter().filter(|path| path.starts_with(prefix)).cloned().collect();
            proptest::prop_assert_eq!(listed, expected);
            let in_keys: Vec<String> = in_keys.into_iter().map(|meta| meta.path).collect();
            let expected_keys: Vec<String> =
                paths.iter().filter(|path| is_key_path(path)).cloned().collect();
            proptest::prop_assert_eq!(in_keys, expected_keys);
        }
    }
}
