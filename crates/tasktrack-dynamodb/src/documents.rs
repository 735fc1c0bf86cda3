//! [`DynamoDocuments`]: the `Documents` trait of the core's compare-and-swap adapter, on one table.

use crate::commit::{CountedWrite, Counters, GroupCommit};
use crate::error::{build_error, content_refusal, refused_write, sdk_error};
use crate::fit::{self, Fitted};
use crate::item::{self, Item};
use crate::listing::{self, Listing};
use crate::requests::{Requests, bump, same_doc};
use crate::txn;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use std::collections::{BTreeMap, HashMap};
use tasktrack_core::cas::{Damaged, Documents, MAX_CAS_ATTEMPTS, Versioned};
use tasktrack_core::{
    CountRow, Error, Job, JobName, JobState, Result, Status, Task, TaskId, TaskKey, TaskPage,
    TaskQuery, Timestamp,
};

/// The attributes a damaged task item's delete compares: those every write of a task sets
/// besides its record, so that a task written again through the store since it was read (deleted
/// and created again, say) is not taken for it.
const COMPARED: [&str; 4] = [item::VERSION, item::STATUS, item::TOKEN, item::LIST_SK];

/// The condition of a damaged task item's delete: the item exists and [`COMPARED`] are as in
/// `it` (absent ones still absent: a hand edit may have removed them), and its values.
fn as_read(it: &Item) -> (String, HashMap<String, AttributeValue>) {
    let mut condition = vec!["attribute_exists(pk)".to_owned()];
    let mut values = HashMap::new();
    for attr in COMPARED {
        match it.get(attr) {
            Some(value) => {
                condition.push(format!("{attr} = :{attr}"));
                values.insert(format!(":{attr}"), value.clone());
            }
            None => condition.push(format!("attribute_not_exists({attr})")),
        }
    }
    (condition.join(" AND "), values)
}

/// The stage a task item's claim attributes name: `Some(stage)` from the stage claim index's
/// partition (`spk`, see [`item::stage_pk`]), `Some(None)` for a claimable task without one
/// (`cpk` alone); `None` when the item has no claim attributes (a finished task), which say
/// nothing of its stage.
pub(crate) fn claim_stage(it: &Item, job: &JobName) -> Option<Option<String>> {
    let text = |attr: &str| it.get(attr).and_then(|v| v.as_s().ok());
    let Some(spk) = text(item::STAGE_PK) else {
        return text(item::CLAIM_PK).map(|_| None);
    };
    let (len, rest) = spk.split_once(':')?;
    let stage = rest.get(..len.parse::<usize>().ok()?)?;
    (item::stage_pk(job, stage) == *spk).then(|| Some(stage.to_owned()))
}

/// Tasks, jobs and counters in one DynamoDB table (layout in the crate docs).
#[derive(Debug, Clone)]
pub struct DynamoDocuments {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// The counter table, `<table>.counters`.
    pub(crate) counter_table: String,
    /// Where requests go, for error messages.
    pub(crate) endpoint: String,
    pub(crate) counter_shards: u32,
    /// The largest item written (`?item_limit=`, DynamoDB's 400 KB by default).
    pub(crate) item_limit: usize,
    /// Requests sent, by kind (shared by clones).
    pub(crate) stats: std::sync::Arc<Requests>,
    /// Counted writes waiting to share a transaction (shared by clones).
    pub(crate) commit: std::sync::Arc<GroupCommit>,
    /// Task items a claim met damaged (shared by clones).
    pub(crate) damaged: std::sync::Arc<Damaged>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The condition of every replace and delete: the record is exactly the one we read. `v` alone
/// would do for one task's life (every write bumps it), but a task deleted and created again
/// under its id counts versions and tokens afresh, so a copy of the deleted task (a worker's
/// remembered copy) could match the new one on `v`, `st` and `tok`; its last write instant
/// (`lsk`: updated_at and id) tells them apart.
const UNCHANGED: &str = "v = :v AND st = :st AND tok = :tok AND lsk = :lsk";

fn unchanged_values(old: &Versioned<Task>) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (":v".into(), n(&old.revision)),
        (":st".into(), s(old.value.status.as_str())),
        (":tok".into(), n(old.value.token)),
        (
            ":lsk".into(),
            s(item::list_sk(old.value.updated_at, old.value.id.as_str())),
        ),
    ])
}

