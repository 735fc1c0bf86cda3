//! [`MongoDocuments`]: the versioned-documents contract of the compare-and-swap adapter over two
//! collections. Every conditional write of a task puts the `version` and `created_at` it read
//! into the filter, so `replace_one({_id, version, created_at}, new)` matches nothing when
//! someone else wrote first, nor when the task was deleted and created again under its id since
//! (back at version 1, but created later; see `tasktrack_core::cas::task_revision`). A job record's filter is
//! `{_id, version}`.

use crate::codec::{self, int, task_id};
use crate::config::Config;
use crate::error::{duplicate_positions, is_duplicate_key, map};
use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, IndexModel};
use std::collections::HashMap;
use tasktrack_core::cas::{Documents, Versioned};
use tasktrack_core::{
    CountRow, Error, Job, JobName, JobState, Result, Status, Task, TaskKey, TaskPage, TaskQuery,
    Timestamp,
};

/// Tasks and jobs in two collections of one database (see the crate docs, `# Layout`).
#[derive(Debug, Clone)]
pub struct MongoDocuments {
    pub(crate) tasks: Collection<Document>,
    pub(crate) jobs: Collection<Document>,
    pub(crate) config: Config,
}

impl MongoDocuments {
    /// The collections named by `config`, over a connected client.
    pub fn new(client: &Client, config: Config) -> Self {
        let db = client.database(&config.database);
        MongoDocuments {
            tasks: db.collection(&config.tasks_collection()),
            jobs: db.collection(&config.jobs_collection()),
            config,
        }
    }

    /// The driver's error as a portable one.
    pub(crate) fn err(&self, e: mongodb::error::Error) -> Error {
        map(e, &self.config.hosts)
    }

    /// `database.collection`, for corruption reports.
    pub(crate) fn tasks_location(&self) -> String {
        format!(
            "mongodb {}.{}",
            self.config.database,
            self.config.tasks_collection()
        )
    }

    fn jobs_location(&self) -> String {
        format!(
            "mongodb {}.{}",
            self.config.database,
            self.config.jobs_collection()
        )
    }

    pub(crate) fn versioned_task(&self, doc: Document) -> Result<Versioned<Task>> {
        // `created_at` as stored: the text the conditional writes' filter must match.
        let created = doc.get_str("created_at").map(str::to_owned).ok();
        let task = codec::task_from_doc(doc, &self.tasks_location())?;
        let created = created.unwrap_or_else(|| task.created_at.to_rfc3339());
        let revision = format!("{}@{created}", task.version);
        Ok(Versioned::new(task, revision))
    }

