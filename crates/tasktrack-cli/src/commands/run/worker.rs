//! One worker: claim, run the command under a heartbeated lease, record the outcome (and, after
//! a success, claim the next task in the same call), repeat.

use super::child::{self, describe_exit};
use super::stats::{Ended, Stats};
use crate::output::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tasktrack::{
    Backoff, ClaimNext, Claimed, Clock, Error, Fail, Failure, JobName, Lease, Outcome, Result,
    Status, Store, TaskId, TaskQuery, Timestamp,
    recovery::{self, Recorded},
};
use tokio::sync::{Mutex, Notify, watch};

/// What the workers of one `run` share.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub out: Output,
    pub job: JobName,
    pub stage: Option<String>,
    pub lease_for: Duration,
    pub backoff: Backoff,
    pub command: Vec<String>,
    pub follow: bool,
    pub poll: Duration,
    /// Claims left under `--limit` (`u64::MAX`: no limit).
    pub remaining: AtomicU64,
    /// Commands running now.
    pub busy: AtomicUsize,
    /// Woken whenever a command ends, so idle workers look again at once (its task may be
    /// claimable again after a failure, or the run may be over).
    pub ended: Notify,
    pub stats: Stats,
    /// Set on Ctrl-C / SIGTERM or a fatal error: claim nothing more.
    pub stop: watch::Sender<bool>,
    /// Set when the grace period is over: kill running commands.
    pub kill: watch::Sender<bool>,
    /// The first error that ended the run.
    pub fatal: Mutex<Option<Error>>,
    /// Leases given back that the store would not take: held until they expire.
    pub unreleased: AtomicU64,
    /// A damaged record kept the run from reading when the next retry is due: it no longer
    /// waits for retries ([`wait_for_more`]).
    pub gave_up_waiting: AtomicBool,
}

impl Shared {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Takes one claim from the `--limit` budget.
    fn reserve(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn unreserve(&self) {
        let _ = self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(1))
            });
    }

    /// Ends the run with `error` (the first one kept): nothing more is claimed.
    pub(super) async fn give_up(&self, error: Error) {
        let mut fatal = self.fatal.lock().await;
        if fatal.is_none() {
            *fatal = Some(error);
        }
        self.stop.send_replace(true);
    }

    /// Gives a claimed task back untouched (its attempt not counted), riding out a short store
    /// outage as recording an outcome does ([`recovery::ride_out`]); returns whether it was. A
    /// failure is warned about and counted in [`Shared::unreleased`]: the task then stays held
    /// until its lease expires, and that attempt is counted as dead.
    async fn release(&self, lease: &Lease) -> bool {
        let released = recovery::release(self.store.as_ref(), self.clock.as_ref(), lease, |e| {
            self.out.warn(format!(
                "{}: could not release the lease yet, retrying: {e}",
                lease.key
            ));
        })
        .await;
        match released {
            Ok(()) => return true,
            // Taken by someone else meanwhile (`--force`, or expired and claimed): nothing of
            // this run's is left held.
            Err(e @ Error::StaleLease { .. }) => self.out.warn(format!(
                "{}: the lease was lost before it could be released: {e}",
                lease.key
            )),
            Err(e) => {
                self.unreleased.fetch_add(1, Ordering::SeqCst);
                self.out.warn(format!(
                    "{}: could not release the lease; the task stays held until it expires: {e}",
                    lease.key
                ));
            }
        }
        false
    }

    /// [`Shared::release`] of a task whose command never ran, counted as released if it was.
    async fn give_back(&self, id: &TaskId, lease: &Lease) {
        if self.release(lease).await {
            self.stats.record_not_run(id, Ended::Released);
        }
    }

    /// Sleeps `d`, or less if the run is stopped or a sibling's command ends meanwhile (a task
    /// may be claimable again).
    async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.pause_to_retry(d) => {}
            () = self.ended.notified() => {}
        }
    }

    /// Sleeps `d`, or less if the run is stopped meanwhile: a retry's pause, which siblings
    /// ending their commands must not cut short (it would spend the retries in a few tasks'
    /// time instead of riding out the outage).
    async fn pause_to_retry(&self, d: Duration) {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            () = until_set(&mut stop) => {}
            () = tokio::time::sleep(d) => {}
        }
    }
}

