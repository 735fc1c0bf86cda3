//! Reads (`get`, `list`, `counts`, `jobs`) on reader connections, and the job record's writes.

use crate::db::Db;
use crate::rows::{
    JOB_COLUMNS, TASK_COLUMNS, job_from_row, listed_from_row, load_job, load_task, save_job,
};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};
use std::sync::Arc;
use tasktrack_core::lifecycle;
use tasktrack_core::*;

/// [`Store::get`].
pub(crate) async fn get(db: &Arc<Db>, key: &TaskKey) -> Result<Task> {
    let key = key.clone();
    db.read(move |db, conn| {
        load_task(db, conn, &key)?.ok_or_else(|| Error::NotFound(format!("task {key}")))
    })
    .await
}

/// [`Store::list`]: filters in SQL, keyset pagination on `(updated_at, id)` (never OFFSET),
/// served by the `(job, updated_at, id)` index, or for failed / exhausted / ignored tasks
/// by the partial `(job, status, updated_at, id)` index.
pub(crate) async fn list(db: &Arc<Db>, query: &TaskQuery) -> Result<TaskPage> {
    query.validate()?;
    let query = query.clone();
    db.read(move |db, conn| {
        let (sql, args) = list_sql(&query);
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| db.err(e))?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(|e| db.err(e))?;
        let mut listed = Vec::new();
        while let Some(row) = rows.next().map_err(|e| db.err(e))? {
            listed.push(listed_from_row(db, row)?);
        }
        Ok(TaskPage::from_listed(listed, query.limit))
    })
    .await
}

/// The statuses in the `tasktrack_task_attention` partial index.
const ATTENTION: [Status; 3] = [Status::Failed, Status::Exhausted, Status::Ignored];

/// The SQL and arguments of a [`TaskQuery`]: one row more than the page, to know whether a
/// next page exists.
fn list_sql(q: &TaskQuery) -> (String, Vec<Sql>) {
    let mut filters = vec!["job = ?".to_string()];
    let mut args = vec![Sql::Text(q.job.as_str().to_string())];
    if !q.statuses.is_empty() {
        let marks = vec!["?"; q.statuses.len()].join(", ");
        filters.push(format!("status IN ({marks})"));
        args.extend(q.statuses.iter().map(|s| Sql::Text(s.as_str().to_string())));
        if q.statuses.iter().all(|s| ATTENTION.contains(s)) {
            // Repeats the partial index's WHERE word for word: SQLite uses a partial index only
            // when the query contains its condition as a term.
            filters
                .push("(status = 'failed' OR status = 'exhausted' OR status = 'ignored')".into());
        }
    }
    if let Some(stage) = &q.stage {
        filters.push("stage = ?".into());
        args.push(Sql::Text(stage.clone()));
    }
    if let Some(prefix) = &q.id_prefix {
        // substr on characters compares exactly: no LIKE/GLOB wildcards to escape.
        filters.push("substr(id, 1, length(?)) = ?".into());
        args.push(Sql::Text(prefix.clone()));
        args.push(Sql::Text(prefix.clone()));
    }
    if let Some(t) = q.updated_after {
        filters.push("updated_at >= ?".into());
        args.push(Sql::Integer(t.as_millis()));
    }
    if let Some(t) = q.updated_before {
        filters.push("updated_at < ?".into());
        args.push(Sql::Integer(t.as_millis()));
    }
    let direction = if q.newest_first { "DESC" } else { "ASC" };
    if let Some(c) = &q.after {
        let cmp = if q.newest_first { "<" } else { ">" };
        filters.push(format!("(updated_at, id) {cmp} (?, ?)"));
        args.push(Sql::Integer(c.updated_at.as_millis()));
        args.push(Sql::Text(c.id.as_str().to_string()));
    }
    let limit = q.limit.saturating_add(1);
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasktrack_task WHERE {} ORDER BY updated_at {direction}, id {direction} LIMIT {limit}",
        filters.join(" AND ")
    );
    (sql, args)
}

/// [`Store::counts`]: the job record and its counter rows, read in one snapshot.
pub(crate) async fn counts(db: &Arc<Db>, job: &JobName) -> Result<Counts> {
    let job = job.clone();
    db.read(move |db, conn| {
        // Both reads in one snapshot. On `:memory:` the read runs on the writer, already inside
        // its transaction, which is a snapshot too.
        let snapshot = match conn.is_autocommit() {
            true => Some(conn.unchecked_transaction().map_err(|e| db.err(e))?),
            false => None,
        };
        let record = load_job(db, conn, &job)?;
        let rows = count_rows(db, conn, &job)?;
        drop(snapshot);
        Ok(Counts::from_raw(job, record.as_ref(), rows))
    })
    .await
}

