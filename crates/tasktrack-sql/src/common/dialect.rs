//! What the two dialects do differently, as one small trait ([`Dialect`]) below the logic they
//! share (`docs.rs`).
//!
//! The shared code builds each statement as text plus driver-neutral parameters ([`Stmt`],
//! [`Param`]); a dialect writes the placeholders (`$1, $2, …` on PostgreSQL, `?` on MySQL), binds
//! the parameters with its own driver types (JSON as `jsonb` or as text, names as `text` or
//! `VARBINARY`), runs the statement and reads its rows. Everything a dialect expresses in its own
//! SQL — the statements of `queries/<dialect>/`, the status-set and id-prefix tests of a listing,
//! whether an insert can say which rows were new — is one method here.

use super::rows::FIELDS;
use super::{RawTask, Result, map_error, retrying};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use tasktrack_core::{Error, Job, Task};

/// One bound parameter, as the shared code knows it; each dialect binds it with its own types.
#[derive(Debug)]
pub(crate) enum Param<'a> {
    /// A string (name, id, state, stage, a job document as JSON text).
    Text(Cow<'a, str>),
    /// A `BIGINT` (times in milliseconds, versions, limits).
    Int(i64),
    /// A `SMALLINT` (a status code).
    Status(i16),
    /// An array of status codes (PostgreSQL's `= ANY($n)`).
    Statuses(Vec<i16>),
    /// A JSON document (PostgreSQL `jsonb`).
    Json(Value),
    /// Every column of a task row, in [`FIELDS`] order: [`FIELDS`]`.len()` placeholders.
    Task(&'a RawTask),
}

impl Param<'_> {
    /// How many placeholders the parameter takes.
    fn width(&self) -> usize {
        match self {
            Param::Task(_) => FIELDS.len(),
            _ => 1,
        }
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(s: &'a str) -> Param<'a> {
        Param::Text(Cow::Borrowed(s))
    }
}

impl From<i64> for Param<'_> {
    fn from(n: i64) -> Self {
        Param::Int(n)
    }
}

/// A statement: its text and its parameters. Written either from a stored statement
/// ([`Stmt::stored`], placeholders already in the text) or piece by piece ([`Stmt::build`],
/// [`Stmt::push_param`] writes the dialect's placeholder).
#[derive(Debug)]
pub(crate) struct Stmt<'a> {
    sql: Text,
    params: Vec<Param<'a>>,
    /// Placeholders so far (PostgreSQL numbers them).
    placeholders: usize,
    numbered: bool,
}

