//! What people and producers do: create, replace, ignore, retry, report, delete, purge.

use super::claim::{grant, take_from_holder};
use super::finish::{fail, succeed};
use super::{record, touch};
use crate::error::{Error, Refusal, Result};
use crate::model::{Backoff, Failure, Job, JobName, NewTask, Outcome, Status, Task, TaskKey};
use crate::store::{Claim, Fail, Ignore, Purge, Report, Retry};
use crate::time::Timestamp;
use serde_json::json;
use std::time::Duration;

/// What [`create_task`] refuses in a new task, whatever its job's defaults (which are valid by
/// construction): a store that writes a large batch in several transactions checks every task
/// with this first, so that a refused batch writes nothing.
pub fn check_new_task(job: &JobName, new: &NewTask) -> Result<()> {
    if new.max_attempts == Some(0) {
        return Err(Error::invalid(format!(
            "{job}/{}: max_attempts must be at least 1",
            new.id
        )));
    }
    // A time the stores could not write back as RFC 3339 (past year 9999) would make the task
    // a record nobody can read on every store that keeps JSON.
    if let Some(at) = new.not_before
        && Timestamp::parse(&at.to_rfc3339()).ok() != Some(at)
    {
        return Err(Error::invalid(format!(
            "{job}/{}: not_before {} is out of range (at most {})",
            new.id,
            at.to_rfc3339(),
            Timestamp::MAX.to_rfc3339()
        )));
    }
    super::check_json_depth(&new.data, || format!("task {job}/{}: data", new.id))
}

/// A new `pending` task, with the job's defaults for what `new` leaves unset; a staged job's
/// task starts at its first stage.
pub fn create_task(job: &Job, new: &NewTask, now: Timestamp) -> Result<Task> {
    check_new_task(&job.name, new)?;
    let max_attempts = new.max_attempts.unwrap_or(job.max_attempts);
    Ok(Task {
        job: job.name.clone(),
        id: new.id.clone(),
        status: Status::Pending,
        stage: job.stages.first().cloned(),
        stages: job.stages.clone(),
        attempts: 0,
        max_attempts,
        priority: new.priority,
        not_before: new.not_before,
        lease: None,
        token: 0,
        version: 1,
        data: new.data.clone(),
        output: None,
        error: None,
        history: Vec::new(),
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
    })
}

/// `create` with [`crate::CreateMode::Replace`]: the task starts afresh as `pending` with the new
/// data. It keeps its creation time, history and token counter (tokens are never reused), and a
/// current holder is fenced out.
pub fn replace_task(existing: &Task, job: &Job, new: &NewTask, now: Timestamp) -> Result<Task> {
    let mut t = create_task(job, new, now)?;
    let mut old = existing.clone();
    take_from_holder(&mut old, now);
    t.token = old.token;
    t.version = old.version;
    t.created_at = old.created_at;
    t.history = old.history;
    touch(&mut t, now)?;
    Ok(t)
}

/// `ignored`, from any status but a live lease or `succeeded` (unless forced).
pub fn ignore(task: &Task, req: &Ignore, now: Timestamp) -> Result<Task> {
    check_admin_move(task, req.force, now)?;
    let mut t = task.clone();
    take_from_holder(&mut t, now);
    let note = req
        .reason
        .as_ref()
        .map(|r| Failure::new("ignored", r.clone()));
    record(&mut t, Outcome::Ignored, note, now);
    t.status = Status::Ignored;
    t.finished_at = Some(now);
    touch(&mut t, now)?;
    Ok(t)
}

/// `pending` with zero attempts, from `failed`, `exhausted`, `ignored` (and `pending`); from
/// `succeeded` or a live lease only with force. A forced retry of a succeeded pipeline task starts
/// over at the first stage; otherwise the current stage is retried.
pub fn retry(task: &Task, req: &Retry, now: Timestamp) -> Result<Task> {
    check_admin_move(task, req.force, now)?;
    let mut t = task.clone();
    take_from_holder(&mut t, now);
    if t.status == Status::Succeeded {
        t.stage = t.stages.first().cloned();
    }
    t.status = Status::Pending;
    t.attempts = 0;
    t.not_before = None;
    t.started_at = None;
    t.finished_at = None;
    touch(&mut t, now)?;
    Ok(t)
}

