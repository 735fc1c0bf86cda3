//! [`Documents`] for both dialects: rows read with their `version`, written back only if
//! unchanged. The [`tasktrack_core::cas`] functions drive these for every operation a dialect does
//! not restate natively. Written once over [`Dialect`]; `documents_over_dialect!` makes each
//! store's `impl Documents` from them.
//!
//! [`Documents`]: tasktrack_core::cas::Documents

use super::dialect::{Dialect, Param, Stmt};
use super::rows::FIELDS;
use super::{RawTask, count_entry, purge_targets, version_of, versioned_job, versioned_task};
use std::collections::HashSet;
use std::sync::Arc;
use tasktrack_core::cas::{Documents, Versioned};
use tasktrack_core::*;

/// Fills a struct of statements from `queries/<dir>/<field>.sql`, each passed through `render`
/// (which fills in the table names).
macro_rules! load_queries {
    ($ty:ident, $dir:literal, $render:expr, [$($name:ident),* $(,)?]) => {
        $ty {
            $($name: $render(include_str!(concat!(
                "../../queries/", $dir, "/", stringify!($name), ".sql"
            ))),)*
        }
    };
}

/// Declares a dialect's own statements, read from `queries/<dir>/<field>.sql` by `load`. Each
/// statement after `at_stage` is the one it names with its stage filter turned on
/// ([`at_stage`]), so a claim at a stage restates nothing.
macro_rules! dialect_queries {
    (
        $(#[$doc:meta])* $ty:ident in $dir:literal { $($name:ident),* $(,)? }
        at_stage { $($staged:ident <- $base:ident),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug)]
        struct $ty {
            $($name: std::sync::Arc<str>,)*
            $($staged: std::sync::Arc<str>,)*
        }

        impl $ty {
            fn load(render: impl Fn(&str) -> std::sync::Arc<str>) -> $ty {
                $(let $name = render(include_str!(concat!(
                    "../../queries/", $dir, "/", stringify!($name), ".sql"
                )));)*
                $(let $staged = $crate::common::docs::at_stage(&$base);)*
                $ty { $($name,)* $($staged,)* }
            }
        }
    };
}
pub(crate) use dialect_queries;

/// `sql` with its stage filter turned on: every `/*stage: … */` comment replaced by what it holds.
/// A claim's statement carries the filter a claim at a stage adds as such a comment, which the
/// database ignores, so that one file serves both claims (`queries/*/claim_*.sql`, `handoff*.sql`).
pub(crate) fn at_stage(sql: &str) -> Arc<str> {
    const OPEN: &str = "/*stage:";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find(OPEN) {
        let inner = &rest[start + OPEN.len()..];
        let Some(end) = inner.find("*/") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&inner[..end]);
        rest = &inner[end + 2..];
    }
    out.push_str(rest);
    out.into()
}

/// Declares the statements both dialects have, and how each dialect loads them.
macro_rules! shared_queries {
    ($($name:ident),* $(,)?) => {
        /// The statements both dialects have (each in its own `queries/<dialect>/`), with the
        /// table names filled in once at open.
        #[derive(Debug)]
        pub(crate) struct Queries {
            $(pub(crate) $name: Arc<str>,)*
        }

        impl Queries {
            /// `queries/postgres/`.
            pub(crate) fn postgres(render: impl Fn(&str) -> Arc<str>) -> Queries {
                load_queries!(Queries, "postgres", render, [$($name),*])
            }

            /// `queries/mysql/`.
            pub(crate) fn mysql(render: impl Fn(&str) -> Arc<str>) -> Queries {
                load_queries!(Queries, "mysql", render, [$($name),*])
            }
        }
    };
}

shared_queries!(
    get_task,
    replace_task,
    delete_task,
    delete_damaged,
    claimable,
    claimable_stage,
    count_tasks,
    get_job,
    insert_job,
    replace_job,
    delete_job,
    list_jobs,
    list_jobs_state,
);

