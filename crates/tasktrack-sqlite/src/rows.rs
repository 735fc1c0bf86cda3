//! Rows ⇄ records: the columns of `tasktrack_task` and `tasktrack_job` and how a [`Task`] or a
//! [`Job`] maps onto them. Times are integer milliseconds; nested values are JSON text.
//!
//! A row that does not decode (a foreign write, a hand edit gone wrong) is [`Error::Corrupt`]
//! naming the database file and the row.

use crate::db::Db;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use tasktrack_core::{
    Attempt, Backoff, Error, Failure, Job, JobName, JobState, LeaseState, Listed, Result, Status,
    Task, TaskId, TaskKey, Timestamp,
};

/// The task columns, in the order [`task_values`] binds and [`task_from_row`] reads them.
pub(crate) const TASK_COLUMNS: &str = "job, id, status, status_code, stage, stages, attempts, max_attempts, priority, \
    not_before, claimable_at, token, version, lease_owner, lease_token, lease_acquired_at, lease_expires_at, \
    data, output, error_kind, error_message, error_detail, history, created_at, updated_at, started_at, finished_at";

const TASK_COLUMN_COUNT: usize = 27;

// Statements are built once: `prepare_cached` looks them up by their text on every call.

/// `INSERT INTO tasktrack_task (...) VALUES (?1, ..., ?27) ON CONFLICT (job, id) DO NOTHING`.
static INSERT_TASK: LazyLock<String> = LazyLock::new(|| {
    let marks: Vec<String> = (1..=TASK_COLUMN_COUNT).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO tasktrack_task ({TASK_COLUMNS}) VALUES ({}) ON CONFLICT (job, id) DO NOTHING",
        marks.join(", ")
    )
});

/// `UPDATE tasktrack_task SET status = ?3, ... WHERE job = ?1 AND id = ?2`.
static UPDATE_TASK: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = TASK_COLUMNS
        .split(',')
        .map(str::trim)
        .enumerate()
        .skip(2)
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    format!(
        "UPDATE tasktrack_task SET {} WHERE job = ?1 AND id = ?2",
        sets.join(", ")
    )
});

static SELECT_TASK: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {TASK_COLUMNS} FROM tasktrack_task WHERE job = ?1 AND id = ?2")
});

static SELECT_JOB: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {JOB_COLUMNS} FROM tasktrack_job WHERE name = ?1"));

/// Insert-or-overwrite of a job record.
static SAVE_JOB: LazyLock<String> = LazyLock::new(|| {
    let marks: Vec<String> = (1..=11).map(|i| format!("?{i}")).collect();
    let sets: Vec<String> = JOB_COLUMNS
        .split(',')
        .map(str::trim)
        .skip(1)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO tasktrack_job ({JOB_COLUMNS}) VALUES ({}) ON CONFLICT (name) DO UPDATE SET {}",
        marks.join(", "),
        sets.join(", ")
    )
});

fn ms(t: Timestamp) -> Sql {
    Sql::Integer(t.as_millis())
}

fn opt_ms(t: Option<Timestamp>) -> Sql {
    t.map_or(Sql::Null, ms)
}

fn text(s: &str) -> Sql {
    Sql::Text(s.to_string())
}

fn opt_text(s: Option<&str>) -> Sql {
    s.map_or(Sql::Null, text)
}

fn json<T: Serialize>(v: &T) -> Result<Sql> {
    serde_json::to_string(v)
        .map(Sql::Text)
        .map_err(|e| Error::backend(format!("cannot encode JSON: {e}")))
}

fn int(n: u64) -> Result<Sql> {
    i64::try_from(n)
        .map(Sql::Integer)
        .map_err(|_| Error::invalid(format!("{n} does not fit SQLite's 64-bit integer")))
}

