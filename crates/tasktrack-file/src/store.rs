//! [`FileStore`]: the compare-and-swap adapter over [`FileDocuments`], with `claim_next` done
//! natively under the job lock.
//!
//! Through the generic adapter, every worker would read the same best candidate, all but one
//! would lose the conditional write and start over. Under the job lock the holder can instead
//! take the candidates in claim order and write them in one transaction: no lost races, one
//! fsync per batch (of the journal, on Linux; see `journal`). The rule applied is still the pure
//! one (`lifecycle::claim`); only the choice of candidates is native.
//!
//! The fenced writes of a lease holder (`heartbeat`, `succeed`, `fail`, `release`,
//! `patch_data`) likewise read, apply their pure rule and stage the result in one batched lock
//! hold, instead of the adapter's unlocked read followed by a conditional write: half the trips
//! to the blocking pool, and no lost races to retry.
//!
//! The hand-off (`succeed_and_claim_next`) is `succeed`'s rule followed by `claim_next`'s
//! candidates in the same lock hold and transaction: a worker looping on it costs one journal
//! fsync per task (shared with the concurrent writers of its process) instead of two. The claim
//! sees the success through the session (a task advanced to its next stage is claimable at
//! once), and [`Session::all_or_nothing`] takes the success back if the claim fails.

use crate::documents::FileDocuments;
use crate::journal::Change;
use crate::session::Session;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tasktrack_core::cas::{self, CasStore};
use tasktrack_core::lifecycle::{self, ClaimDecision};
use tasktrack_core::*;

/// The `file://` store. Open it with [`crate::open`].
#[derive(Debug)]
pub struct FileStore {
    cas: CasStore<FileDocuments>,
}

impl FileStore {
    /// A store over `docs` (call [`Store::init`] before use).
    pub fn new(docs: FileDocuments) -> Self {
        FileStore {
            cas: CasStore::new(docs),
        }
    }

    /// The documents underneath (root directory, durability).
    pub fn documents(&self) -> &FileDocuments {
        self.cas.documents()
    }
}

/// A rule's new task is both written and returned.
fn both(result: Result<Task>) -> Result<(Task, Task)> {
    result.map(|t| (t.clone(), t))
}

/// How many candidates to read per pass over the index.
const CANDIDATES_PER_PASS: usize = 32;

