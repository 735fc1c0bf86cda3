//! The hot paths in fewer round trips than the generic compare-and-swap loop: a batch of claims
//! from one sorted query, and a batch of successes from one read.
//!
//! Every write here is still the adapter's conditional `replaceOne({_id, version, created_at}, new)`, with
//! the new document computed in Rust by the pure rule of `tasktrack_core::lifecycle` — nothing
//! is restated on the server, so there is no second copy of a rule to keep in step. What changes
//! is how the documents are read: many per request instead of one.
//!
//! Why not `findOneAndUpdate` with a pipeline update (one round trip per transition on MongoDB)?
//! It needs the rule restated as an aggregation pipeline, and on SecantusDB, the server the
//! tests run on, every `findAndModify` scans the whole collection to apply its write (see
//! `docs/benchmarks/mongodb.md`), which made a 2,000-task drain quadratic. Point reads and
//! writes by `_id` are cheap on both servers.

use crate::codec::{self, task_id};
use crate::documents::MongoDocuments;
use futures::future::join_all;
use mongodb::bson::Bson;
use tasktrack_core::cas::{self, Documents, MAX_CAS_ATTEMPTS, Versioned, check_claim_next};
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::{
    Claim, ClaimNext, Claimed, Error, Fail, JobName, Lease, Result, Task, Timestamp,
};

/// [`tasktrack_core::Store::claim_next`]: one sorted `find` of the first claimable tasks
/// (full documents), then one conditional `replaceOne` per candidate until `limit` are won.
///
/// The `find` asks for [`SPARE_FACTOR`] × `limit` candidates. The first `limit` are tried first,
/// in a shuffled order so that workers racing for the same head of the queue spread over it
/// instead of all colliding on its first task; a lone worker wins them all and so gets exactly
/// the first `limit` tasks in claim order. A worker that misses some of them goes on to the
/// spares, which saves it a second sorted query — the expensive request on a server that sorts
/// by reading every match (SecantusDB): in claim order while it has lost no race (a head task
/// that its expired lease exhausted is not one, and the next task in claim order must take its
/// place, as repeated single claims would), shuffled once it lost one (see `Trials`). The
/// search repeats while tasks are missing and candidates were missed. The result is returned in
/// claim order.
pub async fn claim_next(
    docs: &MongoDocuments,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    check_claim_next(req)?;
    // (round, position in that round's claim order) of each win, to return them in claim order.
    let mut won: Vec<((u32, usize), Claimed)> = Vec::with_capacity(req.limit);
    let outcome = claim_rounds(docs, job, req, now, &mut won).await;
    won.sort_by_key(|(order, _)| *order);
    let won = won.into_iter().map(|(_, c)| c).collect();
    // A failure after some wins (a lost connection at the fourth replace, say) must not drop
    // the leases already granted: their tasks stay leased whatever the caller is told.
    cas::keep_won("mongodb", job, won, outcome)
}

/// [`claim_next`]'s rounds, pushing each win onto `won` as soon as its write succeeded.
async fn claim_rounds(
    docs: &MongoDocuments,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
    won: &mut Vec<((u32, usize), Claimed)>,
) -> Result<()> {
    let claim = Claim::new(req.owner.clone(), req.lease_for);
    for round in 0..MAX_CAS_ATTEMPTS {
        let want = req.limit - won.len();
        let fetch = want.saturating_mul(SPARE_FACTOR);
        let (candidates, read) = docs
            .claim_candidates(job, req.stage.as_deref(), now, fetch)
            .await?;
        // Documents set aside as unreadable count as read: more may follow them.
        let more_exist = read == fetch;
        let mut missed = false;
        let mut trials = Trials::new(candidates.len(), want);
        while let Some(position) = trials.next_position() {
            if won.len() == req.limit {
                break;
            }
            let Some(candidate) = candidates.get(position) else {
                continue;
            };
            match claim_one(docs, candidate, &claim, now).await? {
                Trial::Won(claimed) => won.push(((round, position), claimed)),
                // Not claimable after all (exhausted by its expired lease): look again.
                Trial::Passed => missed = true,
                // Taken by another worker: look again, spread over what is left.
                Trial::Lost => {
                    missed = true;
                    trials.lost();
                }
            }
        }
        if won.len() == req.limit || (!missed && !more_exist) {
            break;
        }
    }
    Ok(())
}

