//! Backends on object_store: S3 and S3-compatible stores, GCS, Azure Blob.

use std::error::Error as StdError;
use std::future::Future;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Backend, Error, ObjectMeta, Result, SpoolDir, SpoolFile};

/// Objects up to this size are written with one PUT; larger ones as a multipart
/// upload of [`MULTIPART_PART_SIZE`] parts sent in parallel. Above the largest
/// pack of the default repository parameters (16 MiB plus one blob of up to
/// 8 MiB), so each such pack costs one request rather than five.
pub const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
/// Part size of multipart uploads: one request per 8 MiB.
pub const MULTIPART_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts of one multipart upload from memory in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;
/// Parts read from spool files in memory at once, over all uploads of one
/// backend: what a spooled upload costs in memory is this many
/// [`MULTIPART_PART_SIZE`] buffers, however many packs upload at a time. A
/// spooled object up to [`MULTIPART_THRESHOLD`] is one PUT holding as many
/// of them as it spans (a pack stays one request), a larger one a multipart
/// upload.
const SPOOLED_PARTS_IN_MEMORY: usize = (MULTIPART_THRESHOLD / MULTIPART_PART_SIZE) as usize;

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
    /// Where writers spool the objects they build gradually, if anywhere.
    spool_dir: Option<PathBuf>,
    /// Permits for the parts of spooled objects read into memory
    /// ([`SPOOLED_PARTS_IN_MEMORY`]).
    spooled_parts: Arc<Semaphore>,
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
            spool_dir: None,
            spooled_parts: Arc::new(Semaphore::new(SPOOLED_PARTS_IN_MEMORY)),
        }
    }

    /// Has writers spool the objects they build gradually (data packs) to
    /// unnamed files in `dir`, uploaded from there a part at a time, instead
    /// of building them in memory.
    #[must_use]
    pub fn with_spool_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(dir.into());
        self
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

    /// Uploads `size` bytes as a multipart upload of [`MULTIPART_PART_SIZE`]
    /// parts, `at_once` of them in flight; `read_part` gives the bytes of a
    /// range and a permit to hold until they are sent (or `None`).
    async fn put_multipart<F, Fut>(
        &self,
        path: &str,
        key: &StorePath,
        size: u64,
        at_once: usize,
        mut read_part: F,
    ) -> Result<()>
    where
        F: FnMut(Range<u64>) -> Fut,
        Fut: Future<Output = Result<(Bytes, Option<OwnedSemaphorePermit>)>>,
    {
        let mut upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|err| self.classify(path, err))?;
        let mut in_flight = FuturesUnordered::new();
        let mut sent = async {
            let mut start = 0;
            while start < size {
                while in_flight.len() >= at_once {
                    in_flight.next().await.transpose().map_err(|err| self.classify(path, err))?;
                }
                let range = start..(start + MULTIPART_PART_SIZE).min(size);
                start = range.end;
                // The parts in flight are only sent while polled: read the
                // next one while polling them (it may wait for a permit one
                // of them holds).
                let next = read_part(range);
                tokio::pin!(next);
                let (data, permit) = loop {
                    tokio::select! {
                        read = &mut next => break read?,
                        Some(done) = in_flight.next() => done.map_err(|err| self.classify(path, err))?,
                    }
                };
                // Parts are numbered in the order put_part is called.
                let part = upload.put_part(PutPayload::from_bytes(data));
                in_flight.push(async move {
                    let sent = part.await;
                    drop(permit);
                    sent
                });
            }
            while let Some(done) = in_flight.next().await {
                done.map_err(|err| self.classify(path, err))?;
            }
            Ok(())
        }
        .await;
        drop(in_flight);
        if sent.is_ok() {
            sent = upload
                .complete()
                .await
                .map(drop)
                .map_err(|err| self.classify(path, err));
        }
        if sent.is_err() {
            // Best effort: an unfinished upload is invisible and expires by bucket policy.
            let _ = upload.abort().await;
        }
        sent
    }

    /// `range` of a spool file, read on the blocking pool once as many of the
    /// [`SPOOLED_PARTS_IN_MEMORY`] permits as it spans parts are free.
    async fn read_spooled(
        &self,
        path: &str,
        file: &Arc<SpoolFile>,
        range: Range<u64>,
    ) -> Result<(Bytes, Option<OwnedSemaphorePermit>)> {
        let parts = (range.end - range.start)
            .div_ceil(MULTIPART_PART_SIZE)
            .max(1);
        let permit = Arc::clone(&self.spooled_parts)
            .acquire_many_owned(u32::try_from(parts).expect("at most the multipart threshold"))
            .await
            .expect("the spooled-parts semaphore is never closed");
        let file = Arc::clone(file);
        let data = tokio::task::spawn_blocking(move || file.read_range(range))
            .await
            .map_err(|err| {
                Error::permanent(
                    self.location(path),
                    format!("reading the spool file failed: {err}"),
                )
            })??;
        Ok((data, Some(permit)))
    }

    /// After a write of `size` bytes: with [`WriteCheck::HeadSize`], that the
    /// store holds that many.
    async fn check_written(&self, path: &str, size: u64) -> Result<()> {
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
            let part = |range: Range<u64>| {
                let part = data.slice(range.start as usize..range.end as usize);
                std::future::ready(Ok((part, None)))
            };
            self.put_multipart(path, &key, size, MULTIPART_CONCURRENCY, part)
                .await?;
        } else {
            self.store
                .put(&key, PutPayload::from_bytes(data))
                .await
                .map_err(|err| self.classify(path, err))?;
        }
        self.check_written(path, size).await
    }

    /// Streams the file: one PUT up to [`MULTIPART_THRESHOLD`] (as from
    /// memory), else a multipart upload, each part read from the file when a
    /// permit is free, so that at most [`SPOOLED_PARTS_IN_MEMORY`] parts' worth
    /// of all spooled uploads are in memory at once.
    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        let key = self.key(path)?;
        let size = file.len();
        if size > MULTIPART_THRESHOLD {
            let part = |range| self.read_spooled(path, &file, range);
            self.put_multipart(path, &key, size, SPOOLED_PARTS_IN_MEMORY, part)
                .await?;
        } else {
            let (data, _permit) = self.read_spooled(path, &file, 0..size).await?;
            self.store
                .put(&key, PutPayload::from_bytes(data))
                .await
                .map_err(|err| self.classify(path, err))?;
        }
        self.check_written(path, size).await
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

    fn spool_dir(&self) -> Option<SpoolDir> {
        self.spool_dir.clone().map(SpoolDir::Temporary)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, PutMultipartOptions, PutOptions,
        PutResult, UploadPart,
    };

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
            Arc::new(InMemory::new()),
            "",
            "memory",
            WriteCheck::TrustResponse,
            vec![],
        );
        assert_eq!(backend.put_requests(MULTIPART_THRESHOLD), 1);
        // 40 MiB = 5 parts of 8 MiB + start + complete.
        assert_eq!(backend.put_requests(40 << 20), 7);
        // Spooled objects likewise: a pack is one request.
        assert_eq!(backend.put_file_requests(MULTIPART_THRESHOLD), 1);
        assert_eq!(backend.put_file_requests(40 << 20), 7);
    }

    /// Shared by a [`PartsProbe`] and its uploads.
    #[derive(Debug, Default)]
    struct Probe {
        /// The part (counted from 0 within an upload) that fails, once.
        fail_part: Option<usize>,
        failed: std::sync::atomic::AtomicBool,
        /// Parts handed to an upload and not yet sent.
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        aborts: AtomicUsize,
    }

    /// An in-memory store whose multipart uploads report to a [`Probe`] and
    /// fail one part with a 503 if it says so.
    #[derive(Debug)]
    struct PartsProbe {
        inner: InMemory,
        probe: Arc<Probe>,
    }

    impl std::fmt::Display for PartsProbe {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("parts probe")
        }
    }

    #[derive(Debug)]
    struct ProbedUpload {
        inner: Box<dyn MultipartUpload>,
        parts: usize,
        probe: Arc<Probe>,
    }

    #[async_trait::async_trait]
    impl MultipartUpload for ProbedUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let number = self.parts;
            self.parts += 1;
            let probe = Arc::clone(&self.probe);
            let now = probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            probe.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let fail =
                probe.fail_part == Some(number) && !probe.failed.swap(true, Ordering::SeqCst);
            let part = self.inner.put_part(data);
            Box::pin(async move {
                // Pending once, as a request on the wire is.
                tokio::task::yield_now().await;
                let sent = if fail {
                    Err(object_store::Error::Generic {
                        store: "parts probe",
                        source: "status code: 503 Service Unavailable".into(),
                    })
                } else {
                    part.await
                };
                probe.in_flight.fetch_sub(1, Ordering::SeqCst);
                sent
            })
        }
        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }
        async fn abort(&mut self) -> object_store::Result<()> {
            self.probe.aborts.fetch_add(1, Ordering::SeqCst);
            self.inner.abort().await
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for PartsProbe {
        async fn put_opts(
            &self,
            location: &StorePath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &StorePath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(ProbedUpload {
                inner,
                parts: 0,
                probe: Arc::clone(&self.probe),
            }))
        }
        async fn get_opts(
            &self,
            location: &StorePath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &StorePath) -> object_store::Result<()> {
            self.inner.delete(location).await
        }
        fn list(
            &self,
            prefix: Option<&StorePath>,
        ) -> BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&StorePath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(&self, from: &StorePath, to: &StorePath) -> object_store::Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(
            &self,
            from: &StorePath,
            to: &StorePath,
        ) -> object_store::Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    /// A backend over a [`PartsProbe`] spooling to `dir`.
    fn probed(probe: &Arc<Probe>, dir: &std::path::Path) -> ObjectStoreBackend {
        let store = PartsProbe {
            inner: InMemory::new(),
            probe: Arc::clone(probe),
        };
        ObjectStoreBackend::new(Arc::new(store), "", "probe", WriteCheck::HeadSize, vec![])
            .with_spool_dir(dir)
    }

    /// A spool file of `len` bytes of a pattern seeded by `seed`, and the bytes.
    fn spooled(backend: &ObjectStoreBackend, len: usize, seed: u8) -> (Arc<SpoolFile>, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i / 4099) as u8 ^ seed).collect();
        let mut file = backend.spool_dir().unwrap().create().unwrap();
        file.append(&bytes).unwrap();
        (Arc::new(file), bytes)
    }

    /// Three objects of five parts each uploading at once: each arrives
    /// whole, and never more than [`SPOOLED_PARTS_IN_MEMORY`] parts were
    /// read from the files and not yet sent. The spool directory stays empty
    /// (the files are unnamed).
    #[tokio::test]
    async fn spooled_objects_stream_in_parts_with_a_bounded_number_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Arc::new(Probe::default());
        let backend = probed(&probe, dir.path());
        let len = MULTIPART_THRESHOLD as usize + 12_345;
        let objects: Vec<_> = (0..3).map(|n| spooled(&backend, len, n)).collect();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let uploads = objects.iter().enumerate().map(|(n, (file, _))| {
            let backend = &backend;
            async move {
                backend
                    .put_file(&format!("data/{n}"), Arc::clone(file))
                    .await
            }
        });
        for uploaded in futures::future::join_all(uploads).await {
            uploaded.unwrap();
        }
        for (n, (_, bytes)) in objects.iter().enumerate() {
            assert_eq!(backend.get(&format!("data/{n}")).await.unwrap(), bytes[..]);
        }
        let max = probe.max_in_flight.load(Ordering::SeqCst);
        assert!(
            (1..=SPOOLED_PARTS_IN_MEMORY).contains(&max),
            "{max} parts in memory"
        );
        assert_eq!(probe.aborts.load(Ordering::SeqCst), 0);
        drop(objects);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A part failing mid-upload: the upload is aborted, no object appears,
    /// the error is transient, and the same file uploads whole on the retry.
    #[tokio::test]
    async fn a_part_failing_mid_upload_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Arc::new(Probe {
            fail_part: Some(1),
            ..Probe::default()
        });
        let backend = probed(&probe, dir.path());
        let (file, bytes) = spooled(&backend, MULTIPART_THRESHOLD as usize + 1, 9);
        let err = backend
            .put_file("data/pack", Arc::clone(&file))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(probe.aborts.load(Ordering::SeqCst), 1);
        assert!(matches!(
            backend.head("data/pack").await,
            Err(Error::NotFound { .. })
        ));
        backend.put_file("data/pack", file).await.unwrap();
        assert_eq!(backend.get("data/pack").await.unwrap(), bytes[..]);
    }

    #[test]
    fn secrets_are_scrubbed_and_not_in_debug() {
        let backend = ObjectStoreBackend::new(
            Arc::new(InMemory::new()),
            "p",
            "s3:http://h/b/p",
            WriteCheck::TrustResponse,
            vec!["hunter2".into(), String::new()],
        );
        assert_eq!(backend.scrub("key hunter2 leaked"), "key <redacted> leaked");
        assert!(!format!("{backend:?}").contains("hunter2"));
    }
}
