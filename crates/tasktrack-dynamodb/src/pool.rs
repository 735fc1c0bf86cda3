//! Claim candidates shared by one process's workers: one `Query` of the claim index serves many
//! claims.
//!
//! Without it, every `claim_next` is a Query for the head of the queue and then one conditional
//! write. A Query is the dearest request of the work loop (on AWS it reads a page of items; on
//! moto it walks and sorts the whole table), and eight workers of one process would each fetch
//! the same head of the queue. Here a Query fetches a page of candidates ([`POOL_SIZE`]) into
//! the pool of its `(job, stage)`, and each claim takes the next one from there. Every claim
//! is still a conditional write, so a candidate that went stale in the pool (another process
//! claimed it) costs one refused write, never a double claim.
//!
//! A pool is only used while it can stand for a fresh Query:
//! - **for [`POOL_TTL`] of the caller's time** after its Query (and never for an earlier `now`):
//!   tasks that became claimable since — created or released by another process, a lease
//!   expiring, a backoff ending — are seen by the next Query, at most that long after;
//! - **until this process changes which tasks are claimable** (create, fail, release, retry,
//!   a success at a non-final pipeline stage, a data patch by a holder whose lease ran out, ...:
//!   the pools are dropped), so one process always sees its own changes at once. A task this
//!   process completes or claims by id is taken out of the pools, and `claim_next` skips a
//!   candidate that this process has since written with a live lease.
//!
//! Within those bounds the pool is in claim order, so a lone worker claims exactly in claim
//! order (priority, then claimable-at, then id).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tasktrack_core::cas::Versioned;
use tasktrack_core::{JobName, Task, TaskKey, Timestamp};

/// How many candidates one Query fetches into a pool (at least the claim's limit plus a spread).
pub const POOL_SIZE: usize = 32;
/// How long (in the callers' time) a pool stands for a fresh Query.
pub const POOL_TTL: Duration = Duration::from_secs(1);

/// Which claims a pool serves: a job, at a pipeline stage or not.
pub(crate) type Slot = (JobName, Option<String>);

/// The candidates of one Query not taken yet.
#[derive(Debug)]
struct Pool {
    /// The caller's `now` of the Query.
    fetched_at: Timestamp,
    /// [`CandidatePool::generation`] at the Query.
    generation: u64,
    /// In claim order (or shuffled, under contention).
    tasks: VecDeque<Versioned<Task>>,
}

/// The pools of one store, per [`Slot`].
#[derive(Debug, Default)]
pub(crate) struct CandidatePool {
    pools: Mutex<HashMap<Slot, Pool>>,
    /// Bumped by every local change that may make tasks claimable: pools fetched before it are
    /// dropped.
    generation: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The pools are a cache: whatever a panicking holder left is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CandidatePool {
    /// The next candidate of `slot`'s pool, if the pool can still stand for a Query at `now`.
    pub(crate) fn take(&self, slot: &Slot, now: Timestamp) -> Option<Versioned<Task>> {
        let mut pools = lock(&self.pools);
        let pool = pools.get_mut(slot)?;
        let next = if self.is_fresh(pool, now) {
            pool.tasks.pop_front()
        } else {
            None
        };
        if next.is_none() {
            pools.remove(slot);
        }
        next
    }

    /// Whether `slot` has a pool with candidates left that can stand for a Query at `now`.
    pub(crate) fn has(&self, slot: &Slot, now: Timestamp) -> bool {
        lock(&self.pools)
            .get(slot)
            .is_some_and(|pool| self.is_fresh(pool, now) && !pool.tasks.is_empty())
    }

    fn is_fresh(&self, pool: &Pool, now: Timestamp) -> bool {
        pool.generation == self.generation.load(Ordering::Acquire)
            && now >= pool.fetched_at
            && now.since(pool.fetched_at) <= POOL_TTL
    }

    /// The generation to pass to [`CandidatePool::fill`]: read it *before* the Query, so that a
    /// local change made while the Query runs drops its result.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces `slot`'s pool with the candidates of a Query made at `now`.
    pub(crate) fn fill(
        &self,
        slot: Slot,
        now: Timestamp,
        generation: u64,
        tasks: impl IntoIterator<Item = Versioned<Task>>,
    ) {
        let pool = Pool {
            fetched_at: now,
            generation,
            tasks: tasks.into_iter().collect(),
        };
        lock(&self.pools).insert(slot, pool);
    }

    /// Drops every pool: this process changed which tasks are claimable.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        lock(&self.pools).clear();
    }

