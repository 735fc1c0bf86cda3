//! A job under its lock: [`Slot`] (one per job per process) hands out [`Session`]s, and batches
//! the conditional writes of concurrent callers into one transaction (group commit).
//!
//! Within a process, callers of the same job queue their operation. The first one becomes the
//! *leader*: it takes the job's lock, runs every queued operation (its own among them), commits
//! all their changes at once and answers their callers; the others just wait for their answer.
//! (Without a leader, every waiting thread would take the lock in turn and find one operation to
//! run: no batching at all.) A leader runs that one batch only: if more operations were queued
//! meanwhile, it hands the leadership to the thread of the first of them, which runs the next
//! batch, and returns its own answer at once. (A leader that went on until the queue was empty
//! could keep its own caller waiting indefinitely under sustained load, its operation long
//! committed and its lease perhaps running out.) Every queued operation is run: a leader resigns
//! only under the queue's lock and when the queue is empty, so an operation queued while a
//! leader exists is either in a batch it takes or owned by the thread it hands over to. One
//! commit is one journal intent, the task files fsynced in parallel, one directory fsync. Each
//! operation sees the changes of those before it in the batch (through the session's overlay),
//! so a batch is equivalent to running its operations one after the other.

use crate::fsio::{self, Durability, io_error};
use crate::index::{ClaimKey, Entry, JobIndex, Record};
use crate::journal::{self, Change, JobPaths};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, mpsc};
use tasktrack_core::{Error, Job, Result, Task, TaskId, Timestamp};

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
    /// Makes the operation's thread the leader (see [`Slot::lead`]); `false` if that thread is
    /// gone.
    promote: Box<dyn Fn() -> bool + Send>,
}

/// What a thread waiting in [`Slot::batched`] receives.
enum Message<T> {
    /// Its operation's answer.
    Answer(Result<Option<T>>),
    /// It now leads the queue, which holds its operation.
    Lead,
}

