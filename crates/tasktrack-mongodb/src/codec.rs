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
//!
//! MongoDB refuses a document over 16 MiB ([`MAX_DOCUMENT_BYTES`]). Every task document is
//! measured here before it is sent, so a task too large is [`Error::InvalidInput`] naming it
//! and nothing is written; a new task must leave [`NEW_TASK_RESERVE_BYTES`] free, so that its
//! first claim (a lease and a history record) always fits.

use mongodb::bson::{self, Document};
use tasktrack_core::{Error, Job, JobName, Result, Task, TaskId};

/// MongoDB's limit on one document (`maxBsonObjectSize`): 16 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// What a new task's document must leave free of [`MAX_DOCUMENT_BYTES`] (see the module docs).
pub const NEW_TASK_RESERVE_BYTES: usize = 64 * 1024;

/// The `_id` of task `(job, id)`.
pub fn task_id(job: &JobName, id: &TaskId) -> String {
    format!("{job}\u{1f}{id}")
}

/// A `u64` counter (version, token) as BSON's signed 64-bit integer.
pub fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The document stored for `task`; [`Error::InvalidInput`] naming the task if it would be larger
/// than [`MAX_DOCUMENT_BYTES`].
pub fn task_to_doc(task: &Task) -> Result<Document> {
    task_to_doc_within(task, MAX_DOCUMENT_BYTES)
}

/// [`task_to_doc`] for a new task: it must leave [`NEW_TASK_RESERVE_BYTES`] free.
pub fn new_task_to_doc(task: &Task) -> Result<Document> {
    task_to_doc_within(task, MAX_DOCUMENT_BYTES - NEW_TASK_RESERVE_BYTES)
}

/// Whether `e` is the refusal of [`task_to_doc`] for a document too large.
pub fn is_too_large(e: &Error) -> bool {
    matches!(e, Error::InvalidInput(m) if m.contains(TOO_LARGE))
}

const TOO_LARGE: &str = "too large for a MongoDB document";

fn task_to_doc_within(task: &Task, limit: usize) -> Result<Document> {
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
    let mut bytes = Vec::new();
    doc.to_writer(&mut bytes).map_err(|e| {
        Error::invalid(format!(
            "task {} cannot be stored in MongoDB: {e}",
            task.key()
        ))
    })?;
    if bytes.len() > limit {
        return Err(Error::invalid(format!(
            "task {} is {TOO_LARGE}: {} bytes, over the {limit} allowed (MongoDB's limit is \
             {MAX_DOCUMENT_BYTES}{}); make its data, output or error smaller",
            task.key(),
            bytes.len(),
            if limit < MAX_DOCUMENT_BYTES {
                ", less room kept for its leases and history"
            } else {
                ""
            },
        )));
    }
    Ok(doc)
}

/// Reads a stored task; `location` names the collection for a [`Error::Corrupt`].
pub fn task_from_doc(doc: Document, location: &str) -> Result<Task> {
    let name = task_name(&doc);
    bson::from_document(doc).map_err(|e| Error::corrupt(format!("{location} {name}"), e))
}

/// How a (perhaps unreadable) task document is named in errors: `task JOB/ID` from its `_id`,
/// or the `_id` itself, quoted, when it is not one this backend writes.
pub fn task_name(doc: &Document) -> String {
    match doc.get("_id") {
        Some(bson::Bson::String(s)) => match s.split_once('\u{1f}') {
            Some((job, id)) if !job.chars().chain(id.chars()).any(char::is_control) => {
                format!("task {job}/{id}")
            }
            _ => format!("_id {s:?}"),
        },
        Some(other) => format!("_id {other}"),
        None => "a document without an _id".to_string(),
    }
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
