//! The row ⇄ [`Task`] mapping both dialects share: [`RawTask`] (a task as plain column values),
//! and the one binder and one reader of a task row, generic over the sqlx database; a dialect
//! passes only how it encodes and decodes its JSON and name columns.

use serde_json::Value;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};
use tasktrack_core::{Error, Failure, LeaseState, Result, Status, Task, TaskId, Timestamp};

/// The columns of a task row that statements write, in binding order (`Param::Task`, the
/// `INSERT`s and `replace_task.sql`).
pub(crate) const FIELDS: [&str; 26] = [
    "status",
    "stage",
    "stages",
    "attempts",
    "max_attempts",
    "priority",
    "not_before",
    "claim_at",
    "lease_owner",
    "lease_token",
    "lease_acquired_at",
    "lease_expires_at",
    "token",
    "version",
    "data",
    "output",
    "error_kind",
    "error_message",
    "error_detail",
    "history",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "job",
    "id",
];

/// A task as one table row: plain column values, shared by both dialects' binders and readers.
///
/// Times are milliseconds since the Unix epoch (`BIGINT`): exact, comparable, and independent of
/// the server's time zone. `claim_at` is [`Task::claimable_at`] (NULL for finished tasks), the
/// column the claim index is ordered by.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTask {
    pub job: String,
    pub id: String,
    pub status: i16,
    pub stage: Option<String>,
    pub stages: Value,
    pub attempts: i64,
    pub max_attempts: i64,
    pub priority: i32,
    pub not_before: Option<i64>,
    pub claim_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_token: Option<i64>,
    pub lease_acquired_at: Option<i64>,
    pub lease_expires_at: Option<i64>,
    pub token: i64,
    pub version: i64,
    pub data: Value,
    pub output: Option<Value>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub error_detail: Option<String>,
    pub history: Value,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// What replaces U+0000 (NUL) in the values PostgreSQL stores for a worker: U+FFFD, the
/// replacement character. PostgreSQL cannot store U+0000 in `text` (SQLSTATE 22021) nor in a
/// `jsonb` string (22P05).
pub(crate) const NUL_REPLACEMENT: &str = "\u{FFFD}";

/// Whether any string of `v`, object keys included, holds U+0000.
pub(crate) fn json_has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Replaces every U+0000 of `s` with [`NUL_REPLACEMENT`]; whether there was any.
pub(crate) fn replace_nul(s: &mut String) -> bool {
    if !s.contains('\0') {
        return false;
    }
    *s = s.replace('\0', NUL_REPLACEMENT);
    true
}

/// [`replace_nul`] in every string of `v`: values, and keys of objects (two keys that become
/// equal leave one of their values).
pub(crate) fn replace_nul_json(v: &mut Value) -> bool {
    match v {
        Value::String(s) => replace_nul(s),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| replace_nul_json(v) | changed),
        Value::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            for (mut k, mut v) in std::mem::take(map) {
                replace_nul(&mut k);
                replace_nul_json(&mut v);
                map.insert(k, v);
            }
            true
        }
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| replace_nul_json(v) | changed),
        _ => false,
    }
}

/// [`replace_nul`] in an optional column.
fn replace_nul_opt(s: &mut Option<String>) -> bool {
    s.as_mut().is_some_and(replace_nul)
}

fn ms(t: Timestamp) -> i64 {
    t.as_millis()
}

pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(format!("{what} {v} does not fit a SQL BIGINT")))
}