/// One job as this process sees it: its paths, its lock file, its in-memory index and the
/// operations waiting for the lock.
pub struct Slot {
    paths: JobPaths,
    /// Whether this process has read the job's journal under its lock at least once; after a
    /// reboot that first look is also what restores the task files (see [`journal::catch_up`]).
    caught_up: AtomicBool,
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
/// would run it). A leader that finishes normally resigns, or hands over, itself under the queue
/// lock.
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
            caught_up: AtomicBool::new(false),
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
        self.session(&mut state, access, durability, |s| {
            let value = f(s)?;
            s.flush()?;
            Ok(value)
        })
    }

    /// Makes sure this process has looked at the job's journal once before it reads task files
    /// without the lock: after a reboot, that first look restores the files a power loss undid.
    /// Blocking: call from `spawn_blocking`.
    pub fn catch_up_once(&self, durability: Durability) -> Result<()> {
        if !self.caught_up.load(Ordering::Acquire) {
            self.with_lock(Access::Existing, durability, |_| Ok(()))?;
        }
        Ok(())
    }

    /// Like [`Slot::with_lock`] with [`Access::Existing`], but batched with the concurrent
    /// callers of this process (see the module docs). A failed operation must stage nothing
    /// (its error is its caller's alone; the batch still commits): `f` stages its changes last,
    /// after every check that can fail, or runs its steps in [`Session::all_or_nothing`].
    pub fn batched<T: Send + 'static>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Session<'_>) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (tx, rx) = mpsc::channel::<Message<T>>();
        let (failed, promoted) = (tx.clone(), tx.clone());
        let run = move |session: Option<&mut Session<'_>>| -> Finish {
            let outcome = match session {
                None => Ok(None),
                Some(s) => f(s).map(Some),
            };
            Box::new(move |committed: Result<()>| {
                let _ = tx.send(Message::Answer(committed.and(outcome)));
            })
        };
        let fail = move |e: Error| {
            let _ = failed.send(Message::Answer(Err(e)));
        };
        let promote = move || promoted.send(Message::Lead).is_ok();
        let lead = {
            let mut queue = self.queue();
            queue.ops.push(Queued {
                run: Box::new(run),
                fail: Box::new(fail),
                promote: Box::new(promote),
            });
            !std::mem::replace(&mut queue.leader, true)
        };
        if lead {
            self.lead(durability);
        }
        loop {
            match rx.recv() {
                Ok(Message::Answer(answer)) => return answer,
                // The leader ran a batch without this operation and handed over: run the queue
                // (this operation is in it), then read the answer.
                Ok(Message::Lead) => self.lead(durability),
                Err(_) => {
                    return Err(Error::backend(
                        "a batched file operation was lost (a panic?)",
                    ));
                }
            }
        }
    }

    /// Runs the queue as its leader, which has an operation in it: one batch of everything
    /// queued, then, if more was queued meanwhile, makes the thread of the first waiting
    /// operation the leader (the leadership never lapses in between, so nothing queued waits
    /// for a leader that will not come), or resigns if the queue is empty. Both under the queue
    /// lock, where operations are queued: an operation queued after the check finds no leader
    /// and leads itself.
    fn lead(&self, durability: Durability) {
        let mut leadership = Leadership {
            slot: self,
            resigned: false,
        };
        loop {
            let ops = std::mem::take(&mut self.queue().ops);
            if !ops.is_empty() {
                self.run_batch(ops, durability);
            }
            let mut queue = self.queue();
            if queue.ops.is_empty() {
                // Whoever queues next leads.
                queue.leader = false;
                leadership.resigned = true;
                return;
            }
            // Hand over (the flag stays set: the woken thread leads). Only if every waiting
            // thread is gone, which a thread blocked on its answer cannot be, run on.
            if queue.ops.iter().any(|op| (op.promote)()) {
                leadership.resigned = true;
                return;
            }
        }
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
        self.caught_up.store(true, Ordering::Release);
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
    /// The store's durability setting.
    pub fn durability(&self) -> Durability {
        self.durability
    }

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

    /// Ids of the tasks claimable at `now` (at `stage`, if given) as this session will leave
    /// them, in claim order: the index's, with the staged changes applied (a task a change made
    /// claimable, such as one advanced to its next pipeline stage, is among them; one it claimed
    /// or finished is not). The files decide in the end: the caller reads each one.
    pub fn claimable<'s>(
        &'s self,
        stage: Option<&'s str>,
        now: Timestamp,
    ) -> impl Iterator<Item = TaskId> + 's {
        let mut staged: Vec<ClaimKey> = self
            .overlay
            .values()
            .flatten()
            .filter(|t| stage.is_none_or(|s| t.stage.as_deref() == Some(s)))
            .filter_map(|t| Entry::of(t).claim_key())
            .filter(|(_, at, _)| *at <= now)
            .collect();
        staged.sort();
        let mut staged = staged.into_iter().peekable();
        let mut indexed = self
            .index
            .claimable(stage, now)
            .filter(|(_, _, id)| !self.overlay.contains_key(id))
            .peekable();
        std::iter::from_fn(move || match (indexed.peek(), staged.peek()) {
            (Some(&a), Some(b)) if a > b => staged.next().map(|(_, _, id)| id),
            (Some(_), _) => indexed.next().map(|(_, _, id)| id.clone()),
            (None, _) => staged.next().map(|(_, _, id)| id),
        })
    }

    /// Adds changes to the session's transaction (committed when the session ends).
    pub fn stage(&mut self, changes: Vec<Change>) {
        for change in &changes {
            self.overlay_change(change);
        }
        self.staged.extend(changes);
    }

    fn overlay_change(&mut self, change: &Change) {
        match change {
            Change::Put(task) => drop(self.overlay.insert(task.id.clone(), Some(task.clone()))),
            Change::Delete(id) => drop(self.overlay.insert(id.clone(), None)),
            Change::PutJob(job) => self.job_overlay = Some(Some(job.clone())),
            Change::DeleteJob => self.job_overlay = Some(None),
        }
    }

    /// Runs `f`, which may stage changes and then fail: on an error, what `f` staged is taken
    /// back (the changes staged before stay), so a batched operation made of several steps
    /// either stages all of them or none (see [`Slot::batched`]).
    pub fn all_or_nothing<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let mark = self.staged.len();
        let outcome = f(self);
        if outcome.is_err() && self.staged.len() > mark {
            self.staged.truncate(mark);
            // The overlay is the staged changes applied in order: replay what is left.
            self.overlay.clear();
            self.job_overlay = None;
            let staged = std::mem::take(&mut self.staged);
            for change in &staged {
                self.overlay_change(change);
            }
            self.staged = staged;
        }
        outcome
    }

    /// Commits the staged changes in one transaction (see [`crate::journal`] for why each
    /// step is there).
    ///
    /// Under full durability on a machine whose boot is known ([`journal::boot_id`]), the
    /// journal is the commit record: the intent holds every new task in full and is the one
    /// thing fsynced, so a transaction costs one fsync however many tasks it writes. The task
    /// files are then replaced without fsync (a killed process loses nothing: the page cache
    /// outlives it), and after a reboot the journal restores any of them a power loss undid.
    /// Elsewhere the files and the `tasks/` directory are fsynced as well.
    fn flush(&mut self) -> Result<()> {
        self.overlay.clear();
        self.job_overlay = None;
        let changes = std::mem::take(&mut self.staged);
        if changes.is_empty() {
            return Ok(());
        }
        let full = self.durability == Durability::Full;
        let journalled = full && journal::boot_id().is_some();
        // Serialize first: nothing may fail between the intent and the renames but I/O.
        let mut writes = Vec::with_capacity(changes.len());
        let mut intents = Vec::with_capacity(changes.len());
        for change in changes {
            let (write, record) = self.prepare(change)?;
            writes.push(write);
            intents.push(record);
        }
        // 1. The intent (durable at once when it is the commit record).
        journal::append(
            &self.paths.journal,
            &mut self.journal,
            self.index,
            intents,
            journalled,
        )?;
        // From here the change is in the journal as an open transaction, which the next access
        // of the job settles by what the task files say (`journal::recover`): a failure part
        // way through the renames leaves some of the change applied. So a failure no longer
        // means "not applied": it is `Unavailable` (the outcome is unknown to the caller), for
        // which the faces look for what they recorded or claimed, and retry what is not there,
        // instead of a failure they would report as final while its leases stay granted.
        self.apply(&writes, full, journalled).map_err(|e| {
            Error::Unavailable(format!(
                "{e} (the job's next access settles the change by its task files, {})",
                self.paths.dir.display()
            ))
        })?;
        self.compact();
        Ok(())
    }

    /// Steps 2–4 of [`Session::flush`]: the files of a change whose intent is in the journal.
    fn apply(&mut self, writes: &[Write], full: bool, journalled: bool) -> Result<()> {
        // 2. The new files, written into scratch files...
        let scratch = self.write_scratch_files(writes)?;
        // ...and fsynced together where the journal does not stand in for them: the job record
        // always (rare, and not in the journal), the tasks too without a commit record.
        if full {
            let mut files: Vec<(&Path, &File)> = Vec::new();
            if !journalled {
                files.push((&self.paths.journal, &self.journal));
            }
            let must_sync = |to: &Path| !journalled || !self.is_task_file(to);
            files.extend(
                scratch
                    .iter()
                    .filter(|(_, to)| must_sync(to))
                    .map(|((p, f), _)| (p.as_path(), f)),
            );
            fsio::sync_parallel(&files)?;
        }
        // 3. The renames (and removals), made durable by syncing their directories.
        let (tasks_dir, job_dir) = self.replace_files(writes, &scratch)?;
        let mut dirs = Vec::new();
        if tasks_dir && !journalled {
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
        )
    }

    /// Rewrites a journal grown past its threshold as a snapshot, after a commit. A failure (a
    /// nearly full disk) is logged, not returned: the transaction is committed and its callers
    /// must hear so. Nothing needs repair: until its rename the snapshot touches neither the
    /// journal nor the in-memory index, and once renamed over the journal it is complete, and
    /// its new generation makes every process (this one too, whose index keeps the old one)
    /// re-read it at their next lock. The next try waits [`journal::COMPACT_SLACK`] more lines,
    /// so that a disk that stays full does not pay a failed snapshot per transaction.
    fn compact(&mut self) {
        let due = 2 * self.index.len() as u64 + journal::COMPACT_SLACK;
        if self.index.lines <= due.max(self.index.compact_after) {
            return;
        }
        match journal::snapshot(self.paths, self.index, self.durability) {
            Ok(()) => self.index.compact_after = 0,
            Err(e) => {
                self.index.compact_after = self.index.lines.saturating_add(journal::COMPACT_SLACK);
                tracing::warn!(job = %self.paths.job, error = %e, "index.log not compacted (the transaction is committed); trying again later");
            }
        }
    }

    fn is_task_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.paths.tasks.as_path())
    }

    /// A change's file write (its path, and new content unless it is a removal) and its journal
    /// record.
    fn prepare(&self, change: Change) -> Result<(Write, Record)> {
        Ok(match change {
            Change::Put(task) => {
                let path = self.paths.task(&task.id);
                let bytes = fsio::to_document(&path, &task)?;
                ((path, Some(bytes)), Record::Write(Box::new(task)))
            }
            Change::Delete(id) => ((self.paths.task(&id), None), Record::Delete { id }),
            Change::PutJob(job) => {
                let path = self.paths.job_file.clone();
                let bytes = fsio::to_document(&path, &job)?;
                ((path, Some(bytes)), Record::Job)
            }
            Change::DeleteJob => ((self.paths.job_file.clone(), None), Record::Job),
        })
    }

    /// Writes each new content into a scratch file (a recycled inode when there is one) and
    /// returns `((scratch path, handle), target)` pairs, in the order of `writes`.
    fn write_scratch_files(&mut self, writes: &[Write]) -> Result<Vec<(Scratch, PathBuf)>> {
        let mut scratch = Vec::new();
        for (path, bytes) in writes {
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
        Ok(scratch)
    }

    /// Moves the scratch files into place and removes what `writes` removes. Returns whether
    /// the `tasks/` directory and the job's directory changed.
    fn replace_files(
        &mut self,
        writes: &[Write],
        scratch: &[(Scratch, PathBuf)],
    ) -> Result<(bool, bool)> {
        let (mut tasks_dir, mut job_dir) = (false, false);
        let mut renames = scratch.iter();
        for (path, bytes) in writes {
            match bytes {
                Some(_) => {
                    if let Some(((from, _), to)) = renames.next() {
                        self.move_into_place(from, to)?;
                    }
                }
                None => fsio::remove(path)?,
            }
            if self.is_task_file(path) {
                tasks_dir = true;
            } else {
                job_dir = true;
            }
        }
        Ok((tasks_dir, job_dir))
    }

    /// Renames `from` over `to`; a task file is exchanged instead, keeping the old inode for a
    /// later write (the job record keeps plain renames: it changes rarely).
    fn move_into_place(&mut self, from: &Path, to: &Path) -> Result<()> {
        if self.is_task_file(to) && fsio::exchange(from, to)? {
            if self.recycled.len() < MAX_RECYCLED {
                self.recycled.push(from.to_path_buf());
            } else {
                fsio::remove(from)?;
            }
            return Ok(());
        }
        fsio::rename(from, to)
    }
}

