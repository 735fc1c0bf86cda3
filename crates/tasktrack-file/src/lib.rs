//! # tasktrack-file
//!
//! `file://dir`: a tasktrack store made of JSON files, for people who want no database at all and
//! want to read their task records with `cat` and `jq`. Several processes on one machine may use
//! the same directory at once, and a process killed at any moment loses and corrupts nothing.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tasktrack_core::Result<()> {
//! use tasktrack_core::*;
//! let dir = tempfile::tempdir().map_err(|e| Error::backend(e))?;
//! let store = tasktrack_file::open(&format!("file://{}", dir.path().display())).await?;
//! let job = JobName::new("convert")?;
//! store.create(&job, &[NewTask::new(TaskId::new("a.png")?)], CreateMode::SkipExisting, Timestamp::now()).await?;
//! let claimed = store.claim_next(&job, &ClaimNext::new("w1", DEFAULT_LEASE), Timestamp::now()).await?;
//! store.succeed(&claimed[0].lease, serde_json::json!({"ok": true}), Timestamp::now()).await?;
//! // dir/jobs/convert/tasks/a%2Epng.json now says "status": "succeeded".
//! # Ok(()) }
//! ```
//!
//! # URL
//! `file://relative/dir` or `file:///absolute/dir`, with an optional `?durability=relaxed`
//! (default `full`). The directory is created if needed.
//!
//! # Layout
//! ```text
//! <dir>/tasktrack-file.json             marker: {"schema": 1, "format": "tasktrack-file"}
//! <dir>/jobs/<job>/job.json             the job record (schema 1)
//! <dir>/jobs/<job>/tasks/<id>.json      one task record per file (the Task JSON + "schema": 1)
//! <dir>/jobs/<job>/index.log            the job's journal index (JSON Lines, see below)
//! <dir>/jobs/<job>/lock                 the advisory lock every change of the job holds
//! <dir>/jobs/<job>/scratch/             files being written, and recycled inodes (see Atomicity)
//! ```
//! `<job>` and `<id>` are the names percent-encoded by [`keys::encode`]: every byte outside
//! `[a-z0-9_-]` (upper-case letters included) becomes `%XX`, so `a.png` is `a%2Epng` and no
//! name can climb out (`..`), collide on a case-insensitive or normalising file system, or
//! exceed a file name's length (long names end in `~` and a SHA-256; the full key stays inside
//! the JSON and is checked on every read).
//!
//! `index.log` starts with a header line (`format`, `schema`, `generation`), then one record per
//! line: `{"put": {id, version, status, stage, priority, claimable_at, updated_at}}`,
//! `{"write": {…the whole task…}}`, `{"delete": {"id": …}}`, `"job"`, and `"commit"` closing
//! each transaction (`put` lines are a snapshot's, `write` lines a transaction's). Delete it and
//! the next process rebuilds it from the task files.
//!
//! # Atomicity
//! Every change of a job (create, claim, succeed, any write) holds the job's `lock` (an `flock`
//! through `fs4`, plus a mutex within the process) around its read-check-write. A task file is
//! never written in place: the new content goes to `scratch/`, is renamed over the
//! old file (on Linux *exchanged* with it, `renameat2(RENAME_EXCHANGE)`, so that the old inode is
//! reused for a later write instead of freed: ext4's inode allocation was half the CPU of a
//! write), so a reader (and a killed process) sees the old or the new record, never part of
//! one. The journal records an intent, holding each new task in full, before the renames and a
//! `commit` after; a writer killed in between leaves an open transaction that the next lock
//! holder finishes by re-reading the few task files it names. On Linux the intent is the one
//! thing fsynced (the journal is a write-ahead log: after a reboot it restores any task file a
//! power loss undid), so a transaction costs one fsync; elsewhere the files and their directory
//! are fsynced too (see [`journal`]).
//!
//! Conditional writes compare the task's `version` and `created_at` under the lock
//! ([`tasktrack_core::cas::task_revision`]), so the generic compare-and-swap adapter of
//! `tasktrack-core` gives every rule. The hot paths — `claim_next` and the lease holder's
//! `succeed`, `fail`, `release`, `heartbeat`, `patch_data` — run natively under the lock but
//! apply the same pure rules from `lifecycle`; so does the hand-off
//! (`succeed_and_claim_next`), whose success and next claims are one transaction (one journal
//! fsync per task for a worker looping on it, instead of two). Concurrent writers of one job
//! in one process are batched into one transaction (group commit: the first caller leads and
//! runs everything queued, then hands the leadership to a waiting caller if more was queued
//! meanwhile and returns; each operation sees the changes of those before it, as if they had
//! run one after the other). Readers of a single task (`get`) take no lock.
//!
//! With `?durability=relaxed` nothing is fsynced: a killed process still loses nothing (the page
//! cache outlives it), but a power loss or kernel crash may lose the last changes, and may leave
//! `index.log` behind the task files (delete it to rebuild).
//!
//! # Limits
//! - One machine: advisory locks are not reliable over network file systems (NFS, SMB). Use a
//!   server backend to share work between machines.
//! - Changes within one job are serialized by its lock (jobs are independent). A transaction
//!   holds the lock for one fsync (of the journal, on Linux); every write batched into it
//!   shares it. Processes do not batch with each other.
//! - After a reboot, the first process to touch a job restores the task files from the journal
//!   and rebuilds its index from them (Linux; reading every file of the job once). Until a
//!   process has touched the job, `cat` may show a file as it was before the last changes. See `docs/benchmarks/file.md` for measured figures.
//! - Each process keeps each job's index in memory (~200 bytes a task) and replays the journal
//!   once when it first touches the job: about a second at 100,000 tasks.
//! - `counts` and `claim_next` read the index only (O(statuses) and O(claimed)); `list` filters
//!   the index and reads only the page's files; `jobs` reads every `job.json`.
//! - Deleting a job removes its records, damaged task files included, but keeps its directory,
//!   lock file and journal, because another process may be waiting on that lock file.
//! - Hand edits: reading with `cat`/`jq` is the point; editing a task file by hand is not
//!   supported while the store is in use (delete `index.log` afterwards to re-index). A file that
//!   does not parse, or has an unknown schema version, is an [`Error::Corrupt`] naming it; every
//!   other task stays readable: `claim_next` skips it (logging it), `list` names it in the
//!   page's `unreadable` at its index position (`TaskPage::unreadable`), and an index
//!   rebuild (a deleted or damaged `index.log`, a reboot) leaves it out, so it is no longer
//!   counted until it is repaired and `index.log` deleted again. Deleting the job removes it.
//!   Likewise `jobs` (and `purge` of all jobs) ignores entries of `jobs/` that are not
//!   directories (`.DS_Store`, a README) and leaves out, logging it, a `job.json` that does not
//!   parse or names another job; `get_job` and `counts` of that job name the file.
//!
//! # Testing
//! Needs no server: `cargo nextest run -p tasktrack-file --all-features` runs the conformance
//! suite and the testkit's `Documents` case, key-encoding and corruption tests, a check that a
//! hand-off is one transaction, a 4-process × 4-worker test over 2,000 tasks and a SIGKILL loop
//! (the test binary re-runs itself as the worker processes; half their workers hand off, half
//! call `succeed` then `claim_next`).
//!
//! # Modules
//! - [`keys`]: key encoding. [`journal`]: the journal and the transaction protocol.
//! - `session`: the job lock, group commit. `index`: the in-memory claim order and counts.
//! - `documents`: [`FileDocuments`].
//! - `store`: [`FileStore`]. `fsio`: file primitives and the one error mapping.

