//! What both dialects share: the URL options, the row ⇄ [`Task`] mapping (`rows.rs`), the
//! conditional-write path over a small [`Dialect`] trait (`docs.rs`, `dialect.rs`), and the one
//! place where driver errors become the core's portable [`Error`].

pub mod config;
pub(crate) mod dialect;
pub(crate) mod docs;
pub(crate) mod migrate;
pub(crate) mod rows;

pub(crate) use dialect::{Dialect, Param, Stmt};
pub(crate) use rows::FIELDS;
pub use rows::RawTask;
use rows::to_i64;

use serde_json::Value;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;
use tasktrack_core::cas::{self, Documents, Versioned};
use tasktrack_core::{
    ClaimNext, Claimed, CountRow, Error, Handoff, Job, JobName, Lease, Outcome, Purge, Result,
    Status, Store, Task, TaskKey, Timestamp, lifecycle,
};

/// Writes `impl Store for $store` through [`tasktrack_core::store_impl!`]: the methods given in
/// `native { … }` as written, and what both dialects do the same way — `init` runs the store's
/// migrations, `purge` is [`docs::purge`], and every other operation goes through the
/// compare-and-swap adapter ([`tasktrack_core::cas`]) over the store's [`Documents`] impl; the
/// operations that record what a worker or a person reported (`fail`, `ignore`, `report`)
/// return their task as the dialect stored it ([`Dialect::stored`]). The lists below are the
/// whole of what both dialects leave to the adapter; what each restates natively (claims,
/// batched completion, …) is in its own `native` block.
macro_rules! store_over_cas {
    ($store:ty; native { $($native:tt)* }) => {
        tasktrack_core::store_impl! {
            $store;
            native {
                fn backend(&self) -> &'static str {
                    <$store as $crate::common::Dialect>::BACKEND
                }
                $($native)*
            }
            via self {
                init() -> () => migrate;
                jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
            }
            through crate::common::docs with self {
                purge(req: &Purge) -> u64;
            }
            through_cas self {
                put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
                get_job(job: &JobName) -> Job;
                set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
                delete_job(job: &JobName, now: Timestamp) -> Deleted;
                create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
                claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
                heartbeat(lease: &Lease, lease_for: Duration, now: Timestamp) -> Lease;
                patch_data(lease: &Lease, patch: &Value, now: Timestamp) -> Task;
                release(lease: &Lease, now: Timestamp) -> Task;
                retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
                delete(key: &TaskKey, now: Timestamp) -> ();
                get(key: &TaskKey) -> Task;
                list(query: &TaskQuery) -> TaskPage;
                counts(job: &JobName) -> Counts;
            }
            // What a worker or a person reports, returned as the dialect stored it
            // (`Dialect::stored`: on PostgreSQL, U+0000 replaced).
            through_cas self around self.stored {
                fail(lease: &Lease, req: &Fail, now: Timestamp) -> Task;
                ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
                report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
            }
        }
    };
}
pub(crate) use store_over_cas;

/// A task with its optimistic-concurrency token: the row's `version` column.
pub fn versioned_task(t: Task) -> Versioned<Task> {
    let v = t.version.to_string();
    Versioned::new(t, v)
}

/// A job with its optimistic-concurrency token: the row's `version` column.
pub fn versioned_job(job: Job) -> Versioned<Job> {
    let v = job.version.to_string();
    Versioned::new(job, v)
}

/// A version as the `BIGINT` column holds it.
pub fn version_of(v: u64) -> Result<i64> {
    to_i64("version", v)
}

/// One row of the counter table (`stage_key`, status code, summed count) as
/// [`tasktrack_core::cas::Documents::count_tasks`] answers it. A status code nobody knows (a
/// task's `status` column edited by hand: the triggers count whatever it holds) counts its
/// tasks as unreadable.
pub fn count_entry(stage_key: &str, code: i16, n: i64) -> CountRow {
    let status = u8::try_from(code).ok().and_then(Status::from_code);
    (
        stage_of_key(stage_key),
        status,
        u64::try_from(n).unwrap_or(0),
    )
}

/// The jobs a purge walks: the one it names, else every job.
pub async fn purge_targets<D: Documents + ?Sized>(docs: &D, req: &Purge) -> Result<Vec<JobName>> {
    match &req.job {
        Some(j) => Ok(vec![j.clone()]),
        None => Ok(docs
            .list_jobs(None)
            .await?
            .into_iter()
            .map(|j| j.name)
            .collect()),
    }
}

