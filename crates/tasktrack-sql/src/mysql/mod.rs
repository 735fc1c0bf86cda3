//! `mysql://` / `mariadb://` — the MySQL / MariaDB backend (MariaDB ≥ 10.6, MySQL 8).
//!
//! # Atomicity
//! - `claim_next` is one short transaction (`READ COMMITTED`) per priority it reads: find the
//!   highest priority with claimable rows (`next_priority.sql`, see `PriorityWalk`), lock its
//!   first due rows `FOR UPDATE SKIP LOCKED` (`queries/mysql/claim_lock.sql`), apply
//!   [`tasktrack_core::lifecycle::claim`] to each in Rust — the pure rule itself, expired leases
//!   included — and write them back with one narrow `UPDATE … JOIN JSON_TABLE(?)` (only the
//!   columns the rules changed; `write_back.rs`). MySQL has no `UPDATE … RETURNING`,
//!   so this is the fewest round trips that return the claimed rows.
//! - Every other operation is "load → pure rule → conditional write"
//!   (`UPDATE … WHERE job = ? AND id = ? AND version = ? AND created_at = ?`), driven by
//!   [`tasktrack_core::cas`]; the
//!   fenced operations (succeed, fail, heartbeat, …) are thereby refused for a stale token.
//! - `succeed_many`: many completions in one transaction (one commit).
//! - `succeed_and_claim_next` (a worker's hand-off): one transaction, one commit, 4 round trips
//!   (`BEGIN`, one locking `SELECT` of the lease's row and the claim candidates,
//!   `queries/mysql/handoff_lock.sql`, one write-back, `COMMIT`), against 6 round trips and 2
//!   commits for `claim_next` + `succeed`. The rules are the pure ones, applied in Rust. When the
//!   success is refused, or a pipeline task moves to a stage the claim must see, nothing is written
//!   and the general path runs: `succeed`, then `claim_next`.
//! - Counts are kept by row triggers in the same transaction as each write.
//! - What a committed transaction did stands: an error of a later one in the same call (another
//!   claim round, the `claim_next` after a hand-off, the claim after a general-path success) is
//!   logged and the call returns the success and the leases granted so far
//!   (`common::after_commit`).
//!
//! # Layout
//! See `migrations/mysql/`: `{prefix}job`, `{prefix}task`, `{prefix}task_count`,
//! `{prefix}schema_version` and the analytics view `{prefix}tasks`, in the URL's database.

mod docs;
mod rows;
mod write_back;

use crate::common::config::Config;
use crate::common::docs::{Queries, dialect_queries};
use crate::common::migrate::{self, Migration};
use crate::common::{
    Dialect, FIELDS, RawTask, Stmt, Written, advanceable, after_commit, claimed, handoff_general,
    map_error, probe, store_over_cas, succeed_many_batched,
};
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, MySql, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::cas;
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::*;
use write_back::WriteBack;

const BACKEND: &str = "mysql";

dialect_queries! {
    /// This dialect's own statements (the shared ones are [`Queries`]), with the table names
    /// filled in once at open.
    Native in "mysql" {
        claim_lock,
        claim_lock_after,
        next_priority,
        handoff_lock,
        lock_keys,
        purge_batch,
        set_aside,
    }
    at_stage {
        claim_lock_stage <- claim_lock,
        claim_lock_after_stage <- claim_lock_after,
        next_priority_stage <- next_priority,
        handoff_lock_stage <- handoff_lock,
    }
}

/// The versioned migrations, applied in order by `init` (`tasktrack init`).
const MIGRATIONS: [Migration; 3] = [
    (
        1,
        "tables",
        include_str!("../../migrations/mysql/0001_tables.sql"),
    ),
    (
        2,
        "long_errors",
        include_str!("../../migrations/mysql/0002_long_errors.sql"),
    ),
    (
        3,
        "claim_order_ascending",
        include_str!("../../migrations/mysql/0003_claim_order_ascending.sql"),
    ),
];

fn render(sql: &str, t: &str) -> Arc<str> {
    sql.replace("{t}", t).into()
}

