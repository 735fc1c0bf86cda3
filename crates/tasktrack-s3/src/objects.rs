//! Raw object I/O: GET with ETag, conditional PUT, conditional DELETE, LIST — each counted.
//!
//! Conditional outcomes are values ([`Put::Conflict`], `Ok(false)`), not errors: a lost race is
//! the normal path of the CAS adapter. Everything else goes through the crate's one error mapping (`error::map`).

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
    /// The condition failed: the object exists (create) or changed / vanished (update).
    Conflict,
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
            s3,
            http,
            endpoint,
            bucket,
            region,
            counters: Counters::default(),
        }
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
        self.counters.get.fetch_add(1, Ordering::Relaxed);
        if path.filename().is_some_and(|f| f.starts_with(".index")) {
            self.counters.get_index.fetch_add(1, Ordering::Relaxed);
        }
        let opts = GetOptions {
            if_none_match: if_none_match.map(str::to_owned),
            ..GetOptions::default()
        };
        let got = match self.s3.get_opts(path, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(Got::Missing),
            Err(object_store::Error::NotModified { .. }) => return Ok(Got::Unchanged),
            Err(e) => return Err(self.err(e, "GET", path)),
        };
        let etag = got.meta.e_tag.clone().ok_or_else(|| no_etag(path))?;
        let bytes = got.bytes().await.map_err(|e| self.err(e, "GET", path))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| corrupt(path.as_ref(), e))?;
        Ok(Got::Found(value, etag))
    }

    /// PUT only if absent (`If-None-Match: *`) or only if unchanged (`If-Match: etag`).
    pub async fn put(&self, path: &Path, body: Vec<u8>, if_match: Option<&str>) -> Result<Put> {
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
            .s3
            .put_opts(path, PutPayload::from(Bytes::from(body)), opts)
            .await
        {
            Ok(done) => Ok(Put::Written(done.e_tag.ok_or_else(|| no_etag(path))?)),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(Put::Conflict),
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
        self.s3
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