impl RawTask {
    /// The row for `task`.
    pub fn from_task(t: &Task) -> Result<RawTask> {
        let json = |v: &dyn erased::Ser| v.to_value();
        Ok(RawTask {
            job: t.job.to_string(),
            id: t.id.to_string(),
            status: i16::from(t.status.code()),
            stage: t.stage.clone(),
            stages: json(&t.stages)?,
            attempts: i64::from(t.attempts),
            max_attempts: i64::from(t.max_attempts),
            priority: t.priority,
            not_before: t.not_before.map(ms),
            claim_at: t.claimable_at().map(ms),
            lease_owner: t.lease.as_ref().map(|l| l.owner.clone()),
            lease_token: t
                .lease
                .as_ref()
                .map(|l| to_i64("lease token", l.token))
                .transpose()?,
            lease_acquired_at: t.lease.as_ref().map(|l| ms(l.acquired_at)),
            lease_expires_at: t.lease.as_ref().map(|l| ms(l.expires_at)),
            token: to_i64("token", t.token)?,
            version: to_i64("version", t.version)?,
            data: t.data.clone(),
            output: t.output.clone(),
            error_kind: t.error.as_ref().map(|e| e.kind.clone()),
            error_message: t.error.as_ref().map(|e| e.message.clone()),
            error_detail: t.error.as_ref().and_then(|e| e.detail.clone()),
            history: json(&t.history)?,
            created_at: ms(t.created_at),
            updated_at: ms(t.updated_at),
            started_at: t.started_at.map(ms),
            finished_at: t.finished_at.map(ms),
        })
    }

    /// Replaces U+0000 with U+FFFD ([`NUL_REPLACEMENT`]) in the columns that hold what a worker
    /// or a person reported: `output`, `error_kind`, `error_message`, `error_detail`, `history`
    /// (every JSON string, keys included) and `lease_owner`. Not in `data` (input, never altered:
    /// the PostgreSQL store refuses it instead), nor in the keys and stage names (the core
    /// refuses control characters in those). Whether anything changed. PostgreSQL only: MySQL
    /// stores U+0000 as is.
    pub(crate) fn replace_nul(&mut self) -> bool {
        let mut changed = false;
        if let Some(output) = &mut self.output {
            changed |= replace_nul_json(output);
        }
        changed |= replace_nul_opt(&mut self.error_kind);
        changed |= replace_nul_opt(&mut self.error_message);
        changed |= replace_nul_opt(&mut self.error_detail);
        changed |= replace_nul_json(&mut self.history);
        changed |= replace_nul_opt(&mut self.lease_owner);
        changed
    }

    /// The task this row holds; an unreadable row is [`Error::Corrupt`] naming `table/job/id`.
    pub fn into_task(self, table: &str) -> Result<Task> {
        let location = format!("{table} row ({:?}, {:?})", self.job, self.id);
        let corrupt = |m: String| Error::corrupt(&location, m);
        let u32_of = |what: &str, v: i64| {
            u32::try_from(v).map_err(|_| corrupt(format!("{what} {v} out of range")))
        };
        let u64_of = |what: &str, v: i64| {
            u64::try_from(v).map_err(|_| corrupt(format!("{what} {v} out of range")))
        };
        let ts = Timestamp::from_millis;
        let status = u8::try_from(self.status)
            .ok()
            .and_then(Status::from_code)
            .ok_or_else(|| corrupt(format!("unknown status code {}", self.status)))?;
        let lease = match (
            self.lease_owner,
            self.lease_token,
            self.lease_acquired_at,
            self.lease_expires_at,
        ) {
            (Some(owner), Some(token), Some(acquired), Some(expires)) => Some(LeaseState {
                owner,
                token: u64_of("lease token", token)?,
                acquired_at: ts(acquired),
                expires_at: ts(expires),
            }),
            (None, None, None, None) => None,
            _ => return Err(corrupt("lease columns are partly NULL".into())),
        };
        let error = match (self.error_kind, self.error_message) {
            (Some(kind), Some(message)) => Some(Failure {
                kind,
                message,
                detail: self.error_detail,
            }),
            (None, _) => None,
            (Some(_), None) => return Err(corrupt("error_kind without error_message".into())),
        };
        fn parse<T: serde::de::DeserializeOwned>(
            what: &str,
            v: Value,
            location: &str,
        ) -> Result<T> {
            serde_json::from_value(v).map_err(|e| Error::corrupt(location, format!("{what}: {e}")))
        }
        Ok(Task {
            job: self.job.parse().map_err(|e| corrupt(format!("job: {e}")))?,
            id: TaskId::new(self.id.clone()).map_err(|e| corrupt(format!("id: {e}")))?,
            status,
            stage: self.stage,
            stages: parse("stages", self.stages, &location)?,
            attempts: u32_of("attempts", self.attempts)?,
            max_attempts: u32_of("max_attempts", self.max_attempts)?,
            priority: self.priority,
            not_before: self.not_before.map(ts),
            lease,
            token: u64_of("token", self.token)?,
            version: u64_of("version", self.version)?,
            data: self.data,
            output: self.output,
            error,
            history: parse("history", self.history, &location)?,
            created_at: ts(self.created_at),
            updated_at: ts(self.updated_at),
            started_at: self.started_at.map(ts),
            finished_at: self.finished_at.map(ts),
        })
    }
}

