//! Keeping each job's index object up to date: group commit of [`Update`]s, and a snapshot.
//!
//! Every task write is followed by an index write. To keep that from doubling the request
//! count, writers in one process *group-commit*: each adds its update to the job's pending list
//! and waits for the job's flush lock; whoever gets the lock takes every pending update, applies
//! them to the last index this process saw and PUTs it with `If-Match` on that index's ETag —
//! one PUT for all the updates that queued meanwhile. Only when another process wrote the index
//! in between (`412`) does the flusher GET it again and re-apply (updates are idempotent and
//! versioned, see [`crate::index`]).
//!
//! A *claim* (or heartbeat: any write that leaves the task `in_progress`) does not wait for the
//! index: its update is queued and goes out with the next flush, usually the same task's
//! `succeed` moments later, so a claim+succeed costs one index update, not two. Meanwhile this
//! process knows (see [`JobIndex::queued`]); other processes see the task as still claimable,
//! and a claim there costs one GET that finds the lease (and queues the repair). `counts` and
//! `list` flush first, so they always include this process's own changes.
//!
//! The snapshot (the index as this process last read or wrote it) also serves `claim_next`
//! without a GET when it is younger than [`SNAPSHOT_FRESH_FOR`]; a stale snapshot only costs a
//! wasted task GET, because claims re-read and write the task conditionally anyway.

use crate::index::{Entry, Index, Update};
use crate::layout::Layout;
use crate::objects::{Got, Objects, Put};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tasktrack_core::cas::MAX_CAS_ATTEMPTS;
use tasktrack_core::{Error, JobName, Result};

/// How long `claim_next` trusts this process's copy of an index before reading it again.
/// (Process-local freshness, measured with `Instant`; task time still comes from `now`.)
pub const SNAPSHOT_FRESH_FOR: Duration = Duration::from_millis(250);

/// The index as this process last read or wrote it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The index.
    pub index: Arc<Index>,
    /// Its ETag, `None` when the object does not exist yet.
    pub etag: Option<String>,
    /// When it was read or written.
    pub at: Instant,
}

/// One job's index state in this process.
#[derive(Debug, Default)]
pub struct JobIndex {
    flush: tokio::sync::Mutex<()>,
    pending: Mutex<Vec<Update>>,
    snapshot: Mutex<Option<Snapshot>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single assignment or push: a panic cannot leave it half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobIndex {
    /// The snapshot if it is younger than `max_age`.
    pub fn snapshot_within(&self, max_age: Duration) -> Option<Snapshot> {
        lock(&self.snapshot)
            .as_ref()
            .filter(|s| s.at.elapsed() < max_age)
            .cloned()
    }

    fn set_snapshot(&self, index: Arc<Index>, etag: Option<String>) -> Snapshot {
        let s = Snapshot {
            index,
            etag,
            at: Instant::now(),
        };
        *lock(&self.snapshot) = Some(s.clone());
        s
    }

    /// Queues updates to be written with the next flush (deferred claims, repairs found while
    /// reading).
    pub fn enqueue(&self, updates: impl IntoIterator<Item = Update>) {
        lock(&self.pending).extend(updates);
    }

    /// The queued (not yet written) entries by id, newest version last wins: this process's
    /// own changes that the index object does not show yet.
    pub fn queued(&self) -> HashMap<String, Option<Entry>> {
        let mut out: HashMap<String, Option<Entry>> = HashMap::new();
        for u in lock(&self.pending).iter() {
            match u {
                Update::Put(id, e) => {
                    if out
                        .get(id)
                        .and_then(Option::as_ref)
                        .is_none_or(|old| old.version() <= e.version())
                    {
                        out.insert(id.clone(), Some(e.clone()));
                    }
                }
                Update::Remove(id, _) => {
                    out.insert(id.clone(), None);
                }
            }
        }
        out
    }
}

/// Index bookkeeping for all jobs of one store.
#[derive(Debug, Default)]
pub struct Indexer {
    jobs: Mutex<HashMap<JobName, Arc<JobIndex>>>,
}

impl Indexer {
    /// The state for `job`.
    pub fn job(&self, job: &JobName) -> Arc<JobIndex> {
        lock(&self.jobs).entry(job.clone()).or_default().clone()
    }

    /// Reads the index object (a conditional GET when we hold a copy: `304` costs no body).
    pub async fn read(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
    ) -> Result<Snapshot> {
        let ji = self.job(job);
        let held = lock(&ji.snapshot).clone();
        let path = layout.index(job);
        let known_etag = held.as_ref().and_then(|s| s.etag.clone());
        match objects
            .get_json::<Index>(&path, known_etag.as_deref())
            .await?
        {
            Got::Found(index, etag) => Ok(ji.set_snapshot(Arc::new(index), Some(etag))),
            Got::Missing => Ok(ji.set_snapshot(Arc::new(Index::new()), None)),
            Got::Unchanged => match held {
                Some(s) => Ok(ji.set_snapshot(s.index, s.etag)),
                None => Err(Error::Backend(format!(
                    "S3 answered 304 for {path} without a condition"
                ))),
            },
        }
    }

    /// Adds `updates` for `job` and returns once they (and whatever queued with them) are in
    /// the index object. On failure the updates stay queued for the next flush, and the error is
    /// returned: the task documents are already written, so callers log it rather than fail.
    pub async fn write(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        updates: Vec<Update>,
    ) -> Result<()> {
        let ji = self.job(job);
        ji.enqueue(updates);
        self.flush(objects, layout, job, &ji).await
    }

    /// Writes every queued update of `job` (nothing if none).
    pub async fn flush(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        ji: &JobIndex,
    ) -> Result<()> {
        let _turn = ji.flush.lock().await;
        let batch = std::mem::take(&mut *lock(&ji.pending));
        if batch.is_empty() {
            return Ok(()); // an earlier flusher wrote ours
        }
        let result = self.flush_batch(objects, layout, job, ji, &batch).await;
        if result.is_err() {
            let mut pending = lock(&ji.pending);
            let later = std::mem::replace(&mut *pending, batch);
            pending.extend(later);
        }
        result
    }

    async fn flush_batch(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        ji: &JobIndex,
        batch: &[Update],
    ) -> Result<()> {
        let path = layout.index(job);
        // Start from what we last wrote or read: right unless another process wrote since.
        let held = lock(&ji.snapshot).clone();
        let mut base = match held {
            Some(s) => s,
            None => self.read(objects, layout, job).await?,
        };
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let mut next = (*base.index).clone();
            let mut changed = false;
            for u in batch {
                changed |= next.apply(u);
            }
            if !changed {
                return Ok(());
            }
            let body = serde_json::to_vec(&next)
                .map_err(|e| Error::backend(format!("encoding {path}: {e}")))?;
            match objects.put(&path, body, base.etag.as_deref()).await? {
                Put::Written(etag) => {
                    ji.set_snapshot(Arc::new(next), Some(etag));
                    return Ok(());
                }
                Put::Conflict => {
                    pause(attempt).await;
                    base = self.read(objects, layout, job).await?;
                }
            }
        }
        Err(Error::Contention(format!(
            "index of job {job}: too many conflicting writes"
        )))
    }
}

/// A short jittered pause after losing a race on the index, growing with the attempt.
pub async fn pause(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cap_us = 200u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_micros(u64::from(nanos) % cap_us)).await;
}