/// Writes `impl Documents for $store` from the functions of this module: the store implements
/// [`Dialect`], and this is the whole of its conditional-write path.
macro_rules! documents_over_dialect {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl tasktrack_core::cas::Documents for $store {
            fn backend(&self) -> &'static str {
                <$store as $crate::common::dialect::Dialect>::BACKEND
            }
            async fn get_task(
                &self,
                key: &TaskKey,
            ) -> Result<Option<tasktrack_core::cas::Versioned<Task>>> {
                $crate::common::docs::get_task(self, key).await
            }
            async fn insert_task(&self, task: &Task) -> Result<bool> {
                $crate::common::docs::insert_task(self, task).await
            }
            fn check_new_tasks(&self, tasks: &[Task]) -> Result<()> {
                for task in tasks {
                    $crate::common::Dialect::check_data(
                        self,
                        task.job.as_str(),
                        task.id.as_str(),
                        &task.data,
                    )?;
                }
                Ok(())
            }
            async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
                $crate::common::docs::insert_tasks(self, tasks).await
            }
            async fn replace_task(
                &self,
                old: &tasktrack_core::cas::Versioned<Task>,
                new: &Task,
            ) -> Result<bool> {
                $crate::common::docs::replace_task(self, old, new).await
            }
            async fn delete_task(
                &self,
                old: &tasktrack_core::cas::Versioned<Task>,
            ) -> Result<bool> {
                $crate::common::docs::delete_task(self, old).await
            }
            async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
                $crate::common::docs::delete_damaged(self, key).await
            }
            async fn claimable(
                &self,
                job: &JobName,
                stage: Option<&str>,
                now: Timestamp,
                limit: usize,
            ) -> Result<Vec<tasktrack_core::cas::Versioned<Task>>> {
                $crate::common::docs::claimable(self, job, stage, now, limit).await
            }
            async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
                $crate::common::docs::list_tasks(self, query).await
            }
            async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
                $crate::common::docs::count_tasks(self, job).await
            }
            async fn get_job(
                &self,
                job: &JobName,
            ) -> Result<Option<tasktrack_core::cas::Versioned<Job>>> {
                $crate::common::docs::get_job(self, job).await
            }
            async fn insert_job(&self, job: &Job) -> Result<bool> {
                $crate::common::docs::insert_job(self, job).await
            }
            async fn replace_job(
                &self,
                old: &tasktrack_core::cas::Versioned<Job>,
                new: &Job,
            ) -> Result<bool> {
                $crate::common::docs::replace_job(self, old, new).await
            }
            async fn delete_job(&self, old: &tasktrack_core::cas::Versioned<Job>) -> Result<bool> {
                $crate::common::docs::delete_job(self, old).await
            }
            async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
                $crate::common::docs::list_jobs(self, state).await
            }
        }
    };
}
pub(crate) use documents_over_dialect;

/// The tasks held by `rows`; an unreadable one is an error naming the table and the row.
pub(crate) fn read_tasks<D: Dialect>(s: &D, rows: &[D::Row]) -> Result<Vec<Task>> {
    let table = s.table();
    rows.iter().map(|r| read_one(s, &table, r)).collect()
}

/// The task `row` holds. A column that does not decode at all (MySQL: JSON text that does not
/// parse) is `Corrupt` naming the row, as one that decodes into no task is.
pub(crate) fn read_one<D: Dialect>(s: &D, table: &str, row: &D::Row) -> Result<Task> {
    let e = match D::read_task(row) {
        Ok(raw) => return raw.into_task(table),
        Err(e) => e,
    };
    Err(
        match (s.err(&e), D::read_text(row, "job"), D::read_text(row, "id")) {
            (Error::Corrupt { location, message }, Ok(job), Ok(id)) => Error::corrupt(
                format!("{table} row ({job:?}, {id:?})"),
                format!("{location}: {message}"),
            ),
            (other, ..) => other,
        },
    )
}

/// The entries of a listing held by `rows`, in their order (see [`listed_one`]).
fn read_listed<D: Dialect>(s: &D, rows: &[D::Row]) -> Result<Vec<Listed>> {
    let table = s.table();
    rows.iter().map(|r| listed_one(s, &table, r)).collect()
}