/// The MySQL / MariaDB store.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
    endpoint: String,
    prefix: String,
    /// MariaDB answers `INSERT IGNORE … RETURNING` (bulk create in one statement); MySQL does not.
    mariadb: bool,
    q: Arc<Queries>,
    native: Arc<Native>,
}

impl MySqlStore {
    /// Connects (one probe connection, so an unreachable server fails here with one line naming
    /// host and port) and builds the pool. Does not create tables: call [`Store::init`].
    pub async fn connect(url: &str) -> Result<MySqlStore> {
        let config = Config::parse(url, 3306)?;
        let endpoint = config.endpoint.clone();
        let options = MySqlConnectOptions::from_str(&config.driver_url)
            .map_err(|e| Error::invalid(format!("bad MySQL URL: {e}")))?
            .disable_statement_logging();
        let mut conn: sqlx::MySqlConnection = probe(BACKEND, &config, &options).await?;
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| map_error(BACKEND, &endpoint, &e).1)?;
        let _ = conn.close().await;
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        // READ COMMITTED: a claim's FOR UPDATE locks the rows it takes, not gaps between them.
        // The statement timeout is MariaDB's max_statement_time (seconds) or MySQL's
        // max_execution_time (milliseconds, SELECT only).
        let timeout = config.statement_timeout;
        let session = if mariadb {
            format!(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION max_statement_time = {}",
                timeout.as_secs_f64()
            )
        } else {
            format!(
                "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION max_execution_time = {}",
                timeout.as_millis()
            )
        };
        let pool = MySqlPoolOptions::new()
            .max_connections(config.pool_size)
            .acquire_timeout(config.connect_timeout)
            .after_connect(move |conn, _meta| {
                let session = session.clone();
                Box::pin(async move {
                    conn.execute(sqlx::raw_sql(AssertSqlSafe(session))).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        let prefix = config.table_prefix;
        Ok(MySqlStore {
            pool,
            endpoint,
            q: Arc::new(Queries::mysql(|sql| render(sql, &prefix))),
            native: Arc::new(Native::load(|sql| render(sql, &prefix))),
            prefix,
            mariadb,
        })
    }

    /// The connection pool (for custom queries against the documented view).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The name of the analytics view (`tasktrack_tasks` by default).
    pub fn view_name(&self) -> String {
        format!("{}tasks", self.prefix)
    }

    /// `INSERT … ON DUPLICATE KEY UPDATE` of whole rows: the write-back of a locked batch when a
    /// written row was not among the locked ones (the rules never do that; kept as the safe path).
    fn upsert_sql(&self) -> String {
        let updates: Vec<String> = FIELDS
            .iter()
            .filter(|c| **c != "job" && **c != "id")
            .map(|c| format!("{c} = VALUES({c})"))
            .collect();
        format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
    }

    /// One transaction: lock rows, apply `rule` to them, write the tasks it returns back in one
    /// statement, commit, and return the rule's answer. `lock` must select whole rows
    /// `FOR UPDATE`. A rule answering `None` rolls back (nothing written) and `None` is returned.
    /// Deadlocks re-run it all.
    ///
    /// Every way out that does not commit rolls back explicitly, before returning: a dropped
    /// sqlx transaction only queues its `ROLLBACK` for the connection's next use (sqlx sends it
    /// from a spawned task when the connection goes back to the pool), and until then its row
    /// locks stay, so the caller's next claim would `SKIP LOCKED` past rows nobody holds.
    async fn locked_batch<R, L, F>(
        &self,
        damaged: DamagedRows,
        lock: L,
        mut rule: F,
    ) -> Result<Option<R>>
    where
        L: Fn() -> sqlx::query::Query<'static, MySql, sqlx::mysql::MySqlArguments>,
        F: FnMut(Vec<Task>, usize) -> Result<Option<(Vec<Task>, R)>>,
        R: Send,
    {
        for attempt in 0..=crate::common::ROLLBACK_RETRIES {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(&e))?;
            let failed = match self
                .lock_rule_write(&mut tx, damaged, &lock, &mut rule)
                .await
            {
                Ok(Some(results)) => match tx.commit().await {
                    Ok(()) => return Ok(Some(results)),
                    Err(e) => Failed::Sql(e),
                },
                Ok(None) => {
                    roll_back(tx).await;
                    return Ok(None);
                }
                Err(failed) => {
                    roll_back(tx).await;
                    failed
                }
            };
            match failed {
                Failed::Sql(e) => match map_error(BACKEND, &self.endpoint, &e) {
                    (crate::common::Class::RolledBack, _)
                        if attempt < crate::common::ROLLBACK_RETRIES =>
                    {
                        continue;
                    }
                    (_, mapped) => return Err(mapped),
                },
                Failed::Other(e) => return Err(e),
            }
        }
        Err(Error::Contention(format!(
            "mysql at {}: too many deadlocks",
            self.endpoint
        )))
    }

    /// The body of one [`locked_batch`](Self::locked_batch) attempt, up to (not including) the
    /// commit: the rule's tasks written and its answer, or `None` when it wrote nothing. The
    /// rule gets the locked rows that decode, and how many that did not were set aside.
    async fn lock_rule_write<R, L, F>(
        &self,
        tx: &mut sqlx::Transaction<'static, MySql>,
        damaged: DamagedRows,
        lock: &L,
        rule: &mut F,
    ) -> std::result::Result<Option<R>, Failed>
    where
        L: Fn() -> sqlx::query::Query<'static, MySql, sqlx::mysql::MySqlArguments>,
        F: FnMut(Vec<Task>, usize) -> Result<Option<(Vec<Task>, R)>>,
    {
        let table = self.table();
        let locked = lock().fetch_all(&mut **tx).await.map_err(Failed::Sql)?;
        let mut old = HashMap::with_capacity(locked.len());
        let mut tasks = Vec::with_capacity(locked.len());
        let mut set_aside = 0;
        for row in &locked {
            // A JSON column whose text does not parse fails the read itself: as damaged as a
            // row that reads but does not decode, or that no rule can write back.
            let read = rows::read_task(row)
                .map_err(|e| self.err(&e))
                .and_then(|raw| Ok((advanceable(&table, raw.clone().into_task(&table)?)?, raw)));
            match read {
                Ok((task, raw)) => {
                    tasks.push(task);
                    old.insert((raw.job.clone(), raw.id.clone()), raw);
                }
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    if damaged == DamagedRows::SetAside {
                        self.set_aside(tx, row, &e).await?;
                        set_aside += 1;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let Some((new, results)) = rule(tasks, set_aside)? else {
            return Ok(None);
        };
        let writes = new
            .iter()
            .map(RawTask::from_task)
            .collect::<Result<Vec<RawTask>>>()?;
        if writes.is_empty() {
            return Ok(Some(results));
        }
        // The narrow UPDATE (write_back.rs); whole rows only if a row was not locked here.
        match write_back::narrow_update(&table, &old, &writes) {
            WriteBack::Narrow { sql, doc, keys } => {
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(doc);
                for (job, id) in keys {
                    q = q.bind(job).bind(id);
                }
                q.execute(&mut **tx).await.map_err(Failed::Sql)?;
            }
            WriteBack::Unchanged => {}
            WriteBack::WholeRows => {
                let mut st = Stmt::build::<Self>(format!(
                    "INSERT INTO {table} ({}) VALUES ",
                    FIELDS.join(", ")
                ));
                st.push_rows(&writes).push(&self.upsert_sql());
                self.query(&st)
                    .execute(&mut **tx)
                    .await
                    .map_err(Failed::Sql)?;
            }
        }
        Ok(Some(results))
    }

    /// Takes a locked row that does not decode (edited by hand) out of the claim index
    /// (`set_aside.sql`), so that it cannot stop the job's claims.
    async fn set_aside(
        &self,
        tx: &mut sqlx::Transaction<'static, MySql>,
        row: &MySqlRow,
        error: &Error,
    ) -> std::result::Result<(), Failed> {
        // As bytes: a name that is not UTF-8 is damage too.
        let job: Vec<u8> = row.try_get("job").map_err(Failed::Sql)?;
        let id: Vec<u8> = row.try_get("id").map_err(Failed::Sql)?;
        let (j, i) = (String::from_utf8_lossy(&job), String::from_utf8_lossy(&id));
        tracing::warn!(
            job = %j,
            id = %i,
            "mysql: claims set aside damaged task {j}/{i}: {error}"
        );
        sqlx::query(AssertSqlSafe(self.native.set_aside.clone()))
            .bind(job)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(Failed::Sql)?;
        Ok(())
    }

    /// Many tasks succeeded in one transaction (one commit): locks the leases' rows by primary
    /// key, applies [`lifecycle::succeed`] to each (pipeline stages included) and writes them
    /// back in one statement. Returns the tasks it wrote, by key; a lease whose rule refused
    /// (stale) is absent. `done` names each task once ([`succeed_many_batched`]).
    async fn succeed_many_locked(
        &self,
        done: &[(Lease, Value)],
        now: Timestamp,
    ) -> Result<Written> {
        let keys = vec!["(?, ?)"; done.len()].join(", ");
        let sql: Arc<str> = self.native.lock_keys.replace("{keys}", &keys).into();
        let by_key: HashMap<TaskKey, (&Lease, &Value)> =
            done.iter().map(|(l, v)| (l.key.clone(), (l, v))).collect();
        let written = self
            .locked_batch(
                // A damaged row's lease takes the general path, which answers `Corrupt` for it
                // alone.
                DamagedRows::Skip,
                || {
                    let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
                    for (lease, _) in done {
                        q = q
                            .bind(lease.key.job.to_string())
                            .bind(lease.key.id.to_string());
                    }
                    q
                },
                |tasks, _| {
                    let done: Vec<Task> = tasks
                        .iter()
                        .filter_map(|task| {
                            let (lease, output) = by_key.get(&task.key())?;
                            lifecycle::succeed(task, lease, (*output).clone(), now).ok()
                        })
                        .collect();
                    Ok(Some((done.clone(), done)))
                },
            )
            .await?
            .unwrap_or_default();
        Ok(written.into_iter().map(|t| (t.key(), Ok(t))).collect())
    }

    /// The hand-off in one transaction: locks the lease's row and the first claimable rows in
    /// one statement (`handoff_lock.sql`), applies [`lifecycle::succeed`] to the first and
    /// [`lifecycle::claim`] to the others ([`claim_rule`], exactly as `claim_next`), writes them
    /// back in one statement and commits: four round trips (begin, lock, write, commit) and one
    /// commit. `None` (nothing written) when the success is refused, the lease's row is gone, or
    /// the completed task is claimable again (a pipeline stage); the caller then takes the
    /// general path, which answers exactly as `succeed` and `claim_next`. When every locked
    /// candidate was refused or exhausted, `claim_next` goes on in further transactions.
    async fn handoff_locked(
        &self,
        lease: &Lease,
        output: &Value,
        next: &ClaimNext,
        now: Timestamp,
    ) -> Result<Option<Handoff>> {
        let one = Claim::new(next.owner.clone(), next.lease_for);
        let want = i64::try_from(next.limit).unwrap_or(i64::MAX);
        let (job, id) = (lease.key.job.to_string(), lease.key.id.to_string());
        let sql = if next.stage.is_some() {
            self.native.handoff_lock_stage.clone()
        } else {
            self.native.handoff_lock.clone()
        };
        let got = self
            .locked_batch(
                // A damaged candidate is set aside. The lease's own row damaged is missing
                // below: nothing is written, and the general path answers `Corrupt`.
                DamagedRows::SetAside,
                || {
                    let mut q = sqlx::query(AssertSqlSafe(sql.clone()))
                        .bind(job.clone())
                        .bind(id.clone())
                        .bind(job.clone());
                    if let Some(stage) = &next.stage {
                        q = q.bind(stage.clone());
                    }
                    q.bind(now.as_millis()).bind(want)
                },
                |mut tasks, set_aside| {
                    let Some(at) = tasks.iter().position(|t| t.key() == lease.key) else {
                        return Ok(None);
                    };
                    let mine = tasks.remove(at);
                    let Ok(done) = lifecycle::succeed(&mine, lease, output.clone(), now) else {
                        return Ok(None);
                    };
                    if done.claimable_at().is_some() {
                        return Ok(None);
                    }
                    // The candidates as the claim part returned them: the lease's own row again,
                    // if its lease expired (it counts towards the LIMIT, so towards `seen`).
                    let seen = tasks.len() + set_aside;
                    tasks.retain(|t| t.key() != lease.key);
                    let (mut writes, claimed) = claim_rule(tasks, &one, now)?;
                    writes.push(done.clone());
                    Ok(Some((writes, (done, claimed, seen))))
                },
            )
            .await?;
        let Some((done, won, seen)) = got else {
            return Ok(None);
        };
        // Committed: the success and the leases granted stand. Claiming more is follow-up work
        // whose error is not the hand-off's (`after_commit`).
        let mut won = leases_of(won, &lease.key.job);
        if won.len() < next.limit && seen >= next.limit {
            let rest = ClaimNext {
                limit: next.limit - won.len(),
                ..next.clone()
            };
            match self.claim_next(&lease.key.job, &rest, now).await {
                Ok(more) => won.extend(more),
                Err(e) => after_commit(BACKEND, "hand-off", &lease.key.job, won.len(), &e),
            }
        }
        Ok(Some(Handoff { done, next: won }))
    }

    /// Applies the migrations not applied yet, under a named lock (`GET_LOCK`) so that workers
    /// starting together do not race. MySQL DDL is not transactional: each migration is written
    /// to be re-runnable (`IF NOT EXISTS`, `DROP … IF EXISTS`), so an interrupted upgrade can be
    /// run again.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(&e))?;
        let lock = format!("tasktrack:{}", self.prefix);
        let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
            .bind(&lock)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| self.err(&e))?;
        if got != Some(1) {
            return Err(Error::Contention(format!(
                "mysql at {}: another init holds the migration lock",
                self.endpoint
            )));
        }
        let result = self.migrate_locked(&mut conn).await;
        let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&lock)
            .execute(&mut *conn)
            .await;
        result
    }

    async fn migrate_locked(&self, conn: &mut sqlx::MySqlConnection) -> Result<()> {
        let setup = format!(
            "CREATE TABLE IF NOT EXISTS {}schema_version (version INT PRIMARY KEY, name VARCHAR(200) NOT NULL)",
            self.prefix
        );
        migrate::apply::<_, MySql>(self, conn, setup, &MIGRATIONS, |sql| {
            render(sql, &self.prefix).to_string()
        })
        .await
    }
}

/// What [`MySqlStore::locked_batch`] does with a locked row that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DamagedRows {
    /// Leaves it out of the rule's tasks.
    Skip,
    /// Leaves it out and takes it out of the claim index (`set_aside.sql`), so that a claim
    /// goes on with the other candidates instead of failing on it at every call.
    SetAside,
}

/// Why an attempt of [`MySqlStore::locked_batch`] did not commit: a database error (which may
/// be a deadlock worth running again) or the store's own refusal.
enum Failed {
    Sql(sqlx::Error),
    Other(Error),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Failed::Other(e)
    }
}

