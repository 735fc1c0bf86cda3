//! One job's directory under its lock: the journal that keeps the index in step with the task
//! files across processes, and the transaction that changes both.
//!
//! # The protocol
//! Every change happens under the job's advisory lock (`lock`, an `flock`), in four steps:
//!
//! 1. append the transaction's records to `index.log` — an *intent* holding every new task in
//!    full (`{"write": {…task…}}`) — and fsync it,
//! 2. write each new task file into `scratch/`,
//! 3. rename each file over the real one (on Linux, exchange it: see `fsio::exchange`),
//! 4. append a `commit` line (not fsynced), release the lock, and answer the callers.
//!
//! On Linux (where the kernel's boot id is known, see `boot_id`) the fsync of step 1 is the
//! only one: the journal is the commit record, as in a database's write-ahead log. A transaction
//! therefore costs one fsync of one file, however many tasks it writes, where replacing files
//! durably costs an fsync of each file and of their directory (two rounds of disk flushes). The
//! task files are not fsynced because a killed process cannot lose them (the page cache outlives
//! it) and a power loss or kernel crash — a reboot — is repaired from the journal: its header
//! records the boot that wrote it, and the first process of a new boot to touch the job rewrites
//! (and fsyncs) every task file from its last record since the snapshot, then rebuilds the index
//! from the files. Nothing acknowledged is missing from that journal: a transaction answers only
//! after its fsync, which also covers every earlier line; and no task file changes before its
//! record is on disk. Reading stops at the first line a power loss mangled: nothing after it was
//! acknowledged. Job records (rare) are fsynced with their directory under the lock.
//!
//! Where no boot id is available, the intent, the new files and the `tasks/` directory are
//! fsynced in step 1–3 (files in parallel, so they share the file system's journal commits).
//! Under relaxed durability nothing is fsynced.
//!
//! A process killed anywhere in this sequence leaves records after the last `commit`. The lock
//! dies with the process, so the next holder sees that unfinished tail, re-reads the task files
//! it names (each is wholly old or wholly new, thanks to the rename), appends what they really
//! say, commits, and empties `scratch/`. A line torn by the kill is cut off first. The index can
//! therefore never disagree with the files for longer than one lock hold.
//!
//! Each process keeps the index in memory and, on taking the lock, reads only the journal lines
//! appended since it last looked. When the journal grows past twice the number of tasks, the
//! holder rewrites it as a snapshot (one index entry per task) under a new generation id, which
//! tells the other processes to re-read it from the top. The snapshot drops the full records, so
//! it is written only after a `syncfs` of the file system has put every task file on disk. The
//! snapshot follows a commit, so its failure (a full disk) is logged, not the transaction's
//! error; the journal then stays as it was, and the next try waits for more lines. A missing
//! `index.log` is rebuilt from the task files.

use crate::fsio::{self, Durability, corrupt, io_error};
use crate::index::{Entry, JobIndex, Record};
use crate::keys::encode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tasktrack_core::{Error, Job, JobName, Result, Task, TaskId};

/// A journal longer than `2 × tasks + COMPACT_SLACK` lines is rewritten as a snapshot.
pub(crate) const COMPACT_SLACK: u64 = 10_000;

/// Where one job's files live.
#[derive(Debug, Clone)]
pub struct JobPaths {
    /// The job.
    pub job: JobName,
    /// `jobs/<encoded job>/`.
    pub dir: PathBuf,
    /// `tasks/`: one `<encoded id>.json` per task.
    pub tasks: PathBuf,
    /// `scratch/`: files being written, renamed into place when complete.
    pub scratch: PathBuf,
    /// `lock`: the advisory lock every change holds.
    pub lock: PathBuf,
    /// `index.log`: the journal.
    pub journal: PathBuf,
    /// `job.json`: the job record.
    pub job_file: PathBuf,
}

impl JobPaths {
    /// The paths of `job` under the store's `jobs/` directory.
    pub fn new(jobs_dir: &Path, job: &JobName) -> Self {
        let dir = jobs_dir.join(encode(job.as_str()));
        JobPaths {
            job: job.clone(),
            tasks: dir.join("tasks"),
            scratch: dir.join("scratch"),
            lock: dir.join("lock"),
            journal: dir.join("index.log"),
            job_file: dir.join("job.json"),
            dir,
        }
    }

    /// The file of task `id`.
    pub fn task(&self, id: &TaskId) -> PathBuf {
        self.tasks.join(format!("{}.json", encode(id.as_str())))
    }

