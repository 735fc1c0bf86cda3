//! Recording an outcome through a store outage, for the faces that run tasks ([`Tracker`] and
//! the CLI's `run`).
//!
//! A worker whose connection breaks while it records an outcome cannot tell whether the write
//! happened. Its lease is still live for a while, so it retries ([`ride_out`]): up to
//! [`RECORD_TRIES`] times, further apart each time, and without claiming again (a second claim
//! could only add to what the first try may have claimed). Two things an answer lost *after*
//! the commit leaves behind are picked up here:
//!
//! - the outcome itself: the retry meets the lease already ended ([`Error::StaleLease`]), and
//!   [`lifecycle::outcome_of`] finds the attempt record only that lease could have left, so the
//!   outcome counts as recorded ([`Recorded::Found`]) instead of "lease lost";
//! - the task a lost hand-off (or claim) took, still leased to the worker: [`claimed_unawares`]
//!   reads it back, to be run as if the answer had come, instead of waiting out its lease.
//!
//! Exactly-once completion never depends on this (the fencing token does that); it spares a
//! spurious "lost" and a second execution once the orphaned lease expires.
//!
//! [`Tracker`]: crate::Tracker

use crate::error::{Error, Result};
use crate::lifecycle;
use crate::model::{Claimed, JobName, Lease, Outcome, Status, Task, TaskQuery};
use crate::store::{Fail, Store, tasks_where};
use crate::time::{Clock, Timestamp};
use std::future::Future;
use std::time::Duration;

/// How many times recording an outcome is retried after a transient error: with pauses of
/// 0.25 s, 0.5 s, … 2 s, about 9 s in all.
pub const RECORD_TRIES: u32 = 8;

/// The pause before retry `n` (from 1): 0.25 s × `n`.
pub fn pause(n: u32) -> Duration {
    Duration::from_millis(250) * n
}

/// How a recording ended.
#[derive(Debug)]
pub enum Recorded<T> {
    /// The store answered.
    Answered(T),
    /// An answer was lost, but the outcome is stored: the task as it is now, and that outcome.
    Found(Box<Task>, Outcome),
}

/// Runs `write` (the recording; `true` on the first try, which may also claim) until it is
/// answered, retrying transient errors ([`Error::is_transient`]) up to [`RECORD_TRIES`] times;
/// `warn` hears of each retry. Also returns the time of the first try when its answer may have
/// been lost (it failed transiently): a hand-off sent then may have claimed a task
/// ([`claimed_unawares`]).
pub async fn ride_out<T, Fut>(
    store: &dyn Store,
    clock: &dyn Clock,
    lease: &Lease,
    mut write: impl FnMut(bool, Timestamp) -> Fut,
    warn: impl Fn(&Error),
) -> (Result<Recorded<T>>, Option<Timestamp>)
where
    Fut: Future<Output = Result<T>>,
{
    let mut tries = 0;
    let mut first_try_lost = None;
    loop {
        let now = clock.now();
        match write(tries == 0, now).await {
            Ok(answer) => return (Ok(Recorded::Answered(answer)), first_try_lost),
            Err(e) if e.is_transient() && tries < RECORD_TRIES => {
                first_try_lost.get_or_insert(now);
                tries += 1;
                warn(&e);
                tokio::time::sleep(pause(tries)).await;
            }
            Err(e @ Error::StaleLease { .. }) if tries > 0 => match recorded(store, lease).await {
                Ok(Some((task, outcome))) => {
                    return (Ok(Recorded::Found(Box::new(task), outcome)), first_try_lost);
                }
                Ok(None) => return (Err(e), first_try_lost),
                // The store went away again before it said: look again (the write, fenced,
                // cannot record twice).
                Err(read) if read.is_transient() && tries < RECORD_TRIES => {
                    tries += 1;
                    warn(&read);
                    tokio::time::sleep(pause(tries)).await;
                }
                Err(read) => return (Err(read), first_try_lost),
            },
            Err(e) => return (Err(e), first_try_lost),
        }
    }
}

