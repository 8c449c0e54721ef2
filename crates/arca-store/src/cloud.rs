//! Backends on object_store: S3 and S3-compatible stores, GCS, Azure Blob.

use std::error::Error as StdError;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};

use crate::{Backend, Error, ObjectMeta, Result};

/// Objects up to this size are written with one PUT; larger ones as a multipart
/// upload of [`MULTIPART_PART_SIZE`] parts sent in parallel. Above the largest
/// pack of the default repository parameters (16 MiB plus one blob of up to
/// 8 MiB), so each such pack costs one request rather than five.
pub const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// Part size of multipart uploads: one request per 8 MiB.
pub const MULTIPART_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;

/// How a cloud backend makes sure a write landed whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCheck {
    /// Trust the service's success response. Right for S3: object_store signs the
    /// SHA-256 of every request body (SigV4 `x-amz-content-sha256`), S3 rejects a
    /// body that does not match, and a PUT or CompleteMultipartUpload is atomic.
    TrustResponse,
    /// After each write, `head` the object and compare the size (one extra request).
    HeadSize,
}

/// A [`Backend`] over any object_store store, under a key prefix.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    /// `""` or `"some/prefix"` (no surrounding slashes).
    prefix: String,
    /// What [`std::fmt::Display`] shows: the repository URL.
    name: String,
    write_check: WriteCheck,
    /// Secret values that must never appear in an error message.
    secrets: Vec<String>,
}