    /// Reads task `id`: `None` if absent, [`Error::Corrupt`] naming the file if unreadable or if
    /// it holds another task (a hand-moved file, or a hash collision of two long ids).
    pub fn read_task(&self, id: &TaskId) -> Result<Option<Task>> {
        let path = self.task(id);
        let Some(bytes) = fsio::read_optional(&path)? else {
            return Ok(None);
        };
        let task: Task = fsio::from_document(&path, &bytes)?;
        if task.job != self.job || &task.id != id {
            return Err(corrupt(
                &path,
                format!("holds task {}, expected {}/{}", task.key(), self.job, id),
            ));
        }
        Ok(Some(task))
    }

    /// Reads the job record.
    pub fn read_job(&self) -> Result<Option<Job>> {
        let Some(bytes) = fsio::read_optional(&self.job_file)? else {
            return Ok(None);
        };
        let job: Job = fsio::from_document(&self.job_file, &bytes)?;
        if job.name != self.job {
            return Err(corrupt(
                &self.job_file,
                format!("holds job {}, expected {}", job.name, self.job),
            ));
        }
        Ok(Some(job))
    }
}

/// A change to make in one transaction (short-lived, so the size of `Put` does not matter).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// Write this task's file.
    Put(Task),
    /// Remove this task's file.
    Delete(TaskId),
    /// Write the job record.
    PutJob(Job),
    /// Remove the job record.
    DeleteJob,
}

/// The first line of `index.log`.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    schema: u64,
    generation: String,
    /// The kernel boot the journal was written in (see [`boot_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<String>,
}

/// This boot of the machine (`/proc/sys/kernel/random/boot_id` on Linux; `None` elsewhere).
///
/// Only a power loss or a kernel crash — a reboot — can lose what the page cache held. A journal
/// written in another boot than the current one may therefore lag the task files (its lines are
/// not fsynced when the boot is known), and is rebuilt from them by the first process of the new
/// boot. Everything that survives without a reboot (a killed process) is repaired by the
/// intent/commit protocol instead.
pub(crate) fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        let id = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
    .as_deref()
}

const FORMAT: &str = "tasktrack-file-index";

fn open_journal(path: &Path) -> Result<Option<File>> {
    match OpenOptions::new().read(true).append(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("opening", path, e)),
    }
}

/// Reads the header line: `(header, bytes)`. `None` if it is not a header at all.
fn read_header(path: &Path, file: &mut File) -> Result<Option<(Header, u64)>> {
    let mut head = Vec::with_capacity(256);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error("reading", path, e))?;
    Read::by_ref(file)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| io_error("reading", path, e))?;
    let Some(end) = head.iter().position(|b| *b == b'\n') else {
        return Ok(None);
    };
    let Ok(header) = serde_json::from_slice::<Header>(&head[..end]) else {
        return Ok(None);
    };
    if header.format != FORMAT {
        return Ok(None);
    }
    if header.schema != fsio::SCHEMA {
        return Err(corrupt(
            path,
            format!(
                "unknown index schema version {} (this build reads {})",
                header.schema,
                fsio::SCHEMA
            ),
        ));
    }
    Ok(Some((header, end as u64 + 1)))
}

/// Brings `index` up to the end of the journal, repairing what a dead writer left behind, and
/// returns the journal open for appending.
pub(crate) fn catch_up(
    paths: &JobPaths,
    index: &mut JobIndex,
    durability: Durability,
) -> Result<File> {
    let path = &paths.journal;
    let mut file = match open_journal(path)? {
        Some(file) => file,
        // A job's first write: nothing to rebuild from, so nothing to warn about.
        None if !has_task_files(paths) => return rebuild(paths, index, durability, None),
        None => return rebuild(paths, index, durability, Some("index.log is missing")),
    };
    let Some((header, header_len)) = read_header(path, &mut file)? else {
        return rebuild(
            paths,
            index,
            durability,
            Some("index.log has no valid header"),
        );
    };
    if let Some(boot) = boot_id()
        && header.boot.as_deref() != Some(boot)
    {
        roll_forward(paths, &mut file, header_len)?;
        return rebuild(
            paths,
            index,
            durability,
            Some("the machine rebooted since index.log was written"),
        );
    }
    let generation = header.generation;
    let len = file
        .metadata()
        .map_err(|e| io_error("reading", path, e))?
        .len();
    if generation != index.generation || len < index.offset {
        *index = JobIndex::new(generation);
        index.offset = header_len;
        index.lines = 1;
    }
    if len > index.offset {
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(index.offset))
            .map_err(|e| io_error("reading", path, e))?;
        Read::by_ref(&mut file)
            .take(len - index.offset)
            .read_to_end(&mut tail)
            .map_err(|e| io_error("reading", path, e))?;
        let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        for line in tail[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            match serde_json::from_slice::<Record>(line) {
                Ok(record) => index.apply(record),
                Err(e) => {
                    let why = format!("line {} of index.log is unreadable ({e})", index.lines + 1);
                    return rebuild(paths, index, durability, Some(&why));
                }
            }
        }
        index.offset += complete as u64;
        if complete < tail.len() {
            // A writer died mid-line (it held the lock we hold now): cut the torn bytes off.
            file.set_len(index.offset)
                .map_err(|e| io_error("truncating", path, e))?;
        }
    }
    if index.open {
        match recover(paths, index, &mut file, durability) {
            // A file the transaction names is damaged: the files cannot say how to finish it,
            // so the index is rebuilt from them (leaving that one out, see `rebuild`).
            Err(e @ Error::Corrupt { .. }) => {
                let why = format!("a task file of an unfinished transaction is unreadable ({e})");
                return rebuild(paths, index, durability, Some(&why));
            }
            other => other?,
        }
    }
    Ok(file)
}

