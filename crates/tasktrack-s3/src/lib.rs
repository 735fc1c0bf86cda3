//! `s3://bucket/prefix`: tasktrack on S3 (or any S3-compatible store with conditional writes),
//! one JSON object per task, every change a conditional PUT.
//!
//! ```text
//! s3://my-bucket/tasks?region=eu-west-1
//! s3://test-bucket/run-7?endpoint=http://127.0.0.1:5000      # moto, MinIO, ...
//! ```
//!
//! Configuration: the URL's `endpoint`, `region` and `profile`, else the standard AWS
//! configuration as the AWS SDK's loader reads it ([`aws`]): `AWS_ENDPOINT_URL_S3` /
//! `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials from the environment, **profiles**
//! (`AWS_PROFILE`, `~/.aws/config`, `~/.aws/credentials`), SSO, web identity, container and
//! instance roles. `init` (`tasktrack init`) creates the bucket if it is missing.
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
//! A refused PUT of a task or job record is checked with one GET before it counts as a lost
//! race: object_store retries a PUT answered with a server error even when it is conditional,
//! and if the first attempt was applied, the retry is refused by our own write. Identical bytes
//! mean the write is ours (see [`objects`] and the limits below).
//!
//! The index (below) is written *after* the task, also with conditional PUTs on its ETag (an
//! ordered merge: an entry is only replaced by a later state of its task, a later version or,
//! for a task deleted and created again under its id, a later `created_at`). It is never the
//! authority: every claim re-reads (or holds the ETag of) the task and writes it conditionally,
//! so a stale index can cost a wasted request, never a double execution. A claim decides on
//! this process's cached copy of a task only when it is the state the index entry names, and
//! repairs entries only from copies it has just read.
//!
//! A task written without its index entry (its writer died, or failed, between the two) is
//! indexed again when a `create` finds it existing; a bulk create whose PUT of one task fails
//! still indexes the tasks the others wrote before it answers the error.
//!
//! # Layout
//!
//! ```text
//! <prefix>/<job>/<id>.json          task document (the core's Task as JSON)
//! <prefix>/<job>/.index-<k>.json    shard k (0 to 7) of the job's index: task id ->
//!                                   [status, priority, claimable_at, version, updated_at, stage,
//!                                    created_at] (older entries lack created_at: read as 0)
//! <prefix>/.jobs/<job>.json         job record
//! ```
//!
//! Names are encoded traversal-proof (see [`layout`]): `[A-Za-z0-9_-]` as is, any other byte
//! `=XX`, names too long for S3 keys hashed. Modules: [`config`] (URL), [`aws`] (the AWS
//! configuration, profiles included),
//! [`layout`] (object names), [`objects`] (raw requests, counted), [`index`] (the index document,
//! pure), [`indexer`] (shards, group commit, snapshots), [`documents`] (the `Documents`
//! trait), [`store`] (the `Store`), `error` (the one mapping onto the core's errors).
//!
//! # Limits
//!
//! Cost per operation in requests, without contention, as measured by `tests/requests.rs`
//! (`S3Store::requests` counts them):
//!
//! | operation | requests |
//! |---|---|
//! | create (bulk, n tasks) | n conditional PUTs + 1 PUT per index shard touched per batch of 500 |
//! | claim_next | 1 task PUT; + 1 task GET unless this process holds the task's current version; index update deferred (below) |
//! | succeed / fail / release (after a claim by this process) | 1 task PUT + 1 shard PUT (carrying the claim's deferred update too) |
//! | heartbeat, patch_data | 1 task PUT (index update deferred) |
//! | claim of an id, ignore, retry | 1 task GET + 1 task PUT + 1 shard PUT |
//! | counts | 1 job GET + 8 conditional shard GETs |
//! | list (page of n) | 8 conditional shard GETs + n + 1 task GETs (+ 1 per stale entry passed, below) |
//! | get | 1 GET |
//!
//! A refused conditional PUT of a task or job record (a lost race; creating a task that exists)
//! costs one GET more, to check that the refusal was not our own landed write; the retry after
//! a lost claim or after a `412` on this process's copy starts from that read.
//!
//! So a task created, claimed and succeeded by one process costs about 3 requests after its
//! creation (4 with it); the old trackers needed 3-4 and were not atomic. Claims also read
//! shards this process has not seen for 2 s (conditional GETs, about 0.2 per task under load).
//! Another process's write to a shard costs this process's next write to it a `412` and a GET.
//!
//! - The index costs about 65 bytes per task (its id and its entry), split over 8 objects (a
//!   10,000-task job: 8 objects of ~80 KB). Each index write rewrites one shard, so jobs beyond
//!   ~100,000 tasks should be split.
//! - All writers of a job share its 8 shards; throughput per job is bounded by how fast S3
//!   accepts conditional PUTs on one key (AWS answers concurrent `If-Match` writes with `409`
//!   at times; object_store retries those).
//! - The index lags the tasks by design, never the other way: claims and heartbeats reach the
//!   index with the next flush of their shard, and a process that dies between writing a task
//!   and its index entry leaves that entry behind. Claims repair entries they find stale (one
//!   GET); [`S3Documents::rebuild_index`] rebuilds a job's index from a full listing. Counts
//!   and lists include every change of the process asking, and other processes' changes once
//!   flushed (at most one claim per worker behind).
//! - A list page picks ids from the index but decides on the task documents it reads: a task
//!   that no longer matches (claimed elsewhere since its entry was written) is left out, and the
//!   page walks on through the index after the last entry it consumed until it holds `limit + 1`
//!   matching tasks or the index ends. So a page is short, and `next` is `None`, only at the real
//!   end, and paging visits every task that matches throughout. The cursor is the index position
//!   of the page's last task: a task whose entry is stale is listed as it is now, in the page of
//!   its entry's position (ordered within the page by its own `updated_at`).
//! - Claim order (priority, then claimable-at, then id) is exact for one claimer. After a claim
//!   of this process loses a race to another process, it picks at random among the first 32
//!   candidates for 2 s, so that processes stop colliding on the head of the queue.
//! - object_store retries a request answered `5xx`, `429` or `408` (and `409` to an `If-Match`
//!   PUT), conditional PUTs included, without telling us. When the first attempt was applied and
//!   only its answer failed, the retry is refused (`412`) because of our own write. So every
//!   refused PUT of a task or job record is checked with a GET: if the object holds exactly the
//!   bytes we sent, the write landed and counts as done (a claim is ours, a `succeed` succeeded,
//!   a create created and indexes its task). No one else sends those bytes: every task write
//!   has a new `version` and the writer's own worker, lease and times. Index shards skip the
//!   check: their writers re-read and merge after every refusal and find their entries there.
//!   If the object changed again before the GET, the refusal stands as a lost race (a claim that
//!   landed that way keeps its task until its lease expires, as below).
//! - A conditional PUT whose answer is lost (timeout) is not retried by object_store (it is not
//!   idempotent): the operation fails with `Unavailable` and may or may not have landed. A
//!   `succeed` retried by the caller is then answered from the task as it is; a claim that
//!   landed unseen keeps its task until the lease expires, then the task is claimed again.
//! - Leases must be much longer than the clock skew between workers (time is the caller's).
//!
//! # Testing
//!
//! The tests run against moto, started by `scripts/services/moto.sh` (single-threaded, so
//! conditional writes are serialized as on AWS) which exports `TASKTRACK_TEST_MOTO_ENDPOINT`.
//! By hand: `source scripts/services/common.sh; source scripts/services/moto.sh; start_moto`,
//! then `cargo nextest run -p tasktrack-s3`. Each test uses its own prefix in one bucket that
//! `init` creates. Without the variable the tests print `SKIPPED` (and fail under `CI=true`).

pub mod aws;
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
    let (objects, layout) = config.connect().await?;
    Ok(S3Store::new(S3Documents::new(objects, layout), url))
}
