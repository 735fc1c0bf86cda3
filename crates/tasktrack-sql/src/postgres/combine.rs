//! Hand-offs of concurrent workers, combined into one statement.
//!
//! A hand-off (`succeed_and_claim_next`) is one statement and one commit per task
//! (`handoff.sql`). With several workers on one store, the hand-offs that queue up while another
//! is being written are sent together as one `handoff_many.sql`: each worker's task completed,
//! and one claimed task granted to each of them, with its own lease. This is group commit done by
//! the client: one commit and one round trip for the batch instead of one each, and every row
//! goes through the same rules as in the single statement.
//!
//! Nothing waits to form a batch. A hand-off that finds the slot free ([`IN_FLIGHT`]) is sent at
//! once, alone, by its caller (one worker never goes through the queue). Otherwise it is queued;
//! a background task takes the first queued hand-off, waits for the slot, and sends it with
//! everything queued behind it meanwhile (up to [`MAX_COMBINED`]).
//!
//! Only the common hand-off is combined: one task to claim, no pipeline stage, a token that fits
//! a `bigint`. A hand-off the statement does not complete (a stale lease, a pipeline task) is
//! answered with its output back and its caller takes the general path, as after `handoff.sql`;
//! one completed but left without a grant (the queue ran short, or held expired leases) claims
//! on its own (`claim_next`, which expires what needs expiring).
//!
//! The claim compares `claim_at` with the earliest `now` of the batch, so no caller is granted a
//! task before its own clock says it is due. A caller cancelled while its hand-off is queued or
//! in flight may still have it written: its task is completed and the next lease expires unused,
//! as when a single statement is cancelled after it was sent.
//!
//! The task ends when every clone of the store that could queue to it has been dropped.

use super::{BACKEND, PgStore, SucceedColumns};
use crate::common::{Dialect, after_commit, claimed};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Error as SqlError};
use std::collections::HashMap;
use std::sync::Arc;
use tasktrack_core::model::HISTORY_LIMIT;
use tasktrack_core::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Most hand-offs one statement carries.
const MAX_COMBINED: usize = 64;

/// Hand-off statements in flight at once, direct or combined: one being written while the next
/// batch forms. Measured with 16 workers: 1 drained 7,145–7,969 tasks/s, 2 7,079–7,710, 3
/// 5,891 (more slots split the same callers into smaller batches); with 1 worker the direct path
/// is taken either way.
const IN_FLIGHT: usize = 1;

/// What the combining task answers a hand-off: done, or (its success did not apply: stale
/// lease, pipeline stage) its output back for the general path.
type Answer = Result<std::result::Result<Handoff, Value>>;

/// How a hand-off went, for `succeed_and_claim_next`.
pub(super) enum ViaCombiner {
    /// Completed, and the next task claimed if there was one.
    Done(Box<Handoff>),
    /// Nothing written: the general path decides (stale lease, pipeline stage).
    NotCompleted(Value),
    /// Not combined (combining off, a hand-off it does not take, a slot free): the usual
    /// single-statement path, holding the slot (if any) while it runs.
    NotSent(Value, Option<OwnedSemaphorePermit>),
}

/// One queued hand-off.
pub(super) struct Request {
    lease: Lease,
    output: Value,
    next: ClaimNext,
    now: Timestamp,
    answer: oneshot::Sender<Answer>,
}

/// Whether `handoff_many.sql` can answer this hand-off.
fn fits(lease: &Lease, next: &ClaimNext) -> bool {
    next.limit == 1 && next.stage.is_none() && i64::try_from(lease.token).is_ok()
}

/// The combining task's queue, and the slots for hand-off statements in flight that it shares
/// with callers running their own. The task ends when the last queue sender is dropped.
#[derive(Debug)]
pub(super) struct Combiner {
    queue: mpsc::UnboundedSender<Request>,
    slots: Arc<Semaphore>,
}

/// Starts the combining task for `store`.
fn start(store: PgStore) -> Combiner {
    let (queue, requests) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    tokio::spawn(serve(store, requests, slots.clone()));
    Combiner { queue, slots }
}