impl DynamoDocuments {
    /// Leaves a task item of `job` that does not decode out of a claim, so that it cannot stop
    /// the job's claims (see [`Damaged`]); `get` of it still answers `Corrupt`.
    fn skip_damaged(&self, job: &JobName, it: &Item, error: &Error) {
        let id = it.get(item::SK).and_then(|v| v.as_s().ok());
        let revision = it.get(item::VERSION).and_then(|v| v.as_n().ok());
        match id.map(TaskId::new) {
            Some(Ok(id)) => {
                let key = TaskKey::new(job.clone(), id);
                let revision = revision.map_or("?", String::as_str);
                self.damaged.note("dynamodb", &key, revision, error);
            }
            _ => tracing::warn!(%job, "dynamodb: claims skip a damaged task item: {error}"),
        }
    }

    /// The counter moves of deleting the item `it` of task `key`, found damaged: from its
    /// record if that decodes now (repaired since), else `-1` in the cell of its status (`st`)
    /// and stage. The stage is read from its claim attributes ([`claim_stage`]); a finished
    /// task has none, and then the job's counters tell it if only one cell of that status
    /// holds tasks (the task is counted in one of them). Where neither says (an unreadable
    /// status, several stages), the counts are left as they are, with a warning.
    async fn damaged_counter_move(
        &self,
        key: &TaskKey,
        it: &Item,
    ) -> Result<Option<BTreeMap<String, i64>>> {
        // The record alone (not `decode_task`): one whose list key was edited still says
        // which counter cell holds it.
        if let Ok((task, _)) = item::decode::<Task>(&self.table, it)
            && task.key() == *key
        {
            return Ok(Self::counter_move(Some(&task), None));
        }
        let status = it
            .get(item::STATUS)
            .and_then(|v| v.as_s().ok())
            .and_then(|st| st.parse::<Status>().ok());
        let Some(status) = status else {
            tracing::warn!(task = %key, "dynamodb: a damaged task item has no readable status; its counts stay as they are");
            return Ok(None);
        };
        let stage = match claim_stage(it, &key.job) {
            Some(stage) => Some(stage),
            None => self.only_stage_of(&key.job, status).await?,
        };
        let Some(stage) = stage else {
            tracing::warn!(task = %key, "dynamodb: the stage of a damaged task item is unreadable; its counts stay as they are");
            return Ok(None);
        };
        let attr = item::counter_attr(stage.as_deref(), status);
        Ok(Some(BTreeMap::from([(attr, -1)])))
    }

    /// The stage of the one counter cell of `job` that counts tasks in `status`, or `None` if
    /// there are several (or none).
    async fn only_stage_of(&self, job: &JobName, status: Status) -> Result<Option<Option<String>>> {
        let sums = self.counter_sums(job).await?;
        let mut stages = sums
            .into_iter()
            .filter(|((_, st), n)| *st == status && *n > 0)
            .map(|((stage, _), _)| stage);
        Ok(match (stages.next(), stages.next()) {
            (Some(stage), None) => Some(stage),
            _ => None,
        })
    }

