//! Group commit of counted task writes: the transactions of one process's concurrent writers
//! go out together, as one `TransactWriteItems`.
//!
//! A change that moves a task between `(stage, status)` cells (succeed, fail, ignore, ...) must
//! move its counter in the same transaction as the task, so that counts never drift. Sent one
//! by one, that is one transaction per finished task. Here a writer instead queues its task write
//! and its counter deltas, then waits for its turn to send: whoever sends takes everything queued
//! by then (within AWS's limits), adds up the deltas of each job into one counter update, and
//! sends a single transaction. With one writer nothing changes (a task write and a counter
//! update, one request); with eight workers finishing tasks at once, their eight transactions
//! become one or two. `succeed_many` relies on it: its completions are queued together.
//!
//! Why it matters: on AWS a transaction costs a round trip and twice the write units of its
//! items, whatever their number, so fewer round trips is all it saves. On moto every
//! `TransactWriteItems` deep-copies each table it touches (to roll back), so each transaction
//! costs time proportional to the task table; batching divides that cost by the batch size.
//!
//! A transaction is all or nothing, so one stale write (a condition that fails) would cancel
//! the others. AWS names the failed items (`CancellationReasons`): those writers are told
//! `false` (their compare-and-swap loop re-reads, as for a lone write) and the rest are sent
//! again. Likewise a write that AWS refuses for a reason about the item itself
//! (`ValidationError`, ...) fails alone, with AWS's message, and the rest are sent again; a
//! transaction refused as a whole for what one of its items carries (moto's answer to an item
//! over its own size limit, `Outcome::Invalid`) is sent again one write at a time, so that the
//! write at fault fails alone ([`tasktrack_core::Error::InvalidInput`] naming its task). A task
//! too large for a DynamoDB item never gets this far: its writer is answered
//! [`tasktrack_core::Error::InvalidInput`] before queueing (`crate::fit`). Two
//! writes of one task never share a transaction (AWS refuses that): the second waits for the
//! next one.

use crate::error::refused_write;
use crate::txn::{self, MAX_TRANSACT_BYTES, MAX_TRANSACT_ITEMS, Outcome, Reason, Transact};
use aws_sdk_dynamodb::types::TransactWriteItem;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use tasktrack_core::{Error, JobName, Result, TaskKey};
use tokio::sync::oneshot;

/// How many times a batch cancelled by a conflict is sent again before its writers are told
/// `Contention`.
const MAX_CONFLICT_RETRIES: u32 = 16;

/// One conditional task write (put or delete) and the counter cells it moves.
#[derive(Debug, Clone)]
pub(crate) struct CountedWrite {
    /// The task's key: two writes of one task never go in one transaction.
    pub key: TaskKey,
    /// The conditional put or delete of the task.
    pub write: TransactWriteItem,
    /// Counter attribute -> delta, for the task's job.
    pub deltas: BTreeMap<String, i64>,
}

/// A queued write and where its outcome goes (`true`: written, `false`: condition failed).
#[derive(Debug)]
struct Queued {
    write: CountedWrite,
    done: oneshot::Sender<Result<bool>>,
}

/// The queue of counted writes waiting for a transaction, and the turn to send one.
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Queued>>,
    /// Held by the writer sending a transaction; the others queue meanwhile.
    sending: tokio::sync::Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue holds no invariant a panicking holder could break halfway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a transaction's items go: the task table's writes and the counter table's updates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters<'a> {
    /// The counter table.
    pub table: &'a str,
    /// Counter shards per job (each transaction updates one, at random).
    pub shards: u32,
}

impl GroupCommit {
    /// Writes `write` and its counter deltas atomically, in a transaction shared with whatever
    /// other writers of this process queued meanwhile. `Ok(false)`: the task's condition failed.
    pub(crate) async fn write(
        &self,
        tx: &dyn Transact,
        counters: Counters<'_>,
        write: CountedWrite,
    ) -> Result<bool> {
        let outcome = self.enqueue(write);
        self.wait(tx, counters, outcome).await
    }