/// A row of a listing: its task, or, when the row does not decode, its place in the listing
/// order and the `Corrupt` error naming it, for the page to name it
/// ([`TaskPage::unreadable`]) instead of failing the list and hiding the rest of the job. The
/// place is read from the plain columns `updated_at` and `id`, which no damage to the JSON
/// columns reaches; they are read only for such a row, so a healthy page costs nothing more. A
/// row whose place cannot be read either (an id that is not a task id) is `Corrupt` as before,
/// and so is any error other than `Corrupt`.
fn listed_one<D: Dialect>(s: &D, table: &str, row: &D::Row) -> Result<Listed> {
    let error = match read_one(s, table, row) {
        Ok(task) => return Ok(Listed::Task(task)),
        Err(error @ Error::Corrupt { .. }) => error,
        Err(other) => return Err(other),
    };
    let place = D::read_text(row, "id")
        .ok()
        .zip(D::read_int(row, "updated_at").ok());
    place
        .and_then(|(id, ms)| Listed::unreadable_at(&id, Timestamp::from_millis(ms), &error))
        .ok_or(error)
}

fn read_job<D: Dialect>(s: &D, row: &D::Row) -> Result<Job> {
    let doc = s.read_doc(row)?;
    serde_json::from_value(doc).map_err(|e| Error::corrupt(format!("{}job", s.names()), e))
}

pub(crate) async fn get_task<D: Dialect>(s: &D, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
    let st = Stmt::stored(&s.queries().get_task)
        .bind(key.job.as_str())
        .bind(key.id.as_str());
    let rows = s.fetch(true, &st).await?;
    Ok(read_tasks(s, &rows)?.pop().map(versioned_task))
}

