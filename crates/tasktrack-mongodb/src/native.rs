//! The hot paths in fewer round trips than the generic compare-and-swap loop: a batch of claims
//! from one sorted query, and a batch of successes from one read.
//!
//! Every write here is still the adapter's conditional `replaceOne({_id, version}, new)`, with
//! the new document computed in Rust by the pure rule of `tasktrack_core::lifecycle` — nothing
//! is restated on the server, so there is no second copy of a rule to keep in step. What changes
//! is how the documents are read: many per request instead of one.
//!
//! Why not `findOneAndUpdate` with a pipeline update (one round trip per transition on MongoDB)?
//! It needs the rule restated as an aggregation pipeline, and on SecantusDB, the server the
//! tests run on, every `findAndModify` scans the whole collection to apply its write (see
//! `docs/benchmarks/mongodb.md`), which made a 2,000-task drain quadratic. Point reads and
//! writes by `_id` are cheap on both servers.

use crate::codec::task_id;
use crate::documents::MongoDocuments;
use futures::future::join_all;
use tasktrack_core::cas::{self, Documents, MAX_CAS_ATTEMPTS, Versioned, check_claim_next};
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::{Claim, ClaimNext, Claimed, Error, JobName, Lease, Result, Task, Timestamp};

/// [`tasktrack_core::Store::claim_next`]: one sorted `find` of the first `limit` claimable
/// tasks (full documents), then one conditional `replaceOne` per candidate.
///
/// A candidate another worker took meanwhile fails its version check and is skipped; the search
/// repeats for what is missing. Candidates are tried in a shuffled order so that workers racing
/// for the same first tasks spread over the batch instead of all colliding on its head; the
/// result is returned in claim order, and a lone worker still gets exactly the first `limit`
/// tasks.
pub async fn claim_next(
    docs: &MongoDocuments,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    check_claim_next(req)?;
    let claim = Claim {
        owner: req.owner.clone(),
        lease_for: req.lease_for,
        force: false,
    };
    // (round, position in that round's claim order) of each win, to return them in claim order.
    let mut won: Vec<((u32, usize), Claimed)> = Vec::with_capacity(req.limit);
    for round in 0..MAX_CAS_ATTEMPTS {
        let want = req.limit - won.len();
        let candidates = docs.claimable(job, req.stage.as_deref(), now, want).await?;
        let found_all = candidates.len() == want;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        shuffle(&mut order);
        let mut missed = false;
        for position in order {
            let Some(candidate) = candidates.get(position) else {
                continue;
            };
            match claim_one(docs, candidate, &claim, now).await? {
                Some(claimed) => won.push(((round, position), claimed)),
                // Taken by another worker, or exhausted by its expired lease: look again.
                None => missed = true,
            }
        }
        if won.len() == req.limit || (!missed && !found_all) {
            break;
        }
    }
    won.sort_by_key(|(order, _)| *order);
    Ok(won.into_iter().map(|(_, c)| c).collect())
}

/// `lifecycle::claim` on one candidate, written conditionally on the version it was read at.
/// `None` when the candidate was not won (changed meanwhile, refused, or exhausted).
async fn claim_one(
    docs: &MongoDocuments,
    candidate: &Versioned<Task>,
    claim: &Claim,
    now: Timestamp,
) -> Result<Option<Claimed>> {
    let (new, claimed) = match lifecycle::claim(&candidate.value, claim, now)? {
        ClaimDecision::Granted(c) => (c.task.clone(), Some(c)),
        ClaimDecision::Exhausted(t) => (t, None),
        ClaimDecision::Refused(_) => return Ok(None),
    };
    let written = docs.replace_task(candidate, &new).await?;
    Ok(claimed.filter(|_| written))
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

/// [`tasktrack_core::Store::succeed_many`]: one `find({_id: {$in: …}})` for every task of the
/// batch, `lifecycle::succeed` on each in Rust, then the conditional `replaceOne`s sent
/// concurrently (one round trip of latency over the connection pool). A task whose version moved
/// between the read and the write (a heartbeat, an admin, the same lease twice in the batch)
/// goes through the ordinary compare-and-swap `succeed`, which re-reads it and answers exactly
/// as a lone `succeed` would.
///
/// Why not one `update` command with n statements: its reply counts matches for the whole
/// batch, not per statement, so a lost race could not be told apart from a won one (MongoDB
/// 8's `bulkWrite` can; the supported floor is 6).
pub async fn succeed_many(
    docs: &MongoDocuments,
    done: &[(Lease, serde_json::Value)],
    now: Timestamp,
) -> Result<Vec<Result<Task>>> {
    let keys: Vec<_> = done.iter().map(|(lease, _)| lease.key.clone()).collect();
    let current = docs.get_tasks(&keys).await?;
    let planned: Vec<Result<(&Versioned<Task>, Task)>> = done
        .iter()
        .map(|(lease, output)| {
            let Some(old) = current.get(&task_id(&lease.key.job, &lease.key.id)) else {
                return Err(stale(lease));
            };
            let new = lifecycle::succeed(&old.value, lease, output.clone(), now)?;
            Ok((old, new))
        })
        .collect();
    let writes = planned.iter().map(|plan| async move {
        match plan {
            Ok((old, new)) => docs.replace_task(old, new).await.map(Some),
            Err(_) => Ok(None),
        }
    });
    let written = join_all(writes).await;
    let mut out = Vec::with_capacity(done.len());
    for (((lease, output), plan), write) in done.iter().zip(planned).zip(written) {
        let result = match (plan, write) {
            (Err(e), _) => Err(e),
            (Ok((_, new)), Ok(Some(true))) => Ok(new),
            (Ok(_), Ok(_)) => cas::succeed(docs, lease, output.clone(), now).await,
            (Ok(_), Err(e)) => Err(e),
        };
        match result {
            Err(e @ Error::Unavailable(_)) => return Err(e),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// What a lease over a task that no longer exists gets, as from `cas::succeed`.
fn stale(lease: &Lease) -> Error {
    Error::StaleLease {
        key: lease.key.to_string(),
        token: lease.token,
    }
}
