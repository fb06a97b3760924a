//! The one place that talks to object storage: an `object_store` backend (S3 or a local
//! directory) under a key prefix, driven by a small current-thread tokio runtime so that the
//! rest of the library stays synchronous. Every request is counted (tests and reports read the
//! counters), and every failure becomes an error naming the remote URL and the object.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use futures::{Future, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    BackoffConfig, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
    WriteMultipart,
};

use super::dir_write;
use super::url::{endpoint_url, Location, RemoteSpec};
use crate::error::{Error, Result};
use crate::repo::Interrupt;

/// Packs at least this large are uploaded in parts (S3 multipart), this many bytes a part.
pub(crate) const MULTIPART_PART_BYTES: usize = 16 << 20;
/// Parts (or whole objects) in flight at once.
pub(crate) const CONCURRENT_REQUESTS: usize = 4;
/// How often a transfer looks at its interrupt flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long an interrupted multipart upload waits for S3 to confirm its abort.
const ABORT_WAIT: Duration = Duration::from_secs(10);
/// Test hook: the upload after this many pack uploads fails, as a dropped connection would.
pub const FAIL_UPLOADS_AFTER_ENV: &str = "SNAPSTORE_TEST_REMOTE_FAIL_AFTER_UPLOADS";

/// Which kind of store a remote is: refs move by conditional writes on S3, under a lock file in
/// a directory (`object_store`'s local backend creates atomically but cannot compare-and-swap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// An S3-compatible bucket.
    S3,
    /// A directory.
    Directory,
}

/// Requests and bytes a remote handle moved (for reports and tests).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Bytes received (object bodies).
    pub bytes_down: AtomicU64,
    /// Bytes sent (object bodies).
    pub bytes_up: AtomicU64,
}

impl Traffic {
    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a conditional write found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Conditional {
    /// Written.
    Done,
    /// The object exists (create) or changed (update): nothing written.
    Lost,
}

/// An object's body and the version a conditional update must match.
pub(crate) struct Versioned {
    pub bytes: Bytes,
    pub version: UpdateVersion,
}

/// An open remote.
pub(crate) struct RemoteStore {
    /// The URL, for messages.
    pub url: String,
    pub kind: StoreKind,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    rt: tokio::runtime::Runtime,
    pub traffic: Arc<Traffic>,
    uploads: AtomicU64,
    fail_uploads_after: Option<u64>,
    /// An S3 remote's bucket and endpoint (named when the bucket does not exist).
    bucket: Option<(String, String)>,
    /// A directory remote's directory (its packs are copied in directly, see `upload_files`).
    dir: Option<std::path::PathBuf>,
    /// A directory remote's backend, which maps object names to its files (small objects are
    /// written through [`dir_write`], synced).
    local: Option<Arc<LocalFileSystem>>,
    /// Whether a listing comes back in key order (S3 general purpose buckets; not S3 Express
    /// directory buckets, not a local directory).
    ordered_listing: bool,
    /// Stops uploads and downloads once set ([`RemoteStore::stopped_by`]).
    interrupt: Interrupt,
}

impl RemoteStore {
    /// Opens the remote `spec` names (no request is sent yet). A directory remote that does not
    /// exist is created when `create` (a push), else refused by name.
    pub fn open(spec: &RemoteSpec, create: bool) -> Result<RemoteStore> {
        let url = spec.url.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::RemoteIo {
                url: url.clone(),
                object: String::new(),
                problem: format!("cannot start the I/O runtime: {e}"),
            })?;
        let mut ordered_listing = false;
        let mut local_dir = None;
        let mut local = None;
        let mut bucket_at = None;
        let (store, prefix, kind): (Arc<dyn ObjectStore>, String, StoreKind) = match spec
            .location()?
        {
            Location::Directory(dir) => {
                if dir.exists() && !dir.is_dir() {
                    return Err(Error::RemoteLayout {
                        url,
                        problem: "is a file, not a directory".into(),
                    });
                }
                // A push into a repository's own directory was taken, and that repository's
                // next `gc` removed the packs the "remote" needed.
                if dir.join("FORMAT").is_file() && dir.join("index").is_dir() {
                    return Err(Error::RemoteLayout {
                        url,
                        problem: "is a local snapstore repository, not a remote; a directory \
                                  remote is a directory of its own that `push` fills, which \
                                  that repository can push to and others clone from"
                            .into(),
                    });
                }
                if !dir.is_dir() {
                    if !create {
                        return Err(Error::RemoteLayout {
                            url,
                            problem: "holds no snapstore repository (no such directory)".into(),
                        });
                    }
                    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                }
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| Error::RemoteIo {
                    url: url.clone(),
                    object: String::new(),
                    problem: e.to_string(),
                })?;
                local_dir = Some(dir);
                let fs = Arc::new(fs);
                local = Some(fs.clone());
                (fs, String::new(), StoreKind::Directory)
            }
            Location::S3 { bucket, prefix } => {
                let s3 = s3_builder(spec, &bucket)?
                    .build()
                    .map_err(|e| Error::RemoteIo {
                        url: url.clone(),
                        object: String::new(),
                        problem: e.to_string(),
                    })?;
                ordered_listing = !bucket.ends_with("--x-s3");
                let endpoint = spec.endpoint.clone().unwrap_or_else(|| "AWS S3".into());
                bucket_at = Some((bucket.clone(), endpoint));
                (Arc::new(s3), prefix, StoreKind::S3)
            }
        };
        let fail_uploads_after = std::env::var(FAIL_UPLOADS_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(RemoteStore {
            url,
            kind,
            store,
            prefix,
            rt,
            traffic: Arc::new(Traffic::default()),
            uploads: AtomicU64::new(0),
            fail_uploads_after,
            bucket: bucket_at,
            dir: local_dir,
            local,
            ordered_listing,
            interrupt: Interrupt::default(),
        })
    }