pub(crate) async fn insert_task<D: Dialect>(s: &D, task: &Task) -> Result<bool> {
    Ok(insert_tasks(s, std::slice::from_ref(task))
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}

/// One multi-row insert skipping existing keys, `RETURNING id`, per chunk of at most 1000 of
/// `tasks`, saying exactly which ones were new. The adapter's bulk create
/// ([`tasktrack_core::cas::create`]) calls this with at most 500 tasks at a time, so a create is
/// one statement (one round trip) per 500 tasks. Where the insert cannot answer `RETURNING`
/// (MySQL 8), one insert per task says it by its row count.
pub(crate) async fn insert_tasks<D: Dialect>(s: &D, tasks: &[Task]) -> Result<Vec<bool>> {
    let (head, tail) = s.insert_skipping();
    let head = format!("{head} {} ({}) VALUES ", s.table(), FIELDS.join(", "));
    let mut flags = Vec::with_capacity(tasks.len());
    for chunk in tasks.chunks(1000) {
        let raws = chunk
            .iter()
            .map(|t| {
                let mut raw = RawTask::from_task(t)?;
                s.storable(&mut raw)?;
                Ok(raw)
            })
            .collect::<Result<Vec<_>>>()?;
        if !s.insert_returns() {
            for r in raws.chunks(1) {
                let mut st = Stmt::build::<D>(head.clone());
                st.push_rows(r).push(tail);
                flags.push(s.execute(false, &st).await? == 1);
            }
            continue;
        }
        let mut st = Stmt::build::<D>(head.clone());
        st.push_rows(&raws).push(tail).push(" RETURNING id");
        let rows = s.fetch(false, &st).await?;
        let mut new_ids = HashSet::with_capacity(rows.len());
        for row in &rows {
            new_ids.insert(D::read_text(row, "id").map_err(|e| s.err(&e))?);
        }
        // An id given twice was inserted once, by its first entry: the later one exists.
        flags.extend(chunk.iter().map(|t| new_ids.remove(t.id.as_str())));
    }
    Ok(flags)
}

pub(crate) async fn replace_task<D: Dialect>(
    s: &D,
    old: &Versioned<Task>,
    new: &Task,
) -> Result<bool> {
    let mut raw = RawTask::from_task(new)?;
    s.storable(&mut raw)?;
    // Version and creation time: a row deleted and created again under its id starts again at
    // version 1 (`cas::task_revision`).
    let st = Stmt::stored(&s.queries().replace_task)
        .bind(Param::Task(&raw))
        .bind(version_of(old.value.version)?)
        .bind(old.value.created_at.as_millis());
    Ok(s.execute(false, &st).await? == 1)
}

pub(crate) async fn delete_task<D: Dialect>(s: &D, old: &Versioned<Task>) -> Result<bool> {
    let st = Stmt::stored(&s.queries().delete_task)
        .bind(old.value.job.as_str())
        .bind(old.value.id.as_str())
        .bind(version_of(old.value.version)?)
        .bind(old.value.created_at.as_millis());
    Ok(s.execute(false, &st).await? == 1)
}

/// Deletes the row at `key` that [`get_task`] found damaged, unconditionally
/// (`delete_damaged.sql`): a row that does not decode has no version or lease the store could
/// check. The counter triggers read only its `job`, `stage` and `status` columns, apart from the
/// JSON that no longer decodes, so counts move with it as with any delete, set aside or not.
/// `false` if no row was there.
pub(crate) async fn delete_damaged<D: Dialect>(s: &D, key: &TaskKey) -> Result<bool> {
    let st = Stmt::stored(&s.queries().delete_damaged)
        .bind(key.job.as_str())
        .bind(key.id.as_str());
    Ok(s.execute(false, &st).await? == 1)
}

pub(crate) async fn claimable<D: Dialect>(
    s: &D,
    job: &JobName,
    stage: Option<&str>,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Versioned<Task>>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let q = s.queries();
    let st = match stage {
        Some(stage) => Stmt::stored(&q.claimable_stage)
            .bind(job.as_str())
            .bind(stage),
        None => Stmt::stored(&q.claimable).bind(job.as_str()),
    }
    .bind(now.as_millis())
    .bind(limit);
    let rows = s.fetch(true, &st).await?;
    Ok(read_tasks(s, &rows)?
        .into_iter()
        .map(versioned_task)
        .collect())
}

/// Keyset pagination on `(updated_at, id)` over the `{prefix}task_updated` index; never OFFSET.
/// A row that does not decode is named in the page's `unreadable` at its place in that order
/// (its `updated_at` and `id` columns, [`listed_one`]), matched against the filters by its
/// columns like any row, and counts towards the page's `limit` like a task, so that `next`
/// moves past it and a walk through the pages names it once.
pub(crate) async fn list_tasks<D: Dialect>(s: &D, query: &TaskQuery) -> Result<TaskPage> {
    let limit = i64::try_from(query.limit)
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    let mut st = Stmt::build::<D>(format!("SELECT * FROM {} WHERE job = ", s.table()));
    st.push_param(query.job.as_str());
    if !query.statuses.is_empty() {
        let codes = query.statuses.iter().map(|s| i16::from(s.code())).collect();
        s.push_status_in(&mut st, codes);
    }
    if let Some(stage) = &query.stage {
        st.push(" AND stage = ").push_param(stage.as_str());
    }
    if let Some(p) = &query.id_prefix {
        s.push_id_prefix(&mut st, p.as_str());
    }
    if let Some(t) = query.updated_after {
        st.push(" AND updated_at >= ").push_param(t.as_millis());
    }
    if let Some(t) = query.updated_before {
        st.push(" AND updated_at < ").push_param(t.as_millis());
    }
    let (cmp, dir) = if query.newest_first {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some(c) = &query.after {
        st.push(&format!(" AND (updated_at, id) {cmp} ("))
            .push_param(c.updated_at.as_millis())
            .push(", ")
            .push_param(c.id.as_str())
            .push(")");
    }
    st.push(&format!(" ORDER BY updated_at {dir}, id {dir} LIMIT "))
        .push_param(limit);
    let rows = s.fetch(true, &st).await?;
    Ok(TaskPage::from_listed(read_listed(s, &rows)?, query.limit))
}

pub(crate) async fn count_tasks<D: Dialect>(s: &D, job: &JobName) -> Result<Vec<CountRow>> {
    let st = Stmt::stored(&s.queries().count_tasks).bind(job.as_str());
    let rows = s.fetch(true, &st).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let (key, code, n) = D::read_count(row).map_err(|e| s.err(&e))?;
        out.push(count_entry(&key, code, n));
    }
    Ok(out)
}

pub(crate) async fn get_job<D: Dialect>(s: &D, job: &JobName) -> Result<Option<Versioned<Job>>> {
    let st = Stmt::stored(&s.queries().get_job).bind(job.as_str());
    let rows = s.fetch(true, &st).await?;
    rows.first()
        .map(|row| read_job(s, row).map(versioned_job))
        .transpose()
}

pub(crate) async fn insert_job<D: Dialect>(s: &D, job: &Job) -> Result<bool> {
    let st = Stmt::stored(&s.queries().insert_job)
        .bind(job.name.as_str())
        .bind(job.state.as_str())
        .bind(version_of(job.version)?)
        .bind(D::job_doc(job)?);
    Ok(s.execute(false, &st).await? == 1)
}

/// `replace_job.sql` binds the new state, version and document, then the name and the version
/// read.
pub(crate) async fn replace_job<D: Dialect>(
    s: &D,
    old: &Versioned<Job>,
    new: &Job,
) -> Result<bool> {
    let st = Stmt::stored(&s.queries().replace_job)
        .bind(new.state.as_str())
        .bind(version_of(new.version)?)
        .bind(D::job_doc(new)?)
        .bind(new.name.as_str())
        .bind(version_of(old.value.version)?);
    Ok(s.execute(false, &st).await? == 1)
}

pub(crate) async fn delete_job<D: Dialect>(s: &D, old: &Versioned<Job>) -> Result<bool> {
    let st = Stmt::stored(&s.queries().delete_job)
        .bind(old.value.name.as_str())
        .bind(version_of(old.value.version)?);
    Ok(s.execute(false, &st).await? == 1)
}

pub(crate) async fn list_jobs<D: Dialect>(s: &D, state: Option<JobState>) -> Result<Vec<Job>> {
    let q = s.queries();
    let st = match state {
        Some(state) => Stmt::stored(&q.list_jobs_state).bind(state.as_str()),
        None => Stmt::stored(&q.list_jobs),
    };
    let rows = s.fetch(true, &st).await?;
    rows.iter().map(|row| read_job(s, row)).collect()
}

/// How many rows a purge deletes per statement.
pub(crate) const PURGE_BATCH: i64 = 1000;

/// Deletes the finished tasks `req` names, in batches of [`PURGE_BATCH`] rows per statement
/// (`purge_batch.sql`), so that locks stay short.
pub(crate) async fn purge<D: Dialect + Documents>(s: &D, req: &Purge) -> Result<u64> {
    req.validate()?;
    let jobs = purge_targets(s, req).await?;
    let codes: Vec<i16> = req.statuses.iter().map(|s| i16::from(s.code())).collect();
    let mut purged = 0;
    for job in jobs {
        let st = s.purge_batch(job.as_str(), &codes, req.older_than.as_millis());
        loop {
            let done = s.execute(false, &st).await?;
            purged += done;
            if done < PURGE_BATCH as u64 {
                break;
            }
        }
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::at_stage;

    #[test]
    fn at_stage_uncomments_every_stage_filter_and_nothing_else() {
        let sql = "WHERE job = ? /* a note */ /*stage: AND stage = ? */ AND at <= ? /*stage:x*/";
        assert_eq!(
            &*at_stage(sql),
            "WHERE job = ? /* a note */  AND stage = ?  AND at <= ? x"
        );
        assert_eq!(&*at_stage("no filter"), "no filter");
        assert_eq!(&*at_stage("cut /*stage: short"), "cut /*stage: short");
    }
}