fn count_rows(db: &Db, conn: &Connection, job: &JobName) -> Result<Vec<CountRow>> {
    let mut stmt = conn
        .prepare_cached("SELECT stage, status, n FROM tasktrack_count WHERE job = ?1 AND n > 0")
        .map_err(|e| db.err(e))?;
    let mut rows = stmt.query([job.as_str()]).map_err(|e| db.err(e))?;
    let mut out = Vec::new();
    let location = || format!("{} (tasktrack_count, job {job})", db.location());
    while let Some(row) = rows.next().map_err(|e| db.err(e))? {
        let read = || -> rusqlite::Result<(String, String, i64)> {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        };
        let (stage, status, n) = read().map_err(|e| Error::corrupt(location(), e))?;
        // A status edited by hand into one nobody knows counts its tasks as unreadable.
        let status: Option<Status> = status.parse().ok();
        let stage = (!stage.is_empty()).then_some(stage);
        out.push((stage, status, u64::try_from(n).unwrap_or(0)));
    }
    Ok(out)
}

/// [`Store::jobs`]: by name, or by state through the `(state, name)` index.
pub(crate) async fn jobs(db: &Arc<Db>, state: Option<JobState>) -> Result<Vec<Job>> {
    db.read(move |db, conn| {
        let (sql, args) = match state {
            Some(s) => (
                format!("SELECT {JOB_COLUMNS} FROM tasktrack_job WHERE state = ?1 ORDER BY name"),
                vec![Sql::Text(s.as_str().to_string())],
            ),
            None => (
                format!("SELECT {JOB_COLUMNS} FROM tasktrack_job ORDER BY name"),
                vec![],
            ),
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| db.err(e))?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(|e| db.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| db.err(e))? {
            out.push(job_from_row(db, row)?);
        }
        Ok(out)
    })
    .await
}

/// Every job name (for a purge of all jobs): job records, and jobs that only have tasks.
pub(crate) async fn job_names(db: &Arc<Db>) -> Result<Vec<JobName>> {
    db.read(|db, conn| {
        let mut stmt = conn
            .prepare("SELECT name FROM tasktrack_job UNION SELECT DISTINCT job FROM tasktrack_count ORDER BY 1")
            .map_err(|e| db.err(e))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(|e| db.err(e))?;
        let mut out = Vec::new();
        for name in names {
            let name = name.map_err(|e| db.err(e))?;
            out.push(JobName::new(name).map_err(|e| Error::corrupt(format!("{} (job name)", db.location()), e))?);
        }
        Ok(out)
    })
    .await
}

/// [`Store::get_job`].
pub(crate) async fn get_job(db: &Arc<Db>, name: &JobName) -> Result<Job> {
    let name = name.clone();
    db.read(move |db, conn| {
        load_job(db, conn, &name)?.ok_or_else(|| Error::NotFound(format!("job {name}")))
    })
    .await
}

/// [`Store::put_job`]: [`lifecycle::apply_job_spec`] in one transaction.
pub(crate) async fn put_job(
    db: &Arc<Db>,
    name: &JobName,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<Job> {
    let (name, spec) = (name.clone(), spec.clone());
    db.write(move |db, tx| {
        let existing = load_job(db, tx, &name)?;
        let job = lifecycle::apply_job_spec(existing.as_ref(), &name, &spec, now)?;
        save_job(db, tx, &job)?;
        Ok(job)
    })
    .await
}

/// [`Store::set_job_state`]: [`lifecycle::move_job_state`] in one transaction.
pub(crate) async fn set_job_state(
    db: &Arc<Db>,
    name: &JobName,
    change: JobStateChange,
    now: Timestamp,
) -> Result<Job> {
    let name = name.clone();
    db.write(move |db, tx| {
        let existing =
            load_job(db, tx, &name)?.ok_or_else(|| Error::NotFound(format!("job {name}")))?;
        let job = lifecycle::move_job_state(&existing, change, now)?;
        save_job(db, tx, &job)?;
        Ok(job)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(sql: &str, args: Vec<Sql>) -> String {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/001_init.sql"))
            .unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn lists_use_an_index_not_a_scan_or_a_sort() {
        let job = JobName::new("j").unwrap();
        let all = TaskQuery::new(job.clone());
        let (sql, args) = list_sql(&all);
        let p = plan(&sql, args);
        assert!(
            p.contains("tasktrack_task_updated") && !p.contains("TEMP B-TREE"),
            "{p}"
        );

        let failed = TaskQuery::new(job).with_statuses([Status::Failed]);
        let (sql, args) = list_sql(&failed);
        let p = plan(&sql, args);
        assert!(
            p.contains("tasktrack_task_attention") && !p.contains("TEMP B-TREE"),
            "{p}"
        );
    }
}