    /// Makes uploads and downloads stop with [`Error::Interrupted`] once `interrupt` is set:
    /// within a 50 ms poll, aborting an unfinished multipart upload (which S3 would otherwise
    /// keep, and bill, unseen) and removing a download's temp file.
    pub fn stopped_by(mut self, interrupt: Interrupt) -> RemoteStore {
        self.interrupt = interrupt;
        self
    }

    /// `work`, unless the interrupt is set first: then [`Error::Interrupted`], `work` dropped.
    async fn unless_stopped<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let stopped = async {
            while !self.interrupt.is_set() {
                tokio::time::sleep(STOP_POLL).await;
            }
        };
        futures::pin_mut!(work, stopped);
        match futures::future::select(work, stopped).await {
            Either::Left((done, _)) => done,
            Either::Right(((), _)) => Err(Error::Interrupted),
        }
    }

    fn key(&self, rel: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(rel)
        } else {
            StorePath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn err(&self, rel: &str, e: impl std::fmt::Display) -> Error {
        let problem = e.to_string();
        if let Some(missing) = self.missing_bucket(&problem) {
            return missing;
        }
        Error::RemoteIo {
            url: self.url.clone(),
            object: rel.to_string(),
            problem,
        }
    }

    /// The error to give when S3 answered `NoSuchBucket` (object_store passes the XML body on
    /// in its message): the bucket named, not the XML.
    fn missing_bucket(&self, answer: &str) -> Option<Error> {
        let (bucket, endpoint) = self.bucket.as_ref()?;
        answer
            .contains("<Code>NoSuchBucket</Code>")
            .then(|| Error::RemoteLayout {
                url: self.url.clone(),
                problem: format!("bucket {bucket} does not exist (at {endpoint})"),
            })
    }

    /// The whole object, or `None` when it does not exist.
    pub fn get(&self, rel: &str) -> Result<Option<Versioned>> {
        let key = self.key(rel);
        self.traffic.request();
        let got = self.rt.block_on(async {
            match self.store.get(&key).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    r.bytes()
                        .await
                        .map(|bytes| Some(Versioned { bytes, version }))
                        .map_err(|e| self.err(rel, e))
                }
                Err(e @ object_store::Error::NotFound { .. }) => {
                    match self.missing_bucket(&e.to_string()) {
                        Some(missing) => Err(missing),
                        None => Ok(None),
                    }
                }
                Err(e) => Err(self.err(rel, e)),
            }
        });
        let got = got?;
        if let Some(v) = &got {
            self.traffic
                .bytes_down
                .fetch_add(v.bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(got)
    }

    /// Bytes `range` of an object (one request).
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes> {
        let key = self.key(rel);
        self.traffic.request();
        let want = range.end - range.start;
        let bytes = self
            .rt
            .block_on(self.store.get_range(&key, range.clone()))
            .map_err(|e| self.err(rel, e))?;
        self.traffic
            .bytes_down
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if bytes.len() as u64 != want {
            return Err(Error::RemoteCorrupt {
                url: self.url.clone(),
                object: rel.to_string(),
                problem: format!(
                    "asked for bytes {}..{}, got {} bytes (truncated?)",
                    range.start,
                    range.end,
                    bytes.len()
                ),
            });
        }
        Ok(bytes)
    }

    /// A directory remote's directory.
    pub fn directory(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// The file object `rel` is in a directory remote.
    fn local_path(&self, rel: &str) -> Result<Option<std::path::PathBuf>> {
        let Some(fs) = &self.local else {
            return Ok(None);
        };
        let path = fs
            .path_to_filesystem(&self.key(rel))
            .map_err(|e| self.err(rel, e))?;
        Ok(Some(path))
    }

    /// Writes small objects into a directory remote durably; whether each was written.
    fn write_local(&self, objects: &[(String, Bytes)], mode: dir_write::Mode) -> Result<Vec<bool>> {
        let mut files = Vec::with_capacity(objects.len());
        for (rel, bytes) in objects {
            let path = self.local_path(rel)?.expect("a directory remote");
            files.push((path, &bytes[..]));
        }
        self.traffic
            .requests
            .fetch_add(objects.len() as u64, Ordering::Relaxed);
        let written = dir_write::write_all(&files, mode).map_err(|e| {
            let rel = match objects {
                [(rel, _)] => rel.as_str(),
                _ => "",
            };
            self.err(rel, e)
        })?;
        let up: usize = objects
            .iter()
            .zip(&written)
            .filter(|(_, w)| **w)
            .map(|(o, _)| o.1.len())
            .sum();
        self.traffic
            .bytes_up
            .fetch_add(up as u64, Ordering::Relaxed);
        Ok(written)
    }

    /// Writes an object (replacing any).
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        if self.local.is_some() {
            self.write_local(&[(rel.to_string(), bytes)], dir_write::Mode::Replace)?;
            return Ok(());
        }
        let key = self.key(rel);
        self.traffic.request();
        let n = bytes.len() as u64;
        self.rt
            .block_on(self.store.put(&key, PutPayload::from(bytes)))
            .map_err(|e| self.err(rel, e))?;
        self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Writes an object only if none exists (S3 `If-None-Match: *`).
    pub fn create(&self, rel: &str, bytes: Bytes) -> Result<Conditional> {
        self.put_mode(rel, bytes, PutMode::Create)
    }

    /// Replaces an object only if it is still at `version` (S3 `If-Match`).
    pub fn update(&self, rel: &str, bytes: Bytes, version: UpdateVersion) -> Result<Conditional> {
        self.put_mode(rel, bytes, PutMode::Update(version))
    }

    fn put_mode(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<Conditional> {
        if self.local.is_some() && matches!(mode, PutMode::Create) {
            let written = self.write_local(&[(rel.to_string(), bytes)], dir_write::Mode::Create)?;
            return Ok(match written[0] {
                true => Conditional::Done,
                false => Conditional::Lost,
            });
        }
        let key = self.key(rel);
        self.traffic.request();
        let n = bytes.len() as u64;
        let update = matches!(mode, PutMode::Update(_));
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .rt
            .block_on(self.store.put_opts(&key, PutPayload::from(bytes), opts))
        {
            Ok(_) => {
                self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
                Ok(Conditional::Done)
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Conditional::Lost),
            // An update of an object deleted since it was read lost too.
            Err(e @ object_store::Error::NotFound { .. }) if update => {
                match self.missing_bucket(&e.to_string()) {
                    Some(missing) => Err(missing),
                    None => Ok(Conditional::Lost),
                }
            }
            Err(e @ object_store::Error::NotImplemented)
            | Err(e @ object_store::Error::NotSupported { .. }) => {
                Err(Error::RemoteNoConditionalWrites {
                    url: self.url.clone(),
                    problem: format!("writing {rel}: {e}"),
                })
            }
            // object_store reports other statuses as text: a store that does not implement
            // the precondition headers answers 501 Not Implemented (S3's own code for them).
            Err(e) if e.to_string().contains("501 Not Implemented") => {
                Err(Error::RemoteNoConditionalWrites {
                    url: self.url.clone(),
                    problem: format!("writing {rel} with a precondition header: {e}"),
                })
            }
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Deletes an object (absent is fine).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel);
        self.traffic.request();
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Objects under `dir` (e.g. `packs`), as (name relative to `dir`, size).
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_dated(dir)?
            .into_iter()
            .map(|(name, size, _)| (name, size))
            .collect())
    }

    /// Names under `dir` starting with `start`, listed from `dir/start` on. On S3 the offset is
    /// sent as `start-after` and keys come back in order, so the listing stops at the first name
    /// past `start`: one request for a prefix matching fewer than a page (1000) of names,
    /// however many objects `dir` holds. Where listings are unordered (a directory, an S3
    /// Express bucket) every name is listed and filtered.
    pub fn list_starting(&self, dir: &str, start: &str) -> Result<Vec<String>> {
        let key = self.key(dir);
        let offset = self.key(&format!("{dir}/{start}"));
        let base = format!("{key}/");
        self.traffic.request();
        self.rt.block_on(async {
            let mut stream = self.store.list_with_offset(Some(&key), &offset);
            let mut out = Vec::new();
            while let Some(m) = stream.next().await {
                let m = m.map_err(|e| self.err(dir, e))?;
                let full = m.location.to_string();
                let Some(name) = full.strip_prefix(&base) else {
                    continue;
                };
                if name.starts_with(start) {
                    out.push(name.to_string());
                } else if self.ordered_listing {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Objects under `dir` with their size and last-modified time (`object_store` reports the
    /// store's `Last-Modified` on S3, the file's mtime on a directory).
    pub fn list_dated(&self, dir: &str) -> Result<Vec<(String, u64, std::time::SystemTime)>> {
        let key = self.key(dir);
        self.traffic.request();
        let metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.store.list(Some(&key)).try_collect())
            .map_err(|e| self.err(dir, e))?;
        let base = format!("{key}/");
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let name = full.strip_prefix(&base)?.to_string();
                Some((name, m.size, std::time::SystemTime::from(m.last_modified)))
            })
            .collect())
    }

    /// Uploads local files (`(object, path)`), streamed from disk so memory does not grow with
    /// their size: into a directory remote each is copied to a temp file renamed into place
    /// (removed on Ctrl-C); to S3 small ones go a few at a time, large ones one at a time in
    /// parts (a few parts in flight), and a failed multipart upload is aborted. Calls
    /// `progress(bytes)` as bytes go out. The test hook [`FAIL_UPLOADS_AFTER_ENV`] fails the
    /// upload after that many.
    pub fn upload_files(
        &self,
        files: &[(String, std::path::PathBuf)],
        progress: &dyn Fn(u64),
    ) -> Result<()> {
        let sent = AtomicU64::new(0);
        let report = |n: u64| progress(sent.fetch_add(n, Ordering::Relaxed) + n);
        let hook = |rel: &str| {
            let done = self.uploads.fetch_add(1, Ordering::Relaxed);
            if self.fail_uploads_after.is_some_and(|n| done >= n) {
                return Err(self.err(
                    rel,
                    format!("upload interrupted by the test hook {FAIL_UPLOADS_AFTER_ENV}"),
                ));
            }
            Ok(())
        };
        if let Some(dir) = &self.dir {
            for (rel, path) in files {
                self.interrupt.check()?;
                hook(rel)?;
                self.copy_into(&dir.join(rel), rel, path, &report)?;
            }
            return Ok(());
        }
        let mut small = Vec::new();
        let mut large = Vec::new();
        for (rel, path) in files {
            let len = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            if len < MULTIPART_PART_BYTES as u64 {
                small.push((rel, path));
            } else {
                large.push((rel, path));
            }
        }
        self.rt.block_on(self.unless_stopped(async {
            futures::stream::iter(small.into_iter().map(|(rel, path)| {
                let report = &report;
                async move {
                    hook(rel)?;
                    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                    let n = data.len() as u64;
                    self.traffic.request();
                    let key = self.key(rel);
                    self.store
                        .put(&key, PutPayload::from(data))
                        .await
                        .map_err(|e| self.err(rel, e))?;
                    report(n);
                    self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
                    Ok::<(), Error>(())
                }
            }))
            // Under the test hook one at a time, so exactly that many land first.
            .buffer_unordered(if self.fail_uploads_after.is_some() {
                1
            } else {
                CONCURRENT_REQUESTS
            })
            .try_collect::<Vec<()>>()
            .await?;
            Ok(())
        }))?;
        // One at a time, outside `unless_stopped`: a multipart upload dropped unfinished would
        // stay on S3; `upload_parts` stops itself and aborts it.
        self.rt.block_on(async {
            for (rel, path) in large {
                self.interrupt.check()?;
                hook(rel)?;
                self.upload_parts(rel, path, &report).await?;
            }
            Ok(())
        })
    }

    /// Copies `path` to `target` in a directory remote: a temp file beside it (registered, so
    /// Ctrl-C removes it; a kill leaves it to [`RemoteStore::remove_stale_uploads`]), synced,
    /// then renamed into place.
    fn copy_into(
        &self,
        target: &std::path::Path,
        rel: &str,
        path: &std::path::Path,
        report: &dyn Fn(u64),
    ) -> Result<()> {
        use std::io::{Read, Write};
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut from = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut file = crate::fsutil::AtomicFile::create(target)?;
        let tmp = file.temp_path().to_path_buf();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        self.traffic.request();
        loop {
            // Dropped unfinished, the temp file goes with `file`.
            self.interrupt.check()?;
            let got = from.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if got == 0 {
                break;
            }
            file.write_all(&buf[..got])
                .map_err(|e| self.err(rel, Error::io(&tmp, e)))?;
            n += got as u64;
            report(got as u64);
        }
        file.flush()
            .map_err(|e| self.err(rel, Error::io(&tmp, e)))?;
        file.commit().map_err(|e| self.err(rel, e))?;
        self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads `path` as an S3 multipart upload, read part by part; aborted on failure or
    /// interrupt, so no unfinished upload is left billed (a kill cannot abort it: see the README
    /// on the bucket's `AbortIncompleteMultipartUpload` rule).
    async fn upload_parts(
        &self,
        rel: &str,
        path: &std::path::Path,
        report: &dyn Fn(u64),
    ) -> Result<()> {
        use std::io::Read;
        let key = self.key(rel);
        let mut from = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        self.traffic.request();
        // Not raced with the interrupt: an upload created unseen could not be aborted.
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.err(rel, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
        let mut n = 0u64;
        let sent: Result<()> = self
            .unless_stopped(async {
                loop {
                    let mut part = Vec::with_capacity(MULTIPART_PART_BYTES);
                    (&mut from)
                        .take(MULTIPART_PART_BYTES as u64)
                        .read_to_end(&mut part)
                        .map_err(|e| Error::io(path, e))?;
                    if part.is_empty() {
                        // Every part landed (`finish` would not abort on a failed one).
                        return w.wait_for_capacity(0).await.map_err(|e| self.err(rel, e));
                    }
                    // One part buffered here and a few in flight: memory is bounded by the part
                    // size, not the pack's.
                    w.wait_for_capacity(CONCURRENT_REQUESTS - 1)
                        .await
                        .map_err(|e| self.err(rel, e))?;
                    self.traffic.request();
                    n += part.len() as u64;
                    report(part.len() as u64);
                    w.put(Bytes::from(part));
                }
            })
            .await;
        if let Err(e) = sent {
            // Bounded: an unanswered abort must not hold up a Ctrl-C.
            let _ = tokio::time::timeout(ABORT_WAIT, w.abort()).await;
            return Err(e);
        }
        self.traffic.request();
        // `finish` aborts the upload itself when completing it fails.
        w.finish().await.map_err(|e| self.err(rel, e))?;
        self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// In a directory remote, removes the temp files of uploads older than `grace` under
    /// `packs/` (left by a killed push: `.tmp-PID-N-NAME.pack` from this version, `NAME.pack#N`
    /// from object_store's staging in earlier ones); younger ones may be a live push's. With
    /// `dry_run` only counts them. Returns how many and their bytes; S3 has none (its unfinished
    /// multipart uploads are not listed by the client library: the README says which bucket
    /// rule aborts them).
    pub fn remove_stale_uploads(&self, grace: Duration, dry_run: bool) -> Result<(usize, u64)> {
        let Some(dir) = &self.dir else {
            return Ok((0, 0));
        };
        let packs = dir.join("packs");
        let Ok(entries) = std::fs::read_dir(&packs) else {
            return Ok((0, 0));
        };
        let now = std::time::SystemTime::now();
        let mut removed = (0, 0);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_upload_temp(&name) {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= grace);
            if !old {
                continue;
            }
            if !dry_run {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(Error::io(e.path(), err)),
                }
            }
            removed.0 += 1;
            removed.1 += meta.len();
        }
        Ok(removed)
    }

    /// Writes several objects, a few at a time.
    pub fn put_many(&self, objects: Vec<(String, Bytes)>) -> Result<()> {
        if self.local.is_some() {
            self.write_local(&objects, dir_write::Mode::Replace)?;
            return Ok(());
        }
        self.rt.block_on(async {
            futures::stream::iter(objects.into_iter().map(|(rel, bytes)| async move {
                let key = self.key(&rel);
                self.traffic.request();
                let n = bytes.len() as u64;
                self.store
                    .put(&key, PutPayload::from(bytes))
                    .await
                    .map_err(|e| self.err(&rel, e))?;
                self.traffic.bytes_up.fetch_add(n, Ordering::Relaxed);
                Ok::<(), Error>(())
            }))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect::<Vec<()>>()
            .await
        })?;
        Ok(())
    }

    /// Downloads objects into local files (`(object, target)`), a few at a time: each is
    /// streamed into a temp file beside its target, handed to `check(temp path)`, and only then
    /// renamed into place durably. `progress(bytes)` is told the bytes received so far.
    pub fn download_files(
        &self,
        files: &[(String, std::path::PathBuf)],
        check: &dyn Fn(&str, &std::path::Path) -> Result<()>,
        progress: &dyn Fn(u64),
    ) -> Result<u64> {
        use std::io::Write;
        let received = AtomicU64::new(0);
        let total = AtomicU64::new(0);
        self.rt.block_on(self.unless_stopped(async {
            futures::stream::iter(files.iter().map(|(rel, target)| {
                let (received, total) = (&received, &total);
                async move {
                    let key = self.key(rel);
                    self.traffic.request();
                    let got = self.store.get(&key).await.map_err(|e| self.err(rel, e))?;
                    let mut file = crate::fsutil::AtomicFile::create(target)?;
                    let tmp = file.temp_path().to_path_buf();
                    let mut stream = got.into_stream();
                    while let Some(piece) = stream.next().await {
                        // Dropped unfinished, the temp file goes with `file`.
                        self.interrupt.check()?;
                        let piece = piece.map_err(|e| self.err(rel, e))?;
                        file.write_all(&piece).map_err(|e| Error::io(&tmp, e))?;
                        let n = piece.len() as u64;
                        self.traffic.bytes_down.fetch_add(n, Ordering::Relaxed);
                        total.fetch_add(n, Ordering::Relaxed);
                        progress(received.fetch_add(n, Ordering::Relaxed) + n);
                    }
                    file.flush().map_err(|e| Error::io(&tmp, e))?;
                    check(rel, &tmp)?;
                    file.commit()
                }
            }))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect::<Vec<()>>()
            .await
        }))?;
        Ok(total.load(Ordering::Relaxed))
    }
}

/// Whether `name` (in a directory remote's `packs/`) is an upload's temp file: `NAME.pack#N`
/// (object_store's staging) or `.tmp-PID-N-NAME.pack` (`AtomicFile`'s), NAME a pack's 64 hex
/// digits. Nothing else there is touched.
fn is_upload_temp(name: &str) -> bool {
    let is_pack = |n: &str| {
        n.strip_suffix(".pack")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let digits = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    if let Some((pack, n)) = name.split_once('#') {
        return is_pack(pack) && digits(n);
    }
    let Some(rest) = name.strip_prefix(crate::fsutil::TEMP_PREFIX) else {
        return false;
    };
    let mut parts = rest.splitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(pid), Some(n), Some(pack)) => digits(pid) && digits(n) && is_pack(pack),
        _ => false,
    }
}

/// An S3 client for `bucket`: credentials from the AWS environment variables (keys, web
/// identity, container credentials), else the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, `~/.aws/credentials`, profile `AWS_PROFILE` or `default`);
/// conditional writes by `If-None-Match` / `If-Match`. Never the instance metadata service:
/// with no credentials it fails, naming where it looked.
fn s3_builder(spec: &RemoteSpec, bucket: &str) -> Result<AmazonS3Builder> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        });
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    // Web identity (Kubernetes) and container credentials are object_store's to fetch.
    let delegated = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SKIP_SIGNATURE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| env(k).is_some());
    if !delegated {
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials")));
        let creds = file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|text| ini_section(&text, &profile))
            .unwrap_or_default();
        let get = |k: &str| {
            creds
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(token) = get("aws_session_token") {
                    b = b.with_token(token);
                }
            }
            _ => {
                return Err(Error::RemoteIo {
                    url: spec.url.clone(),
                    object: String::new(),
                    problem: format!(
                        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                         put them under [{profile}] in {} (AWS_SKIP_SIGNATURE=true for a public \
                         bucket)",
                        file.map_or("~/.aws/credentials".into(), |f| f.display().to_string())
                    ),
                })
            }
        }
    }
    let region = spec
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| {
            let config = env("AWS_CONFIG_FILE")
                .map(std::path::PathBuf::from)
                .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".aws/config")))?;
            let text = std::fs::read_to_string(config).ok()?;
            let section = if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            };
            ini_section(&text, &section)
                .into_iter()
                .find(|(k, _)| k == "region")
                .map(|(_, v)| v)
        })
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    // The AWS CLI's variables too (MinIO users set them), checked as `--endpoint` is; an
    // `http://` endpoint named explicitly is allowed (the client's "builder error" said not why).
    let endpoint = match &spec.endpoint {
        Some(e) => Some(endpoint_url(&spec.url, e, "the endpoint")?),
        None => ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .into_iter()
            .find_map(|k| env(k).map(|e| endpoint_url(&spec.url, &e, k)))
            .transpose()?,
    };
    if let Some(endpoint) = endpoint {
        b = b
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    Ok(b)
}