/// Claims and runs tasks until the job is drained (or forever with `--follow`), the limit is
/// reached, or the run is stopped.
pub async fn work(shared: Arc<Shared>, owner: String) {
    let req = ClaimNext {
        owner,
        lease_for: shared.lease_for,
        limit: 1,
        stage: shared.stage.clone(),
    };
    // Tasks claimed by the last hand-off, run next without another claim.
    let mut held: Vec<Claimed> = Vec::new();
    while !shared.stopping() {
        if let Some(c) = held.pop() {
            let _busy = Busy::start(&shared);
            held = execute(&shared, c, &req).await;
            continue;
        }
        if !shared.reserve() {
            break;
        }
        let now = shared.clock.now();
        match shared.store.claim_next(&shared.job, &req, now).await {
            Ok(claimed) if !claimed.is_empty() => held = claimed,
            Ok(_) => {
                shared.unreserve();
                match wait_for_more(&shared).await {
                    Ok(Some(d)) => shared.pause(d).await,
                    Ok(None) => return,
                    Err(e) => return shared.give_up(e).await,
                }
            }
            Err(e) if e.is_transient() => {
                shared.unreserve();
                shared.out.warn(format!("claim failed, retrying: {e}"));
                shared.pause(shared.poll).await;
                // The claim may have been granted with its answer lost.
                held = claimed_unawares(&shared, &req.owner, now).await;
            }
            Err(e) => {
                shared.unreserve();
                return shared.give_up(e).await;
            }
        }
    }
    // Stopped right after a hand-off claimed a task: give it back untouched.
    for c in held {
        shared.give_back(&c.task.id, &c.lease).await;
    }
}

/// One command counted in [`Shared::busy`] while it lives. Lowered on drop, so that a worker
/// that panics in the middle of a task (a bug) does not leave the count raised: the other
/// workers would take its command for still running and wait for it forever.
struct Busy<'a>(&'a Shared);

impl<'a> Busy<'a> {
    fn start(shared: &'a Shared) -> Self {
        shared.busy.fetch_add(1, Ordering::SeqCst);
        Busy(shared)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
        // Idle workers look again at once: the task may be claimable again, or the run over.
        self.0.ended.notify_waiters();
    }
}

/// Nothing is claimable now: how long to wait before looking again, or `None` when nothing
/// will become claimable in this run (no pending task, no failed task waiting for its backoff,
/// no sibling worker still running a command that may fail and come back).
///
/// A store outage meanwhile is ridden out as recording an outcome is: retried up to
/// [`recovery::RECORD_TRIES`] times, [`recovery::pause`] apart, each with a warning; past that,
/// the error ends the run. A damaged record met reading when the next retry is due (claims set
/// it aside, but it still counts as waiting, and listing its job meets it again) ends the wait:
/// looking again would meet it forever. Tasks waiting for their backoff are then left for a
/// later run.
async fn wait_for_more(shared: &Shared) -> Result<Option<Duration>> {
    let mut tries = 0;
    loop {
        let (reading, e) = match look_for_more(shared).await {
            Ok(wait) => return Ok(wait),
            Err(trouble) => trouble,
        };
        match e {
            e if e.is_transient() && tries < recovery::RECORD_TRIES => {
                tries += 1;
                shared
                    .out
                    .warn(format!("{}, retrying: {e}", reading.what()));
                shared.pause_to_retry(recovery::pause(tries)).await;
                if shared.stopping() {
                    return Ok(None);
                }
            }
            e @ Error::Corrupt { .. } if reading == Reading::Due => {
                give_up_waiting(shared, e);
                return Ok(None);
            }
            e => return Err(e),
        }
    }
}

/// Ends the wait for tasks whose backoff has not ended, because they cannot be read (`why`):
/// every idle worker ends up here, and the run says it once.
fn give_up_waiting(shared: &Shared, why: impl std::fmt::Display) {
    if !shared.gave_up_waiting.swap(true, Ordering::SeqCst) {
        shared.out.warn(format!(
            "{}, so this run ends without waiting for it (tasks waiting for their backoff are \
             left for a later run): {why}",
            Reading::Due.what()
        ));
    }
}

