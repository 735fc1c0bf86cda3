//! The lifecycle: every status transition, as pure functions `(task, request, now) -> new task | refusal`.
//!
//! This module is the only place that decides whether a transition is allowed. Document
//! backends load a task, call one of these functions and write the result back conditionally
//! (see [`crate::cas`]); native backends that restate a rule in SQL or Lua name the rule here
//! and are pinned to it by the conformance suite.
//!
//! ```text
//!                 create                        claim / claim_next
//!   (none) ─────────────────▶ pending ───────────────────────────────▶ in_progress
//!                              ▲  ▲  ▲                                    │  │  │
//!              release ────────┘  │  └──── retry (from failed, exhausted, │  │  │
//!   (attempt not counted)         │        ignored; succeeded by force)   │  │  │
//!                                 │                                       │  │  │ succeed at a
//!                  next pipeline stage ◀──────────────────────────────────┘  │  │ non-final stage
//!                                                                            │  │
//!     failed ◀── fail, attempts left ──────────────────────────────────────┘  │
//!       │  (claimable again after backoff)                                    │ succeed
//!       └── claim ──▶ in_progress                                             ▼
//!   exhausted ◀── fail at max_attempts / not retryable / lease expired at max   succeeded
//!   ignored   ◀── ignore (any status but a live lease, unless forced)           (final unless forced)
//! ```
//!
//! # Guarantees
//! - **Exactly-once completion.** Every claim increments the task's fencing token. `succeed`,
//!   `fail`, `release`, `heartbeat` and `patch_data` are accepted only while the task is
//!   `in_progress` with the presented token; anything else is [`Error::StaleLease`]. A worker whose
//!   lease expired and was taken over can never overwrite the new holder's result, and nothing
//!   leaves `succeeded` without `force`.
//! - **At-least-once execution.** A worker that dies keeps its lease until it expires; the next
//!   claim then records the dead attempt (`lease_expired`) and hands the task out again. The work
//!   itself may therefore run more than once; its recorded completion happens once.
//! - **Lease length.** Leases compare instants from different machines: a lease must be much
//!   longer than the clock skew between them plus the longest pause a worker may suffer, and
//!   heartbeats must come well within it (the [`crate::Tracker`] renews at a third of the lease).

mod admin;
mod backoff;
mod claim;
mod depth;
mod finish;
mod jobs;

pub use admin::{
    check_delete, check_new_task, create_task, ignore, purgeable, replace_task, report, retry,
};
pub use claim::{ClaimDecision, claim, expire, lease_of};
pub use depth::{MAX_JSON_DEPTH, check_json_depth, json_depth};
pub use finish::{check_output, check_patch, fail, heartbeat, patch_data, release, succeed};
pub use jobs::{apply_job_spec, check_job_spec, move_job_state};

use crate::error::{Error, Result};
use crate::model::{Attempt, Failure, HISTORY_LIMIT, Lease, Outcome, Status, Task};
use crate::time::Timestamp;
use std::time::Duration;

/// Every write bumps the version and `updated_at`.
fn touch(task: &mut Task, now: Timestamp) -> Result<()> {
    task.version = bumped(task.version, "version", task)?;
    task.updated_at = now;
    Ok(())
}

/// `n + 1` for a counter of `task`; a stored value at the top of its range (only a record
/// edited by hand holds one) is [`Error::Corrupt`], never a wrap back to a reused number.
fn bumped(n: u64, what: &str, task: &Task) -> Result<u64> {
    n.checked_add(1).ok_or_else(|| Error::Corrupt {
        location: task.key().to_string(),
        message: format!("its {what} is at the largest value it can hold ({n})"),
    })
}

/// Whether a claim can bump `task`'s token and version without passing `max`, the largest
/// integer its store holds: `i64::MAX` where integers are signed (SQL, SQLite, MongoDB); at
/// `u64::MAX` [`claim`] itself answers [`Error::Corrupt`]. A claim of an expired lease bumps
/// the version twice (the dead attempt, then the grant), the token once. Only a record edited
/// by hand fails it, and claims set such a record aside as damaged instead of failing every
/// claim of its job.
pub fn claim_can_advance(task: &Task, max: u64) -> bool {
    task.token < max && task.version < max.saturating_sub(1)
}

/// The longest lease: a century. Longer ones mean "never expires", which a lease cannot promise
/// (a dead worker's task would never be claimed again), and they overflow the expiry arithmetic
/// of backends that compute it natively (Redis's Lua numbers).
pub const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A lease of zero length, or over [`MAX_LEASE`], is rejected before anything runs. Every
/// operation that takes a lease length goes through it, native backends included.
pub fn check_lease_length(lease_for: Duration) -> Result<()> {
    if lease_for.as_millis() == 0 {
        return Err(Error::invalid("lease length must be at least 1ms"));
    }
    if lease_for > MAX_LEASE {
        return Err(Error::invalid(format!(
            "lease length must be at most 100 years, not {}s",
            lease_for.as_secs()
        )));
    }
    Ok(())
}

