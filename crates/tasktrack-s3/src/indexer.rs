//! Keeping each job's index up to date: sharding, group commit of [`Update`]s, snapshots.
//!
//! A job's index is split into [`SHARDS`] objects by a hash of the task id, so that index
//! writes are small (a shard holds 1/8 of the job) and two processes rarely write the same
//! shard at the same moment.
//!
//! Every task write is followed by an update of its shard. Writers in one process
//! *group-commit*: each adds its update to the shard's pending list and waits for the shard's
//! flush lock; whoever gets the lock takes every pending update, applies them to the last copy
//! of the shard this process saw and PUTs it with `If-Match` on that copy's ETag — one PUT for
//! everything that queued meanwhile. Only when another process wrote the shard in between
//! (`412`) does the flusher GET it again and re-apply (updates are idempotent and versioned, see
//! [`crate::index`]).
//!
//! A *claim* (or heartbeat: any write that leaves the task `in_progress`) does not wait for the
//! index: its update is queued and goes out with the next flush of that shard, usually the same
//! task's `succeed` moments later, so a claim+succeed costs one index update, not two. Meanwhile
//! this process knows ([`Indexer::queued`]); other processes see the task as still claimable,
//! and a claim there costs one GET that finds the lease (and queues the repair). `counts` and
//! `list` flush first, so they always include this process's own changes.
//!
//! The snapshots (each shard as this process last read or wrote it) serve `claim_next` without
//! a GET while younger than [`SNAPSHOT_FRESH_FOR`]; a stale snapshot only costs a wasted task
//! GET, because claims re-read and write the task conditionally anyway.

use crate::index::{Entry, Index, Update};
use crate::layout::Layout;
use crate::objects::{Got, Objects, Put};
use futures::future::try_join_all;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tasktrack_core::cas::MAX_CAS_ATTEMPTS;
use tasktrack_core::{Error, JobName, Result};

/// Index objects per job. Part of the stored format: every process must agree on it.
pub const SHARDS: usize = 8;

/// How long `claim_next` trusts this process's copy of a shard before reading it again.
/// (Process-local freshness, measured with `Instant`; task time still comes from `now`.)
pub const SNAPSHOT_FRESH_FOR: Duration = Duration::from_secs(2);

/// The shard of a task id: FNV-1a of its bytes (stable across platforms and versions).
pub fn shard_of(id: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// A shard as this process last read or wrote it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The shard's entries.
    pub index: Arc<Index>,
    /// Its ETag, `None` when the object does not exist yet.
    pub etag: Option<String>,
    /// When it was read or written.
    pub at: Instant,
}

/// One shard's state in this process.
#[derive(Debug, Default)]
struct Shard {
    flush: tokio::sync::Mutex<()>,
    pending: Mutex<Vec<Update>>,
    /// The batch being written right now: still this process's news until the PUT lands.
    inflight: Mutex<Vec<Update>>,
    snapshot: Mutex<Option<Snapshot>>,
    /// Successful writes of this shard by this process: a read that overlapped one must not
    /// install its (older) result over the written snapshot.
    writes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single assignment or push: a panic cannot leave it half done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shard {
    fn set_snapshot(&self, index: Arc<Index>, etag: Option<String>) -> Snapshot {
        let s = Snapshot {
            index,
            etag,
            at: Instant::now(),
        };
        *lock(&self.snapshot) = Some(s.clone());
        s
    }
}

/// Index bookkeeping for all jobs of one store.
#[derive(Debug, Default)]
pub struct Indexer {
    shards: Mutex<HashMap<(JobName, usize), Arc<Shard>>>,
}

impl Indexer {
    fn shard(&self, job: &JobName, k: usize) -> Arc<Shard> {
        lock(&self.shards)
            .entry((job.clone(), k))
            .or_default()
            .clone()
    }

    /// Queues updates for the next flush of their shards (deferred claims, repairs).
    pub fn enqueue(&self, job: &JobName, updates: impl IntoIterator<Item = Update>) {
        for u in updates {
            lock(&self.shard(job, shard_of(u.id())).pending).push(u);
        }
    }