/// What [`look_for_more`] was reading when the store failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The job's counts.
    Counts,
    /// The tasks waiting, for when the next retry is due.
    Due,
}

impl Reading {
    fn what(self) -> &'static str {
        match self {
            Reading::Counts => "could not count the tasks left",
            Reading::Due => "could not read when the next retry is due",
        }
    }
}

/// One look of [`wait_for_more`].
async fn look_for_more(shared: &Shared) -> std::result::Result<Option<Duration>, (Reading, Error)> {
    if shared.follow || shared.busy.load(Ordering::SeqCst) > 0 {
        return Ok(Some(shared.poll));
    }
    // A damaged record already ended the wait of another worker: this one ends too.
    if shared.gave_up_waiting.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let counts = shared
        .store
        .counts(&shared.job)
        .await
        .map_err(|e| (Reading::Counts, e))?;
    // Tasks the job expects but nobody added yet are not waited for (that is what --follow is for).
    let waiting = match &shared.stage {
        // Only this stage's tasks can be claimed by this run.
        Some(stage) => counts
            .by_stage
            .get(stage)
            .map_or(0, |s| s.pending + s.failed),
        None => {
            let expected = counts.amount.map_or(0, |a| a.saturating_sub(counts.known));
            counts.by_status.pending.saturating_sub(expected) + counts.by_status.failed
        }
    };
    if waiting == 0 {
        return Ok(None);
    }
    // Sleep until the earliest backoff ends, but never longer than the poll interval.
    let mut query = TaskQuery::new(shared.job.clone())
        .with_statuses([Status::Pending, Status::Failed])
        .with_limit(1_000);
    query.stage = shared.stage.clone();
    let page = shared
        .store
        .list(&query)
        .await
        .map_err(|e| (Reading::Due, e))?;
    // Counted as waiting, but none is listed: they were taken by another run meanwhile, or
    // they are damaged records, which claims set aside (the page names them). Either way none
    // will become claimable in this run; waiting for them would poll forever.
    if page.tasks.is_empty() {
        if let Some(damaged) = page.unreadable.first() {
            give_up_waiting(
                shared,
                format_args!(
                    "task {}/{} left out: {}",
                    shared.job, damaged.id, damaged.error
                ),
            );
        }
        return Ok(None);
    }
    let next = page.tasks.iter().filter_map(|t| t.not_before).min();
    Ok(Some(next.map_or(shared.poll, |at| {
        until_due(at.since(shared.clock.now()), shared.poll)
    })))
}

/// How long to sleep for a retry due in `due`: never longer than `poll`, nor (to spare the
/// store a busy loop) shorter than 10 ms unless `poll` itself is.
fn until_due(due: Duration, poll: Duration) -> Duration {
    due.max(Duration::from_millis(10)).min(poll)
}

/// How an attempt ended on this side, before it is recorded.
enum Finished {
    /// The command ran: its exit status (or why it could not be waited for), whether we killed
    /// it, and what it printed.
    Ran {
        status: std::io::Result<std::process::ExitStatus>,
        killed: bool,
        stdout: child::Captured,
        stderr: child::Captured,
    },
    /// The command could not be started for this task: its data does not fit in an argument or
    /// the environment (not retryable: it would fail the same way every time), or it could not
    /// be written to its temporary file (retryable). A failure of the task, not of the run.
    NotStarted { failure: Failure, retryable: bool },
}

impl Finished {
    /// Whether the command ran to a zero exit (not killed): the attempt is a success.
    fn succeeded(&self) -> bool {
        matches!(self, Finished::Ran { status: Ok(s), killed: false, .. } if s.success())
    }
}