/// Takes batches off the queue and runs them, each holding one of the `slots`.
async fn serve(
    store: PgStore,
    mut requests: mpsc::UnboundedReceiver<Request>,
    slots: Arc<Semaphore>,
) {
    loop {
        // A request first, then a slot: while every slot is busy, hand-offs pile up behind it
        // and go out together. (Holding a slot while idle would keep callers from the direct
        // path, and a batch would start at the first arrival.)
        let Some(first) = requests.recv().await else {
            return;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // The callers the last batch answered are resubmitting; let them queue first.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while batch.len() < MAX_COMBINED {
            match requests.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            store.run_combined(batch).await;
            drop(slot);
        });
    }
}

impl PgStore {
    /// Sends a hand-off to the combining task (starting it at the first one) and waits for its
    /// answer. An answer lost on the way (the task stopped mid-batch, e.g. its runtime shut
    /// down) is an error: the hand-off may have been written.
    pub(super) async fn handoff_combined(
        &self,
        lease: &Lease,
        output: Value,
        next: &ClaimNext,
        now: Timestamp,
    ) -> Result<ViaCombiner> {
        let Some(combiner) = self.combiner.as_ref().filter(|_| fits(lease, next)) else {
            return Ok(ViaCombiner::NotSent(output, None));
        };
        let combiner = combiner.get_or_init(|| {
            // The task's own clone has no combiner, so it does not keep itself alive.
            start(PgStore {
                combiner: None,
                ..self.clone()
            })
        });
        // A free slot (no batch waiting for one): send this hand-off alone, at once, without
        // the trip through the combining task.
        if let Ok(slot) = combiner.slots.clone().try_acquire_owned() {
            return Ok(ViaCombiner::NotSent(output, Some(slot)));
        }
        let (answer, answered) = oneshot::channel();
        let request = Request {
            lease: lease.clone(),
            output,
            next: next.clone(),
            now,
            answer,
        };
        if let Err(mpsc::error::SendError(request)) = combiner.queue.send(request) {
            return Ok(ViaCombiner::NotSent(request.output, None));
        }
        match answered.await {
            Ok(Ok(Ok(handoff))) => Ok(ViaCombiner::Done(Box::new(handoff))),
            Ok(Ok(Err(output))) => Ok(ViaCombiner::NotCompleted(output)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::backend(format!(
                "postgres at {}: a combined hand-off of {} stopped before it answered; it may have been written",
                self.endpoint, lease.key
            ))),
        }
    }

    /// Runs one batch, one statement per job it holds, and answers every request.
    async fn run_combined(&self, batch: Vec<Request>) {
        let mut by_job: HashMap<JobName, Vec<Request>> = HashMap::new();
        for r in batch {
            by_job.entry(r.lease.key.job.clone()).or_default().push(r);
        }
        for (job, requests) in by_job {
            let answers = match self.handoff_many(&job, &requests).await {
                Ok(answers) => answers,
                Err(e) => vec![Err(e); requests.len()],
            };
            for (request, answer) in requests.into_iter().zip(answers) {
                let Request {
                    output, answer: to, ..
                } = request;
                // The caller may have gone (cancelled); its new lease then expires as any other.
                let _ = to.send(answer.map(|done| done.ok_or(output)));
            }
        }
    }

