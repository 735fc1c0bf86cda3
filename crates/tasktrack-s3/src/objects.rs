//! Raw object I/O: GET with ETag, conditional PUT, conditional DELETE, LIST — each counted.
//!
//! Conditional outcomes are values ([`Put::Conflict`], `Ok(false)`), not errors: a lost race is
//! the normal path of the CAS adapter. Everything else goes through the crate's one error mapping (`error::map`).
//!
//! # A refused PUT may be our own
//!
//! object_store retries a request answered `5xx`, `429` or `408` (and `409` for `If-Match`)
//! even when it is a conditional PUT, and cannot tell us it did. If the first attempt was
//! applied and only its answer was an error, the retry finds the condition broken by our own
//! write and is refused (`412`, or "already exists"). [`Objects::put`] therefore reads the
//! object after every refusal and compares its bytes with what it sent: identical bytes are our
//! write, landed, and the PUT is reported [`Put::Written`] with the object's ETag. That holds
//! because no two writers send the same bytes: every task write increments the task's
//! `version` and records its own worker, lease and times (see [`refused`] for the one
//! exception, which is harmless). [`Objects::put_unverified`] skips the check, for index
//! shards, whose writers re-read and merge on every refusal anyway (finding their own entries
//! there, they write nothing more).

use crate::error::{self, corrupt};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, ObjectMeta, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tasktrack_core::{Error, Result};

/// How long a presigned URL (conditional DELETE, CreateBucket) stays valid; it is used at once.
const PRESIGN_FOR: Duration = Duration::from_secs(300);

/// Requests sent to S3 since the store was opened, by kind: the cost model in numbers.
#[derive(Debug, Default)]
pub struct Counters {
    get: AtomicU64,
    get_index: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// GET object (tasks, index, job records; HEAD bucket), including conditional GETs answered `304`.
    pub get: u64,
    /// Of those, GETs of index shards.
    pub get_index: u64,
    /// PUT object (all conditional; CreateBucket).
    pub put: u64,
    /// DELETE object (conditional).
    pub delete: u64,
    /// LIST pages.
    pub list: u64,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.get + self.put + self.delete + self.list
    }

    /// Requests since `earlier`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            get_index: self.get_index - earlier.get_index,
            put: self.put - earlier.put,
            delete: self.delete - earlier.delete,
            list: self.list - earlier.list,
        }
    }
}

/// Outcome of a conditional PUT.
#[derive(Debug)]
pub enum Put {
    /// Written; the new ETag.
    Written(String),
    /// The condition failed: the object exists (create) or changed / vanished (update). With
    /// the object as [`Objects::put`] read it to check the refusal (`None`: it is gone, or
    /// [`Objects::put_unverified`] did not read it).
    Conflict(Option<Stored>),
}

/// An object's bytes and ETag, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The body.
    pub body: Bytes,
    /// Its ETag.
    pub etag: String,
}

/// What a refused conditional PUT of `ours` came to, given the object as it is now.
///
/// The object holding exactly the bytes we sent means our write landed: an earlier attempt of
/// the same PUT whose answer was lost, and object_store's retry of it is what the condition
/// refused. Nobody else writes those bytes: every task write has a new `version` and this
/// writer's own worker, lease and times. (Two writers applying the same rule to the same
/// version at the same millisecond — say two people retrying one task — would send identical
/// bytes; each is then told it wrote, which is true of the state it asked for. Worker ids are
/// unique per worker, so two claims never coincide.) Any other content, or no object, is a
/// conflict.
pub fn refused(ours: &[u8], current: Option<Stored>) -> Put {
    match current {
        Some(now) if now.body.as_ref() == ours => Put::Written(now.etag),
        other => Put::Conflict(other),
    }
}

/// What a conditional GET found.
pub enum Got<T> {
    /// The object, its ETag.
    Found(T, String),
    /// No such object.
    Missing,
    /// Unchanged since the ETag given (`304`).
    Unchanged,
}