    /// The sums of `job`'s counter shards by `(stage, status)` cell (open tasks, pending and
    /// in progress, under `pending`; see [`item::counter_attr`]).
    async fn counter_sums(&self, job: &JobName) -> Result<BTreeMap<(Option<String>, Status), i64>> {
        let values = HashMap::from([(":p".to_owned(), s(item::counter_pk(job)))]);
        let mut sums: BTreeMap<(Option<String>, Status), i64> = BTreeMap::new();
        self.query(
            &self.counter_table,
            None,
            "pk = :p",
            values,
            None,
            true,
            1000,
            |it| {
                for (name, value) in it {
                    if let (Some(cell), Ok(v)) = (item::parse_counter_attr(name), value.as_n()) {
                        let v: i64 = v.parse().map_err(|_| {
                            Error::corrupt(
                                format!("dynamodb://{}/{}", self.table, item::counter_pk(job)),
                                format!("counter {name} is {v:?}"),
                            )
                        })?;
                        *sums.entry(cell).or_default() += v;
                    }
                }
                Ok(true)
            },
        )
        .await?;
        Ok(sums)
    }

    /// Requests sent so far.
    pub fn requests(&self) -> &Requests {
        &self.stats
    }

    /// The counter cells a write moves (`-1` from the old cell, `+1` to the new one), or
    /// `None` when the task stays in its `(stage, status)` cell.
    fn counter_move(from: Option<&Task>, to: Option<&Task>) -> Option<BTreeMap<String, i64>> {
        let cell = |t: &Task| item::counter_attr(t.stage.as_deref(), t.status);
        let (from, to) = (from.map(cell), to.map(cell));
        if from == to {
            return None;
        }
        let mut deltas = BTreeMap::new();
        if let Some(attr) = from {
            deltas.insert(attr, -1);
        }
        if let Some(attr) = to {
            deltas.insert(attr, 1);
        }
        Some(deltas)
    }

    /// Writes `write` (a conditional put or delete of the task at `key`) alone when counts do
    /// not move, else in a transaction with the counter update, shared with the other counted
    /// writes of this process pending at the same moment (see [`crate::commit`]).
    /// `false`: the condition failed.
    async fn write_task(
        &self,
        key: TaskKey,
        write: TransactWriteItem,
        deltas: Option<BTreeMap<String, i64>>,
    ) -> Result<bool> {
        let Some(deltas) = deltas else {
            return self.write_one(&format!("task {key}"), write).await;
        };
        let counters = Counters {
            table: &self.counter_table,
            shards: self.counter_shards,
        };
        let written = self
            .commit
            .write(self, counters, CountedWrite { key, write, deltas })
            .await?;
        if !written {
            bump(&self.stats.refused);
        }
        Ok(written)
    }

    /// `task` as it will be stored, replacing `old` (`None`: inserted), and its item: the
    /// rules of [`crate::fit`] (data and output leave room, failure records give way), or
    /// [`Error::InvalidInput`] naming the task, its size and the limit. No request.
    pub(crate) fn fit(&self, old: Option<&Task>, task: Task) -> Result<Fitted> {
        fit::fit(self.item_limit, old, task)
    }

    /// Replaces `old` by `new` (fitted by [`DynamoDocuments::fit`]) if the item is still
    /// exactly the one read. `Some`: written, the task as stored; `None`: it changed.
    pub(crate) async fn write(&self, old: &Versioned<Task>, new: Fitted) -> Result<Option<Task>> {
        let Fitted { task, item } = new;
        let write = self.put(item, UNCHANGED, unchanged_values(old))?;
        let deltas = Self::counter_move(Some(&old.value), Some(&task));
        Ok(self
            .write_task(task.key(), write, deltas)
            .await?
            .then_some(task))
    }

