//! `postgres://` — the PostgreSQL backend.
//!
//! # Atomicity
//! - `claim_next` is one statement (`queries/postgres/claim_next.sql`): a CTE takes the first
//!   claimable rows of the claim index `FOR UPDATE SKIP LOCKED` and grants them with
//!   `UPDATE … RETURNING`. Workers never wait for each other and never take the same row.
//! - `succeed` is one fenced `UPDATE … WHERE token = $lease RETURNING *` (`succeed.sql`).
//! - `succeed_and_claim_next` (a worker's hand-off) is one statement (`handoff.sql`): the
//!   `succeed.sql` update and, only if it wrote its row (`EXISTS (SELECT 1 FROM done)`), the
//!   claim of `claim_next.sql`, as data-modifying CTEs: one round trip and one commit per task.
//!   When the succeed fast path does not apply (stale lease, pipeline stage) nothing is written
//!   and the general path runs: `succeed`, then `claim_next`.
//! - Hand-offs of concurrent workers are combined (`combine.rs`): those that queue while another
//!   is in flight go out together as one statement (`handoff_many.sql`), one commit for all.
//! - Every other operation is "load → pure rule → conditional write": the row is read with its
//!   `version`, a [`tasktrack_core::lifecycle`] function decides, and the new row is written with
//!   `UPDATE … WHERE job = $ AND id = $ AND version = $ AND created_at = $` (the
//!   [`Documents`](tasktrack_core::cas::Documents) impl both dialects share, `common/docs.rs`,
//!   over this dialect's `docs.rs`; driven by the public [`tasktrack_core::cas`] functions). A
//!   lost race re-reads and retries.
//! - Counts are kept by statement-level triggers in the same transaction as each write.
//! - What a committed statement did stands: an error of the work after it (expiring candidates
//!   whose lease ran out, further claim rounds, the claim after a general-path success) is
//!   logged and the call returns the success and the leases granted so far
//!   (`common::after_commit`).
//!
//! # Layout
//! See the migrations in `migrations/postgres/`: `{prefix}job`, `{prefix}task`,
//! `{prefix}task_count`, `{prefix}schema_version` and the analytics view `{prefix}tasks`, in the
//! schema named by `?schema=` (default `public`).

mod combine;
mod docs;
mod rows;
mod vacuum;

use crate::common::config::Config;
use crate::common::docs::{Queries, dialect_queries};
use crate::common::migrate::{self, Migration};
use crate::common::rows::{json_has_nul, replace_nul_json};
use crate::common::{
    Dialect, Written, advanceable, after_commit, claimed, handoff_general, probe, store_over_cas,
    succeed_many_batched, versioned_task,
};
use combine::ViaCombiner;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::cas;
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::*;

const BACKEND: &str = "postgres";

dialect_queries! {
    /// This dialect's own statements (the shared ones are [`Queries`]), with the table names
    /// filled in once at open.
    Native in "postgres" {
        claim_next,
        succeed,
        succeed_many,
        handoff,
        handoff_many,
        purge_batch,
        lock_migrations,
        set_aside,
    }
    at_stage {
        claim_next_stage <- claim_next,
        handoff_stage <- handoff,
    }
}

/// The versioned migrations, applied in order by `init` (`tasktrack init`).
const MIGRATIONS: [Migration; 1] = [(
    1,
    "tables",
    include_str!("../../migrations/postgres/0001_tables.sql"),
)];

/// Fills in the table names: `{t}` schema-qualified prefix, `{p}` bare prefix.
fn render(sql: &str, t: &str, p: &str) -> Arc<str> {
    sql.replace("{t}", t).replace("{p}", p).into()
}

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    endpoint: String,
    schema: String,
    prefix: String,
    /// `"schema".prefix`, for statements built at run time.
    t: String,
    q: Arc<Queries>,
    native: Arc<Native>,
    /// When the store vacuums the task table next (`vacuum.rs`).
    housekeeping: Arc<vacuum::Housekeeping>,
    /// The task combining concurrent hand-offs (`combine.rs`), started at the first hand-off;
    /// `None` when combining is off (`?combine_handoffs=off`) and in the task's own clone.
    combiner: Option<Arc<std::sync::OnceLock<combine::Combiner>>>,
}