/// Rolls `tx` back now (see [`MySqlStore::locked_batch`] for why not on drop). If that fails,
/// the dropped transaction queues the rollback again, and the pool sends it, or closes the
/// connection (which also ends the transaction), on the connection's way back.
async fn roll_back(tx: sqlx::Transaction<'static, MySql>) {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "mysql: rollback failed; the pool retries it or closes the connection");
    }
}

/// The leases of claims a committed transaction granted, each re-derived from the task as
/// written ([`claimed`]) so that both dialects hand out leases the same way. A task without a
/// lease cannot come out of [`lifecycle::claim`]; were one to, it is logged and left out (its
/// lease expires), not made the call's error, since the others are granted.
fn leases_of(won: Vec<Claimed>, job: &JobName) -> Vec<Claimed> {
    won.into_iter()
        .filter_map(|c| match claimed(c.task) {
            Ok(c) => Some(c),
            Err(e) => {
                after_commit(BACKEND, "claim", job, 0, &e);
                None
            }
        })
        .collect()
}

/// The claim rule itself ([`lifecycle::claim`]) over locked candidate rows, taken in claim
/// order (priority, then claimable since, then id: the order of `claim_lock.sql`): grants
/// pending/failed rows, records an expired lease as a dead attempt or exhausts the task. Returns
/// the rows to write back and the claims granted.
fn claim_rule(
    mut tasks: Vec<Task>,
    one: &Claim,
    now: Timestamp,
) -> Result<(Vec<Task>, Vec<Claimed>)> {
    tasks.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.claimable_at().cmp(&b.claimable_at()))
            .then_with(|| a.id.as_str().as_bytes().cmp(b.id.as_str().as_bytes()))
    });
    let mut writes = Vec::with_capacity(tasks.len() + 1);
    let mut won = Vec::with_capacity(tasks.len());
    for task in &tasks {
        match lifecycle::claim(task, one, now)? {
            ClaimDecision::Granted(c) => {
                writes.push(c.task.clone());
                won.push(c);
            }
            ClaimDecision::Exhausted(t) => writes.push(t),
            // Listed as claimable by the index, refused by the rule: the row was edited by hand
            // (say, marked succeeded with its claim_at left). Writing it back as it is re-indexes
            // it, so that it stops taking the head of every claim.
            ClaimDecision::Refused(_) => writes.push(task.clone()),
        }
    }
    Ok((writes, won))
}