/// Finishes the transaction of a writer that died holding the lock: the records after the last
/// commit are replaced by what the task files actually say.
fn recover(
    paths: &JobPaths,
    index: &mut JobIndex,
    file: &mut File,
    durability: Durability,
) -> Result<()> {
    let mut ids = std::mem::take(&mut index.uncommitted);
    ids.sort();
    ids.dedup();
    tracing::warn!(job = %paths.job, tasks = ids.len(), "finishing the transaction of a writer that died");
    let mut records = Vec::with_capacity(ids.len() + 1);
    for id in ids {
        records.push(match paths.read_task(&id)? {
            // In full, like every transaction's records: a later roll-forward needs the content.
            Some(task) => Record::Write(Box::new(task)),
            None => Record::Delete { id },
        });
    }
    records.push(Record::Commit);
    fsio::clear_scratch(&paths.scratch)?;
    append(
        &paths.journal,
        file,
        index,
        records,
        durability == Durability::Full,
    )
}

/// Appends records (one JSON object per line) and applies them to `index`.
pub(crate) fn append(
    path: &Path,
    file: &mut File,
    index: &mut JobIndex,
    records: Vec<Record>,
    sync: bool,
) -> Result<()> {
    let mut buf = Vec::with_capacity(records.len() * 160);
    for record in &records {
        serde_json::to_writer(&mut buf, record)
            .map_err(|e| Error::backend(format!("serializing index: {e}")))?;
        buf.push(b'\n');
    }
    file.write_all(&buf)
        .map_err(|e| io_error("appending to", path, e))?;
    if sync {
        file.sync_data().map_err(|e| io_error("syncing", path, e))?;
    }
    index.offset += buf.len() as u64;
    for record in records {
        index.apply(record);
    }
    Ok(())
}

/// After a reboot, restores every task file from its last record in the journal: the one
/// fsynced record of the transactions since the last snapshot (see the module docs). Reading
/// stops at the first line that does not parse: a power loss may have kept only part of the last
/// appends, and nothing after a lost line was acknowledged (a transaction answers only once an
/// fsync of the whole journal, earlier lines included, has returned). Returns how many files it
/// rewrote or removed.
fn roll_forward(paths: &JobPaths, file: &mut File, header_len: u64) -> Result<usize> {
    let path = &paths.journal;
    let mut body = Vec::new();
    file.seek(SeekFrom::Start(header_len))
        .map_err(|e| io_error("reading", path, e))?;
    file.read_to_end(&mut body)
        .map_err(|e| io_error("reading", path, e))?;
    let mut latest: BTreeMap<TaskId, Option<Task>> = BTreeMap::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Record>(line) {
            Ok(Record::Write(task)) => drop(latest.insert(task.id.clone(), Some(*task))),
            Ok(Record::Delete { id }) => drop(latest.insert(id, None)),
            // A snapshot's entries describe files already on disk; job records are fsynced.
            Ok(Record::Put(_) | Record::Job | Record::Commit) => {}
            Err(_) => break,
        }
    }
    if latest.is_empty() {
        return Ok(0);
    }
    tracing::warn!(job = %paths.job, tasks = latest.len(), "restoring task files from index.log after a reboot");
    fsio::create_dir(&paths.scratch)?;
    for (id, task) in &latest {
        let target = paths.task(id);
        match task {
            Some(task) => {
                let bytes = fsio::to_document(&target, task)?;
                let (scratch, handle) = fsio::write_scratch(&paths.scratch, &bytes)?;
                fsio::sync_parallel(&[(&scratch, &handle)])?;
                fsio::rename(&scratch, &target)?;
            }
            None => fsio::remove(&target)?,
        }
    }
    fsio::sync_dir(&paths.tasks, Durability::Full)?;
    Ok(latest.len())
}

