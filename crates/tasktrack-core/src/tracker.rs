//! [`Tracker`]: run a closure under a lease, with heartbeats, and record how it ended.
//!
//! `run` / `run_next` / `run_all` claim a task, renew its lease in the background (every third of
//! the lease) while the closure runs, then record the closure's output on `Ok`, its error on `Err`
//! (message and full chain as detail), or its panic. If the returned future is dropped after the
//! claim and before the outcome is recorded (a `select!`, a timeout, a cancelled request), the
//! heartbeat stops and the lease is released by a task spawned on the current runtime, so the task
//! is claimable again at once. A drop while a claim is in flight strands nothing either: claims
//! run on their own task, and leases granted to a caller that is gone are released. One gap,
//! where the lease instead runs out on its own (the task is then claimable again after its lease,
//! that attempt counted as dead): a drop while the runtime is shutting down (the release task
//! never runs).
//!
//! A tracker and its clones are one worker (one owner id), and a claim by the holder of a live
//! lease is re-entrant in the store. So that one task never runs twice at once in one process,
//! a tracker remembers the tasks its runs hold (shared by its clones) and `run` refuses one of
//! them with [`Refusal::Locked`]. (`run_next` and `run_all` can still be granted a task a clone
//! holds once that clone's lease has run out: the claim is a new attempt, which runs, and the
//! clone's outcome is fenced out when it comes; `run` of it is refused until both have ended.)
//! Every transition is logged with `tracing`: the claim, heartbeat trouble, the outcome (a
//! failure at `warn`, with its kind and message).
//!
//! A tracker runs on Tokio: its heartbeats, claims and releases are tasks of the current
//! runtime, which needs time enabled (`#[tokio::main]`, or `Builder::enable_all`). Called
//! outside a runtime, a run is [`Error::InvalidInput`] saying so.
//!
//! The caller's code that turns an attempt's result into what is recorded (the output's
//! `Serialize`, the error's `Display` and `Debug`) runs under the same guard as the closure: a
//! panic there is the attempt's failure too. A failure the store refuses (its message too large
//! for the store, say) is recorded in its place as an `unrecordable` failure keeping the start
//! of its message, as retryable as it was ([`Fail::instead_of`]); a refused output, as one that
//! is not retried.
//!
//! Claiming and recording an outcome ride out a short store outage ([`crate::recovery`]): a
//! transient error is retried for about 9 s, an outcome whose answer was lost after the commit
//! is recognised rather than reported as a lost lease, and a task a lost claim or hand-off took
//! is run rather than left to wait out its lease.

use crate::error::{Error, Refusal, Result};
use crate::model::*;
use crate::recovery::{self, Recorded};
use crate::store::{Claim, ClaimNext, Fail, Store};
use crate::time::{Clock, SystemClock, Timestamp};
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};

/// Wrap an error in this to fail the task at once (`exhausted`), whatever attempts are left.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct NonRetryable(pub anyhow::Error);

/// What the closure gets: the claimed task, its lease, and a way to checkpoint `data`.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The task as claimed.
    pub task: Task,
    /// The lease held while the closure runs.
    pub lease: Lease,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl TaskContext {
    /// Merges `patch` into the task's `data`; kept whatever the outcome (a checkpoint).
    pub async fn checkpoint(&self, patch: Value) -> Result<Task> {
        self.store
            .patch_data(&self.lease, &patch, self.clock.now())
            .await
    }
}

/// Runs work under leases for one job (and optionally one pipeline stage).
#[derive(Debug, Clone)]
pub struct Tracker {
    store: Arc<dyn Store>,
    job: JobName,
    owner: String,
    lease_for: Duration,
    backoff: Backoff,
    stage: Option<String>,
    clock: Arc<dyn Clock>,
    /// The tasks this tracker's runs hold right now, each with how many runs hold it, shared by
    /// its clones (see [`Held`]).
    held: Held,
}

impl Tracker {
    /// A tracker with the default lease (5 min), backoff and a unique worker id. It does not read
    /// the job's record: for the lease and backoff a job was given (`put_job`, `tasktrack job
    /// set`), use [`Tracker::for_job`].
    pub fn new(store: Arc<dyn Store>, job: JobName) -> Self {
        Tracker {
            store,
            job,
            owner: default_worker_id(),
            lease_for: DEFAULT_LEASE,
            backoff: Backoff::default(),
            stage: None,
            clock: Arc::new(SystemClock),
            held: Held::default(),
        }
    }

