//! The hot paths restated as single `findOneAndUpdate` round trips (aggregation-pipeline updates).
//!
//! The compare-and-swap adapter needs two round trips per transition (read, then a conditional
//! replace) and, under contention, retries. Here the filter selects the document the rule
//! applies to and the pipeline computes the new document on the server, atomically, from values
//! the caller passes (`now` included: the server's clock is never read). Each pipeline restates
//! one pure rule of `tasktrack_core::lifecycle`, named next to it and pinned by the conformance
//! suite. Every value that comes from a user (worker id, output) enters the pipeline through
//! `$literal`, so a string such as `"$status"` is stored as text and never read as a field path.

use crate::codec::{self, task_id};
use crate::documents::MongoDocuments;
use futures::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::options::ReturnDocument;
use serde_json::Value;
use tasktrack_core::cas::{MAX_CAS_ATTEMPTS, check_claim_next};
use tasktrack_core::{
    ClaimNext, Claimed, Error, HISTORY_LIMIT, JobName, Lease, Result, Status, Task, Timestamp,
};

/// `-HISTORY_LIMIT` for `$slice`: keep the newest records.
fn keep_newest() -> i64 {
    -i64::try_from(HISTORY_LIMIT).unwrap_or(i64::MAX)
}

/// The history record `lifecycle::record` appends: the holder's attempt, ending now.
fn history_entry(now: &str, outcome: &str, error: Bson) -> Document {
    doc! {
        "attempt": "$attempts",
        "stage": "$stage",
        "worker": {"$ifNull": ["$lease.owner", "admin"]},
        "started": {"$ifNull": ["$lease.acquired_at", now]},
        "finished": now,
        "outcome": outcome,
        "error": error,
    }
}

/// `history` with `entry` appended, cut to the newest [`HISTORY_LIMIT`].
fn append_history(entry: Document) -> Document {
    doc! {"$slice": [{"$concatArrays": ["$history", [entry]]}, keep_newest()]}
}

/// `$cond` shorthand.
fn cond(test: &str, then: impl Into<Bson>, otherwise: impl Into<Bson>) -> Document {
    doc! {"$cond": [test, then.into(), otherwise.into()]}
}

/// The claim rule for what `claim_next` finds, as one pipeline: `lifecycle::claim` without
/// force on a claimable task, i.e. `grant` for `pending` / `failed`, and `expire` then `grant`
/// (or `expire` to `exhausted` at max_attempts) for an `in_progress` task whose lease ran out.
fn claim_pipeline(owner: &str, now: Timestamp, expires: Timestamp) -> Vec<Document> {
    let now_s = now.to_rfc3339();
    let exp_s = expires.to_rfc3339();
    vec![
        // The filter only lets claimable tasks through, so in_progress means "lease expired".
        doc! {"$set": {
            "_tt_expired": {"$eq": ["$status", Status::InProgress.as_str()]},
        }},
        doc! {"$set": {
            // lifecycle::expire: at max_attempts the dead attempt exhausts the task.
            "_tt_exhaust": {"$and": ["$_tt_expired", {"$gte": ["$attempts", "$max_attempts"]}]},
            // lifecycle::end_expired_lease's failure: "lease of OWNER expired at EXPIRY".
            "_tt_failure": {
                "kind": "lease_expired",
                "message": {"$cond": [
                    {"$eq": [{"$ifNull": ["$lease", null]}, null]},
                    "lease expired",
                    {"$concat": ["lease of ", "$lease.owner", " expired at ", "$lease.expires_at"]},
                ]},
                "detail": null,
            },
        }},
        doc! {"$set": {
            "history": cond("$_tt_expired", append_history(history_entry(&now_s, "lease_expired", "$_tt_failure".into())), "$history"),
            "error": cond("$_tt_expired", "$_tt_failure", "$error"),
        }},
        // lifecycle::grant (attempts + 1, token + 1, a fresh lease), or the exhausted end of expire.
        doc! {"$set": {
            "status": cond("$_tt_exhaust", Status::Exhausted.as_str(), Status::InProgress.as_str()),
            "status_code": cond("$_tt_exhaust", i32::from(Status::Exhausted.code()), i32::from(Status::InProgress.code())),
            "finished_at": cond("$_tt_exhaust", now_s.as_str(), Bson::Null),
            "lease": cond("$_tt_exhaust", Bson::Null, doc! {
                "owner": {"$literal": owner},
                "token": {"$add": ["$token", 1_i64]},
                "acquired_at": now_s.as_str(),
                "expires_at": exp_s.as_str(),
            }),
            "attempts": cond("$_tt_exhaust", "$attempts", doc! {"$add": ["$attempts", 1_i64]}),
            "token": cond("$_tt_exhaust", "$token", doc! {"$add": ["$token", 1_i64]}),
            "not_before": cond("$_tt_exhaust", "$not_before", Bson::Null),
            "started_at": cond("$_tt_exhaust", "$started_at", now_s.as_str()),
            // One write per rule applied: expire and grant are two (touch bumps the version).
            "version": {"$add": ["$version", {"$cond": [{"$and": ["$_tt_expired", {"$not": ["$_tt_exhaust"]}]}, 2_i64, 1_i64]}]},
            "updated_at": now_s.as_str(),
            // Task::claimable_at: the lease expiry while in progress, none once exhausted.
            "claim_at": cond("$_tt_exhaust", "$$REMOVE", expires.as_millis()),
        }},
        doc! {"$unset": ["_tt_expired", "_tt_exhaust", "_tt_failure"]},
    ]
}

