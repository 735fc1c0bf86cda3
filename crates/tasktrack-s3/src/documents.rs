//! [`S3Documents`]: the [`Documents`] trait over S3 objects, the job index and a task cache.

use crate::index::{Entry, Index, Rev, Update};
use crate::indexer::{Indexer, SHARDS, SNAPSHOT_FRESH_FOR, Snapshot, pause, shard_of};
use crate::layout::Layout;
use crate::objects::{Got, Objects, Put, RequestCounts, Stored};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tasktrack_core::cas::{Damaged, Documents, MAX_CAS_ATTEMPTS, Versioned};
use tasktrack_core::{
    CountRow, Cursor, Error, ErrorKind, Job, JobName, JobState, Listed, Result, Status, Task,
    TaskId, TaskKey, TaskPage, TaskQuery, Timestamp, UnreadableTask,
};

/// How many object requests one operation keeps in flight (bulk create, list pages).
const PARALLEL: usize = 16;
/// Tasks remembered per store (newest state this process read or wrote); cleared when full.
const CACHE_LIMIT: usize = 50_000;
/// How long a task handed to one `claim_next` caller is kept from the others in this process.
const RESERVE_FOR: Duration = Duration::from_secs(2);

/// S3 objects as versioned documents: tasks, job records, and each job's index.
///
/// Cheap to clone (shared state). [`S3Documents::with_cached_reads`] gives a view whose task
/// reads may come from this process's cache — only for writes that are conditional anyway (see
/// [`crate::S3Store`]).
#[derive(Debug, Clone)]
pub struct S3Documents {
    inner: Arc<Inner>,
    cached_reads: bool,
}

#[derive(Debug)]
struct Inner {
    objects: Objects,
    layout: Layout,
    indexer: Indexer,
    /// Task documents with their ETags as last read or written by this process.
    cache: Mutex<HashMap<TaskKey, Versioned<Task>>>,
    /// Tasks recently handed out by `claimable`, so concurrent callers pick different ones.
    reserved: Mutex<HashMap<TaskKey, Instant>>,
    /// Until when claims spread out because one lost a race to another process (see `pick`).
    contended_until: Mutex<Option<Instant>>,
    /// Task documents `pick` met damaged, at the index version it met them at: not fetched
    /// again while the index names that version.
    damaged: Damaged,
}

/// How long after a lost claim race this process keeps spreading its claims.
const CONTENDED_FOR: Duration = Duration::from_secs(2);
/// How many of the first candidates a contended claim chooses among.
const CONTENDED_WINDOW: usize = 32;

/// Shuffles `items` (Fisher-Yates; xorshift seeded from the clock: spreading, not security).
fn shuffle<T>(items: &mut [T]) {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
        | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections are single map operations: a panic cannot leave one half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn encode_json<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::backend(format!("encoding {what}: {e}")))
}

/// The page of `found` (entries that match, in index order, each with its index position):
/// the first `query.limit`, tasks and unreadable objects alike; the tasks ordered by their own
/// `(updated_at, id)`, the unreadable ones named in index order; and the cursor at the index
/// position of the last entry kept when more were found.
fn page_of(mut found: Vec<(Cursor, Listed)>, query: &TaskQuery) -> TaskPage {
    let more = found.len() > query.limit;
    found.truncate(query.limit);
    let next = if more {
        found.last().map(|(at, _)| at.clone())
    } else {
        None
    };
    let entries: Vec<Listed> = found.into_iter().map(|(_, entry)| entry).collect();
    let kept = entries.len();
    let mut page = TaskPage::from_listed(entries, kept);
    // A stale entry's task may have moved since (a newer `updated_at`); within the page the
    // tasks are in the query's order all the same.
    page.tasks
        .sort_by(|a, b| (a.updated_at, &a.id).cmp(&(b.updated_at, &b.id)));
    if query.newest_first {
        page.tasks.reverse();
    }
    page.next = next;
    page
}