/// The column values of `task`, in [`TASK_COLUMNS`] order.
pub(crate) fn task_values(t: &Task) -> Result<Vec<Sql>> {
    let lease = t.lease.as_ref();
    let error = t.error.as_ref();
    Ok(vec![
        text(t.job.as_str()),
        text(t.id.as_str()),
        text(t.status.as_str()),
        Sql::Integer(i64::from(t.status.code())),
        opt_text(t.stage.as_deref()),
        json(&t.stages)?,
        Sql::Integer(i64::from(t.attempts)),
        Sql::Integer(i64::from(t.max_attempts)),
        Sql::Integer(i64::from(t.priority)),
        opt_ms(t.not_before),
        opt_ms(t.claimable_at()),
        int(t.token)?,
        int(t.version)?,
        opt_text(lease.map(|l| l.owner.as_str())),
        lease.map_or(Ok(Sql::Null), |l| int(l.token))?,
        opt_ms(lease.map(|l| l.acquired_at)),
        opt_ms(lease.map(|l| l.expires_at)),
        json(&t.data)?,
        t.output.as_ref().map_or(Ok(Sql::Null), json)?,
        opt_text(error.map(|e| e.kind.as_str())),
        opt_text(error.map(|e| e.message.as_str())),
        opt_text(error.and_then(|e| e.detail.as_deref())),
        json(&t.history)?,
        ms(t.created_at),
        ms(t.updated_at),
        opt_ms(t.started_at),
        opt_ms(t.finished_at),
    ])
}

/// Reads typed columns of one row, turning every decoding problem into [`Error::Corrupt`].
struct Cols<'a, 'r> {
    row: &'a Row<'r>,
    db: &'a Db,
    what: &'a str,
}

impl Cols<'_, '_> {
    /// `Corrupt` naming the file, the record and the column by name (an index says nothing to
    /// someone about to repair the row by hand).
    fn corrupt(&self, col: usize, message: impl std::fmt::Display) -> Error {
        let column = match self.row.as_ref().column_name(col) {
            Ok(name) => name.to_owned(),
            Err(_) => format!("#{col}"),
        };
        Error::corrupt(
            format!("{} ({}, column {column})", self.db.location(), self.what),
            message,
        )
    }

    fn get<T: rusqlite::types::FromSql>(&self, col: usize) -> Result<T> {
        self.row.get(col).map_err(|e| self.corrupt(col, e))
    }

    fn time(&self, col: usize) -> Result<Timestamp> {
        self.get::<i64>(col).map(Timestamp::from_millis)
    }

    fn opt_time(&self, col: usize) -> Result<Option<Timestamp>> {
        Ok(self.get::<Option<i64>>(col)?.map(Timestamp::from_millis))
    }

    fn json<T: DeserializeOwned>(&self, col: usize) -> Result<T> {
        let s: String = self.get(col)?;
        serde_json::from_str(&s).map_err(|e| self.corrupt(col, format!("bad JSON: {e}")))
    }

    fn opt_json<T: DeserializeOwned>(&self, col: usize) -> Result<Option<T>> {
        match self.get::<Option<String>>(col)? {
            Some(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| self.corrupt(col, format!("bad JSON: {e}"))),
            None => Ok(None),
        }
    }

    fn parsed<T: std::str::FromStr<Err = Error>>(&self, col: usize) -> Result<T> {
        let s: String = self.get(col)?;
        s.parse().map_err(|e| self.corrupt(col, e))
    }

    fn number<T: TryFrom<i64>>(&self, col: usize) -> Result<T> {
        let n: i64 = self.get(col)?;
        T::try_from(n).map_err(|_| self.corrupt(col, format!("{n} is out of range")))
    }
}

/// A row of a listing: its task, or, when the row does not decode, its place in the listing
/// order (`updated_at` and id, plain columns) and why, for the page to name it
/// ([`TaskPage::unreadable`](tasktrack_core::TaskPage)). A row whose place cannot be read either
/// is `Corrupt`.
pub(crate) fn listed_from_row(db: &Db, row: &Row<'_>) -> Result<Listed> {
    let error = match task_from_row(db, row) {
        Ok(task) => return Ok(Listed::Task(task)),
        Err(error @ Error::Corrupt { .. }) => error,
        Err(other) => return Err(other),
    };
    let place = row.get::<_, String>(1).ok().zip(row.get::<_, i64>(24).ok());
    place
        .and_then(|(id, ms)| Listed::unreadable_at(&id, Timestamp::from_millis(ms), &error))
        .ok_or(error)
}

/// The bytes of a text (or blob) column, whether or not they are UTF-8.
fn raw_text<'r>(db: &Db, row: &'r Row<'_>, col: usize) -> Result<&'r [u8]> {
    let value = row.get_ref(col).map_err(|e| db.err(e))?;
    value.as_bytes().map_err(|e| db.err(e.into()))
}