/// The `key = value` lines of `[section]` in an INI file (the AWS credentials and config files).
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            inside = line[1..line.len() - 1].trim() == section;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upload_temps_are_taken_for_them() {
        let pack = "ab".repeat(32);
        for yes in [format!("{pack}.pack#1"), format!(".tmp-12-345-{pack}.pack")] {
            assert!(is_upload_temp(&yes), "{yes}");
        }
        for no in [
            format!("{pack}.pack"),
            format!("{pack}.pack#"),
            format!("{pack}.pack#x"),
            "notes.txt#1".into(),
            format!(".tmp-12-{pack}.pack"),
            format!(".tmp-a-1-{pack}.pack"),
            ".tmp-1-2-notes".into(),
        ] {
            assert!(!is_upload_temp(&no), "{no}");
        }
    }

    #[test]
    fn ini_sections_are_read_by_name() {
        let text = "[default]\naws_access_key_id = A\n[profile x]\nregion=eu-west-1\n[other]\naws_access_key_id=B\n";
        assert_eq!(
            ini_section(text, "default"),
            vec![("aws_access_key_id".to_string(), "A".to_string())]
        );
        assert_eq!(
            ini_section(text, "profile x"),
            vec![("region".to_string(), "eu-west-1".to_string())]
        );
        assert!(ini_section(text, "missing").is_empty());
    }
}