/// A removal of every state of the incarnation `rev` belongs to (its creation time, any version),
/// or of `rev` and earlier when its creation time is unknown (0: an entry from before entries
/// carried it), where a larger version could also take the entry of a task created again since.
fn whole_incarnation(rev: Rev) -> Rev {
    match rev.created {
        0 => rev,
        _ => Rev {
            version: u64::MAX,
            ..rev
        },
    }
}

impl S3Documents {
    /// Documents in the bucket of `objects`, under `layout`.
    pub fn new(objects: Objects, layout: Layout) -> Self {
        let inner = Inner {
            objects,
            layout,
            indexer: Indexer::default(),
            cache: Mutex::default(),
            reserved: Mutex::default(),
            contended_until: Mutex::default(),
            damaged: Damaged::default(),
        };
        S3Documents {
            inner: Arc::new(inner),
            cached_reads: false,
        }
    }

    /// The same documents, but `get_task` answers from the cache when it can.
    pub fn with_cached_reads(&self) -> Self {
        S3Documents {
            inner: self.inner.clone(),
            cached_reads: true,
        }
    }

    /// Requests sent since the store was opened.
    pub fn requests(&self) -> RequestCounts {
        self.inner.objects.requests()
    }

    /// Where the documents live: the object names under the store's prefix.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The bucket's raw requests (counted), for tools and tests that read or write an object as
    /// it is stored.
    pub fn objects(&self) -> &Objects {
        &self.inner.objects
    }

    fn remember(&self, task: &Task, etag: &str) {
        self.inner.damaged.forget(&task.key());
        let mut cache = lock(&self.inner.cache);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(task.key(), Versioned::new(task.clone(), etag));
    }

    /// Remembers `key` as a refused write found it (so that the retry after a lost race may
    /// start from it instead of another GET), or forgets it if that read found nothing usable.
    /// The task found, if any.
    fn adopt(&self, key: &TaskKey, current: Option<Stored>) -> Option<Task> {
        let read = current.and_then(|c| {
            serde_json::from_slice::<Task>(&c.body)
                .ok()
                .map(|task| (task, c.etag))
        });
        match read {
            Some((task, etag)) if task.key() == *key => {
                self.remember(&task, &etag);
                Some(task)
            }
            _ => {
                self.forget(key);
                None
            }
        }
    }

    fn forget(&self, key: &TaskKey) {
        lock(&self.inner.cache).remove(key);
    }

    fn cached(&self, key: &TaskKey) -> Option<Versioned<Task>> {
        lock(&self.inner.cache).get(key).cloned()
    }

    /// Whether a claim lost a race recently (see `pick`).
    fn contended(&self) -> bool {
        lock(&self.inner.contended_until).is_some_and(|until| Instant::now() < until)
    }

    /// Reserves `key` for one `claimable` caller; `false` if another caller holds it.
    fn reserve(&self, key: &TaskKey) -> bool {
        let mut reserved = lock(&self.inner.reserved);
        let now = Instant::now();
        if reserved.len() > 1024 {
            reserved.retain(|_, at| now.duration_since(*at) < RESERVE_FOR);
        }
        match reserved.get(key) {
            Some(at) if now.duration_since(*at) < RESERVE_FOR => false,
            _ => {
                reserved.insert(key.clone(), now);
                true
            }
        }
    }

    fn unreserve(&self, key: &TaskKey) {
        lock(&self.inner.reserved).remove(key);
    }

    /// GETs a task document (always from S3) and remembers it.
    async fn fetch(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        let path = self.layout().task(key);
        match self.inner.objects.get_json::<Task>(&path, None).await? {
            Got::Found(task, etag) => {
                if task.key() != *key {
                    return Err(crate::error::corrupt(
                        path.as_ref(),
                        format!("holds task {} instead", task.key()),
                    ));
                }
                self.remember(&task, &etag);
                Ok(Some(Versioned::new(task, etag)))
            }
            Got::Missing | Got::Unchanged => {
                self.forget(key);
                Ok(None)
            }
        }
    }

