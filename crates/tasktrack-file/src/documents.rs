//! [`FileDocuments`]: the [`Documents`] of the generic compare-and-swap adapter, on files.

use crate::fsio::{self, Durability, corrupt, io_error};
use crate::journal::{Change, JobPaths};
use crate::keys;
use crate::session::{Access, Session, Slot};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tasktrack_core::cas::{Documents, Versioned, task_revision};
use tasktrack_core::{
    CountRow, Cursor, Error, Job, JobName, JobState, Listed, Result, Task, TaskId, TaskKey,
    TaskPage, TaskQuery, Timestamp, UnreadableTask,
};

/// The marker file that says a directory is a tasktrack store, and in which layout version.
const MARKER: &str = "tasktrack-file.json";

/// The task and job records of a `file://` store, one JSON file each, with a per-job journal
/// index. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct FileDocuments {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    jobs_dir: PathBuf,
    durability: Durability,
    slots: Mutex<HashMap<JobName, Arc<Slot>>>,
}

impl fmt::Debug for FileDocuments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDocuments")
            .field("root", &self.inner.root)
            .field("durability", &self.inner.durability)
            .finish()
    }
}

impl FileDocuments {
    /// The store rooted at `root` (nothing is touched until [`Documents::init`]).
    pub fn new(root: impl Into<PathBuf>, durability: Durability) -> Self {
        let root = root.into();
        FileDocuments {
            inner: Arc::new(Inner {
                jobs_dir: root.join("jobs"),
                root,
                durability,
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The durability setting.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// Runs blocking file I/O on tokio's blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend(format!("file I/O task failed: {e}")))?
    }

    /// Runs `f` on `job` batched with this process's concurrent writers of the job (see
    /// [`Slot::batched`]), on the blocking pool.
    pub(crate) async fn batched<T, F>(&self, job: &JobName, f: F) -> Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session<'_>) -> Result<T> + Send + 'static,
    {
        let job = job.clone();
        self.run(move |inner| inner.slot(&job).batched(inner.durability, f))
            .await
    }

    /// Runs `f` on `job` under its lock (see [`Slot::with_lock`]), on the blocking pool.
    pub(crate) async fn locked<T, F>(
        &self,
        job: &JobName,
        access: Access,
        f: F,
    ) -> Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session<'_>) -> Result<T> + Send + 'static,
    {
        let job = job.clone();
        self.run(move |inner| inner.slot(&job).with_lock(access, inner.durability, f))
            .await
    }
}

impl Inner {
    fn slot(&self, job: &JobName) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(job.clone())
            .or_insert_with(|| Arc::new(Slot::new(JobPaths::new(&self.jobs_dir, job))))
            .clone()
    }

    fn paths(&self, job: &JobName) -> JobPaths {
        JobPaths::new(&self.jobs_dir, job)
    }

    /// Creates the root and checks (or writes) the layout marker.
    fn init(&self) -> Result<()> {
        fsio::create_dir(&self.jobs_dir)?;
        let path = self.root.join(MARKER);
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Marker {
            format: String,
        }
        match fsio::read_optional(&path)? {
            Some(bytes) => {
                let marker: Marker = fsio::from_document(&path, &bytes)?;
                if marker.format != "tasktrack-file" {
                    return Err(corrupt(
                        &path,
                        format!("format {:?} is not tasktrack-file", marker.format),
                    ));
                }
                Ok(())
            }
            None => {
                let bytes = fsio::to_document(
                    &path,
                    &Marker {
                        format: "tasktrack-file".into(),
                    },
                )?;
                let scratch = self
                    .root
                    .join(format!(".{MARKER}.{}.tmp", std::process::id()));
                fs::write(&scratch, bytes).map_err(|e| io_error("writing", &scratch, e))?;
                fsio::rename(&scratch, &path)?;
                fsio::sync_dir(&self.root, self.durability)
            }
        }
    }

    fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let entries = match fs::read_dir(&self.jobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("listing", &self.jobs_dir, e)),
        };
        let mut jobs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("listing", &self.jobs_dir, e))?;
            // Only job directories: a stray file (`.DS_Store`, a README) is not a job, and a
            // dot entry never is (an encoded job name never starts with a dot).
            if entry.file_name().to_string_lossy().starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let path = entry.path().join("job.json");
            let Some(bytes) = fsio::read_optional(&path)? else {
                continue; // a deleted job's directory (see `delete_job`), or not a job at all
            };
            let job = fsio::from_document::<Job>(&path, &bytes).and_then(|job| {
                if keys::encode(job.name.as_str()) != entry.file_name().to_string_lossy() {
                    return Err(corrupt(
                        &path,
                        format!("holds job {}, which does not belong here", job.name),
                    ));
                }
                Ok(job)
            });
            match job {
                Ok(job) if state.is_none_or(|s| job.state == s) => jobs.push(job),
                Ok(_) => {}
                // One damaged record must not hide every other job (nor stop `purge` of all
                // jobs): it is logged and left out; `get_job` of it names the file.
                Err(e @ Error::Corrupt { .. }) => {
                    tracing::warn!(error = %e, "leaving an unreadable job record out of the job list");
                }
                Err(e) => return Err(e),
            }
        }
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(jobs)
    }
}

