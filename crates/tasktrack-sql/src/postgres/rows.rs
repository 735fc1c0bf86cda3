//! PostgreSQL rows ⇄ [`RawTask`], and the binders of every statement's parameters.

use crate::common::{Param, RawTask};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Postgres, Row};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Binds every column of `r` in [`FIELDS`](crate::common::FIELDS) order.
pub fn bind_task<'q>(q: PgQuery<'q>, r: &'q RawTask) -> PgQuery<'q> {
    q.bind(r.status)
        .bind(r.stage.as_deref())
        .bind(Json(&r.stages))
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
        .bind(Json(&r.data))
        .bind(r.output.as_ref().map(Json))
        .bind(r.error_kind.as_deref())
        .bind(r.error_message.as_deref())
        .bind(r.error_detail.as_deref())
        .bind(Json(&r.history))
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.started_at)
        .bind(r.finished_at)
        .bind(r.job.as_str())
        .bind(r.id.as_str())
}

/// Binds one parameter of a shared statement: JSON as `jsonb`, status sets as `smallint[]`.
pub fn bind_param<'q>(q: PgQuery<'q>, p: &'q Param<'_>) -> PgQuery<'q> {
    match p {
        Param::Text(s) => q.bind(s.as_ref()),
        Param::Int(n) => q.bind(*n),
        Param::Status(c) => q.bind(*c),
        Param::Statuses(codes) => q.bind(codes.as_slice()),
        Param::Json(v) => q.bind(Json(v)),
        Param::Task(r) => bind_task(q, r),
    }
}

/// Reads a task row (any statement returning the table's columns).
pub fn read_task(row: &PgRow) -> Result<RawTask, sqlx::Error> {
    let json = |name: &str| row.try_get::<Json<Value>, _>(name).map(|j| j.0);
    Ok(RawTask {
        job: row.try_get("job")?,
        id: row.try_get("id")?,
        status: row.try_get("status")?,
        stage: row.try_get("stage")?,
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
        output: row
            .try_get::<Option<Json<Value>>, _>("output")?
            .map(|j| j.0),
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