    /// Takes `key` out of every pool: this process changed that task by other means (a claim by
    /// id), so the copy a pool holds is stale.
    pub(crate) fn remove(&self, key: &TaskKey) {
        for ((job, _), pool) in lock(&self.pools).iter_mut() {
            if *job == key.job {
                pool.tasks.retain(|c| c.value.id != key.id);
            }
        }
    }

    /// Shuffles what is left of `slot`'s pool (after a lost race: the other process's workers
    /// are taking the same candidates in the same order).
    pub(crate) fn shuffle(&self, slot: &Slot) {
        if let Some(pool) = lock(&self.pools).get_mut(slot) {
            crate::store::shuffle(pool.tasks.make_contiguous());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tasktrack_core::{Job, NewTask, TaskId, lifecycle};

    fn candidates(n: usize) -> Vec<Versioned<Task>> {
        let now = Timestamp::from_millis(1_000);
        let job = Job::new(JobName::new("j").unwrap(), now);
        (0..n)
            .map(|i| {
                let new = NewTask::new(TaskId::new(format!("t{i}")).unwrap());
                Versioned::new(lifecycle::create_task(&job, &new, now).unwrap(), "1")
            })
            .collect()
    }

    fn slot() -> Slot {
        (JobName::new("j").unwrap(), None)
    }

    fn ids(pool: &CandidatePool, now: Timestamp) -> Vec<String> {
        std::iter::from_fn(|| pool.take(&slot(), now))
            .map(|c| c.value.id.to_string())
            .collect()
    }

    #[test]
    fn candidates_come_out_in_the_order_of_the_query() {
        let pool = CandidatePool::default();
        let t = Timestamp::from_millis(5_000);
        pool.fill(slot(), t, pool.generation(), candidates(3));
        assert!(pool.has(&slot(), t));
        assert_eq!(ids(&pool, t.plus(POOL_TTL)), ["t0", "t1", "t2"]);
        assert!(!pool.has(&slot(), t), "empty");
    }

    #[test]
    fn a_pool_older_than_the_ttl_or_from_a_later_time_is_dropped() {
        let pool = CandidatePool::default();
        let t = Timestamp::from_millis(5_000);
        pool.fill(slot(), t, pool.generation(), candidates(3));
        let late = t.plus(POOL_TTL).plus(Duration::from_millis(1));
        assert!(pool.take(&slot(), late).is_none());
        pool.fill(slot(), t, pool.generation(), candidates(3));
        assert!(
            pool.take(&slot(), t.minus(Duration::from_millis(1)))
                .is_none()
        );
        assert!(
            pool.take(&slot(), t).is_none(),
            "a dropped pool stays dropped"
        );
        assert!(!pool.has(&slot(), t));
    }

    #[test]
    fn a_removed_task_is_no_longer_offered() {
        let pool = CandidatePool::default();
        let t = Timestamp::from_millis(5_000);
        let staged = (JobName::new("j").unwrap(), Some("s".to_string()));
        pool.fill(slot(), t, pool.generation(), candidates(3));
        pool.fill(staged.clone(), t, pool.generation(), candidates(2));
        pool.remove(&TaskKey::new(
            JobName::new("j").unwrap(),
            TaskId::new("t1").unwrap(),
        ));
        assert_eq!(ids(&pool, t), ["t0", "t2"]);
        let staged: Vec<String> = std::iter::from_fn(|| pool.take(&staged, t))
            .map(|c| c.value.id.to_string())
            .collect();
        assert_eq!(staged, ["t0"]);
    }

    #[test]
    fn a_local_change_drops_pools_even_those_fetched_while_it_ran() {
        let pool = CandidatePool::default();
        let t = Timestamp::from_millis(5_000);
        pool.fill(slot(), t, pool.generation(), candidates(3));
        let before_query = pool.generation();
        pool.invalidate();
        assert!(pool.take(&slot(), t).is_none());
        pool.fill(slot(), t, before_query, candidates(3));
        assert!(pool.take(&slot(), t).is_none());
    }
}
