//! The task record and the values that travel with it: [`Lease`], [`Failure`], [`Attempt`].

use super::key::{JobName, TaskId, TaskKey};
use super::status::Status;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many per-attempt records a task keeps (the newest).
pub const HISTORY_LIMIT: usize = 20;

/// One task's whole record, as every backend stores it and every face shows it.
///
/// The JSON form is stable: field names below, timestamps in RFC 3339 UTC with milliseconds,
/// and `status_code` beside `status` (0, 10, 20, 30, 40, 50; see [`Status`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The job the task belongs to.
    pub job: JobName,
    /// The task's id within its job.
    pub id: TaskId,
    /// Where the task is in its life.
    #[serde(flatten, with = "status_json")]
    pub status: Status,
    /// The pipeline stage the task is at; `None` for single-step jobs.
    pub stage: Option<String>,
    /// The pipeline the task follows, copied from its job when created (empty: single step).
    #[serde(default)]
    pub stages: Vec<String>,
    /// Starts counted so far at the current stage (an expired lease counts as one).
    pub attempts: u32,
    /// The most starts allowed before the task is `exhausted`.
    pub max_attempts: u32,
    /// Claim order: higher first.
    pub priority: i32,
    /// Earliest claim time (retry backoff, scheduling); `None`: at once.
    pub not_before: Option<Timestamp>,
    /// The current holder while `in_progress`.
    pub lease: Option<LeaseState>,
    /// Fencing token: incremented by every claim, never reused.
    pub token: u64,
    /// Incremented by every write (optimistic concurrency).
    pub version: u64,
    /// Input and metadata, set at create, patchable by the lease holder.
    pub data: Value,
    /// Result, written on success.
    pub output: Option<Value>,
    /// The last error; cleared on success (all errors stay in `history`).
    pub error: Option<Failure>,
    /// Per-attempt records, the newest [`HISTORY_LIMIT`].
    pub history: Vec<Attempt>,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task was last written.
    pub updated_at: Timestamp,
    /// When the current attempt started.
    pub started_at: Option<Timestamp>,
    /// When the task reached a terminal status.
    pub finished_at: Option<Timestamp>,
}

impl Task {
    /// The task's identity.
    pub fn key(&self) -> TaskKey {
        TaskKey::new(self.job.clone(), self.id.clone())
    }

    /// Whether its attempts reached `max_attempts`: an attempt that ends in failure (or whose
    /// lease runs out) exhausts the task instead of leaving it to be retried.
    pub fn attempts_spent(&self) -> bool {
        self.attempts >= self.max_attempts
    }

    /// Whether a lease is held and has not run out at `now` (live while `now < expires_at`).
    pub fn has_live_lease(&self, now: Timestamp) -> bool {
        self.status == Status::InProgress && self.lease.as_ref().is_some_and(|l| now < l.expires_at)
    }

    /// Whether a claim at `now` may take this task (without force).
    pub fn is_claimable(&self, now: Timestamp) -> bool {
        self.claimable_at().is_some_and(|at| at <= now)
    }

    /// When this task becomes claimable, or `None` if it never will without a person.
    ///
    /// Backends index tasks by this instant (with priority) so that a claim never scans
    /// finished tasks, and claim in its order (oldest first within a priority):
    /// `pending`/`failed` at `not_before`, or at creation when it has none; `in_progress` at
    /// its lease expiry.
    pub fn claimable_at(&self) -> Option<Timestamp> {
        match self.status {
            Status::Pending | Status::Failed => Some(self.not_before.unwrap_or(self.created_at)),
            Status::InProgress => Some(
                self.lease
                    .as_ref()
                    .map_or(Timestamp::EPOCH, |l| l.expires_at),
            ),
            Status::Exhausted | Status::Succeeded | Status::Ignored => None,
        }
    }
}

/// The lease as the task record holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The worker holding the task.
    pub owner: String,
    /// The fencing token of this lease.
    pub token: u64,
    /// When the lease was granted.
    pub acquired_at: Timestamp,
    /// When the lease runs out unless renewed.
    pub expires_at: Timestamp,
}