    /// Replaces several tasks at once (a batch of claims, `succeed_many`): each write
    /// conditional on its own task being exactly the one read, all of them queued together so
    /// that they share one transaction (with the counter updates they need). One outcome per
    /// pair, in order, as [`DynamoDocuments::write`] (`Err` for that task alone: AWS refused
    /// it). A single pair is a plain `write`.
    pub(crate) async fn write_all(
        &self,
        mut pairs: Vec<(&Versioned<Task>, Fitted)>,
    ) -> Result<Vec<Result<Option<Task>>>> {
        if pairs.len() == 1
            && let Some((old, new)) = pairs.pop()
        {
            return Ok(vec![self.write(old, new).await]);
        }
        let mut tasks = Vec::with_capacity(pairs.len());
        let mut writes = Vec::with_capacity(pairs.len());
        for (old, Fitted { task, item }) in pairs {
            writes.push(CountedWrite {
                key: task.key(),
                write: self.put(item, UNCHANGED, unchanged_values(old))?,
                deltas: Self::counter_move(Some(&old.value), Some(&task)).unwrap_or_default(),
            });
            tasks.push(task);
        }
        let counters = Counters {
            table: &self.counter_table,
            shards: self.counter_shards,
        };
        let written = self.commit.write_all(self, counters, writes).await;
        if written.len() != tasks.len() {
            return Err(Error::backend("internal: a queued write got no outcome"));
        }
        let refused = written.iter().filter(|r| matches!(r, Ok(false))).count();
        self.stats
            .refused
            .fetch_add(refused as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(tasks
            .into_iter()
            .zip(written)
            .map(|(task, written)| written.map(|w| w.then_some(task)))
            .collect())
    }

    /// Inserts `tasks` that do not exist yet, `items[i]` being the item of `tasks[i]` (fitted
    /// by [`DynamoDocuments::fit`]) or why it cannot be written. One outcome per task:
    /// `Ok(true)` inserted, `Ok(false)` it existed, `Err` for that task alone (its entry of
    /// `items`; or refused by AWS for a reason about it). The others are written whatever
    /// becomes of one.
    pub(crate) async fn insert_each(
        &self,
        tasks: &[Task],
        items: Vec<Result<Item>>,
    ) -> Result<Vec<Result<bool>>> {
        txn::insert_tasks(
            self,
            &self.table,
            &self.counter_table,
            self.counter_shards,
            tasks,
            items,
        )
        .await
    }

    /// Inserts one task (fitted) unless it exists: `Some` the task as stored, `None` it existed.
    pub(crate) async fn insert(&self, new: Fitted) -> Result<Option<Task>> {
        let Fitted { task, item } = new;
        let inserted = self
            .insert_each(std::slice::from_ref(&task), vec![Ok(item)])
            .await?;
        match inserted.into_iter().next() {
            Some(Ok(true)) => Ok(Some(task)),
            Some(Ok(false)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    /// A single conditional put or delete (no counter moves) of `subject` (`task job/id`, `job
    /// name`, for errors): one request. A put AWS refuses for what it carries (too large, ...)
    /// is [`Error::InvalidInput`] naming `subject`.
    async fn write_one(&self, subject: &str, write: TransactWriteItem) -> Result<bool> {
        bump(&self.stats.write);
        if let Some(put) = write.put {
            let result = self
                .client
                .put_item()
                .table_name(put.table_name)
                .set_item(Some(put.item.clone()))
                .set_condition_expression(put.condition_expression)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(true),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(ccf)) => {
                        if same_doc(ccf.item(), &put.item) {
                            bump(&self.stats.replayed);
                            return Ok(true);
                        }
                        bump(&self.stats.refused);
                        Ok(false)
                    }
                    _ => Err(match content_refusal(&e) {
                        Some(message) => refused_write("write", subject, &message),
                        None => sdk_error("PutItem", &self.endpoint, e),
                    }),
                },
            };
        }
        if let Some(delete) = write.delete {
            let result = self
                .client
                .delete_item()
                .table_name(delete.table_name)
                .set_key(Some(delete.key))
                .set_condition_expression(delete.condition_expression)
                .set_expression_attribute_names(delete.expression_attribute_names)
                .set_expression_attribute_values(delete.expression_attribute_values)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    bump(&self.stats.refused);
                    Ok(false)
                }
                Err(e) => Err(sdk_error("DeleteItem", &self.endpoint, e)),
            };
        }
        Err(Error::backend(
            "internal: a task write is neither a put nor a delete",
        ))
    }

    /// A conditional put of `item`.
    fn put(
        &self,
        item: Item,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .map_err(|e| build_error("put", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A conditional delete of the item at `key`.
    fn delete(
        &self,
        key: Item,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .build()
            .map_err(|e| build_error("delete", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// A strongly consistent read of one item.
    async fn get_item(&self, key: Item) -> Result<Option<Item>> {
        bump(&self.stats.get);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.endpoint, e))?;
        Ok(out.item)
    }

    /// Every item of a Query, page by page, until `enough` says stop (`limit`: page size).
    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        table: &str,
        index: Option<&str>,
        key_condition: &str,
        values: HashMap<String, AttributeValue>,
        filter: Option<&str>,
        forward: bool,
        page_size: i32,
        mut visit: impl FnMut(&Item) -> Result<bool> + Send,
    ) -> Result<()> {
        let mut start: Option<Item> = None;
        loop {
            bump(&self.stats.query);
            let out = self
                .client
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(key_condition)
                .set_filter_expression(filter.map(str::to_owned))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(forward)
                .consistent_read(index.is_none())
                .limit(page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", &self.endpoint, e))?;
            for it in out.items() {
                if !visit(it)? {
                    return Ok(());
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(()),
            }
        }
    }

    /// The damaged items of one list-index partition whose list sort key sorts outside every
    /// record's (below all of them, above all of them: [`item::records_range`]), into `found`
    /// ([`Listing::add_swept`]): a time bound cannot be compared with such a key, so the first
    /// page of a time-bounded walk names them. Two Queries of ranges that hold no task that
    /// reads, so they read only such items (usually none).
    async fn sweep_partition(
        &self,
        query: &TaskQuery,
        status: Status,
        found: &mut Listing,
    ) -> Result<()> {
        let (floor, ceiling) = item::records_range();
        for (condition, bound) in [
            ("lpk = :p AND lsk < :b", floor),
            ("lpk = :p AND lsk >= :b", ceiling),
        ] {
            let values = HashMap::from([
                (":p".to_owned(), s(item::list_pk(&query.job, status))),
                (":b".to_owned(), s(bound)),
            ]);
            let table = self.table.clone();
            self.query(
                &self.table,
                Some(item::LIST_INDEX),
                condition,
                values,
                None,
                true,
                100,
                |it| found.add_swept(query, &table, it).map(|()| true),
            )
            .await?;
        }
        Ok(())
    }

    /// Up to `limit + 1` entries of one list-index partition that pass `query`, in its order,
    /// into `found`: tasks, and damaged items (see [`Listing::add`]).
    async fn list_partition(
        &self,
        query: &TaskQuery,
        status: Status,
        found: &mut Listing,
    ) -> Result<()> {
        let mut values = HashMap::from([(":p".to_owned(), s(item::list_pk(&query.job, status)))]);
        // The cursor (or the time bound on the side we start from) becomes the key condition.
        let bound = match (&query.after, query.newest_first) {
            (Some(c), false) => Some(("lsk > :b", item::list_sk(c.updated_at, c.id.as_str()))),
            (Some(c), true) => Some(("lsk < :b", item::list_sk(c.updated_at, c.id.as_str()))),
            (None, false) => query
                .updated_after
                .map(|t| ("lsk >= :b", item::sortable_millis(t))),
            (None, true) => query
                .updated_before
                .map(|t| ("lsk < :b", item::sortable_millis(t))),
        };
        let mut condition = "lpk = :p".to_owned();
        if let Some((cmp, b)) = bound {
            condition = format!("{condition} AND {cmp}");
            values.insert(":b".into(), s(b));
        }
        let want = query.limit + 1;
        let mut taken = 0;
        let page = i32::try_from(want.min(1000)).unwrap_or(1000);
        let table = self.table.clone();
        self.query(
            &self.table,
            Some(item::LIST_INDEX),
            &condition,
            values,
            None,
            !query.newest_first,
            page,
            |it| {
                let before = found.len();
                let more = found.add(query, &table, it)?;
                taken += found.len() - before;
                Ok(more && taken < want)
            },
        )
        .await
    }
}

#[async_trait]
impl Documents for DynamoDocuments {
    fn backend(&self) -> &'static str {
        "dynamodb"
    }

    async fn init(&self) -> Result<()> {
        crate::schema::ensure_tables(
            &self.client,
            &self.table,
            &self.counter_table,
            &self.endpoint,
        )
        .await
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        let Some(it) = self.get_item(item::task_key(key)).await? else {
            return Ok(None);
        };
        let (task, version) = item::decode_task(&self.table, &it)?;
        Ok(Some(Versioned::new(task, version)))
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        Ok(self.insert(self.fit(None, task.clone())?).await?.is_some())
    }

    /// Each task fitted into an item (`crate::fit`: its data must leave [`fit::RESERVED_BYTES`]
    /// of the item free), as [`Documents::insert_tasks`] will: the first that cannot is refused
    /// with `InvalidInput` naming it, its size and the limit, before `cas::create` writes
    /// anything. No request.
    fn check_new_tasks(&self, tasks: &[Task]) -> Result<()> {
        for task in tasks {
            self.fit(None, task.clone())?;
        }
        Ok(())
    }

    /// `DynamoDocuments::insert_each`; a task that could not be written fails the call, after
    /// the others were written (`DynamoStore::create` reports them one by one instead). Through
    /// `cas::create`, a task too large for an item never gets here: `check_new_tasks` refused
    /// the call first, so that nothing of it is written; what still fails here is what AWS
    /// refuses (a server with a lower item limit than `?item_limit=`).
    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        let items = tasks
            .iter()
            .map(|t| self.fit(None, t.clone()).map(|f| f.item))
            .collect();
        self.insert_each(tasks, items).await?.into_iter().collect()
    }

    /// A conditional put of `new`, fitted into an item first: refused with `InvalidInput` if it
    /// cannot fit. What is stored may differ from `new` by failure records cut to fit (see the
    /// crate docs, `# Limits`); `DynamoStore` answers the task as stored.
    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let fitted = self.fit(Some(&old.value), new.clone())?;
        Ok(self.write(old, fitted).await?.is_some())
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let write = self.delete(
            item::task_key(&old.value.key()),
            UNCHANGED,
            unchanged_values(old),
        )?;
        let deltas = Self::counter_move(Some(&old.value), None);
        self.write_task(old.value.key(), write, deltas).await
    }

    /// A delete conditional on the item as just read (`as_read`: it has no record to
    /// compare), moving the counters its readable attributes name
    /// (`DynamoDocuments::damaged_counter_move`) in the same transaction. Its index entries
    /// are its own attributes (sparse GSIs) and go with it. A refused delete (the item changed
    /// in between) reads again: a task deleted meanwhile is `false`.
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(it) = self.get_item(item::task_key(key)).await? else {
                return Ok(false);
            };
            let deltas = self.damaged_counter_move(key, &it).await?;
            let (condition, values) = as_read(&it);
            let write = self.delete(item::task_key(key), &condition, values)?;
            if self.write_task(key.clone(), write, deltas).await? {
                tracing::warn!(task = %key, "dynamodb: deleted a damaged task item");
                self.damaged.forget(key);
                return Ok(true);
            }
        }
        Err(Error::Contention(format!(
            "task {key}: its item changed on every attempt to delete it"
        )))
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        // A Query on the claim index in claim order; the filter drops tasks not claimable yet
        // (backoff, live leases), which sort among the claimable ones of their priority.
        let (index, condition, partition) = match stage {
            None => (item::CLAIM_INDEX, "cpk = :p", job.as_str().to_owned()),
            Some(stage) => (item::STAGE_INDEX, "spk = :p", item::stage_pk(job, stage)),
        };
        let values = HashMap::from([
            (":p".to_owned(), s(partition)),
            (":now".to_owned(), n(now.as_millis())),
        ]);
        let page = i32::try_from((limit + 8).min(1000)).unwrap_or(1000);
        let mut found = Vec::new();
        let table = self.table.clone();
        self.query(
            &self.table,
            Some(index),
            condition,
            values,
            Some("cat <= :now"),
            true,
            page,
            |it| {
                match item::decode_task(&table, it) {
                    Ok((task, version)) => found.push(Versioned::new(task, version)),
                    Err(e) => self.skip_damaged(job, it, &e),
                }
                Ok(found.len() < limit)
            },
        )
        .await?;
        Ok(found)
    }

    /// One Query per status partition of the list index, each stopping after `limit + 1`
    /// entries that pass, merged in the query's order. A task item that does not decode is an
    /// entry too, named in the page's `unreadable` at the place its list sort key gives it
    /// (if that key does not read as a place, on the page whose key range holds it; under a
    /// time bound, if it sorts outside every record's key, on the first page, found by
    /// `DynamoDocuments::sweep_partition`); see `listing::Listing`.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let statuses = if query.statuses.is_empty() {
            Status::ALL.to_vec()
        } else {
            query.statuses.clone()
        };
        let mut found = Listing::default();
        for status in statuses {
            self.list_partition(query, status, &mut found).await?;
            if listing::sweeps(query) {
                self.sweep_partition(query, status, &mut found).await?;
            }
        }
        Ok(found.page(query))
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        let mut sums = self.counter_sums(job).await?;
        // `n:pending` counts open tasks (pending + in progress): split off those under a lease.
        let values = HashMap::from([(":p".to_owned(), s(item::list_pk(job, Status::InProgress)))]);
        let mut running: BTreeMap<Option<String>, i64> = BTreeMap::new();
        let table = self.table.clone();
        self.query(
            &self.table,
            Some(item::LIST_INDEX),
            "lpk = :p",
            values,
            None,
            true,
            1000,
            |it| {
                // The record alone: an edited list key does not change the task's stage.
                let stage = match item::decode::<Task>(&table, it) {
                    Ok((task, _)) => task.stage,
                    // A damaged task still counts (and must not stop its job's counts): a
                    // task in progress keeps its claim attributes, which name its stage.
                    Err(e @ Error::Corrupt { .. }) => claim_stage(it, job).ok_or(e)?,
                    Err(e) => return Err(e),
                };
                *running.entry(stage).or_default() += 1;
                Ok(true)
            },
        )
        .await?;
        for (stage, k) in running {
            *sums.entry((stage.clone(), Status::Pending)).or_default() -= k;
            *sums.entry((stage, Status::InProgress)).or_default() += k;
        }
        // Shards may be negative one by one; only their sum means something.
        Ok(sums
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|((stage, status), v)| (stage, Some(status), v as u64))
            .collect())
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        let Some(it) = self.get_item(item::job_key(job)).await? else {
            return Ok(None);
        };
        let (job, version) = item::decode::<Job>(&self.table, &it)?;
        Ok(Some(Versioned::new(job, version)))
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        let write = self.put(
            item::job_item(job)?,
            "attribute_not_exists(pk)",
            HashMap::new(),
        )?;
        self.write_one(&format!("job {}", job.name), write).await
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let write = self.put(
            item::job_item(new)?,
            "v = :v",
            HashMap::from([(":v".into(), n(&old.revision))]),
        )?;
        self.write_one(&format!("job {}", new.name), write).await
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let values = HashMap::from([(":v".into(), n(&old.revision))]);
        let write = self.delete(item::job_key(&old.value.name), "v = :v", values)?;
        self.write_one(&format!("job {}", old.value.name), write)
            .await
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let (index, condition, partition) = match state {
            None => (None, "pk = :p", item::JOBS_PK.to_owned()),
            Some(st) => (Some(item::LIST_INDEX), "lpk = :p", item::job_state_pk(st)),
        };
        let values = HashMap::from([(":p".to_owned(), s(partition))]);
        let mut jobs = Vec::new();
        let table = self.table.clone();
        self.query(
            &self.table,
            index,
            condition,
            values,
            None,
            true,
            1000,
            |it| {
                jobs.push(item::decode::<Job>(&table, it)?.0);
                Ok(true)
            },
        )
        .await?;
        Ok(jobs)
    }
}