    /// Writes all of `writes`, queued together so that they share a transaction (a batch of
    /// claims, `succeed_many`): one outcome per write, in order. Each write is conditional on
    /// its own; one whose condition fails does not stop the others.
    pub(crate) async fn write_all(
        &self,
        tx: &dyn Transact,
        counters: Counters<'_>,
        writes: Vec<CountedWrite>,
    ) -> Vec<Result<bool>> {
        let outcomes: Vec<_> = writes.into_iter().map(|w| self.enqueue(w)).collect();
        let mut results = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            results.push(self.wait(tx, counters, outcome).await);
        }
        results
    }

    fn enqueue(&self, write: CountedWrite) -> oneshot::Receiver<Result<bool>> {
        let (done, outcome) = oneshot::channel();
        lock(&self.queue).push(Queued { write, done });
        outcome
    }

    /// Waits for the turn to send; sends what is queued unless another writer already sent
    /// ours.
    async fn wait(
        &self,
        tx: &dyn Transact,
        counters: Counters<'_>,
        mut outcome: oneshot::Receiver<Result<bool>>,
    ) -> Result<bool> {
        loop {
            let _turn = self.sending.lock().await;
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => {
                    // The writer that took ours was cancelled while sending it.
                    return Err(Error::Unavailable(
                        "DynamoDB task write: the transaction carrying it was interrupted; \
                         it may or may not have been written"
                            .into(),
                    ));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.take_batch();
            commit(tx, counters, batch).await;
        }
    }

    /// Takes the queued writes that fit in one transaction: distinct tasks, at most
    /// `MAX_TRANSACT_ITEMS` items counting one counter update per job, at most
    /// `MAX_TRANSACT_BYTES`. The rest stays queued, in order.
    fn take_batch(&self) -> Vec<Queued> {
        let mut queue = lock(&self.queue);
        let (mut keys, mut jobs) = (HashSet::new(), HashSet::new());
        let (mut bytes, mut batch, mut rest) = (0, Vec::new(), Vec::new());
        for queued in queue.drain(..) {
            let new_job = !jobs.contains(&queued.write.key.job);
            let items = batch.len() + 1 + jobs.len() + usize::from(new_job);
            let size = write_size(&queued.write.write);
            let fits = items <= MAX_TRANSACT_ITEMS && bytes + size <= MAX_TRANSACT_BYTES;
            if !keys.contains(&queued.write.key) && (fits || batch.is_empty()) {
                keys.insert(queued.write.key.clone());
                jobs.insert(queued.write.key.job.clone());
                bytes += size;
                batch.push(queued);
            } else {
                rest.push(queued);
            }
        }
        *queue = rest;
        batch
    }
}

/// Sends `batch` as one transaction, again without the writes AWS named (a failed condition,
/// or a reason about the item itself), until it commits; answers every writer.
async fn commit(tx: &dyn Transact, counters: Counters<'_>, mut batch: Vec<Queued>) {
    let mut conflicts = 0;
    while !batch.is_empty() {
        let items = match transaction(counters, &batch) {
            Ok(items) => items,
            Err(e) => return answer_all(batch, Err(e)),
        };
        let reasons = match tx.transact(items).await {
            Ok(Outcome::Committed) => return answer_all(batch, Ok(true)),
            Ok(Outcome::Cancelled(reasons)) => reasons,
            Ok(Outcome::Invalid(message)) => return refused(tx, counters, batch, &message).await,
            Err(e) => return answer_all(batch, Err(e)),
        };
        let before = batch.len();
        batch = settle(batch, &reasons);
        if batch.is_empty() {
            return;
        }
        if reasons.iter().any(Reason::is_conflict) {
            conflicts += 1;
            if conflicts > MAX_CONFLICT_RETRIES {
                return answer_all(batch, Err(txn::cancelled("task write", &reasons)));
            }
            txn::pause(conflicts.min(7)).await;
        } else if batch.len() == before {
            // Nothing to drop, so sending the same transaction again would loop.
            return answer_all(batch, Err(txn::cancelled("task write", &reasons)));
        }
    }
}