impl PgStore {
    /// Connects (one probe connection, so an unreachable server fails here with one line naming
    /// host and port) and builds the pool. Does not create tables: call [`Store::init`].
    pub async fn connect(url: &str) -> Result<PgStore> {
        let config = Config::parse(url, 5432)?;
        let endpoint = config.endpoint.clone();
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(&config.driver_url)
            .map_err(|e| Error::invalid(format!("bad PostgreSQL URL: {e}")))?
            // No bitmap scans in the store's own sessions: every query it runs is written for
            // an ordered index range scan. On a job bulk-created into a table the planner has no
            // statistics for (autovacuum off or not yet run), it guessed a few dozen claimable
            // rows and, for a batched claim (LIMIT 128), read every claimable row of the job by
            // a bitmap scan and sorted them: 150–300 ms a claim at 100,000 tasks.
            // Generic plans: each statement is planned once per connection, not per execution.
            // Left to choose, PostgreSQL kept re-planning the hand-off (its generic plan's cost
            // estimate is above the custom plans' average), and planning took half the server's
            // time per task (perf); every plan the store uses is the same index range scan
            // whatever the parameters, so the generic plan loses nothing.
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                ("enable_bitmapscan", "off"),
                ("plan_cache_mode", "force_generic_plan"),
            ])
            .disable_statement_logging();
        let conn: sqlx::PgConnection = probe(BACKEND, &config, &options).await?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .connect_lazy_with(options);
        let schema = config.schema.unwrap_or_else(|| "public".to_string());
        let prefix = config.table_prefix;
        let t = format!("\"{schema}\".{prefix}");
        Ok(PgStore {
            pool,
            endpoint,
            housekeeping: Arc::new(vacuum::Housekeeping::new(config.vacuum_every)),
            combiner: config.combine_handoffs.then(Arc::default),
            q: Arc::new(Queries::postgres(|sql| render(sql, &t, &prefix))),
            native: Arc::new(Native::load(|sql| render(sql, &t, &prefix))),
            schema,
            prefix,
            t,
        })
    }

    /// The connection pool (for custom queries against the documented view).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The qualified name of the analytics view (`"public".tasktrack_tasks` by default).
    pub fn view_name(&self) -> String {
        format!("{}tasks", self.t)
    }

    /// Many single-step tasks succeeded in one statement (`succeed_many.sql`): one round trip and
    /// one commit for the whole batch. Returns what it wrote, by key; a lease it did not match
    /// (stale, or its task is at a pipeline stage) is simply absent. The statement has committed
    /// when the rows are read: a row written but that does not read back (edited by hand into
    /// something the statement still completes) is that entry's error, not the batch's.
    async fn succeed_many_fast(&self, done: &[(Lease, Value)], now: Timestamp) -> Result<Written> {
        let columns = SucceedColumns::of(done, now)?;
        let limit = i32::try_from(HISTORY_LIMIT).unwrap_or(i32::MAX);
        let rows = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.native.succeed_many.clone()))
                    .bind(&columns.job)
                    .bind(&columns.id)
                    .bind(&columns.token)
                    .bind(&columns.owner)
                    .bind(&columns.attempt)
                    .bind(&columns.output)
                    .bind(&columns.record)
                    .bind(&columns.acquired_at)
                    .bind(now.as_millis())
                    .bind(limit)
                    .fetch_all(&self.pool)
            })
            .await?;
        let mut written = HashMap::with_capacity(rows.len());
        for row in rows {
            written.insert(self.row_key(&row)?, self.read_row(&row));
        }
        Ok(written)
    }

    /// The task a returned row holds; `Corrupt` naming it if it does not decode (a column the
    /// driver cannot read included: jsonb holding a number serde_json cannot, say).
    pub(crate) fn read_row(&self, row: &PgRow) -> Result<Task> {
        crate::common::docs::read_one(self, &self.table(), row)
    }

    /// The key of a returned row, read whether or not the rest of it decodes.
    fn row_key(&self, row: &PgRow) -> Result<TaskKey> {
        let job: String = row.try_get("job").map_err(|e| self.err(&e))?;
        let id: String = row.try_get("id").map_err(|e| self.err(&e))?;
        TaskKey::parse(&job, &id).map_err(|e| Error::corrupt(self.table(), e))
    }

    /// Releases leases granted by a statement whose call answers an error, so that their
    /// holder never learns of them (as Redis does). Best effort: a lease that cannot be released
    /// expires on its own.
    async fn release_unseen(&self, granted: &[Claimed], now: Timestamp) {
        for c in granted {
            if let Err(e) = cas::release(self, &c.lease, now).await {
                tracing::warn!(key = %c.lease.key, error = %e, "postgres: granted lease not released: it will expire");
            }
        }
    }

    /// Claims for `req` until `won` holds `req.limit` leases or the job has nothing claimable
    /// left: one `claim_next.sql` per round (see [`PgStore::take_claimed`]). Returns the leases
    /// won, and the error that cut the rounds short, if any. Each round's statement commits on
    /// its own, so the leases it granted are won whatever fails after it: they are always
    /// returned, and the caller decides what the error means ([`crate::common::after_commit`]).
    async fn claim_rounds(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
        mut won: Vec<Claimed>,
    ) -> (Vec<Claimed>, Option<Error>) {
        let expires = now.plus(req.lease_for);
        let mut error = None;
        for _round in 0..cas::MAX_CAS_ATTEMPTS {
            if won.len() >= req.limit {
                break;
            }
            let want = req.limit - won.len();
            let want_i64 = i64::try_from(want).unwrap_or(i64::MAX);
            let rows = self
                .run(false, || {
                    let sql = if req.stage.is_some() {
                        &self.native.claim_next_stage
                    } else {
                        &self.native.claim_next
                    };
                    let mut q = sqlx::query(AssertSqlSafe(sql.clone()))
                        .bind(job.as_str())
                        .bind(now.as_millis())
                        .bind(expires.as_millis())
                        .bind(want_i64)
                        .bind(req.owner.as_str());
                    if let Some(stage) = &req.stage {
                        q = q.bind(stage.as_str());
                    }
                    q.fetch_all(&self.pool)
                })
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let found = rows.len();
            if let Err(e) = self.take_claimed(rows, req, now, &mut won).await {
                error = Some(e);
                break;
            }
            if found < want {
                break;
            }
        }
        self.note_claims(won.len());
        (won, error)
    }

    /// Takes the rows of a claim (`claim_next.sql`, or the claim part of `handoff.sql`) into
    /// `won`, in the statement's order, which is claim order: a granted row as written; a row
    /// whose lease expired (`granted` false) through the pure rule and a write conditional on
    /// the version the statement read ([`PgStore::reclaim`]), which records the dead attempt or
    /// exhausts the task (claimed only if it is granted, and only up to `req.limit`); a row
    /// finished by hand re-indexed ([`PgStore::reindex`]); a row that does not decode set aside
    /// ([`PgStore::set_aside`]). Taking them in turn keeps `won` in claim order, as every
    /// backend answers (the model check compares the order).
    ///
    /// The statement has committed when this runs: every lease it granted goes into `won` even
    /// when an error stops the rest (a row that cannot be read; an expiry whose write fails,
    /// after which no further expiry is tried); the first such error is returned for the caller
    /// to report ([`PgStore::claim_rounds`]). Expired rows left untouched stay claimable for the
    /// next claim.
    async fn take_claimed(
        &self,
        rows: Vec<PgRow>,
        req: &ClaimNext,
        now: Timestamp,
        won: &mut Vec<Claimed>,
    ) -> Result<()> {
        let (mut first_error, mut expiry_failed) = (None, false);
        let table = self.table();
        let one = Claim::new(req.owner.clone(), req.lease_for);
        for row in rows {
            let read = row
                .try_get::<bool, _>("granted")
                .map_err(|e| self.err(&e))
                .and_then(|granted| Ok((granted, self.read_row(&row)?)))
                .and_then(|(granted, task)| match granted {
                    true => Ok((true, task)),
                    // The statement leaves a row it cannot advance ungranted.
                    false => Ok((false, advanceable(&table, task)?)),
                });
            let error = match read {
                Ok((true, task)) => claimed(task).map(|c| won.push(c)).err(),
                Ok((false, task)) if task.status != Status::InProgress => {
                    self.reindex(task).await.err()
                }
                Ok((false, _)) if expiry_failed || won.len() >= req.limit => None,
                Ok((false, task)) => match self.reclaim(task, &one, now).await {
                    Ok(granted) => {
                        won.extend(granted);
                        None
                    }
                    Err(e) => {
                        expiry_failed = true;
                        Some(e)
                    }
                },
                Err(e) if e.kind() == ErrorKind::Corrupt => self.set_aside(&row, &e).await.err(),
                Err(e) => Some(e),
            };
            if let Some(e) = error {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Applies [`lifecycle::claim`] to a row whose lease expired, as the claim's statement read
    /// it (at the stage it asked for), and writes the result conditionally on that version:
    /// records the dead attempt and grants the task, or exhausts it. A row written since (its
    /// slow holder succeeded, say, moving it to another stage) is left alone (`None`), as is
    /// one the rule refuses.
    async fn reclaim(&self, task: Task, one: &Claim, now: Timestamp) -> Result<Option<Claimed>> {
        let (new, granted) = match lifecycle::claim(&task, one, now)? {
            ClaimDecision::Granted(c) => (c.task.clone(), Some(c)),
            ClaimDecision::Exhausted(t) => (t, None),
            ClaimDecision::Refused(_) => return Ok(None),
        };
        let read = versioned_task(task);
        let wrote = cas::Documents::replace_task(self, &read, &new).await?;
        Ok(granted.filter(|_| wrote))
    }

    /// Writes back, as it is, a row the claim index listed but that no rule lets anyone claim:
    /// one edited by hand into a finished status with its `claim_at` left. Writing recomputes
    /// `claim_at`, so the row stops taking the head of every claim (SQLite and MariaDB do the
    /// same). Conditional on the row's version: a write in between has re-indexed it already.
    async fn reindex(&self, task: Task) -> Result<()> {
        let read = versioned_task(task.clone());
        cas::Documents::replace_task(self, &read, &task)
            .await
            .map(drop)
    }

    /// Takes a row a claim returned but that does not decode out of the claim index
    /// (`set_aside.sql`), so that it cannot stop the job's claims: it would otherwise come back
    /// at the head of every claim once its lease expired, and fail each one.
    async fn set_aside(&self, row: &PgRow, error: &Error) -> Result<()> {
        let key = row
            .try_get::<String, _>("job")
            .and_then(|job| Ok((job, row.try_get::<String, _>("id")?)))
            .map_err(|e| self.err(&e))?;
        tracing::warn!(
            job = key.0,
            id = key.1,
            "postgres: claims set aside damaged task {}/{}: {error}",
            key.0,
            key.1
        );
        // Idempotent: retried after a lost connection too.
        self.run(true, || {
            sqlx::query(AssertSqlSafe(self.native.set_aside.clone()))
                .bind(key.0.clone())
                .bind(key.1.clone())
                .execute(&self.pool)
        })
        .await?;
        Ok(())
    }

    /// The one-statement hand-off (`handoff.sql`): `None` when the succeed fast path does not
    /// apply (nothing was written; the caller takes the general path). A claim that found only
    /// expired leases it could not take goes on with further rounds of `claim_next.sql`, as
    /// `claim_next` does.
    ///
    /// Once the statement has returned, the success and the leases it granted are committed:
    /// an error of the work after it (expiring candidates, further rounds) is logged
    /// ([`crate::common::after_commit`]) and the hand-off answers with what it won.
    async fn handoff_fast(
        &self,
        lease: &Lease,
        output: &Value,
        next: &ClaimNext,
        now: Timestamp,
    ) -> Result<Option<Handoff>> {
        let Some(success) = SuccessParams::new(lease, output, now)? else {
            return Ok(None);
        };
        let expires = now.plus(next.lease_for);
        let want_i64 = i64::try_from(next.limit).unwrap_or(i64::MAX);
        let mut rows = self
            .run(false, || {
                let sql = if next.stage.is_some() {
                    &self.native.handoff_stage
                } else {
                    &self.native.handoff
                };
                let mut q = success
                    .bind(sqlx::query(AssertSqlSafe(sql.clone())))
                    .bind(expires.as_millis())
                    .bind(want_i64)
                    .bind(next.owner.as_str());
                if let Some(stage) = &next.stage {
                    q = q.bind(stage.as_str());
                }
                q.fetch_all(&self.pool)
            })
            .await?
            .into_iter();
        // The completed row comes first (role 0); no row at all when the fast path did not apply.
        let Some(first) = rows.next() else {
            return Ok(None);
        };
        let role: i32 = first.try_get("role").map_err(|e| self.err(&e))?;
        if role != 0 {
            return Err(Error::backend(format!(
                "postgres at {}: handoff.sql claimed without completing",
                self.endpoint
            )));
        }
        // Committed from here on: the success and the leases granted stand.
        let done = self.read_row(&first);
        let claim_rows: Vec<PgRow> = rows.collect();
        let found = claim_rows.len();
        let mut won = Vec::with_capacity(next.limit.min(64));
        let mut error = self
            .take_claimed(claim_rows, next, now, &mut won)
            .await
            .err();
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                // The success is written, but its row does not read back (edited by hand into
                // something the statement still completes). The caller gets the error and so
                // never sees the leases granted with it: release them rather than leave them
                // to expire as dead attempts.
                self.release_unseen(&won, now).await;
                return Err(e);
            }
        };
        if error.is_none() && won.len() < next.limit && found >= next.limit {
            (won, error) = self.claim_rounds(&lease.key.job, next, now, won).await;
        } else {
            self.note_claims(won.len());
        }
        if let Some(e) = error {
            after_commit(BACKEND, "hand-off", &lease.key.job, won.len(), &e);
        }
        Ok(Some(Handoff { done, next: won }))
    }

    /// The one-statement succeed; `None` when the row is not what the fast path assumes.
    async fn succeed_fast<'e, E>(
        &self,
        exec: E,
        lease: &Lease,
        output: &Value,
        now: Timestamp,
    ) -> Result<Option<Task>>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let Some(success) = SuccessParams::new(lease, output, now)? else {
            return Ok(None);
        };
        let row = success
            .bind(sqlx::query(AssertSqlSafe(self.native.succeed.clone())))
            .fetch_optional(exec)
            .await
            .map_err(|e| self.err(&e))?;
        match row {
            Some(row) => Ok(Some(self.read_row(&row)?)),
            None => Ok(None),
        }
    }

    /// Applies the migrations not applied yet, under an advisory lock, in one transaction
    /// (PostgreSQL DDL is transactional: a failed upgrade leaves the schema as it was).
    async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(&e))?;
        sqlx::query(AssertSqlSafe(self.native.lock_migrations.clone()))
            .bind(format!("tasktrack:{}:{}", self.schema, self.prefix))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(&e))?;
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
             CREATE TABLE IF NOT EXISTS {t}schema_version (version integer PRIMARY KEY, name text NOT NULL);",
            schema = self.schema,
            t = self.t
        );
        migrate::apply::<_, sqlx::Postgres>(self, &mut tx, setup, &MIGRATIONS, |sql| {
            render(sql, &self.t, &self.prefix).to_string()
        })
        .await?;
        tx.commit().await.map_err(|e| self.err(&e))
    }
}