impl std::fmt::Debug for ObjectStoreBackend {
    // The inner store's Debug may include credentials: show only the location.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("name", &self.name)
            .field("write_check", &self.write_check)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl ObjectStoreBackend {
    /// Wraps `store`; objects live under `prefix`. `name` is shown in messages;
    /// `secrets` are scrubbed from every error message.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        name: impl Into<String>,
        write_check: WriteCheck,
        secrets: Vec<String>,
    ) -> Self {
        ObjectStoreBackend {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            name: name.into(),
            write_check,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    fn key(&self, path: &str) -> Result<StorePath> {
        let full = if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        };
        let parsed = StorePath::parse(&full)
            .ok()
            .filter(|_| crate::is_valid_object_path(path));
        parsed.ok_or_else(|| Error::invalid_object_path(self.name.clone(), path))
    }

    fn location(&self, path: &str) -> String {
        format!("{}/{path}", self.name)
    }

    fn classify(&self, path: &str, err: object_store::Error) -> Error {
        let location = self.location(path);
        let message = self.scrub(&error_chain(&err));
        use object_store::Error as E;
        match err {
            // S3 says 404 for a missing bucket too; that is no missing object.
            E::NotFound { .. } if message.contains("NoSuchBucket") => Error::permanent(
                location,
                "the bucket does not exist; create it (Arca does not create buckets) or fix the URL",
            ),
            E::NotFound { .. } => Error::NotFound {
                path: path.to_owned(),
            },
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => Error::permanent(
                location,
                format!(
                    "access denied; check the credentials and that they may read and write this bucket ({message})"
                ),
            ),
            E::Generic { source, .. } if is_transient_source(source.as_ref()) => {
                Error::transient(location, message)
            }
            _ => Error::permanent(location, message),
        }
    }

    fn scrub(&self, message: &str) -> String {
        self.secrets.iter().fold(message.to_owned(), |m, secret| {
            m.replace(secret, "<redacted>")
        })
    }

    async fn put_multipart(&self, path: &str, key: &StorePath, data: Bytes) -> Result<()> {
        let mut upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|err| self.classify(path, err))?;
        let part_size = MULTIPART_PART_SIZE as usize;
        // Parts are numbered in the order put_part is called, so create the futures
        // in order and only then let them run concurrently.
        let parts: Vec<_> = (0..data.len())
            .step_by(part_size)
            .map(|start| {
                let end = (start + part_size).min(data.len());
                upload.put_part(PutPayload::from_bytes(data.slice(start..end)))
            })
            .collect();
        let uploaded = futures::stream::iter(parts)
            .buffer_unordered(MULTIPART_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await;
        let completed = match uploaded {
            Ok(_) => upload.complete().await.map(drop),
            Err(err) => Err(err),
        };
        if let Err(err) = completed {
            // Best effort: an unfinished upload is invisible and expires by bucket policy.
            let _ = upload.abort().await;
            return Err(self.classify(path, err));
        }
        Ok(())
    }
}

/// The error and its sources, joined: object_store's top-level message often hides the cause.
fn error_chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Whether a `Generic` object_store error is worth retrying: connection problems,
/// timeouts, interrupted bodies, throttling and server errors.
fn is_transient_source(err: &(dyn StdError + 'static)) -> bool {
    use object_store::client::HttpErrorKind as K;
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<object_store::client::HttpError>() {
            return matches!(
                http.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted | K::Decode
            );
        }
        // object_store's RetryError is not nameable from outside the crate, and it wraps
        // HttpError transparently (hiding it from the source chain), so go by the message:
        // "HTTP error: ..." is a transport failure, and a status is "status code: 503 ...".
        let text = e.to_string();
        if text.starts_with("HTTP error:") {
            return true;
        }
        if let Some(status) = status_code(&text) {
            return status >= 500 || status == 429 || status == 408;
        }
        if [
            "SlowDown",
            "InternalError",
            "ServiceUnavailable",
            "RequestTimeout",
        ]
        .iter()
        .any(|code| text.contains(code))
        {
            return true;
        }
        current = e.source();
    }
    false
}

fn status_code(message: &str) -> Option<u16> {
    let (_, after) = message.split_once("status code: ")?;
    after.get(..3)?.parse().ok()
}

#[async_trait::async_trait]
impl Backend for ObjectStoreBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        let result = self.store.get(&key).await;
        let body = result.map_err(|err| self.classify(path, err))?;
        body.bytes().await.map_err(|err| self.classify(path, err))
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let key = self.key(path)?;
        if range.start > range.end {
            return Err(Error::permanent(
                self.location(path),
                format!(
                    "empty range {}..{} (a bug in the caller)",
                    range.start, range.end
                ),
            ));
        }
        if range.is_empty() {
            // object_store refuses empty ranges; check existence like a read would.
            self.head(path).await?;
            return Ok(Bytes::new());
        }
        let expected = range.end - range.start;
        let data = self
            .store
            .get_range(&key, range.clone())
            .await
            .map_err(|err| self.classify(path, err))?;
        if data.len() as u64 != expected {
            return Err(Error::permanent(
                self.location(path),
                format!(
                    "range {}..{} is outside the object (got {} bytes)",
                    range.start,
                    range.end,
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        let size = data.len() as u64;
        if size > MULTIPART_THRESHOLD {
            self.put_multipart(path, &key, data).await?;
        } else {
            self.store
                .put(&key, PutPayload::from_bytes(data))
                .await
                .map_err(|err| self.classify(path, err))?;
        }
        if self.write_check == WriteCheck::HeadSize {
            let landed = self.head(path).await?;
            if landed.size != size {
                return Err(Error::transient(
                    self.location(path),
                    format!("wrote {size} bytes but the store holds {}", landed.size),
                ));
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(self.classify(path, err)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // object_store lists whole path segments; filter the rest of the prefix here.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let listed_dir = [self.prefix.as_str(), dir]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let listed_dir = if listed_dir.is_empty() {
            None
        } else {
            Some(StorePath::parse(&listed_dir).map_err(|err| {
                Error::permanent(self.location(prefix), format!("invalid list prefix: {err}"))
            })?)
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut found = Vec::new();
        let mut stream = self.store.list(listed_dir.as_ref());
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|err| self.classify(prefix, err))?;
            let full = meta.location.as_ref();
            let Some(path) = full.strip_prefix(&strip) else {
                continue;
            };
            if path.starts_with(prefix) {
                found.push(ObjectMeta {
                    path: path.to_owned(),
                    size: meta.size,
                });
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        let meta = self
            .store
            .head(&key)
            .await
            .map_err(|err| self.classify(path, err))?;
        Ok(ObjectMeta {
            path: path.to_owned(),
            size: meta.size,
        })
    }

    fn put_requests(&self, size: u64) -> u64 {
        let write = if size > MULTIPART_THRESHOLD {
            // CreateMultipartUpload + parts + CompleteMultipartUpload.
            size.div_ceil(MULTIPART_PART_SIZE) + 2
        } else {
            1
        };
        write + u64::from(self.write_check == WriteCheck::HeadSize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_read_from_messages() {
        assert_eq!(
            status_code(
                "Error performing PUT http://h/b/k in 1ms - Server returned non-2xx status code: 503 Service Unavailable: "
            ),
            Some(503)
        );
        assert_eq!(status_code("no status here"), None);
    }

    #[test]
    fn server_errors_and_throttling_are_transient_client_errors_not() {
        let transient = [
            "status code: 500 Internal",
            "status code: 503 x",
            "status code: 429 Too Many",
            "<Code>SlowDown</Code>",
            "HTTP error: error sending request",
        ];
        for text in transient {
            assert!(is_transient_source(&std::io::Error::other(text)), "{text}");
        }
        for text in [
            "status code: 400 Bad Request",
            "status code: 403 Forbidden",
            "something else",
        ] {
            assert!(!is_transient_source(&std::io::Error::other(text)), "{text}");
        }
    }

    #[test]
    fn multipart_request_count() {
        let backend = ObjectStoreBackend::new(
            Arc::new(object_store::memory::InMemory::new()),
            "",
            "memory",
            WriteCheck::TrustResponse,
            vec![],
        );
        assert_eq!(backend.put_requests(MULTIPART_THRESHOLD), 1);
        // 40 MiB = 5 parts of 8 MiB + start + complete.
        assert_eq!(backend.put_requests(40 << 20), 7);
    }

    #[test]
    fn secrets_are_scrubbed_and_not_in_debug() {
        let backend = ObjectStoreBackend::new(
            Arc::new(object_store::memory::InMemory::new()),
            "p",
            "s3:http://h/b/p",
            WriteCheck::TrustResponse,
            vec!["hunter2".into(), String::new()],
        );
        assert_eq!(backend.scrub("key hunter2 leaked"), "key <redacted> leaked");
        assert!(!format!("{backend:?}").contains("hunter2"));
    }
}