/// Priorities `claim_next` seeks one by one before it scans the rest in one ordered scan
/// (`claim_lock_after.sql`), so that a job of many distinct priorities costs one scan, not one
/// transaction per priority.
const PRIORITY_SEEKS: usize = 8;

/// Where `claim_next` is in its walk of the claim index, priority by priority: within one
/// priority the index is in claim_at order, so a claim reads the due rows and stops at the first
/// one not due (`claim_lock.sql`), instead of stepping over every waiting row of the job.
#[derive(Debug)]
struct PriorityWalk {
    /// The `neg_priority` (-priority) of the last priority read through.
    after: i64,
    /// Priorities read through so far.
    seeks: usize,
}

impl Default for PriorityWalk {
    fn default() -> Self {
        PriorityWalk {
            after: i64::MIN,
            seeks: 0,
        }
    }
}

impl PriorityWalk {
    /// After a round that read fewer rows than it wanted at `level`: moves past that priority;
    /// false when there is nothing further (the ordered scan of the rest ran dry).
    fn passed(&mut self, level: Level) -> bool {
        match level {
            Level::At(neg_priority) => {
                self.after = neg_priority;
                self.seeks += 1;
                true
            }
            Level::After(_) => false,
        }
    }
}

/// What one round of `claim_next` locks.
#[derive(Debug, Clone, Copy)]
enum Level {
    /// The due rows of this `neg_priority` (`claim_lock.sql`).
    At(i64),
    /// The due rows of every `neg_priority` above this one, in claim order
    /// (`claim_lock_after.sql`).
    After(i64),
}