/// The bucket client plus what error messages and presigned requests need.
#[derive(Debug)]
pub struct Objects {
    /// GET, PUT and LIST go here: the S3 client (a fake bucket in unit tests).
    store: Arc<dyn ObjectStore>,
    /// Presigns what object_store cannot send (conditional DELETE, HEAD and CreateBucket).
    pub(crate) s3: AmazonS3,
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: String,
    pub(crate) bucket: String,
    pub(crate) region: String,
    counters: Counters,
}

impl Objects {
    /// Wraps a configured client.
    pub fn new(
        s3: AmazonS3,
        http: reqwest::Client,
        endpoint: String,
        bucket: String,
        region: String,
    ) -> Self {
        Objects {
            store: Arc::new(s3.clone()),
            s3,
            http,
            endpoint,
            bucket,
            region,
            counters: Counters::default(),
        }
    }

    /// The same, with GET, PUT and LIST going to `store` instead (unit tests).
    #[cfg(test)]
    pub(crate) fn with_store(self, store: Arc<dyn ObjectStore>) -> Self {
        Objects { store, ..self }
    }

    /// Requests sent so far.
    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            get: self.counters.get.load(Ordering::Relaxed),
            get_index: self.counters.get_index.load(Ordering::Relaxed),
            put: self.counters.put.load(Ordering::Relaxed),
            delete: self.counters.delete.load(Ordering::Relaxed),
            list: self.counters.list.load(Ordering::Relaxed),
        }
    }

    fn err(&self, e: object_store::Error, what: &str, path: &Path) -> Error {
        error::map(
            e,
            &self.endpoint,
            what,
            &format!("s3://{}/{path}", self.bucket),
        )
    }

    /// GETs and parses a JSON object; with `if_none_match`, a `304` is [`Got::Unchanged`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &Path,
        if_none_match: Option<&str>,
    ) -> Result<Got<T>> {
        Ok(match self.get_bytes(path, if_none_match).await? {
            Got::Found(bytes, etag) => Got::Found(
                serde_json::from_slice(&bytes).map_err(|e| corrupt(path.as_ref(), e))?,
                etag,
            ),
            Got::Missing => Got::Missing,
            Got::Unchanged => Got::Unchanged,
        })
    }

    /// GETs an object's bytes; with `if_none_match`, a `304` is [`Got::Unchanged`]. For what
    /// must be read whether or not it parses (a damaged task object, to delete it).
    pub async fn get_bytes(&self, path: &Path, if_none_match: Option<&str>) -> Result<Got<Bytes>> {
        self.counters.get.fetch_add(1, Ordering::Relaxed);
        if path.filename().is_some_and(|f| f.starts_with(".index")) {
            self.counters.get_index.fetch_add(1, Ordering::Relaxed);
        }
        let opts = GetOptions {
            if_none_match: if_none_match.map(str::to_owned),
            ..GetOptions::default()
        };
        let got = match self.store.get_opts(path, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(Got::Missing),
            Err(object_store::Error::NotModified { .. }) => return Ok(Got::Unchanged),
            Err(e) => return Err(self.err(e, "GET", path)),
        };
        let etag = got.meta.e_tag.clone().ok_or_else(|| no_etag(path))?;
        let bytes = got.bytes().await.map_err(|e| self.err(e, "GET", path))?;
        Ok(Got::Found(bytes, etag))
    }

    /// PUT only if absent (`If-None-Match: *`) or only if unchanged (`If-Match: etag`).
    ///
    /// A refusal is checked with one GET (see the module docs): if the object holds exactly
    /// `body`, our write landed on an attempt whose answer object_store's retry replaced, and
    /// this is [`Put::Written`]; otherwise [`Put::Conflict`] with the object as read.
    pub async fn put(&self, path: &Path, body: Vec<u8>, if_match: Option<&str>) -> Result<Put> {
        let body = Bytes::from(body);
        if let Some(etag) = self.put_once(path, body.clone(), if_match).await? {
            return Ok(Put::Written(etag));
        }
        let current = match self.get_bytes(path, None).await? {
            Got::Found(body, etag) => Some(Stored { body, etag }),
            Got::Missing | Got::Unchanged => None,
        };
        let outcome = refused(&body, current);
        if matches!(outcome, Put::Written(_)) {
            tracing::debug!(%path, "s3: conditional PUT refused on retry, but our write had landed");
        }
        Ok(outcome)
    }

    /// [`Objects::put`] without the check of a refusal: [`Put::Conflict`] is then also what a
    /// retried PUT whose first attempt landed gets. Only for objects whose writers, on a
    /// refusal, re-read and merge (index shards: they find their own entries there and write
    /// nothing more).
    pub async fn put_unverified(
        &self,
        path: &Path,
        body: Vec<u8>,
        if_match: Option<&str>,
    ) -> Result<Put> {
        Ok(
            match self.put_once(path, Bytes::from(body), if_match).await? {
                Some(etag) => Put::Written(etag),
                None => Put::Conflict(None),
            },
        )
    }

    /// One conditional PUT (with object_store's retries): the new ETag, or `None` if refused.
    async fn put_once(
        &self,
        path: &Path,
        body: Bytes,
        if_match: Option<&str>,
    ) -> Result<Option<String>> {
        self.counters.put.fetch_add(1, Ordering::Relaxed);
        let mode = match if_match {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion {
                e_tag: Some(etag.to_owned()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(body), opts)
            .await
        {
            Ok(done) => Ok(Some(done.e_tag.ok_or_else(|| no_etag(path))?)),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(None),
            Err(e) => Err(self.err(e, "PUT", path)),
        }
    }

    /// DELETE only if unchanged (`If-Match: etag`); `false` if it changed or is gone.
    ///
    /// object_store has no conditional delete, so this is a presigned DELETE sent with an
    /// `If-Match` header (S3 has supported conditional deletes since 2024; moto does too).
    pub async fn delete_if(&self, path: &Path, etag: &str) -> Result<bool> {
        self.counters.delete.fetch_add(1, Ordering::Relaxed);
        let url = self
            .s3
            .signed_url(reqwest::Method::DELETE, path, PRESIGN_FOR)
            .await
            .map_err(|e| self.err(e, "presign DELETE", path))?;
        let location = format!("s3://{}/{path}", self.bucket);
        let resp = self
            .http
            .delete(url)
            .header(reqwest::header::IF_MATCH, etag)
            .send()
            .await
            .map_err(|e| error::map_http(&e, &self.endpoint, "DELETE", &location))?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 | 409 | 412 => Ok(false),
            code => {
                let body = resp.text().await.unwrap_or_default();
                Err(Error::Backend(format!(
                    "S3 at {}: DELETE {location}: HTTP {code}: {body}",
                    self.endpoint
                )))
            }
        }
    }

    /// Every object under `prefix` (one request per page of 1000).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.counters.list.fetch_add(1, Ordering::Relaxed);
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e, "LIST", prefix))
    }

    /// Creates the bucket unless it exists (CreateBucket, presigned: object_store cannot).
    pub async fn ensure_bucket(&self) -> Result<()> {
        let location = format!("s3://{}", self.bucket);
        let signed = |m| async move {
            self.s3
                .signed_url(m, &Path::from(""), PRESIGN_FOR)
                .await
                .map_err(|e| self.err(e, "presign", &Path::from("")))
        };
        self.counters.get.fetch_add(1, Ordering::Relaxed);
        let head = self
            .http
            .head(signed(reqwest::Method::HEAD).await?)
            .send()
            .await
            .map_err(|e| error::map_http(&e, &self.endpoint, "HEAD bucket", &location))?;
        match head.status().as_u16() {
            200..=299 => return Ok(()),
            404 => {}
            code => {
                return Err(Error::Backend(format!(
                    "S3 at {}: HEAD bucket {location}: HTTP {code} (does the bucket exist and may these credentials read it?)",
                    self.endpoint
                )));
            }
        }
        self.counters.put.fetch_add(1, Ordering::Relaxed);
        // Outside us-east-1, S3 wants the region in the request body.
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        let resp = self
            .http
            .put(signed(reqwest::Method::PUT).await?)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .map_err(|e| error::map_http(&e, &self.endpoint, "CreateBucket", &location))?;
        match resp.status().as_u16() {
            200..=299 | 409 => Ok(()), // 409: created meanwhile by someone else
            code => {
                let body = resp.text().await.unwrap_or_default();
                Err(Error::Backend(format!(
                    "S3 at {}: CreateBucket {location}: HTTP {code}: {body}",
                    self.endpoint
                )))
            }
        }
    }
}

