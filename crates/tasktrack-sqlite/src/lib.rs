//! # tasktrack-sqlite
//!
//! `sqlite://path`: the embedded default store (`sqlite://./tasktrack.db`). One file, no
//! server, safe for several processes on one machine.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tasktrack_core::Result<()> {
//! use tasktrack_core::*;
//! let store = tasktrack_sqlite::open("sqlite://:memory:").await?;
//! let job = JobName::new("convert")?;
//! store.create(&job, &[NewTask::new(TaskId::new("a.png")?)], CreateMode::SkipExisting, Timestamp::now()).await?;
//! assert_eq!(store.counts(&job).await?.by_status.pending, 1);
//! # Ok(()) }
//! ```
//!
//! URLs: `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `sqlite://:memory:`, with
//! options `?busy_timeout=5s` and `?synchronous=normal|full` (see [`url`]).
//!
//! # Atomicity
//! Every operation runs on the store's single writer connection inside a `BEGIN IMMEDIATE`
//! transaction (in its own savepoint when it shares the transaction with others): it takes
//! SQLite's write lock first, then loads the row(s), applies the pure rule from
//! [`tasktrack_core::lifecycle`] in Rust, and writes the row(s); an error rolls back exactly that
//! operation. SQLite runs in-process, so loading a row costs microseconds and restating the rules
//! in SQL would buy nothing: no rule is duplicated (the only SQL restatements, bulk deletes in
//! `purge` and `delete_job`, name the rule they restate).
//!
//! Group commit: one thread owns the writer connection, and operations that queue up while it
//! is busy share its next transaction (at most 64, each in its savepoint), because a commit's
//! cost is the pages it writes to the WAL, not the statements. A caller is answered only after
//! the commit that carries its operation. Other processes on the same file take the same lock; a
//! writer waits for it up to the busy timeout (default 5 s), then fails with
//! [`Error::Contention`] (transient). No update is ever lost: there is no read outside the lock
//! that a write depends on.
//!
//! Durability: WAL with `synchronous=NORMAL` by default. A committed transition survives a crash
//! of the process; an OS crash or power loss may lose the last few transitions (the file is
//! never corrupted). `?synchronous=full` fsyncs every commit. A lost claim is harmless (the task
//! is claimable again); a lost success means the task may run again (at-least-once execution).
//!
//! # Layout
//! Schema (migrations in `migrations/sqlite/NNN_*.sql`, version in `PRAGMA user_version`; a file
//! with a newer schema than the code is refused with [`Error::Unsupported`]):
//! - `tasktrack_task`: one row per task, primary key `(job, id)`; columns for every queryable
//!   field (`status`, `status_code`, `stage`, `attempts`, `priority`, `not_before`,
//!   `claimable_at`, `token`, `lease_*`, `error_*`, times as integer milliseconds since the
//!   epoch, UTC) and JSON text for `data`, `output`, `history`, `stages`.
//! - `tasktrack_task_claim`: a partial index on `(job, priority DESC, claimable_at, id, stage)`
//!   `WHERE claimable_at IS NOT NULL`; `claimable_at` ([`Task::claimable_at`]) is NULL for
//!   finished tasks, so claims never look at them however many there are.
//! - `tasktrack_count (job, stage, status, n)`: kept in the same transaction as every task insert
//!   or delete (triggers) and status/stage change (the store's summed moves, one write per
//!   delta), so `counts` reads a handful of rows.
//! - `tasktrack_job`: job records, indexed by `(state, name)`.
//! - `tasktrack_tasks`: a view with stable columns and RFC 3339 times for your own SQL, e.g.
//!   `SELECT status, count(*) FROM tasktrack_tasks WHERE job = 'convert' GROUP BY status`.
//!
//! # Limits
//! - One machine: SQLite's locking does not work over NFS/SMB; use a server backend there.
//! - Writers are serialized (SQLite has one write lock per file): throughput is bounded by
//!   single-row transactions per second on the disk; `claim_next` with a batch amortizes it.
//! - Reads use four reader connections on WAL snapshots and never wait for the writer (on
//!   `:memory:` they go through the writer, the only connection that sees the data).
//! - `sqlite://:memory:` lives and dies with the store and cannot be shared across processes.
//!
//! # Testing
//! Needs nothing: `cargo nextest run -p tasktrack-sqlite --all-features` runs the conformance
//! suite on temporary files and on `:memory:`, plus tests for bad files, migrations, damaged
//! rows, and several stores and processes racing on one file. Throughput:
//! `cargo run --release -p tasktrack-bench -- --store sqlite:///tmp/b.db`.