/// A task from a row selected with [`TASK_COLUMNS`].
pub(crate) fn task_from_row(db: &Db, row: &Row<'_>) -> Result<Task> {
    let job = raw_text(db, row, 0)?;
    let id = raw_text(db, row, 1)?;
    let what = format!(
        "task {}/{}",
        String::from_utf8_lossy(job),
        String::from_utf8_lossy(id)
    );
    let c = Cols {
        row,
        db,
        what: &what,
    };
    // Read as bytes first: a key edited by hand into bytes that are not UTF-8 is a damaged
    // row (`Corrupt`, set aside by claims), not a failure of the store.
    let job = String::from_utf8(job.to_vec()).map_err(|e| c.corrupt(0, e))?;
    let id = String::from_utf8(id.to_vec()).map_err(|e| c.corrupt(1, e))?;
    let lease = match c.get::<Option<String>>(13)? {
        Some(owner) => Some(LeaseState {
            owner,
            token: c.number(14)?,
            acquired_at: c.time(15)?,
            expires_at: c.time(16)?,
        }),
        None => None,
    };
    let error = match c.get::<Option<String>>(19)? {
        Some(kind) => Some(Failure {
            kind,
            message: c.get(20)?,
            detail: c.get(21)?,
        }),
        None => None,
    };
    Ok(Task {
        job: JobName::new(job).map_err(|e| c.corrupt(0, e))?,
        id: TaskId::new(id).map_err(|e| c.corrupt(1, e))?,
        status: c.parsed::<Status>(2)?,
        stage: c.get(4)?,
        stages: c.json(5)?,
        attempts: c.number(6)?,
        max_attempts: c.number(7)?,
        priority: c.number(8)?,
        not_before: c.opt_time(9)?,
        lease,
        token: c.number(11)?,
        version: c.number(12)?,
        data: c.json(17)?,
        output: c.opt_json(18)?,
        error,
        history: c.json::<Vec<Attempt>>(22)?,
        created_at: c.time(23)?,
        updated_at: c.time(24)?,
        started_at: c.opt_time(25)?,
        finished_at: c.opt_time(26)?,
    })
}

/// The task `key`, or `None`.
pub(crate) fn load_task(db: &Db, conn: &Connection, key: &TaskKey) -> Result<Option<Task>> {
    let mut stmt = conn.prepare_cached(&SELECT_TASK).map_err(|e| db.err(e))?;
    let mut rows = stmt
        .query([key.job.as_str(), key.id.as_str()])
        .map_err(|e| db.err(e))?;
    match rows.next().map_err(|e| db.err(e))? {
        Some(row) => task_from_row(db, row).map(Some),
        None => Ok(None),
    }
}

/// Inserts `task`; `false` if its key exists.
pub(crate) fn insert_task(db: &Db, conn: &Connection, task: &Task) -> Result<bool> {
    let mut stmt = conn.prepare_cached(&INSERT_TASK).map_err(|e| db.err(e))?;
    let n = stmt
        .execute(params_from_iter(task_values(task)?))
        .map_err(|e| db.err(e))?;
    Ok(n == 1)
}

/// Writes every column of an existing task, `old` being what the row held, and notes the move
/// between counters in `moves` (to be written by [`CountMoves::write`] before the operation
/// ends).
pub(crate) fn update_task(
    db: &Db,
    conn: &Connection,
    old: &Task,
    task: &Task,
    moves: &mut CountMoves,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&UPDATE_TASK).map_err(|e| db.err(e))?;
    stmt.execute(params_from_iter(task_values(task)?))
        .map_err(|e| db.err(e))?;
    moves.note(old, task);
    Ok(())
}

/// [`update_task`] for an operation that changes one task: its counter move is written at once.
pub(crate) fn update_one(db: &Db, conn: &Connection, old: &Task, task: &Task) -> Result<()> {
    let mut moves = CountMoves::default();
    update_task(db, conn, old, task, &mut moves)?;
    moves.write(db, conn)
}

