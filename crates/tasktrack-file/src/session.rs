//! A job under its lock: [`Slot`] (one per job per process) hands out [`Session`]s, and batches
//! the conditional writes of concurrent callers into one transaction (group commit).
//!
//! Within a process, callers of the same job queue their operation. The first one becomes the
//! *leader*: it takes the job's lock, runs every queued operation, commits all their changes at
//! once, answers their callers, and goes on with whatever was queued meanwhile until the queue is
//! empty; the others just wait for their answer. (Without a leader, every waiting thread would
//! take the lock in turn and find one operation to run: no batching at all.) One commit is one
//! journal intent,
//! the task files fsynced in parallel, one directory fsync. Each operation sees the changes of
//! those before it in the batch (through the session's overlay), so a batch is equivalent to
//! running its operations one after the other.

use crate::fsio::{self, Durability, io_error};
use crate::index::{Entry, JobIndex, Record};
use crate::journal::{self, Change, JobPaths};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use tasktrack_core::{Error, Job, Result, Task, TaskId};

/// Whether an operation may create the job's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads and conditional writes of existing records: a missing job is simply empty.
    Existing,
    /// Inserts: creates the job's directory if needed.
    Create,
}

/// The most recycled scratch files a process keeps per job.
const MAX_RECYCLED: usize = 1024;

/// What a queued operation does once it has run: report its result, given the batch's commit.
type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// An operation: runs in a session (`None`: the job does not exist) and says how to finish.
type Run = Box<dyn FnOnce(Option<&mut Session<'_>>) -> Finish + Send>;

/// An operation waiting for the job's lock.
struct Queued {
    run: Run,
    fail: Box<dyn FnOnce(Error) + Send>,
}

/// One job as this process sees it: its paths, its lock file, its in-memory index and the
/// operations waiting for the lock.
pub struct Slot {
    paths: JobPaths,
    state: Mutex<SlotState>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Queued>,
    /// Whether a thread is running the queue (see the module docs).
    leader: bool,
}

/// Resigns the leadership if the leader stops by a panic, failing what is queued (no one else
/// would run it). A leader that finishes normally resigns itself, under the queue lock.
struct Leadership<'a> {
    slot: &'a Slot,
    resigned: bool,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if self.resigned {
            return;
        }
        let mut queue = self.slot.queue();
        queue.leader = false;
        for op in queue.ops.drain(..) {
            (op.fail)(Error::backend(
                "the thread running this job's queue panicked",
            ));
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("dir", &self.paths.dir)
            .finish()
    }
}

#[derive(Debug, Default)]
struct SlotState {
    lock_file: Option<File>,
    index: JobIndex,
    /// Scratch files holding inodes that exchanges freed up, to be rewritten by later changes
    /// (see [`fsio::exchange`]). Only this process uses them, only under the job lock.
    recycled: Vec<PathBuf>,
}

/// Releases the advisory lock when the session ends (a killed process releases it too).
struct Unlock<'a>(&'a File);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(self.0);
    }
}

impl Slot {
    /// The slot of the job at `paths`.
    pub fn new(paths: JobPaths) -> Self {
        Slot {
            paths,
            state: Mutex::new(SlotState::default()),
            queue: Mutex::new(Queue::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic mid-session may have left the in-memory index half-updated: forget it
                // and re-read the journal (the files themselves are always consistent).
                let mut guard = poisoned.into_inner();
                guard.index = JobIndex::default();
                self.state.clear_poison();
                guard
            }
        }
    }