/// Answers the writers of `batch`, a transaction AWS refused as a whole for what one of its
/// items carries (`Outcome::Invalid`, with AWS's `message`): a lone writer is told
/// `InvalidInput` naming its task; several are sent again one by one, to find which.
async fn refused(tx: &dyn Transact, counters: Counters<'_>, mut batch: Vec<Queued>, message: &str) {
    if batch.len() == 1
        && let Some(queued) = batch.pop()
    {
        let subject = format!("task {}", queued.write.key);
        let _ = queued
            .done
            .send(Err(refused_write("write", &subject, message)));
        return;
    }
    for queued in batch {
        Box::pin(commit(tx, counters, vec![queued])).await;
    }
}

/// Answers the writers AWS named — `false` to those whose condition failed, an error with AWS's
/// message to those refused for a reason about their item — and returns the others (to be sent
/// again). A counter update refused for itself fails every writer (it carries all their counts).
fn settle(batch: Vec<Queued>, reasons: &[Reason]) -> Vec<Queued> {
    if let Some(r) = reasons.iter().skip(batch.len()).find(|r| r.is_item_error()) {
        answer_all(
            batch,
            Err(txn::cancelled("counter update", std::slice::from_ref(r))),
        );
        return Vec::new();
    }
    let mut rest = Vec::new();
    for (i, queued) in batch.into_iter().enumerate() {
        // The receiver may have gone (its caller was cancelled): nothing to tell then.
        match reasons.get(i) {
            Some(r) if r.is_refused() => {
                let _ = queued.done.send(Ok(false));
            }
            Some(r) if r.is_item_error() => {
                let error = r.item_error("write", &queued.write.key);
                let _ = queued.done.send(Err(error));
            }
            _ => rest.push(queued),
        }
    }
    rest
}

/// The batch's task writes, then one counter update per job carrying the sum of its deltas.
fn transaction(counters: Counters<'_>, batch: &[Queued]) -> Result<Vec<TransactWriteItem>> {
    let mut per_job: BTreeMap<&JobName, BTreeMap<String, i64>> = BTreeMap::new();
    for queued in batch {
        let cells = per_job.entry(&queued.write.key.job).or_default();
        for (attr, delta) in &queued.write.deltas {
            *cells.entry(attr.clone()).or_default() += delta;
        }
    }
    let mut items: Vec<TransactWriteItem> = batch.iter().map(|q| q.write.write.clone()).collect();
    for (job, mut cells) in per_job {
        cells.retain(|_, delta| *delta != 0);
        if cells.is_empty() {
            continue; // the batch's moves cancel out for this job
        }
        let shard = crate::jitter_u32() % counters.shards.max(1);
        let update = txn::counter_update(counters.table, job, shard, &cells)?;
        items.push(TransactWriteItem::builder().update(update).build());
    }
    Ok(items)
}

fn answer_all(batch: Vec<Queued>, result: Result<bool>) {
    for queued in batch {
        let _ = queued.done.send(result.clone());
    }
}