/// A worker's output as PostgreSQL stores it: U+0000 replaced with U+FFFD in every string, keys
/// included (`RawTask::replace_nul` does the same for every row the adapter writes). Applied where an output enters the store, so that the one-statement paths
/// and the adapter's write the same value, and return it as stored.
fn storable_output(mut output: Value) -> Value {
    replace_nul_json(&mut output);
    output
}

/// [`storable_output`] for a batch; borrowed when no output holds U+0000 (the usual case).
fn storable_outputs(done: &[(Lease, Value)]) -> Cow<'_, [(Lease, Value)]> {
    if done.iter().any(|(_, output)| json_has_nul(output)) {
        Cow::Owned(
            done.iter()
                .map(|(lease, output)| (lease.clone(), storable_output(output.clone())))
                .collect(),
        )
    } else {
        Cow::Borrowed(done)
    }
}

/// The history record `lifecycle::succeed` appends for a single-step task held by `lease`.
fn success_record(lease: &Lease, now: Timestamp) -> Result<Value> {
    let record = Attempt {
        attempt: lease.attempt,
        stage: None,
        worker: lease.owner.clone(),
        started: lease.acquired_at,
        finished: now,
        outcome: Outcome::Succeeded,
        error: None,
    };
    serde_json::to_value(&record).map_err(Error::backend)
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The parameters `succeed.sql` and `handoff*.sql` share (`$1`–`$10`): the lease's row and
/// fencing token, the output, and the task's new history record.
struct SuccessParams<'a> {
    lease: &'a Lease,
    output: &'a Value,
    now: Timestamp,
    token: i64,
    record: Value,
}