/// Runs the command for one claimed task and records how it ended. A success also claims the
/// next task when the run goes on (a hand-off, [`Store::succeed_and_claim_next`]: one round trip
/// per task); what it claimed is returned, to be run next.
async fn execute(shared: &Shared, claimed: Claimed, next: &ClaimNext) -> Vec<Claimed> {
    let Claimed { task, lease } = claimed;
    let started = std::time::Instant::now();
    let finished = match child::DataEnv::for_task(&task) {
        // Data over the environment's share could not be put in its file: this attempt fails,
        // retryably (a full disk or a bad TMPDIR is this machine's trouble, not the data's).
        Err(e) => {
            shared.out.warn(format!(
                "{}: cannot write the task's data to a temporary file, recorded as its failure: {e}",
                lease.key
            ));
            Finished::NotStarted {
                failure: child::data_file_failure(&e, &task),
                retryable: true,
            }
        }
        Ok(data) => match child::spawn(&shared.command, &task, &lease, data) {
            Ok(running) => supervise(shared, &lease, running).await,
            Err(e) if child::is_task_fault(&e) => {
                shared.out.warn(format!(
                    "{}: cannot start the command for this task, recorded as its failure: {e}",
                    lease.key
                ));
                Finished::NotStarted {
                    failure: child::spawn_failure(&e, &task),
                    retryable: false,
                }
            }
            Err(e) => {
                // The program itself cannot be started: not the task's fault, and every other
                // task would fail the same way. Give it back untouched and stop the run.
                shared.give_back(&task.id, &lease).await;
                shared
                    .give_up(child::cannot_start(&shared.command, &task, &lease, &e))
                    .await;
                return Vec::new();
            }
        },
    };
    let result = match record_through_outages(shared, &lease, &finished, next).await {
        // The store refused what this attempt produced (an output over a DynamoDB item's size,
        // say): that is this task's failure, recorded as such, not a reason to stop the run.
        Err(e @ Error::InvalidInput(_)) => {
            shared.out.warn(format!(
                "{}: the store refused this attempt's outcome, recorded as its failure: {e}",
                lease.key
            ));
            record_unrecordable(shared, &lease, &e)
                .await
                .map(|ended| (ended, Vec::new()))
        }
        other => other,
    };
    let (ended, claimed) = match result {
        Ok(recorded) => recorded,
        Err(e @ Error::StaleLease { .. }) => {
            shared.out.warn(format!(
                "{}: result rejected, the lease was lost: {e}",
                lease.key
            ));
            (Ended::Lost, Vec::new())
        }
        Err(e) => {
            shared
                .out
                .warn(format!("{}: could not record the outcome: {e}", lease.key));
            shared.give_up(e).await;
            (Ended::Unrecorded, Vec::new())
        }
    };
    match &finished {
        Finished::Ran { .. } => shared.stats.record(&task.id, ended),
        Finished::NotStarted { .. } => shared.stats.record_not_run(&task.id, ended),
    }
    if shared.out.verbose > 0 {
        let how = match (&finished, ended) {
            (Finished::Ran { status: Ok(s), .. }, Ended::Failed | Ended::Exhausted) => {
                format!("{ended:?} ({})", describe_exit(s))
            }
            (Finished::NotStarted { failure, .. }, _) => format!("{ended:?} ({})", failure.message),
            _ => format!("{ended:?}"),
        };
        shared.out.note(format!(
            "{} attempt {}: {} in {:.2?}",
            lease.key,
            lease.attempt,
            how.to_lowercase(),
            started.elapsed()
        ));
    }
    claimed
}

/// [`record`], riding out a short store outage ([`recovery::ride_out`]): transient errors are
/// retried for a few seconds, each with a warning; an outcome whose answer was lost is found
/// recorded; and the task a lost hand-off claimed, still leased to this worker, is returned to
/// be run next (within `--limit`; past it, given back).
async fn record_through_outages(
    shared: &Shared,
    lease: &Lease,
    finished: &Finished,
    next: &ClaimNext,
) -> Result<(Ended, Vec<Claimed>)> {
    let (recorded, first_try_lost) = recovery::ride_out(
        shared.store.as_ref(),
        shared.clock.as_ref(),
        lease,
        |first, now| record(shared, lease, finished, first.then_some(next), now),
        |e| {
            shared.out.warn(format!(
                "{}: could not record the outcome yet, retrying: {e}",
                lease.key
            ));
        },
    )
    .await;
    let (ended, mut claimed) = match recorded? {
        Recorded::Answered(done) => done,
        Recorded::Found(task, outcome) => (ended_as(outcome, task.status), Vec::new()),
    };
    // Only a success hands off: a lost failure's or release's answer claimed nothing.
    if let (Some(at), true) = (first_try_lost, finished.succeeded()) {
        claimed.extend(claimed_unawares(shared, &next.owner, at).await);
    }
    Ok((ended, claimed))
}