/// Records an outcome without a claim: an implicit claim (attempt counted, token bumped) followed
/// by success or a failure with no backoff. The task is created first if `existing` is `None`.
/// Reporting success for a task that already succeeded changes nothing.
pub fn report(
    existing: Option<&Task>,
    job: &Job,
    key: &TaskKey,
    req: &Report,
    now: Timestamp,
) -> Result<Task> {
    let task = match existing {
        Some(t) => t.clone(),
        None => create_task(job, &NewTask::new(key.id.clone()), now)?,
    };
    let refusal = match task.status {
        Status::Succeeded if req.success => return Ok(task),
        Status::Succeeded => Some(Refusal::Succeeded),
        Status::Exhausted => Some(Refusal::Exhausted),
        Status::Ignored => Some(Refusal::Ignored),
        _ => live_holder(&task, now),
    };
    // The implicit claim follows the claim rule: a task whose expired lease was its last
    // attempt is exhausted, not claimed again (`claim`, `expire`), so the report is refused as
    // such a claim is. (No live lease is left here: `live_holder` refused that.)
    let refusal = refusal.or_else(|| {
        (task.status == Status::InProgress && task.attempts_spent()).then_some(Refusal::Exhausted)
    });
    if let Some(reason) = refusal {
        return Err(Error::Refused {
            key: key.to_string(),
            reason,
        });
    }
    let mut t = task;
    take_from_holder(&mut t, now);
    let claimed = grant(t, &Claim::new("report", Duration::from_millis(1)), now)?;
    if req.success {
        let output = json!({ "detail": req.detail });
        succeed(&claimed.task, &claimed.lease, output, now)
    } else {
        let message = req
            .detail
            .clone()
            .unwrap_or_else(|| "reported failure".to_string());
        let failure = Fail {
            error: Failure::new("reported", message),
            retryable: true,
            backoff: Backoff::NONE,
        };
        fail(&claimed.task, &claimed.lease, &failure, now)
    }
}

/// A task held by a live lease cannot be deleted.
///
/// A record that no longer decodes is not checked: it has no lease anyone could honour (every
/// write of it is `Corrupt`), so a store deletes it without this rule (DESIGN.md, "A damaged task
/// record does not stop its job").
pub fn check_delete(task: &Task, now: Timestamp) -> Result<()> {
    match live_holder(task, now) {
        Some(reason) => Err(Error::Refused {
            key: task.key().to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether `purge` removes `task`: a task of the purge's job (of any job when it names none), in
/// one of its statuses, last written strictly before its cut-off. Only a finished task qualifies
/// ([`Purge::validate`] refuses live statuses first), so a purge never takes work from a worker.
pub fn purgeable(task: &Task, req: &Purge) -> bool {
    req.job.as_ref().is_none_or(|job| *job == task.job)
        && task.status.is_terminal()
        && req.statuses.contains(&task.status)
        && task.updated_at < req.older_than
}

/// Administrative moves leave `succeeded` and live leases alone unless forced.
fn check_admin_move(task: &Task, force: bool, now: Timestamp) -> Result<()> {
    if force {
        return Ok(());
    }
    let refusal = match task.status {
        Status::Succeeded => Some(Refusal::Succeeded),
        _ => live_holder(task, now),
    };
    match refusal {
        Some(reason) => Err(Error::Refused {
            key: task.key().to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn live_holder(task: &Task, now: Timestamp) -> Option<Refusal> {
    match &task.lease {
        Some(l) if task.has_live_lease(now) => Some(Refusal::Locked {
            owner: l.owner.clone(),
            expires_at: l.expires_at,
        }),
        _ => None,
    }
}