    /// The index update that takes out the entry of task `key`, whose object holds `body`: the
    /// task's own removal if `body` decodes to it (repaired since it was found damaged), else
    /// the removal of the entry the current index holds for its id, whatever its version (see
    /// [`whole_incarnation`]): a damaged object has no readable revision, and its entry, which
    /// carries its status, is what its counts and listings come from. An entry of a later
    /// version flushed meanwhile (another process's deferred claim) goes too, while a task
    /// created again under the id keeps its own. `None` if the index has no entry for it.
    async fn removal_of(&self, key: &TaskKey, body: &[u8]) -> Result<Option<Update>> {
        if let Ok(task) = serde_json::from_slice::<Task>(body)
            && task.key() == *key
        {
            return Ok(Some(Update::remove(&task)));
        }
        let shards = self.fresh_index(&key.job).await?;
        let id = key.id.as_str();
        let entry = shards.get(shard_of(id)).and_then(|s| s.index.tasks.get(id));
        Ok(entry.map(|e| Update::Remove(id.to_owned(), whole_incarnation(e.rev()))))
    }

    /// The listing entry of task `key`, selected at index position `at`: its task as read now
    /// (`None` if it is gone or no longer matches `query`, the index lagging it), or, when its
    /// object does not decode, the task named as unreadable at `at`: its index entry, which
    /// placed it and matched the query's filters, is all that can be read of it.
    async fn listed_at(
        &self,
        query: &TaskQuery,
        at: Cursor,
        key: TaskKey,
    ) -> Result<Option<(Cursor, Listed)>> {
        match self.fetch(&key).await {
            Ok(task) => Ok(task
                .map(|t| t.value)
                .filter(|t| query.matches(t))
                .map(|t| (at, Listed::Task(t)))),
            Err(e @ Error::Corrupt { .. }) => {
                let unreadable = UnreadableTask::new(key.id, &e);
                Ok(Some((at.clone(), Listed::Unreadable(at, unreadable))))
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `updates` into `job`'s index. A failure is logged, not returned: the task
    /// documents are written already (they are the truth), the updates stay queued for the next
    /// flush, and claims repair entries they find stale.
    async fn index(&self, job: &JobName, updates: Vec<Update>) {
        let (objects, layout) = (&self.inner.objects, &self.inner.layout);
        if let Err(e) = self
            .inner
            .indexer
            .write(objects, layout, job, updates)
            .await
        {
            tracing::warn!(job = %job, error = %e, "s3: index update deferred");
        }
    }

    /// Every shard of `job`'s index as it is now (our queued updates flushed, then
    /// conditional GETs).
    async fn fresh_index(&self, job: &JobName) -> Result<Vec<Snapshot>> {
        let (objects, layout, indexer) =
            (&self.inner.objects, &self.inner.layout, &self.inner.indexer);
        if let Err(e) = indexer.flush_all(objects, layout, job).await {
            tracing::warn!(job = %job, error = %e, "s3: index update deferred");
        }
        indexer.read_all(objects, layout, job).await
    }

    /// Rebuilds `job`'s index from a full listing of its task documents (one LIST per 1000
    /// tasks and one GET per task). Only needed after a writer died between writing a task and
    /// its index entry *and* nothing has touched that task since; returns the number of tasks.
    pub async fn rebuild_index(&self, job: &JobName) -> Result<usize> {
        let (objects, layout) = (&self.inner.objects, &self.inner.layout);
        let listed = objects.list(&layout.job_dir(job)).await?;
        let tasks: Vec<Option<(Task, String)>> = stream::iter(
            listed
                .into_iter()
                .filter(|m| Layout::is_task_object(&m.location)),
        )
        .map(|meta| async move {
            match objects.get_json::<Task>(&meta.location, None).await? {
                Got::Found(t, etag) => Ok(Some((t, etag))),
                Got::Missing | Got::Unchanged => Ok(None),
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect()
        .await?;
        let mut shards: Vec<Index> = (0..SHARDS).map(|_| Index::new()).collect();
        for (task, etag) in tasks.iter().flatten() {
            shards[shard_of(task.id.as_str())].apply(&Update::put(task));
            self.remember(task, etag);
        }
        let n = shards.iter().map(|s| s.tasks.len()).sum();
        for (k, rebuilt) in shards.iter().enumerate() {
            self.inner
                .indexer
                .replace(objects, layout, job, k, rebuilt)
                .await?;
        }
        Ok(n)
    }

    /// Walks the shards' merged claim order and returns up to `limit` tasks that really are
    /// claimable, read from the cache when the index names the cached version, else from S3.
    /// Entries found stale are queued as repairs.
    ///
    /// The order is the index's with this process's unwritten changes (deferred claims and
    /// heartbeats, repairs) in place of the entries they supersede, so that a task claimed here
    /// is placed at its lease's expiry, not where the index still has it.
    async fn pick(
        &self,
        job: &JobName,
        shards: &[Snapshot],
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        let queued = self.inner.indexer.queued(job);
        let indexed = |id: &str| shards.get(shard_of(id)).and_then(|s| s.index.tasks.get(id));
        // An unwritten change of ours older than the index's entry (another process wrote the
        // task since, or deleted and created it again) no longer counts.
        let mine = |id: &str| match queued.get(id) {
            Some(Some(e)) if indexed(id).is_some_and(|i| i.rev().is_after(e.rev())) => None,
            other => other,
        };
        let mut order: Vec<(Reverse<i32>, i64, &str, &Entry)> = shards
            .iter()
            .flat_map(|s| s.index.claimable_keyed(stage, now))
            .filter(|(_, _, id)| mine(id).is_none())
            .filter_map(|(priority, at, id)| Some((priority, at, id, indexed(id)?)))
            .collect();
        for id in queued.keys() {
            if let Some(Some(e)) = mine(id)
                && let Some((priority, at)) = e.claim_key(stage, now)
            {
                order.push((priority, at, id.as_str(), e));
            }
        }
        order.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        if self.contended() {
            // Another process is claiming from the same job: walking the same order, we would
            // both go for the head and one of us would lose every race. Under contention each
            // process takes a random one of the first few candidates instead; a lone claimer
            // keeps the exact order.
            let window = order.len().min(CONTENDED_WINDOW);
            shuffle(&mut order[..window]);
        }
        let mut found: Vec<Versioned<Task>> = Vec::new();
        let mut repairs = Vec::new();
        for (_, _, id, entry) in order {
            if found.len() == limit {
                break;
            }
            let Ok(task_id) = TaskId::new(id) else {
                tracing::warn!(job = %job, id, "s3: index names an invalid task id; skipped");
                continue;
            };
            let key = TaskKey::new(job.clone(), task_id);
            let revision = entry.rev().to_string();
            if self.inner.damaged.contains(&key, &revision) || !self.reserve(&key) {
                continue;
            }
            let current = match self.cached(&key) {
                // Our copy is the state the entry names (the entries of our own later writes
                // are in the order above): decide on it. If someone else changed the task
                // since, the conditional write will say so. Any other copy may be of a task
                // deleted since, and created again under its id: only a read tells.
                Some(hit) if Rev::of(&hit.value) == entry.rev() => Some(hit),
                _ => match self.fetch(&key).await {
                    Ok(current) => current,
                    Err(e) if e.kind() == ErrorKind::Corrupt => {
                        self.unreserve(&key);
                        self.inner.damaged.note("s3", &key, &revision, &e);
                        continue;
                    }
                    Err(e) => {
                        self.unreserve(&key);
                        for f in &found {
                            self.unreserve(&f.value.key());
                        }
                        return Err(e);
                    }
                },
            };
            let Some(current) = current else {
                self.unreserve(&key);
                repairs.push(Update::Remove(id.to_owned(), entry.rev()));
                continue;
            };
            // Only a copy just read can differ from the entry here: a repair is never built
            // from a cached copy.
            if Rev::of(&current.value) != entry.rev() {
                repairs.push(Update::put(&current.value));
            }
            let stage_ok = stage.is_none() || current.value.stage.as_deref() == stage;
            if current.value.is_claimable(now) && stage_ok {
                found.push(current);
            } else {
                // Not this claim's to take (the index lagged): free for this process's other
                // claims at once, not after the reservation runs out.
                self.unreserve(&key);
            }
        }
        if !repairs.is_empty() {
            self.inner.indexer.enqueue(job, repairs);
        }
        Ok(found)
    }
}

#[async_trait]
impl Documents for S3Documents {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn init(&self) -> Result<()> {
        self.inner.objects.ensure_bucket().await
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        if self.cached_reads
            && let Some(hit) = self.cached(key)
        {
            return Ok(Some(hit));
        }
        self.fetch(key).await
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        Ok(self
            .insert_tasks(std::slice::from_ref(task))
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        let writes = tasks
            .iter()
            .map(|t| Ok((self.layout().task(&t.key()), encode_json(t, "task")?)))
            .collect::<Result<Vec<_>>>()?;
        let objects = &self.inner.objects;
        // Each PUT's own outcome: one that fails must not cost the tasks the others wrote their
        // index entries (a task without one is never claimed, counted or listed).
        let outcomes: Vec<Result<Put>> = stream::iter(writes)
            .map(|(path, body)| async move { objects.put(&path, body, None).await })
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut by_job: HashMap<&JobName, Vec<Update>> = HashMap::new();
        let mut created = Vec::with_capacity(tasks.len());
        let mut failed = None;
        for (task, outcome) in tasks.iter().zip(outcomes) {
            match outcome {
                Ok(Put::Written(etag)) => {
                    self.remember(task, &etag);
                    by_job.entry(&task.job).or_default().push(Update::put(task));
                    created.push(true);
                }
                Ok(Put::Conflict(current)) => {
                    // The task exists, but its index entry may not: its writer may have died,
                    // or failed, between the two. The entry of the task found is queued too,
                    // so that creating the task again repairs that (an entry is only ever
                    // replaced by a newer version, so an existing one is left as it is).
                    if let Some(found) = self.adopt(&task.key(), current) {
                        by_job
                            .entry(&task.job)
                            .or_default()
                            .push(Update::put(&found));
                    }
                    created.push(false);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                    created.push(false);
                }
            }
        }
        for (job, updates) in by_job {
            self.index(job, updates).await;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(created),
        }
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let key = new.key();
        let body = encode_json(new, "task")?;
        let outcome = self
            .inner
            .objects
            .put(&self.layout().task(&key), body, Some(&old.revision))
            .await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                self.unreserve(&key);
                return Err(e);
            }
        };
        // Unreserve only once this process's cache and queued index entries show the new
        // state, so that no other local claimer can see the task free in between.
        match outcome {
            Put::Written(etag) => {
                self.remember(new, &etag);
                if new.status == Status::InProgress {
                    // A claim or heartbeat: deferred to the next flush (see `indexer`).
                    self.inner.indexer.enqueue(&new.job, [Update::put(new)]);
                    self.unreserve(&key);
                } else {
                    self.unreserve(&key);
                    self.index(&new.job, vec![Update::put(new)]).await;
                }
                Ok(true)
            }
            Put::Conflict(current) => {
                self.adopt(&key, current);
                self.unreserve(&key);
                if new.status == Status::InProgress && old.value.status != Status::InProgress {
                    *lock(&self.inner.contended_until) = Some(Instant::now() + CONTENDED_FOR);
                }
                Ok(false)
            }
        }
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let key = old.value.key();
        let deleted = self
            .inner
            .objects
            .delete_if(&self.layout().task(&key), &old.revision)
            .await?;
        self.forget(&key);
        if deleted {
            self.index(&key.job, vec![Update::remove(&old.value)]).await;
        }
        Ok(deleted)
    }

    /// A DELETE conditional on the object as just read (its ETag: it has no revision that
    /// parses), after reading what index entry it has; then that entry's removal. A refused
    /// DELETE (the object changed in between) reads again: a task deleted meanwhile is `false`.
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        let path = self.layout().task(key);
        let objects = &self.inner.objects;
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Got::Found(body, etag) = objects.get_bytes(&path, None).await? else {
                self.forget(key);
                return Ok(false);
            };
            let removal = self.removal_of(key, &body).await?;
            if objects.delete_if(&path, &etag).await? {
                tracing::warn!(task = %key, "s3: deleted a damaged task object");
                self.forget(key);
                self.inner.damaged.forget(key);
                self.index(&key.job, removal.into_iter().collect()).await;
                return Ok(true);
            }
            pause(attempt).await;
        }
        Err(Error::Contention(format!(
            "task {key}: its object changed on every attempt to delete it"
        )))
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        let (objects, layout, indexer) =
            (&self.inner.objects, &self.inner.layout, &self.inner.indexer);
        let (mut shards, mut fresh) = indexer
            .view(objects, layout, job, SNAPSHOT_FRESH_FOR)
            .await?;
        loop {
            let found = self.pick(job, &shards, stage, now, limit).await?;
            if !found.is_empty() || fresh {
                return Ok(found);
            }
            // Nothing claimable in our copies: make sure with the current index before saying so.
            shards = indexer.read_all(objects, layout, job).await?;
            fresh = true;
        }
    }

    /// A page of `query`, chosen by the index and read from the task documents.
    ///
    /// The index lags the tasks (another process's claims reach it with its next flush), so
    /// some tasks read no longer match the query. The walk then goes on through the index after
    /// the last entry it consumed until it holds `limit + 1` tasks that match as they are now, or
    /// the index has no more hits: a page is short, and `next` is `None`, only at the real end.
    /// The cursor is the index position of the page's last entry (where the next page's walk
    /// starts), which is the task's own position unless its entry is stale.
    ///
    /// An object that does not decode is an entry of the page at its index position, named in
    /// `unreadable` (see `S3Documents::listed_at`), instead of failing the page.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let shards = self.fresh_index(&query.job).await?;
        let want = query.limit.saturating_add(1);
        // Index position `(updated_at ms, id)` consumed so far.
        let mut from: Option<(i64, String)> = query
            .after
            .as_ref()
            .map(|c| (c.updated_at.as_millis(), c.id.as_str().to_owned()));
        // Entries that match as read, in index order, each with its index position.
        let mut found: Vec<(Cursor, Listed)> = Vec::new();
        let mut batch = want;
        loop {
            let cursor = from.as_ref().map(|(at, id)| (*at, id.as_str()));
            let mut hits: Vec<(i64, &str)> = shards
                .iter()
                .flat_map(|s| s.index.select_after(query, cursor, batch))
                .collect();
            hits.sort_unstable();
            if query.newest_first {
                hits.reverse();
            }
            // Each shard gave up to `batch + 1`: more than `batch` in all means more remain.
            let exhausted = hits.len() <= batch;
            hits.truncate(batch);
            let Some(last) = hits.last() else {
                break;
            };
            from = Some((last.0, last.1.to_owned()));
            let keys: Vec<(Cursor, TaskKey)> = hits
                .iter()
                .filter_map(|(at, id)| {
                    TaskId::new(*id).ok().map(|id| {
                        let updated_at = Timestamp::from_millis(*at);
                        let key = TaskKey::new(query.job.clone(), id.clone());
                        (Cursor { updated_at, id }, key)
                    })
                })
                .collect();
            let entries: Vec<Option<(Cursor, Listed)>> = stream::iter(keys)
                .map(|(at, key)| self.listed_at(query, at, key))
                .buffered(PARALLEL)
                .try_collect()
                .await?;
            found.extend(entries.into_iter().flatten());
            if found.len() >= want || exhausted {
                break;
            }
            // Stale entries met: read on in batches of at least PARALLEL, so that a long run of
            // them costs few rounds.
            batch = (want - found.len()).max(PARALLEL);
        }
        Ok(page_of(found, query))
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        Ok(self
            .fresh_index(job)
            .await?
            .iter()
            .flat_map(|s| s.index.counts())
            .collect())
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        match self
            .inner
            .objects
            .get_json::<Job>(&self.layout().job(job), None)
            .await?
        {
            Got::Found(record, etag) => Ok(Some(Versioned::new(record, etag))),
            Got::Missing | Got::Unchanged => Ok(None),
        }
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        let body = encode_json(job, "job")?;
        Ok(matches!(
            self.inner
                .objects
                .put(&self.layout().job(&job.name), body, None)
                .await?,
            Put::Written(_)
        ))
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let body = encode_json(new, "job")?;
        let put = self
            .inner
            .objects
            .put(&self.layout().job(&new.name), body, Some(&old.revision))
            .await?;
        Ok(matches!(put, Put::Written(_)))
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        self.inner
            .objects
            .delete_if(&self.layout().job(&old.value.name), &old.revision)
            .await
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let objects = &self.inner.objects;
        let listed = objects.list(&self.layout().jobs_dir()).await?;
        let jobs: Vec<Option<Job>> = stream::iter(listed)
            .map(|meta| async move {
                match objects.get_json::<Job>(&meta.location, None).await? {
                    Got::Found(job, _) => Ok::<_, Error>(Some(job)),
                    Got::Missing | Got::Unchanged => Ok(None),
                }
            })
            .buffered(PARALLEL)
            .try_collect()
            .await?;
        let mut jobs: Vec<Job> = jobs
            .into_iter()
            .flatten()
            .filter(|j| state.is_none_or(|s| j.state == s))
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap

    use super::*;
    use crate::objects::fake::{LostAnswers, objects};
    use tasktrack_core::{NewTask, lifecycle};

    /// A bulk create whose PUT of one task fails still indexes the tasks the other PUTs wrote
    /// (a task without an entry is never claimed, counted or listed), then reports the failure.
    #[tokio::test]
    async fn a_failed_put_in_a_bulk_create_leaves_the_written_tasks_indexed() {
        let bucket = Arc::new(LostAnswers::default());
        let docs = S3Documents::new(objects(bucket.clone()), Layout::new("p"));
        let now = Timestamp::from_millis(1_800_000_000_000);
        let job = Job::new(JobName::new("j").unwrap(), now);
        let tasks: Vec<Task> = ["a", "b", "c"]
            .iter()
            .map(|id| lifecycle::create_task(&job, &NewTask::new(TaskId::new(*id).unwrap()), now))
            .collect::<Result<_>>()
            .unwrap();
        bucket.fail_next_put("/b.json");
        let inserted = docs.insert_tasks(&tasks).await;
        assert!(
            inserted.is_err(),
            "the failed PUT is reported: {inserted:?}"
        );
        let counts = docs.count_tasks(&job.name).await.unwrap();
        let pending: u64 = counts.iter().map(|(_, _, n)| n).sum();
        assert_eq!(pending, 2, "a and c are indexed: {counts:?}");
        let claimable = docs.claimable(&job.name, None, now, 10).await.unwrap();
        let ids: Vec<&str> = claimable.iter().map(|t| t.value.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
