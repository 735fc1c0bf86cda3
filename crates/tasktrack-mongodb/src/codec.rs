//! Tasks and jobs as BSON documents.
//!
//! A task document is the task's own serde form (the same field names as its JSON: `status`
//! and `status_code`, RFC 3339 timestamps, `data` and `output` as native sub-documents) plus
//! two fields the backend derives on every write, for its indexes:
//!
//! | field | value | used by |
//! |---|---|---|
//! | `_id` | `job` + U+001F + `id` | get / replace / delete by key (U+001F is a control character, which keys may not contain, so no two keys collide) |
//! | `claim_at` | [`Task::claimable_at`] in ms since the epoch; absent when the task is finished | claim order and the partial claim index |
//!
//! A job document is the job's serde form with `_id` = its name.

use mongodb::bson::{self, Document};
use tasktrack_core::{Error, Job, JobName, Result, Task, TaskId};

/// The `_id` of task `(job, id)`.
pub fn task_id(job: &JobName, id: &TaskId) -> String {
    format!("{job}\u{1f}{id}")
}

/// A `u64` counter (version, token) as BSON's signed 64-bit integer.
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The document stored for `task`.
pub fn task_to_doc(task: &Task) -> Result<Document> {
    let mut doc = bson::to_document(task).map_err(|e| {
        Error::invalid(format!(
            "task {} cannot be stored in MongoDB: {e}",
            task.key()
        ))
    })?;
    doc.insert("_id", task_id(&task.job, &task.id));
    if let Some(at) = task.claimable_at() {
        doc.insert("claim_at", at.as_millis());
    }
    Ok(doc)
}

/// Reads a stored task; `location` names the collection for a [`Error::Corrupt`].
pub fn task_from_doc(doc: Document, location: &str) -> Result<Task> {
    let id = doc.get("_id").map(|v| v.to_string()).unwrap_or_default();
    bson::from_document(doc).map_err(|e| Error::corrupt(format!("{location} _id {id}"), e))
}

/// The document stored for `job`.
pub fn job_to_doc(job: &Job) -> Result<Document> {
    let mut doc = bson::to_document(job).map_err(|e| {
        Error::invalid(format!("job {} cannot be stored in MongoDB: {e}", job.name))
    })?;
    doc.insert("_id", job.name.as_str());
    Ok(doc)
}

/// Reads a stored job.
pub fn job_from_doc(doc: Document, location: &str) -> Result<Job> {
    let id = doc.get("_id").map(|v| v.to_string()).unwrap_or_default();
    bson::from_document(doc).map_err(|e| Error::corrupt(format!("{location} _id {id}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tasktrack_core::{Timestamp, lifecycle};

    #[test]
    fn a_task_round_trips_with_its_derived_fields() {
        let now = Timestamp::from_millis(1_800_000_000_123);
        let job = Job::new(JobName::new("j").unwrap(), now);
        let new = tasktrack_core::NewTask::new(TaskId::new("a/../$b.c").unwrap())
            .with_data(json!({"$weird": {"a.b": [1, 2.5, "x", null]}, "big": i64::MAX}));
        let task = lifecycle::create_task(&job, &new, now).unwrap();
        let doc = task_to_doc(&task).unwrap();
        assert_eq!(doc.get_str("_id").unwrap(), "j\u{1f}a/../$b.c");
        assert_eq!(doc.get_i64("claim_at").unwrap(), now.as_millis());
        assert_eq!(doc.get_str("status").unwrap(), "pending");
        assert_eq!(task_from_doc(doc, "t").unwrap(), task);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let doc = bson::doc! {"_id": "j\u{1f}x", "status": 7};
        assert!(matches!(
            task_from_doc(doc, "db.tasks"),
            Err(Error::Corrupt { .. })
        ));
    }
}