mod documents;
mod fsio;
mod index;
pub mod journal;
pub mod keys;
mod session;
mod store;

pub use documents::FileDocuments;
pub use fsio::Durability;
pub use store::FileStore;

use std::path::PathBuf;
use tasktrack_core::{Error, Result, Store};

/// Parses `file://dir[?durability=full|relaxed]` into a directory and a durability.
pub fn parse_url(url: &str) -> Result<(PathBuf, Durability)> {
    let rest = url.strip_prefix("file://").ok_or_else(|| {
        Error::invalid(format!(
            "{url:?} is not a file:// URL (file://dir or file:///abs/dir)"
        ))
    })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|e| Error::invalid(format!("{url:?}: the path is not UTF-8 once decoded: {e}")))?;
    if path.is_empty() {
        return Err(Error::invalid(format!(
            "{url:?} names no directory; expected file://dir or file:///abs/dir"
        )));
    }
    let mut durability = Durability::Full;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        durability = match pair {
            "durability=full" => Durability::Full,
            "durability=relaxed" => Durability::Relaxed,
            other => {
                return Err(Error::invalid(format!(
                    "{url:?}: unknown option {other:?}; known: durability=full, durability=relaxed"
                )));
            }
        };
    }
    Ok((PathBuf::from(path.as_ref()), durability))
}

/// Opens (creating if needed) the store a `file://` URL names.
pub async fn open(url: &str) -> Result<FileStore> {
    let (dir, durability) = parse_url(url)?;
    let store = FileStore::new(FileDocuments::new(dir, durability));
    store.init().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("file://data/tt").unwrap(),
            (PathBuf::from("data/tt"), Durability::Full)
        );
        assert_eq!(
            parse_url("file:///abs/dir").unwrap().0,
            PathBuf::from("/abs/dir")
        );
        assert_eq!(
            parse_url("file://d?durability=relaxed").unwrap().1,
            Durability::Relaxed
        );
        assert_eq!(
            parse_url("file://my%20dir").unwrap().0,
            PathBuf::from("my dir")
        );
        assert!(parse_url("file://").is_err());
        assert!(parse_url("sqlite://x").is_err());
        assert!(parse_url("file://d?fsync=no").is_err());
    }
}
