//! # tasktrack-mongodb
//!
//! The `mongodb://` backend: one document per task, every transition one conditional
//! `replaceOne` computed by the core's pure rules; batched claims and successes read many
//! documents per request.
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
//! Every document write is atomic in MongoDB, and every transition is one conditional write,
//! `replaceOne({_id, version, created_at}, new)`, where `new` comes from the pure rule of
//! `tasktrack_core::lifecycle` applied in Rust to the document as read. A writer that lost a
//! race matches nothing and re-reads; no rule is restated on the server. (`created_at` tells a
//! task from one deleted and created again under its id, whose version starts again at 1.)
//! - `claim_next` ([`native`]): one sorted `find` of the first 4n claimable tasks (the
//!   partial `claim` index on MongoDB), then one conditional replace per candidate until n are
//!   won. Two workers can never both win a task: the second one's version no longer matches.
//! - `succeed_many` ([`native`]): one `find` of the whole batch by `_id`, then the conditional
//!   replaces sent concurrently; a task that moved meanwhile takes the single-task path.
//! - Everything else (`succeed`, claim by id, heartbeat, fail, release, patch, admin moves,
//!   jobs) is [`tasktrack_core::cas`]: read, rule, conditional replace, re-read on a lost race.
//!   Inserts are conditional on the unique `_id`; a duplicate key means "already exists".
//! - `now` always comes from the caller; the server's clock is never read.
//!
//! # Layout
//! Two collections in the database: `{prefix}tasks` and `{prefix}jobs`.
//! - A task document is the task's JSON form as BSON (`status` and `status_code`, RFC 3339
//!   timestamps, `data` / `output` as sub-documents, `history`) with `_id` = `job` + U+001F +
//!   `id` (U+001F cannot occur in keys, so jobs `a` and `a-b` never collide), plus `claim_at`
//!   ([`Task::claimable_at`](tasktrack_core::Task::claimable_at) in epoch ms, absent once
//!   finished), kept by the backend for its indexes (see `codec`).
//! - Indexes, created by `init` (`tasktrack init`): `claim` (job, priority desc, claim_at, id)
//!   and `claim_by_stage` (job, stage, priority desc, claim_at, id), both *partial* on
//!   `claim_at` existing, so claims walk only claimable tasks, never finished ones; `list`
//!   (job, updated_at, id) and `list_by_status` (job, status, updated_at, id) for keyset
//!   pagination; `counts` (job, stage, status); `claimable` (claim_at, *sparse*), from which
//!   SecantusDB, which cannot walk `claim` in sort order, fetches a claim's candidates. Keys are
//!   unique per (job, id) through `_id`.
//! - A job document is the job's JSON form with `_id` = its name, indexed by `state`.
//!
//! # Limits
//! - Requests per operation: `claim_next` of n tasks 1 + n (one sorted `find`, one replace per
//!   candidate; more under contention), `succeed_many` of n 1 + n (one `find`, n concurrent
//!   replaces), `create` 1 `insertMany` per 500 tasks (+ job record), `succeed` / heartbeat /
//!   fail / release / claim by id 2 (read + conditional replace; more under contention),
//!   `counts` 2 (job record + one `$group` aggregation).
//! - `counts` is an aggregation over the job's entries of the `counts` index: its cost grows
//!   with the job's size (an index scan, not a document scan). Counter documents would make it
//!   O(statuses) at the price of a second write per transition; not done.
//! - Numbers in `data` / `output` must fit BSON: integers above `i64::MAX` are refused
//!   (`InvalidInput`); an `output` of JSON `null` reads back as no output.
//! - Timestamps are stored as RFC 3339 text (years 0000–9999, in which text order is time order).
//! - `mongodb+srv://` needs the driver's DNS resolver feature, which this build leaves out.
//! - A task document may not exceed 16 MiB: a write that would is `InvalidInput` naming the
//!   task, and nothing is written; new tasks must leave 64 KiB free. A claim that no longer
//!   fits exhausts the task as `unrecordable` (or sets it aside) instead of blocking the queue.
//! - An unreadable task document is `Corrupt` naming it; `claim_next` sets it aside (removes
//!   its `claim_at`, adds `set_aside`) and hands out the job's other tasks. So it does with a
//!   task the claim rule refuses as corrupt (a counter edited to the top of its range).
//!   `list` names it in the page's `unreadable` instead of failing (`src/listing.rs`).
//! - A `claim_next` that fails after winning some tasks (a lost connection at a later replace)
//!   answers with those it won and logs the error: a lease granted is never dropped.
//! - Unless the URL says otherwise, a request waits at most 10 s for a server and a
//!   connection 5 s to open ([`SERVER_SELECTION_TIMEOUT`], [`CONNECT_TIMEOUT`]).
//! - Multi-document operations (`delete_job`, `purge`) are per-document conditional writes, not
//!   a transaction: each task is removed atomically, a crash in between leaves the rest.
//! - Supported target: MongoDB ≥ 6 (partial indexes; nothing newer is needed).
//!
//! # Testing
//! The tests run against **SecantusDB** 0.7.0b3, a MongoDB-wire-compatible server installed
//! from PyPI, because no real `mongod` can be installed on our CI machines:
//! `scripts/services/secantus.sh` installs it into `~/.cache/tasktrack/venv`, starts
//! `secantusd-py --host 127.0.0.1 --port 0 --storage-path :memory:` and exports
//! `TASKTRACK_TEST_MONGODB_URL=mongodb://127.0.0.1:PORT/?directConnection=true&retryWrites=false`
//! (SecantusDB slows down with retryable writes; keep them on a real replica set). Any MongoDB
//! works the same way: set that variable and run `cargo nextest run -p tasktrack-mongodb`.
//! Without it the tests print `SKIPPED`; under `CI=true` they fail. Each test uses its own
//! collection prefix.
//!
//! Modules: [`config`] (the URL), `codec` (documents), `documents` ([`MongoDocuments`], the
//! compare-and-swap half), [`native`] (the batched half), `error` (driver errors
//! mapped onto the core's, in one place).

