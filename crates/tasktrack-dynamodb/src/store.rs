//! [`DynamoStore`]: the compare-and-swap adapter over [`DynamoDocuments`], with the hot paths
//! (claim_next, and the lease holder's heartbeat / succeed / fail / release / patch) restated
//! to save requests. Every write stays conditional; the rules stay in `tasktrack_core::lifecycle`.

use crate::documents::DynamoDocuments;
use crate::fit::{self, ClaimWrite, Fitted};
use crate::item::Item;
use crate::pool::{CandidatePool, POOL_SIZE, Slot};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tasktrack_core::cas::{self, Documents, MAX_CAS_ATTEMPTS, Versioned};
use tasktrack_core::lifecycle;
use tasktrack_core::*;

/// Extra claim candidates fetched beyond the batch size, so that a worker that loses a race for
/// the head of the queue has others to try without another Query.
const SPREAD: usize = 8;
/// How many `claim_next` calls start at a random candidate after a race was lost.
const CONTENDED_CALLS: u32 = 16;
/// The most task copies [`DynamoStore`] remembers (see `recent`).
const RECENT_CAPACITY: usize = 10_000;

/// The `dynamodb://` store.
#[derive(Debug)]
pub struct DynamoStore {
    docs: DynamoDocuments,
    /// Tasks a worker of this process is claiming right now: the other local workers skip
    /// them instead of racing for the same item (they would lose and retry).
    claiming: Mutex<HashSet<TaskKey>>,
    /// The last copy this process wrote of each task it holds in progress. A lease holder's
    /// next write (heartbeat, succeed, ...) is tried on this copy first, conditional on its
    /// version, which saves the read; if anyone wrote the task meanwhile the condition fails
    /// and the operation falls back to read-apply-write. A stale copy can thus never win.
    recent: Mutex<HashMap<TaskKey, Task>>,
    /// How many more `claim_next` calls start at a random candidate: set when a claim loses a
    /// race to another process (they all Query the same head of the queue), counted down by
    /// each call. Zero — strict claim order — for a worker that never races.
    contended: AtomicU32,
    /// Claim candidates fetched and not tried yet, shared by this process's workers.
    pool: CandidatePool,
    /// Held by the worker refilling the pool, so that workers finding it empty at the same
    /// moment make one Query, not one each.
    refilling: tokio::sync::Mutex<()>,
    /// Set by [`DynamoStore::temporary`]: the table is deleted when the store is dropped.
    temporary: Option<crate::Settings>,
}

/// One claim about to be written: the candidate as read, the task as the claim makes it (with
/// its item), the lease the caller gets if it is written (`None`: the claim exhausts the task
/// instead), and the local reservation, held until the write's outcome is known.
struct Attempt<'a> {
    candidate: Versioned<Task>,
    fitted: Fitted,
    lease: Option<Lease>,
    reserved: Reserved<'a>,
}

