//! What people do to tasks: `retry`, `ignore`, `delete`, `purge`.
//!
//! Ids are all validated first (exit 2, nothing written). Then each task is handled on its own:
//! a task that is missing or refused (a live lease holds it, it already succeeded) is reported on
//! stderr and in the JSON document, the others proceed, and the exit code says the worst (4 or 5).
//! A store failure stops at once (exit 1). When no task was changed, the job is looked up: if it
//! does not exist, that is the one error (exit 4) instead of a "not found" per id or a count of 0.

use super::list::fetch;
use super::{Ctx, ensure_job, job_not_found};
use crate::args::{DeleteArgs, IgnoreArgs, PurgeArgs, RetryArgs};
use crate::exit;
use crate::parse;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use tasktrack::{
    Error, ErrorKind, Ignore, JobName, Purge, Result, Retry, Status, TaskId, TaskKey, TaskQuery,
    Timestamp,
};

/// `retry JOB [ID...] [--failed] [--exhausted] [--ignored]`.
pub async fn retry(ctx: &Ctx, args: RetryArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    let mut ids = parse::ids(&args.ids)?;
    let mut statuses = Vec::new();
    if args.failed {
        statuses.extend([Status::Failed, Status::Exhausted]);
    }
    if args.exhausted && !statuses.contains(&Status::Exhausted) {
        statuses.push(Status::Exhausted);
    }
    if args.ignored {
        statuses.push(Status::Ignored);
    }
    if ids.is_empty() && statuses.is_empty() {
        return Err(Error::invalid(
            "say which tasks: ids, --failed, --exhausted or --ignored",
        ));
    }
    if !statuses.is_empty() {
        // Collect first, then write: retried tasks leave the filter while we page.
        let found = fetch(
            ctx.store.as_ref(),
            TaskQuery::new(job.clone()).with_statuses(statuses),
            None,
        )
        .await?;
        ids.extend(found.tasks.into_iter().map(|t| t.id));
        // Tried too, so that each is reported (corrupt, exit 1) rather than passed over.
        ids.extend(found.unreadable.into_iter().map(|u| u.id));
    }
    let req = Retry { force: args.force };
    let result = each(ctx, &job, ids, |key| async move {
        ctx.store.retry(&key, &req, ctx.now()).await.map(|_| ())
    })
    .await?;
    finish(ctx, &job, "retried", result)
}

/// `ignore JOB ID... [--reason TEXT]`.
pub async fn ignore(ctx: &Ctx, args: IgnoreArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    let ids = parse::ids(&args.ids)?;
    let req = Ignore {
        reason: args.reason.clone(),
        force: args.force,
    };
    let req = &req;
    let result = each(ctx, &job, ids, |key| async move {
        ctx.store.ignore(&key, req, ctx.now()).await.map(|_| ())
    })
    .await?;
    finish(ctx, &job, "ignored", result)
}

/// `delete JOB ID...` or `delete JOB --all`.
pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<u8> {
    let job = parse::job(&args.job)?;
    if args.all {
        let deleted = job_not_found(&job, ctx.store.delete_job(&job, ctx.now()).await)?;
        let doc = json!({ "job": job, "deleted": deleted.tasks, "kept_leased": deleted.kept_leased, "job_removed": deleted.job_removed });
        ctx.out.emit(&doc, || {
            let mut s = format!("{job}: {} tasks deleted", deleted.tasks);
            if deleted.kept_leased > 0 {
                s.push_str(&format!(
                    "; {} kept because a worker holds them (job record kept)",
                    deleted.kept_leased
                ));
            }
            s
        })?;
        return Ok(if deleted.kept_leased > 0 {
            exit::REFUSED
        } else {
            exit::OK
        });
    }
    let ids = parse::ids(&args.ids)?;
    if ids.is_empty() {
        return Err(Error::invalid(
            "say which tasks: ids, or --all for the whole job",
        ));
    }
    let result = each(ctx, &job, ids, |key| async move {
        ctx.store.delete(&key, ctx.now()).await
    })
    .await?;
    finish(ctx, &job, "deleted", result)
}

/// `purge [JOB] --older-than D [--status S,..]`.
pub async fn purge(ctx: &Ctx, args: PurgeArgs) -> Result<u8> {
    let job = args.job.as_deref().map(parse::job).transpose()?;
    let age = parse::duration("older-than", &args.older_than)?;
    let req = Purge {
        job: job.clone(),
        statuses: parse::statuses(&args.status)?,
        // An age that reaches before 1970 (`--older-than 100000y`) stops there: no task is
        // older, so the same tasks (none) are purged, and `older_than` stays a time that JSON
        // can carry (RFC 3339 has no year before 0, and `minus` saturates far beyond it).
        older_than: ctx.now().minus(age).max(Timestamp::EPOCH),
    };
    req.validate()?;
    let n = ctx.store.purge(&req).await?;
    if let Some(job) = job.as_ref().filter(|_| n == 0) {
        ensure_job(ctx, job).await?;
    }
    let doc =
        json!({ "job": job, "purged": n, "older_than": req.older_than, "statuses": req.statuses });
    let scope = job.map_or("all jobs".to_string(), |j| j.to_string());
    ctx.out
        .emit(&doc, || format!("{scope}: {n} finished tasks purged"))?;
    Ok(exit::OK)
}

/// What happened to each task of a bulk action.
struct Each {
    done: Vec<TaskId>,
    refused: Vec<(TaskId, Error)>,
}

/// Applies `op` once to each distinct id, in the order first given (an id named twice, or named
/// and also selected by `--failed`, is handled and counted once); missing, refused or damaged
/// tasks are collected, store failures stop. When no task was changed and the job does not exist, that is
/// the error.
async fn each<F, Fut>(ctx: &Ctx, job: &JobName, mut ids: Vec<TaskId>, op: F) -> Result<Each>
where
    F: Fn(TaskKey) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    let mut result = Each {
        done: Vec::new(),
        refused: Vec::new(),
    };
    for id in ids {
        match op(TaskKey::new(job.clone(), id.clone())).await {
            Ok(()) => result.done.push(id),
            // A damaged task (corrupt) is that task's trouble, not the store's: the others go on.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound
                        | ErrorKind::Refused
                        | ErrorKind::StaleLease
                        | ErrorKind::Corrupt
                ) =>
            {
                result.refused.push((id, e));
            }
            Err(e) => return Err(e),
        }
    }
    if result.done.is_empty() {
        ensure_job(ctx, job).await?;
    }
    Ok(result)
}

fn finish(ctx: &Ctx, job: &JobName, verb: &str, result: Each) -> Result<u8> {
    let code = result
        .refused
        .iter()
        .fold(exit::OK, |c, (_, e)| exit::worst(c, exit::code(e)));
    for (_, e) in &result.refused {
        ctx.out.warn(e.to_string());
    }
    let refused: Vec<Value> = result
        .refused
        .iter()
        .map(|(id, e)| json!({ "id": id, "kind": exit::kind_name(e), "message": e.to_string() }))
        .collect();
    let doc =
        json!({ "job": job, verb: result.done.len(), "ids": result.done, "refused": refused });
    ctx.out.emit(&doc, || {
        let mut s = format!("{job}: {} {verb}", result.done.len());
        if !refused.is_empty() {
            s.push_str(&format!(", {} refused", refused.len()));
        }
        s
    })?;
    Ok(code)
}
