//! The one portable error type.
//!
//! Variants name *conditions*, not dependencies: a backend maps its native errors (SQLSTATE codes,
//! Redis error kinds, AWS error codes) onto these in one place, so that faces can map them onto
//! exit codes and HTTP statuses in one `match` each.

use crate::time::Timestamp;
use std::fmt;

/// Result alias used throughout tasktrack.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a store or a face.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input from a caller: an invalid key, a zero lease, a malformed URL or query.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The task or job does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The lifecycle refused the request; `reason` says why (locked, succeeded, ...).
    #[error("{key}: {reason}")]
    Refused {
        /// `job/id` of the task.
        key: String,
        /// Why the request was refused.
        reason: Refusal,
    },
    /// The presented lease no longer holds the task (its token was superseded or the task
    /// left `in_progress`). A worker that sees this must drop its result: someone else owns the task.
    #[error("stale lease on {key}: token {token} no longer holds the task")]
    StaleLease {
        /// `job/id` of the task.
        key: String,
        /// The token the caller presented.
        token: u64,
    },
    /// A compare-and-set expectation stated by the caller did not hold (e.g. a job state move).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Optimistic concurrency gave up after too many conflicting writes; retrying later is safe.
    #[error("contention: {0}")]
    Contention(String),
    /// The backend cannot do this operation (a declared gap, never a wrong answer).
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// What it cannot do.
        what: String,
    },
    /// A stored record could not be read; `location` names it (a file, a row, an object).
    #[error("corrupt record at {location}: {message}")]
    Corrupt {
        /// Where the record lives.
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store could not be reached; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Any other backend failure.
    #[error("backend error: {0}")]
    Backend(String),
}

/// Why the lifecycle refused to hand out (or touch) a task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// Another worker holds a live lease.
    Locked {
        /// The holder's worker id.
        owner: String,
        /// When the holder's lease runs out unless renewed.
        expires_at: Timestamp,
    },
    /// The task already succeeded; only `force` moves it.
    Succeeded,
    /// The task used up its attempts.
    Exhausted,
    /// A person chose to skip the task.
    Ignored,
    /// The task is waiting for its retry backoff or schedule.
    NotYet {
        /// Earliest claim time.
        until: Timestamp,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Locked { owner, expires_at } => {
                write!(f, "locked by {owner} until {expires_at}")
            }
            Refusal::Succeeded => f.write_str("already succeeded"),
            Refusal::Exhausted => f.write_str("exhausted its attempts"),
            Refusal::Ignored => f.write_str("ignored"),
            Refusal::NotYet { until } => write!(f, "not claimable before {until}"),
        }
    }
}

/// A coarse classification of [`Error`], for exit codes, HTTP statuses and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    Refused,
    StaleLease,
    Conflict,
    Contention,
    Unsupported,
    Corrupt,
    Unavailable,
    Backend,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::StaleLease { .. } => ErrorKind::StaleLease,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Contention(_) => ErrorKind::Contention,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Backend(_) => ErrorKind::Backend,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Contention(_))
    }

    /// The refusal, if this is a lifecycle refusal.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Error::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::InvalidInput(message.to_string())
    }

    /// Shorthand for [`Error::Backend`].
    pub fn backend(message: impl fmt::Display) -> Self {
        Error::Backend(message.to_string())
    }

    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(location: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Corrupt {
            location: location.to_string(),
            message: message.to_string(),
        }
    }
}