impl<'a> SuccessParams<'a> {
    /// `None` when the token does not fit a `bigint`: the one-statement paths do not apply.
    fn new(lease: &'a Lease, output: &'a Value, now: Timestamp) -> Result<Option<Self>> {
        let Ok(token) = i64::try_from(lease.token) else {
            return Ok(None);
        };
        let record = success_record(lease, now)?;
        Ok(Some(Self {
            lease,
            output,
            now,
            token,
            record,
        }))
    }

    fn bind<'q>(&self, query: PgQuery<'q>) -> PgQuery<'q> {
        let lease = self.lease;
        query
            .bind(lease.key.job.as_str())
            .bind(lease.key.id.as_str())
            .bind(self.token)
            .bind(lease.owner.as_str())
            .bind(i64::from(lease.attempt))
            .bind(Json(self.output))
            .bind(self.now.as_millis())
            .bind(Json(&self.record))
            .bind(lease.acquired_at.as_millis())
            .bind(i32::try_from(HISTORY_LIMIT).unwrap_or(i32::MAX))
    }
}

/// The leases of a batched completion as column arrays, bound to `succeed_many.sql`'s `unnest`.
struct SucceedColumns {
    job: Vec<String>,
    id: Vec<String>,
    token: Vec<i64>,
    owner: Vec<String>,
    attempt: Vec<i64>,
    output: Vec<Json<Value>>,
    record: Vec<Json<Value>>,
    acquired_at: Vec<i64>,
}

