//! [`AppendOnlyBackend`]: a decorator that refuses to delete or overwrite.
//!
//! It models the storage permissions of a backup-only client (an S3 policy
//! without `s3:DeleteObject`, a directory the client cannot unlink in): a
//! `put` of a path that exists and every `delete` fail with a permanent
//! error, and each refusal is remembered, so a test can prove an operation
//! never tried, even where the caller ignores the error. It is a check in
//! the client, not a protection: a client that can write can also skip it;
//! real protection is the storage's own permissions (docs/FORMAT.md,
//! "Append-only clients"). The check for an existing object is a `head`
//! before each write, so two writers racing for one path can both pass it.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{Backend, Error, ObjectMeta, Result, SpoolDir, SpoolFile};

/// A backend that refuses deletes and overwrites; see the module docs.
#[derive(Debug)]
pub struct AppendOnlyBackend {
    inner: Arc<dyn Backend>,
    refused: Mutex<Vec<String>>,
}

impl AppendOnlyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        AppendOnlyBackend {
            inner,
            refused: Mutex::new(Vec::new()),
        }
    }

    /// Every refused operation so far, as `delete PATH` or `overwrite PATH`.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, operation: &str, path: &str) -> Error {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{operation} {path}"));
        Error::permanent(
            format!("{}/{path}", self.inner),
            format!("{operation} refused: the storage is append-only for this client"),
        )
    }

    /// Ok if nothing is stored at `path` yet.
    async fn ensure_absent(&self, path: &str) -> Result<()> {
        match self.inner.head(path).await {
            Ok(_) => Err(self.refuse("overwrite", path)),
            Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl std::fmt::Display for AppendOnlyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for AppendOnlyBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        self.inner.get(path).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(path, range).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.ensure_absent(path).await?;
        self.inner.put(path, data).await
    }

    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        self.ensure_absent(path).await?;
        self.inner.put_file(path, file).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        Err(self.refuse("delete", path))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.inner.head(path).await
    }

    fn put_requests(&self, size: u64) -> u64 {
        self.inner.put_requests(size)
    }
    fn put_file_requests(&self, size: u64) -> u64 {
        self.inner.put_file_requests(size)
    }

    fn connections(&self) -> Option<usize> {
        self.inner.connections()
    }

    fn spool_dir(&self) -> Option<SpoolDir> {
        self.inner.spool_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalBackend;

    #[tokio::test]
    async fn writes_new_objects_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path()));
        let backend = AppendOnlyBackend::new(local.clone());
        backend
            .put("data/ab/one", Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!(&backend.get("data/ab/one").await.unwrap()[..], b"first");
        let overwrite = backend
            .put("data/ab/one", Bytes::from_static(b"second"))
            .await;
        assert!(
            matches!(overwrite, Err(Error::Permanent { .. })),
            "{overwrite:?}"
        );
        assert!(matches!(
            backend.delete("data/ab/one").await,
            Err(Error::Permanent { .. })
        ));
        assert!(matches!(
            backend.delete("never/written").await,
            Err(Error::Permanent { .. })
        ));
        // The stored object is untouched, and every attempt is on record.
        assert_eq!(&local.get("data/ab/one").await.unwrap()[..], b"first");
        assert_eq!(
            backend.refused(),
            [
                "overwrite data/ab/one",
                "delete data/ab/one",
                "delete never/written"
            ]
        );
    }
}