/// A tiny helper so `from_task` can serialize fields of different types through one closure.
mod erased {
    use tasktrack_core::{Error, Result};

    pub trait Ser {
        fn to_value(&self) -> Result<serde_json::Value>;
    }

    impl<T: serde::Serialize> Ser for T {
        fn to_value(&self) -> Result<serde_json::Value> {
            serde_json::to_value(self)
                .map_err(|e| Error::backend(format!("cannot encode task field: {e}")))
        }
    }
}

/// Binds every column of `r` in [`FIELDS`] order; `json` is how the dialect passes a JSON column
/// (`jsonb`, or text).
pub(crate) fn bind_task<'q, DB, J>(
    q: Query<'q, DB, DB::Arguments>,
    r: &'q RawTask,
    json: fn(&'q Value) -> J,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    J: Encode<'q, DB> + Type<DB>,
    Option<J>: Encode<'q, DB> + Type<DB>,
    i16: Encode<'q, DB> + Type<DB>,
    i32: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    q.bind(r.status)
        .bind(r.stage.as_deref())
        .bind(json(&r.stages))
        .bind(r.attempts)
        .bind(r.max_attempts)
        .bind(r.priority)
        .bind(r.not_before)
        .bind(r.claim_at)
        .bind(r.lease_owner.as_deref())
        .bind(r.lease_token)
        .bind(r.lease_acquired_at)
        .bind(r.lease_expires_at)
        .bind(r.token)
        .bind(r.version)
        .bind(json(&r.data))
        .bind(r.output.as_ref().map(json))
        .bind(r.error_kind.as_deref())
        .bind(r.error_message.as_deref())
        .bind(r.error_detail.as_deref())
        .bind(json(&r.history))
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.job.as_str())
        .bind(r.id.as_str())
}

/// How a dialect decodes the columns whose driver type differs: names (`text`, or `VARBINARY`
/// checked as UTF-8) and JSON (`jsonb`, or text). `None` is SQL NULL.
pub(crate) struct ColumnReaders<R> {
    /// A name column (`job`, `id`, `stage`).
    pub name: fn(&R, &str) -> std::result::Result<Option<String>, sqlx::Error>,
    /// A JSON column (`stages`, `data`, `output`, `history`).
    pub json: fn(&R, &str) -> std::result::Result<Option<Value>, sqlx::Error>,
}

/// A value of a NOT NULL column read as nullable.
fn required<T>(name: &str, v: Option<T>) -> std::result::Result<T, sqlx::Error> {
    v.ok_or_else(|| sqlx::Error::ColumnDecode {
        index: name.to_string(),
        source: "NULL".into(),
    })
}

/// Reads a task row (any statement returning the task table's columns).
pub(crate) fn read_task<R>(
    row: &R,
    read: &ColumnReaders<R>,
) -> std::result::Result<RawTask, sqlx::Error>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> i16: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    let name = |c: &str| required(c, (read.name)(row, c)?);
    let json = |c: &str| required(c, (read.json)(row, c)?);
    Ok(RawTask {
        job: name("job")?,
        id: name("id")?,
        status: row.try_get("status")?,
        stage: (read.name)(row, "stage")?,
        stages: json("stages")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        priority: row.try_get("priority")?,
        not_before: row.try_get("not_before")?,
        claim_at: row.try_get("claim_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_token: row.try_get("lease_token")?,
        lease_acquired_at: row.try_get("lease_acquired_at")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        token: row.try_get("token")?,
        version: row.try_get("version")?,
        data: json("data")?,
        output: (read.json)(row, "output")?,
        error_kind: row.try_get("error_kind")?,
        error_message: row.try_get("error_message")?,
        error_detail: row.try_get("error_detail")?,
        history: json("history")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
