//! # tasktrack-dynamodb
//!
//! The `dynamodb://table` backend: tasks and jobs in one DynamoDB table, progress counters in a
//! second one (`table.counters`).
//! Built on the core's compare-and-swap adapter ([`tasktrack_core::cas`]): every change is a
//! conditional write, so two workers can never both start a task, and counts come from counter
//! items written in the same transaction as the task, so they never drift.
//!
//! ```no_run
//! # async fn f() -> tasktrack_core::Result<()> {
//! use tasktrack_core::Store;
//! let store = tasktrack_dynamodb::open("dynamodb://tasks?region=eu-west-1").await?;
//! store.init().await?; // creates the table (on-demand billing) and its indexes if missing
//! # Ok(()) }
//! ```
//!
//! ## URL
//! `dynamodb://TABLE[?endpoint=URL&region=R&profile=P&counter_shards=N&item_limit=BYTES]`. What
//! the URL leaves out comes from the standard AWS configuration: `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_DYNAMODB`), `AWS_REGION`, credentials, `AWS_PROFILE`, SSO, roles.
//! `item_limit` ([`MIN_ITEM_BYTES`]..=[`MAX_ITEM_BYTES`], the default) lowers the largest item
//! written, for a DynamoDB-compatible server with a lower limit (moto: 405,000 bytes).
//!
//! # Atomicity
//! Every write is conditional on the record being exactly the one read — `v` (version),
//! `st` (status), `tok` (fencing token) and `lsk` (its last write instant and id) — so the
//! adapter's read, apply rule, write loop never loses an update, a stale lease holder can never
//! write, and a copy read before a delete never matches the task created again under its id
//! (whose version and token start afresh). A write that moves a task between
//! counted `(stage, status)` cells is one `TransactWriteItems`: the conditional put (or delete)
//! of the task plus an `ADD` on one shard of the job's counters. Pending and in-progress tasks
//! share one cell ("open"), so claims, releases, reclaims, heartbeats and data patches move no
//! count and are a single conditional `PutItem`; `counts` splits the open cell with a Query of
//! the (small) in-progress partition of the list index. Bulk create is `TransactWriteItems` of
//! up to 99 puts conditioned on `attribute_not_exists(pk)` plus one counter update
//! (`BatchWriteItem` cannot carry conditions); tasks that already exist are reported by AWS's
//! cancellation reasons and the rest is sent again; an id given twice in one call is put once
//! (AWS refuses two operations on one item in a transaction), the later occurrences reported
//! as existing, as the core's adapter does. Job records are conditional puts on their
//! version. A refused write whose current item is exactly the record we wrote (returned by
//! `ReturnValuesOnConditionCheckFailure=ALL_OLD`) is an SDK retry of our own landed write, and
//! counts as done. A delete that finds no item is never taken for our own (another writer's
//! delete leaves the same nothing): a retry of our own landed transaction is answered with
//! success by DynamoDB itself, through the idempotency token the SDK gives each
//! `TransactWriteItems` for all its retries. So of two racing deletes, one is `NotFound`.
//!
//! # Layout
//! Table `TABLE`, partition key `pk`, sort key `sk` (all strings), every record's JSON in `doc`:
//!
//! | record | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | task | `t:<job>` | `<id>` | `v`, `st`, `tok`; `lpk`/`lsk`; while claimable `cpk`/`ck`/`cat` (+ `spk` at a stage) |
//! | job | `j` | `<job>` | `v`; `lpk` = `j:<state>`, `lsk` = `<job>` |
//!
//! Table `TABLE.counters`: `pk` = `c:<job>`, `sk` = shard `0..N`, attributes `n:<status>` or
//! `n:<status>:<stage>` (task counts; a job's count is the sum over its shards). A table of its
//! own so that a transaction touches one item of the (big) task table and one small item.
//!
//! Three global secondary indexes on `TABLE` (projection ALL, so a claim or a page is one Query):
//! - `claim` (`cpk` = job, `ck` = priority descending · claimable-at · id): `claim_next` is a
//!   Query in claim order with the filter `cat <= now`. Finished tasks have no `cpk`, so claims
//!   never read them (a sparse index).
//! - `claim_stage` (`spk` = length-prefixed stage + job, `ck`): the same per pipeline stage.
//! - `list` (`lpk` = status code + job, `lsk` = updated-at · id): a list by status is a Query
//!   per status, our cursor `(updated_at, id)` becoming the key condition `lsk > cursor`; also
//!   jobs by state (`lpk` = `j:<state>`). A task item whose `lsk` is not the one its record
//!   gives is damaged (`Corrupt`). The first page of a time-bounded list also Queries the two
//!   `lsk` ranges outside every record's key, for damaged items whose key does not read as a
//!   place: a time bound cannot be compared with it, so they are named there, not filtered
//!   by how their text sorts.
//!
//! Job names and ids are stored verbatim (keys are compared whole, never by prefix), so jobs `a`
//! and `a-b` share nothing, and no key can reach another job's records.
//!
//! # Limits
//! - Requests per operation: see `docs/backends/dynamodb.md`. Claim + succeed costs about 2
//!   requests per task: the claim's conditional `PutItem`, the succeed transaction (shared with
//!   the other counted writes of the process pending at that moment: [`commit`]), and a
//!   `Query` per 32 claims (candidates are pooled per process: [`pool`]); plus one `PutItem` per
//!   race lost to another worker. The lease holder's write uses the copy this process wrote at
//!   claim time, conditionally, so it needs no read.
//! - Another process's new, released or expired-lease tasks reach this process's claims at most
//!   1 s late (the pool's time to live) or when its pool is used up; its own changes at once.
//! - A task's JSON must fit in a DynamoDB item (400 KB = 409,600 bytes, counting attribute
//!   names and the index attributes), and a task grows as it is worked on (a lease, each
//!   failure's error, each expired lease's record). Every task write is fitted before any
//!   request, so that no task can outgrow its item and stay stuck at the head of the queue:
//!   1. A write that makes data or output larger (create, data patch, success) must leave
//!      [`RESERVED_BYTES`] (2 KB) of the item free; otherwise it is refused with `InvalidInput`
//!      naming the task, its size and the limit. Only that call fails, never the other writes
//!      of its transaction (a `create` holding such a task writes nothing, as for any invalid
//!      task).
//!   2. A write still too large cuts failure records until it fits: history tracebacks
//!      (oldest first), then the start of the last error's traceback (its end is kept), then
//!      the oldest history records, each cut marked with a note of the bytes cut. Data,
//!      output, error kinds and messages are never cut: every `fail` is recorded.
//!   3. A claim whose lease still does not fit exhausts the task instead, with an error of
//!      kind `unrecordable` saying why; `claim_next` goes on with the next task, `claim`
//!      answers `Refused(Exhausted)`. Only a task written without the reserve (before these
//!      rules, or under a larger `item_limit`) can need this; one over the limit even as
//!      exhausted is left out of claims with a warning.
//!
//!   A write AWS refuses for a reason about its item (`ValidationError`, ...) fails alone, with
//!   AWS's message, and the rest of its transaction is sent again.
//! - Index reads are eventually consistent on AWS: a claim may see a stale candidate (its
//!   conditional write then fails and the next one is tried) and a fresh write may take a moment
//!   to appear in a list or in the in-progress part of `counts` (pending and in-progress may
//!   briefly trade a few tasks; their sum and every other count are exact). `get` and the
//!   counter reads are strongly consistent.
//! - Hot partitions: each job's claim index is one partition key, good for about 1,000 writes/s
//!   (each task transition writes it). Beyond that, write sharding would be needed: `cpk` =
//!   `<job>#<k>` for k in 0..K chosen per task, claimers querying a random shard first and the
//!   others when it is empty. Counter items are already sharded: `?counter_shards=N` (default 4)
//!   spreads counter updates over N items, which also keeps concurrent transactions from
//!   conflicting on one counter item; `counts` reads all N in one Query.
//! - A claim Query reads past not-yet-claimable tasks of higher priority (live leases, backoff).
//!
//! # Testing
//! `bash scripts/test -p tasktrack-dynamodb` starts moto (`scripts/services/moto.sh`) and runs
//! the conformance suite, the concurrency tests and the unit tests against it. moto runs
//! single-threaded (werkzeug `threaded=False`): its stock multi-threaded server does not
//! serialize conditional writes, AWS does. Set `TASKTRACK_TEST_MOTO_ENDPOINT` to use a server you
//! started; without one the tests print SKIPPED (and fail under `CI=true`).