/// The key under which the counter table stores a stage: `''` for none, `'s' || stage` otherwise
/// (a primary key column cannot be NULL, and `''` may be a stage's name).
pub fn stage_of_key(key: &str) -> Option<String> {
    key.strip_prefix('s').map(str::to_string)
}

/// How a driver error is classified, beside the portable error it maps to.
pub enum Class {
    /// The statement (or its transaction) was rolled back by the server because of a deadlock or a
    /// serialization failure: nothing happened, so running it again is always safe.
    RolledBack,
    /// The connection broke or could not be made: the outcome of a write is unknown.
    Connection,
    /// Anything else.
    Other,
}

/// The one place where driver errors become [`Error`]s. `endpoint` is `host:port`, named in every
/// connection error so that "which server?" never needs asking.
pub fn map_error(backend: &str, endpoint: &str, e: &sqlx::Error) -> (Class, Error) {
    use sqlx::Error as E;
    match e {
        E::Io(io) => (
            Class::Connection,
            Error::Unavailable(format!("{backend} at {endpoint}: {io}")),
        ),
        E::Tls(t) => (
            Class::Connection,
            Error::Unavailable(format!("{backend} at {endpoint}: TLS: {t}")),
        ),
        // What the driver makes of a connection closed mid-handshake or mid-answer (a server
        // restarting behind a proxy, say: "unexpected response from SSLRequest: 0x00"); as
        // likely a broken connection as an Io error, and as transient (tests/outage.rs of the
        // CLI found it reported as a backend error, which ended the run).
        E::Protocol(p) => (
            Class::Connection,
            Error::Unavailable(format!("{backend} at {endpoint}: {p}")),
        ),
        E::PoolTimedOut => (
            Class::Connection,
            Error::Unavailable(format!(
                "{backend} at {endpoint}: no connection available (server down or pool exhausted)"
            )),
        ),
        E::PoolClosed | E::WorkerCrashed => (
            Class::Connection,
            Error::Unavailable(format!("{backend} at {endpoint}: connection pool closed")),
        ),
        E::ColumnDecode { index, source } => (
            Class::Other,
            Error::corrupt(format!("{backend} column {index}"), source),
        ),
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // MySQL tells some errors apart only by number (SQLSTATE HY000 is "general error").
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|e| e.number());
            let message = format!("{backend} at {endpoint}: {} (code {code})", db.message());
            database_error(backend, &code, number, db.message(), message)
        }
        other => (
            Class::Other,
            Error::Backend(format!("{backend} at {endpoint}: {other}")),
        ),
    }
}

/// A server's refusal of a statement, by its SQLSTATE `code` (and, on MySQL, its error
/// `number`); `text` is the server's own message, `message` the one to report.
fn database_error(
    backend: &str,
    code: &str,
    number: Option<u16>,
    text: &str,
    message: String,
) -> (Class, Error) {
    match code {
        // PostgreSQL: serialization_failure, deadlock_detected; MySQL/MariaDB: deadlock
        // (1213, SQLSTATE 40001) and lock wait timeout (1205, HY000, told apart by text).
        "40001" | "40P01" => (Class::RolledBack, Error::Contention(message)),
        // Connection exceptions; PostgreSQL: too_many_connections, admin_shutdown,
        // crash_shutdown, cannot_connect_now (a server starting, stopping or full).
        c if c.starts_with("08") || matches!(c, "53300" | "57P01" | "57P02" | "57P03") => {
            (Class::Connection, Error::Unavailable(message))
        }
        // PostgreSQL: U+0000 in text (character_not_in_repertoire) or in a jsonb string
        // (untranslatable_character). The store replaces it in what workers report
        // (`RawTask::replace_nul`); anything else holding it is the caller's input.
        "22021" | "22P05" if backend == "postgres" => (
            Class::Other,
            Error::InvalidInput(format!(
                "{message}: PostgreSQL cannot store the character U+0000 (NUL) in text or jsonb"
            )),
        ),
        // PostgreSQL's statement_timeout (query_canceled), MariaDB's max_statement_time
        // (70100), MySQL 8's max_execution_time (3024, HY000).
        c if matches!(c, "57014" | "70100") || number == Some(3024) => (
            Class::Other,
            Error::Unavailable(format!("{message}: statement timeout")),
        ),
        _ if text.contains("Lock wait timeout") => (Class::RolledBack, Error::Contention(message)),
        _ => (Class::Other, Error::Backend(message)),
    }
}