    /// This process's queued (not yet written) entries of `job` by id: `None` for a removal.
    pub fn queued(&self, job: &JobName) -> HashMap<String, Option<Entry>> {
        let mut out: HashMap<String, Option<Entry>> = HashMap::new();
        for k in 0..SHARDS {
            let shard = self.shard(job, k);
            let unwritten: Vec<Update> = {
                // Lock order everywhere: pending, then inflight.
                let pending = lock(&shard.pending);
                let inflight = lock(&shard.inflight);
                inflight.iter().chain(pending.iter()).cloned().collect()
            };
            for u in &unwritten {
                match u {
                    Update::Put(id, e) => {
                        if out
                            .get(id)
                            .and_then(Option::as_ref)
                            .is_none_or(|old| !old.rev().is_after(e.rev()))
                        {
                            out.insert(id.clone(), Some(e.clone()));
                        }
                    }
                    Update::Remove(id, _) => {
                        out.insert(id.clone(), None);
                    }
                }
            }
        }
        out
    }

    /// Adds `updates` and returns once they (and whatever queued with them) are in the shard
    /// objects. On failure the updates stay queued for the next flush and the error is
    /// returned: the task documents are written already, so callers log it rather than fail.
    pub async fn write(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        updates: Vec<Update>,
    ) -> Result<()> {
        let mut touched = [false; SHARDS];
        for u in updates {
            let k = shard_of(u.id());
            touched[k] = true;
            lock(&self.shard(job, k).pending).push(u);
        }
        let flushes = (0..SHARDS)
            .filter(|k| touched[*k])
            .map(|k| self.flush(objects, layout, job, k));
        try_join_all(flushes).await.map(|_| ())
    }

    /// Writes every queued update of every shard of `job`.
    pub async fn flush_all(&self, objects: &Objects, layout: &Layout, job: &JobName) -> Result<()> {
        let flushes = (0..SHARDS).map(|k| self.flush(objects, layout, job, k));
        try_join_all(flushes).await.map(|_| ())
    }

    /// Every shard as it is now (conditional GETs: `304` when our copy is current).
    pub async fn read_all(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
    ) -> Result<Vec<Snapshot>> {
        try_join_all((0..SHARDS).map(|k| self.read(objects, layout, job, k))).await
    }

    /// Every shard, from our copies when younger than `max_age`; `true` if all were read now.
    pub async fn view(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        max_age: Duration,
    ) -> Result<(Vec<Snapshot>, bool)> {
        let mut fresh = true;
        let mut out = Vec::with_capacity(SHARDS);
        for k in 0..SHARDS {
            let held = lock(&self.shard(job, k).snapshot).clone();
            match held.filter(|s| s.at.elapsed() < max_age) {
                Some(s) => {
                    fresh = false;
                    out.push(s);
                }
                None => out.push(self.read(objects, layout, job, k).await?),
            }
        }
        Ok((out, fresh))
    }

    /// Reads shard `k` (a conditional GET when we hold a copy: `304` costs no body).
    async fn read(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        k: usize,
    ) -> Result<Snapshot> {
        let shard = self.shard(job, k);
        let writes_before = shard.writes.load(Ordering::Acquire);
        let held = lock(&shard.snapshot).clone();
        let path = layout.index(job, k);
        let known_etag = held.as_ref().and_then(|s| s.etag.clone());
        let (index, etag) = match objects
            .get_json::<Index>(&path, known_etag.as_deref())
            .await?
        {
            Got::Found(index, etag) => (Arc::new(index), Some(etag)),
            Got::Missing => (Arc::new(Index::new()), None),
            Got::Unchanged => match held {
                Some(s) => (s.index, s.etag),
                None => {
                    return Err(Error::Backend(format!(
                        "S3 answered 304 for {path} without a condition"
                    )));
                }
            },
        };
        if shard.writes.load(Ordering::Acquire) != writes_before
            && let Some(current) = lock(&shard.snapshot).clone()
        {
            // We wrote the shard while this GET was in flight: our written copy is newer.
            return Ok(current);
        }
        Ok(shard.set_snapshot(index, etag))
    }