/// Task `id` as the session sees it, `None` if it is gone or its file is damaged: a damaged
/// file is logged (naming it, as `get` of it does) and skipped by claims (a list names it
/// instead: [`listed_at`]).
fn readable(s: &Session<'_>, id: &TaskId, during: &str) -> Result<Option<Task>> {
    match s.read_task(id) {
        Err(e @ Error::Corrupt { .. }) => {
            tracing::warn!(job = %s.paths.job, error = %e, "skipping an unreadable task in {during}");
            Ok(None)
        }
        other => other,
    }
}

/// The listing entry at index position `at`: its task, or, when its file is damaged, the task
/// named as unreadable at that position (the index knows where it sorts and what it matched),
/// so that a page neither fails nor silently leaves it out. `None` if the file is gone.
fn listed_at(s: &Session<'_>, at: Cursor) -> Result<Option<Listed>> {
    match s.read_task(&at.id) {
        Ok(task) => Ok(task.map(Listed::Task)),
        // Named in the page, which is the caller's to report (no log line besides).
        Err(e @ Error::Corrupt { .. }) => {
            let unreadable = UnreadableTask::new(at.id.clone(), &e);
            Ok(Some(Listed::Unreadable(at, unreadable)))
        }
        Err(e) => Err(e),
    }
}

/// Damaged task files to remove from the locked job, in the two ways its index allows.
#[derive(Debug, Default)]
struct DamagedFiles {
    /// Tasks the index knows: removed through the journal (a `delete` record), so that their
    /// index entries, and the counts they hold, go in the same transaction and a crash in
    /// between is finished like any other.
    indexed: Vec<TaskId>,
    /// Files the index does not know (those a rebuild left out as unreadable, or files put
    /// there by hand): removed directly, as no entry or count names them. Under the lock every
    /// file a writer put there is in the index (its intent precedes its rename), so an unknown
    /// file is never a live task.
    unindexed: Vec<PathBuf>,
}

impl DamagedFiles {
    /// Stages `changes` with the journalled removals, and removes the unindexed files (made
    /// durable by a sync of `tasks/`). The staged part commits when the session ends.
    fn remove(self, s: &mut Session<'_>, mut changes: Vec<Change>) -> Result<()> {
        changes.extend(self.indexed.into_iter().map(Change::Delete));
        s.stage(changes);
        for path in &self.unindexed {
            fsio::remove(path)?;
        }
        if !self.unindexed.is_empty() {
            fsio::sync_dir(&s.paths.tasks, s.durability())?;
        }
        Ok(())
    }
}