/// Records the attempt of `lease` whose outcome the store refused (`refusal`, an
/// [`Error::InvalidInput`]: an output too large for it, say) as the failure `instead`
/// ([`Fail::instead_of`]), riding out an outage like any recording ([`ride_out`]; `warn` hears
/// of each retry). Returns the task and the outcome recorded (found recorded, when an answer
/// was lost). A refusal of that too is no fault of the caller's input but the store's: an
/// [`Error::Backend`] naming the task, whose lease is left to expire.
pub async fn record_unrecordable(
    store: &dyn Store,
    clock: &dyn Clock,
    lease: &Lease,
    refusal: &Error,
    instead: &Fail,
    warn: impl Fn(&Error),
) -> Result<(Task, Outcome)> {
    let (recorded, _) = ride_out(
        store,
        clock,
        lease,
        |_, now| store.fail(lease, instead, now),
        warn,
    )
    .await;
    match recorded {
        Ok(Recorded::Answered(task)) => Ok((task, Outcome::Failed)),
        Ok(Recorded::Found(task, outcome)) => Ok((*task, outcome)),
        Err(again @ Error::InvalidInput(_)) => Err(Error::backend(format!(
            "{}: the store refused this attempt's outcome ({refusal}), then the failure \
             recorded in its place ({again}); the task stays held until its lease expires",
            lease.key
        ))),
        Err(e) => Err(e),
    }
}

/// Gives `lease` back ([`Store::release`]: the task to `pending`, the attempt not counted),
/// riding out an outage like any recording ([`ride_out`]; `warn` hears of each retry): a release
/// whose answer was lost is found recorded on the retry. [`Error::StaleLease`] means the lease
/// was taken over or ended before: nothing of the caller's is left held either way.
pub async fn release(
    store: &dyn Store,
    clock: &dyn Clock,
    lease: &Lease,
    warn: impl Fn(&Error),
) -> Result<()> {
    let (released, _) = ride_out(
        store,
        clock,
        lease,
        |_, now| store.release(lease, now),
        warn,
    )
    .await;
    released.map(drop)
}

/// Renews `lease` every third of `lease_for` until aborted (it runs on a task of its own, so
/// that a renewal the store does not answer keeps nothing else waiting), or until the lease is
/// lost: fenced out, the holder's result will be rejected. `trouble` hears of each renewal that
/// failed (to be retried at the next one; one unanswered by the next is given up on, as
/// [`Error::Unavailable`], so that a store call that hangs cannot stop the renewals) and of the
/// loss ([`Error::StaleLease`], the last).
pub async fn keep_alive(
    store: &dyn Store,
    clock: &dyn Clock,
    lease: &Lease,
    lease_for: Duration,
    trouble: impl Fn(&Error),
) {
    let every = (lease_for / 3).max(Duration::from_millis(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // A renewal that took long is not made up for with a burst of them.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let renewal = tokio::time::timeout(every, store.heartbeat(lease, lease_for, clock.now()));
        let answer = renewal.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(format!(
                "a renewal of the lease on {} got no answer within {every:?}",
                lease.key
            )))
        });
        match answer {
            Ok(_) => {}
            Err(e) => {
                trouble(&e);
                if matches!(e, Error::StaleLease { .. }) {
                    return;
                }
            }
        }
    }
}

/// The task and the outcome `lease`'s holder recorded, if it did (succeeded, failed or
/// released; not an attempt others ended for it).
async fn recorded(store: &dyn Store, lease: &Lease) -> Result<Option<(Task, Outcome)>> {
    let task = match store.get(&lease.key).await {
        Ok(task) => task,
        // Deleted since: its lease is lost, whatever it recorded.
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(outcome) = lifecycle::outcome_of(&task, lease).map(|a| a.outcome) else {
        return Ok(None);
    };
    Ok(matches!(
        outcome,
        Outcome::Succeeded | Outcome::Failed | Outcome::Released
    )
    .then_some((task, outcome)))
}

/// The tasks of `job` (at `stage`) leased to `owner` at `at`: what a claim (or a hand-off) sent
/// at `at` took if its answer was lost. A claim stamps its leases with the request's time and
/// the claimer's name, so only that request's grants match (given worker names unique among
/// live workers, as they must be). Read back from the job's in-progress tasks, with the leases
/// their records hold.
///
/// The task a hand-off completed is not left out: a pipeline task that succeeded at one stage
/// is pending at the next, and the hand-off's own claim may well have taken it again (it is
/// often the oldest in claim order). Its earlier lease was acquired before `at`, so it does
/// not match.
pub async fn claimed_unawares(
    store: &dyn Store,
    job: &JobName,
    stage: Option<&str>,
    owner: &str,
    at: Timestamp,
) -> Result<Vec<Claimed>> {
    let mut query = TaskQuery::new(job.clone()).with_statuses([Status::InProgress]);
    query.stage = stage.map(str::to_string);
    let ours = |t: &Task| {
        t.lease
            .as_ref()
            .is_some_and(|l| l.owner == owner && l.acquired_at == at)
    };
    let found = tasks_where(store, query, ours).await?;
    Ok(found
        .into_iter()
        .map(|task| Claimed {
            lease: lifecycle::lease_of(&task),
            task,
        })
        .collect())
}