    /// Writes every queued update of shard `k` (nothing if none).
    async fn flush(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        k: usize,
    ) -> Result<()> {
        let shard = self.shard(job, k);
        let _turn = shard.flush.lock().await;
        let batch = {
            let mut pending = lock(&shard.pending);
            let batch = std::mem::take(&mut *pending);
            // Visible to `queued` until the write lands (same lock order: pending, inflight).
            lock(&shard.inflight).clone_from(&batch);
            batch
        };
        if batch.is_empty() {
            return Ok(()); // an earlier flusher wrote ours
        }
        let result = self
            .flush_batch(objects, layout, job, k, &shard, &batch)
            .await;
        lock(&shard.inflight).clear();
        if result.is_err() {
            let mut pending = lock(&shard.pending);
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
        k: usize,
        shard: &Shard,
        batch: &[Update],
    ) -> Result<()> {
        let path = layout.index(job, k);
        // Start from what we last wrote or read: right unless another process wrote since.
        let held = lock(&shard.snapshot).clone();
        let mut base = match held {
            Some(s) => s,
            None => self.read(objects, layout, job, k).await?,
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
            // Unverified: should a refusal be our own write landed on an attempt whose answer
            // was lost, the re-read below finds our entries in place and writes nothing more.
            match objects
                .put_unverified(&path, body, base.etag.as_deref())
                .await?
            {
                Put::Written(etag) => {
                    shard.set_snapshot(Arc::new(next), Some(etag));
                    shard.writes.fetch_add(1, Ordering::AcqRel);
                    return Ok(());
                }
                Put::Conflict(_) => {
                    pause(attempt).await;
                    base = self.read(objects, layout, job, k).await?;
                }
            }
        }
        Err(Error::Contention(format!(
            "index of job {job}: too many conflicting writes"
        )))
    }

    /// Replaces shard `k` by `rebuilt` (keeping entries of later states written meanwhile).
    pub async fn replace(
        &self,
        objects: &Objects,
        layout: &Layout,
        job: &JobName,
        k: usize,
        rebuilt: &Index,
    ) -> Result<()> {
        let path = layout.index(job, k);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let current = self.read(objects, layout, job, k).await?;
            let mut next = rebuilt.clone();
            for (id, e) in &current.index.tasks {
                if next
                    .tasks
                    .get(id)
                    .is_some_and(|mine| e.rev().is_after(mine.rev()))
                {
                    next.tasks.insert(id.clone(), e.clone());
                }
            }
            let body = serde_json::to_vec(&next)
                .map_err(|e| Error::backend(format!("encoding {path}: {e}")))?;
            if let Put::Written(etag) = objects
                .put_unverified(&path, body, current.etag.as_deref())
                .await?
            {
                let shard = self.shard(job, k);
                shard.set_snapshot(Arc::new(next), Some(etag));
                shard.writes.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
            pause(attempt).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::fake::{LostAnswers, objects};

    /// Shards are written unverified: a shard PUT that landed but whose retry was refused is
    /// taken for a lost race, and the re-read finds our entries in place.
    #[tokio::test]
    async fn a_shard_write_refused_on_retry_after_it_landed_is_not_sent_again() {
        let bucket = Arc::new(LostAnswers::default());
        let objects = objects(bucket.clone());
        let (layout, job) = (Layout::new("p"), JobName::new("j").unwrap());
        let indexer = Indexer::default();
        let entry = Entry(0, 0, Some(0), 1, 0, None, 0);
        let k = shard_of("t1");
        bucket.lose_next_put(&format!(".index-{k}"));
        indexer
            .write(
                &objects,
                &layout,
                &job,
                vec![Update::Put("t1".into(), entry.clone())],
            )
            .await
            .unwrap();
        assert_eq!(bucket.lost(), 1, "the fault fired");
        let counted = objects.requests();
        assert_eq!(counted.put, 1, "written once: {counted:?}");
        let fresh = Indexer::default();
        let shards = fresh.read_all(&objects, &layout, &job).await.unwrap();
        assert_eq!(shards[k].index.tasks.get("t1"), Some(&entry));
        assert!(indexer.queued(&job).is_empty(), "nothing left to write");
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("t00001"), shard_of("t00001"));
        let mut seen = [0usize; SHARDS];
        for i in 0..8000 {
            seen[shard_of(&format!("t{i:05}"))] += 1;
        }
        assert!(seen.iter().all(|n| (700..1300).contains(n)), "{seen:?}");
    }
}
