//! What the lease holder may do: heartbeat, patch data, succeed, fail, release. All fenced.

use super::claim::lease_of;
use super::{check_fence, check_lease_length, record, touch};
use crate::error::Result;
use crate::model::{Lease, Outcome, Status, Task};
use crate::store::Fail;
use crate::time::Timestamp;
use serde_json::Value;
use std::time::Duration;

/// Extends the lease to `now + lease_for`.
pub fn heartbeat(
    task: &Task,
    lease: &Lease,
    lease_for: Duration,
    now: Timestamp,
) -> Result<(Task, Lease)> {
    check_lease_length(lease_for)?;
    check_fence(task, lease)?;
    let mut t = task.clone();
    if let Some(l) = t.lease.as_mut() {
        l.expires_at = now.plus(lease_for);
    }
    touch(&mut t, now)?;
    let renewed = lease_of(&t);
    Ok((t, renewed))
}

/// Applies a JSON merge patch (RFC 7386) to `data`. Checkpoints written this way persist
/// whatever the attempt's outcome.
///
/// A patch nesting deeper than [`super::MAX_JSON_DEPTH`] is refused first: a merge never nests
/// deeper than the data or the patch it starts from, so the data stays readable.
pub fn patch_data(task: &Task, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
    check_patch(lease, patch)?;
    check_fence(task, lease)?;
    let mut t = task.clone();
    merge_patch(&mut t.data, patch);
    touch(&mut t, now)?;
    Ok(t)
}

/// Success: `succeeded` with its output, or `pending` at the next pipeline stage with attempts
/// reset. The last error is cleared (it stays in history).
///
/// An output nesting deeper than [`super::MAX_JSON_DEPTH`] is refused first (see
/// [`check_output`]).
pub fn succeed(task: &Task, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
    check_output(lease, &output)?;
    check_fence(task, lease)?;
    let mut t = task.clone();
    record(&mut t, Outcome::Succeeded, None, now);
    t.lease = None;
    t.error = None;
    t.output = Some(output);
    match next_stage(&t) {
        Some(next) => {
            t.stage = Some(next);
            t.status = Status::Pending;
            t.attempts = 0;
            t.not_before = None;
            t.started_at = None;
        }
        None => {
            t.status = Status::Succeeded;
            t.finished_at = Some(now);
        }
    }
    touch(&mut t, now)?;
    Ok(t)
}

/// What [`succeed`] refuses in an output whatever the task's state: nesting deeper than
/// [`super::MAX_JSON_DEPTH`]. Native paths (a success written by one SQL statement or Lua
/// script) call it before writing; refused, nothing is written and the lease still holds, so
/// the worker can record a failure instead.
pub fn check_output(lease: &Lease, output: &Value) -> Result<()> {
    super::check_json_depth(output, || format!("task {}: output", lease.key))
}

/// What [`patch_data`] refuses in a patch whatever the task's state (see [`check_output`]).
pub fn check_patch(lease: &Lease, patch: &Value) -> Result<()> {
    super::check_json_depth(patch, || format!("task {}: data patch", lease.key))
}

/// Failure: `failed` until `now + backoff(attempts)` while attempts remain and the error is
/// retryable, else `exhausted`.
pub fn fail(task: &Task, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
    check_fence(task, lease)?;
    let mut t = task.clone();
    record(&mut t, Outcome::Failed, Some(req.error.clone()), now);
    t.lease = None;
    t.error = Some(req.error.clone());
    if req.retryable && !t.attempts_spent() {
        t.status = Status::Failed;
        t.not_before = Some(now.plus(req.backoff.delay(&lease.key, t.attempts)));
    } else {
        t.status = Status::Exhausted;
        t.finished_at = Some(now);
    }
    touch(&mut t, now)?;
    Ok(t)
}

/// Graceful give-back: `pending` again, the attempt not counted.
pub fn release(task: &Task, lease: &Lease, now: Timestamp) -> Result<Task> {
    check_fence(task, lease)?;
    let mut t = task.clone();
    record(&mut t, Outcome::Released, None, now);
    t.lease = None;
    t.status = Status::Pending;
    t.attempts = t.attempts.saturating_sub(1);
    t.not_before = None;
    t.started_at = None;
    touch(&mut t, now)?;
    Ok(t)
}

/// The stage after the task's current one, if any.
fn next_stage(t: &Task) -> Option<String> {
    let current = t.stage.as_ref()?;
    let pos = t.stages.iter().position(|s| s == current)?;
    t.stages.get(pos + 1).cloned()
}

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}
