//! Transactions: the seam around `TransactWriteItems`, and bulk insert in AWS-sized batches.
//!
//! `BatchWriteItem` cannot carry conditions, so it could overwrite an existing task; bulk create
//! therefore uses `TransactWriteItems` (at most [`MAX_TRANSACT_ITEMS`] items and
//! [`MAX_TRANSACT_BYTES`] per call), each task put conditioned on `attribute_not_exists(pk)` and
//! the job's counter shard updated in the same transaction. When some tasks already exist, AWS
//! cancels the whole transaction and says which items failed (`CancellationReasons`): those are
//! reported as existing and the rest is sent again. A key is put once per call (AWS refuses a
//! transaction with two operations on one item): a later occurrence is reported as existing. A
//! task too large for a DynamoDB item is refused before anything is sent (AWS would cancel the
//! whole transaction for it), and a cancellation reason about one item itself
//! (`ValidationError`, ...) fails that task alone, with AWS's message; the others are sent
//! again. A transaction refused as a whole for what one of its items carries
//! ([`Outcome::Invalid`]: moto's answer to an item over its own size limit) is sent again one
//! task at a time, so that the task at fault fails alone ([`Error::InvalidInput`] naming it)
//! and the others are written. moto accepts oversized transactions, so the limits are enforced
//! here and pinned by a unit test with a fake [`Transact`].

use crate::error::refused_write;
use crate::item::{self, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tasktrack_core::{Error, JobName, Result, Task, TaskKey};

/// The most items AWS accepts in one `TransactWriteItems`.
pub(crate) const MAX_TRANSACT_ITEMS: usize = 100;
/// Our cap on one transaction's payload (AWS allows 4 MB; we leave room for keys and overhead).
pub(crate) const MAX_TRANSACT_BYTES: usize = 3 * 1024 * 1024;
/// How often a cancelled-by-conflict transaction is sent again before giving up.
const MAX_CONFLICT_RETRIES: u32 = 16;

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Every item was written.
    Committed,
    /// Nothing was written; one reason per item, as AWS reports them.
    Cancelled(Vec<Reason>),
    /// Nothing was written: AWS refused the whole request for what one of its items carries
    /// (a `ValidationException` such as "Item size has exceeded the maximum allowed size",
    /// [`crate::error::content_refusal`]), without saying which item: AWS's message. What moto
    /// answers for an item over its limit in a transaction (AWS names the item instead, with a
    /// `ValidationError` reason).
    Invalid(String),
}

/// Why AWS cancelled a transaction, for one of its items: the `CancellationReason`'s code
/// (`None`, `ConditionalCheckFailed`, `TransactionConflict`, `ValidationError`, ...) and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reason {
    /// AWS's code; `None` when this item was fine.
    pub code: String,
    /// AWS's message, when it gave one.
    pub message: Option<String>,
}

impl Reason {
    /// A reason with AWS's `code` and `message`.
    pub(crate) fn new(code: impl Into<String>, message: Option<String>) -> Self {
        Reason {
            code: code.into(),
            message,
        }
    }

    /// The item's condition failed (it changed, or already exists).
    pub(crate) fn is_refused(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }

    /// Nothing wrong with the item: the same transaction may succeed if sent again.
    pub(crate) fn is_conflict(&self) -> bool {
        is_conflict(&self.code)
    }

    /// Something wrong with the item itself (`ValidationError`: too large, ...): sending it
    /// again would fail again.
    pub(crate) fn is_item_error(&self) -> bool {
        self.code != "None" && !self.is_refused() && !self.is_conflict()
    }

    /// The error for the writer of the task at `key`: `InvalidInput` for a `ValidationError`
    /// (what was written is what AWS refuses), `Backend` otherwise; with AWS's message.
    pub(crate) fn item_error(&self, op: &str, key: &TaskKey) -> Error {
        let message = format!(
            "DynamoDB refused the {op} of task {key} ({}: {})",
            self.code,
            self.message.as_deref().unwrap_or("no message")
        );
        if self.code == "ValidationError" {
            Error::InvalidInput(message)
        } else {
            Error::Backend(message)
        }
    }
}

/// The one call the write paths need; the real one is the SDK, tests use a fake.
#[async_trait]
pub(crate) trait Transact: Send + Sync {
    /// Sends one `TransactWriteItems`.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome>;
}