/// The claim order: priority descending, then `claim_at`, then id (the `claim` index).
fn claim_order() -> Document {
    doc! {"priority": -1, "claim_at": 1, "id": 1}
}

/// [`tasktrack_core::Store::claim_next`] natively.
///
/// One task (`limit` 1, what `Tracker::run_next` and the CLI workers ask for): one
/// `findOneAndUpdate` that takes the first claimable task in claim order from the partial
/// `claim` index and applies [`claim_pipeline`] to it atomically — a single round trip. Two
/// workers can never get the same task: the second one's filter no longer matches it.
///
/// A batch (`limit` n > 1): one sorted `find` of the first n claimable ids, then one
/// `findOneAndUpdate` per id whose filter re-checks claimability (`claim_at <= now`), so a task
/// another worker took meanwhile is skipped, and the search repeats for what is missing. That
/// is n + 1 round trips instead of n, but one sorted query per batch rather than one per task,
/// which matters on servers that sort by reading every match (SecantusDB, see the crate docs).
/// Batch members are tried in a shuffled order so that workers racing for the same batch do
/// not all collide on its first task; the result is returned in claim order.
pub async fn claim_next(
    docs: &MongoDocuments,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    check_claim_next(req)?;
    let expires = now.plus(req.lease_for);
    let pipeline = claim_pipeline(&req.owner, now, expires);
    let mut filter = doc! {"job": job.as_str(), "claim_at": {"$lte": now.as_millis()}};
    if let Some(stage) = &req.stage {
        filter.insert("stage", stage.as_str());
    }
    if req.limit == 1 {
        claim_one_by_one(docs, filter, pipeline, req.limit).await
    } else {
        claim_batch(docs, filter, pipeline, req.limit).await
    }
}

/// One `findOneAndUpdate` with sort per task.
async fn claim_one_by_one(
    docs: &MongoDocuments,
    filter: Document,
    pipeline: Vec<Document>,
    limit: usize,
) -> Result<Vec<Claimed>> {
    let mut won = Vec::with_capacity(limit);
    // Each round either claims a task or exhausts one (which leaves the claimable set), so the
    // loop ends.
    while won.len() < limit {
        let found = docs
            .tasks
            .find_one_and_update(filter.clone(), pipeline.clone())
            .sort(claim_order())
            .return_document(ReturnDocument::After)
            .await
            .map_err(|e| docs.err(e))?;
        let Some(found) = found else { break };
        let task = codec::task_from_doc(found, &docs.tasks_location())?;
        if task.status == Status::InProgress {
            won.push(claimed(task)?);
        }
    }
    Ok(won)
}

/// A sorted `find` of candidate ids, then one conditional `findOneAndUpdate` per candidate.
async fn claim_batch(
    docs: &MongoDocuments,
    filter: Document,
    pipeline: Vec<Document>,
    limit: usize,
) -> Result<Vec<Claimed>> {
    // (round, position in that round's claim order) of each win, to return them in claim order.
    let mut won: Vec<((u32, usize), Claimed)> = Vec::with_capacity(limit);
    for round in 0..MAX_CAS_ATTEMPTS {
        let want = limit - won.len();
        let cursor = docs
            .tasks
            .find(filter.clone())
            .sort(claim_order())
            .limit(i64::try_from(want).unwrap_or(i64::MAX))
            .projection(doc! {"_id": 1})
            .await
            .map_err(|e| docs.err(e))?;
        let candidates: Vec<Document> = cursor.try_collect().await.map_err(|e| docs.err(e))?;
        let mut ids: Vec<(usize, Bson)> = candidates
            .into_iter()
            .enumerate()
            .filter_map(|(i, mut d)| d.remove("_id").map(|id| (i, id)))
            .collect();
        let found_all = ids.len() == want;
        shuffle(&mut ids);
        let mut missed = false;
        for (position, id) in ids {
            let mut one = filter.clone();
            one.insert("_id", id);
            let found = docs
                .tasks
                .find_one_and_update(one, pipeline.clone())
                .return_document(ReturnDocument::After)
                .await
                .map_err(|e| docs.err(e))?;
            match found
                .map(|d| codec::task_from_doc(d, &docs.tasks_location()))
                .transpose()?
            {
                Some(task) if task.status == Status::InProgress => {
                    won.push(((round, position), claimed(task)?))
                }
                // Exhausted by its expired lease, or taken by another worker: look again.
                _ => missed = true,
            }
        }
        if won.len() == limit || (!missed && !found_all) {
            break;
        }
    }
    won.sort_by_key(|(order, _)| *order);
    Ok(won.into_iter().map(|(_, c)| c).collect())
}

