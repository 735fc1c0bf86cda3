//! The lifecycle operations: each one `BEGIN IMMEDIATE` transaction that loads the row(s),
//! applies the pure rule from [`tasktrack_core::lifecycle`] in Rust, and writes the row(s) back.
//!
//! SQLite runs in this process, so a round trip costs nothing and the write lock makes
//! load-apply-write atomic: no rule is restated in SQL except where noted (bulk deletes), each
//! next to the rule it restates.

use crate::db::Db;
use crate::rows::{
    CountMoves, TASK_COLUMNS, ensure_job, insert_task, load_job, load_task, task_from_row,
    update_one, update_task,
};
use rusqlite::types::ValueRef;
use rusqlite::{Transaction, params};
use serde_json::Value;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tasktrack_core::cas::{Step, check_claim_next};
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::*;

/// Rows per transaction for bulk writes (create, purge, delete_job): long enough to amortise a
/// commit, short enough that other processes' writers wait milliseconds, not seconds.
const CHUNK: usize = 1_000;

/// Loads `key`, applies `rule`, writes what it decides; all in one transaction.
pub(crate) async fn update<R, F>(db: &Arc<Db>, key: &TaskKey, rule: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&Task) -> Step<R> + Send + 'static,
{
    let key = key.clone();
    db.write(move |db, tx| {
        let Some(task) = load_task(db, tx, &key)? else {
            return Ok(Err(Error::NotFound(format!("task {key}"))));
        };
        Ok(match rule(&task) {
            Step::Keep(result) => result,
            Step::Write(new, result) => {
                update_one(db, tx, &task, &new)?;
                result
            }
        })
    })
    .await?
}

/// Like [`update`] for the lease holder's operations: a task that vanished under its lease is
/// [`Error::StaleLease`] (as [`lifecycle::check_fence`] would say of a changed task).
pub(crate) async fn fenced<F>(db: &Arc<Db>, lease: &Lease, rule: F) -> Result<Task>
where
    F: FnOnce(&Task) -> Result<Task> + Send + 'static,
{
    match update(db, &lease.key, move |t| Step::from_rule(rule(t))).await {
        Err(Error::NotFound(_)) => Err(Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        }),
        other => other,
    }
}

/// [`Store::succeed_many`]: every completion in one write operation, so a batch shares one
/// commit; each entry is [`lifecycle::succeed`] on its own row and answered on its own (a stale
/// lease writes nothing and does not spoil the others, nor does a row that does not decode,
/// whose lease alone answers `Corrupt`). A SQLite error rolls the whole batch back and is the
/// outer `Err`.
pub(crate) async fn succeed_many(
    db: &Arc<Db>,
    done: &[(Lease, Value)],
    now: Timestamp,
) -> Result<Vec<Result<Task>>> {
    // An output `succeed` refuses is answered first, whatever its task's state.
    tasktrack_core::cas::succeed_many_checked(done, async |done| {
        succeed_many_checked_in(db, done, now).await
    })
    .await
}