/// Claims up to `req.limit` tasks of the locked job, in claim order, in one transaction.
fn claim_next_locked(s: &mut Session<'_>, req: &ClaimNext, now: Timestamp) -> Result<Vec<Claimed>> {
    let claim = Claim::new(req.owner.clone(), req.lease_for);
    let (mut won, mut changes) = (Vec::new(), Vec::new());
    let mut seen = 0;
    'passes: loop {
        let ids: Vec<TaskId> = s
            .claimable(req.stage.as_deref(), now)
            .skip(seen)
            .take(req.limit.saturating_add(CANDIDATES_PER_PASS))
            .collect();
        if ids.is_empty() {
            break;
        }
        seen += ids.len();
        for id in ids {
            let task = match s.read_task(&id) {
                Ok(Some(task)) => task,
                Ok(None) => continue,
                Err(e @ Error::Corrupt { .. }) => {
                    // One unreadable file must not stop the whole job: it is reported (and
                    // `get` names it) while the others are handed out.
                    tracing::error!(error = %e, "skipping an unreadable task in claim_next");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The index is only a guide; the file decides (as the adapter's claim_next does).
            if !task.is_claimable(now) {
                continue;
            }
            match lifecycle::claim(&task, &claim, now) {
                Ok(ClaimDecision::Granted(c)) => {
                    changes.push(Change::Put(c.task.clone()));
                    won.push(c);
                }
                Ok(ClaimDecision::Exhausted(t)) => changes.push(Change::Put(t)),
                Ok(ClaimDecision::Refused(_)) => {}
                // A counter at the top of its range (edited by hand): skipped like an
                // unreadable file, so that it cannot stop the job's claims.
                Err(e @ Error::Corrupt { .. }) => {
                    tracing::error!(error = %e, "skipping a task claim_next cannot claim");
                }
                Err(e) => return Err(e),
            }
            if won.len() == req.limit {
                break 'passes;
            }
        }
    }
    s.stage(changes);
    Ok(won)
}

/// A hand-off under the job lock: the lease's success ([`lifecycle::succeed`]), then
/// [`claim_next_locked`] on the same job, which sees that success (a task advanced to its next
/// stage is pending there, and may be claimed again). All or nothing: a refused success, or a
/// claim that fails, stages nothing.
fn succeed_and_claim_next_locked(
    s: &mut Session<'_>,
    lease: &Lease,
    output: Value,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Handoff> {
    s.all_or_nothing(|s| {
        let task = s.read_task(&lease.key.id)?.ok_or_else(|| stale(lease))?;
        let done = lifecycle::succeed(&task, lease, output, now)?;
        s.stage(vec![Change::Put(done.clone())]);
        let next = claim_next_locked(s, req, now)?;
        Ok(Handoff { done, next })
    })
}

/// Completes each `(position, lease, output)` of one job under its lock, staging every success
/// in the same transaction. Every outcome, a failed read included, is that entry's own: nothing
/// may fail after the first change is staged (see [`crate::session::Slot::batched`]).
fn succeed_each_locked(
    s: &mut Session<'_>,
    done: Vec<(usize, Lease, Value)>,
    now: Timestamp,
) -> Vec<(usize, Result<Task>)> {
    let mut results = Vec::with_capacity(done.len());
    for (position, lease, output) in done {
        let outcome = match s.read_task(&lease.key.id) {
            Ok(Some(task)) => lifecycle::succeed(&task, &lease, output, now),
            Ok(None) => Err(stale(&lease)),
            Err(e) => Err(e),
        };
        if let Ok(task) = &outcome {
            // Staged one by one: a later entry for the same task sees this one's change.
            s.stage(vec![Change::Put(task.clone())]);
        }
        results.push((position, outcome));
    }
    results
}

/// The error for a lease whose task is gone.
fn stale(lease: &Lease) -> Error {
    Error::StaleLease {
        key: lease.key.to_string(),
        token: lease.token,
    }
}

impl FileStore {
    /// Applies a lease holder's pure rule to the task under the job lock (batched). A task that
    /// is gone is [`Error::StaleLease`], as in the adapter.
    async fn fenced<R, F>(&self, lease: &Lease, rule: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Task) -> Result<(Task, R)> + Send + 'static,
    {
        self.under_lock(lease, rule)
            .await?
            .ok_or_else(|| stale(lease))
    }

    /// Applies `rule` to the lease's task under the job lock (batched); `None` if it is gone.
    async fn under_lock<R, F>(&self, lease: &Lease, rule: F) -> Result<Option<R>>
    where
        R: Send + 'static,
        F: FnOnce(&Task) -> Result<(Task, R)> + Send + 'static,
    {
        let id = lease.key.id.clone();
        let outcome = self
            .documents()
            .batched(&lease.key.job, move |s| {
                let Some(task) = s.read_task(&id)? else {
                    return Ok(None);
                };
                let (new, result) = rule(&task)?;
                s.stage(vec![Change::Put(new)]);
                Ok(Some(result))
            })
            .await?;
        Ok(outcome.flatten())
    }
}

tasktrack_core::store_impl! {
    FileStore;
    native {
        fn backend(&self) -> &'static str {
            "file"
        }
        async fn claim_next(
            &self,
            job: &JobName,
            req: &ClaimNext,
            now: Timestamp,
        ) -> Result<Vec<Claimed>> {
            cas::check_claim_next(req)?;
            let req = req.clone();
            let won = self
                .documents()
                .batched(job, move |s| claim_next_locked(s, &req, now))
                .await?;
            Ok(won.unwrap_or_default())
        }
        async fn heartbeat(
            &self,
            lease: &Lease,
            lease_for: Duration,
            now: Timestamp,
        ) -> Result<Lease> {
            // As in the adapter, a heartbeat for a task that is gone is a stale lease.
            let held = lease.clone();
            let renewed = self
                .under_lock(lease, move |t| {
                    lifecycle::heartbeat(t, &held, lease_for, now)
                })
                .await?;
            renewed.ok_or_else(|| Error::StaleLease {
                key: lease.key.to_string(),
                token: lease.token,
            })
        }
        async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
            // Refused before any lock, whatever the task's state (as on every backend).
            lifecycle::check_patch(lease, patch)?;
            let (held, patch) = (lease.clone(), patch.clone());
            self.fenced(lease, move |t| {
                both(lifecycle::patch_data(t, &held, &patch, now))
            })
            .await
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            lifecycle::check_output(lease, &output)?;
            let held = lease.clone();
            self.fenced(lease, move |t| {
                both(lifecycle::succeed(t, &held, output, now))
            })
            .await
        }
        /// Native hand-off: the success and the next claims in one transaction (one lock hold,
        /// one journal fsync, batched with this process's other writers of the job), instead of
        /// two.
        async fn succeed_and_claim_next(
            &self,
            lease: &Lease,
            output: Value,
            next: &ClaimNext,
            now: Timestamp,
        ) -> Result<Handoff> {
            cas::check_claim_next(next)?;
            lifecycle::check_output(lease, &output)?;
            let (held, req) = (lease.clone(), next.clone());
            self.documents()
                .batched(&lease.key.job, move |s| {
                    succeed_and_claim_next_locked(s, &held, output, &req, now)
                })
                .await?
                .ok_or_else(|| stale(lease))
        }
        /// Native batch: the leases of each job complete in one transaction (one lock hold, one
        /// journal fsync), instead of one per lease.
        async fn succeed_many(
            &self,
            done: &[(Lease, Value)],
            now: Timestamp,
        ) -> Result<Vec<Result<Task>>> {
            // An output `succeed` refuses is answered first, in its place.
            cas::succeed_many_checked(done, async |done| {
                let mut by_job: BTreeMap<JobName, Vec<(usize, Lease, Value)>> = BTreeMap::new();
                for (position, (lease, output)) in done.iter().enumerate() {
                    by_job.entry(lease.key.job.clone()).or_default().push((
                        position,
                        lease.clone(),
                        output.clone(),
                    ));
                }
                let mut results: Vec<Option<Result<Task>>> = vec![None; done.len()];
                for (job, batch) in by_job {
                    let leases: Vec<(usize, Lease)> =
                        batch.iter().map(|(i, l, _)| (*i, l.clone())).collect();
                    let outcomes = self
                        .documents()
                        .batched(&job, move |s| Ok(succeed_each_locked(s, batch, now)))
                        .await;
                    match outcomes {
                        // This job's transaction failed: its leases answer that, and the other
                        // jobs' answers, committed already, stand.
                        Err(e) => {
                            for (position, _) in leases {
                                results[position] = Some(Err(e.clone()));
                            }
                        }
                        Ok(Some(outcomes)) => {
                            for (position, outcome) in outcomes {
                                results[position] = Some(outcome);
                            }
                        }
                        // The job has no directory: none of its tasks exists.
                        Ok(None) => {
                            for (position, lease) in leases {
                                results[position] = Some(Err(stale(&lease)));
                            }
                        }
                    }
                }
                results
                    .into_iter()
                    .map(|r| r.ok_or_else(|| Error::backend("succeed_many lost an entry")))
                    .collect()
            })
            .await
        }
        async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
            let (held, req) = (lease.clone(), req.clone());
            self.fenced(lease, move |t| both(lifecycle::fail(t, &held, &req, now)))
                .await
        }
        async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
            let held = lease.clone();
            self.fenced(lease, move |t| both(lifecycle::release(t, &held, now)))
                .await
        }
    }
    via self.cas {
        init() -> ();
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        jobs(state: Option<JobState>) -> Vec<Job>;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
        retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
}
