//! `s3://bucket/prefix`: tasktrack on S3 (or any S3-compatible store with conditional writes),
//! one JSON object per task, every change a conditional PUT.
//!
//! ```text
//! s3://my-bucket/tasks?region=eu-west-1
//! s3://test-bucket/run-7?endpoint=http://127.0.0.1:5000      # moto, MinIO, ...
//! ```
//!
//! Configuration: the URL's `endpoint` and `region`, else the standard AWS environment
//! (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity, instance
//! metadata). Named profiles (`AWS_PROFILE`, `~/.aws/config`) are not read: object_store does
//! not, and this crate does not pull in the AWS SDK for it. `init` (`tasktrack init`) creates
//! the bucket if it is missing.
//!
//! # Atomicity
//!
//! Each task is one object, changed only by the core's compare-and-swap adapter
//! ([`tasktrack_core::cas`]): read it with its ETag, apply the pure lifecycle rule, write it
//! back with `If-Match: <etag>` (`PutMode::Update`); a `412` means someone else wrote first, so
//! the adapter re-reads and retries with jitter. Creation is `If-None-Match: *`
//! (`PutMode::Create`); deletion is a DELETE with `If-Match` (presigned, as object_store has no
//! conditional delete). S3 ETags are content hashes, so two writes of identical bytes would have
//! the same ETag and a stale writer could win: every task write increments `version`, so the
//! body always changes. Two workers claiming the same task therefore race on one conditional
//! PUT, and exactly one wins.
//!
//! The index (below) is written *after* the task, also with conditional PUTs. It is never the
//! authority: every claim re-reads (or holds the ETag of) the task and writes it conditionally,
//! so a stale index can cost a wasted request, never a double execution.
//!
//! # Layout
//!
//! ```text
//! <prefix>/<job>/<id>.json        task document (the core's Task as JSON)
//! <prefix>/<job>/.index.json      the job's index: id -> [status, priority, claimable_at,
//!                                 version, updated_at, stage]
//! <prefix>/.jobs/<job>.json       job record
//! ```
//!
//! Names are encoded traversal-proof (see [`layout`]): `[A-Za-z0-9_-]` as is, any other byte
//! `=XX`, names too long for S3 keys hashed. Modules: [`config`] (URL and environment),
//! [`layout`] (object names), [`objects`] (raw requests, counted), [`index`] (the index document,
//! pure), [`indexer`] (group commit of index updates), [`documents`] (the `Documents` trait),
//! [`store`] (the `Store`), `error` (the one mapping onto the core's errors).
//!
//! # Limits
//!
//! Cost per operation, in requests, with no contention (measured by `tests/requests.rs`):
//!
//! | operation | requests |
//! |---|---|
//! | create (bulk, n tasks) | n conditional PUTs + 1 index PUT per batch of 500 |
//! | claim_next | 1 task PUT + 1 index PUT, + 1 task GET unless this process holds the task's current version, + 1 index GET when its copy is older than 250 ms |
//! | succeed / fail / release / heartbeat (by the claiming process) | 1 task PUT + 1 index PUT |
//! | claim of an id | 1 task GET + 1 task PUT + 1 index PUT |
//! | counts | 1 job GET + 1 conditional index GET |
//! | list (page of n) | 1 conditional index GET + n task GETs |
//!
//! Index PUTs are group-committed: concurrent writers in one process share one PUT, so with
//! several workers the index costs well under one request per transition (see
//! `docs/benchmarks/s3.md`). Another process's index write costs the next flusher a `412` and a
//! GET.
//!
//! - The index is one object per job, about 50 bytes per task (500 KB at 10,000 tasks). It is
//!   rewritten on every flush, so jobs of more than ~100,000 tasks should be split.
//! - All writers of a job contend on its index object; throughput per job is bounded by how
//!   fast S3 accepts conditional PUTs on one key (a few per second per key on AWS, where
//!   concurrent `If-Match` writes can also answer `409`, retried).
//! - A process that dies between writing a task and its index entry leaves that entry one step
//!   behind. Claims repair entries they find stale; [`S3Documents::rebuild_index`] rebuilds a
//!   job's index from a full listing.
//! - Leases must be much longer than the clock skew between workers (time is the caller's).
//!
//! # Testing
//!
//! The tests run against moto, started by `scripts/services/moto.sh` (single-threaded, so
//! conditional writes are serialized as on AWS) which exports `TASKTRACK_TEST_MOTO_ENDPOINT`.
//! By hand: `source scripts/services/common.sh; source scripts/services/moto.sh; start_moto`,
//! then `cargo nextest run -p tasktrack-s3`. Each test uses its own prefix in one bucket that
//! `init` creates. Without the variable the tests print `SKIPPED` (and fail under `CI=true`).

pub mod config;
pub mod documents;
mod error;
pub mod index;
pub mod indexer;
pub mod layout;
pub mod objects;
pub mod store;

pub use config::Config;
pub use documents::S3Documents;
pub use objects::RequestCounts;
pub use store::S3Store;

use tasktrack_core::Result;

/// Opens the store named by `url` (`s3://bucket/prefix?endpoint=…&region=…`). Sends no request:
/// call `init` (the facade does) to create the bucket if missing.
pub async fn open(url: &str) -> Result<S3Store> {
    let config = Config::parse(url)?;
    let (objects, layout) = config.connect()?;
    Ok(S3Store::new(S3Documents::new(objects, layout), url))
}