impl<'a> Stmt<'a> {
    /// A statement of `queries/<dialect>/`, bound with [`Stmt::bind`] in its placeholders' order.
    pub fn stored(sql: &Arc<str>) -> Stmt<'a> {
        Stmt {
            sql: Text::Stored(sql.clone()),
            params: Vec::new(),
            placeholders: 0,
            numbered: false,
        }
    }

    /// A statement written at run time for dialect `D`, starting with `head`.
    pub fn build<D: Dialect + ?Sized>(head: String) -> Stmt<'a> {
        Stmt {
            sql: Text::Built(head),
            params: Vec::new(),
            placeholders: 0,
            numbered: D::NUMBERED_PLACEHOLDERS,
        }
    }

    /// Binds the next parameter of a stored statement.
    pub fn bind(mut self, p: impl Into<Param<'a>>) -> Stmt<'a> {
        self.params.push(p.into());
        self
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Stmt<'a> {
        self.text().push_str(sql);
        self
    }

    /// Appends the placeholder(s) of `p` (comma-separated for a task row) and binds it.
    pub fn push_param(&mut self, p: impl Into<Param<'a>>) -> &mut Stmt<'a> {
        let p = p.into();
        let numbered = self.numbered;
        let mut n = self.placeholders;
        let sql = self.text();
        for i in 0..p.width() {
            if i > 0 {
                sql.push_str(", ");
            }
            n += 1;
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        self.placeholders = n;
        self.params.push(p);
        self
    }

    /// Appends one `VALUES` tuple per row: `(…), (…)`, every column in [`FIELDS`] order.
    pub fn push_rows(&mut self, rows: &'a [RawTask]) -> &mut Stmt<'a> {
        for (i, r) in rows.iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" })
                .push_param(Param::Task(r))
                .push(")");
        }
        self
    }

    /// The text being built (a stored statement becomes a built one).
    fn text(&mut self) -> &mut String {
        if let Text::Stored(sql) = &self.sql {
            self.sql = Text::Built(sql.to_string());
        }
        let Text::Built(sql) = &mut self.sql else {
            unreachable!("made a built statement above")
        };
        sql
    }

    /// The statement's text, as the driver takes it (a stored statement is not copied).
    pub fn sql(&self) -> SqlStr {
        match &self.sql {
            Text::Stored(sql) => AssertSqlSafe(sql.clone()).into_sql_str(),
            Text::Built(sql) => AssertSqlSafe(sql.clone()).into_sql_str(),
        }
    }

    /// Its parameters, in binding order.
    pub fn params(&self) -> &[Param<'a>] {
        &self.params
    }
}

/// A statement's text: one of `queries/<dialect>/` (shared, never copied), or written at run
/// time.
#[derive(Debug)]
enum Text {
    Stored(Arc<str>),
    Built(String),
}

/// What differs between PostgreSQL and MySQL / MariaDB under the shared [`Documents`] logic.
///
/// [`Documents`]: tasktrack_core::cas::Documents
#[async_trait]
pub(crate) trait Dialect: Send + Sync {
    /// `"postgres"` or `"mysql"`: the backend's name, in every error message.
    const BACKEND: &'static str;
    /// `$1, $2, …` (PostgreSQL) rather than `?` (MySQL).
    const NUMBERED_PLACEHOLDERS: bool;
    /// A row as the driver returns it.
    type Row: Send;

    /// `host:port`, named in every connection error.
    fn endpoint(&self) -> &str;
    /// The statements both dialects have, with the table names filled in.
    fn queries(&self) -> &super::docs::Queries;
    /// What table names start with: the prefix, schema-qualified on PostgreSQL.
    fn names(&self) -> &str;

    /// Runs `st` (see [`retrying`] for `idempotent`); the number of rows it changed.
    async fn execute(&self, idempotent: bool, st: &Stmt<'_>) -> Result<u64>;
    /// Runs `st` and returns its rows.
    async fn fetch(&self, idempotent: bool, st: &Stmt<'_>) -> Result<Vec<Self::Row>>;

    /// A whole task row.
    fn read_task(row: &Self::Row) -> std::result::Result<RawTask, sqlx::Error>;
    /// A text column (`VARBINARY` names on MySQL).
    fn read_text(row: &Self::Row, column: &str) -> std::result::Result<String, sqlx::Error>;
    /// A `BIGINT` column (`updated_at`: where a row that does not decode stands in a listing).
    fn read_int(row: &Self::Row, column: &str) -> std::result::Result<i64, sqlx::Error>;
    /// A row of `count_tasks.sql`: stage key, status code, count.
    fn read_count(row: &Self::Row) -> std::result::Result<(String, i16, i64), sqlx::Error>;
    /// The job document of a row (`jsonb`, or JSON text).
    fn read_doc(&self, row: &Self::Row) -> Result<Value>;
    /// A job document as its column takes it.
    fn job_doc(job: &Job) -> Result<Param<'static>>;

    /// `INSERT` head and tail that skip rows whose key exists (`ON CONFLICT DO NOTHING`,
    /// `INSERT IGNORE`).
    fn insert_skipping(&self) -> (&'static str, &'static str);
    /// Whether that insert can answer `RETURNING id` (PostgreSQL, MariaDB; not MySQL 8).
    fn insert_returns(&self) -> bool;
    /// Appends to a listing the test that `status` is one of `codes`.
    fn push_status_in(&self, st: &mut Stmt<'_>, codes: Vec<i16>);
    /// Appends to a listing the test that `id` starts with `prefix` (byte-wise, no wildcards).
    fn push_id_prefix<'a>(&self, st: &mut Stmt<'a>, prefix: &'a str);
    /// One batch of a purge of `job` (at most [`PURGE_BATCH`](super::docs::PURGE_BATCH) rows).
    fn purge_batch<'a>(&'a self, job: &'a str, codes: &[i16], older_than: i64) -> Stmt<'a>;

    /// Makes a task row fit to write (insert or conditional write), or refuses it with
    /// [`Error::InvalidInput`] naming the task. Every row the shared write path writes goes
    /// through it. As is by default; PostgreSQL replaces the U+0000 its columns cannot hold in
    /// what workers report and refuses it in `data`.
    fn storable(&self, _row: &mut RawTask) -> Result<()> {
        Ok(())
    }

    /// Refuses a task's `data` this database cannot store, with [`Error::InvalidInput`] naming
    /// the task: the part of [`Dialect::storable`] a `create` checks for every task before its
    /// first statement. Anything goes by default; PostgreSQL refuses U+0000.
    fn check_data(&self, _job: &str, _id: &str, _data: &serde_json::Value) -> Result<()> {
        Ok(())
    }

    /// `task` as [`Dialect::storable`] writes it, so that an operation returns the task as
    /// stored. As is by default.
    fn as_stored(&self, task: Task) -> Result<Task> {
        Ok(task)
    }

    /// Awaits a write through the adapter and returns its task as stored ([`Dialect::as_stored`]):
    /// the `around` of the operations that record what a worker or a person reported (`fail`,
    /// `ignore`, `report`).
    fn stored<F>(&self, write: F) -> impl Future<Output = Result<Task>> + Send
    where
        F: Future<Output = Result<Task>> + Send,
    {
        async move { write.await.and_then(|task| self.as_stored(task)) }
    }

    /// Runs one driver call, re-running it if the server rolled it back (see [`retrying`]).
    fn run<T, F, Fut>(&self, idempotent: bool, op: F) -> impl Future<Output = Result<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        retrying(Self::BACKEND, self.endpoint(), idempotent, op)
    }

    /// The portable error for a driver error.
    fn err(&self, e: &sqlx::Error) -> Error {
        map_error(Self::BACKEND, self.endpoint(), e).1
    }

    /// The task table.
    fn table(&self) -> String {
        format!("{}task", self.names())
    }
}