/// The fencing rule: only the holder of the current token may act on an `in_progress` task.
///
/// The lease's acquisition time must match too. A task deleted (once its lease ran out) and
/// created again starts counting tokens afresh, so its first claim has the token the deleted
/// task's first claim had; the acquisition times differ (the new claim comes after the old
/// lease's expiry), which fences the old holder out of the new task.
pub fn check_fence(task: &Task, lease: &Lease) -> Result<()> {
    let holds = task.job == lease.key.job
        && task.id == lease.key.id
        && task.status == Status::InProgress
        && task
            .lease
            .as_ref()
            .is_some_and(|l| l.token == lease.token && l.acquired_at == lease.acquired_at);
    if holds {
        Ok(())
    } else {
        Err(Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        })
    }
}

/// The history record `lease`'s attempt left, once its outcome is stored (succeeded, failed,
/// released; or lease_expired / fenced when others ended it).
///
/// A holder whose answer was lost (the connection broke after the store committed) retries,
/// and its retry meets its own result as [`Error::StaleLease`]: the lease is gone because the
/// first try ended it. This record tells the two apart: it carries the lease's holder, attempt
/// and acquisition time, which only that lease had.
pub fn outcome_of<'t>(task: &'t Task, lease: &Lease) -> Option<&'t Attempt> {
    if task.job != lease.key.job || task.id != lease.key.id {
        return None;
    }
    task.history.iter().rev().find(|a| {
        a.worker == lease.owner && a.started == lease.acquired_at && a.attempt == lease.attempt
    })
}

/// Appends a history record, keeping the newest [`HISTORY_LIMIT`].
fn record(task: &mut Task, outcome: Outcome, error: Option<Failure>, now: Timestamp) {
    let (worker, started) = match &task.lease {
        Some(l) => (l.owner.clone(), l.acquired_at),
        None => ("admin".to_string(), now),
    };
    task.history.push(Attempt {
        attempt: task.attempts,
        stage: task.stage.clone(),
        worker,
        started,
        finished: now,
        outcome,
        error,
    });
    if task.history.len() > HISTORY_LIMIT {
        let excess = task.history.len() - HISTORY_LIMIT;
        task.history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Job, JobName, NewTask, TaskId};
    use crate::store::Claim;

    fn task() -> Task {
        let now = Timestamp::from_millis(1_000);
        let job = Job::new(JobName::new("j").unwrap_or_else(|e| panic!("{e}")), now);
        let id = TaskId::new("t").unwrap_or_else(|e| panic!("{e}"));
        create_task(&job, &NewTask::new(id), now).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A counter at the top of its range (a hand-edited record) is corrupt, never wrapped back
    /// to a number already used (a reused fencing token would let a stale worker in).
    #[test]
    fn counters_at_their_limit_are_corrupt_not_wrapped() {
        let now = Timestamp::from_millis(2_000);
        let claim = Claim::new("w", Duration::from_secs(60));
        let mut at_limit = task();
        at_limit.token = u64::MAX;
        let refused = super::claim(&at_limit, &claim, now);
        assert!(
            matches!(&refused, Err(Error::Corrupt { message, .. }) if message.contains("fencing token")),
            "{refused:?}"
        );
        let mut old = task();
        old.version = u64::MAX;
        let refused = ignore(&old, &crate::store::Ignore::default(), now);
        assert!(
            matches!(&refused, Err(Error::Corrupt { message, .. }) if message.contains("version")),
            "{refused:?}"
        );
    }

    fn granted(task: &Task, owner: &str, now: Timestamp) -> (Task, Lease) {
        match super::claim(task, &Claim::new(owner, Duration::from_secs(60)), now) {
            Ok(ClaimDecision::Granted(c)) => (c.task, c.lease),
            other => panic!("{other:?}"),
        }
    }

    /// A holder finds its own stored outcome, and no other lease finds it: not the next holder
    /// of the same task, nor a lease of the same worker at another time.
    #[test]
    fn outcome_of_finds_only_the_lease_that_ended_the_attempt() {
        let (t1, t2) = (Timestamp::from_millis(2_000), Timestamp::from_millis(3_000));
        let (held, lease) = granted(&task(), "w", t1);
        assert!(outcome_of(&held, &lease).is_none(), "not ended yet");
        let failed = fail(
            &held,
            &lease,
            &crate::store::Fail::new(crate::model::Failure::new("e", "m")),
            t2,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let found = outcome_of(&failed, &lease).map(|a| a.outcome);
        assert_eq!(found, Some(crate::model::Outcome::Failed));

        let later = Timestamp::from_millis(100_000);
        let (again, next) = granted(&failed, "w", later);
        let done =
            succeed(&again, &next, serde_json::json!(1), later).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            outcome_of(&done, &next).map(|a| a.outcome),
            Some(crate::model::Outcome::Succeeded)
        );
        assert_eq!(
            outcome_of(&done, &lease).map(|a| a.outcome),
            Some(crate::model::Outcome::Failed),
            "the first lease still finds its own failure, not the later success"
        );
        let mut stranger = next.clone();
        stranger.acquired_at = t1.plus(Duration::from_millis(1));
        assert!(outcome_of(&done, &stranger).is_none());
    }
}