pub mod commit;
mod config;
mod documents;
mod error;
mod fit;
mod item;
mod listing;
pub mod pool;
mod requests;
mod schema;
mod store;
mod txn;

pub use config::{DEFAULT_COUNTER_SHARDS, MAX_COUNTER_SHARDS, Settings};
pub use documents::DynamoDocuments;
pub use fit::{MAX_ITEM_BYTES, MIN_ITEM_BYTES, RESERVED_BYTES};
pub use requests::Requests;
pub use store::DynamoStore;

use std::hash::{BuildHasher, Hasher};
use tasktrack_core::Result;

/// Opens `dynamodb://table?...` (see the crate docs); does not touch the table (`init` creates it).
pub async fn open(url: &str) -> Result<DynamoStore> {
    let settings = Settings::parse(url)?;
    let (client, endpoint) = settings.client().await?;
    Ok(DynamoStore::new(DynamoDocuments {
        client,
        counter_table: item::counter_table(&settings.table),
        table: settings.table,
        endpoint,
        counter_shards: settings.counter_shards,
        item_limit: settings.item_limit,
        stats: Default::default(),
        commit: Default::default(),
        damaged: Default::default(),
    }))
}

/// A pseudo-random number for jitter and shard choice (std's randomly keyed hasher; no
/// cryptographic quality needed).
pub(crate) fn jitter() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// [`jitter`] as a `u32`.
pub(crate) fn jitter_u32() -> u32 {
    (jitter() >> 32) as u32
}
