//! The write-back of a locked batch (claims, completions, hand-offs) as one narrow `UPDATE`: only
//! the columns the rules changed, for every row of the batch at once, the new values passed as one
//! JSON document and read with `JSON_TABLE`:
//!
//! ```sql
//! UPDATE JSON_TABLE(?, '$[*]' COLUMNS (job VARBINARY(512) PATH '$[0]', id … PATH '$[1]',
//!                                      status SMALLINT PATH '$[2]', …)) v
//! STRAIGHT_JOIN {t}task t ON t.job = v.job AND t.id = v.id
//! SET t.status = v.status, …
//! ```
//!
//! It replaces a multi-row `INSERT … ON DUPLICATE KEY UPDATE` of whole rows, whose attempted
//! insert and duplicate-key lookup of every row were 40% of the server's time in a batched drain
//! (`docs/benchmarks/mysql.md`). `STRAIGHT_JOIN` reads the document first and each row by primary
//! key (`eq_ref`). The row triggers keep the counters as for any `UPDATE`.
//!
//! A batch of a few rows (a hand-off, a small claim) is written with the task table first
//! instead, its rows picked by primary key:
//!
//! ```sql
//! UPDATE {t}task t STRAIGHT_JOIN JSON_TABLE(?, …) v ON t.job = v.job AND t.id = v.id
//! SET … WHERE (t.job, t.id) IN ((?, ?), …)
//! ```
//!
//! MariaDB updates the first table of a multi-table `UPDATE` as it reads it; any later table's
//! new values are first buffered in an internal temporary table, which goes to disk as soon as
//! a `TEXT` column is set (history, output, the lease owner): the hand-off's write-back took
//! 395 µs with it, 217 µs without (`docs/benchmarks/mysql.md`). Task-first reads the document
//! once per row, so it is kept for small batches ([`ON_THE_FLY_ROWS`]).

use crate::common::RawTask;
use serde_json::Value;
use std::collections::HashMap;

/// Every column a write-back may set (all but the key), in [`FIELDS`](crate::common::FIELDS)
/// order, with the type `JSON_TABLE` reads it as. Text is read unbounded (`LONGTEXT`,
/// `LONGBLOB`): the assignment to the table's column then fails in strict mode as the old upsert
/// did, where `JSON_TABLE` would truncate silently.
const COLUMNS: [(&str, &str); 24] = [
    ("status", "SMALLINT"),
    ("stage", "LONGBLOB"),
    ("stages", "LONGTEXT CHARACTER SET utf8mb4"),
    ("attempts", "BIGINT"),
    ("max_attempts", "BIGINT"),
    ("priority", "INT"),
    ("not_before", "BIGINT"),
    ("claim_at", "BIGINT"),
    ("lease_owner", "LONGTEXT CHARACTER SET utf8mb4"),
    ("lease_token", "BIGINT"),
    ("lease_acquired_at", "BIGINT"),
    ("lease_expires_at", "BIGINT"),
    ("token", "BIGINT"),
    ("version", "BIGINT"),
    ("data", "LONGTEXT CHARACTER SET utf8mb4"),
    ("output", "LONGTEXT CHARACTER SET utf8mb4"),
    ("error_kind", "LONGTEXT CHARACTER SET utf8mb4"),
    ("error_message", "LONGTEXT CHARACTER SET utf8mb4"),
    ("error_detail", "LONGTEXT CHARACTER SET utf8mb4"),
    ("history", "LONGTEXT CHARACTER SET utf8mb4"),
    ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
    ("started_at", "BIGINT"),
    ("finished_at", "BIGINT"),
];

/// The columns of `r` in [`COLUMNS`] order, as JSON: numbers, strings, `null`; a JSON column as
/// the string of its text (what the table stores).
fn cells(r: &RawTask) -> [Value; 24] {
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
    let json = |v: &Value| Value::String(v.to_string());
    let int = |n: Option<i64>| n.map_or(Value::Null, Value::from);
    [
        Value::from(r.status),
        text(&r.stage),
        json(&r.stages),
        Value::from(r.attempts),
        Value::from(r.max_attempts),
        Value::from(r.priority),
        int(r.not_before),
        int(r.claim_at),
        text(&r.lease_owner),
        int(r.lease_token),
        int(r.lease_acquired_at),
        int(r.lease_expires_at),
        Value::from(r.token),
        Value::from(r.version),
        json(&r.data),
        r.output.as_ref().map_or(Value::Null, json),
        text(&r.error_kind),
        text(&r.error_message),
        text(&r.error_detail),
        json(&r.history),
        Value::from(r.created_at),
        Value::from(r.updated_at),
        int(r.started_at),
        int(r.finished_at),
    ]
}

/// Batches of up to this many rows are written task-table-first (see the module docs).
const ON_THE_FLY_ROWS: usize = 8;

/// How to write a batch back.
pub(super) enum WriteBack {
    /// The narrow `UPDATE` and its parameters: the JSON document, then the `(job, id)` of each
    /// row when the statement picks them by primary key (task-table-first), else none.
    Narrow {
        sql: String,
        doc: String,
        keys: Vec<(String, String)>,
    },
    /// Every row was locked and none changed: nothing to write.
    Unchanged,
    /// A row to write was not among the locked ones: whole rows (an upsert) are needed.
    WholeRows,
}

