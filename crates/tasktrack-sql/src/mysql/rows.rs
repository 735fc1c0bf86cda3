//! MySQL rows ⇄ [`RawTask`], and the binders of every statement's parameters.

use crate::common::{Param, RawTask};
use serde_json::Value;
use sqlx::mysql::{MySqlArguments, MySqlRow};
use sqlx::query::Query;
use sqlx::{MySql, Row};

type MyQuery<'q> = Query<'q, MySql, MySqlArguments>;

fn text(v: &Value) -> String {
    v.to_string()
}

/// Binds every column of `r` in [`FIELDS`](crate::common::FIELDS) order.
pub fn bind_task<'q>(q: MyQuery<'q>, r: &'q RawTask) -> MyQuery<'q> {
    q.bind(r.status)
        .bind(r.stage.as_deref())
        .bind(text(&r.stages))
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
        .bind(text(&r.data))
        .bind(r.output.as_ref().map(text))
        .bind(r.error_kind.as_deref())
        .bind(r.error_message.as_deref())
        .bind(r.error_detail.as_deref())
        .bind(text(&r.history))
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.job.as_str())
        .bind(r.id.as_str())
}

/// Binds one parameter of a shared statement: JSON as text, status codes one by one.
pub fn bind_param<'q>(q: MyQuery<'q>, p: &'q Param<'_>) -> MyQuery<'q> {
    match p {
        Param::Text(s) => q.bind(s.as_ref()),
        Param::Int(n) => q.bind(*n),
        Param::Status(c) => q.bind(*c),
        // One `?` per code (this dialect writes status sets as `IN (?, …)`).
        Param::Statuses(codes) => codes.iter().fold(q, |q, c| q.bind(*c)),
        Param::Json(v) => q.bind(text(v)),
        Param::Task(r) => bind_task(q, r),
    }
}

fn utf8(name: &str, bytes: Vec<u8>) -> Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
        index: name.to_string(),
        source: Box::new(e),
    })
}

fn json(row: &MySqlRow, name: &str) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(name)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: name.to_string(),
            source: Box::new(e),
        })
}

fn json_required(row: &MySqlRow, name: &str) -> Result<Value, sqlx::Error> {
    json(row, name)?.ok_or_else(|| sqlx::Error::ColumnDecode {
        index: name.to_string(),
        source: "NULL".into(),
    })
}

/// Reads a task row.
pub fn read_task(row: &MySqlRow) -> Result<RawTask, sqlx::Error> {
    let stage: Option<Vec<u8>> = row.try_get("stage")?;
    Ok(RawTask {
        job: utf8("job", row.try_get("job")?)?,
        id: utf8("id", row.try_get("id")?)?,
        status: row.try_get("status")?,
        stage: stage.map(|s| utf8("stage", s)).transpose()?,
        stages: json_required(row, "stages")?,
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
        data: json_required(row, "data")?,
        output: json(row, "output")?,
        error_kind: row.try_get("error_kind")?,
        error_message: row.try_get("error_message")?,
        error_detail: row.try_get("error_detail")?,
        history: json_required(row, "history")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Reads a VARBINARY name column.
pub fn read_name(row: &MySqlRow, name: &str) -> Result<String, sqlx::Error> {
    utf8(name, row.try_get(name)?)
}