/// Removes a key from `claiming` when the attempt ends, however it ends.
struct Reserved<'a> {
    set: &'a Mutex<HashSet<TaskKey>>,
    key: TaskKey,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Both maps are hints (a lost entry costs one request), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DynamoStore {
    pub(crate) fn new(docs: DynamoDocuments) -> Self {
        DynamoStore {
            docs,
            claiming: Mutex::default(),
            recent: Mutex::default(),
            contended: AtomicU32::new(0),
            pool: CandidatePool::default(),
            refilling: tokio::sync::Mutex::default(),
            temporary: None,
        }
    }

    /// Marks the table as temporary: dropping the store deletes it (tests and benchmarks use
    /// one table each). `settings` are the ones the store was opened with.
    pub fn temporary(mut self, settings: crate::Settings) -> Self {
        self.temporary = Some(settings);
        self
    }

    /// The document layer (the generic adapter's view of the table).
    pub fn documents(&self) -> &DynamoDocuments {
        &self.docs
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.docs.table
    }

    /// Deletes the whole table (tests and benchmarks use it to clean up).
    pub async fn drop_table(&self) -> Result<()> {
        crate::schema::drop_tables(&self.docs.client, &self.docs.table, &self.docs.endpoint).await
    }

    /// `claim_next`'s rounds (see it in the `Store` impl), pushing each task won onto `won` as
    /// soon as its write succeeded.
    async fn claim_into(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
        won: &mut Vec<Claimed>,
    ) -> Result<()> {
        let claim = Claim::new(req.owner.clone(), req.lease_for);
        let slot: Slot = (job.clone(), req.stage.clone());
        // Queries made, and whether the candidates since the last one led anywhere (a claim
        // tried, or a candidate that a local worker is claiming right now).
        let (mut queries, mut progress) = (0, false);
        loop {
            let (attempts, busy) = self.pick(&slot, &claim, now, req.limit - won.len())?;
            progress |= busy;
            if attempts.is_empty() {
                if queries == MAX_CAS_ATTEMPTS || (queries > 0 && !progress) {
                    break;
                }
                if queries > 0 {
                    crate::txn::pause(queries.min(4)).await;
                }
                queries += 1;
                progress = false;
                // One worker at a time refills; the others then take from what it fetched.
                let _refilling = self.refilling.lock().await;
                if self.pool.has(&slot, now) {
                    continue;
                }
                if !self.refill(&slot, now, req.limit - won.len()).await? {
                    break;
                }
                continue;
            }
            progress = true;
            // Several claims (a batch) go out in one transaction; one claim is one PutItem.
            // The reservations are held until the outcomes are known.
            let n = attempts.len();
            let (mut olds, mut news, mut leases, mut reserved) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for a in attempts {
                olds.push(a.candidate);
                news.push(a.fitted);
                leases.push(a.lease);
                reserved.push(a.reserved);
            }
            let written = self.docs.write_all(olds.iter().zip(news).collect()).await?;
            let (mut lost, mut failed) = (false, None);
            for (lease, written) in leases.into_iter().zip(written) {
                match written {
                    Ok(Some(task)) => {
                        self.remember(&task);
                        won.extend(lease.map(|lease| Claimed { task, lease }));
                    }
                    Ok(None) => lost = true,
                    // One claim of the batch could not be written (the others may have
                    // been): the caller keeps what was won (see `cas::keep_won`).
                    Err(e) => failed = failed.or(Some(e)),
                }
            }
            drop(reserved);
            if let Some(e) = failed {
                return Err(e);
            }
            if lost {
                self.contended.store(CONTENDED_CALLS, Ordering::Relaxed);
                self.pool.shuffle(&slot);
            }
            if won.len() >= req.limit {
                break;
            }
        }
        Ok(())
    }

    /// Queries the claim index for `slot`'s next candidates (at least `want` plus a spread,
    /// so that a lost race has others to try) into the pool. `false`: there are none.
    async fn refill(&self, slot: &Slot, now: Timestamp, want: usize) -> Result<bool> {
        let generation = self.pool.generation();
        let fetch = (want + SPREAD).max(POOL_SIZE);
        let mut candidates = self
            .docs
            .claimable(&slot.0, slot.1.as_deref(), now, fetch)
            .await?;
        if candidates.is_empty() {
            return Ok(false);
        }
        // Under contention, spread the workers of different processes over the candidates.
        let contended = self.contended.load(Ordering::Relaxed);
        if contended > 0 {
            shuffle(&mut candidates);
            self.contended.store(contended - 1, Ordering::Relaxed);
        }
        self.pool.fill(slot.clone(), now, generation, candidates);
        Ok(true)
    }

    /// Runs a change that may make tasks claimable, then drops the claim pools so that this
    /// process's next claims see it.
    async fn changing<T>(&self, change: impl Future<Output = Result<T>>) -> Result<T> {
        let result = change.await;
        self.pool.invalidate();
        result
    }

    /// Takes up to `want` candidates from `slot`'s pool that this worker can try now: still
    /// claimable at `now`, not being claimed by another local worker, granted (or exhausted) by
    /// the lifecycle rule, fitted into an item (`crate::fit`: a task that cannot hold a lease
    /// is exhausted instead). The flag: some candidate was skipped because a local worker holds
    /// it.
    fn pick(
        &self,
        slot: &Slot,
        claim: &Claim,
        now: Timestamp,
        want: usize,
    ) -> Result<(Vec<Attempt<'_>>, bool)> {
        let (mut attempts, mut busy) = (Vec::new(), false);
        while attempts.len() < want {
            let Some(candidate) = self.pool.take(slot, now) else {
                break;
            };
            if !candidate.value.is_claimable(now) || self.held_since(&candidate.value, now) {
                continue;
            }
            let Some(reserved) = self.reserve(&candidate.value.key()) else {
                busy = true; // a local worker is on it; look again shortly
                continue;
            };
            // lifecycle::claim decides; an expired lease at max attempts becomes exhausted.
            let limit = self.docs.item_limit;
            let (fitted, lease) = match fit::fit_claim(limit, &candidate.value, claim, now) {
                Ok(ClaimWrite::Write(fitted, lease)) => (fitted, lease),
                Ok(ClaimWrite::Refused(_)) => continue,
                // A counter at the top of its range (edited by hand): left out and noted, so
                // that it cannot stop the job's claims.
                Err(e @ Error::Corrupt { .. }) => {
                    let key = candidate.value.key();
                    self.docs
                        .damaged
                        .note("dynamodb", &key, &candidate.revision, &e);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(ClaimWrite::Unwritable(why)) => {
                    // Over the limit even as exhausted (written under a larger `item_limit`):
                    // left out, so that it never fails the claims of the others.
                    tracing::warn!(task = %candidate.value.key(), "not claimable: {why}");
                    continue;
                }
            };
            attempts.push(Attempt {
                candidate,
                fitted,
                lease,
                reserved,
            });
        }
        Ok((attempts, busy))
    }

    /// Whether this process has since written `candidate` (a pool's copy) with a live lease (a
    /// claim by id, by any owner): not claimable, whoever holds it. Trying it would lose the
    /// write (taken for contention), or, for the holder's own claim made at the same instant,
    /// replay it: the holder would get the task again as if newly claimed.
    fn held_since(&self, candidate: &Task, now: Timestamp) -> bool {
        lock(&self.recent)
            .get(&candidate.key())
            .is_some_and(|copy| copy.version > candidate.version && !copy.is_claimable(now))
    }

    /// After a lease holder's write of `task` (a success, a patch): a pool's copy of it is
    /// stale. If the task is claimable afterwards (a success at a non-final pipeline stage:
    /// pending at the next one; a patch by a holder whose lease ran out), the pools are dropped,
    /// so that the next claims see it in its order; otherwise (a final success) it is only taken
    /// out of them. A stale copy left there (the task's expired lease, taken into a pool before
    /// its late holder finished it) would lose its write at the next claim, which takes that for
    /// contention with another process and shuffles the claim order.
    fn wrote(&self, task: &Task, now: Timestamp) {
        let pending = task.status != Status::InProgress && task.claimable_at().is_some();
        if pending || task.is_claimable(now) {
            self.pool.invalidate();
        } else {
            self.pool.remove(&task.key());
        }
    }

    fn reserve(&self, key: &TaskKey) -> Option<Reserved<'_>> {
        lock(&self.claiming).insert(key.clone()).then(|| Reserved {
            set: &self.claiming,
            key: key.clone(),
        })
    }

    fn remember(&self, task: &Task) {
        let mut recent = lock(&self.recent);
        if task.status == Status::InProgress {
            if recent.len() >= RECENT_CAPACITY {
                recent.clear();
            }
            recent.insert(task.key(), task.clone());
        } else {
            recent.remove(&task.key());
        }
    }

    /// Applies a lease holder's `rule` to the remembered copy and writes it conditionally:
    /// the task as stored and the rule's result. `None`: no copy, the rule refused on it, or
    /// the copy was stale — take the normal path.
    async fn on_recent<R>(
        &self,
        key: &TaskKey,
        rule: impl FnOnce(&Task) -> Option<(Task, R)>,
    ) -> Result<Option<(Task, R)>> {
        let Some(copy) = lock(&self.recent).get(key).cloned() else {
            return Ok(None);
        };
        let Some((new, result)) = rule(&copy) else {
            return Ok(None);
        };
        let revision = copy.version.to_string();
        let old = Versioned::new(copy, revision);
        let fitted = self.docs.fit(Some(&old.value), new)?;
        if let Some(stored) = self.docs.write(&old, fitted).await? {
            self.remember(&stored);
            return Ok(Some((stored, result)));
        }
        lock(&self.recent).remove(key);
        Ok(None)
    }

    /// The compare-and-swap loop of `cas::update_task` (read, apply `rule`, write if unchanged,
    /// again on a conflict), answering the task as stored: `rule` gives the task to write,
    /// fitted into an item (`crate::fit`), or the error to answer (nothing written).
    async fn update_fitted(
        &self,
        key: &TaskKey,
        mut rule: impl FnMut(&Task) -> Result<Fitted> + Send,
    ) -> Result<Task> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let Some(current) = self.docs.get_task(key).await? else {
                return Err(Error::NotFound(format!("task {key}")));
            };
            let new = rule(&current.value)?;
            if let Some(stored) = self.docs.write(&current, new).await? {
                return Ok(stored);
            }
            crate::txn::pause(attempt).await;
        }
        Err(Error::Contention(format!(
            "task {key}: too many conflicting writes"
        )))
    }

    /// [`DynamoStore::update_fitted`] of a lifecycle rule's task.
    async fn update(
        &self,
        key: &TaskKey,
        rule: impl Fn(&Task) -> Result<Task> + Send + Sync,
    ) -> Result<Task> {
        self.update_fitted(key, |t| self.docs.fit(Some(t), rule(t)?))
            .await
    }

    /// `cas::report`, its write fitted (`crate::fit`) and answering the task as stored.
    async fn report_outcome(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task> {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let written = match self.docs.get_task(key).await? {
                Some(current) => {
                    let job = Job::new(key.job.clone(), now);
                    let new = lifecycle::report(Some(&current.value), &job, key, req, now)?;
                    if new == current.value {
                        return Ok(new);
                    }
                    let fitted = self.docs.fit(Some(&current.value), new)?;
                    self.docs.write(&current, fitted).await?
                }
                None => {
                    let job = cas::ensure_job(&self.docs, &key.job, now).await?;
                    let new = lifecycle::report(None, &job, key, req, now)?;
                    self.docs.insert(self.docs.fit(None, new)?).await?
                }
            };
            if let Some(task) = written {
                return Ok(task);
            }
            crate::txn::pause(attempt).await;
        }
        Err(Error::Contention(format!(
            "task {key}: too many conflicting writes"
        )))
    }

    /// `Store::create`: `cas::create` with one outcome per task (see the `create` above).
    async fn create_tasks(
        &self,
        name: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created> {
        // Every task's input first: a refused create writes nothing, not even its job record.
        for new in tasks {
            lifecycle::check_new_task(name, new)?;
        }
        let job = cas::ensure_job(&self.docs, name, now).await?;
        // Each task's item is built once: here, where a task over the item size limit refuses
        // the whole call before anything is written, as any other invalid task does
        // (conformance: a refused create writes nothing); then it is sent.
        let (fresh, items): (Vec<Task>, Vec<Item>) = tasks
            .iter()
            .map(|n| {
                let fitted = self.docs.fit(None, lifecycle::create_task(&job, n, now)?)?;
                Ok((fitted.task, fitted.item))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let mut items = items.into_iter();
        let mut created = Created::default();
        let mut refused = Vec::new();
        for (news, chunk) in tasks.chunks(500).zip(fresh.chunks(500)) {
            let chunk_items = items.by_ref().take(chunk.len()).map(Ok).collect();
            let inserted = self.docs.insert_each(chunk, chunk_items).await?;
            for ((new, task), outcome) in news.iter().zip(chunk).zip(inserted) {
                match outcome {
                    Ok(true) => created.created += 1,
                    Ok(false) if mode == CreateMode::Replace => {
                        let replaced = self
                            .update(&task.key(), |old| {
                                lifecycle::replace_task(old, &job, new, now)
                            })
                            .await;
                        match replaced {
                            Ok(_) => created.replaced += 1,
                            Err(e @ Error::InvalidInput(_)) => refused.push(e),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(false) => created.existing += 1,
                    Err(e @ Error::InvalidInput(_)) => refused.push(e),
                    Err(e) => return Err(e),
                }
            }
        }
        if refused.is_empty() {
            return Ok(created);
        }
        Err(not_all_created(&refused, &created))
    }

    /// A fenced lifecycle rule: on the remembered copy first, then the adapter's loop.
    async fn fenced<F>(&self, lease: &Lease, rule: F) -> Result<Task>
    where
        F: Fn(&Task) -> Result<Task> + Send + Sync,
    {
        if let Some((task, ())) = self
            .on_recent(&lease.key, |t| rule(t).ok().map(|n| (n, ())))
            .await?
        {
            return Ok(task);
        }
        let result = match self.update(&lease.key, &rule).await {
            Err(Error::NotFound(_)) => Err(Error::StaleLease {
                key: lease.key.to_string(),
                token: lease.token,
            }),
            other => other,
        };
        if let Ok(task) = &result {
            self.remember(task);
        }
        result
    }
}

impl Drop for DynamoStore {
    fn drop(&mut self) {
        let Some(settings) = self.temporary.take() else {
            return;
        };
        // Drop cannot be async and may run inside a runtime: delete from a thread of its own,
        // with a client of its own, and wait for it so the table is gone when the test ends.
        let deleting = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, endpoint) = settings.client().await.ok()?;
                crate::schema::drop_tables(&client, &settings.table, &endpoint)
                    .await
                    .ok()
            })
        });
        if deleting.join().ok().flatten().is_none() {
            tracing::warn!(table = %self.docs.table, "could not delete the temporary DynamoDB table");
        }
    }
}

