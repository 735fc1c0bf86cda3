//! # tasktrack-mongodb
//!
//! The `mongodb://` backend: one document per task, claims and successes as single atomic
//! `findOneAndUpdate` round trips, everything else through the core's compare-and-swap adapter.
//!
//! ```text
//! mongodb://[user:pass@]host[:port][,host…]/[database][?driver options][&prefix=P]
//! ```
//! The database defaults to `tasktrack`; `prefix` (letters, digits, `_`, `-`) is put in front of
//! the collection names. Every other option is the official driver's (`replicaSet`, `tls`,
//! `directConnection`, `serverSelectionTimeoutMS`, …).
//!
//! ```no_run
//! # async fn demo() -> tasktrack_core::Result<()> {
//! use tasktrack_core::Store;
//! let store = tasktrack_mongodb::open("mongodb://127.0.0.1:27017/ops?prefix=etl_").await?;
//! store.init().await?; // indexes; `tasktrack init` and the facade's open() do this
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//! Every document write is atomic in MongoDB, and every transition is one conditional write:
//! - `claim_next` (the work queue) and `succeed` are one `findOneAndUpdate` each ([`native`]):
//!   the filter selects the document the rule applies to (claimable in claim order; in progress
//!   with the presented fencing token) and an aggregation-pipeline update restates the rule
//!   (`lifecycle::claim` / `expire` / `grant`, `lifecycle::succeed`) on the server. Two workers
//!   can never claim the same task, and a fenced-out holder matches nothing (`StaleLease`).
//! - Everything else (claim by id, heartbeat, fail, release, patch, admin moves, jobs) goes
//!   through [`tasktrack_core::cas`]: read the document, apply the pure rule in Rust, then
//!   `replaceOne({_id, version}, new)`, re-reading on a lost race. Inserts are conditional on
//!   the unique `_id`; a duplicate key means "already exists" (`create` leaves the task alone).
//! - `now` always comes from the caller; the server's clock is never read.
//!
//! # Layout
//! Two collections in the database: `{prefix}tasks` and `{prefix}jobs`.
//! - A task document is the task's JSON form as BSON (`status` and `status_code`, RFC 3339
//!   timestamps, `data` / `output` as sub-documents, `history`) with `_id` = `job` + U+001F +
//!   `id` (U+001F cannot occur in keys, so jobs `a` and `a-b` never collide), plus `claim_at`
//!   ([`Task::claimable_at`](tasktrack_core::Task::claimable_at) in epoch ms, absent once
//!   finished) and `created_ms`, kept by the backend for its indexes (see `codec`).
//! - Indexes, created by `init` (`tasktrack init`): `claim` (job, priority desc, claim_at, id)
//!   and `claim_by_stage` (job, stage, priority desc, claim_at, id), both *partial* on
//!   `claim_at` existing, so claims walk only claimable tasks, never finished ones; `list`
//!   (job, updated_at, id) and `list_by_status` (job, status, updated_at, id) for keyset
//!   pagination; `counts` (job, stage, status). Keys are unique per (job, id) through `_id`.
//! - A job document is the job's JSON form with `_id` = its name, indexed by `state`.
//!
//! # Limits
//! - Requests per operation: `claim_next` 1 per task claimed (+1 when nothing is left),
//!   `succeed` 1, `create` 1 `insertMany` per 500 tasks (+ job record), heartbeat / fail /
//!   release / claim by id 2 (read + conditional replace; more under contention), `counts` 2
//!   (job record + one `$group` aggregation).
//! - `counts` is an aggregation over the job's entries of the `counts` index: its cost grows
//!   with the job's size (an index scan, not a document scan). Counter documents would make it
//!   O(statuses) at the price of a second write per transition; not done.
//! - Numbers in `data` / `output` must fit BSON: integers above `i64::MAX` are refused
//!   (`InvalidInput`); an `output` of JSON `null` reads back as no output.
//! - Timestamps are stored as RFC 3339 text (years 0000–9999, in which text order is time order).
//! - `mongodb+srv://` needs the driver's DNS resolver feature, which this build leaves out.
//! - Multi-document operations (`delete_job`, `purge`) are per-document conditional writes, not
//!   a transaction: each task is removed atomically, a crash in between leaves the rest.
//! - Supported target: MongoDB ≥ 6 (pipeline updates, `$$REMOVE`, partial indexes).
//!
//! # Testing
//! The tests run against **SecantusDB** 0.7.0b3, a MongoDB-wire-compatible server installed
//! from PyPI, because no real `mongod` can be installed on our CI machines:
//! `scripts/services/secantus.sh` installs it into `~/.cache/tasktrack/venv`, starts
//! `secantusd-py --host 127.0.0.1 --port 0 --storage-path :memory:` and exports
//! `TASKTRACK_TEST_MONGODB_URL=mongodb://127.0.0.1:PORT/?directConnection=true`. Any MongoDB
//! works the same way: set that variable and run `cargo nextest run -p tasktrack-mongodb`.
//! Without it the tests print `SKIPPED`; under `CI=true` they fail. Each test uses its own
//! collection prefix.
//!
//! Modules: [`config`] (the URL), `codec` (documents), `documents` ([`MongoDocuments`], the
//! compare-and-swap half), [`native`] (the single-round-trip half), `error` (driver errors
//! mapped onto the core's, in one place).