    /// A tracker using the job record's lease and backoff (the job must exist).
    pub async fn for_job(store: Arc<dyn Store>, job: JobName) -> Result<Self> {
        let record = store.get_job(&job).await?;
        Ok(Tracker::new(store, job)
            .with_lease(record.lease())
            .with_backoff(record.backoff))
    }

    /// Sets the worker id recorded in leases and history.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets the lease length.
    pub fn with_lease(mut self, lease_for: Duration) -> Self {
        self.lease_for = lease_for;
        self
    }

    /// Sets the retry backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Only claim tasks at this pipeline stage.
    pub fn at_stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// Uses another clock (a [`crate::ManualClock`] in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The worker id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims the task `id`, runs `f`, records the outcome; returns the task as recorded.
    /// A refusal (locked, succeeded, ...) is an [`Error::Refused`] and runs nothing; so is a task
    /// that a run of this tracker or of a clone is running now ([`Refusal::Locked`]).
    pub async fn run<F, Fut, T, E>(&self, id: &TaskId, f: F) -> Result<Task>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        T: Serialize,
        E: Into<anyhow::Error>,
    {
        check_runtime()?;
        let key = TaskKey::new(self.job.clone(), id.clone());
        let Some(mark) = self.held.hold_if_free(&key) else {
            return Err(self.held_here(&key).await);
        };
        let claim = Claim::new(self.owner.clone(), self.lease_for);
        let (store, now) = (self.store.clone(), self.clock.now());
        let claimed = self
            .granting(async move { store.claim(&key, &claim, now).await }, |c| {
                vec![c.lease]
            })
            .await?;
        self.execute(claimed, f, None, mark)
            .await
            .map(|(done, _)| done)
    }

    /// Claims the next claimable task and runs `f` on it; `None` when nothing is claimable now.
    pub async fn run_next<F, Fut, T, E>(&self, f: F) -> Result<Option<Task>>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        T: Serialize,
        E: Into<anyhow::Error>,
    {
        check_runtime()?;
        let claimed = self.claim_next().await?;
        match claimed.into_iter().next() {
            Some(c) => {
                let mark = self.held.hold(&c.lease.key);
                self.execute(c, f, None, mark)
                    .await
                    .map(|(done, _)| Some(done))
            }
            None => Ok(None),
        }
    }