/// The error of a `create` that wrote every task but `refused`: names them (the first few in
/// full) and says what became of the others.
fn not_all_created(refused: &[Error], created: &Created) -> Error {
    const SHOWN: usize = 3;
    let mut reasons: Vec<String> = refused
        .iter()
        .take(SHOWN)
        .map(|e| match e {
            Error::InvalidInput(m) => m.clone(),
            other => other.to_string(),
        })
        .collect();
    if refused.len() > SHOWN {
        reasons.push(format!("and {} more", refused.len() - SHOWN));
    }
    Error::InvalidInput(format!(
        "{} task(s) not created: {}; the other tasks were written ({} created, {} existing, \
         {} replaced)",
        refused.len(),
        reasons.join("; "),
        created.created,
        created.existing,
        created.replaced
    ))
}

/// A cheap shuffle of `items` (claim order matters only until a worker loses a race).
pub(crate) fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (crate::jitter() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

tasktrack_core::store_impl! {
    DynamoStore;
    native {
        fn backend(&self) -> &'static str {
            "dynamodb"
        }
        /// `cas::claim`, its write fitted (`crate::fit`): a task that cannot hold a lease is
        /// exhausted instead, saying why, and the claim answers `Refused(Exhausted)`.
        async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
            let limit = self.docs.item_limit;
            let mut granted = None;
            let task = self
                .update_fitted(key, |t| match fit::fit_claim(limit, t, req, now)? {
                    ClaimWrite::Write(fitted, lease) => {
                        granted = lease;
                        Ok(fitted)
                    }
                    ClaimWrite::Refused(reason) => Err(Error::Refused {
                        key: key.to_string(),
                        reason,
                    }),
                    ClaimWrite::Unwritable(why) => Err(Error::InvalidInput(why)),
                })
                .await;
            // Whatever became of it, the pools' copy of the task is stale now (claimed, or
            // exhausted): `claim_next` would lose its write on it, or replay this claim.
            self.pool.remove(key);
            let task = task?;
            self.remember(&task);
            match granted {
                Some(lease) => Ok(Claimed { task, lease }),
                None => Err(Error::Refused {
                    key: key.to_string(),
                    reason: Refusal::Exhausted,
                }),
            }
        }
        /// `cas::claim_next`, restated: candidates come from this process's pool (one Query serves
        /// many claims, see `crate::pool`), workers of this process never race each other for one
        /// candidate, and after a race lost to another process the pool is shuffled so that the two
        /// processes stop taking the same candidates in the same order. With a single worker the
        /// order is exactly the claim order.
        async fn claim_next(
            &self,
            job: &JobName,
            req: &ClaimNext,
            now: Timestamp,
        ) -> Result<Vec<Claimed>> {
            cas::check_claim_next(req)?;
            let mut won = Vec::new();
            let outcome = self.claim_into(job, req, now, &mut won).await;
            // A failure after some wins (a refill, a later batch) must not drop the leases
            // already granted: their tasks stay leased whatever the caller is told.
            cas::keep_won("dynamodb", job, won, outcome)
        }
        /// `cas::create`, restated so that a task that cannot be written (too large for a
        /// DynamoDB item) fails alone: every other task of the call is created (or found
        /// existing, or replaced), then the call answers `InvalidInput` naming the ones left out
        /// and what became of the rest.
        async fn create(
            &self,
            job: &JobName,
            tasks: &[NewTask],
            mode: CreateMode,
            now: Timestamp,
        ) -> Result<Created> {
            self.changing(self.create_tasks(job, tasks, mode, now)).await
        }
        async fn heartbeat(
            &self,
            lease: &Lease,
            lease_for: Duration,
            now: Timestamp,
        ) -> Result<Lease> {
            let fast = self
                .on_recent(&lease.key, |t| {
                    lifecycle::heartbeat(t, lease, lease_for, now).ok()
                })
                .await?;
            if let Some((_, renewed)) = fast {
                return Ok(renewed);
            }
            let renewed = cas::heartbeat(&self.docs, lease, lease_for, now).await?;
            lock(&self.recent).remove(&lease.key);
            Ok(renewed)
        }
        /// A holder whose lease ran out may still patch until the task is reclaimed (see
        /// `wrote`).
        async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
            // Refused before any read, whatever the task's state (as on every backend).
            lifecycle::check_patch(lease, patch)?;
            let task = self
                .fenced(lease, |t| lifecycle::patch_data(t, lease, patch, now))
                .await?;
            self.wrote(&task, now);
            Ok(task)
        }
        async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
            lifecycle::check_output(lease, &output)?;
            let task = self
                .fenced(lease, |t| lifecycle::succeed(t, lease, output.clone(), now))
                .await?;
            self.wrote(&task, now);
            Ok(task)
        }
        /// All completions at once: every lease whose remembered copy the rule accepts is written
        /// in one transaction (group commit, see `crate::commit`), conditional per task; the rest
        /// (no copy, a stale copy, a refusal to confirm on a fresh read) go the one-by-one way.
        async fn succeed_many(
            &self,
            done: &[(Lease, Value)],
            now: Timestamp,
        ) -> Result<Vec<Result<Task>>> {
            let mut results: Vec<Option<Result<Task>>> = vec![None; done.len()];
            // (index in `done`, remembered copy, its completion fitted into an item).
            let (mut fast, mut news) = (Vec::new(), Vec::new());
            for (i, (lease, output)) in done.iter().enumerate() {
                let Some(copy) = lock(&self.recent).get(&lease.key).cloned() else {
                    continue;
                };
                let Ok(new) = lifecycle::succeed(&copy, lease, output.clone(), now) else {
                    continue;
                };
                match self.docs.fit(Some(&copy), new) {
                    Ok(fitted) => {
                        let revision = copy.version.to_string();
                        fast.push((i, Versioned::new(copy, revision)));
                        news.push(fitted);
                    }
                    Err(e @ Error::InvalidInput(_)) => results[i] = Some(Err(e)),
                    Err(e) => return Err(e),
                }
            }
            let pairs = fast.iter().map(|(_, old)| old).zip(news).collect();
            let written = self.docs.write_all(pairs).await?;
            for ((i, old), written) in fast.iter().zip(written) {
                match written {
                    Ok(Some(task)) => {
                        self.remember(&task);
                        self.wrote(&task, now);
                        results[*i] = Some(Ok(task));
                    }
                    Ok(None) => {
                        lock(&self.recent).remove(&old.value.key());
                    }
                    Err(e @ Error::Unavailable(_)) => return Err(e),
                    Err(e) => results[*i] = Some(Err(e)),
                }
            }
            for (slot, (lease, output)) in results.iter_mut().zip(done) {
                if slot.is_none() {
                    // As the trait's default: an unreachable store fails the call.
                    match self.succeed(lease, output.clone(), now).await {
                        Err(e @ Error::Unavailable(_)) => return Err(e),
                        other => *slot = Some(other),
                    }
                }
            }
            Ok(results.into_iter().flatten().collect())
        }
        async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
            self.changing(self.fenced(lease, |t| lifecycle::fail(t, lease, req, now)))
                .await
        }
        async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
            self.changing(self.fenced(lease, |t| lifecycle::release(t, lease, now)))
                .await
        }
        // As the adapter's, with each write fitted (`crate::fit`) and the task as stored
        // answered; they may make tasks claimable, so the claim pools are dropped afterwards.
        async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task> {
            self.changing(self.update(key, |t| lifecycle::ignore(t, req, now)))
                .await
        }
        async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task> {
            self.changing(self.update(key, |t| lifecycle::retry(t, req, now)))
                .await
        }
        async fn report(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task> {
            self.changing(self.report_outcome(key, req, now)).await
        }
    }
    via self.docs {
        init() -> ();
        jobs(state: Option<JobState>) -> Vec<Job> => list_jobs;
    }
    through_cas &self.docs {
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
    // Changes that may make tasks claimable: the claim pools are dropped afterwards.
    through_cas &self.docs around self.changing {
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
    }
}