impl SucceedColumns {
    /// A lease whose token does not fit a BIGINT cannot match any row; it is left out here and
    /// answered by the general path.
    fn of(done: &[(Lease, Value)], now: Timestamp) -> Result<SucceedColumns> {
        let mut c = SucceedColumns::with_capacity(done.len());
        for (lease, output) in done {
            c.push(lease, output, now)?;
        }
        Ok(c)
    }

    fn with_capacity(n: usize) -> SucceedColumns {
        SucceedColumns {
            job: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            token: Vec::with_capacity(n),
            owner: Vec::with_capacity(n),
            attempt: Vec::with_capacity(n),
            output: Vec::with_capacity(n),
            record: Vec::with_capacity(n),
            acquired_at: Vec::with_capacity(n),
        }
    }

    /// Adds one lease's columns, its history record stamped `now`; `false` (nothing added) for a
    /// token beyond BIGINT.
    fn push(&mut self, lease: &Lease, output: &Value, now: Timestamp) -> Result<bool> {
        let Ok(token) = i64::try_from(lease.token) else {
            return Ok(false);
        };
        self.job.push(lease.key.job.to_string());
        self.id.push(lease.key.id.to_string());
        self.token.push(token);
        self.owner.push(lease.owner.clone());
        self.attempt.push(i64::from(lease.attempt));
        self.output.push(Json(output.clone()));
        self.record.push(Json(success_record(lease, now)?));
        self.acquired_at.push(lease.acquired_at.as_millis());
        Ok(true)
    }
}

