//! Claiming: who may take a task, and what taking it changes.

use super::{bumped, check_lease_length, record, touch};
use crate::error::{Refusal, Result};
use crate::model::{Claimed, Failure, Lease, LeaseState, Outcome, Status, Task, validate_key};
use crate::store::Claim;
use crate::time::Timestamp;

/// What a claim decided. Both `Granted` and `Exhausted` carry a task to write.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimDecision {
    /// The task is the caller's.
    Granted(Claimed),
    /// Not claimable; nothing changes.
    Refused(Refusal),
    /// The previous holder's lease expired on its last attempt: write the task (now `exhausted`)
    /// and report [`Refusal::Exhausted`].
    Exhausted(Task),
}

/// The claim rule.
///
/// Claimable: `pending` and `failed` whose `not_before` has passed, and `in_progress` whose lease
/// has expired (the dead attempt is recorded; at `max_attempts` the task becomes `exhausted`
/// instead). The caller's own live lease is re-entrant: same token, expiry extended, no attempt
/// counted. A live lease of another worker refuses without changing anything. `force` takes the
/// task whatever its status, bumping the token so the previous holder is fenced out.
pub fn claim(task: &Task, req: &Claim, now: Timestamp) -> Result<ClaimDecision> {
    check_lease_length(req.lease_for)?;
    validate_key("worker id", &req.owner)?;
    if req.force {
        let mut t = task.clone();
        take_from_holder(&mut t, now);
        return Ok(ClaimDecision::Granted(grant(t, req, now)?));
    }
    let decision = match task.status {
        Status::Succeeded => ClaimDecision::Refused(Refusal::Succeeded),
        Status::Exhausted => ClaimDecision::Refused(Refusal::Exhausted),
        Status::Ignored => ClaimDecision::Refused(Refusal::Ignored),
        Status::Pending | Status::Failed => match task.not_before {
            Some(until) if now < until => ClaimDecision::Refused(Refusal::NotYet { until }),
            _ => ClaimDecision::Granted(grant(task.clone(), req, now)?),
        },
        Status::InProgress => match &task.lease {
            Some(l) if now < l.expires_at && l.owner == req.owner => {
                ClaimDecision::Granted(renew(task.clone(), req, now)?)
            }
            Some(l) if now < l.expires_at => ClaimDecision::Refused(Refusal::Locked {
                owner: l.owner.clone(),
                expires_at: l.expires_at,
            }),
            _ => {
                let t = expire(task, now)?;
                if t.status == Status::Exhausted {
                    ClaimDecision::Exhausted(t)
                } else {
                    ClaimDecision::Granted(grant(t, req, now)?)
                }
            }
        },
    };
    Ok(decision)
}

/// The expired-lease rule: records the dead attempt as `lease_expired` in history and as the
/// last error; the task becomes `exhausted` if that was its last attempt, else claimable (`failed`
/// with no backoff). Only meaningful for an `in_progress` task whose lease ran out.
pub fn expire(task: &Task, now: Timestamp) -> Result<Task> {
    let mut t = task.clone();
    end_expired_lease(&mut t, now);
    if t.attempts_spent() {
        t.status = Status::Exhausted;
        t.finished_at = Some(now);
    } else {
        t.status = Status::Failed;
        t.not_before = None;
    }
    touch(&mut t, now)?;
    Ok(t)
}

/// Records the dead attempt of an expired lease and drops the lease.
fn end_expired_lease(t: &mut Task, now: Timestamp) {
    let failure = match &t.lease {
        Some(l) => Failure::new(
            "lease_expired",
            format!("lease of {} expired at {}", l.owner, l.expires_at),
        ),
        None => Failure::new("lease_expired", "lease expired"),
    };
    record(t, Outcome::LeaseExpired, Some(failure.clone()), now);
    t.lease = None;
    t.error = Some(failure);
}

/// Ends whatever lease the task holds before an administrative or forced move: an expired one is
/// recorded as a dead attempt, a live one as fenced out. The caller sets the new status.
pub(super) fn take_from_holder(t: &mut Task, now: Timestamp) {
    if t.status != Status::InProgress {
        return;
    }
    if t.has_live_lease(now) {
        record(t, Outcome::Fenced, None, now);
        t.lease = None;
    } else {
        end_expired_lease(t, now);
    }
}

/// Hands the task to the claimant: attempts + 1, token + 1, a fresh lease.
pub(super) fn grant(mut t: Task, req: &Claim, now: Timestamp) -> Result<Claimed> {
    t.status = Status::InProgress;
    t.attempts = t.attempts.saturating_add(1);
    t.token = bumped(t.token, "fencing token", &t)?;
    t.not_before = None;
    t.started_at = Some(now);
    t.finished_at = None;
    t.lease = Some(LeaseState {
        owner: req.owner.clone(),
        token: t.token,
        acquired_at: now,
        expires_at: now.plus(req.lease_for),
    });
    touch(&mut t, now)?;
    Ok(claimed(t))
}

/// Re-entrant claim by the live holder: same token, later expiry.
fn renew(mut t: Task, req: &Claim, now: Timestamp) -> Result<Claimed> {
    if let Some(l) = t.lease.as_mut() {
        l.expires_at = l.expires_at.max(now.plus(req.lease_for));
    }
    touch(&mut t, now)?;
    Ok(claimed(t))
}

fn claimed(task: Task) -> Claimed {
    let lease = lease_of(&task);
    Claimed { task, lease }
}

/// The worker's lease for an `in_progress` task, as its stored record holds it (what a holder
/// that lost the answer to its claim can read back).
pub fn lease_of(task: &Task) -> Lease {
    let (owner, token, acquired_at, expires_at) = match &task.lease {
        Some(l) => (l.owner.clone(), l.token, l.acquired_at, l.expires_at),
        None => (String::new(), task.token, task.updated_at, task.updated_at),
    };
    Lease {
        key: task.key(),
        owner,
        token,
        attempt: task.attempts,
        acquired_at,
        expires_at,
    }
}