/// What became of one candidate of a claim.
#[allow(clippy::large_enum_variant)] // short-lived, never stored
enum Trial {
    /// Claimed.
    Won(Claimed),
    /// Changed by someone else since it was read: another worker took it.
    Lost,
    /// Not claimable as read (an expired lease at its last attempt, now written `exhausted`), or
    /// set aside as unwritable or corrupt.
    Passed,
}

/// `lifecycle::claim` on one candidate, written conditionally on the version it was read at.
async fn claim_one(
    docs: &MongoDocuments,
    candidate: &Versioned<Task>,
    claim: &Claim,
    now: Timestamp,
) -> Result<Trial> {
    // BSON integers are signed: a counter at i64::MAX (edited by hand) cannot be bumped.
    let rule = if lifecycle::claim_can_advance(&candidate.value, i64::MAX.unsigned_abs()) {
        lifecycle::claim(&candidate.value, claim, now)
    } else {
        Err(Error::corrupt(
            format!("task {}", candidate.value.key()),
            "token or version at the largest integer MongoDB stores: a claim cannot advance it",
        ))
    };
    let (new, claimed) = match rule {
        Ok(ClaimDecision::Granted(c)) => (c.task.clone(), Some(c)),
        Ok(ClaimDecision::Exhausted(t)) => (t, None),
        Ok(ClaimDecision::Refused(_)) => return Ok(Trial::Passed),
        // Out of the claim path, as an unreadable document is, so that it cannot stop the
        // job's claims.
        Err(e @ Error::Corrupt { .. }) => {
            set_aside(docs, &candidate.value, &e).await?;
            return Ok(Trial::Passed);
        }
        Err(e) => return Err(e),
    };
    match docs.replace_task(candidate, &new).await {
        Ok(false) => Ok(Trial::Lost),
        Ok(true) => Ok(claimed.map_or(Trial::Passed, Trial::Won)),
        Err(e) if codec::is_too_large(&e) => {
            unwritable(docs, candidate, claimed, &e, now).await?;
            Ok(Trial::Passed)
        }
        Err(e) => Err(e),
    }
}

/// A claim of `candidate` that does not fit in a document (its data and history fill it): the
/// claim is granted and failed at once instead, not retryable, kind `unrecordable`, so the
/// task ends `exhausted` with the reason recorded and the queue goes on past it; its oldest
/// attempt records are dropped if that is what it takes to fit. If even that does not fit
/// (its data alone fills the document), the task is set aside, as an unreadable one is.
/// Nothing is returned to the caller either way.
async fn unwritable(
    docs: &MongoDocuments,
    candidate: &Versioned<Task>,
    claimed: Option<Claimed>,
    why: &Error,
    now: Timestamp,
) -> Result<()> {
    if let Some(c) = claimed {
        let fail = Fail::unleasable(why);
        let mut exhausted = lifecycle::fail(&c.task, &c.lease, &fail, now)?;
        loop {
            match docs.replace_task(candidate, &exhausted).await {
                Ok(_) => return Ok(()),
                // The oldest attempt records give way; the newest (this one) stays.
                Err(e) if codec::is_too_large(&e) && exhausted.history.len() > 1 => {
                    exhausted.history.remove(0);
                }
                Err(e) if codec::is_too_large(&e) => break,
                Err(e) => return Err(e),
            }
        }
    }
    set_aside(docs, &candidate.value, why).await
}

/// Takes `task` (as read) out of the claim path, saying why (see `MongoDocuments::set_aside`).
async fn set_aside(docs: &MongoDocuments, task: &Task, why: &Error) -> Result<()> {
    docs.set_aside(
        Bson::String(task_id(&task.job, &task.id)),
        Some(Bson::Int64(codec::int(task.version))),
        task.claimable_at().map(|at| Bson::Int64(at.as_millis())),
        &why.to_string(),
    )
    .await
}

/// How many candidates a claim reads per task it wants (see [`claim_next`]).
pub const SPARE_FACTOR: usize = 4;