impl MySqlStore {
    /// The next [`Level`] of the walk; `None` when the job has no claimable row left below it.
    async fn next_level(
        &self,
        job: &JobName,
        req: &ClaimNext,
        walk: &PriorityWalk,
    ) -> Result<Option<Level>> {
        if walk.seeks >= PRIORITY_SEEKS {
            return Ok(Some(Level::After(walk.after)));
        }
        let sql = match req.stage {
            Some(_) => self.native.next_priority_stage.clone(),
            None => self.native.next_priority.clone(),
        };
        let mut q = sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql)).bind(job.as_str());
        if let Some(stage) = &req.stage {
            q = q.bind(stage.as_str());
        }
        let next = q
            .bind(walk.after)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(&e))?;
        Ok(next.map(Level::At))
    }

    /// The locking read of one round of `claim_next` at `level`, up to `want` rows.
    fn claim_lock_query(
        &self,
        job: &JobName,
        req: &ClaimNext,
        level: Level,
        now: Timestamp,
        want: usize,
    ) -> sqlx::query::Query<'static, MySql, sqlx::mysql::MySqlArguments> {
        let n = &self.native;
        let (sql, bound) = match (level, req.stage.is_some()) {
            (Level::At(p), false) => (n.claim_lock.clone(), p),
            (Level::At(p), true) => (n.claim_lock_stage.clone(), p),
            (Level::After(p), false) => (n.claim_lock_after.clone(), p),
            (Level::After(p), true) => (n.claim_lock_after_stage.clone(), p),
        };
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(job.to_string());
        if let Some(stage) = &req.stage {
            q = q.bind(stage.clone());
        }
        q.bind(bound)
            .bind(now.as_millis())
            .bind(i64::try_from(want).unwrap_or(i64::MAX))
    }
}