/// Whether a cancellation reason means "retry the same transaction" (nothing was wrong with it).
pub(crate) fn is_conflict(code: &str) -> bool {
    matches!(
        code,
        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
    )
}

/// A short jittered pause that grows with `attempt`.
pub(crate) async fn pause(attempt: u32) {
    let cap_us = 200u64 << attempt.min(7);
    tokio::time::sleep(Duration::from_micros(crate::jitter() % cap_us)).await;
}

/// The counter update of one job's shard: `ADD` each `(attribute, delta)`.
pub(crate) fn counter_update(
    table: &str,
    job: &JobName,
    shard: u32,
    deltas: &BTreeMap<String, i64>,
) -> Result<Update> {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut adds = Vec::new();
    for (i, (attr, delta)) in deltas.iter().enumerate() {
        names.insert(format!("#c{i}"), attr.clone());
        values.insert(format!(":c{i}"), AttributeValue::N(delta.to_string()));
        adds.push(format!("#c{i} :c{i}"));
    }
    Update::builder()
        .table_name(table)
        .key(item::PK, AttributeValue::S(item::counter_pk(job)))
        .key(item::SK, AttributeValue::S(shard.to_string()))
        .update_expression(format!("ADD {}", adds.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| crate::error::build_error("counter update", e))
}

/// A put of a new task, refused if the key exists.
fn insert_put(table: &str, item: Item) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| crate::error::build_error("insert", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Inserts `tasks` that do not exist yet, `items[i]` being the item of `tasks[i]` (built once,
/// by the caller) or why it cannot be written; one outcome per task: `Ok(true)` inserted,
/// `Ok(false)` it existed (or an earlier task of `tasks` has its key: the first occurrence
/// wins), `Err` that task alone could not be written (its item was an
/// [`Error::InvalidInput`], e.g. too large; or refused by AWS for a reason about it, with
/// AWS's message). The other tasks are written whatever becomes of one. `Err` for the whole
/// call: the store failed (or an item could not be built for another reason).
pub(crate) async fn insert_tasks(
    tx: &dyn Transact,
    table: &str,
    counter_table: &str,
    shards: u32,
    tasks: &[Task],
    items: Vec<Result<Item>>,
) -> Result<Vec<Result<bool>>> {
    if items.len() != tasks.len() {
        return Err(Error::backend("internal: one item per task to insert"));
    }
    let mut outcomes: Vec<Result<bool>> = vec![Ok(false); tasks.len()];
    // (task index, item) of the tasks to send.
    let mut accepted: Vec<(usize, Item)> = Vec::with_capacity(tasks.len());
    // One put per key: AWS refuses a whole transaction with two operations on one item. A
    // later occurrence of an id in the call is what it would be if sent after the first: a task
    // that exists (`Ok(false)`; `create` reports it as existing, or replaces it), as in the
    // core's adapter and the memory store. A task refused as too large takes no id.
    let mut keys: HashSet<TaskKey> = HashSet::with_capacity(tasks.len());
    for (i, (task, item)) in tasks.iter().zip(items).enumerate() {
        match item {
            Ok(item) => {
                if keys.insert(task.key()) {
                    accepted.push((i, item));
                }
            }
            Err(e @ Error::InvalidInput(_)) => outcomes[i] = Err(e),
            Err(e) => return Err(e),
        }
    }
    // Batches of consecutive tasks, leaving one slot per job for its counter update.
    let mut rest = accepted.as_slice();
    while !rest.is_empty() {
        let (mut end, mut bytes, mut jobs) = (0, 0usize, Vec::<&JobName>::new());
        while end < rest.len() {
            let (i, item) = &rest[end];
            let size = item::item_size(item);
            let new_job = !jobs.contains(&&tasks[*i].job);
            let count = end + 1 + jobs.len() + usize::from(new_job);
            if end > 0 && (count > MAX_TRANSACT_ITEMS || bytes + size > MAX_TRANSACT_BYTES) {
                break;
            }
            if new_job {
                jobs.push(&tasks[*i].job);
            }
            bytes += size;
            end += 1;
        }
        let (batch, later) = rest.split_at(end);
        insert_batch(
            tx,
            (table, counter_table),
            shards,
            tasks,
            batch,
            &mut outcomes,
        )
        .await?;
        rest = later;
    }
    Ok(outcomes)
}

/// One transaction's worth of tasks, sent again without the ones that turned out to exist or
/// that AWS refused for a reason about them, until the rest is written.
async fn insert_batch(
    tx: &dyn Transact,
    (table, counter_table): (&str, &str),
    shards: u32,
    tasks: &[Task],
    batch: &[(usize, Item)],
    outcomes: &mut [Result<bool>],
) -> Result<()> {
    let mut pending: Vec<&(usize, Item)> = batch.iter().collect();
    let mut conflicts = 0;
    while !pending.is_empty() {
        let mut writes = Vec::with_capacity(pending.len() + 1);
        let mut per_job: BTreeMap<&JobName, BTreeMap<String, i64>> = BTreeMap::new();
        for (i, item) in &pending {
            writes.push(insert_put(table, item.clone())?);
            let attr = item::counter_attr(tasks[*i].stage.as_deref(), tasks[*i].status);
            *per_job
                .entry(&tasks[*i].job)
                .or_default()
                .entry(attr)
                .or_default() += 1;
        }
        for (job, deltas) in &per_job {
            let update = counter_update(
                counter_table,
                job,
                crate::jitter_u32() % shards.max(1),
                deltas,
            )?;
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        let reasons = match tx.transact(writes).await? {
            Outcome::Committed => {
                for (i, _) in &pending {
                    outcomes[*i] = Ok(true);
                }
                return Ok(());
            }
            Outcome::Cancelled(reasons) => reasons,
            Outcome::Invalid(message) => {
                // One task: it is the one. Several: each goes alone, to find which.
                if let [(i, _)] = pending.as_slice() {
                    let subject = format!("task {}", tasks[*i].key());
                    outcomes[*i] = Err(refused_write("insert", &subject, &message));
                    return Ok(());
                }
                for entry in pending {
                    let alone = std::slice::from_ref(entry);
                    Box::pin(insert_batch(
                        tx,
                        (table, counter_table),
                        shards,
                        tasks,
                        alone,
                        outcomes,
                    ))
                    .await?;
                }
                return Ok(());
            }
        };
        // The counter updates follow the puts: one refused for itself fails the whole batch
        // (it carries every task's count).
        if let Some(r) = reasons
            .iter()
            .skip(pending.len())
            .find(|r| r.is_item_error())
        {
            return Err(cancelled("bulk create", std::slice::from_ref(r)));
        }
        let before = pending.len();
        let mut kept = Vec::with_capacity(before);
        for (k, entry) in pending.into_iter().enumerate() {
            let (i, _) = entry;
            match reasons.get(k) {
                // Exists already: reported as such (its outcome stays `Ok(false)`).
                Some(r) if r.is_refused() => {}
                Some(r) if r.is_item_error() => {
                    outcomes[*i] = Err(r.item_error("insert", &tasks[*i].key()));
                }
                _ => kept.push(entry),
            }
        }
        pending = kept;
        if reasons.iter().any(Reason::is_conflict) {
            if conflicts >= MAX_CONFLICT_RETRIES {
                return Err(cancelled("bulk create", &reasons));
            }
            conflicts += 1;
            pause(conflicts).await;
        } else if pending.len() == before {
            // Nothing named: sending the same transaction again would loop.
            return Err(cancelled("bulk create", &reasons));
        }
    }
    Ok(())
}

/// An error for a transaction cancelled for a reason we do not handle.
pub(crate) fn cancelled(op: &str, reasons: &[Reason]) -> Error {
    let described: Vec<String> = reasons
        .iter()
        .map(|r| match &r.message {
            Some(m) if r.code != "None" => format!("{}: {m}", r.code),
            _ => r.code.clone(),
        })
        .collect();
    if reasons.iter().any(Reason::is_conflict) {
        Error::Contention(format!(
            "DynamoDB {op}: transaction kept conflicting ({})",
            described.join(", ")
        ))
    } else {
        Error::Backend(format!(
            "DynamoDB {op}: transaction cancelled ({})",
            described.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tasktrack_core::{Job, NewTask, TaskId, Timestamp, lifecycle};

    /// A fake that records each call's task ids and answers from a script.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        /// Ids that "already exist": a transaction containing one is cancelled.
        existing: Vec<String>,
        /// Ids AWS refuses with a `ValidationError`: a transaction containing one is cancelled.
        invalid: Vec<String>,
        /// Ids whose item the server refuses with a `ValidationException` for the whole
        /// transaction, as moto does for an item over its size limit.
        too_large: Vec<String>,
        /// How many calls to cancel with a TransactionConflict first.
        conflicts: Mutex<u32>,
    }

    #[async_trait]
    impl Transact for Fake {
        async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Outcome> {
            assert!(
                items.len() <= MAX_TRANSACT_ITEMS,
                "{} items in one transaction",
                items.len()
            );
            let ids: Vec<String> = items
                .iter()
                .filter_map(|w| w.put())
                .filter_map(|p| p.item().get(item::SK).and_then(|v| v.as_s().ok()).cloned())
                .collect();
            self.calls.lock().unwrap().push(ids.clone());
            let distinct: std::collections::HashSet<&String> = ids.iter().collect();
            if distinct.len() < ids.len() {
                // What AWS answers (for the whole request) to two operations on one item.
                return Err(Error::Backend(
                    "ValidationException: Transaction request cannot include multiple \
                     operations on one item"
                        .into(),
                ));
            }
            if ids.iter().any(|id| self.too_large.contains(id)) {
                return Ok(Outcome::Invalid(
                    "Item size has exceeded the maximum allowed size".into(),
                ));
            }
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                return Ok(Outcome::Cancelled(
                    items
                        .iter()
                        .map(|_| Reason::new("TransactionConflict", None))
                        .collect(),
                ));
            }
            let reasons: Vec<Reason> = items
                .iter()
                .map(|w| {
                    let id = w
                        .put()
                        .and_then(|p| p.item().get(item::SK))
                        .and_then(|v| v.as_s().ok());
                    if id.is_some_and(|id| self.existing.contains(id)) {
                        Reason::new("ConditionalCheckFailed", None)
                    } else if id.is_some_and(|id| self.invalid.contains(id)) {
                        Reason::new(
                            "ValidationError",
                            Some("One or more parameter values were invalid".into()),
                        )
                    } else {
                        Reason::new("None", None)
                    }
                })
                .collect();
            if reasons.iter().any(|r| r.code != "None") {
                Ok(Outcome::Cancelled(reasons))
            } else {
                Ok(Outcome::Committed)
            }
        }
    }

    fn tasks(n: usize) -> Vec<Task> {
        let now = Timestamp::from_millis(1_000);
        let job = Job::new(JobName::new("j").unwrap(), now);
        (0..n)
            .map(|i| {
                lifecycle::create_task(
                    &job,
                    &NewTask::new(TaskId::new(format!("t{i:04}")).unwrap()),
                    now,
                )
                .unwrap()
            })
            .collect()
    }

    /// `insert_tasks` of `tasks` with their items, built as `DynamoStore::create` builds them.
    async fn insert(fake: &Fake, shards: u32, tasks: &[Task]) -> Result<Vec<Result<bool>>> {
        let items = tasks
            .iter()
            .map(|t| crate::fit::fit(crate::fit::MAX_ITEM_BYTES, None, t.clone()).map(|f| f.item))
            .collect();
        insert_tasks(fake, "t", "t.counters", shards, tasks, items).await
    }

    /// The outcomes as flags (`true` inserted), panicking on a per-task error.
    fn flags(outcomes: Vec<Result<bool>>) -> Vec<bool> {
        outcomes.into_iter().map(Result::unwrap).collect()
    }

    #[tokio::test]
    async fn batches_stay_within_the_aws_item_limit() {
        let fake = Fake::default();
        let flags = flags(insert(&fake, 4, &tasks(250)).await.unwrap());
        assert!(flags.iter().all(|f| *f));
        let sizes: Vec<usize> = fake.calls.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [99, 99, 52]);
    }

    #[tokio::test]
    async fn existing_tasks_are_reported_and_the_rest_is_sent_again() {
        let fake = Fake {
            existing: vec!["t0001".into(), "t0007".into()],
            ..Fake::default()
        };
        let flags = flags(insert(&fake, 1, &tasks(10)).await.unwrap());
        let expected: Vec<bool> = (0..10).map(|i| i != 1 && i != 7).collect();
        assert_eq!(flags, expected);
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            calls.len(),
            2,
            "one cancelled call, then one without the existing tasks"
        );
        assert_eq!(calls[1].len(), 8);
    }

    #[tokio::test]
    async fn conflicts_are_retried_then_reported_as_contention() {
        let fake = Fake {
            conflicts: Mutex::new(2),
            ..Fake::default()
        };
        assert_eq!(flags(insert(&fake, 1, &tasks(3)).await.unwrap()), [true; 3]);
        assert_eq!(fake.calls.lock().unwrap().len(), 3);

        let fake = Fake {
            conflicts: Mutex::new(1_000),
            ..Fake::default()
        };
        let err = insert(&fake, 1, &tasks(3)).await.unwrap_err();
        assert!(matches!(err, Error::Contention(_)), "{err}");
    }

    #[tokio::test]
    async fn an_id_given_twice_is_put_once_and_its_later_occurrences_reported_as_existing() {
        let fake = Fake {
            existing: vec!["t0001".into()],
            ..Fake::default()
        };
        let mut tasks = tasks(4);
        tasks[2] = tasks[0].clone(); // [t0000, t0001, t0000, t0003, t0001]
        tasks.push(tasks[1].clone());
        let outcomes = flags(insert(&fake, 1, &tasks).await.unwrap());
        assert_eq!(outcomes, [true, false, false, true, false]);
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            *calls,
            [vec!["t0000", "t0001", "t0003"], vec!["t0000", "t0003"]],
            "each id once per transaction; t0001 existed"
        );
    }

    #[tokio::test]
    async fn a_task_too_large_for_an_item_is_refused_alone_before_sending() {
        let fake = Fake::default();
        let mut tasks = tasks(10);
        // 500 KB of data: over DynamoDB's 400 KB item limit.
        tasks[3].data = serde_json::Value::String("x".repeat(500 * 1024));
        let outcomes = insert(&fake, 1, &tasks).await.unwrap();
        for (i, outcome) in outcomes.iter().enumerate() {
            if i == 3 {
                let Err(Error::InvalidInput(m)) = outcome else {
                    panic!("expected InvalidInput for t0003, got {outcome:?}");
                };
                assert!(m.contains("j/t0003"), "names the task: {m}");
                assert!(m.contains("409600 bytes"), "states the limit: {m}");
            } else {
                assert_eq!(outcome, &Ok(true), "task {i}");
            }
        }
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "one transaction, without the large task");
        assert!(!calls[0].contains(&"t0003".to_owned()));
        assert_eq!(calls[0].len(), 9);
    }

    #[tokio::test]
    async fn a_task_aws_refuses_fails_alone_with_aws_message() {
        let fake = Fake {
            invalid: vec!["t0002".into()],
            existing: vec!["t0004".into()],
            ..Fake::default()
        };
        let outcomes = insert(&fake, 1, &tasks(6)).await.unwrap();
        let Err(Error::InvalidInput(m)) = &outcomes[2] else {
            panic!("expected InvalidInput for t0002, got {:?}", outcomes[2]);
        };
        assert!(m.contains("j/t0002"), "names the task: {m}");
        assert!(
            m.contains("ValidationError: One or more parameter values were invalid"),
            "carries AWS's message: {m}"
        );
        assert_eq!(outcomes[4], Ok(false), "t0004 existed");
        for i in [0, 1, 3, 5] {
            assert_eq!(outcomes[i], Ok(true), "task {i}");
        }
        let calls = fake.calls.lock().unwrap();
        assert_eq!(calls.len(), 2, "one cancelled call, then the rest");
        assert_eq!(calls[1], ["t0000", "t0001", "t0003", "t0005"]);
    }

    #[tokio::test]
    async fn a_transaction_refused_as_a_whole_is_sent_again_task_by_task() {
        let fake = Fake {
            too_large: vec!["t0002".into()],
            existing: vec!["t0003".into()],
            ..Fake::default()
        };
        let outcomes = insert(&fake, 1, &tasks(4)).await.unwrap();
        let Err(Error::InvalidInput(m)) = &outcomes[2] else {
            panic!("expected InvalidInput for t0002, got {:?}", outcomes[2]);
        };
        assert!(m.contains("insert of task j/t0002"), "names the task: {m}");
        assert!(
            m.contains("ValidationException: Item size has exceeded the maximum allowed size"),
            "carries AWS's message: {m}"
        );
        assert_eq!(outcomes[..2], [Ok(true), Ok(true)]);
        assert_eq!(outcomes[3], Ok(false), "t0003 existed");
        let calls = fake.calls.lock().unwrap();
        assert_eq!(
            *calls,
            [
                vec!["t0000", "t0001", "t0002", "t0003"],
                vec!["t0000"],
                vec!["t0001"],
                vec!["t0002"],
                vec!["t0003"],
            ]
        );
    }
}
