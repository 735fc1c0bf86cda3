//! The job record: defaults for its tasks, pipeline stages, expected amount, user-set state.

use super::key::JobName;
use crate::error::{Error, Result};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// The default attempt limit.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The default lease length: 5 minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// A job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's name.
    pub name: JobName,
    /// Free-form metadata.
    pub metadata: Value,
    /// Expected number of tasks: tasks not created yet count as pending.
    pub amount: Option<u64>,
    /// Default attempt limit for new tasks.
    pub max_attempts: u32,
    /// Default lease length, in milliseconds.
    pub lease_ms: u64,
    /// Retry backoff after a failure.
    pub backoff: Backoff,
    /// Ordered pipeline stages (empty: single step).
    pub stages: Vec<String>,
    /// User-set state, indexed.
    pub state: JobState,
    /// Incremented by every write.
    pub version: u64,
    /// When the job was created.
    pub created_at: Timestamp,
    /// When the job record was last written.
    pub updated_at: Timestamp,
}

impl Job {
    /// A job with every default, as created implicitly by adding tasks to an unknown job.
    pub fn new(name: JobName, now: Timestamp) -> Self {
        Job {
            name,
            metadata: Value::Null,
            amount: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            lease_ms: duration_ms(DEFAULT_LEASE),
            backoff: Backoff::default(),
            stages: Vec::new(),
            state: JobState::Pending,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// The default lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}

/// The fields of a job to set; `None` leaves a field as it is (or at its default for a new job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// New metadata.
    pub metadata: Option<Value>,
    /// New expected amount (`Some(None)` clears it).
    pub amount: Option<Option<u64>>,
    /// New default attempt limit (≥ 1).
    pub max_attempts: Option<u32>,
    /// New default lease (> 0).
    pub lease: Option<Duration>,
    /// New backoff.
    pub backoff: Option<Backoff>,
    /// New stages; affects tasks created afterwards.
    pub stages: Option<Vec<String>>,
    /// New state.
    pub state: Option<JobState>,
}

/// Exponential retry backoff with jitter and a cap.
///
/// The delay before attempt `n + 1` is `initial × 2^(n−1)`, capped at `max`; with jitter it is
/// drawn in `[delay/2, delay]`. The jitter is a deterministic hash of the task key and attempt,
/// so every backend computes the same instant and tests can predict it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure, in milliseconds.
    pub initial_ms: u64,
    /// The cap, in milliseconds.
    pub max_ms: u64,
    /// Whether to spread retries (recommended).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: 1_000,
            max_ms: 300_000,
            jitter: true,
        }
    }
}

impl Backoff {
    /// No delay at all: retry at once.
    pub const NONE: Backoff = Backoff {
        initial_ms: 0,
        max_ms: 0,
        jitter: false,
    };

    /// A backoff from `initial` to `max`, with jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial_ms: duration_ms(initial),
            max_ms: duration_ms(max),
            jitter: true,
        }
    }
}

/// A job's user-set state (`jobs --state S` is an indexed query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum JobState {
    Pending,
    Scheduled,
    Started,
    Succeeded,
    Failed,
    Revoked,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Started,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Revoked,
    ];

    /// The snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Started => "started",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let known = JobState::ALL.map(JobState::as_str).join(", ");
                Error::invalid(format!("unknown job state {s:?} (expected one of {known})"))
            })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move of a job's state, optionally only from an expected state (compare-and-set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStateChange {
    /// The new state.
    pub to: JobState,
    /// Refuse with [`Error::Conflict`] unless the job is in this state.
    pub expected: Option<JobState>,
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