/// The proof of ownership a worker presents to every fenced operation.
///
/// Returned by a claim; heartbeats return a renewed copy. A store accepts it only while the task
/// is `in_progress` with this `token`, so a worker whose lease was taken over can never overwrite
/// the new holder's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The task held.
    pub key: TaskKey,
    /// The worker holding it.
    pub owner: String,
    /// The fencing token.
    pub token: u64,
    /// The attempt number this lease is for (1 for the first start).
    pub attempt: u32,
    /// When the lease was granted.
    pub acquired_at: Timestamp,
    /// When it runs out unless renewed.
    pub expires_at: Timestamp,
}

/// A successful claim: the task as written, and the lease to present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claimed {
    /// The task, now `in_progress`.
    pub task: Task,
    /// The lease to present to heartbeat / succeed / fail / release.
    pub lease: Lease,
}

/// An error recorded on a task: a kind for grouping, a message for people, a detail
/// (traceback, stderr tail) for debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A short machine-friendly kind: `exit`, `panic`, `lease_expired`, `timeout`, ...
    pub kind: String,
    /// One line for people.
    pub message: String,
    /// Traceback or stderr tail.
    pub detail: Option<String>,
}

impl Failure {
    /// A failure with no detail.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind: kind.into(),
            message: message.into(),
            detail: None,
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The kind of a failure the store could not record as it was ([`Failure::unrecordable`],
    /// `Fail::unleasable`).
    pub const UNRECORDABLE: &'static str = "unrecordable";

    /// The failure to record when the store refused what an attempt produced (`refusal`, an
    /// [`Error::InvalidInput`](crate::Error::InvalidInput): an output too large for a DynamoDB
    /// item, say): kind `unrecordable`. Record it as not retryable, since running the task again
    /// would most likely produce the same. The `Tracker` and `tasktrack run` both do.
    pub fn unrecordable(refusal: &crate::Error) -> Self {
        Failure::new(
            Failure::UNRECORDABLE,
            format!("the store refused this attempt's outcome: {refusal}"),
        )
    }
}

/// How an attempt (or an administrative action) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The holder recorded success.
    Succeeded,
    /// The holder recorded a failure.
    Failed,
    /// The lease ran out before the holder finished (worker crashed or hung).
    LeaseExpired,
    /// The holder gave the task back without counting the attempt.
    Released,
    /// A forced action took the task from a live holder.
    Fenced,
    /// A person ignored the task.
    Ignored,
}

/// One record of a task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt number at its stage.
    pub attempt: u32,
    /// The stage it ran at.
    pub stage: Option<String>,
    /// The worker (or `admin`).
    pub worker: String,
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, for failures.
    pub error: Option<Failure>,
}

/// A task to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// Its id.
    pub id: TaskId,
    /// Input and metadata.
    #[serde(default)]
    pub data: Value,
    /// Claim order: higher first.
    #[serde(default)]
    pub priority: i32,
    /// Overrides the job's default limit.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Not claimable before this instant (scheduling).
    #[serde(default)]
    pub not_before: Option<Timestamp>,
}

impl NewTask {
    /// A task with no data and default settings.
    pub fn new(id: TaskId) -> Self {
        NewTask {
            id,
            data: Value::Null,
            priority: 0,
            max_attempts: None,
            not_before: None,
        }
    }

    /// Sets the data.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the attempt limit.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// Serializes a status as `"status": "...", "status_code": N` (flattened into the task).
mod status_json {
    use super::Status;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Out {
        status: Status,
        status_code: u8,
    }

    #[derive(Deserialize)]
    struct In {
        status: Status,
    }

    pub fn serialize<S: Serializer>(status: &Status, s: S) -> Result<S::Ok, S::Error> {
        Out {
            status: *status,
            status_code: status.code(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Status, D::Error> {
        In::deserialize(d).map(|i| i.status)
    }
}