    /// `handoff_many.sql` for hand-offs on `job`; one answer per request, in order: `None` for
    /// one it did not complete.
    async fn handoff_many(
        &self,
        job: &JobName,
        requests: &[Request],
    ) -> Result<Vec<Result<Option<Handoff>>>> {
        let columns = Columns::of(requests)?;
        let earliest = requests
            .iter()
            .map(|r| r.now)
            .min()
            .unwrap_or(Timestamp::EPOCH);
        let rows = self
            .run(false, || {
                sqlx::query(AssertSqlSafe(self.native.handoff_many.clone()))
                    .bind(job.as_str())
                    .bind(&columns.done.id)
                    .bind(&columns.done.token)
                    .bind(&columns.done.owner)
                    .bind(&columns.done.attempt)
                    .bind(&columns.done.output)
                    .bind(&columns.done.record)
                    .bind(&columns.done.acquired_at)
                    .bind(&columns.now)
                    .bind(&columns.next_owner)
                    .bind(&columns.expires)
                    .bind(i32::try_from(HISTORY_LIMIT).unwrap_or(i32::MAX))
                    .bind(earliest.as_millis())
                    .fetch_all(&self.pool)
            })
            .await?;
        let (mut done, mut granted) = (HashMap::new(), HashMap::new());
        for row in rows {
            let (ord, role, task) = self.read_combined(&row)?;
            match (role, task) {
                (0, task) => drop(done.insert(ord, task)),
                (_, Ok(task)) => drop(granted.insert(ord, task)),
                // A granted row that does not decode: set aside, as a claim does; this
                // hand-off then claims on its own below. The statement has committed, so
                // nothing here may fail the other hand-offs: a set-aside that fails is logged
                // (the row stays granted, and comes back when that lease expires).
                (_, Err(e)) if e.kind() == ErrorKind::Corrupt => {
                    if let Err(failed) = self.set_aside(&row, &e).await {
                        after_commit(BACKEND, "set-aside of a damaged row", job, 0, &failed);
                    }
                }
                (_, Err(e)) => {
                    after_commit(BACKEND, "read of a granted row", job, 0, &e);
                }
            }
        }
        let mut answers = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            let ord = i64::try_from(i + 1).unwrap_or(i64::MAX);
            let done = match done.remove(&ord) {
                Some(Ok(done)) => done,
                // Its success was written but cannot be read back: this hand-off's error only.
                // Its worker never sees the lease granted with it, so that one is released.
                Some(Err(e)) => {
                    if let Some(Ok(c)) = granted.remove(&ord).map(claimed) {
                        self.release_unseen(&[c], r.now).await;
                    }
                    answers.push(Err(e));
                    continue;
                }
                None => {
                    answers.push(Ok(None));
                    continue;
                }
            };
            // Committed: the success stands, and so does the lease granted with it. Claiming
            // on its own (none was granted) is follow-up work whose error is not this hand-off's.
            let (next, error) = match granted.remove(&ord) {
                Some(task) => match claimed(task) {
                    Ok(c) => (vec![c], None),
                    Err(e) => (Vec::new(), Some(e)),
                },
                None => self.claim_rounds(job, &r.next, r.now, Vec::new()).await,
            };
            if let Some(e) = error {
                after_commit(BACKEND, "combined hand-off", job, next.len(), &e);
            }
            answers.push(Ok(Some(Handoff { done, next })));
        }
        Ok(answers)
    }

    /// A row of `handoff_many.sql`: which hand-off it answers, its role, and the task, or why
    /// it does not decode (`Corrupt` naming the row: a row edited by hand). An unreadable `ord`
    /// or `role` is the whole statement's error; a task that does not decode is its row's alone.
    fn read_combined(&self, row: &PgRow) -> Result<(i64, i32, Result<Task>)> {
        let read = || -> std::result::Result<_, SqlError> {
            Ok((row.try_get("ord")?, row.try_get("role")?))
        };
        let (ord, role) = read().map_err(|e| self.err(&e))?;
        Ok((ord, role, self.read_row(row)))
    }
}

/// The hand-offs of a batch as the column arrays `handoff_many.sql` unnests: the leases' as
/// for `succeed_many.sql`, then each hand-off's `now` and next lease.
struct Columns {
    done: SucceedColumns,
    now: Vec<i64>,
    next_owner: Vec<String>,
    expires: Vec<i64>,
}

impl Columns {
    fn of(requests: &[Request]) -> Result<Columns> {
        let n = requests.len();
        let mut c = Columns {
            done: SucceedColumns::with_capacity(n),
            now: Vec::with_capacity(n),
            next_owner: Vec::with_capacity(n),
            expires: Vec::with_capacity(n),
        };
        for r in requests {
            // `fits` checked the token, so no lease is left out and the arrays stay aligned.
            if !c.done.push(&r.lease, &r.output, r.now)? {
                return Err(Error::backend(
                    "combined hand-off with a token beyond bigint",
                ));
            }
            c.now.push(r.now.as_millis());
            c.next_owner.push(r.next.owner.clone());
            c.expires.push(r.now.plus(r.next.lease_for).as_millis());
        }
        Ok(c)
    }
}