store_over_cas! {
    PgStore;
    native {
        async fn claim_next(
            &self,
            job: &JobName,
            req: &ClaimNext,
            now: Timestamp,
        ) -> Result<Vec<Claimed>> {
            cas::check_claim_next(req)?;
            match self.claim_rounds(job, req, now, Vec::new()).await {
                (won, None) => Ok(won),
                // Nothing granted: the error is the call's.
                (won, Some(e)) if won.is_empty() => Err(e),
                // Leases granted by a committed round are the caller's whatever failed after.
                (won, Some(e)) => {
                    after_commit(BACKEND, "claim_next", job, won.len(), &e);
                    Ok(won)
                }
            }
        }
        /// One statement (`handoff.sql`) when the succeed fast path applies; otherwise the general
        /// path (`handoff_general`): `succeed`, then `claim_next`. Either way, once the success is
        /// written an error of the claiming is logged, not returned (`after_commit`).
        async fn succeed_and_claim_next(
            &self,
            lease: &Lease,
            output: Value,
            next: &ClaimNext,
            now: Timestamp,
        ) -> Result<Handoff> {
            cas::check_claim_next(next)?;
            // The statements write the output as given: refuse what could not be read back.
            lifecycle::check_output(lease, &output)?;
            let output = storable_output(output);
            let (output, _slot) = match self.handoff_combined(lease, output, next, now).await? {
                ViaCombiner::Done(handoff) => return Ok(*handoff),
                ViaCombiner::NotCompleted(output) => {
                    return handoff_general(self, lease, output, next, now).await;
                }
                ViaCombiner::NotSent(output, slot) => (output, slot),
            };
            if let Some(handoff) = self.handoff_fast(lease, &output, next, now).await? {
                return Ok(handoff);
            }
            handoff_general(self, lease, output, next, now).await
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            lifecycle::check_output(lease, &output)?;
            let output = storable_output(output);
            match self.succeed_fast(&self.pool, lease, &output, now).await? {
                Some(task) => Ok(task),
                None => cas::succeed(self, lease, output, now).await,
            }
        }
        /// One statement completes every single-step lease that still holds its task; the rest
        /// (stale leases, pipeline stages) take the general path, one by one, exactly as `succeed`.
        async fn succeed_many(
            &self,
            done: &[(Lease, Value)],
            now: Timestamp,
        ) -> Result<Vec<Result<Task>>> {
            cas::succeed_many_checked(done, async |done| {
                let done = storable_outputs(done);
                succeed_many_batched(self, &done, now, async |firsts| {
                    self.succeed_many_fast(firsts, now).await
                })
                .await
            })
            .await
        }
    }
}