fn no_etag(path: &Path) -> Error {
    Error::Backend(format!(
        "S3 returned no ETag for {path}: this store needs an S3 API with ETags"
    ))
}

/// A bucket in memory that can lose the answer to a PUT, for unit tests of what a refused PUT
/// comes to.
#[cfg(test)]
pub(crate) mod fake {
    use super::Objects;
    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// [`InMemory`], except that the next successful PUT to an object whose path contains an
    /// armed pattern loses its answer: the write is applied, then the same request is sent
    /// again — as object_store's retry does after a `500` — and the caller gets the answer to
    /// that (the condition no longer holds: a refusal).
    #[derive(Debug, Default)]
    pub struct LostAnswers {
        inner: InMemory,
        armed: Mutex<Vec<String>>,
        lost: AtomicUsize,
        /// Patterns of paths whose next PUT fails without writing anything.
        failing: Mutex<Vec<String>>,
    }

    /// Takes the first of `patterns` that `location` contains, if any.
    fn take_matching(patterns: &Mutex<Vec<String>>, location: &Path) -> bool {
        let mut patterns = patterns.lock().unwrap();
        match patterns
            .iter()
            .position(|p| location.as_ref().contains(p.as_str()))
        {
            Some(i) => {
                patterns.remove(i);
                true
            }
            None => false,
        }
    }