    /// Runs `f` holding the job's lock (this process's mutex, then the cross-process `flock`),
    /// with the index caught up, and commits what it staged. `None` if the job has no directory
    /// and `access` is [`Access::Existing`]. Blocking: call from `spawn_blocking`.
    pub fn with_lock<T>(
        &self,
        access: Access,
        durability: Durability,
        f: impl FnOnce(&mut Session<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut state = self.state();
        let done = self.session(&mut state, access, durability, |s| {
            let value = f(s)?;
            let later = s.flush()?;
            Ok((value, later))
        })?;
        drop(state);
        match done {
            None => Ok(None),
            Some((value, later)) => {
                sync_later(later, durability)?;
                Ok(Some(value))
            }
        }
    }

    /// Like [`Slot::with_lock`] with [`Access::Existing`], but batched with the concurrent
    /// callers of this process (see the module docs). `f` must stage its changes last, after
    /// every check that can fail, so that a failed operation stages nothing.
    pub fn batched<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Session<'_>) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (tx, rx) = mpsc::channel::<Result<Option<T>>>();
        let failed = tx.clone();
        let run = move |session: Option<&mut Session<'_>>| -> Finish {
            let outcome = match session {
                None => Ok(None),
                Some(s) => f(s).map(Some),
            };
            Box::new(move |committed: Result<()>| {
                let _ = tx.send(committed.and(outcome));
            })
        };
        let fail = move |e: Error| {
            let _ = failed.send(Err(e));
        };
        let lead = {
            let mut queue = self.queue();
            queue.ops.push(Queued {
                run: Box::new(run),
                fail: Box::new(fail),
            });
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead {
            let mut leadership = Leadership {
                slot: self,
                resigned: false,
            };
            loop {
                let ops = {
                    let mut queue = self.queue();
                    if queue.ops.is_empty() {
                        // Resign while holding the queue lock: whoever queues next leads.
                        queue.leader = false;
                        leadership.resigned = true;
                        break;
                    }
                    std::mem::take(&mut queue.ops)
                };
                self.run_batch(ops, durability);
            }
        }
        rx.recv()
            .map_err(|_| Error::backend("a batched file operation was lost (a panic?)"))?
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `ops` in one session and one commit, and answers each.
    fn run_batch(&self, mut ops: Vec<Queued>, durability: Durability) {
        let mut state = self.state();
        let mut finishers = Vec::with_capacity(ops.len());
        let outcome = self.session(&mut state, Access::Existing, durability, |s| {
            finishers.extend(ops.drain(..).map(|op| (op.run)(Some(&mut *s))));
            Ok(s.flush())
        });
        drop(state);
        match outcome {
            Ok(Some(committed)) => {
                let committed = committed.and_then(|later| sync_later(later, durability));
                for finish in finishers {
                    finish(committed.clone());
                }
            }
            Ok(None) => {
                for op in ops {
                    (op.run)(None)(Ok(()));
                }
            }
            Err(e) => {
                // The lock or the journal failed before any operation ran.
                for op in ops {
                    (op.fail)(e.clone());
                }
            }
        }
    }

    fn session<T>(
        &self,
        state: &mut SlotState,
        access: Access,
        durability: Durability,
        f: impl FnOnce(&mut Session<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let SlotState {
            lock_file,
            index,
            recycled,
        } = state;
        if lock_file.is_none() {
            if access == Access::Existing && !self.paths.dir.exists() {
                return Ok(None);
            }
            fsio::create_dir(&self.paths.tasks)?;
            fsio::create_dir(&self.paths.scratch)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.paths.lock)
                .map_err(|e| io_error("opening lock file", &self.paths.lock, e))?;
            *lock_file = Some(file);
        }
        let Some(lock_file) = lock_file.as_ref() else {
            return Err(Error::backend(format!(
                "{} is not open",
                self.paths.lock.display()
            )));
        };
        fs4::FileExt::lock(lock_file).map_err(|e| io_error("locking", &self.paths.lock, e))?;
        let _unlock = Unlock(lock_file);
        let journal = journal::catch_up(&self.paths, index, durability)?;
        let mut session = Session {
            paths: &self.paths,
            index,
            journal,
            durability,
            recycled,
            staged: Vec::new(),
            overlay: HashMap::new(),
            job_overlay: None,
        };
        f(&mut session).map(Some)
    }
}

/// The directory fsync a transaction left for after the lock (see [`Session::flush`]).
fn sync_later(dir: Option<PathBuf>, durability: Durability) -> Result<()> {
    match dir {
        Some(dir) => fsio::sync_dir(&dir, durability),
        None => Ok(()),
    }
}

/// A job under its lock.
pub struct Session<'a> {
    /// The job's paths.
    pub paths: &'a JobPaths,
    /// The index, current as of this lock (not counting staged changes).
    pub index: &'a mut JobIndex,
    journal: File,
    durability: Durability,
    recycled: &'a mut Vec<PathBuf>,
    staged: Vec<Change>,
    overlay: HashMap<TaskId, Option<Task>>,
    job_overlay: Option<Option<Job>>,
}