store_over_cas! {
    MySqlStore;
    native {
        async fn claim_next(
            &self,
            job: &JobName,
            req: &ClaimNext,
            now: Timestamp,
        ) -> Result<Vec<Claimed>> {
            cas::check_claim_next(req)?;
            let one = Claim::new(req.owner.clone(), req.lease_for);
            let mut won: Vec<Claimed> = Vec::new();
            let mut walk = PriorityWalk::default();
            for _round in 0..cas::MAX_CAS_ATTEMPTS {
                let want = req.limit - won.len();
                let round = async {
                    let Some(level) = self.next_level(job, req, &walk).await? else {
                        return Ok(None);
                    };
                    let got = self
                        .locked_batch(
                            DamagedRows::SetAside,
                            || self.claim_lock_query(job, req, level, now, want),
                            |tasks, set_aside| {
                                let seen = tasks.len() + set_aside;
                                let (writes, got) = claim_rule(tasks, &one, now)?;
                                Ok(Some((writes, (got, seen))))
                            },
                        )
                        .await?;
                    Ok(got.map(|(got, seen)| (got, seen, level)))
                };
                let (got, seen, level) = match round.await {
                    Ok(Some(got)) => got,
                    // Nothing claimable left.
                    Ok(None) => break,
                    // Nothing granted: the error is the call's.
                    Err(e) if won.is_empty() => return Err(e),
                    // The leases of the rounds committed before are the caller's whatever
                    // failed after them.
                    Err(e) => {
                        after_commit(BACKEND, "claim_next", job, won.len(), &e);
                        break;
                    }
                };
                won.extend(got);
                if won.len() >= req.limit {
                    break;
                }
                if seen < want && !walk.passed(level) {
                    break;
                }
            }
            won.truncate(req.limit);
            Ok(leases_of(won, job))
        }
        /// One transaction, one commit (`handoff_lock.sql`, then `MySqlStore::handoff_locked`);
        /// the general path (`succeed`, then `claim_next`) when the lease's row is not completed
        /// there (refused, or a pipeline task moved to its next stage, which the claim must see).
        async fn succeed_and_claim_next(
            &self,
            lease: &Lease,
            output: Value,
            next: &ClaimNext,
            now: Timestamp,
        ) -> Result<Handoff> {
            cas::check_claim_next(next)?;
            // Refused before any row is locked, as `succeed` refuses it.
            lifecycle::check_output(lease, &output)?;
            if let Some(handoff) = self.handoff_locked(lease, &output, next, now).await? {
                return Ok(handoff);
            }
            handoff_general(self, lease, output, next, now).await
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            cas::succeed(self, lease, output, now).await
        }
        /// One transaction completes every lease that still holds its task; a refused one takes the
        /// general path, so it is answered exactly as `succeed` would answer it.
        async fn succeed_many(
            &self,
            done: &[(Lease, Value)],
            now: Timestamp,
        ) -> Result<Vec<Result<Task>>> {
            cas::succeed_many_checked(done, async |done| {
                succeed_many_batched(self, done, now, async |firsts| {
                    self.succeed_many_locked(firsts, now).await
                })
                .await
            })
            .await
        }
    }
}