/// A task write's size as counted against `MAX_TRANSACT_BYTES` (a delete's key is small).
fn write_size(write: &TransactWriteItem) -> usize {
    write
        .put()
        .map_or(256, |p| crate::item::item_size(p.item()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item;
    use async_trait::async_trait;
    use aws_sdk_dynamodb::types::{AttributeValue, Put};
    use std::sync::Arc;
    use tasktrack_core::TaskId;

    /// A fake that records each transaction's task ids, refuses the writes of `stale` ids and
    /// cancels those of `invalid` ids with a `ValidationError`, as AWS does for an item over
    /// its size limit.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        stale: Vec<String>,
        invalid: Vec<String>,
        /// Ids whose item the server refuses with a `ValidationException` for the whole
        /// transaction, as moto does for an item over its size limit.
        too_large: Vec<String>,
        /// Counter updates seen, as their ADD expressions.
        counters: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Transact for Fake {
        async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome> {
            // Let the other writers queue behind this one, as a slow server would.
            tokio::task::yield_now().await;
            let ids: Vec<Option<String>> = items
                .iter()
                .map(|w| {
                    w.put()
                        .and_then(|p| p.item().get(item::SK))
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                })
                .collect();
            self.calls
                .lock()
                .unwrap()
                .push(ids.iter().flatten().cloned().collect());
            for w in &items {
                if let Some(u) = w.update() {
                    self.counters
                        .lock()
                        .unwrap()
                        .push(u.update_expression().to_owned());
                }
            }
            if ids.iter().flatten().any(|id| self.too_large.contains(id)) {
                return Ok(Outcome::Invalid(
                    "Item size has exceeded the maximum allowed size".into(),
                ));
            }
            let reasons: Vec<Reason> = ids
                .iter()
                .map(|id| match id {
                    Some(id) if self.stale.contains(id) => Reason::new(
                        "ConditionalCheckFailed",
                        Some("The conditional request failed".into()),
                    ),
                    Some(id) if self.invalid.contains(id) => Reason::new(
                        "ValidationError",
                        Some("Item size has exceeded the maximum allowed size".into()),
                    ),
                    _ => Reason::new("None", None),
                })
                .collect();
            if reasons.iter().all(|r| r.code == "None") {
                Ok(Outcome::Committed)
            } else {
                Ok(Outcome::Cancelled(reasons))
            }
        }
    }

    fn write(id: &str) -> CountedWrite {
        let put = Put::builder()
            .table_name("t")
            .item(item::PK, AttributeValue::S("t:j".into()))
            .item(item::SK, AttributeValue::S(id.into()))
            .build()
            .unwrap();
        CountedWrite {
            key: TaskKey::new(JobName::new("j").unwrap(), TaskId::new(id).unwrap()),
            write: TransactWriteItem::builder().put(put).build(),
            deltas: BTreeMap::from([("n:pending".to_owned(), -1), ("n:succeeded".to_owned(), 1)]),
        }
    }

    const COUNTERS: Counters<'static> = Counters {
        table: "t.counters",
        shards: 1,
    };

    async fn write_all(fake: Arc<Fake>, ids: &[&str]) -> Vec<bool> {
        let commit = Arc::new(GroupCommit::default());
        let writers = ids.iter().map(|id| {
            let (commit, fake, w) = (commit.clone(), fake.clone(), write(id));
            tokio::spawn(async move { commit.write(&*fake, COUNTERS, w).await })
        });
        let mut results = Vec::new();
        for w in writers.collect::<Vec<_>>() {
            results.push(w.await.unwrap().unwrap());
        }
        results
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_writers_share_one_transaction_with_one_counter_update() {
        let fake = Arc::new(Fake::default());
        let results = write_all(fake.clone(), &["a", "b", "c", "d"]).await;
        assert_eq!(results, vec![true; 4]);
        let calls = fake.calls.lock().unwrap().clone();
        // The first writer sends alone (nobody queued yet); the other three go together.
        assert_eq!(calls, vec![vec!["a"], vec!["b", "c", "d"]]);
        let counters = fake.counters.lock().unwrap().clone();
        assert_eq!(counters.len(), 2, "one counter update per transaction");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stale_write_is_refused_alone_and_the_others_are_sent_again() {
        let fake = Arc::new(Fake {
            stale: vec!["c".to_owned()],
            ..Fake::default()
        });
        let results = write_all(fake.clone(), &["a", "b", "c", "d"]).await;
        assert_eq!(results, vec![true, true, false, true]);
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls, vec![vec!["a"], vec!["b", "c", "d"], vec!["b", "d"]]);
    }

    /// Writes a, b, c and d in one call to `fake`, which refuses b for what it carries and
    /// fails c's condition: a and d are written, c answers `false`, and b alone fails with an
    /// `InvalidInput` naming it (`names`) and carrying AWS's reason (`reason`).
    async fn b_refused_c_stale(fake: &Fake, names: &str, reason: &str) {
        let writes = vec![write("a"), write("b"), write("c"), write("d")];
        let results = GroupCommit::default()
            .write_all(fake, COUNTERS, writes)
            .await;
        let mut results = results.into_iter();
        assert_eq!(results.next(), Some(Ok(true)));
        match results.next() {
            Some(Err(Error::InvalidInput(m))) => {
                assert!(m.contains(names), "names the task: {m}");
                assert!(m.contains(reason), "carries AWS's reason: {m}");
            }
            other => panic!("expected InvalidInput for b, got {other:?}"),
        }
        assert_eq!(results.next(), Some(Ok(false)), "c's condition failed");
        assert_eq!(results.next(), Some(Ok(true)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_write_aws_refuses_fails_alone_with_aws_message_and_the_others_are_sent_again() {
        let fake = Fake {
            invalid: vec!["b".to_owned()],
            stale: vec!["c".to_owned()],
            ..Fake::default()
        };
        let reason = "ValidationError: Item size has exceeded the maximum allowed size";
        b_refused_c_stale(&fake, "j/b", reason).await;
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls, vec![vec!["a", "b", "c", "d"], vec!["a", "d"]]);
        let counters = fake.counters.lock().unwrap().clone();
        assert_eq!(counters.len(), 2, "each send carries one counter update");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_transaction_refused_as_a_whole_is_sent_again_write_by_write() {
        let fake = Fake {
            too_large: vec!["b".to_owned()],
            stale: vec!["c".to_owned()],
            ..Fake::default()
        };
        let reason = "ValidationException: Item size has exceeded the maximum allowed size";
        b_refused_c_stale(&fake, "write of task j/b", reason).await;
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                vec!["a", "b", "c", "d"],
                vec!["a"],
                vec!["b"],
                vec!["c"],
                vec!["d"]
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn two_writes_of_one_task_never_share_a_transaction() {
        let fake = Arc::new(Fake::default());
        let results = write_all(fake.clone(), &["a", "b", "b", "c"]).await;
        assert_eq!(results, vec![true; 4]);
        for call in fake.calls.lock().unwrap().iter() {
            let distinct: HashSet<&String> = call.iter().collect();
            assert_eq!(distinct.len(), call.len(), "{call:?}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_queued_together_go_in_one_transaction() {
        let fake = Fake {
            stale: vec!["b".to_owned()],
            ..Fake::default()
        };
        let commit = GroupCommit::default();
        let writes = vec![write("a"), write("b"), write("c")];
        let results = commit.write_all(&fake, COUNTERS, writes).await;
        let results: Vec<bool> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, vec![true, false, true]);
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls, vec![vec!["a", "b", "c"], vec!["a", "c"]]);
    }

    #[test]
    fn counter_deltas_of_a_batch_are_summed_and_zero_sums_dropped() {
        let (a, b) = (oneshot::channel().0, oneshot::channel().0);
        let mut back = write("b");
        back.deltas = BTreeMap::from([("n:pending".to_owned(), 1), ("n:succeeded".to_owned(), -1)]);
        let batch = vec![
            Queued {
                write: write("a"),
                done: a,
            },
            Queued {
                write: back,
                done: b,
            },
        ];
        let items = transaction(COUNTERS, &batch).unwrap();
        assert_eq!(items.len(), 2, "the moves cancel out: no counter update");
    }

    #[test]
    fn a_batch_stays_within_the_aws_item_limit() {
        let commit = GroupCommit::default();
        for i in 0..150 {
            let done = oneshot::channel().0;
            lock(&commit.queue).push(Queued {
                write: write(&format!("t{i}")),
                done,
            });
        }
        let first = commit.take_batch();
        assert_eq!(
            first.len(),
            MAX_TRANSACT_ITEMS - 1,
            "one slot for the counter"
        );
        assert_eq!(commit.take_batch().len(), 150 - (MAX_TRANSACT_ITEMS - 1));
    }
}
