//! The MySQL / MariaDB side of the conditional-write path ([`Dialect`]): `?` placeholders, JSON
//! and names as text and `VARBINARY`, `INSERT IGNORE` (with `RETURNING` on MariaDB only),
//! status sets as `IN` lists. The [`Documents`](tasktrack_core::cas::Documents) logic itself is
//! shared (`common/docs.rs`).

use super::rows::{bind_param, read_name, read_task};
use super::{BACKEND, MySqlStore};
use crate::common::docs::{PURGE_BATCH, Queries, documents_over_dialect};
use crate::common::{Dialect, Param, RawTask, Stmt};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::mysql::MySqlRow;
use std::sync::Arc;
use tasktrack_core::*;

impl MySqlStore {
    /// `st` as a driver query.
    pub(super) fn query<'q>(
        &self,
        st: &'q Stmt<'_>,
    ) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
        st.params().iter().fold(sqlx::query(st.sql()), bind_param)
    }
}

#[async_trait]
impl Dialect for MySqlStore {
    const BACKEND: &'static str = BACKEND;
    const NUMBERED_PLACEHOLDERS: bool = false;
    type Row = MySqlRow;

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn queries(&self) -> &Queries {
        &self.q
    }

    fn names(&self) -> &str {
        &self.prefix
    }

    async fn execute(&self, idempotent: bool, st: &Stmt<'_>) -> Result<u64> {
        let done = self
            .run(idempotent, || self.query(st).execute(&self.pool))
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch(&self, idempotent: bool, st: &Stmt<'_>) -> Result<Vec<MySqlRow>> {
        self.run(idempotent, || self.query(st).fetch_all(&self.pool))
            .await
    }

    fn read_task(row: &MySqlRow) -> std::result::Result<RawTask, sqlx::Error> {
        read_task(row)
    }

    fn read_text(row: &MySqlRow, column: &str) -> std::result::Result<String, sqlx::Error> {
        read_name(row, column)
    }

    fn read_int(row: &MySqlRow, column: &str) -> std::result::Result<i64, sqlx::Error> {
        row.try_get(column)
    }

    fn read_count(row: &MySqlRow) -> std::result::Result<(String, i16, i64), sqlx::Error> {
        Ok((
            read_name(row, "stage_key")?,
            row.try_get("status")?,
            row.try_get("n")?,
        ))
    }

    fn read_doc(&self, row: &MySqlRow) -> Result<Value> {
        let doc: String = row.try_get("doc").map_err(|e| self.err(&e))?;
        serde_json::from_str(&doc).map_err(|e| Error::corrupt(format!("{}job", self.prefix), e))
    }

    fn job_doc(job: &Job) -> Result<Param<'static>> {
        let doc = serde_json::to_string(job).map_err(Error::backend)?;
        Ok(Param::Text(doc.into()))
    }

    fn insert_skipping(&self) -> (&'static str, &'static str) {
        ("INSERT IGNORE INTO", "")
    }

    /// MariaDB answers `INSERT IGNORE … RETURNING`; MySQL 8 does not.
    fn insert_returns(&self) -> bool {
        self.mariadb
    }

    fn push_status_in(&self, st: &mut Stmt<'_>, codes: Vec<i16>) {
        st.push(" AND status IN (");
        for (i, code) in codes.into_iter().enumerate() {
            if i > 0 {
                st.push(", ");
            }
            st.push_param(Param::Status(code));
        }
        st.push(")");
    }

    /// Byte-wise prefix test on VARBINARY: no LIKE, so no wildcard escaping.
    fn push_id_prefix<'a>(&self, st: &mut Stmt<'a>, prefix: &'a str) {
        let len = i64::try_from(prefix.len()).unwrap_or(i64::MAX);
        st.push(" AND SUBSTRING(id, 1, ")
            .push_param(len)
            .push(") = ")
            .push_param(prefix);
    }

    /// Status codes are small integers from the enum, safe to inline.
    fn purge_batch<'a>(&'a self, job: &'a str, codes: &[i16], older_than: i64) -> Stmt<'a> {
        let codes: Vec<String> = codes.iter().map(i16::to_string).collect();
        let sql: Arc<str> = self
            .native
            .purge_batch
            .replace("{statuses}", &codes.join(", "))
            .into();
        Stmt::stored(&sql)
            .bind(job)
            .bind(older_than)
            .bind(PURGE_BATCH)
    }
}

documents_over_dialect!(MySqlStore);