/// The order in which a claim tries the positions `0..len` of its candidates (claim order):
/// the first `head` (as many as it wants) shuffled, then the spares in claim order — until
/// [`Trials::lost`] says a candidate went to another worker: the spares not tried yet are
/// shuffled then, so that racing workers spread over them too.
struct Trials {
    order: Vec<usize>,
    head: usize,
    next: usize,
}

impl Trials {
    fn new(len: usize, head: usize) -> Self {
        let mut order: Vec<usize> = (0..len).collect();
        let head = head.min(len);
        shuffle(&mut order[..head]);
        Trials {
            order,
            head,
            next: 0,
        }
    }

    /// The next position to try.
    fn next_position(&mut self) -> Option<usize> {
        let position = self.order.get(self.next).copied();
        self.next += 1;
        position
    }

    /// A candidate was lost to another worker.
    fn lost(&mut self) {
        let untried = self.next.max(self.head).min(self.order.len());
        shuffle(&mut self.order[untried..]);
    }
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
/// between the read and the write (a heartbeat, an admin), and every entry of a task after its
/// first, goes through the ordinary compare-and-swap `succeed`, which re-reads it and answers
/// exactly as a lone `succeed` would.
///
/// Why not one `update` command with n statements: its reply counts matches for the whole
/// batch, not per statement, so a lost race could not be told apart from a won one (MongoDB
/// 8's `bulkWrite` can; the supported floor is 6).
pub async fn succeed_many(
    docs: &MongoDocuments,
    done: &[(Lease, serde_json::Value)],
    now: Timestamp,
) -> Result<Vec<Result<Task>>> {
    // An output `succeed` refuses is answered first, whatever its task's state.
    cas::succeed_many_checked(done, async |done| {
        succeed_many_checked_in(docs, done, now).await
    })
    .await
}

/// [`succeed_many`] once the outputs are checked.
async fn succeed_many_checked_in(
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
    // Only a task's first entry the rule accepted is written concurrently: two writes of one
    // task would race, and the later entries must see its outcome (the one-by-one path, below).
    let mut seen = std::collections::HashSet::with_capacity(done.len());
    let first: Vec<bool> = done
        .iter()
        .zip(&planned)
        .map(|((l, _), plan)| plan.is_ok() && seen.insert(&l.key))
        .collect();
    let writes = planned.iter().zip(first).map(|(plan, first)| async move {
        match plan {
            Ok((old, new)) if first => docs.replace_task(old, new).await.map(Some),
            _ => Ok(None),
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

#[cfg(test)]
mod tests {
    use super::Trials;

    fn all(trials: &mut Trials) -> Vec<usize> {
        std::iter::from_fn(|| trials.next_position()).collect()
    }

    #[test]
    fn the_head_is_tried_before_any_spare_and_the_spares_in_claim_order() {
        for _ in 0..20 {
            let order = all(&mut Trials::new(10, 3));
            let mut head = order[..3].to_vec();
            head.sort_unstable();
            assert_eq!(head, [0, 1, 2]);
            assert_eq!(order[3..], [3, 4, 5, 6, 7, 8, 9]);
        }
        assert_eq!(all(&mut Trials::new(2, 5)).len(), 2);
    }

    #[test]
    fn after_a_lost_race_the_untried_spares_are_shuffled() {
        let mut shuffled = false;
        for _ in 0..20 {
            let mut trials = Trials::new(10, 3);
            let mut order: Vec<usize> = (0..4).filter_map(|_| trials.next_position()).collect();
            assert_eq!(order[3], 3, "the first spare, in claim order");
            trials.lost();
            order.extend(all(&mut trials));
            let mut rest = order[4..].to_vec();
            shuffled |= rest != [4, 5, 6, 7, 8, 9];
            rest.sort_unstable();
            assert_eq!(rest, [4, 5, 6, 7, 8, 9]);
        }
        assert!(shuffled, "20 shuffles of six spares all left them in order");
        // A race lost in the head leaves the rest of the head before the spares.
        let mut trials = Trials::new(10, 3);
        trials.next_position();
        trials.lost();
        let mut head: Vec<usize> = (0..2).filter_map(|_| trials.next_position()).collect();
        head.sort_unstable();
        assert!(head.iter().all(|p| *p < 3), "{head:?}");
    }
}