/// A file to write: its path and new content (`None`: remove it).
type Write = (PathBuf, Option<Vec<u8>>);

/// A scratch file written and open: its path and handle.
type Scratch = (PathBuf, File);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

    use super::*;
    use tasktrack_core::lifecycle::{self, ClaimDecision};
    use tasktrack_core::{Claim, JobName, NewTask};

    fn task(job: &Job, id: &str, priority: i32, now: Timestamp) -> Task {
        let new = NewTask::new(TaskId::new(id).unwrap()).with_priority(priority);
        lifecycle::create_task(job, &new, now).unwrap()
    }

    fn claimed(t: &Task, now: Timestamp) -> Task {
        let claim = Claim::new("w", std::time::Duration::from_secs(60));
        match lifecycle::claim(t, &claim, now).unwrap() {
            ClaimDecision::Granted(c) => c.task,
            other => panic!("{other:?}"),
        }
    }

    /// A slot over a fresh job directory in `dir`.
    fn slot_in(dir: &Path) -> std::sync::Arc<Slot> {
        let slot = Slot::new(JobPaths::new(dir, &JobName::new("j").unwrap()));
        slot.with_lock(Access::Create, Durability::Relaxed, |_| Ok(()))
            .unwrap();
        std::sync::Arc::new(slot)
    }

    /// A leader runs one batch, the one holding its own operation, and returns: what was queued
    /// meanwhile is run by the thread it hands the queue to, not by the leader (which, leading
    /// until the queue ran dry, would keep its caller waiting as long as others kept queueing).
    #[test]
    fn a_leader_answers_its_caller_after_its_batch_and_hands_the_queue_over() {
        use std::thread;
        let dir = tempfile::tempdir().unwrap();
        let slot = slot_in(dir.path());
        let (entered, entered_rx) = mpsc::channel();
        let (go, go_rx) = mpsc::channel::<()>();
        let a = {
            let slot = slot.clone();
            thread::spawn(move || {
                let ran_on = slot.batched(Durability::Relaxed, move |_| {
                    entered.send(()).unwrap();
                    go_rx.recv().unwrap();
                    Ok(thread::current().id())
                });
                (thread::current().id(), ran_on.unwrap().unwrap())
            })
        };
        // A leads, and its batch is running.
        entered_rx.recv().unwrap();
        let b = {
            let slot = slot.clone();
            thread::spawn(move || {
                let ran_on = slot.batched(Durability::Relaxed, |_| Ok(thread::current().id()));
                (thread::current().id(), ran_on.unwrap().unwrap())
            })
        };
        // B's operation is queued behind A's batch (a wait for a state, not for time).
        while slot.queue().ops.is_empty() {
            thread::yield_now();
        }
        assert!(slot.queue().leader);
        go.send(()).unwrap();
        let (a_thread, a_ran_on) = a.join().unwrap();
        let (b_thread, b_ran_on) = b.join().unwrap();
        assert_eq!(a_ran_on, a_thread);
        assert_eq!(
            b_ran_on, b_thread,
            "B's operation ran on B's thread: A handed the queue over instead of running it"
        );
        let queue = slot.queue();
        assert!(
            queue.ops.is_empty() && !queue.leader,
            "the last leader resigned"
        );
    }

    /// Many threads batching at once: every operation runs exactly once, its changes are
    /// committed, and each caller gets its own answer (no operation left in the queue without a
    /// leader).
    #[test]
    fn every_batched_operation_runs_once_and_answers_its_own_caller() {
        const THREADS: usize = 8;
        const EACH: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let slot = slot_in(dir.path());
        let now = Timestamp::now();
        let job = Job::new(JobName::new("j").unwrap(), now);
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let (slot, job) = (slot.clone(), job.clone());
                std::thread::spawn(move || {
                    for k in 0..EACH {
                        let new = task(&job, &format!("t{i}-{k}"), 0, now);
                        let id = new.id.clone();
                        let answer = slot
                            .batched(Durability::Relaxed, move |s| {
                                assert_eq!(s.read_task(&new.id)?, None, "run once");
                                let id = new.id.clone();
                                s.stage(vec![Change::Put(new)]);
                                Ok(id)
                            })
                            .unwrap();
                        assert_eq!(answer, Some(id));
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        {
            let queue = slot.queue();
            assert!(queue.ops.is_empty() && !queue.leader);
        }
        slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
            assert_eq!(s.index.len(), THREADS * EACH);
            for i in 0..THREADS {
                for k in 0..EACH {
                    let id = TaskId::new(format!("t{i}-{k}")).unwrap();
                    assert!(s.read_task(&id)?.is_some(), "{id} committed");
                }
            }
            Ok(())
        })
        .unwrap();
    }

    /// A journal compaction that fails after a commit (here its scratch folder cannot be
    /// listed; on a real disk, a full one) leaves the transaction committed and answered so,
    /// and the job as usable as before, for this process and for a new one.
    #[test]
    fn a_failed_compaction_does_not_fail_the_committed_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let name = JobName::new("j").unwrap();
        let paths = JobPaths::new(dir.path(), &name);
        let slot = Slot::new(paths.clone());
        let now = Timestamp::now();
        let job = Job::new(name, now);
        let (a, b) = (task(&job, "a", 0, now), task(&job, "b", 0, now));
        slot.with_lock(Access::Create, Durability::Relaxed, |s| {
            s.stage(vec![Change::Put(a.clone()), Change::Put(b.clone())]);
            Ok(())
        })
        .unwrap();
        // A removal writes no scratch file; the snapshot lists the scratch folder first.
        std::fs::remove_dir_all(&paths.scratch).unwrap();
        std::fs::write(&paths.scratch, b"not a folder").unwrap();
        let deleted = slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
            s.index.lines += 1_000_000; // a journal long past its compaction threshold
            s.stage(vec![Change::Delete(a.id.clone())]);
            Ok(())
        });
        assert!(deleted.is_ok(), "a committed delete answered {deleted:?}");
        assert!(!paths.task(&a.id).exists());
        std::fs::remove_file(&paths.scratch).unwrap();
        std::fs::create_dir(&paths.scratch).unwrap();
        let fresh = Slot::new(paths.clone());
        for slot in [&slot, &fresh] {
            slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
                assert!(!s.index.open, "no transaction left to finish");
                assert_eq!(ids(s, now), ["b"]);
                Ok(())
            })
            .unwrap();
        }
        slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
            s.stage(vec![Change::Put(claimed(&b, now))]);
            Ok(())
        })
        .unwrap();
        fresh
            .with_lock(Access::Existing, Durability::Relaxed, |s| {
                assert_eq!(ids(s, now), Vec::<String>::new(), "b is claimed");
                Ok(())
            })
            .unwrap();
    }

    fn ids(s: &Session<'_>, now: Timestamp) -> Vec<String> {
        s.claimable(None, now).map(|id| id.to_string()).collect()
    }

    /// The session's claim order is the index's with the staged changes applied, and
    /// `all_or_nothing` takes back exactly what its closure staged.
    #[test]
    fn staged_changes_join_the_claim_order_and_a_failed_step_is_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let name = JobName::new("j").unwrap();
        let slot = Slot::new(JobPaths::new(dir.path(), &name));
        let now = Timestamp::now();
        let job = Job::new(name, now);
        let (a, b, c) = (
            task(&job, "a", 0, now),
            task(&job, "b", 0, now),
            task(&job, "c", 5, now),
        );
        slot.with_lock(Access::Create, Durability::Relaxed, |s| {
            s.stage(vec![Change::Put(a.clone()), Change::Put(b.clone())]);
            Ok(())
        })
        .unwrap();
        slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
            assert_eq!(ids(s, now), ["a", "b"]);
            // A claimed task leaves the order; a new one of higher priority comes first.
            s.stage(vec![Change::Put(claimed(&a, now)), Change::Put(c.clone())]);
            assert_eq!(ids(s, now), ["c", "b"]);
            // A step that fails after staging leaves no trace; what came before stays.
            let failed: Result<()> = s.all_or_nothing(|s| {
                s.stage(vec![
                    Change::Put(claimed(&b, now)),
                    Change::Delete(c.id.clone()),
                ]);
                assert_eq!(ids(s, now), Vec::<String>::new());
                Err(Error::backend("refused"))
            });
            assert!(failed.is_err());
            assert_eq!(ids(s, now), ["c", "b"]);
            assert_eq!(s.read_task(&c.id).unwrap(), Some(c.clone()));
            assert_eq!(s.staged.len(), 2);
            Ok(())
        })
        .unwrap();
        slot.with_lock(Access::Existing, Durability::Relaxed, |s| {
            assert_eq!(ids(s, now), ["c", "b"]);
            Ok(())
        })
        .unwrap();
    }
}