/// The damaged task files left in the locked job, for `delete_job` to remove with the job
/// record: the indexed tasks whose file is damaged (`cas::delete_job` has deleted those its
/// listing named; this takes one damaged since), and the files the index does not know at all,
/// which no listing names (see [`DamagedFiles`]). Each one is logged.
fn damaged_files(s: &Session<'_>) -> Result<DamagedFiles> {
    let mut found = DamagedFiles::default();
    let mut known = HashSet::new();
    for entry in s.index.entries_by_id() {
        if let Err(e @ Error::Corrupt { .. }) = s.read_task(&entry.id) {
            tracing::warn!(job = %s.paths.job, error = %e, "removing a damaged task file with its job");
            found.indexed.push(entry.id.clone());
        }
        known.insert(s.paths.task(&entry.id));
    }
    let listing = match fs::read_dir(&s.paths.tasks) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io_error("listing", &s.paths.tasks, e)),
    };
    for entry in listing {
        let entry = entry.map_err(|e| io_error("listing", &s.paths.tasks, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with('.') || !name.ends_with(".json") || known.contains(&path) {
            continue;
        }
        tracing::warn!(job = %s.paths.job, path = %path.display(), "removing a task file the index does not know (left out as unreadable) with its job");
        found.unindexed.push(path);
    }
    Ok(found)
}

/// Task `id`'s file of the locked job, for `delete_damaged` to remove (see [`DamagedFiles`]:
/// through the journal if the index knows it, directly if a rebuild left it out), or `None` if
/// there is no file. Whatever the file holds now: the caller found it damaged, and a file
/// repaired since is deleted too, as asked. Logged.
fn damaged_file(s: &Session<'_>, id: &TaskId) -> Result<Option<DamagedFiles>> {
    let path = s.paths.task(id);
    match s.read_task(id) {
        Ok(None) => return Ok(None),
        Ok(Some(_)) => {
            tracing::warn!(job = %s.paths.job, path = %path.display(), "deleting a task file found damaged, readable again since");
        }
        Err(e @ Error::Corrupt { .. }) => {
            tracing::warn!(job = %s.paths.job, error = %e, "deleting a damaged task file");
        }
        Err(e) => return Err(e),
    }
    let mut found = DamagedFiles::default();
    if s.index.contains(id) {
        found.indexed.push(id.clone());
    } else {
        found.unindexed.push(path);
    }
    Ok(Some(found))
}

fn versioned<T>(value: T, version: u64) -> Versioned<T> {
    Versioned::new(value, version.to_string())
}

/// A task with its revision: version and creation time, so that a task deleted and created
/// again under its id (back at version 1) is not the one read before (see
/// [`task_revision`]).
fn versioned_task(task: Task) -> Versioned<Task> {
    let revision = task_revision(&task);
    Versioned::new(task, revision)
}

/// Whether the file's current record is still at the revision the caller read.
fn unchanged(current: Option<String>, revision: &str) -> bool {
    current.is_some_and(|v| v == revision)
}

#[async_trait]
impl Documents for FileDocuments {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn init(&self) -> Result<()> {
        self.run(Inner::init).await
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        // No lock: a task file is only ever replaced atomically (rename or exchange), so a read
        // sees a whole file. The one race: an inode freed by an exchange is rewritten by a later
        // change while a slow reader still has it open; such a read sees another (or a partial)
        // record, which `read_task` reports as corrupt, and a second read finds the current file.
        let key = key.clone();
        self.run(move |inner| {
            inner.slot(&key.job).catch_up_once(inner.durability)?;
            let paths = inner.paths(&key.job);
            let mut attempt = 0;
            let task = loop {
                match paths.read_task(&key.id) {
                    Err(Error::Corrupt { .. }) if attempt < 3 => attempt += 1,
                    other => break other?,
                }
            };
            Ok(task.map(versioned_task))
        })
        .await
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        let inserted = self.insert_tasks(std::slice::from_ref(task)).await?;
        Ok(inserted.first().copied().unwrap_or(false))
    }

    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        let mut inserted = vec![false; tasks.len()];
        let mut by_job: HashMap<JobName, Vec<usize>> = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            by_job.entry(t.job.clone()).or_default().push(i);
        }
        for (job, positions) in by_job {
            let batch: Vec<(usize, Task)> = positions
                .into_iter()
                .map(|i| (i, tasks[i].clone()))
                .collect();
            let flags = self
                .locked(&job, Access::Create, move |s| {
                    let mut seen = std::collections::HashSet::new();
                    let mut changes = Vec::new();
                    let mut flags = Vec::new();
                    for (i, task) in batch {
                        // `read_task` also refuses a file holding another id (a long-id hash
                        // collision): an error, never an overwrite.
                        let exists =
                            !seen.insert(task.id.clone()) || s.read_task(&task.id)?.is_some();
                        flags.push((i, !exists));
                        if !exists {
                            changes.push(Change::Put(task));
                        }
                    }
                    s.stage(changes);
                    Ok(flags)
                })
                .await?
                .unwrap_or_default();
            for (i, flag) in flags {
                inserted[i] = flag;
            }
        }
        Ok(inserted)
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let (revision, new) = (old.revision.clone(), new.clone());
        let done = self
            .batched(&new.job.clone(), move |s| {
                let current = s.read_task(&new.id)?;
                if !unchanged(current.as_ref().map(task_revision), &revision) {
                    return Ok(false);
                }
                s.stage(vec![Change::Put(new)]);
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let (revision, key) = (old.revision.clone(), old.value.key());
        let done = self
            .batched(&key.job, move |s| {
                let current = s.read_task(&key.id)?;
                if !unchanged(current.as_ref().map(task_revision), &revision) {
                    return Ok(false);
                }
                s.stage(vec![Change::Delete(key.id)]);
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    /// Under the job lock, unbatched: a direct removal can fail after the journalled one is
    /// staged, and a batch's failed operation must stage nothing (see `Slot::batched`).
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        let id = key.id.clone();
        let done = self
            .locked(&key.job, Access::Existing, move |s| {
                let Some(found) = damaged_file(s, &id)? else {
                    return Ok(false);
                };
                found.remove(s, Vec::new())?;
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        let stage = stage.map(str::to_owned);
        let found = self
            .locked(job, Access::Existing, move |s| {
                let ids: Vec<_> = s.claimable(stage.as_deref(), now).take(limit).collect();
                let mut found = Vec::with_capacity(ids.len());
                for id in ids {
                    // A damaged file is skipped (as the native claim_next does).
                    if let Some(t) = readable(s, &id, "claimable")? {
                        found.push(versioned_task(t));
                    }
                }
                Ok(found)
            })
            .await?;
        Ok(found.unwrap_or_default())
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let query = query.clone();
        let page = self
            .locked(&query.job.clone(), Access::Existing, move |s| {
                // The index picks the page (limit + 1 entries, to know whether more follow);
                // only those files are read. A damaged file is an entry of the page too, named
                // in `unreadable` at its index position (`listed_at`), so the cursor can point
                // past it and paging through a job (`delete_job`, `purge`) still works. A file
                // gone from under the index is left out, and the page filled from the entries
                // after it.
                let want = query.limit.saturating_add(1);
                let mut listed = Vec::new();
                let (mut asked, mut looked) = (want, 0);
                loop {
                    let hits = s.index.list(&query, asked);
                    let exhausted = hits.len() < asked;
                    for at in hits.into_iter().skip(looked) {
                        if listed.len() == want {
                            break;
                        }
                        looked += 1;
                        listed.extend(listed_at(s, at)?);
                    }
                    if listed.len() == want || exhausted {
                        break;
                    }
                    asked = asked.saturating_mul(2);
                }
                Ok(TaskPage::from_listed(listed, query.limit))
            })
            .await?;
        Ok(page.unwrap_or(TaskPage {
            tasks: Vec::new(),
            unreadable: Vec::new(),
            next: None,
        }))
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        let counts = self
            .locked(job, Access::Existing, |s| Ok(s.index.counts()))
            .await?;
        Ok(counts.unwrap_or_default())
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        let job = job.clone();
        self.run(move |inner| {
            Ok(inner.paths(&job).read_job()?.map(|j| {
                let v = j.version;
                versioned(j, v)
            }))
        })
        .await
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        let job = job.clone();
        let done = self
            .locked(&job.name.clone(), Access::Create, move |s| {
                if s.read_job()?.is_some() {
                    return Ok(false);
                }
                s.stage(vec![Change::PutJob(job)]);
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let (revision, new) = (old.revision.clone(), new.clone());
        let done = self
            .locked(&new.name.clone(), Access::Existing, move |s| {
                if !unchanged(s.read_job()?.map(|j| j.version.to_string()), &revision) {
                    return Ok(false);
                }
                s.stage(vec![Change::PutJob(new)]);
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let revision = old.revision.clone();
        let done = self
            .locked(&old.value.name, Access::Existing, move |s| {
                if !unchanged(s.read_job()?.map(|j| j.version.to_string()), &revision) {
                    return Ok(false);
                }
                // The directory, its lock file and journal stay: another process may be waiting
                // on that very lock file, and a fresh one would not exclude it. The damaged task
                // files no listing could return go with the job record (see `damaged_files`).
                let damaged = damaged_files(s)?;
                if damaged.indexed.len() < s.index.len() {
                    // A task that reads was created since the caller emptied the job (a
                    // `create` racing `delete_job`): it keeps its job record.
                    return Ok(false);
                }
                damaged.remove(s, vec![Change::DeleteJob])?;
                Ok(true)
            })
            .await?;
        Ok(done.unwrap_or(false))
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        self.run(move |inner| inner.list_jobs(state)).await
    }
}