/// Fisher–Yates with a xorshift seeded from the clock's sub-second nanoseconds: spreading
/// racing workers needs no more randomness than that (and the time is not used as `now`).
fn shuffle<T>(items: &mut [T]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut state = u64::from(nanos) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// The lease a claim hands out, read from the task it wrote.
fn claimed(task: Task) -> Result<Claimed> {
    let Some(l) = task.lease.clone() else {
        return Err(Error::backend(format!(
            "mongodb claim of {} wrote no lease",
            task.key()
        )));
    };
    let lease = Lease {
        key: task.key(),
        owner: l.owner,
        token: l.token,
        attempt: task.attempts,
        acquired_at: l.acquired_at,
        expires_at: l.expires_at,
    };
    Ok(Claimed { task, lease })
}

/// `lifecycle::succeed` as one pipeline: history records the success, lease and error are
/// cleared, output set; then `succeeded`, or `pending` at the next pipeline stage with attempts
/// reset.
fn succeed_pipeline(output: Bson, now: Timestamp) -> Vec<Document> {
    let now_s = now.to_rfc3339();
    let stages = doc! {"$ifNull": ["$stages", []]};
    vec![
        doc! {"$set": {
            "history": append_history(history_entry(&now_s, "succeeded", Bson::Null)),
            // lifecycle::next_stage: the stage after the current one, if it is in the list.
            "_tt_next": {"$let": {
                "vars": {"i": {"$indexOfArray": [stages.clone(), "$stage"]}},
                "in": {"$cond": [
                    {"$and": [
                        {"$ne": ["$stage", null]},
                        {"$gte": ["$$i", 0]},
                        {"$lt": [{"$add": ["$$i", 1]}, {"$size": stages}]},
                    ]},
                    {"$arrayElemAt": ["$stages", {"$add": ["$$i", 1]}]},
                    null,
                ]},
            }},
            "lease": null,
            "error": null,
            "output": {"$literal": output},
        }},
        doc! {"$set": {"_tt_more": {"$ne": ["$_tt_next", null]}}},
        doc! {"$set": {
            "stage": cond("$_tt_more", "$_tt_next", "$stage"),
            "status": cond("$_tt_more", Status::Pending.as_str(), Status::Succeeded.as_str()),
            "status_code": cond("$_tt_more", i32::from(Status::Pending.code()), i32::from(Status::Succeeded.code())),
            "attempts": cond("$_tt_more", 0_i64, "$attempts"),
            "not_before": cond("$_tt_more", Bson::Null, "$not_before"),
            "started_at": cond("$_tt_more", Bson::Null, "$started_at"),
            "finished_at": cond("$_tt_more", "$finished_at", now_s.as_str()),
            // Task::claimable_at of a pending task without not_before: its creation.
            "claim_at": cond("$_tt_more", "$created_ms", "$$REMOVE"),
            "version": {"$add": ["$version", 1_i64]},
            "updated_at": now_s.as_str(),
        }},
        doc! {"$unset": ["_tt_next", "_tt_more"]},
    ]
}

/// [`tasktrack_core::Store::succeed`] natively. The fence (`lifecycle::check_fence`: in
/// progress with the presented token) is the filter, so a stale holder matches nothing and gets
/// [`Error::StaleLease`].
pub async fn succeed(
    docs: &MongoDocuments,
    lease: &Lease,
    output: Value,
    now: Timestamp,
) -> Result<Task> {
    let output = bson::to_bson(&output).map_err(|e| {
        Error::invalid(format!(
            "output of {} cannot be stored in MongoDB: {e}",
            lease.key
        ))
    })?;
    let filter = doc! {
        "_id": task_id(&lease.key.job, &lease.key.id),
        "status": Status::InProgress.as_str(),
        "lease.token": codec::int(lease.token),
    };
    let found = docs
        .tasks
        .find_one_and_update(filter, succeed_pipeline(output, now))
        .return_document(ReturnDocument::After)
        .await
        .map_err(|e| docs.err(e))?;
    match found {
        Some(doc) => codec::task_from_doc(doc, &docs.tasks_location()),
        None => Err(Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        }),
    }
}
