//! MySQL rows ⇄ [`RawTask`]: names are `VARBINARY` (checked as UTF-8), JSON is text; and the
//! binder of every statement's parameters.

use crate::common::rows::{self, ColumnReaders};
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
    rows::bind_task(q, r, text)
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

const READERS: ColumnReaders<MySqlRow> = ColumnReaders {
    name: |row, c| {
        let bytes: Option<Vec<u8>> = row.try_get(c)?;
        bytes.map(|b| utf8(c, b)).transpose()
    },
    json,
};

/// Reads a task row.
pub fn read_task(row: &MySqlRow) -> Result<RawTask, sqlx::Error> {
    rows::read_task(row, &READERS)
}

/// Reads a VARBINARY name column.
pub fn read_name(row: &MySqlRow, name: &str) -> Result<String, sqlx::Error> {
    utf8(name, row.try_get(name)?)
}