/// Records the attempt whose outcome the store refused as its failure
/// ([`recovery::record_unrecordable`]), warning of each retry through an outage.
async fn record_unrecordable(shared: &Shared, lease: &Lease, refusal: &Error) -> Result<Ended> {
    let (task, outcome) = recovery::record_unrecordable(
        shared.store.as_ref(),
        shared.clock.as_ref(),
        lease,
        refusal,
        &Fail::instead_of(None, refusal, shared.backoff),
        |e| {
            shared.out.warn(format!(
                "{}: could not record the failure yet, retrying: {e}",
                lease.key
            ));
        },
    )
    .await?;
    Ok(ended_as(outcome, task.status))
}

/// How an attempt ended, from the outcome it recorded and the task's status after it.
fn ended_as(outcome: Outcome, status: Status) -> Ended {
    match (outcome, status) {
        (Outcome::Succeeded, Status::Succeeded) => Ended::Succeeded,
        (Outcome::Succeeded, _) => Ended::Advanced,
        (Outcome::Failed, Status::Exhausted) => Ended::Exhausted,
        (Outcome::Failed, _) => Ended::Failed,
        _ => Ended::Released,
    }
}

/// [`recovery::claimed_unawares`] for this worker (after a claim or a hand-off sent at `at`),
/// taken within the run's `--limit` (past it, given back); a failure to look is a warning (such
/// a task runs again once its lease expires).
async fn claimed_unawares(shared: &Shared, owner: &str, at: Timestamp) -> Vec<Claimed> {
    let (store, stage) = (shared.store.as_ref(), shared.stage.as_deref());
    let found = match recovery::claimed_unawares(store, &shared.job, stage, owner, at).await {
        Ok(found) => found,
        Err(e) => {
            shared.out.warn(format!(
                "could not look for a task a claim whose answer was lost may have taken (if it \
                 did, it runs again once its lease expires): {e}"
            ));
            return Vec::new();
        }
    };
    let mut adopted = Vec::new();
    for c in found {
        if shared.reserve() {
            adopted.push(c);
        } else {
            // Past --limit: not this run's to count.
            shared.release(&c.lease).await;
        }
    }
    adopted
}

/// Waits for the command to end, renewing the lease every third of its length, and kills it
/// when the run's grace period is over. A command that exits 0 has succeeded, even if the kill
/// came at the same instant: only a command our kill ended is `killed`.
async fn supervise(shared: &Shared, lease: &Lease, mut running: child::Running) -> Finished {
    let mut killed = false;
    let mut kill = shared.kill.subscribe();
    // On a task of its own, as the Tracker's: a heartbeat the store does not answer must not keep
    // the command's exit or the kill from being seen. Stopped when this ends, however it ends.
    let _heartbeat = AbortOnDrop(
        tokio::spawn(keep_alive(
            shared.store.clone(),
            shared.clock.clone(),
            shared.out.clone(),
            lease.clone(),
            shared.lease_for,
        ))
        .abort_handle(),
    );
    let status = loop {
        tokio::select! {
            biased;
            status = running.child.wait() => break status,
            () = until_set(&mut kill), if !killed => {
                killed = true;
                if let Err(e) = running.kill() {
                    shared.out.warn(format!(
                        "{}: could not kill the command's process group (its own children may outlive it): {e}",
                        lease.key
                    ));
                }
            }
        }
    };
    let killed = killed && !status.as_ref().is_ok_and(std::process::ExitStatus::success);
    let (stdout, stderr) = running.outputs().await;
    Finished::Ran {
        status,
        killed,
        stdout,
        stderr,
    }
}