/// Opens one connection, so that an unreachable server fails `connect` at once with one line
/// naming `host:port`, not at the first statement.
pub async fn probe<C: sqlx::Connection>(
    backend: &str,
    config: &config::Config,
    options: &C::Options,
) -> Result<C> {
    let endpoint = &config.endpoint;
    tokio::time::timeout(config.connect_timeout, C::connect_with(options))
        .await
        .map_err(|_| Error::Unavailable(format!("{backend} at {endpoint}: connection timed out")))?
        .map_err(|e| map_error(backend, endpoint, &e).1)
}

/// How many times a statement rolled back by a deadlock or serialization failure is re-run.
pub const ROLLBACK_RETRIES: u32 = 8;

/// Runs `op`, re-running it when the server rolled it back (deadlock, serialization failure): it
/// did not happen, so this is safe for every operation. Connection errors are retried only when
/// `idempotent` (reads); for writes their outcome is unknown, so they are reported.
pub async fn retrying<T, F, Fut>(
    backend: &str,
    endpoint: &str,
    idempotent: bool,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let (class, mapped) = map_error(backend, endpoint, &e);
                let again = match class {
                    Class::RolledBack => true,
                    Class::Connection => idempotent && !matches!(e, sqlx::Error::PoolTimedOut),
                    Class::Other => false,
                };
                if !again || attempt >= ROLLBACK_RETRIES {
                    return Err(mapped);
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 3)).await;
            }
        }
    }
}

/// The lease a claim hands out, read back from the task as written.
pub fn claimed(task: Task) -> Result<Claimed> {
    let Some(l) = task.lease.clone() else {
        return Err(Error::corrupt(
            format!("task {}", task.key()),
            "claimed without a lease",
        ));
    };
    let lease = Lease {
        key: task.key(),
        owner: l.owner,
        token: l.token,
        attempt: task.attempts,
        acquired_at: l.acquired_at,
        expires_at: l.expires_at,
    };
    Ok(Claimed { task, lease })
}

/// `task`, unless a claim cannot write it: its token or version at the largest `BIGINT` (only a
/// hand edit puts it there), which a claim advances. Such a row is as damaged as one that does
/// not decode (`Corrupt`: set aside by claims), rather than a failure of every claim of its job.
pub fn advanceable(table: &str, task: Task) -> Result<Task> {
    if !lifecycle::claim_can_advance(&task, i64::MAX.unsigned_abs()) {
        return Err(Error::corrupt(
            format!(
                "{table} row ({:?}, {:?})",
                task.job.as_str(),
                task.id.as_str()
            ),
            "token or version at the largest BIGINT: a claim cannot advance it",
        ));
    }
    Ok(task)
}

/// What a batched completion wrote, by task: the task as written, or why its row, written,
/// does not read back (a row edited by hand: that entry's `Corrupt`).
pub type Written = HashMap<TaskKey, Result<Task>>;

/// `succeed_many` over a batched completion: `batch` completes whatever it can of the entries it
/// is given in one go and returns what it wrote ([`Written`]). It is given only the first entry
/// of each task ([`first_per_task`]): one statement cannot apply two entries to one row in
/// order (PostgreSQL's `UPDATE … FROM` would pick either; MySQL's rule kept the last). The
/// answers come one per lease and in order: the task the batch wrote, if it is that lease's
/// success ([`lifecycle::outcome_of`]), else whatever the one-by-one `succeed` path
/// ([`cas::succeed`]) answers, so that a stale lease or a later entry for the same task gets
/// exactly what `succeed` would give after the entries before it. An unreachable store fails the
/// whole batch (its outcome is unknown), as [`tasktrack_core::Store::succeed_many`] specifies.
pub async fn succeed_many_batched<D, B>(
    docs: &D,
    done: &[(Lease, Value)],
    now: Timestamp,
    batch: B,
) -> Result<Vec<Result<Task>>>
where
    D: Documents,
    B: AsyncFnOnce(&[(Lease, Value)]) -> Result<Written>,
{
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = batch(&first_per_task(done)).await?;
    let mut answers = Vec::with_capacity(done.len());
    for (lease, output) in done {
        // The first entry of a task in `done` is the one the batch was given.
        let answer = match written.remove(&lease.key) {
            Some(Ok(task)) if succeeded_by(&task, lease) => Ok(task),
            Some(Err(e)) => Err(e),
            _ => cas::succeed(docs, lease, output.clone(), now).await,
        };
        if let Err(e @ Error::Unavailable(_)) = answer {
            return Err(e);
        }
        answers.push(answer);
    }
    Ok(answers)
}

