//! [`Documents`] for PostgreSQL: rows read with their `version`, written back only if unchanged.
//! The [`tasktrack_core::cas`] functions drive these for every operation not restated natively.

use super::rows::{FIELDS, bind_task, read_task};
use super::{BACKEND, PgStore};
use crate::common::{RawTask, count_entry, version_of, versioned_job, versioned_task};
use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row};
use std::collections::HashSet;
use tasktrack_core::cas::{Documents, Versioned};
use tasktrack_core::*;

impl PgStore {
    fn job_from_doc(&self, doc: Json<serde_json::Value>) -> Result<Job> {
        serde_json::from_value(doc.0).map_err(|e| Error::corrupt(format!("{}job", self.t), e))
    }

    fn read_tasks(&self, rows: &[sqlx::postgres::PgRow]) -> Result<Vec<Task>> {
        let table = self.table();
        rows.iter()
            .map(|r| {
                read_task(r)
                    .map_err(|e| self.err(&e))
                    .and_then(|raw| raw.into_task(&table))
            })
            .collect()
    }
}

#[async_trait]
impl Documents for PgStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        let row = self
            .run(true, || {
                sqlx::query(AssertSqlSafe(self.q.get_task.clone()))
                    .bind(key.job.as_str())
                    .bind(key.id.as_str())
                    .fetch_optional(&self.pool)
            })
            .await?;
        match row {
            Some(row) => Ok(self.read_tasks(&[row])?.pop().map(versioned_task)),
            None => Ok(None),
        }
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        Ok(self
            .insert_tasks(std::slice::from_ref(task))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// One multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` per chunk: bulk create is one
    /// round trip per 1000 tasks, and says exactly which ones were new.
    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        let mut flags = Vec::with_capacity(tasks.len());
        for chunk in tasks.chunks(1000) {
            let raws = chunk
                .iter()
                .map(RawTask::from_task)
                .collect::<Result<Vec<_>>>()?;
            let rows = self
                .run(false, || {
                    let head = format!("INSERT INTO {} ({}) ", self.table(), FIELDS.join(", "));
                    let raws = &raws;
                    async move {
                        let mut qb = QueryBuilder::<Postgres>::new(head);
                        qb.push_values(raws.iter(), |mut b, r| {
                            b.push_bind(r.status)
                                .push_bind(r.stage.clone())
                                .push_bind(Json(r.stages.clone()))
                                .push_bind(r.attempts)
                                .push_bind(r.max_attempts)
                                .push_bind(r.priority)
                                .push_bind(r.not_before)
                                .push_bind(r.claim_at)
                                .push_bind(r.lease_owner.clone())
                                .push_bind(r.lease_token)
                                .push_bind(r.lease_acquired_at)
                                .push_bind(r.lease_expires_at)
                                .push_bind(r.token)
                                .push_bind(r.version)
                                .push_bind(Json(r.data.clone()))
                                .push_bind(r.output.clone().map(Json))
                                .push_bind(r.error_kind.clone())
                                .push_bind(r.error_message.clone())
                                .push_bind(r.error_detail.clone())
                                .push_bind(Json(r.history.clone()))
                                .push_bind(r.created_at)
                                .push_bind(r.updated_at)
                                .push_bind(r.started_at)
                                .push_bind(r.finished_at)
                                .push_bind(r.job.clone())
                                .push_bind(r.id.clone());
                        });
                        qb.push(" ON CONFLICT (job, id) DO NOTHING RETURNING id");
                        qb.build().fetch_all(&self.pool).await
                    }
                })
                .await?;
            let mut new_ids = HashSet::with_capacity(rows.len());
            for row in rows {
                new_ids.insert(row.try_get::<String, _>("id").map_err(|e| self.err(&e))?);
            }
            flags.extend(chunk.iter().map(|t| new_ids.contains(t.id.as_str())));
        }
        Ok(flags)
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let raw = RawTask::from_task(new)?;
        let expected = version_of(old.value.version)?;
        let done = self
            .run(false, || {
                bind_task(
                    sqlx::query(AssertSqlSafe(self.q.replace_task.clone())),
                    &raw,
                )
                .bind(expected)
                .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let expected = version_of(old.value.version)?;
        let done = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.q.delete_task.clone()))
                    .bind(old.value.job.as_str())
                    .bind(old.value.id.as_str())
                    .bind(expected)
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .run(true, || {
                let sql = if stage.is_some() {
                    &self.q.claimable_stage
                } else {
                    &self.q.claimable
                };
                let mut q = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(job.as_str())
                    .bind(now.as_millis())
                    .bind(limit);
                if let Some(s) = stage {
                    q = q.bind(s);
                }
                q.fetch_all(&self.pool)
            })
            .await?;
        Ok(self
            .read_tasks(&rows)?
            .into_iter()
            .map(versioned_task)
            .collect())
    }

    /// Keyset pagination on `(updated_at, id)` over the `{prefix}task_updated` index; never OFFSET.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let codes: Vec<i16> = query.statuses.iter().map(|s| i16::from(s.code())).collect();
        let limit = i64::try_from(query.limit)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        let rows = self
            .run(true, || {
                let codes = codes.clone();
                let head = format!("SELECT * FROM {} WHERE job = ", self.table());
                async move {
                    let mut qb = QueryBuilder::<Postgres>::new(head);
                    qb.push_bind(query.job.as_str());
                    if !codes.is_empty() {
                        qb.push(" AND status = ANY(").push_bind(codes).push(")");
                    }
                    if let Some(stage) = &query.stage {
                        qb.push(" AND stage = ").push_bind(stage.as_str());
                    }
                    if let Some(p) = &query.id_prefix {
                        qb.push(" AND starts_with(id, ")
                            .push_bind(p.as_str())
                            .push(")");
                    }
                    if let Some(t) = query.updated_after {
                        qb.push(" AND updated_at >= ").push_bind(t.as_millis());
                    }
                    if let Some(t) = query.updated_before {
                        qb.push(" AND updated_at < ").push_bind(t.as_millis());
                    }
                    let (cmp, dir) = if query.newest_first {
                        ("<", "DESC")
                    } else {
                        (">", "ASC")
                    };
                    if let Some(c) = &query.after {
                        qb.push(format!(" AND (updated_at, id) {cmp} ("))
                            .push_bind(c.updated_at.as_millis())
                            .push(", ")
                            .push_bind(c.id.as_str())
                            .push(")");
                    }
                    qb.push(format!(" ORDER BY updated_at {dir}, id {dir} LIMIT "))
                        .push_bind(limit);
                    qb.build().fetch_all(&self.pool).await
                }
            })
            .await?;
        Ok(TaskPage::from_sorted(self.read_tasks(&rows)?, query.limit))
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<(Option<String>, Status, u64)>> {
        let rows = self
            .run(true, || {
                sqlx::query(AssertSqlSafe(self.q.count_tasks.clone()))
                    .bind(job.as_str())
                    .fetch_all(&self.pool)
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get("stage_key").map_err(|e| self.err(&e))?;
            let code: i16 = row.try_get("status").map_err(|e| self.err(&e))?;
            let n: i64 = row.try_get("n").map_err(|e| self.err(&e))?;
            out.push(count_entry(
                &format!("{}task_count", self.t),
                &key,
                code,
                n,
            )?);
        }
        Ok(out)
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        let doc: Option<Json<serde_json::Value>> = self
            .run(true, || {
                sqlx::query_scalar(AssertSqlSafe(self.q.get_job.clone()))
                    .bind(job.as_str())
                    .fetch_optional(&self.pool)
            })
            .await?;
        doc.map(|d| self.job_from_doc(d).map(versioned_job))
            .transpose()
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        let version = version_of(job.version)?;
        let done = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.q.insert_job.clone()))
                    .bind(job.name.as_str())
                    .bind(job.state.as_str())
                    .bind(version)
                    .bind(Json(job))
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let (version, expected) = (version_of(new.version)?, version_of(old.value.version)?);
        let done = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.q.replace_job.clone()))
                    .bind(new.name.as_str())
                    .bind(new.state.as_str())
                    .bind(version)
                    .bind(Json(new))
                    .bind(expected)
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let expected = version_of(old.value.version)?;
        let done = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.q.delete_job.clone()))
                    .bind(old.value.name.as_str())
                    .bind(expected)
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let docs: Vec<Json<serde_json::Value>> = self
            .run(true, || match state {
                Some(s) => sqlx::query_scalar(AssertSqlSafe(self.q.list_jobs_state.clone()))
                    .bind(s.as_str())
                    .fetch_all(&self.pool),
                None => sqlx::query_scalar(AssertSqlSafe(self.q.list_jobs.clone()))
                    .fetch_all(&self.pool),
            })
            .await?;
        docs.into_iter().map(|d| self.job_from_doc(d)).collect()
    }
}