/// Whether the job's task folder holds any task file (a rebuild would have something to read).
/// A folder that cannot be listed counts as holding some: the rebuild then reports why.
fn has_task_files(paths: &JobPaths) -> bool {
    match fs::read_dir(&paths.tasks) {
        Ok(mut entries) => entries.any(|entry| {
            entry.map_or(true, |e| {
                is_task_file_name(&e.file_name().to_string_lossy())
            })
        }),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// A task file's name: `<encoded id>.json`, not hidden (hidden names are writes in progress).
fn is_task_file_name(name: &str) -> bool {
    !name.starts_with('.') && name.ends_with(".json")
}

/// Rebuilds the index from the task files (a missing or damaged journal) and returns the new
/// journal. `why` says what was wrong and is logged as a warning; `None` for a job's first
/// write, where there is no journal yet and nothing to rebuild from.
///
/// A task file that does not parse, or holds a task that does not belong at its path, is
/// logged and left out of the index: one damaged file must not make the whole job unusable
/// (every operation of a job starts by catching up its index). It is not touched: `get` of it
/// still answers [`Error::Corrupt`] naming it, writes of it are refused, and once it is
/// repaired, deleting `index.log` indexes it again. An I/O error (a file that cannot be read at
/// all) still fails the rebuild: it may be passing, and skipping would hide a healthy task.
fn rebuild(
    paths: &JobPaths,
    index: &mut JobIndex,
    durability: Durability,
    why: Option<&str>,
) -> Result<File> {
    if let Some(why) = why {
        tracing::warn!(job = %paths.job, "rebuilding the index from the task files: {why}");
    }
    fsio::clear_scratch(&paths.scratch)?;
    let mut fresh = JobIndex::default();
    let entries = match fs::read_dir(&paths.tasks) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("listing", &paths.tasks, e)),
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.map_err(|e| io_error("listing", &paths.tasks, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !is_task_file_name(&name) {
            continue;
        }
        let Some(bytes) = fsio::read_optional(&path)? else {
            continue; // removed since the listing (by hand: every writer waits for our lock)
        };
        let task = fsio::from_document::<Task>(&path, &bytes).and_then(|task| {
            if task.job != paths.job || paths.task(&task.id) != path {
                return Err(corrupt(
                    &path,
                    format!(
                        "holds task {}, which does not belong at this path",
                        task.key()
                    ),
                ));
            }
            Ok(task)
        });
        match task {
            Ok(task) => fresh.apply(Record::Put(Entry::of(&task))),
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(job = %paths.job, error = %e, "leaving an unreadable task file out of the rebuilt index");
            }
            Err(e) => return Err(e),
        }
    }
    fresh.apply(Record::Commit);
    snapshot(paths, &mut fresh, durability)?;
    *index = fresh;
    open_journal(&paths.journal)?
        .ok_or_else(|| Error::backend(format!("{} vanished", paths.journal.display())))
}

/// Rewrites the journal as one line per task under a new generation.
pub(crate) fn snapshot(
    paths: &JobPaths,
    index: &mut JobIndex,
    durability: Durability,
) -> Result<()> {
    let generation = unique_generation();
    let header = Header {
        format: FORMAT.into(),
        schema: fsio::SCHEMA,
        generation: generation.clone(),
        boot: boot_id().map(str::to_owned),
    };
    let to_json = |e: serde_json::Error| Error::backend(format!("serializing index: {e}"));
    let mut buf = serde_json::to_vec(&header).map_err(to_json)?;
    buf.push(b'\n');
    let entries = index.entries_by_id();
    for entry in &entries {
        serde_json::to_writer(&mut buf, &Record::Put((*entry).clone())).map_err(to_json)?;
        buf.push(b'\n');
    }
    serde_json::to_writer(&mut buf, &Record::Commit).map_err(to_json)?;
    buf.push(b'\n');
    let lines = entries.len() as u64 + 2;
    // The snapshot drops the full records that could restore the task files after a power
    // loss, so the files themselves must be on disk first.
    if durability == Durability::Full {
        fsio::sync_filesystem(&paths.tasks)?;
    }
    // Also the moment to drop the recycled inodes that killed processes left behind (live ones
    // fall back to fresh files).
    fsio::clear_scratch(&paths.scratch)?;
    let (scratch, file) = fsio::write_scratch(&paths.scratch, &buf)?;
    if durability == Durability::Full {
        fsio::sync_parallel(&[(&scratch, &file)])?;
    }
    fsio::rename(&scratch, &paths.journal)?;
    fsio::sync_dir(&paths.dir, durability)?;
    index.generation = generation;
    index.offset = buf.len() as u64;
    index.lines = lines;
    index.open = false;
    index.uncommitted.clear();
    Ok(())
}

/// An id no earlier journal of this job had: the writer's pid and the wall-clock nanoseconds.
/// (Only a label that tells readers the journal was replaced; no rule depends on it.)
fn unique_generation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}