pub mod url;

mod db;
mod queries;
mod rows;
mod tasks;

pub use db::SCHEMA_VERSION;

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::cas::Step;
use tasktrack_core::lifecycle;
use tasktrack_core::*;
use url::SqliteUrl;

/// Opens (creating and migrating if needed) the database a `sqlite://` URL names.
///
/// Errors: a malformed URL or a path that is a directory is [`Error::InvalidInput`]; a file that
/// is not a SQLite database is [`Error::Corrupt`] naming it; a file that cannot be opened
/// (missing directory, permissions) is [`Error::Unavailable`].
pub async fn open(url: &str) -> Result<SqliteStore> {
    let url = SqliteUrl::parse(url)?;
    let db = tokio::task::spawn_blocking(move || db::Db::open(url))
        .await
        .map_err(|e| Error::Backend(format!("opening sqlite did not complete: {e}")))??;
    Ok(SqliteStore { db })
}

/// The SQLite store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct SqliteStore {
    db: Arc<db::Db>,
}

impl SqliteStore {
    /// The parsed URL the store was opened with.
    pub fn url(&self) -> &SqliteUrl {
        &self.db.url
    }
}

// Reads and job records are plain queries (`queries`), task writes run the pure rule in a
// transaction (`tasks`); the fenced ones below pass their rule as a closure.
tasktrack_core::store_impl! {
    SqliteStore;
    native {
        fn backend(&self) -> &'static str {
            "sqlite"
        }

        /// The schema is created and migrated by [`open`]; nothing left to do.
        async fn init(&self) -> Result<()> {
            Ok(())
        }

        async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
            // Refused before any lock, whatever the task's state (as on every backend).
            lifecycle::check_patch(lease, patch)?;
            let (l, patch) = (lease.clone(), patch.clone());
            tasks::fenced(&self.db, lease, move |t| {
                lifecycle::patch_data(t, &l, &patch, now)
            })
            .await
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            lifecycle::check_output(lease, &output)?;
            let l = lease.clone();
            tasks::fenced(&self.db, lease, move |t| {
                lifecycle::succeed(t, &l, output, now)
            })
            .await
        }
        async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
            let (l, req) = (lease.clone(), req.clone());
            tasks::fenced(&self.db, lease, move |t| lifecycle::fail(t, &l, &req, now)).await
        }
        async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
            let l = lease.clone();
            tasks::fenced(&self.db, lease, move |t| lifecycle::release(t, &l, now)).await
        }
        async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task> {
            let req = req.clone();
            tasks::update(&self.db, key, move |t| {
                Step::from_rule(lifecycle::ignore(t, &req, now))
            })
            .await
        }
        async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task> {
            let req = *req;
            tasks::update(&self.db, key, move |t| {
                Step::from_rule(lifecycle::retry(t, &req, now))
            })
            .await
        }
    }
    through queries with &self.db {
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        jobs(state: Option<JobState>) -> Vec<Job>;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
    through tasks with &self.db {
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, new: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        claim_next(job: &JobName, req: &ClaimNext, now: Timestamp) -> Vec<Claimed>;
        heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
        succeed_many(done: &[(Lease, Value)], now: Timestamp) -> Vec<Result<Task>>;
        succeed_and_claim_next(lease: &Lease, output: Value, next: &ClaimNext, now: Timestamp) -> Handoff;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
    }
}