    /// Runs `f` on task after task until nothing is claimable now; returns how many ran.
    ///
    /// The loop `while tracker.run_next(f).await?.is_some() {}` does the same, but here each
    /// success is recorded and the next task claimed in one call
    /// ([`Store::succeed_and_claim_next`]): one round trip (one commit, on SQLite and the SQL
    /// backends) per task instead of two. A success refused because the lease was lost is
    /// logged and the loop goes on, as after a failure. A short store outage while recording is
    /// ridden out (see [`crate::recovery`]), and so is one while claiming; any other store
    /// error ends the loop.
    pub async fn run_all<F, Fut, T, E>(&self, mut f: F) -> Result<u64>
    where
        F: FnMut(TaskContext) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        T: Serialize,
        E: Into<anyhow::Error>,
    {
        check_runtime()?;
        let req = self.claim_request();
        let mut held = self.claim_next().await?;
        let mut ran = 0;
        while let Some(c) = held.pop() {
            ran += 1;
            let mark = self.held.hold(&c.lease.key);
            held = match self.execute(c, &mut f, Some(&req), mark).await {
                Ok((_, Some(next))) => next,
                Ok((_, None)) => self.claim_next().await?,
                Err(e @ (Error::StaleLease { .. } | Error::Refused { .. })) => {
                    warn!(error = %e, "outcome not recorded; going on");
                    self.claim_next().await?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(ran)
    }

    fn claim_request(&self) -> ClaimNext {
        ClaimNext {
            owner: self.owner.clone(),
            lease_for: self.lease_for,
            limit: 1,
            stage: self.stage.clone(),
        }
    }

    /// The refusal for a task a run of this tracker holds: locked by this very worker, until
    /// its lease runs out (now, if the task cannot be read: it is locked all the same).
    async fn held_here(&self, key: &TaskKey) -> Error {
        let now = self.clock.now();
        let expires_at = match self.store.get(key).await {
            Ok(task) => task.lease.map_or(now, |l| l.expires_at),
            Err(_) => now,
        };
        Error::Refused {
            key: key.to_string(),
            reason: Refusal::Locked {
                owner: self.owner.clone(),
                expires_at,
            },
        }
    }

    /// Claims the next task, riding out a short store outage as recording does
    /// ([`crate::recovery`]): a transient error is retried, and a claim whose answer was lost is
    /// found still leased to this tracker.
    async fn claim_next(&self) -> Result<Vec<Claimed>> {
        let mut tries = 0;
        loop {
            let now = self.clock.now();
            match self.claim_next_at(now).await {
                Err(e) if e.is_transient() && tries < recovery::RECORD_TRIES => {
                    tries += 1;
                    warn!(error = %e, "claim failed; retrying");
                    tokio::time::sleep(recovery::pause(tries)).await;
                    let lost = self.claimed_unawares(None, now).await;
                    if !lost.is_empty() {
                        return Ok(lost);
                    }
                }
                answer => return answer,
            }
        }
    }

    async fn claim_next_at(&self, now: Timestamp) -> Result<Vec<Claimed>> {
        let (store, job, req) = (self.store.clone(), self.job.clone(), self.claim_request());
        self.granting(
            async move { store.claim_next(&job, &req, now).await },
            |won| won.into_iter().map(|c| c.lease).collect(),
        )
        .await
    }

    /// [`granting`] with this tracker's store and clock.
    async fn granting<T, Fut>(&self, call: Fut, granted: fn(T) -> Vec<Lease>) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        granting(self.store.clone(), self.clock.clone(), call, granted).await
    }

    /// Runs `f` under the lease and records the outcome. With `then`, a success also claims the
    /// next task (a hand-off) and returns it; `None` when no claim was made. `_mark` keeps the
    /// task marked as this tracker's until the outcome is recorded (or the run is dropped).
    async fn execute<F, Fut, T, E>(
        &self,
        claimed: Claimed,
        f: F,
        then: Option<&ClaimNext>,
        _mark: HeldKey,
    ) -> Result<(Task, Option<Vec<Claimed>>)>
    where
        F: FnOnce(TaskContext) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        T: Serialize,
        E: Into<anyhow::Error>,
    {
        let lease = claimed.lease.clone();
        let span = info_span!("task", job = %lease.key.job, id = %lease.key.id, attempt = lease.attempt, worker = %self.owner);
        async move {
            info!(token = lease.token, expires_at = %lease.expires_at, "claimed");
            let mut heartbeat = tokio::spawn(keep_alive(
                self.store.clone(),
                self.clock.clone(),
                lease.clone(),
                self.lease_for,
            ));
            let mut release_guard = ReleaseOnDrop::new(self, &lease, heartbeat.abort_handle());
            let ctx = TaskContext {
                task: claimed.task,
                lease: lease.clone(),
                store: self.store.clone(),
                clock: self.clock.clone(),
            };
            let result = AssertUnwindSafe(async move { f(ctx).await })
                .catch_unwind()
                .await;
            heartbeat.abort();
            if let Some(Err(e)) = (&mut heartbeat).now_or_never()
                && e.is_panic()
            {
                warn!(error = %e, "the heartbeat panicked: the lease was not renewed");
            }
            let verdict = self.verdict(result);
            let recorded = self.record(&lease, verdict, then).await;
            release_guard.disarm();
            match &recorded {
                Ok((task, _)) => log_recorded(task),
                Err(e) => warn!(error = %e, "could not record the outcome"),
            }
            recorded
        }
        .instrument(span)
        .await
    }

    /// Records what `f` produced, riding out a short store outage ([`recovery::ride_out`]: a
    /// transient error is retried for a few seconds, an outcome whose answer was lost is found
    /// recorded, and the task a lost hand-off claimed is returned to be run next). When the
    /// store refuses the outcome (an output too large for the store, say:
    /// [`Error::InvalidInput`]), that is the attempt's failure, recorded as
    /// [`Fail::instead_of`] says, rather than an error that would leave the lease to expire and
    /// the same work to run again ([`Tracker::record_unrecordable`]).
    async fn record(
        &self,
        lease: &Lease,
        verdict: Verdict,
        then: Option<&ClaimNext>,
    ) -> Result<(Task, Option<Vec<Claimed>>)> {
        let (recorded, first_try_lost) = recovery::ride_out(
            self.store.as_ref(),
            self.clock.as_ref(),
            lease,
            |first, now| self.write(lease, &verdict, then.filter(|_| first), now),
            |e| warn!(error = %e, "could not record the outcome yet; retrying"),
        )
        .await;
        let (task, mut next) = match recorded {
            Ok(Recorded::Answered(done)) => done,
            Ok(Recorded::Found(task, _)) => (*task, None),
            Err(refusal @ Error::InvalidInput(_)) => {
                warn!(error = %refusal, "the store refused this attempt's outcome; recorded as its failure");
                let refused = match &verdict {
                    Verdict::Fail(failure) => Some(failure),
                    Verdict::Succeed(_) => None,
                };
                let instead = Fail::instead_of(refused, &refusal, self.backoff);
                return Ok((
                    self.record_unrecordable(lease, &refusal, &instead).await?,
                    None,
                ));
            }
            Err(e) => return Err(e),
        };
        // Only a success hands off: a lost failure's answer claimed nothing.
        if let (Some(at), Some(_), Verdict::Succeed(_)) = (first_try_lost, then, &verdict) {
            let lost = self.claimed_unawares(Some(&lease.key), at).await;
            if !lost.is_empty() {
                next.get_or_insert_with(Vec::new).extend(lost);
            }
        }
        Ok((task, next))
    }

    /// Records the attempt whose outcome the store refused as its failure `instead`
    /// ([`recovery::record_unrecordable`]).
    async fn record_unrecordable(
        &self,
        lease: &Lease,
        refusal: &Error,
        instead: &Fail,
    ) -> Result<Task> {
        let recorded = recovery::record_unrecordable(
            self.store.as_ref(),
            self.clock.as_ref(),
            lease,
            refusal,
            instead,
            |e| warn!(error = %e, "could not record the failure yet; retrying"),
        )
        .await;
        recorded.map(|(task, _)| task)
    }

    /// What a claim (or the hand-off of `done`) sent at `at` took if its answer was lost
    /// ([`recovery::claimed_unawares`]), but for what a run of this tracker or a clone holds: a
    /// clone works under the same name. `done` is held by the run asking, which has just
    /// recorded it, so the hand-off's grant of it (a pipeline task at its next stage) is kept.
    /// (A clone's claim granted in the same millisecond and not yet marked could still be taken
    /// for it: the task would run twice, its completion still fenced to one.)
    async fn claimed_unawares(&self, done: Option<&TaskKey>, at: Timestamp) -> Vec<Claimed> {
        let (store, stage) = (self.store.as_ref(), self.stage.as_deref());
        match recovery::claimed_unawares(store, &self.job, stage, &self.owner, at).await {
            Ok(found) => found
                .into_iter()
                .filter(|c| Some(&c.lease.key) == done || !self.held.is_held(&c.lease.key))
                .collect(),
            Err(e) => {
                warn!(error = %e, "could not look for a task the lost hand-off claimed; if it did, it runs again once its lease expires");
                Vec::new()
            }
        }
    }

    /// What the attempt produced, as the store is to record it. Turning it into that runs the
    /// caller's code too (the output's `Serialize`, the error's `Display` and `Debug`): a panic
    /// there is the attempt's failure like a panic of the closure, not one that escapes the run
    /// (which would give the task back with the attempt uncounted, to be run again forever).
    fn verdict<T: Serialize, E: Into<anyhow::Error>>(
        &self,
        result: std::thread::Result<std::result::Result<T, E>>,
    ) -> Verdict {
        std::panic::catch_unwind(AssertUnwindSafe(|| self.judge(result))).unwrap_or_else(|panic| {
            Verdict::Fail(Fail {
                error: Failure::new(
                    "panic",
                    format!(
                        "{} while turning the attempt's result into what is recorded (the \
                         output's Serialize, or the error's Display or Debug)",
                        panic_message(&panic)
                    ),
                ),
                retryable: true,
                backoff: self.backoff,
            })
        })
    }

    /// [`Tracker::verdict`], panics left to it.
    fn judge<T: Serialize, E: Into<anyhow::Error>>(
        &self,
        result: std::thread::Result<std::result::Result<T, E>>,
    ) -> Verdict {
        let (error, retryable) = match result {
            Ok(Ok(output)) => match serde_json::to_value(output) {
                Ok(output) => return Verdict::Succeed(output),
                Err(e) => (
                    Failure::new("output", format!("output is not JSON: {e}")),
                    false,
                ),
            },
            Ok(Err(e)) => {
                let e: anyhow::Error = e.into();
                let retryable = e.downcast_ref::<NonRetryable>().is_none();
                (
                    Failure::new("error", format!("{e:#}")).with_detail(format!("{e:?}")),
                    retryable,
                )
            }
            Err(panic) => (Failure::new("panic", panic_message(&panic)), true),
        };
        Verdict::Fail(Fail {
            error,
            retryable,
            backoff: self.backoff,
        })
    }

    /// One try at recording `verdict`; with `then`, a success also claims the next task.
    async fn write(
        &self,
        lease: &Lease,
        verdict: &Verdict,
        then: Option<&ClaimNext>,
        now: Timestamp,
    ) -> Result<(Task, Option<Vec<Claimed>>)> {
        let output = match verdict {
            Verdict::Succeed(output) => output.clone(),
            Verdict::Fail(req) => return Ok((self.store.fail(lease, req, now).await?, None)),
        };
        match then {
            Some(req) => {
                let (store, lease, req) = (self.store.clone(), lease.clone(), req.clone());
                let got = self
                    .granting(
                        async move {
                            store
                                .succeed_and_claim_next(&lease, output, &req, now)
                                .await
                        },
                        |got| got.next.into_iter().map(|c| c.lease).collect(),
                    )
                    .await?;
                Ok((got.done, Some(got.next)))
            }
            None => Ok((self.store.succeed(lease, output, now).await?, None)),
        }
    }
}

/// What an attempt produced: what [`Tracker`] records for it.
enum Verdict {
    /// Success, with the output.
    Succeed(Value),
    /// Failure (the closure's error or panic, or an output that is not JSON).
    Fail(Fail),
}

/// Logs a recorded outcome: a failure at `warn`, with its kind and message.
fn log_recorded(task: &Task) {
    match (&task.status, &task.error) {
        (Status::Failed | Status::Exhausted, Some(error)) => warn!(
            status = %task.status, kind = %error.kind, error = %error.message, "recorded"
        ),
        _ => info!(status = %task.status, "recorded"),
    }
}

/// Runs a store call that grants leases (`claim`, `claim_next`, the hand-off) so that dropping
/// the caller's future while the call is in flight strands nothing: the call runs on its own task
/// to the end, and if the caller is gone by then, the leases it granted (`granted`) are released
/// instead of running out (an expired lease counts as a failed attempt). A store call that
/// panics is an [`Error::Backend`], not a panic in the caller.
async fn granting<T, Fut>(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    call: Fut,
    granted: fn(T) -> Vec<Lease>,
) -> Result<T>
where
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (answer, answered) = tokio::sync::oneshot::channel();
    tokio::spawn(
        async move {
            if let Err(Ok(unwanted)) = answer.send(call.await) {
                for lease in granted(unwanted) {
                    give_back(store.clone(), clock.clone(), lease, "caller gone").await;
                }
            }
        }
        .in_current_span(),
    );
    answered.await.unwrap_or_else(|_| {
        Err(Error::backend(
            "the store call ended without an answer (it panicked)",
        ))
    })
}

/// [`recovery::keep_alive`], saying what went wrong in the log.
async fn keep_alive(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lease: Lease,
    lease_for: Duration,
) {
    let trouble = |e: &Error| match e {
        Error::StaleLease { .. } => warn!(error = %e, "lease lost; the result will be rejected"),
        _ => warn!(error = %e, "heartbeat failed; will retry"),
    };
    recovery::keep_alive(store.as_ref(), clock.as_ref(), &lease, lease_for, trouble).await;
}

/// The tasks a tracker's runs hold, shared by its clones: how many runs hold each.
///
/// Usually one. Two when a clone's run was granted a task by `run_next` or `run_all` after the
/// lease of a slower clone's run on it had run out (the claim is a new attempt; the slower run's
/// outcome will be fenced out): until both have ended, `run` of that task must still refuse, or
/// it would be granted the live lease again (a claim by its holder is re-entrant) and run the
/// task a second time at once.
#[derive(Debug, Clone, Default)]
struct Held(Arc<Mutex<HashMap<TaskKey, usize>>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskKey, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `key` as held by one more run until the returned guard drops.
    fn hold(&self, key: &TaskKey) -> HeldKey {
        *self.lock().entry(key.clone()).or_default() += 1;
        self.guard(key)
    }

    /// Marks `key` as held by a run until the returned guard drops; `None` if a run holds it.
    fn hold_if_free(&self, key: &TaskKey) -> Option<HeldKey> {
        let mut held = self.lock();
        if held.contains_key(key) {
            return None;
        }
        held.insert(key.clone(), 1);
        drop(held);
        Some(self.guard(key))
    }

    fn is_held(&self, key: &TaskKey) -> bool {
        self.lock().contains_key(key)
    }

    fn guard(&self, key: &TaskKey) -> HeldKey {
        HeldKey {
            held: self.clone(),
            key: key.clone(),
        }
    }
}

/// Takes one run's mark off its task when that run ends.
#[derive(Debug)]
struct HeldKey {
    held: Held,
    key: TaskKey,
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        if let Some(runs) = held.get_mut(&self.key) {
            *runs -= 1;
            if *runs == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// A tracker runs on Tokio: its claims, heartbeats and releases are tasks of the current
/// runtime. Called from outside one, it says so instead of panicking.
fn check_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| {
            Error::InvalidInput(
                "a Tracker runs tasks on a Tokio runtime, and this call is outside one: call it \
             from within a runtime built with time enabled (#[tokio::main], or \
             Builder::enable_all)"
                    .to_string(),
            )
        })
}

/// Stops the heartbeat when the run ends, however it ends, and releases the lease if the run is
/// dropped before it recorded an outcome.
struct ReleaseOnDrop {
    pending: Option<PendingRelease>,
    heartbeat: tokio::task::AbortHandle,
}

/// What a release needs.
struct PendingRelease {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    lease: Lease,
}

impl ReleaseOnDrop {
    fn new(tracker: &Tracker, lease: &Lease, heartbeat: tokio::task::AbortHandle) -> Self {
        ReleaseOnDrop {
            heartbeat,
            pending: Some(PendingRelease {
                store: tracker.store.clone(),
                clock: tracker.clock.clone(),
                lease: lease.clone(),
            }),
        }
    }