    impl LostAnswers {
        /// Fails the next PUT to a path containing `pattern`, writing nothing (as a dropped
        /// connection would).
        pub fn fail_next_put(&self, pattern: &str) {
            self.failing.lock().unwrap().push(pattern.to_owned());
        }

        /// Loses the answer of the next PUT to a path containing `pattern` that succeeds.
        pub fn lose_next_put(&self, pattern: &str) {
            self.armed.lock().unwrap().push(pattern.to_owned());
        }

        /// Answers lost so far.
        pub fn lost(&self) -> usize {
            self.lost.load(Ordering::Relaxed)
        }

        /// The bucket itself, bypassing the fault (another process writing).
        pub fn bucket(&self) -> &InMemory {
            &self.inner
        }

        fn take_armed(&self, location: &Path) -> bool {
            take_matching(&self.armed, location)
        }
    }

    impl std::fmt::Display for LostAnswers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "LostAnswers({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for LostAnswers {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if take_matching(&self.failing, location) {
                return Err(object_store::Error::Generic {
                    store: "fake",
                    source: format!("PUT {location}: connection reset (injected)").into(),
                });
            }
            let first = self
                .inner
                .put_opts(location, payload.clone(), opts.clone())
                .await;
            if first.is_ok() && self.take_armed(location) {
                self.lost.fetch_add(1, Ordering::Relaxed);
                return self.inner.put_opts(location, payload, opts).await;
            }
            first
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// [`Objects`] over `bucket` (the S3 client is built for presigning only and never used).
    pub fn objects(bucket: Arc<LostAnswers>) -> Objects {
        let s3 = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("fake")
            .with_region("us-east-1")
            .with_endpoint("http://127.0.0.1:9")
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        Objects::new(
            s3,
            reqwest::Client::new(),
            "fake".into(),
            "fake".into(),
            "us-east-1".into(),
        )
        .with_store(bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{LostAnswers, objects};
    use super::*;
    use object_store::ObjectStoreExt as _;

    fn stored(body: &str, etag: &str) -> Option<Stored> {
        Some(Stored {
            body: Bytes::from(body.to_owned()),
            etag: etag.into(),
        })
    }

    #[test]
    fn a_refusal_is_ours_only_when_the_object_holds_our_bytes() {
        let ours = br#"{"version":4}"#;
        assert!(matches!(
            refused(ours, stored(r#"{"version":4}"#, "e4")),
            Put::Written(etag) if etag == "e4"
        ));
        assert!(matches!(
            refused(ours, stored(r#"{"version":5}"#, "e5")),
            Put::Conflict(Some(now)) if now.etag == "e5"
        ));
        assert!(matches!(refused(ours, None), Put::Conflict(None)));
        assert!(matches!(
            refused(b"", stored("x", "e")),
            Put::Conflict(Some(_))
        ));
    }

    async fn etag_of(bucket: &LostAnswers, path: &Path) -> String {
        bucket.bucket().head(path).await.unwrap().e_tag.unwrap()
    }

    #[tokio::test]
    async fn a_create_refused_on_retry_after_it_landed_is_written() {
        let bucket = Arc::new(LostAnswers::default());
        let objects = objects(bucket.clone());
        let path = Path::from("j/a.json");
        bucket.lose_next_put("a.json");
        let put = objects.put(&path, b"v1".to_vec(), None).await.unwrap();
        assert_eq!(bucket.lost(), 1, "the fault fired");
        let Put::Written(etag) = put else {
            panic!("our own create reported as {put:?}");
        };
        assert_eq!(etag, etag_of(&bucket, &path).await);
        // The ETag is the object's: the next conditional write on it goes through.
        assert!(matches!(
            objects
                .put(&path, b"v2".to_vec(), Some(&etag))
                .await
                .unwrap(),
            Put::Written(_)
        ));
        let counted = objects.requests();
        assert_eq!((counted.put, counted.get), (2, 1), "{counted:?}");
    }

    #[tokio::test]
    async fn an_update_refused_on_retry_after_it_landed_is_written() {
        let bucket = Arc::new(LostAnswers::default());
        let objects = objects(bucket.clone());
        let path = Path::from("j/a.json");
        let Put::Written(v1) = objects.put(&path, b"v1".to_vec(), None).await.unwrap() else {
            panic!("create");
        };
        bucket.lose_next_put("a.json");
        let put = objects.put(&path, b"v2".to_vec(), Some(&v1)).await.unwrap();
        assert_eq!(bucket.lost(), 1, "the fault fired");
        assert!(
            matches!(&put, Put::Written(etag) if *etag == etag_of(&bucket, &path).await),
            "{put:?}"
        );
        let body = bucket
            .bucket()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.as_ref(), b"v2");
    }

    #[tokio::test]
    async fn a_refusal_by_another_writer_stays_a_conflict() {
        let bucket = Arc::new(LostAnswers::default());
        let objects = objects(bucket.clone());
        let path = Path::from("j/a.json");
        let Put::Written(v1) = objects.put(&path, b"v1".to_vec(), None).await.unwrap() else {
            panic!("create");
        };
        // Another process writes first.
        bucket
            .bucket()
            .put(&path, PutPayload::from_static(b"theirs"))
            .await
            .unwrap();
        let put = objects.put(&path, b"v2".to_vec(), Some(&v1)).await.unwrap();
        let Put::Conflict(Some(now)) = put else {
            panic!("a lost race reported as {put:?}");
        };
        assert_eq!(now.body.as_ref(), b"theirs");
        assert_eq!(now.etag, etag_of(&bucket, &path).await);
        // Creating what exists with other bytes is a conflict too, and so is updating what is gone.
        assert!(matches!(
            objects.put(&path, b"mine".to_vec(), None).await.unwrap(),
            Put::Conflict(Some(_))
        ));
        let gone = Path::from("j/gone.json");
        assert!(matches!(
            objects.put(&gone, b"v2".to_vec(), Some(&v1)).await.unwrap(),
            Put::Conflict(None)
        ));
    }

    #[tokio::test]
    async fn an_unverified_put_does_not_read_after_a_refusal() {
        let bucket = Arc::new(LostAnswers::default());
        let objects = objects(bucket.clone());
        let path = Path::from("j/.index-0.json");
        bucket.lose_next_put(".index-0");
        let put = objects
            .put_unverified(&path, b"{}".to_vec(), None)
            .await
            .unwrap();
        assert!(matches!(put, Put::Conflict(None)), "{put:?}");
        assert_eq!(objects.requests().get, 0);
    }
}
