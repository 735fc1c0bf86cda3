//! [`Status`]: where a task is in its life, with the stable numeric codes of the original tracker.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A task's status.
///
/// | status | code | enters by | leaves by |
/// |---|---|---|---|
/// | `pending` | 0 | create, release, retry, a pipeline stage succeeding | claim |
/// | `in_progress` | 10 | claim | succeed, fail, release, ignore (forced), claim after lease expiry |
/// | `failed` | 20 | fail with attempts left | claim after backoff, retry, ignore |
/// | `exhausted` | 30 | fail at max attempts or not retryable; lease expiry at max attempts | retry, ignore |
/// | `succeeded` | 40 | succeed at the last stage | only by force |
/// | `ignored` | 50 | ignore | retry |
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker holding a lease.
    InProgress,
    /// Failed with attempts left; claimable again after its backoff.
    Failed,
    /// Failed for the last time.
    Exhausted,
    /// Done.
    Succeeded,
    /// Skipped on purpose.
    Ignored,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::InProgress,
        Status::Failed,
        Status::Exhausted,
        Status::Succeeded,
        Status::Ignored,
    ];

    /// The stable numeric code (the original Python tracker's).
    pub const fn code(self) -> u8 {
        match self {
            Status::Pending => 0,
            Status::InProgress => 10,
            Status::Failed => 20,
            Status::Exhausted => 30,
            Status::Succeeded => 40,
            Status::Ignored => 50,
        }
    }

    /// The status with this code.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The snake_case name used in JSON, SQL and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Failed => "failed",
            Status::Exhausted => "exhausted",
            Status::Succeeded => "succeeded",
            Status::Ignored => "ignored",
        }
    }

    /// Terminal statuses are never claimed again without a person (retry) or force.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Exhausted | Status::Succeeded | Status::Ignored
        )
    }

    /// Parses a comma-separated list (`failed,exhausted`).
    pub fn parse_list(s: &str) -> Result<Vec<Status>> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl std::str::FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid(format!(
                    "unknown status {s:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let codes: Vec<u8> = Status::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 10, 20, 30, 40, 50]);
        assert_eq!(Status::from_code(30), Some(Status::Exhausted));
        assert!("bogus".parse::<Status>().is_err());
    }
}