/// [`succeed_many`] once the outputs are checked.
async fn succeed_many_checked_in(
    db: &Arc<Db>,
    done: &[(Lease, Value)],
    now: Timestamp,
) -> Result<Vec<Result<Task>>> {
    let done = done.to_vec();
    db.write(move |db, tx| {
        let mut out = Vec::with_capacity(done.len());
        let mut moves = CountMoves::default();
        for (lease, output) in done {
            let task = match load_task(db, tx, &lease.key) {
                Ok(Some(task)) => task,
                Ok(None) => {
                    out.push(Err(Error::StaleLease {
                        key: lease.key.to_string(),
                        token: lease.token,
                    }));
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    out.push(Err(e));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let result = lifecycle::succeed(&task, &lease, output, now);
            if let Ok(new) = &result {
                update_task(db, tx, &task, new, &mut moves)?;
            }
            out.push(result);
        }
        moves.write(db, tx)?;
        Ok(out)
    })
    .await
}

/// [`Store::create`]: the job record is created if missing, then the tasks are inserted
/// [`CHUNK`] at a time, each chunk one transaction; every task is checked first, so that a
/// refused batch writes nothing.
pub(crate) async fn create(
    db: &Arc<Db>,
    job: &JobName,
    tasks: &[NewTask],
    mode: CreateMode,
    now: Timestamp,
) -> Result<Created> {
    for new in tasks {
        lifecycle::check_new_task(job, new)?;
    }
    let mut total = Created::default();
    for chunk in tasks.chunks(CHUNK) {
        let (job, chunk) = (job.clone(), chunk.to_vec());
        let created = db
            .write(move |db, tx| {
                let record = ensure_job(db, tx, &job, now)?;
                let mut created = Created::default();
                let mut moves = CountMoves::default();
                for new in &chunk {
                    let task = lifecycle::create_task(&record, new, now)?;
                    if insert_task(db, tx, &task)? {
                        created.created += 1;
                    } else if mode == CreateMode::Replace {
                        let Some(old) = load_task(db, tx, &task.key())? else {
                            continue;
                        };
                        let replaced = lifecycle::replace_task(&old, &record, new, now)?;
                        update_task(db, tx, &old, &replaced, &mut moves)?;
                        created.replaced += 1;
                    } else {
                        created.existing += 1;
                    }
                }
                moves.write(db, tx)?;
                Ok(created)
            })
            .await?;
        total.created += created.created;
        total.existing += created.existing;
        total.replaced += created.replaced;
    }
    Ok(total)
}

/// Applies [`lifecycle::claim`] to one loaded task: what to write and what to answer.
fn decide_claim(task: &Task, req: &Claim, now: Timestamp) -> Result<Step<Claimed>> {
    let key = task.key().to_string();
    Ok(match lifecycle::claim(task, req, now)? {
        ClaimDecision::Granted(c) => Step::Write(c.task.clone(), Ok(c)),
        ClaimDecision::Refused(reason) => Step::Keep(Err(Error::Refused { key, reason })),
        // The previous holder's lease expired on its last attempt: write `exhausted`, then say so.
        ClaimDecision::Exhausted(t) => Step::Write(
            t,
            Err(Error::Refused {
                key,
                reason: Refusal::Exhausted,
            }),
        ),
    })
}

/// [`Store::claim`].
pub(crate) async fn claim(
    db: &Arc<Db>,
    key: &TaskKey,
    req: &Claim,
    now: Timestamp,
) -> Result<Claimed> {
    let req = req.clone();
    update(db, key, move |task| match decide_claim(task, &req, now) {
        Ok(step) => step,
        Err(e) => Step::Keep(Err(e)),
    })
    .await
}

/// Claim candidates come from the partial index that holds only claimable tasks, in claim order
/// `(priority DESC, claimable_at, id)`; `claimable_at <= now` is [`Task::is_claimable`].
///
/// Within one priority the index is in `claimable_at` order, so the due tasks come first and a
/// range stops at the first one not due. Across priorities it cannot: one ordered scan would
/// walk every task waiting for a `not_before`, a backoff or a lease's expiry before it reached
/// the next priority, and an idle claim walked all of them, under the write lock. So a claim
/// walks priority by priority: one seek for the next priority present ([`NEXT_PRIORITY`]), one
/// range for its due tasks ([`DUE_AT`]). After [`PRIORITY_SEEKS`] priorities it scans the rest
/// in one ordered scan ([`DUE_BELOW`]), so a job of many distinct priorities costs no more than
/// that scan.
const PRIORITY_SEEKS: usize = 8;

/// The highest priority among the job's claimable tasks, due or not: `[any, below ?2]`.
const NEXT_PRIORITY: [&str; 2] = [
    "SELECT priority FROM tasktrack_task INDEXED BY tasktrack_task_claim \
     WHERE job = ?1 AND claimable_at IS NOT NULL ORDER BY priority DESC LIMIT 1",
    "SELECT priority FROM tasktrack_task INDEXED BY tasktrack_task_claim \
     WHERE job = ?1 AND claimable_at IS NOT NULL AND priority < ?2 ORDER BY priority DESC LIMIT 1",
];

/// The due tasks of priority `?2` in claim order, up to `?4`: `[any stage, stage ?5]`.
static DUE_AT: LazyLock<[String; 2]> = LazyLock::new(|| due("priority = ?2", "claimable_at, id"));
/// The due tasks below priority `?2`.
static DUE_BELOW: LazyLock<[String; 2]> =
    LazyLock::new(|| due("priority < ?2", "priority DESC, claimable_at, id"));
/// The due tasks of any priority (`?2` is NULL): for a stored priority that is not a number.
static DUE_ANY: LazyLock<[String; 2]> =
    LazyLock::new(|| due("?2 IS NULL", "priority DESC, claimable_at, id"));

fn due(priority: &str, order: &str) -> [String; 2] {
    let base = format!(
        "SELECT {TASK_COLUMNS} FROM tasktrack_task INDEXED BY tasktrack_task_claim \
         WHERE job = ?1 AND {priority} AND claimable_at IS NOT NULL AND claimable_at <= ?3"
    );
    [
        format!("{base} ORDER BY {order} LIMIT ?4"),
        format!("{base} AND stage = ?5 ORDER BY {order} LIMIT ?4"),
    ]
}

/// Takes a damaged row out of the claim index (see [`set_aside`]). The id is bound as the bytes
/// stored, cast back to text: a hand edit may have left bytes that are not UTF-8.
const SET_ASIDE: &str =
    "UPDATE tasktrack_task SET claimable_at = NULL WHERE job = ?1 AND id = CAST(?2 AS TEXT)";

/// [`Store::claim_next`]: one transaction selects candidates from the claim index and applies
/// [`lifecycle::claim`] to each. Under the write lock nobody else can take them meanwhile; a
/// candidate whose expired lease was its last attempt becomes `exhausted` and the next one is
/// tried.
pub(crate) async fn claim_next(
    db: &Arc<Db>,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    check_claim_next(req)?;
    let (job, req) = (job.clone(), req.clone());
    db.write(move |db, tx| {
        let mut moves = CountMoves::default();
        let won = claim_next_in(db, tx, &job, &req, now, &mut moves)?;
        moves.write(db, tx)?;
        Ok(won)
    })
    .await
}

/// [`Store::succeed_and_claim_next`]: [`lifecycle::succeed`] and then [`claim_next`]'s claims in
/// one transaction, so a worker that loops on it commits once per task instead of twice. A
/// refused success writes nothing and claims nothing.
pub(crate) async fn succeed_and_claim_next(
    db: &Arc<Db>,
    lease: &Lease,
    output: Value,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Handoff> {
    check_claim_next(req)?;
    // Before any lock: refused whatever the task's state, as `succeed` refuses it.
    lifecycle::check_output(lease, &output)?;
    let (lease, req) = (lease.clone(), req.clone());
    db.write(move |db, tx| {
        let Some(task) = load_task(db, tx, &lease.key)? else {
            return Ok(Err(Error::StaleLease {
                key: lease.key.to_string(),
                token: lease.token,
            }));
        };
        let done = match lifecycle::succeed(&task, &lease, output, now) {
            Ok(done) => done,
            Err(e) => return Ok(Err(e)),
        };
        let mut moves = CountMoves::default();
        update_task(db, tx, &task, &done, &mut moves)?;
        let next = claim_next_in(db, tx, &lease.key.job, &req, now, &mut moves)?;
        moves.write(db, tx)?;
        Ok(Ok(Handoff { done, next }))
    })
    .await?
}

/// The claims of [`claim_next`] inside a caller's transaction; the counter moves are added to
/// `moves` for the caller to write.
fn claim_next_in(
    db: &Db,
    tx: &Transaction<'_>,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
    moves: &mut CountMoves,
) -> Result<Vec<Claimed>> {
    let claim = Claim::new(req.owner.clone(), req.lease_for);
    let mut won = Vec::with_capacity(req.limit.min(1_000));
    loop {
        let want = req.limit - won.len();
        let (candidates, read) = candidates(db, tx, job, req.stage.as_deref(), now, want)?;
        // Damaged rows were set aside: a write, and rows of the index all the same.
        let mut wrote = read > candidates.len();
        for task in &candidates {
            match lifecycle::claim(task, &claim, now)? {
                ClaimDecision::Granted(c) => {
                    update_task(db, tx, task, &c.task, moves)?;
                    won.push(c);
                    wrote = true;
                }
                ClaimDecision::Exhausted(t) => {
                    update_task(db, tx, task, &t, moves)?;
                    wrote = true;
                }
                // Listed as claimable by the index, refused by the rule: the row was edited by
                // hand (say, marked succeeded with its claimable_at left). Rewriting it as it is
                // re-indexes it, so that it stops taking the head of every claim.
                ClaimDecision::Refused(_) => {
                    update_task(db, tx, task, task, moves)?;
                    wrote |= task.claimable_at().is_none_or(|at| at > now);
                }
            }
        }
        // Done when the batch is full, the index ran dry, or a round changed nothing (a
        // guard: each refusal above moved its row out of the claimable range).
        if won.len() >= req.limit || read < want || !wrote {
            return Ok(won);
        }
    }
}

/// Up to `limit` due tasks in claim order (see [`PRIORITY_SEEKS`]), and how many rows were read,
/// damaged ones included: those are set aside.
fn candidates(
    db: &Db,
    tx: &Transaction<'_>,
    job: &JobName,
    stage: Option<&str>,
    now: Timestamp,
    limit: usize,
) -> Result<(Vec<Task>, usize)> {
    let mut scan = Scan {
        job,
        stage,
        now,
        limit,
        found: Vec::new(),
        damaged: Vec::new(),
    };
    let mut below = None;
    for _ in 0..PRIORITY_SEEKS {
        match next_priority(db, tx, job, below)? {
            Next::None => return scan.finish(db, tx),
            Next::NotANumber => break,
            Next::Priority(p) => {
                scan.read(db, tx, &DUE_AT, Some(p))?;
                if scan.is_full() {
                    return scan.finish(db, tx);
                }
                below = Some(p);
            }
        }
    }
    // Many priorities, or one that is not a number: one ordered scan of the rest.
    let rest = if below.is_some() {
        &*DUE_BELOW
    } else {
        &*DUE_ANY
    };
    scan.read(db, tx, rest, below)?;
    scan.finish(db, tx)
}

/// What a claim's walk reads next.
enum Next {
    /// The highest priority left.
    Priority(i64),
    /// A stored priority that is not an integer (a hand edit): the walk scans in order from
    /// there, which reads that row and sets it aside.
    NotANumber,
    /// No claimable task left.
    None,
}

fn next_priority(db: &Db, tx: &Transaction<'_>, job: &JobName, below: Option<i64>) -> Result<Next> {
    let mut stmt = tx
        .prepare_cached(NEXT_PRIORITY[usize::from(below.is_some())])
        .map_err(|e| db.err(e))?;
    let mut rows = match below {
        Some(p) => stmt.query(params![job.as_str(), p]),
        None => stmt.query(params![job.as_str()]),
    }
    .map_err(|e| db.err(e))?;
    let Some(row) = rows.next().map_err(|e| db.err(e))? else {
        return Ok(Next::None);
    };
    Ok(match row.get_ref(0).map_err(|e| db.err(e))? {
        ValueRef::Integer(p) => Next::Priority(p),
        _ => Next::NotANumber,
    })
}

/// A claim's walk of the index: the tasks found so far, and the damaged rows (raw id, error).
struct Scan<'a> {
    job: &'a JobName,
    stage: Option<&'a str>,
    now: Timestamp,
    limit: usize,
    found: Vec<Task>,
    damaged: Vec<(Vec<u8>, Error)>,
}

impl Scan<'_> {
    /// Sets the damaged rows aside; the tasks found and how many rows were read.
    fn finish(self, db: &Db, tx: &Transaction<'_>) -> Result<(Vec<Task>, usize)> {
        let read = self.found.len() + self.damaged.len();
        for (id, error) in &self.damaged {
            set_aside(db, tx, self.job, id, error)?;
        }
        Ok((self.found, read))
    }

    fn is_full(&self) -> bool {
        self.found.len() + self.damaged.len() >= self.limit
    }

    /// Reads the rows of one of the `DUE_*` statements, up to what the walk still wants.
    fn read(
        &mut self,
        db: &Db,
        tx: &Transaction<'_>,
        sql: &[String; 2],
        priority: Option<i64>,
    ) -> Result<()> {
        let want = self.limit - self.found.len() - self.damaged.len();
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        let (job, now) = (self.job.as_str(), self.now.as_millis());
        let mut stmt = tx
            .prepare_cached(&sql[usize::from(self.stage.is_some())])
            .map_err(|e| db.err(e))?;
        let mut rows = match self.stage {
            Some(s) => stmt.query(params![job, priority, now, want, s]),
            None => stmt.query(params![job, priority, now, want]),
        }
        .map_err(|e| db.err(e))?;
        while let Some(row) = rows.next().map_err(|e| db.err(e))? {
            match task_from_row(db, row).and_then(|task| advanceable(db, task)) {
                Ok(task) => self.found.push(task),
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    let id = row.get_ref(1).map_err(|e| db.err(e))?;
                    let id = id.as_bytes().map_err(|e| db.err(e.into()))?.to_vec();
                    self.damaged.push((id, e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// `task`, unless a claim cannot write it: its token or version at SQLite's largest integer
/// (only a hand edit puts it there), which a claim advances. That row is as damaged as one that
/// does not decode (`Corrupt`, set aside), rather than a failure of every claim of its job.
fn advanceable(db: &Db, task: Task) -> Result<Task> {
    if !lifecycle::claim_can_advance(&task, i64::MAX.unsigned_abs()) {
        return Err(Error::corrupt(
            format!("{} (task {})", db.location(), task.key()),
            "token or version at the largest integer: a claim cannot advance it",
        ));
    }
    Ok(task)
}

/// Takes a row that does not decode (edited by hand) out of the claim index, so that it cannot
/// stop the job's claims: only `claimable_at` is cleared, so its status and counts stay and
/// `get` still reports it as corrupt. Repaired by hand, a write of it through the store
/// (`tasktrack retry`) sets `claimable_at` again.
fn set_aside(db: &Db, tx: &Transaction<'_>, job: &JobName, id: &[u8], error: &Error) -> Result<()> {
    let shown = String::from_utf8_lossy(id);
    tracing::warn!(%job, id = %shown, "sqlite: claims set aside damaged task {job}/{shown}: {error}");
    tx.prepare_cached(SET_ASIDE)
        .and_then(|mut stmt| stmt.execute(params![job.as_str(), id]))
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// [`Store::heartbeat`].
pub(crate) async fn heartbeat(
    db: &Arc<Db>,
    lease: &Lease,
    lease_for: Duration,
    now: Timestamp,
) -> Result<Lease> {
    let l = lease.clone();
    let renewed = update(db, &lease.key, move |task| {
        match lifecycle::heartbeat(task, &l, lease_for, now) {
            Ok((t, renewed)) => Step::Write(t, Ok(renewed)),
            Err(e) => Step::Keep(Err(e)),
        }
    })
    .await;
    match renewed {
        Err(Error::NotFound(_)) => Err(Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        }),
        other => other,
    }
}

/// [`Store::report`]: creates the task (and job) if needed, then [`lifecycle::report`].
pub(crate) async fn report(
    db: &Arc<Db>,
    key: &TaskKey,
    req: &Report,
    now: Timestamp,
) -> Result<Task> {
    let (key, req) = (key.clone(), req.clone());
    db.write(move |db, tx| match load_task(db, tx, &key)? {
        Some(existing) => {
            let job = load_job(db, tx, &key.job)?.unwrap_or_else(|| Job::new(key.job.clone(), now));
            let new = lifecycle::report(Some(&existing), &job, &key, &req, now)?;
            if new != existing {
                update_one(db, tx, &existing, &new)?;
            }
            Ok(new)
        }
        None => {
            let job = ensure_job(db, tx, &key.job, now)?;
            let new = lifecycle::report(None, &job, &key, &req, now)?;
            insert_task(db, tx, &new)?;
            Ok(new)
        }
    })
    .await
}

/// [`Store::delete`]: [`lifecycle::check_delete`], then the row goes.
pub(crate) async fn delete(db: &Arc<Db>, key: &TaskKey, now: Timestamp) -> Result<()> {
    let key = key.clone();
    db.write(move |db, tx| {
        let mut recount = false;
        match load_task(db, tx, &key) {
            Ok(Some(task)) => lifecycle::check_delete(&task, now)?,
            Ok(None) => return Err(Error::NotFound(format!("task {key}"))),
            // A row nobody can read holds no lease anyone could honour: it goes as it is, and
            // the delete trigger moves its counter by its status column, unless that column
            // itself was edited into a status nobody knows.
            Err(Error::Corrupt { .. }) => {
                recount = !status_reads(db, tx, &key)?;
                if recount {
                    tracing::warn!(%key, "sqlite: recounting job {} after deleting {key}, whose status was edited by hand", key.job);
                }
            }
            Err(e) => return Err(e),
        }
        tx.execute(
            "DELETE FROM tasktrack_task WHERE job = ?1 AND id = ?2",
            [key.job.as_str(), key.id.as_str()],
        )
        .map_err(|e| db.err(e))?;
        if recount {
            recount_job(db, tx, &key.job)?;
        }
        Ok(())
    })
    .await
}

/// Whether the `status` column of `key`'s row names a status.
fn status_reads(db: &Db, tx: &Transaction<'_>, key: &TaskKey) -> Result<bool> {
    let status: String = tx
        .query_row(
            "SELECT status FROM tasktrack_task WHERE job = ?1 AND id = ?2",
            [key.job.as_str(), key.id.as_str()],
            |r| r.get(0),
        )
        .map_err(|e| db.err(e))?;
    Ok(status.parse::<Status>().is_ok())
}

/// Rebuilds `job`'s counter rows from its task rows: a scan of the job, for where the counters
/// cannot follow a change (a row whose status was edited by hand is deleted: the counters
/// still count it under the status the store last wrote, which the row no longer says). Rows
/// whose status nobody knows are then counted as unreadable.
fn recount_job(db: &Db, tx: &Transaction<'_>, job: &JobName) -> Result<()> {
    tx.execute("DELETE FROM tasktrack_count WHERE job = ?1", [job.as_str()])
        .and_then(|_| {
            tx.execute(
                "INSERT INTO tasktrack_count (job, stage, status, n) \
                 SELECT job, coalesce(stage, ''), status, count(*) FROM tasktrack_task \
                 WHERE job = ?1 GROUP BY coalesce(stage, ''), status",
                [job.as_str()],
            )
        })
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// [`Store::purge`]: terminal tasks only ([`Purge::validate`]); a terminal task never holds a
/// lease, so deleting them in bulk cannot take work from a worker.
pub(crate) async fn purge(db: &Arc<Db>, req: &Purge) -> Result<u64> {
    req.validate()?;
    let jobs: Vec<JobName> = match &req.job {
        Some(j) => vec![j.clone()],
        None => crate::queries::job_names(db).await?,
    };
    let statuses: Vec<&'static str> = req.statuses.iter().map(|s| s.as_str()).collect();
    let status_list = statuses
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "DELETE FROM tasktrack_task WHERE rowid IN (SELECT rowid FROM tasktrack_task \
         WHERE job = ?1 AND status IN ({status_list}) AND updated_at < ?2 LIMIT {CHUNK})"
    );
    let mut purged = 0u64;
    for job in jobs {
        loop {
            let (sql, job, before) = (sql.clone(), job.clone(), req.older_than.as_millis());
            let n = db
                .write(move |db, tx| {
                    tx.execute(&sql, params![job.as_str(), before])
                        .map_err(|e| db.err(e))
                })
                .await?;
            purged += n as u64;
            if n < CHUNK {
                break;
            }
        }
    }
    Ok(purged)
}

/// [`Store::delete_job`]: deletes the job's tasks [`CHUNK`] at a time, except those held by a
/// live lease, then the job record if nothing was kept.
pub(crate) async fn delete_job(db: &Arc<Db>, job: &JobName, now: Timestamp) -> Result<Deleted> {
    // Restates Task::has_live_lease (used by lifecycle::check_delete): in_progress with
    // now < lease_expires_at.
    const UNLEASED: &str =
        "job = ?1 AND NOT (status = 'in_progress' AND coalesce(lease_expires_at, 0) > ?2)";
    let mut deleted = Deleted::default();
    let mut seen_any = false;
    loop {
        let job = job.clone();
        let sql = format!(
            "DELETE FROM tasktrack_task WHERE rowid IN (SELECT rowid FROM tasktrack_task WHERE {UNLEASED} LIMIT {CHUNK})"
        );
        let n = db
            .write(move |db, tx| {
                tx.execute(&sql, params![job.as_str(), now.as_millis()])
                    .map_err(|e| db.err(e))
            })
            .await?;
        deleted.tasks += n as u64;
        seen_any |= n > 0;
        if n < CHUNK {
            break;
        }
    }
    let name = job.clone();
    let (kept, removed, exists) = db
        .write(move |db, tx| {
            let kept: i64 = tx
                .query_row(
                    "SELECT count(*) FROM tasktrack_task WHERE job = ?1",
                    [name.as_str()],
                    |r| r.get(0),
                )
                .map_err(|e| db.err(e))?;
            let exists = load_job(db, tx, &name)?.is_some();
            let mut removed = false;
            if kept == 0 {
                removed = tx
                    .execute("DELETE FROM tasktrack_job WHERE name = ?1", [name.as_str()])
                    .map_err(|e| db.err(e))?
                    > 0;
                tx.execute(
                    "DELETE FROM tasktrack_count WHERE job = ?1",
                    [name.as_str()],
                )
                .map_err(|e| db.err(e))?;
            } else {
                // The delete trigger moved each deleted row's counter by its status column; a
                // row whose status was edited into one nobody knows had none to move. What is
                // left is few rows (those under live leases): recount them.
                recount_job(db, tx, &name)?;
            }
            Ok((kept as u64, removed, exists))
        })
        .await?;
    if !exists && !seen_any && kept == 0 {
        return Err(Error::NotFound(format!("job {job}")));
    }
    deleted.kept_leased = kept;
    deleted.job_removed = removed;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;
    use crate::url::SqliteUrl;
    use rusqlite::StatementStatus;

    /// An idle claim (nothing due) over 3,000 tasks waiting at three priorities seeks each
    /// priority instead of walking the waiting tasks: the virtual machine steps of all its
    /// statements stay below one per waiting task: 118 steps, against 15,016 for the ordered scan
    /// it replaced (`PRIORITY_SEEKS = 0`).
    #[tokio::test]
    async fn an_idle_claim_does_not_walk_the_waiting_tasks() {
        let db = Db::open(SqliteUrl::parse("sqlite://:memory:").unwrap()).unwrap();
        let job = JobName::new("j").unwrap();
        let now = Timestamp::from_millis(1_800_000_000_000);
        let later = now.plus(Duration::from_secs(60));
        let waiting: Vec<NewTask> = (0..3_000)
            .map(|i| NewTask {
                not_before: Some(later),
                ..NewTask::new(TaskId::new(format!("t{i}")).unwrap()).with_priority(i % 3)
            })
            .collect();
        create(&db, &job, &waiting, CreateMode::SkipExisting, now)
            .await
            .unwrap();
        let steps = db
            .write(move |db, tx| {
                let (found, read) = candidates(db, tx, &job, None, now, 1)?;
                assert_eq!((found.len(), read), (0, 0));
                let walk = [
                    NEXT_PRIORITY[0],
                    NEXT_PRIORITY[1],
                    &DUE_AT[0],
                    &DUE_BELOW[0],
                ];
                let mut steps = 0;
                for sql in walk.into_iter().chain([DUE_ANY[0].as_str()]) {
                    let stmt = tx.prepare_cached(sql).map_err(|e| db.err(e))?;
                    steps += stmt.get_status(StatementStatus::VmStep);
                }
                Ok(steps)
            })
            .await
            .unwrap();
        assert!(steps < 3_000, "{steps} steps for an idle claim");
    }
}