mod codec;
pub mod config;
mod documents;
mod error;
mod listing;
pub mod native;

pub use documents::MongoDocuments;

use mongodb::Client;
use mongodb::options::ClientOptions;
use serde_json::Value;
use std::time::Duration;
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
                tasktrack_core::redact_url(url)
            )),
            _ => error::map(e, &config.hosts),
        })?;
    with_defaults(&mut options);
    let client = Client::with_options(options).map_err(|e| error::map(e, &config.hosts))?;
    let docs = MongoDocuments::new(&client, config);
    Ok(MongoStore { client, docs })
}

/// How long a request waits for a server before it is [`Error::Unavailable`], unless the URL
/// says (`serverSelectionTimeoutMS`): the driver's own default, 30 s, left a command against a
/// server that is down hanging for half a minute. 10 s still rides out a typical replica-set
/// election.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening one connection may take, unless the URL says (`connectTimeoutMS`; the
/// driver's default is 10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The options this backend sets where the URL is silent: the timeouts above and the
/// application name the server logs.
fn with_defaults(options: &mut ClientOptions) {
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    options
        .app_name
        .get_or_insert_with(|| "tasktrack".to_string());
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

// The whole `impl Store`: claims and batched completion restated natively, everything else
// read + compare-and-swap through the adapter.
tasktrack_core::store_impl! {
    MongoStore;
    native {
        fn backend(&self) -> &'static str {
            "mongodb"
        }
    }
    // Restated natively (`src/native.rs`).
    through native with &self.docs {
        claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
        succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
    }
    via self.docs {
        init() -> ();
        jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
    }
    through_cas &self.docs {
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
        patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
        succeed(lease: &Lease, output: Value, now: Timestamp) -> Task;
        fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
        release(lease: &Lease, now: Timestamp) -> Task;
        ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
        retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn options(url: &str) -> ClientOptions {
        let mut options = ClientOptions::parse(url).await.unwrap();
        with_defaults(&mut options);
        options
    }

    #[tokio::test]
    async fn timeouts_are_short_unless_the_url_sets_them() {
        let o = options("mongodb://127.0.0.1:1").await;
        assert_eq!(o.server_selection_timeout, Some(SERVER_SELECTION_TIMEOUT));
        assert_eq!(o.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(o.app_name.as_deref(), Some("tasktrack"));
        let o =
            options("mongodb://h/?serverSelectionTimeoutMS=60000&connectTimeoutMS=100&appName=x")
                .await;
        assert_eq!(o.server_selection_timeout, Some(Duration::from_secs(60)));
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.app_name.as_deref(), Some("x"));
    }
}
