//! The data model: what a task, a job, a lease and a query are.
//!
//! Everything here is plain data with a stable serde form; the rules that move a task from one
//! status to another live in [`crate::lifecycle`].

mod job;
mod key;
mod query;
mod status;
mod task;

pub(crate) use job::duration_ms;
pub use job::{
    Backoff, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS, Job, JobSpec, JobState, JobStateChange,
};
pub use key::{JobName, MAX_KEY_BYTES, TaskId, TaskKey, validate_key};
pub use query::{
    CountRow, Counts, Cursor, DEFAULT_LIMIT, Listed, MAX_LIMIT, StatusCounts, TaskPage, TaskQuery,
    UnreadableTask,
};
pub use status::Status;
pub use task::{
    Attempt, Claimed, Failure, HISTORY_LIMIT, Lease, LeaseState, NewTask, Outcome, Task,
};
