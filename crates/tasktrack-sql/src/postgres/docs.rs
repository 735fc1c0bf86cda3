//! The PostgreSQL side of the conditional-write path ([`Dialect`]): `$n` placeholders, JSON as
//! `jsonb`, `INSERT … ON CONFLICT DO NOTHING RETURNING`, status sets as arrays. The
//! [`Documents`](tasktrack_core::cas::Documents) logic itself is shared (`common/docs.rs`).

use super::rows::{bind_param, read_task};
use super::{BACKEND, PgStore};
use crate::common::docs::{PURGE_BATCH, Queries, documents_over_dialect};
use crate::common::rows::json_has_nul;
use crate::common::{Dialect, Param, RawTask, Stmt};
use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use tasktrack_core::*;

impl PgStore {
    /// `st` as a driver query.
    fn query<'q>(
        &self,
        st: &'q Stmt<'_>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        st.params().iter().fold(sqlx::query(st.sql()), bind_param)
    }
}

#[async_trait]
impl Dialect for PgStore {
    const BACKEND: &'static str = BACKEND;
    const NUMBERED_PLACEHOLDERS: bool = true;
    type Row = PgRow;

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn queries(&self) -> &Queries {
        &self.q
    }

    fn names(&self) -> &str {
        &self.t
    }

    async fn execute(&self, idempotent: bool, st: &Stmt<'_>) -> Result<u64> {
        let done = self
            .run(idempotent, || self.query(st).execute(&self.pool))
            .await?;
        Ok(done.rows_affected())
    }

    async fn fetch(&self, idempotent: bool, st: &Stmt<'_>) -> Result<Vec<PgRow>> {
        self.run(idempotent, || self.query(st).fetch_all(&self.pool))
            .await
    }

    fn read_task(row: &PgRow) -> std::result::Result<RawTask, sqlx::Error> {
        read_task(row)
    }

    fn read_text(row: &PgRow, column: &str) -> std::result::Result<String, sqlx::Error> {
        row.try_get(column)
    }

    fn read_int(row: &PgRow, column: &str) -> std::result::Result<i64, sqlx::Error> {
        row.try_get(column)
    }

    fn read_count(row: &PgRow) -> std::result::Result<(String, i16, i64), sqlx::Error> {
        Ok((
            row.try_get("stage_key")?,
            row.try_get("status")?,
            row.try_get("n")?,
        ))
    }

    fn read_doc(&self, row: &PgRow) -> Result<Value> {
        let doc: Json<Value> = row.try_get("doc").map_err(|e| self.err(&e))?;
        Ok(doc.0)
    }

    fn job_doc(job: &Job) -> Result<Param<'static>> {
        Ok(Param::Json(
            serde_json::to_value(job).map_err(Error::backend)?,
        ))
    }

    /// PostgreSQL cannot store U+0000 (NUL) in `text` nor in a `jsonb` string. In what workers
    /// and people report (output, error, history, lease owner) it is replaced with U+FFFD, so
    /// that the outcome is recorded; a task's `data` is input and is refused instead, naming the
    /// task, before anything is sent.
    fn storable(&self, row: &mut RawTask) -> Result<()> {
        self.check_data(&row.job, &row.id, &row.data)?;
        row.replace_nul();
        Ok(())
    }

    fn check_data(&self, job: &str, id: &str, data: &Value) -> Result<()> {
        if json_has_nul(data) {
            return Err(Error::invalid(format!(
                "task {job}/{id}: its data holds the character U+0000 (NUL), which PostgreSQL \
                 cannot store (in jsonb); nothing was written for it"
            )));
        }
        Ok(())
    }

    fn as_stored(&self, task: Task) -> Result<Task> {
        let mut row = RawTask::from_task(&task)?;
        if row.replace_nul() {
            row.into_task(&self.table())
        } else {
            Ok(task)
        }
    }

    fn insert_skipping(&self) -> (&'static str, &'static str) {
        ("INSERT INTO", " ON CONFLICT (job, id) DO NOTHING")
    }

    fn insert_returns(&self) -> bool {
        true
    }

    fn push_status_in(&self, st: &mut Stmt<'_>, codes: Vec<i16>) {
        st.push(" AND status = ANY(")
            .push_param(Param::Statuses(codes))
            .push(")");
    }

    fn push_id_prefix<'a>(&self, st: &mut Stmt<'a>, prefix: &'a str) {
        st.push(" AND starts_with(id, ")
            .push_param(prefix)
            .push(")");
    }

    fn purge_batch<'a>(&'a self, job: &'a str, codes: &[i16], older_than: i64) -> Stmt<'a> {
        Stmt::stored(&self.native.purge_batch)
            .bind(job)
            .bind(Param::Statuses(codes.to_vec()))
            .bind(older_than)
            .bind(PURGE_BATCH)
    }
}

documents_over_dialect!(PgStore);
