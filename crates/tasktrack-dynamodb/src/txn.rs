//! Transactions: the seam around `TransactWriteItems`, and bulk insert in AWS-sized batches.
//!
//! `BatchWriteItem` cannot carry conditions, so it could overwrite an existing task; bulk create
//! therefore uses `TransactWriteItems` (at most [`MAX_TRANSACT_ITEMS`] items and
//! [`MAX_TRANSACT_BYTES`] per call), each task put conditioned on `attribute_not_exists(pk)` and
//! the job's counter shard updated in the same transaction. When some tasks already exist, AWS
//! cancels the whole transaction and says which items failed (`CancellationReasons`): those are
//! reported as existing and the rest is sent again. moto accepts oversized transactions, so the
//! limits are enforced here and pinned by a unit test with a fake [`Transact`].

use crate::item::{self, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tasktrack_core::{Error, JobName, Result, Task};

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
    /// Nothing was written; one reason code per item (`None`, `ConditionalCheckFailed`,
    /// `TransactionConflict`, ...), as AWS reports them.
    Cancelled(Vec<String>),
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

/// Inserts `tasks` that do not exist yet; one flag per task (`false`: it existed).
pub(crate) async fn insert_tasks(
    tx: &dyn Transact,
    table: &str,
    counter_table: &str,
    shards: u32,
    tasks: &[Task],
) -> Result<Vec<bool>> {
    let mut inserted = vec![false; tasks.len()];
    let items = tasks
        .iter()
        .map(item::task_item)
        .collect::<Result<Vec<_>>>()?;
    // Batches of consecutive tasks, leaving one slot per job for its counter update.
    let mut start = 0;
    while start < tasks.len() {
        let (mut end, mut bytes, mut jobs) = (start, 0usize, Vec::<&JobName>::new());
        while end < tasks.len() {
            let size = item_size(&items[end]);
            let new_job = !jobs.contains(&&tasks[end].job);
            let count = end - start + 1 + jobs.len() + usize::from(new_job);
            if end > start && (count > MAX_TRANSACT_ITEMS || bytes + size > MAX_TRANSACT_BYTES) {
                break;
            }
            if new_job {
                jobs.push(&tasks[end].job);
            }
            bytes += size;
            end += 1;
        }
        let batch: Vec<usize> = (start..end).collect();
        insert_batch(
            tx,
            (table, counter_table),
            shards,
            tasks,
            &items,
            batch,
            &mut inserted,
        )
        .await?;
        start = end;
    }
    Ok(inserted)
}

/// One transaction's worth of tasks, retried without the ones that turned out to exist.
async fn insert_batch(
    tx: &dyn Transact,
    (table, counter_table): (&str, &str),
    shards: u32,
    tasks: &[Task],
    items: &[Item],
    mut pending: Vec<usize>,
    inserted: &mut [bool],
) -> Result<()> {
    let mut conflicts = 0;
    while !pending.is_empty() {
        let mut writes = Vec::with_capacity(pending.len() + 1);
        let mut per_job: BTreeMap<&JobName, BTreeMap<String, i64>> = BTreeMap::new();
        for &i in &pending {
            writes.push(insert_put(table, items[i].clone())?);
            let attr = item::counter_attr(tasks[i].stage.as_deref(), tasks[i].status);
            *per_job
                .entry(&tasks[i].job)
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
        match tx.transact(writes).await? {
            Outcome::Committed => {
                for &i in &pending {
                    inserted[i] = true;
                }
                return Ok(());
            }
            Outcome::Cancelled(reasons) => {
                let existing: Vec<usize> = pending
                    .iter()
                    .zip(&reasons)
                    .filter(|(_, r)| r.as_str() == "ConditionalCheckFailed")
                    .map(|(i, _)| *i)
                    .collect();
                if existing.is_empty() {
                    if !reasons.iter().any(|r| is_conflict(r)) || conflicts >= MAX_CONFLICT_RETRIES
                    {
                        return Err(cancelled("bulk create", &reasons));
                    }
                    conflicts += 1;
                    pause(conflicts).await;
                }
                pending.retain(|i| !existing.contains(i));
            }
        }
    }
    Ok(())
}

/// An error for a transaction cancelled for a reason we do not handle.
pub(crate) fn cancelled(op: &str, reasons: &[String]) -> Error {
    if reasons.iter().any(|r| is_conflict(r)) {
        Error::Contention(format!(
            "DynamoDB {op}: transaction kept conflicting ({})",
            reasons.join(", ")
        ))
    } else {
        Error::Backend(format!(
            "DynamoDB {op}: transaction cancelled ({})",
            reasons.join(", ")
        ))
    }
}

/// An upper bound of an item's size as DynamoDB counts it (names plus values).
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    _ => 64,
                }
        })
        .sum()
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
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                return Ok(Outcome::Cancelled(
                    items
                        .iter()
                        .map(|_| "TransactionConflict".to_owned())
                        .collect(),
                ));
            }
            let reasons: Vec<String> = items
                .iter()
                .map(|w| {
                    let id = w
                        .put()
                        .and_then(|p| p.item().get(item::SK))
                        .and_then(|v| v.as_s().ok());
                    if id.is_some_and(|id| self.existing.contains(id)) {
                        "ConditionalCheckFailed"
                    } else {
                        "None"
                    }
                    .to_owned()
                })
                .collect();
            if reasons.iter().any(|r| r != "None") {
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

    #[tokio::test]
    async fn batches_stay_within_the_aws_item_limit() {
        let fake = Fake::default();
        let flags = insert_tasks(&fake, "t", "t.counters", 4, &tasks(250))
            .await
            .unwrap();
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
        let flags = insert_tasks(&fake, "t", "t.counters", 1, &tasks(10))
            .await
            .unwrap();
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
        assert_eq!(
            insert_tasks(&fake, "t", "t.counters", 1, &tasks(3))
                .await
                .unwrap(),
            [true; 3]
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 3);

        let fake = Fake {
            conflicts: Mutex::new(1_000),
            ..Fake::default()
        };
        let err = insert_tasks(&fake, "t", "t.counters", 1, &tasks(3))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Contention(_)), "{err}");
    }
}