/// [`recovery::keep_alive`], saying on stderr what went wrong (a lost lease once: its result
/// will be rejected).
async fn keep_alive(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    out: Output,
    lease: Lease,
    lease_for: Duration,
) {
    let trouble = |e: &Error| match e {
        Error::StaleLease { .. } => out.warn(format!(
            "{}: lease lost while the command runs; its result will be rejected ({e})",
            lease.key
        )),
        _ => out.warn(format!("{}: heartbeat failed, will retry: {e}", lease.key)),
    };
    recovery::keep_alive(store.as_ref(), clock.as_ref(), &lease, lease_for, trouble).await;
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes how the attempt ended: released if we killed the command, succeeded on exit 0
/// (handing off to the next task if `hand_off` is given), failed otherwise — and exhausted at
/// once when the command could not be started for this task (it would fail the same way every
/// time), unless only its data file could not be written. Returns what the hand-off claimed.
async fn record(
    shared: &Shared,
    lease: &Lease,
    finished: &Finished,
    hand_off: Option<&ClaimNext>,
    now: Timestamp,
) -> Result<(Ended, Vec<Claimed>)> {
    let (status, killed, stdout, stderr) = match finished {
        Finished::NotStarted { failure, retryable } => {
            let ended = fail(shared, lease, failure.clone(), *retryable).await?;
            return Ok((ended, Vec::new()));
        }
        Finished::Ran {
            status,
            killed,
            stdout,
            stderr,
        } => (status, *killed, stdout, stderr),
    };
    let ended = match status {
        _ if killed => shared
            .store
            .release(lease, now)
            .await
            .map(|_| Ended::Released),
        Ok(s) if s.success() => {
            return succeed(shared, lease, stdout.output(), hand_off, now).await;
        }
        Ok(s) => {
            fail(
                shared,
                lease,
                Failure::new("exit", describe_exit(s)).with_detail(stderr.tail()),
                true,
            )
            .await
        }
        Err(e) => {
            fail(
                shared,
                lease,
                Failure::new("exit", format!("could not wait for the command: {e}")),
                true,
            )
            .await
        }
    };
    Ok((ended?, Vec::new()))
}

/// Records a success. With `hand_off`, while the run goes on and `--limit` allows another
/// claim, the next task is claimed in the same call.
async fn succeed(
    shared: &Shared,
    lease: &Lease,
    output: serde_json::Value,
    hand_off: Option<&ClaimNext>,
    now: Timestamp,
) -> Result<(Ended, Vec<Claimed>)> {
    let hand_off = match hand_off {
        Some(req) if !shared.stopping() && shared.reserve() => Some(req),
        _ => None,
    };
    let (task, next) = match hand_off {
        Some(req) => match shared
            .store
            .succeed_and_claim_next(lease, output, req, now)
            .await
        {
            Ok(got) => {
                if got.next.is_empty() {
                    shared.unreserve();
                }
                (got.done, got.next)
            }
            Err(e) => {
                shared.unreserve();
                return Err(e);
            }
        },
        None => (shared.store.succeed(lease, output, now).await?, Vec::new()),
    };
    Ok((ended_as(Outcome::Succeeded, task.status), next))
}

/// Records a failure; `retryable: false` exhausts the task at once.
async fn fail(shared: &Shared, lease: &Lease, error: Failure, retryable: bool) -> Result<Ended> {
    let req = Fail {
        error,
        retryable,
        backoff: shared.backoff,
    };
    let task = shared.store.fail(lease, &req, shared.clock.now()).await?;
    Ok(ended_as(Outcome::Failed, task.status))
}

/// Resolves once the flag is set (or its sender is gone).
async fn until_set(rx: &mut watch::Receiver<bool>) {
    // Map the guard away at once: it must not be held across an await.
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::super::tests::shared_with;
    use super::*;
    use tasktrack::{CreateMode, DEFAULT_LEASE, MemoryStore, NewTask};

    #[test]
    fn a_retry_is_waited_for_at_most_a_poll_and_at_least_10ms_or_the_poll() {
        let ms = Duration::from_millis;
        assert_eq!(until_due(ms(200), ms(1_000)), ms(200));
        assert_eq!(until_due(ms(1), ms(1_000)), ms(10), "no busy loop");
        assert_eq!(until_due(ms(5_000), ms(1_000)), ms(1_000));
        // --poll 5ms is allowed: it is the floor then (a clamp to 10ms..5ms panicked).
        assert_eq!(until_due(ms(1), ms(5)), ms(5));
        assert_eq!(until_due(ms(200), ms(5)), ms(5));
    }

    /// A task of job `j` claimed from `store`.
    async fn claimed(store: &Arc<dyn Store>) -> Claimed {
        let (job, now) = (JobName::new("j").unwrap(), tasktrack::SystemClock.now());
        let task = NewTask::new(TaskId::new("a").unwrap());
        store
            .create(&job, &[task], CreateMode::SkipExisting, now)
            .await
            .unwrap();
        let req = ClaimNext {
            owner: "w".to_string(),
            lease_for: DEFAULT_LEASE,
            limit: 1,
            stage: None,
        };
        store.claim_next(&job, &req, now).await.unwrap().remove(0)
    }

    /// A program word empty as given is no task's fault (every task would fail the same way:
    /// the run's error); one its placeholders made empty for this task is that task's.
    #[tokio::test]
    async fn only_a_program_word_a_task_made_empty_is_that_tasks_fault() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory());
        let Claimed { task, lease } = claimed(&store).await;
        let start = |word: &str| {
            let data = child::DataEnv::Inline(String::new());
            child::spawn(&[word.to_string()], &task, &lease, data).map(|_| ())
        };
        let given = start("").expect_err("an empty program started");
        assert!(!child::is_task_fault(&given), "{given}");
        let made = start("{data}").expect_err("an empty program started");
        assert!(child::is_task_fault(&made), "{made}");
    }

    /// A program that cannot be started stops the run, named as it was tried (placeholders
    /// replaced). A missing one is bad input (exit 2), with a hint when the file is there but
    /// its #! interpreter is not (the system says "No such file or directory" for both); a
    /// limit of the machine (too many open files) is tasktrack's own trouble (exit 1), not a
    /// typo to look for in the command (it was "invalid input", exit 2).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_program_that_cannot_be_started_is_named_as_tried_and_classified() {
        use crate::exit;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory());
        let Claimed { task, lease } = claimed(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("a.sh");
        // Written by another process: a write handle of ours could be inherited by a fork in
        // progress and make the exec fail with "Text file busy" instead.
        let made = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf '#!/nonexistent/interpreter\\n' > \"$1\" && chmod +x \"$1\"")
            .arg("sh")
            .arg(&script)
            .status()
            .unwrap();
        assert!(made.success());
        let word = format!("{}/{{id}}.sh", dir.path().display());
        let command = vec![word.clone()];
        let data = child::DataEnv::Inline(String::new());
        let Err(e) = child::spawn(&command, &task, &lease, data) else {
            panic!("a script with a missing interpreter started");
        };
        assert!(!child::is_task_fault(&e), "{e}");
        let error = child::cannot_start(&command, &task, &lease, &e);
        assert_eq!(exit::code(&error), exit::USAGE, "{error}");
        let message = error.to_string();
        let tried = format!(
            "cannot start {:?} (from {word:?})",
            script.display().to_string()
        );
        assert!(message.contains(&tried), "{message}");
        assert!(
            message.contains("the file exists: what it needs to start is missing"),
            "{message}"
        );
        let emfile = std::io::Error::from_raw_os_error(24);
        let limit = child::cannot_start(&command, &task, &lease, &emfile);
        assert_eq!(exit::code(&limit), exit::FAILURE, "{limit}");
        assert!(limit.to_string().contains("lower --workers"), "{limit}");
    }

    /// The kill at the end of the grace period may come in the very instant the command exits
    /// 0 on its own: then it succeeded, and is recorded so, not given back as killed.
    #[tokio::test]
    async fn a_command_that_exited_0_as_the_kill_came_succeeded() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory());
        let quiet = Output::new(
            false,
            true,
            0,
            Box::new(std::io::sink()),
            Box::new(std::io::sink()),
        );
        let shared = shared_with(store.clone(), quiet);
        let Claimed { task, lease } = claimed(&store).await;
        shared.kill.send_replace(true);
        // `supervise` polls the exit before the kill (`biased;`), so one try would show it;
        // more guard against that order ever being left to chance (then it would be random).
        for _ in 0..16 {
            let data = child::DataEnv::Inline(String::new());
            let mut running = child::spawn(&["true".to_string()], &task, &lease, data).unwrap();
            // Exited before `supervise` looks: its exit and the kill are both ready.
            while running.child.try_wait().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let finished = supervise(&shared, &lease, running).await;
            assert!(finished.succeeded(), "recorded as killed");
        }
    }
}