    /// The stored tasks among `keys`, by `_id`, in one `find({_id: {$in: …}})` (missing keys
    /// are simply absent from the map).
    pub(crate) async fn get_tasks(
        &self,
        keys: &[TaskKey],
    ) -> Result<HashMap<String, Versioned<Task>>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = keys.iter().map(|k| task_id(&k.job, &k.id)).collect();
        let cursor = self
            .tasks
            .find(doc! {"_id": {"$in": ids}})
            .await
            .map_err(|e| self.err(e))?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(|e| self.err(e))?;
        docs.into_iter()
            .map(|d| {
                let task = self.versioned_task(d)?;
                Ok((task_id(&task.value.job, &task.value.id), task))
            })
            .collect()
    }

    /// Up to `limit` claimable tasks of `job` (at `stage`) in claim order, and how many
    /// documents were read for them: a document that does not decode is set aside
    /// ([`MongoDocuments::set_aside`]) and left out, so one damaged task never blocks the job's
    /// queue.
    pub(crate) async fn claim_candidates(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Versioned<Task>>, usize)> {
        // `claim_at` first: SecantusDB plans a filter clause by clause, in order, and takes the
        // first one an index serves (the sparse `claimable` index). MongoDB ignores the order.
        let mut filter = doc! {"claim_at": {"$lte": now.as_millis()}, "job": job.as_str()};
        if let Some(stage) = stage {
            filter.insert("stage", stage);
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let cursor = self
            .tasks
            .find(filter)
            .sort(doc! {"priority": -1, "claim_at": 1, "id": 1})
            .limit(limit)
            .await
            .map_err(|e| self.err(e))?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(|e| self.err(e))?;
        let read = docs.len();
        let mut tasks = Vec::with_capacity(read);
        for d in docs {
            let (id, version, claim_at) = (
                d.get("_id").cloned(),
                d.get("version").cloned(),
                d.get("claim_at").cloned(),
            );
            match self.versioned_task(d) {
                Ok(task) => tasks.push(task),
                Err(e @ Error::Corrupt { .. }) => {
                    if let Some(id) = id {
                        self.set_aside(id, version, claim_at, &e.to_string())
                            .await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok((tasks, read))
    }

    /// Takes a task document out of the claim path: `claim_at` removed (so neither the claim
    /// indexes nor a claim's query find it again) and `set_aside` set to why (left out if the
    /// document has no room for it). Conditional on
    /// the `version` and `claim_at` read, so a task written meanwhile is left alone. The
    /// document is otherwise untouched; a read of it still answers why it is unusable, and
    /// the next write of it by the store (`tasktrack retry` once it is repaired) brings it
    /// back, without the marker.
    pub(crate) async fn set_aside(
        &self,
        id: Bson,
        version: Option<Bson>,
        claim_at: Option<Bson>,
        why: &str,
    ) -> Result<()> {
        let absent = || Bson::Document(doc! {"$exists": false});
        let filter = doc! {
            "_id": id,
            "version": version.unwrap_or_else(absent),
            "claim_at": claim_at.unwrap_or_else(absent),
        };
        let update = doc! {"$unset": {"claim_at": ""}, "$set": {"set_aside": why}};
        if self.tasks.update_one(filter.clone(), update).await.is_err() {
            // The marker may be what does not fit (a document at the size limit): without it,
            // the update only makes the document smaller.
            self.tasks
                .update_one(filter, doc! {"$unset": {"claim_at": ""}})
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Up to `limit` task documents matching `filter` in `sort` order, past the first `skip`,
    /// undecoded.
    pub(crate) async fn find_docs(
        &self,
        filter: Document,
        sort: Document,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Document>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let skip = u64::try_from(skip).unwrap_or(u64::MAX);
        let mut find = self.tasks.find(filter).sort(sort).limit(limit);
        if skip > 0 {
            find = find.skip(skip);
        }
        let cursor = find.await.map_err(|e| self.err(e))?;
        cursor.try_collect().await.map_err(|e| self.err(e))
    }
}

/// The filter that matches task `old` only as it was read: its `_id`, and the `version` and
/// `created_at` (as stored) its revision names, `"<version>@<created_at>"` (see the module
/// docs).
fn unchanged_task(old: &Versioned<Task>) -> Result<Document> {
    let parsed = old
        .revision
        .split_once('@')
        .and_then(|(version, created)| Some((version.parse::<u64>().ok()?, created)));
    let Some((version, created_at)) = parsed else {
        return Err(Error::backend(format!(
            "mongodb task revision {:?} is not `version@created_at`",
            old.revision
        )));
    };
    Ok(doc! {
        "_id": task_id(&old.value.job, &old.value.id),
        "version": int(version),
        "created_at": created_at,
    })
}

/// A job record's revision as the stored `version` number.
fn revision(old: &str) -> Result<i64> {
    old.parse::<u64>()
        .map(int)
        .map_err(|_| Error::backend(format!("mongodb revision {old:?} is not a version")))
}

/// A `^`-anchored regular expression matching strings that start with `prefix` literally.
fn prefix_regex(prefix: &str) -> String {
    let mut re = String::from("^");
    for c in prefix.chars() {
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            re.push('\\');
        }
        re.push(c);
    }
    re
}

/// The indexes `init` creates (see the crate docs, `# Layout`).
fn task_indexes() -> Vec<IndexModel> {
    let claimable = doc! {"claim_at": {"$exists": true}};
    let index = |name: &str, keys: Document, partial: Option<Document>| {
        let options = IndexOptions::builder()
            .name(name.to_string())
            .partial_filter_expression(partial)
            .build();
        IndexModel::builder().keys(keys).options(options).build()
    };
    vec![
        // claim_next: the claimable tasks of a job in claim order; finished tasks have no
        // `claim_at`, so they are not in this index at all.
        index(
            "claim",
            doc! {"job": 1, "priority": -1, "claim_at": 1, "id": 1},
            Some(claimable.clone()),
        ),
        index(
            "claim_by_stage",
            doc! {"job": 1, "stage": 1, "priority": -1, "claim_at": 1, "id": 1},
            Some(claimable),
        ),
        // list (by status), purge and counts.
        index("list", doc! {"job": 1, "updated_at": 1, "id": 1}, None),
        index(
            "list_by_status",
            doc! {"job": 1, "status": 1, "updated_at": 1, "id": 1},
            None,
        ),
        index("counts", doc! {"job": 1, "stage": 1, "status": 1}, None),
        // The claimable tasks of every job, by when: what a server that cannot walk `claim` in
        // sort order (SecantusDB) fetches the candidates of a claim from, so that a claim costs
        // O(claimable tasks) there instead of O(tasks in the job). Sparse (not partial), because
        // that is the kind it picks for a range on `claim_at`; only claimable tasks are in it.
        IndexModel::builder()
            .keys(doc! {"claim_at": 1})
            .options(
                IndexOptions::builder()
                    .name("claimable".to_string())
                    .sparse(true)
                    .build(),
            )
            .build(),
    ]
}

#[async_trait]
impl Documents for MongoDocuments {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    async fn init(&self) -> Result<()> {
        self.tasks
            .create_indexes(task_indexes())
            .await
            .map_err(|e| self.err(e))?;
        let by_state = IndexModel::builder()
            .keys(doc! {"state": 1, "_id": 1})
            .options(IndexOptions::builder().name("by_state".to_string()).build())
            .build();
        self.jobs
            .create_index(by_state)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        let found = self
            .tasks
            .find_one(doc! {"_id": task_id(&key.job, &key.id)})
            .await
            .map_err(|e| self.err(e))?;
        found.map(|d| self.versioned_task(d)).transpose()
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        match self.tasks.insert_one(codec::new_task_to_doc(task)?).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every new task measured against the document size limit before the first chunk is sent
    /// (see `codec`), so that a create refused for one task writes nothing.
    fn check_new_tasks(&self, tasks: &[Task]) -> Result<()> {
        for task in tasks {
            codec::new_task_to_doc(task)?;
        }
        Ok(())
    }

    /// One unordered `insertMany` per chunk: a duplicate `_id` refuses that task only.
    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let docs = tasks
            .iter()
            .map(codec::new_task_to_doc)
            .collect::<Result<Vec<_>>>()?;
        let mut inserted = vec![true; tasks.len()];
        if let Err(e) = self.tasks.insert_many(docs).ordered(false).await {
            let duplicates = duplicate_positions(&e).ok_or_else(|| self.err(e))?;
            for i in duplicates {
                if let Some(flag) = inserted.get_mut(i) {
                    *flag = false;
                }
            }
        }
        Ok(inserted)
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let result = self
            .tasks
            .replace_one(unchanged_task(old)?, codec::task_to_doc(new)?)
            .await
            .map_err(|e| self.err(e))?;
        Ok(result.matched_count == 1)
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let result = self
            .tasks
            .delete_one(unchanged_task(old)?)
            .await
            .map_err(|e| self.err(e))?;
        Ok(result.deleted_count == 1)
    }

    /// `deleteOne({_id})`, unconditional: a document that does not decode has no revision to
    /// compare. Nothing else to move: counts are an aggregation over the task documents and
    /// every index entry (a set-aside one included) goes with its document.
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        let result = self
            .tasks
            .delete_one(doc! {"_id": task_id(&key.job, &key.id)})
            .await
            .map_err(|e| self.err(e))?;
        Ok(result.deleted_count == 1)
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        Ok(self.claim_candidates(job, stage, now, limit).await?.0)
    }

    /// Filters, order and cursor all in the query, on the `list` / `list_by_status` indexes.
    /// `updated_at` is stored as fixed-width RFC 3339 text, so text order is time order. The
    /// documents are decoded by `src/listing.rs`, which names a damaged one in the page.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let mut filter = doc! {"job": query.job.as_str()};
        if !query.statuses.is_empty() {
            let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
            filter.insert("status", doc! {"$in": statuses});
        }
        if let Some(stage) = &query.stage {
            filter.insert("stage", stage.as_str());
        }
        if let Some(prefix) = &query.id_prefix {
            filter.insert("id", doc! {"$regex": prefix_regex(prefix)});
        }
        let mut updated = Document::new();
        if let Some(t) = query.updated_after {
            updated.insert("$gte", t.to_rfc3339());
        }
        if let Some(t) = query.updated_before {
            updated.insert("$lt", t.to_rfc3339());
        }
        if !updated.is_empty() {
            filter.insert("updated_at", updated);
        }
        let (op, dir) = if query.newest_first {
            ("$lt", -1)
        } else {
            ("$gt", 1)
        };
        if let Some(c) = &query.after {
            let at = c.updated_at.to_rfc3339();
            filter.insert(
                "$or",
                vec![
                    doc! {"updated_at": {op: at.clone()}},
                    doc! {"updated_at": at, "id": {op: c.id.as_str()}},
                ],
            );
        }
        let sort = doc! {"updated_at": dir, "id": dir};
        crate::listing::page(self, filter, sort, query).await
    }

    /// One aggregation over the `counts` index: `$group` by stage and status.
    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        let pipeline = vec![
            doc! {"$match": {"job": job.as_str()}},
            doc! {"$group": {"_id": {"stage": "$stage", "status": "$status"}, "n": {"$sum": 1}}},
        ];
        let cursor = self
            .tasks
            .aggregate(pipeline)
            .await
            .map_err(|e| self.err(e))?;
        let rows: Vec<Document> = cursor.try_collect().await.map_err(|e| self.err(e))?;
        let bad = |row: &Document| {
            Error::corrupt(self.tasks_location(), format!("unreadable count row {row}"))
        };
        rows.iter()
            .map(|row| {
                let group = row.get_document("_id").map_err(|_| bad(row))?;
                let stage = match group.get("stage") {
                    Some(Bson::String(s)) => Some(s.clone()),
                    _ => None,
                };
                // A status edited by hand into one nobody knows (or into no text at all)
                // counts its tasks as unreadable.
                let status: Option<Status> =
                    group.get_str("status").ok().and_then(|s| s.parse().ok());
                let n = match row.get("n") {
                    Some(Bson::Int32(n)) => u64::try_from(*n).map_err(|_| bad(row))?,
                    Some(Bson::Int64(n)) => u64::try_from(*n).map_err(|_| bad(row))?,
                    _ => return Err(bad(row)),
                };
                Ok((stage, status, n))
            })
            .collect()
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        let found = self
            .jobs
            .find_one(doc! {"_id": job.as_str()})
            .await
            .map_err(|e| self.err(e))?;
        found
            .map(|d| {
                let job = codec::job_from_doc(d, &self.jobs_location())?;
                let revision = job.version.to_string();
                Ok(Versioned::new(job, revision))
            })
            .transpose()
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        match self.jobs.insert_one(codec::job_to_doc(job)?).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let filter = doc! {"_id": old.value.name.as_str(), "version": revision(&old.revision)?};
        let result = self
            .jobs
            .replace_one(filter, codec::job_to_doc(new)?)
            .await
            .map_err(|e| self.err(e))?;
        Ok(result.matched_count == 1)
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let filter = doc! {"_id": old.value.name.as_str(), "version": revision(&old.revision)?};
        let result = self
            .jobs
            .delete_one(filter)
            .await
            .map_err(|e| self.err(e))?;
        Ok(result.deleted_count == 1)
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let filter = match state {
            Some(s) => doc! {"state": s.as_str()},
            None => Document::new(),
        };
        let cursor = self
            .jobs
            .find(filter)
            .sort(doc! {"_id": 1})
            .await
            .map_err(|e| self.err(e))?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(|e| self.err(e))?;
        let location = self.jobs_location();
        docs.into_iter()
            .map(|d| codec::job_from_doc(d, &location))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_regex;

    #[test]
    fn prefix_regex_escapes_every_metacharacter() {
        assert_eq!(prefix_regex("a.b*(c)"), r"^a\.b\*\(c\)");
        assert_eq!(prefix_regex("é/$"), r"^é\/\$");
    }
}