impl Session<'_> {
    /// Task `id` as this session will leave it: staged changes first, then the file.
    pub fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        match self.overlay.get(id) {
            Some(staged) => Ok(staged.clone()),
            None => self.paths.read_task(id),
        }
    }

    /// The job record as this session will leave it.
    pub fn read_job(&self) -> Result<Option<Job>> {
        match &self.job_overlay {
            Some(staged) => Ok(staged.clone()),
            None => self.paths.read_job(),
        }
    }

    /// Adds changes to the session's transaction (committed when the session ends).
    pub fn stage(&mut self, changes: Vec<Change>) {
        for change in &changes {
            match change {
                Change::Put(task) => drop(self.overlay.insert(task.id.clone(), Some(task.clone()))),
                Change::Delete(id) => drop(self.overlay.insert(id.clone(), None)),
                Change::PutJob(job) => self.job_overlay = Some(Some(job.clone())),
                Change::DeleteJob => self.job_overlay = Some(None),
            }
        }
        self.staged.extend(changes);
    }

    /// Commits the staged changes in one transaction (see [`crate::journal`]).
    ///
    /// Under full durability on a machine whose boot is known ([`journal::boot_id`]), the
    /// journal is not fsynced (a reboot rebuilds it) and the fsync of the `tasks/` directory is
    /// returned to be done *after* the lock is released, before the callers are answered. That is
    /// safe because a directory fsync makes every earlier rename in it durable: a later
    /// transaction that builds on these renames answers only after its own fsync, which covers
    /// them. The lock is then held for one round of fsyncs instead of two.
    fn flush(&mut self) -> Result<Option<PathBuf>> {
        self.overlay.clear();
        self.job_overlay = None;
        let changes = std::mem::take(&mut self.staged);
        if changes.is_empty() {
            return Ok(None);
        }
        let full = self.durability == Durability::Full;
        let pipelined = full && journal::boot_id().is_some();
        // Serialize first: nothing may fail between the intent and the renames but I/O.
        let mut writes: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::with_capacity(changes.len());
        let mut intents = Vec::with_capacity(changes.len());
        for change in changes {
            let (path, record, bytes) = match change {
                Change::Put(task) => {
                    let path = self.paths.task(&task.id);
                    let bytes = fsio::to_document(&path, &task)?;
                    (path, Record::Put(Entry::of(&task)), Some(bytes))
                }
                Change::Delete(id) => (self.paths.task(&id), Record::Delete { id }, None),
                Change::PutJob(job) => {
                    let path = self.paths.job_file.clone();
                    let bytes = fsio::to_document(&path, &job)?;
                    (path, Record::Job, Some(bytes))
                }
                Change::DeleteJob => (self.paths.job_file.clone(), Record::Job, None),
            };
            writes.push((path, bytes));
            intents.push(record);
        }
        // 1. The intent, 2. the new files, written but not yet synced...
        journal::append(
            &self.paths.journal,
            &mut self.journal,
            self.index,
            intents,
            false,
        )?;
        let mut scratch = Vec::new();
        for (path, bytes) in &writes {
            if let Some(bytes) = bytes {
                let reused = match self.recycled.pop() {
                    Some(old) => fsio::rewrite_scratch(&old, bytes)?.map(|file| (old, file)),
                    None => None,
                };
                let file = match reused {
                    Some(file) => file,
                    None => fsio::write_scratch(&self.paths.scratch, bytes)?,
                };
                scratch.push((file, path.clone()));
            }
        }
        // ...then synced together: concurrent fsyncs share the file system's journal commits.
        if full {
            let mut files: Vec<(&Path, &File)> = Vec::new();
            if !pipelined {
                files.push((&self.paths.journal, &self.journal));
            }
            files.extend(scratch.iter().map(|((p, f), _)| (p.as_path(), f)));
            fsio::sync_parallel(&files)?;
        }
        // 3. The renames (and removals), made durable by syncing their directories.
        let (mut tasks_dir, mut job_dir) = (false, false);
        let mut renames = scratch.iter();
        for (path, bytes) in &writes {
            match bytes {
                Some(_) => {
                    if let Some(((from, _), to)) = renames.next() {
                        // Tasks only: the job record keeps plain renames (it changes rarely).
                        if to.parent() == Some(self.paths.tasks.as_path())
                            && fsio::exchange(from, to)?
                        {
                            if self.recycled.len() < MAX_RECYCLED {
                                self.recycled.push(from.clone());
                            } else {
                                fsio::remove(from)?;
                            }
                        } else {
                            fsio::rename(from, to)?;
                        }
                    }
                }
                None => fsio::remove(path)?,
            }
            if path.parent() == Some(self.paths.tasks.as_path()) {
                tasks_dir = true;
            } else {
                job_dir = true;
            }
        }
        let mut later = None;
        let mut dirs = Vec::new();
        if tasks_dir && pipelined {
            later = Some(self.paths.tasks.clone());
        } else if tasks_dir {
            dirs.push(self.paths.tasks.as_path());
        }
        if job_dir {
            dirs.push(self.paths.dir.as_path());
        }
        fsio::sync_dirs(&dirs, self.durability)?;
        // 4. The commit line needs no fsync: if it is lost, the next holder re-reads those few
        // files and finds them already written.
        journal::append(
            &self.paths.journal,
            &mut self.journal,
            self.index,
            vec![Record::Commit],
            false,
        )?;
        if self.index.lines > 2 * self.index.len() as u64 + journal::COMPACT_SLACK {
            journal::snapshot(self.paths, self.index, self.durability)?;
        }
        Ok(later)
    }
}
