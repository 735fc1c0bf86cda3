//! The generic compare-and-swap adapter: a whole [`Store`](crate::Store) from a small [`Documents`] trait.
//!
//! A document backend (memory, file, S3, DynamoDB, MongoDB) only knows how to read a record with
//! its revision, write it back *if the revision is unchanged*, and find claimable tasks. Every
//! operation here is the same loop:
//!
//! 1. load the task and its revision,
//! 2. apply the pure rule from [`crate::lifecycle`],
//! 3. write the result conditionally on the revision,
//! 4. on conflict (someone else wrote first) start again from 1, up to [`MAX_CAS_ATTEMPTS`] times.
//!
//! The functions are public so that a native backend can use them for its rarely-used paths and
//! restate only its hot paths (claim, succeed, counts) natively.

mod damaged;
mod ops;
#[cfg(test)]
mod tests;

pub use damaged::Damaged;
pub use ops::*;

use crate::error::Result;
use crate::model::{CountRow, Job, JobName, JobState, Task, TaskKey, TaskPage, TaskQuery};
use crate::time::Timestamp;
use async_trait::async_trait;
use std::fmt;

/// How many times an operation re-reads and retries after a conflicting write before giving up
/// with [`crate::Error::Contention`].
pub const MAX_CAS_ATTEMPTS: u32 = 64;

/// A record with the revision it was read at. The revision is opaque to the adapter: a version
/// number, an ETag, ... whatever the backend's conditional write compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// The backend's revision of it.
    pub revision: String,
}

impl<T> Versioned<T> {
    /// Wraps a record read at `revision`.
    pub fn new(value: T, revision: impl Into<String>) -> Self {
        Versioned {
            value,
            revision: revision.into(),
        }
    }
}

/// The revision of a task for a backend whose conditional write compares the stored record
/// itself (memory, file; MongoDB compares the same two fields in its filter): its `version` and
/// its `created_at`, as `"<version>@<ms>"`.
///
/// The version alone tells apart the states of one task's life (every write bumps it), but a
/// task deleted and created again under its id starts again at version 1, so a copy read before
/// the delete would match the new task on it: a stale holder's write would overwrite the new
/// task, or an old record would be written back over it. `created_at` is set when a task is
/// created and kept by every transition (`replace` mode included, which is a write of the same
/// task), and a re-creation comes after the delete, so it tells the two incarnations apart;
/// only a task deleted and created again within the millisecond it was first created could
/// still be confused with its predecessor.
pub fn task_revision(task: &Task) -> String {
    format!("{}@{}", task.version, task.created_at.as_millis())
}

/// Versioned documents with a claimable index: what a document backend implements.
///
/// Conditional writes return `Ok(false)` on a revision mismatch (or an existing key, for
/// inserts); errors are for everything else. Backends that keep an index or counters beside the
/// documents update them in the same atomic step (they get both the old and the new record).
#[async_trait]
pub trait Documents: fmt::Debug + Send + Sync + 'static {
    /// The backend's name.
    fn backend(&self) -> &'static str;

    /// Creates whatever storage is needed (idempotent).
    async fn init(&self) -> Result<()> {
        Ok(())
    }

    /// A task and its revision, or `None`.
    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>>;

    /// Inserts `task` unless its key exists; `false` if it existed.
    async fn insert_task(&self, task: &Task) -> Result<bool>;

    /// Refuses, before anything of a `create` is written, a new task this store cannot hold (an
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) naming it), so that a refused create
    /// writes nothing even when its inserts go out in several chunks. Nothing by default.
    fn check_new_tasks(&self, _tasks: &[Task]) -> Result<()> {
        Ok(())
    }

    /// Inserts many tasks; one flag per task, as [`Documents::insert_task`]. Override to batch.
    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        let mut inserted = Vec::with_capacity(tasks.len());
        for t in tasks {
            inserted.push(self.insert_task(t).await?);
        }
        Ok(inserted)
    }

    /// Replaces `old` by `new` if it is still at `old.revision`; `false` on conflict. The revision
    /// must tell a task from one deleted and created again under its id (see
    /// [`task_revision`]): a record read before the delete never matches the new task.
    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool>;

    /// Deletes `old` if it is still at `old.revision`; `false` on conflict.
    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool>;

    /// Deletes the record at `key`, which [`Documents::get_task`] found damaged (it answered
    /// [`Error::Corrupt`](crate::Error::Corrupt)), with its index entries and counters as far as
    /// its readable parts name them; `false` if there is no record at `key`.
    ///
    /// Unconditional, as a damaged record has no revision to compare: a record repaired by hand
    /// and rewritten between the read and this call is deleted too, which is what the caller
    /// asked for, without the live-lease check. See DESIGN.md, "A damaged task record does not
    /// stop its job".
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool>;

    /// Up to `limit` tasks of `job` (at `stage`, if given) that may be claimable at `now`, in
    /// claim order: priority descending, then [`Task::claimable_at`], then id. The list may be
    /// stale; the adapter re-checks every candidate and writes conditionally.
    ///
    /// A candidate whose record does not decode (damaged by hand or by another tool) is left
    /// out, so that it cannot stop the job's claims, and noted in a [`Damaged`] (which logs it
    /// once); [`Documents::get_task`] of it still answers [`Error::Corrupt`](crate::Error::Corrupt).
    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>>;

    /// A page of tasks ([`TaskQuery::paginate`] does the work for stores without a native query).
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage>;

    /// Number of tasks of `job` per `(stage, status)`.
    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>>;

    /// A job record and its revision, or `None`.
    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>>;

    /// Inserts a job record unless it exists; `false` if it existed.
    async fn insert_job(&self, job: &Job) -> Result<bool>;

    /// Replaces a job record if unchanged since read; `false` on conflict.
    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool>;

    /// Deletes a job record if unchanged since read; `false` on conflict.
    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool>;

    /// Job records, only those in `state` if given, ordered by name.
    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>>;
}