/// The first entry of each task of `done`, in order; borrowed when no task comes twice (the
/// usual batch).
fn first_per_task(done: &[(Lease, Value)]) -> Cow<'_, [(Lease, Value)]> {
    let mut seen = HashSet::with_capacity(done.len());
    if done.iter().all(|(lease, _)| seen.insert(&lease.key)) {
        return Cow::Borrowed(done);
    }
    seen.clear();
    Cow::Owned(
        done.iter()
            .filter(|(lease, _)| seen.insert(&lease.key))
            .cloned()
            .collect(),
    )
}

/// Whether `task`, as a batch wrote it, holds `lease`'s success.
fn succeeded_by(task: &Task, lease: &Lease) -> bool {
    lifecycle::outcome_of(task, lease).is_some_and(|a| a.outcome == Outcome::Succeeded)
}

/// The general path of `succeed_and_claim_next` for both dialects, taken when their
/// one-transaction hand-off does not apply (a refused success, a pipeline stage): `succeed`
/// through the adapter, then the store's `claim_next`. Unlike the trait's default, a failed
/// claim after the success was written is not the call's error ([`after_commit`]): the hand-off
/// answers with the success and nothing claimed, as the overriding stores promise that an `Err`
/// means neither happened.
pub async fn handoff_general<S: Documents + Store>(
    store: &S,
    lease: &Lease,
    output: Value,
    next: &ClaimNext,
    now: Timestamp,
) -> Result<Handoff> {
    let done = cas::succeed(store, lease, output, now).await?;
    let next = match store.claim_next(&lease.key.job, next, now).await {
        Ok(next) => next,
        Err(e) => {
            after_commit(Store::backend(store), "hand-off", &lease.key.job, 0, &e);
            Vec::new()
        }
    };
    Ok(Handoff { done, next })
}

/// Logs (warn) an error of the work that follows a committed write: the work after the
/// statement that completed a hand-off's task or granted leases (expiring the candidates whose
/// lease had run out, further claim rounds, a hand-off's claim after its success). What was
/// committed stands and the call returns it — the success, and the `kept` leases granted so far
/// — because an `Err` would tell the caller that nothing happened, and the leases would be lost
/// to it until they expire. The claims not made are made by a later `claim_next`.
pub fn after_commit(backend: &str, operation: &str, job: &JobName, kept: usize, e: &Error) {
    tracing::warn!(
        backend,
        job = %job,
        leases_kept = kept,
        error = %e,
        "{operation}: follow-up work failed after the write committed; returning what was committed"
    );
}

#[cfg(test)]
mod tests {
    use super::{Class, database_error};
    use tasktrack_core::ErrorKind;

    /// How a server error of `backend` with SQLSTATE `code` and MySQL error `number` maps.
    fn mapped(backend: &str, code: &str, number: Option<u16>, text: &str) -> (bool, ErrorKind) {
        let (class, e) = database_error(backend, code, number, text, text.to_string());
        (matches!(class, Class::Connection), e.kind())
    }

    #[test]
    fn a_server_that_cannot_take_the_connection_now_is_unavailable() {
        // PostgreSQL: too_many_connections, admin_shutdown, crash_shutdown, cannot_connect_now.
        for code in ["53300", "57P01", "57P02", "57P03", "08006"] {
            assert_eq!(
                mapped("postgres", code, None, "x"),
                (true, ErrorKind::Unavailable),
                "{code}"
            );
        }
        // MySQL: too many connections (1040, SQLSTATE 08004).
        assert_eq!(
            mapped("mysql", "08004", Some(1040), "Too many connections"),
            (true, ErrorKind::Unavailable)
        );
    }

    #[test]
    fn every_dialects_statement_timeout_is_unavailable() {
        let timeout = (false, ErrorKind::Unavailable);
        assert_eq!(mapped("postgres", "57014", None, "canceling"), timeout);
        // MariaDB's max_statement_time (1969, SQLSTATE 70100).
        assert_eq!(mapped("mysql", "70100", Some(1969), "interrupted"), timeout);
        // MySQL 8's max_execution_time (3024, SQLSTATE HY000).
        let text = "Query execution was interrupted, maximum statement execution time exceeded";
        assert_eq!(mapped("mysql", "HY000", Some(3024), text), timeout);
        // Another general error is not.
        assert_eq!(
            mapped("mysql", "HY000", Some(1105), "unknown error"),
            (false, ErrorKind::Backend)
        );
        assert_eq!(
            mapped("mysql", "HY000", Some(1205), "Lock wait timeout exceeded"),
            (false, ErrorKind::Contention)
        );
    }
}