    fn disarm(&mut self) {
        self.pending = None;
    }
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        // A dropped `JoinHandle` does not stop its task: without this, a cancelled run whose
        // release failed would renew its lease for as long as the process lives.
        self.heartbeat.abort();
        let Some(PendingRelease {
            store,
            clock,
            lease,
        }) = self.pending.take()
        else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // In the run's span: a cancelled future is dropped inside it.
        runtime.spawn(give_back(store, clock, lease, "cancelled").in_current_span());
    }
}

/// Releases a lease nobody will use (its run was cancelled, or its claim answered a caller that
/// is gone), riding out a short outage ([`recovery::release`]); a lease that cannot be released
/// runs out on its own.
async fn give_back(store: Arc<dyn Store>, clock: Arc<dyn Clock>, lease: Lease, why: &'static str) {
    let retrying = |e: &Error| warn!(key = %lease.key, error = %e, "{why}; could not release the lease yet, retrying");
    match recovery::release(store.as_ref(), clock.as_ref(), &lease, retrying).await {
        Ok(()) => info!(key = %lease.key, "{why}; lease released"),
        // Ended before (its outcome recorded, or taken over): nothing is left held.
        Err(Error::StaleLease { .. }) => info!(key = %lease.key, "{why}; the lease had ended"),
        Err(e) => {
            warn!(key = %lease.key, error = %e, "{why}; could not release the lease; it runs out on its own");
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// `host:pid:n`, unique per tracker in a process (a tracker's clones share it: they are one
/// worker).
pub fn default_worker_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