mod codec;
pub mod config;
mod documents;
mod error;
pub mod native;

pub use documents::MongoDocuments;

use async_trait::async_trait;
use mongodb::Client;
use mongodb::options::ClientOptions;
use serde_json::Value;
use std::time::Duration;
use tasktrack_core::cas;
use tasktrack_core::*;

/// The `mongodb://` store. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    docs: MongoDocuments,
}

/// Opens the store a `mongodb://` URL names. Connects lazily: a server that is down shows up as
/// [`Error::Unavailable`] on the first request (`init`, which the facade's `open` calls).
pub async fn open(url: &str) -> Result<MongoStore> {
    let config = config::parse(url)?;
    let mut options = ClientOptions::parse(&config.driver_url)
        .await
        .map_err(|e| match *e.kind {
            mongodb::error::ErrorKind::InvalidArgument { .. } => Error::invalid(format!(
                "bad mongodb store URL {:?}: {e}",
                config::redact(url)
            )),
            _ => error::map(e, &config.hosts),
        })?;
    if options.app_name.is_none() {
        options.app_name = Some("tasktrack".to_string());
    }
    let client = Client::with_options(options).map_err(|e| error::map(e, &config.hosts))?;
    let docs = MongoDocuments::new(&client, config);
    Ok(MongoStore { client, docs })
}

impl MongoStore {
    /// The document half (for tools and tests).
    pub fn documents(&self) -> &MongoDocuments {
        &self.docs
    }

    /// The driver's client (shares the pool).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }
    async fn init(&self) -> Result<()> {
        cas::Documents::init(&self.docs).await
    }
    async fn put_job(&self, job: &JobName, spec: &JobSpec, now: Timestamp) -> Result<Job> {
        cas::put_job(&self.docs, job, spec, now).await
    }
    async fn get_job(&self, job: &JobName) -> Result<Job> {
        cas::get_job(&self.docs, job).await
    }
    async fn jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        cas::Documents::list_jobs(&self.docs, state).await
    }
    async fn set_job_state(
        &self,
        job: &JobName,
        change: JobStateChange,
        now: Timestamp,
    ) -> Result<Job> {
        cas::set_job_state(&self.docs, job, change, now).await
    }
    async fn delete_job(&self, job: &JobName, now: Timestamp) -> Result<Deleted> {
        cas::delete_job(&self.docs, job, now).await
    }
    async fn create(
        &self,
        job: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created> {
        cas::create(&self.docs, job, tasks, mode, now).await
    }
    async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
        cas::claim(&self.docs, key, req, now).await
    }
    async fn claim_next(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Vec<Claimed>> {
        native::claim_next(&self.docs, job, req, now).await
    }
    async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        cas::heartbeat(&self.docs, lease, lease_for, now).await
    }
    async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
        cas::patch_data(&self.docs, lease, patch, now).await
    }
    async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
        native::succeed(&self.docs, lease, output, now).await
    }
    async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
        cas::fail(&self.docs, lease, req, now).await
    }
    async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
        cas::release(&self.docs, lease, now).await
    }
    async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task> {
        cas::ignore(&self.docs, key, req, now).await
    }
    async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task> {
        cas::retry(&self.docs, key, req, now).await
    }
    async fn report(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task> {
        cas::report(&self.docs, key, req, now).await
    }
    async fn delete(&self, key: &TaskKey, now: Timestamp) -> Result<()> {
        cas::delete(&self.docs, key, now).await
    }
    async fn purge(&self, req: &Purge) -> Result<u64> {
        cas::purge(&self.docs, req).await
    }
    async fn get(&self, key: &TaskKey) -> Result<Task> {
        cas::get(&self.docs, key).await
    }
    async fn list(&self, query: &TaskQuery) -> Result<TaskPage> {
        cas::list(&self.docs, query).await
    }
    async fn counts(&self, job: &JobName) -> Result<Counts> {
        cas::counts(&self.docs, job).await
    }
}