/// How to write `new` over the rows `old` holds (by job and id) in `table`.
pub(super) fn narrow_update(
    table: &str,
    old: &HashMap<(String, String), RawTask>,
    new: &[RawTask],
) -> WriteBack {
    let mut rows = Vec::with_capacity(new.len());
    let mut changed = [false; 24];
    for r in new {
        let Some(before) = old.get(&(r.job.clone(), r.id.clone())) else {
            return WriteBack::WholeRows;
        };
        let (a, b) = (cells(before), cells(r));
        for (i, flag) in changed.iter_mut().enumerate() {
            *flag |= a[i] != b[i];
        }
        rows.push((r, b));
    }
    let picked: Vec<usize> = (0..COLUMNS.len()).filter(|i| changed[*i]).collect();
    if picked.is_empty() {
        return WriteBack::Unchanged;
    }
    let doc: Vec<Value> = rows
        .into_iter()
        .map(|(r, cells)| {
            let mut row = Vec::with_capacity(picked.len() + 2);
            row.push(Value::String(r.job.clone()));
            row.push(Value::String(r.id.clone()));
            row.extend(picked.iter().map(|i| cells[*i].clone()));
            Value::Array(row)
        })
        .collect();
    let mut columns = String::from(
        "job VARBINARY(512) PATH '$[0]' ERROR ON ERROR, id VARBINARY(512) PATH '$[1]' ERROR ON ERROR",
    );
    let mut sets = Vec::with_capacity(picked.len());
    for (n, i) in picked.iter().enumerate() {
        let (name, ty) = COLUMNS[*i];
        columns.push_str(&format!(", {name} {ty} PATH '$[{}]' ERROR ON ERROR", n + 2));
        sets.push(format!("t.{name} = v.{name}"));
    }
    let document = format!("JSON_TABLE(?, '$[*]' COLUMNS ({columns})) v");
    let (sql, keys) = if new.len() <= ON_THE_FLY_ROWS {
        let pairs = vec!["(?, ?)"; new.len()].join(", ");
        let sql = format!(
            "UPDATE {table} t STRAIGHT_JOIN {document} ON t.job = v.job AND t.id = v.id \
             SET {} WHERE (t.job, t.id) IN ({pairs})",
            sets.join(", ")
        );
        (
            sql,
            new.iter().map(|r| (r.job.clone(), r.id.clone())).collect(),
        )
    } else {
        let sql = format!(
            "UPDATE {document} STRAIGHT_JOIN {table} t ON t.job = v.job AND t.id = v.id SET {}",
            sets.join(", ")
        );
        (sql, Vec::new())
    };
    WriteBack::Narrow {
        sql,
        doc: Value::Array(doc).to_string(),
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifecycle::ClaimDecision;
    use std::time::Duration;
    use tasktrack_core::{Claim, Job, JobName, NewTask, TaskId, Timestamp, lifecycle};

    /// `n` pending tasks as locked, and the same tasks claimed (the write-back of a claim).
    fn claimed(n: usize) -> (HashMap<(String, String), RawTask>, Vec<RawTask>) {
        let now = Timestamp::from_millis(1_000);
        let job = Job::new(JobName::new("j").unwrap(), now);
        let claim = Claim {
            owner: "w".into(),
            lease_for: Duration::from_secs(60),
            force: false,
        };
        let mut old = HashMap::new();
        let mut new = Vec::new();
        for i in 0..n {
            let id = TaskId::new(format!("t{i}")).unwrap();
            let task = lifecycle::create_task(&job, &NewTask::new(id), now).unwrap();
            let raw = RawTask::from_task(&task).unwrap();
            old.insert((raw.job.clone(), raw.id.clone()), raw);
            let ClaimDecision::Granted(granted) = lifecycle::claim(&task, &claim, now).unwrap()
            else {
                panic!("a pending task is claimable");
            };
            new.push(RawTask::from_task(&granted.task).unwrap());
        }
        (old, new)
    }

    #[test]
    fn a_few_rows_are_updated_task_table_first_by_primary_key() {
        let (old, new) = claimed(ON_THE_FLY_ROWS);
        let WriteBack::Narrow { sql, keys, .. } = narrow_update("task", &old, &new) else {
            panic!("a claim changes its rows");
        };
        assert!(
            sql.starts_with("UPDATE task t STRAIGHT_JOIN JSON_TABLE("),
            "{sql}"
        );
        assert!(sql.ends_with(&format!("IN ({})", ["(?, ?)"; ON_THE_FLY_ROWS].join(", "))));
        assert_eq!(keys.len(), ON_THE_FLY_ROWS);
        assert_eq!(keys[0], ("j".to_string(), "t0".to_string()));
    }

    #[test]
    fn larger_batches_read_the_document_first() {
        let (old, new) = claimed(ON_THE_FLY_ROWS + 1);
        let WriteBack::Narrow { sql, keys, .. } = narrow_update("task", &old, &new) else {
            panic!("a claim changes its rows");
        };
        assert!(sql.starts_with("UPDATE JSON_TABLE("), "{sql}");
        assert!(keys.is_empty());
    }
}