/// The counter changes of one operation: `tasktrack_count` rows keyed by (job, stage, status),
/// summed in memory and written once each, in the operation's transaction. A claim of 32 tasks
/// is then two counter writes, not 64 (schema version 2 dropped the per-row update trigger).
/// Inserts and deletes are still counted by their triggers.
#[derive(Debug, Default)]
#[must_use = "the moves must be written before the operation ends"]
pub(crate) struct CountMoves(BTreeMap<(String, String, &'static str), i64>);

impl CountMoves {
    /// Notes a task that went from `old` to `new` (nothing if its status and stage stayed).
    fn note(&mut self, old: &Task, new: &Task) {
        if (old.status, &old.stage) == (new.status, &new.stage) {
            return;
        }
        let mut add = |t: &Task, n: i64| {
            let key = (
                t.job.as_str().to_string(),
                t.stage.clone().unwrap_or_default(),
                t.status.as_str(),
            );
            *self.0.entry(key).or_default() += n;
        };
        add(old, -1);
        add(new, 1);
    }

    /// Writes every non-zero delta.
    pub(crate) fn write(self, db: &Db, conn: &Connection) -> Result<()> {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO tasktrack_count (job, stage, status, n) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (job, stage, status) DO UPDATE SET n = n + excluded.n",
            )
            .map_err(|e| db.err(e))?;
        for ((job, stage, status), n) in self.0.into_iter().filter(|(_, n)| *n != 0) {
            stmt.execute(rusqlite::params![job, stage, status, n])
                .map_err(|e| db.err(e))?;
        }
        Ok(())
    }
}

/// The job columns, in the order [`job_values`] binds and [`job_from_row`] reads them.
pub(crate) const JOB_COLUMNS: &str = "name, state, metadata, amount, max_attempts, lease_ms, backoff, stages, version, created_at, updated_at";

/// The column values of `job`, in [`JOB_COLUMNS`] order.
pub(crate) fn job_values(j: &Job) -> Result<Vec<Sql>> {
    Ok(vec![
        text(j.name.as_str()),
        text(j.state.as_str()),
        json(&j.metadata)?,
        j.amount.map_or(Ok(Sql::Null), int)?,
        Sql::Integer(i64::from(j.max_attempts)),
        int(j.lease_ms)?,
        json(&j.backoff)?,
        json(&j.stages)?,
        int(j.version)?,
        ms(j.created_at),
        ms(j.updated_at),
    ])
}

/// A job from a row selected with [`JOB_COLUMNS`].
pub(crate) fn job_from_row(db: &Db, row: &Row<'_>) -> Result<Job> {
    let name: String = row.get(0).map_err(|e| db.err(e))?;
    let what = format!("job {name}");
    let c = Cols {
        row,
        db,
        what: &what,
    };
    Ok(Job {
        name: JobName::new(name).map_err(|e| c.corrupt(0, e))?,
        state: c.parsed::<JobState>(1)?,
        metadata: c.json(2)?,
        amount: c
            .get::<Option<i64>>(3)?
            .map(|n| u64::try_from(n).map_err(|_| c.corrupt(3, "negative amount")))
            .transpose()?,
        max_attempts: c.number(4)?,
        lease_ms: c.number(5)?,
        backoff: c.json::<Backoff>(6)?,
        stages: c.json(7)?,
        version: c.number(8)?,
        created_at: c.time(9)?,
        updated_at: c.time(10)?,
    })
}

/// The job record, or `None`.
pub(crate) fn load_job(db: &Db, conn: &Connection, name: &JobName) -> Result<Option<Job>> {
    let mut stmt = conn.prepare_cached(&SELECT_JOB).map_err(|e| db.err(e))?;
    let row = stmt
        .query_row([name.as_str()], |r| Ok(job_from_row(db, r)))
        .optional()
        .map_err(|e| db.err(e))?;
    row.transpose()
}

/// Inserts or overwrites the job record.
pub(crate) fn save_job(db: &Db, conn: &Connection, job: &Job) -> Result<()> {
    let mut stmt = conn.prepare_cached(&SAVE_JOB).map_err(|e| db.err(e))?;
    stmt.execute(params_from_iter(job_values(job)?))
        .map_err(|e| db.err(e))?;
    Ok(())
}

/// The job record, created with defaults if missing (tasks added to an unknown job).
pub(crate) fn ensure_job(
    db: &Db,
    conn: &Connection,
    name: &JobName,
    now: Timestamp,
) -> Result<Job> {
    if let Some(job) = load_job(db, conn, name)? {
        return Ok(job);
    }
    let job = Job::new(name.clone(), now);
    save_job(db, conn, &job)?;
    Ok(job)
}
