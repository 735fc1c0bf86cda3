//! PostgreSQL rows ⇄ [`RawTask`]: names are `text`, JSON is `jsonb`; and the binder of every
//! statement's parameters.

use crate::common::rows::{self, ColumnReaders};
use crate::common::{Param, RawTask};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Postgres, Row};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Binds every column of `r` in [`FIELDS`](crate::common::FIELDS) order.
pub fn bind_task<'q>(q: PgQuery<'q>, r: &'q RawTask) -> PgQuery<'q> {
    rows::bind_task(q, r, Json)
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

const READERS: ColumnReaders<PgRow> = ColumnReaders {
    name: |row, c| row.try_get(c),
    json: |row, c| Ok(row.try_get::<Option<Json<Value>>, _>(c)?.map(|j| j.0)),
};

/// Reads a task row (any statement returning the table's columns).
pub fn read_task(row: &PgRow) -> Result<RawTask, sqlx::Error> {
    rows::read_task(row, &READERS)
}
