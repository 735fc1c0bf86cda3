//! The operations of the adapter, generic over [`Documents`], and [`CasStore`] which wires them
//! into a [`Store`].

use super::{Damaged, Documents, MAX_CAS_ATTEMPTS};
use crate::error::{Error, Refusal, Result};
use crate::lifecycle::{self, ClaimDecision};
use crate::model::*;
use crate::store::*;
use crate::time::Timestamp;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

/// What a rule decided for one loaded task.
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub enum Step<R> {
    /// Write this task (conditionally), then return the result.
    Write(Task, Result<R>),
    /// Write nothing; return the result.
    Keep(Result<R>),
}

impl Step<Task> {
    /// The usual case: a rule's new task is both written and returned.
    pub fn from_rule(result: Result<Task>) -> Self {
        match result {
            Ok(t) => Step::Write(t.clone(), Ok(t)),
            Err(e) => Step::Keep(Err(e)),
        }
    }
}

/// The compare-and-swap loop: load `key`, apply `rule`, write conditionally, retry on conflict.
pub async fn update_task<D, R, F>(docs: &D, key: &TaskKey, mut rule: F) -> Result<R>
where
    D: Documents + ?Sized,
    F: FnMut(&Task) -> Step<R> + Send,
    R: Send,
{
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let Some(current) = docs.get_task(key).await? else {
            return Err(Error::NotFound(format!("task {key}")));
        };
        match rule(&current.value) {
            Step::Keep(result) => return result,
            Step::Write(new, result) => {
                if docs.replace_task(&current, &new).await? {
                    return result;
                }
            }
        }
        conflict_pause(attempt).await;
    }
    Err(Error::Contention(format!(
        "task {key}: too many conflicting writes"
    )))
}

/// A short, growing, jittered pause after a lost race, so that racing writers spread out.
async fn conflict_pause(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let cap_us = 100u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_micros(u64::from(nanos) % cap_us)).await;
}

/// The job record, created with defaults if missing.
pub async fn ensure_job<D: Documents + ?Sized>(
    docs: &D,
    name: &JobName,
    now: Timestamp,
) -> Result<Job> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        if let Some(existing) = docs.get_job(name).await? {
            return Ok(existing.value);
        }
        let job = Job::new(name.clone(), now);
        if docs.insert_job(&job).await? {
            return Ok(job);
        }
    }
    Err(Error::Contention(format!(
        "job {name}: too many conflicting writes"
    )))
}

/// Applies a rule to a job record, creating it first when `create` allows.
async fn update_job<D, F>(docs: &D, name: &JobName, rule: F) -> Result<Job>
where
    D: Documents + ?Sized,
    F: Fn(Option<&Job>) -> Result<Job> + Send,
{
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let written = match docs.get_job(name).await? {
            Some(current) => {
                let new = rule(Some(&current.value))?;
                docs.replace_job(&current, &new).await?.then_some(new)
            }
            None => {
                let new = rule(None)?;
                docs.insert_job(&new).await?.then_some(new)
            }
        };
        if let Some(job) = written {
            return Ok(job);
        }
        conflict_pause(attempt).await;
    }
    Err(Error::Contention(format!(
        "job {name}: too many conflicting writes"
    )))
}

/// [`Store::put_job`].
pub async fn put_job<D: Documents + ?Sized>(
    docs: &D,
    name: &JobName,
    spec: &JobSpec,
    now: Timestamp,
) -> Result<Job> {
    lifecycle::check_job_spec(name, spec)?;
    update_job(docs, name, |existing| {
        lifecycle::apply_job_spec(existing, name, spec, now)
    })
    .await
}

/// [`Store::get_job`].
pub async fn get_job<D: Documents + ?Sized>(docs: &D, name: &JobName) -> Result<Job> {
    match docs.get_job(name).await? {
        Some(j) => Ok(j.value),
        None => Err(Error::NotFound(format!("job {name}"))),
    }
}

/// [`Store::set_job_state`].
pub async fn set_job_state<D: Documents + ?Sized>(
    docs: &D,
    name: &JobName,
    change: JobStateChange,
    now: Timestamp,
) -> Result<Job> {
    update_job(docs, name, |existing| match existing {
        Some(job) => lifecycle::move_job_state(job, change, now),
        None => Err(Error::NotFound(format!("job {name}"))),
    })
    .await
}

/// [`Store::create`]. An id given twice is settled in order, as that many calls would: its
/// first entry goes out with the bulk inserts, the later ones one by one after them (existing,
/// or replaced), so that no backend races two writes of one task against each other.
pub async fn create<D: Documents + ?Sized>(
    docs: &D,
    name: &JobName,
    tasks: &[NewTask],
    mode: CreateMode,
    now: Timestamp,
) -> Result<Created> {
    // Every task's input first: a refused create writes nothing, not even its job record.
    for new in tasks {
        lifecycle::check_new_task(name, new)?;
    }
    let job = ensure_job(docs, name, now).await?;
    let fresh = tasks
        .iter()
        .map(|n| lifecycle::create_task(&job, n, now))
        .collect::<Result<Vec<_>>>()?;
    docs.check_new_tasks(&fresh)?;
    let mut seen = std::collections::HashSet::with_capacity(tasks.len());
    let (mut first_news, mut firsts, mut repeats) = (Vec::new(), Vec::new(), Vec::new());
    for (new, task) in tasks.iter().zip(fresh) {
        if seen.insert(&new.id) {
            first_news.push(new);
            firsts.push(task);
        } else {
            repeats.push((new, task));
        }
    }
    let mut creating = Creating {
        docs,
        job: &job,
        mode,
        now,
        counted: Created::default(),
    };
    for (news, chunk) in first_news.chunks(500).zip(firsts.chunks(500)) {
        let inserted = docs.insert_tasks(chunk).await?;
        for ((new, task), was_inserted) in news.iter().zip(chunk).zip(inserted) {
            creating.settle(new, task, was_inserted).await?;
        }
    }
    for (new, task) in &repeats {
        let was_inserted = docs.insert_task(task).await?;
        creating.settle(new, task, was_inserted).await?;
    }
    Ok(creating.counted)
}

/// A create under way: what it writes to, and what it has counted so far.
struct Creating<'a, D: ?Sized> {
    docs: &'a D,
    job: &'a Job,
    mode: CreateMode,
    now: Timestamp,
    counted: Created,
}

impl<D: Documents + ?Sized> Creating<'_, D> {
    /// Counts one task: inserted, or already there and left alone or (in `replace` mode)
    /// replaced.
    async fn settle(&mut self, new: &NewTask, task: &Task, was_inserted: bool) -> Result<()> {
        if was_inserted {
            self.counted.created += 1;
        } else if self.mode == CreateMode::Replace {
            let (job, now) = (self.job, self.now);
            update_task(self.docs, &task.key(), |old| {
                Step::from_rule(lifecycle::replace_task(old, job, new, now))
            })
            .await?;
            self.counted.replaced += 1;
        } else {
            self.counted.existing += 1;
        }
        Ok(())
    }
}

/// [`Store::claim`].
pub async fn claim<D: Documents + ?Sized>(
    docs: &D,
    key: &TaskKey,
    req: &Claim,
    now: Timestamp,
) -> Result<Claimed> {
    update_task(docs, key, |task| match lifecycle::claim(task, req, now) {
        Err(e) => Step::Keep(Err(e)),
        Ok(ClaimDecision::Granted(c)) => Step::Write(c.task.clone(), Ok(c)),
        Ok(ClaimDecision::Refused(reason)) => Step::Keep(Err(Error::Refused {
            key: key.to_string(),
            reason,
        })),
        Ok(ClaimDecision::Exhausted(t)) => Step::Write(
            t,
            Err(Error::Refused {
                key: key.to_string(),
                reason: Refusal::Exhausted,
            }),
        ),
    })
    .await
}

/// [`Store::claim_next`]: takes candidates from the index in claim order and claims each with a
/// conditional write. A candidate that changed meanwhile (another worker took it) is skipped.
///
/// Leases granted are never dropped: if a later step fails (a write, a read of more
/// candidates), the claim answers with what it won and logs the error ([`keep_won`]); it
/// answers `Err` only when it won nothing. A candidate the claim rule finds corrupt (a counter
/// at the top of its range, edited by hand) is left out and noted ([`Damaged`]), so that it
/// cannot stop the job's claims.
pub async fn claim_next<D: Documents + ?Sized>(
    docs: &D,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
) -> Result<Vec<Claimed>> {
    check_claim_next(req)?;
    let mut won = Vec::new();
    let outcome = claim_into(docs, job, req, now, &mut won).await;
    keep_won(docs.backend(), job, won, outcome)
}

/// The candidates [`claim_next`] left out because the claim rule found them corrupt. One set for
/// the process (the adapter keeps no state per store): it only decides which warnings repeat.
static DAMAGED: LazyLock<Damaged> = LazyLock::new(Damaged::default);

/// [`claim_next`]'s rounds, pushing each task won onto `won` as soon as its write succeeds.
async fn claim_into<D: Documents + ?Sized>(
    docs: &D,
    job: &JobName,
    req: &ClaimNext,
    now: Timestamp,
    won: &mut Vec<Claimed>,
) -> Result<()> {
    let claim = Claim::new(req.owner.clone(), req.lease_for);
    // Candidates passed over without a write (corrupt, or not claimable after all) stay at the
    // head of the claim order: each round asks for twice that many more, to see past them in a
    // few rounds however many there are.
    let mut passed = 0;
    let mut lost_last = false;
    for round in 0..MAX_CAS_ATTEMPTS {
        if lost_last {
            conflict_pause(round).await;
        }
        let want = (req.limit - won.len()).saturating_add(passed);
        let candidates = docs.claimable(job, req.stage.as_deref(), now, want).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let (mut lost_any, mut passed_now) = (false, 0_usize);
        for candidate in &candidates {
            let Some((task, claimed)) = claim_write(docs, candidate, &claim, now)? else {
                passed_now += 1;
                continue;
            };
            if docs.replace_task(candidate, &task).await? {
                won.extend(claimed);
            } else {
                lost_any = true;
            }
            if won.len() == req.limit {
                return Ok(());
            }
        }
        if !lost_any && candidates.len() < want {
            return Ok(());
        }
        passed = passed_now.saturating_mul(2);
        lost_last = lost_any;
    }
    // Every round lost its races: with nothing won, say so, rather than answer "nothing to
    // claim" while claimable tasks wait (a worker would stop).
    match (lost_last, won.is_empty()) {
        (true, true) => Err(Error::Contention(format!(
            "job {job}: every claim lost its race in {MAX_CAS_ATTEMPTS} rounds"
        ))),
        _ => Ok(()),
    }
}

/// What claiming `candidate` writes (the task, and the claim unless its expired lease exhausted
/// it), or `None` to pass it over: not claimable as read, or refused as corrupt by the rule
/// (noted once in [`DAMAGED`]).
fn claim_write<D: Documents + ?Sized>(
    docs: &D,
    candidate: &super::Versioned<Task>,
    claim: &Claim,
    now: Timestamp,
) -> Result<Option<(Task, Option<Claimed>)>> {
    if !candidate.value.is_claimable(now) {
        return Ok(None);
    }
    match lifecycle::claim(&candidate.value, claim, now) {
        Ok(ClaimDecision::Granted(c)) => Ok(Some((c.task.clone(), Some(c)))),
        Ok(ClaimDecision::Exhausted(t)) => Ok(Some((t, None))),
        Ok(ClaimDecision::Refused(_)) => Ok(None),
        Err(e @ Error::Corrupt { .. }) => {
            let key = candidate.value.key();
            DAMAGED.note(docs.backend(), &key, &candidate.revision, &e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The answer of a `claim_next` that won `won` and then ended with `outcome`: an error after
/// leases were granted is logged and the leases are returned, since their tasks stay leased
/// whatever the caller is told, and a caller told `Err` would leave them to run out as dead
/// attempts. Only a claim that won nothing answers the error. For native `claim_next`s too.
pub fn keep_won<T>(
    backend: &str,
    job: &JobName,
    won: Vec<T>,
    outcome: Result<()>,
) -> Result<Vec<T>> {
    match outcome {
        Ok(()) => Ok(won),
        Err(e) if won.is_empty() => Err(e),
        Err(e) => {
            tracing::warn!(
                backend,
                %job,
                granted = won.len(),
                "{backend}: claim_next answers with the {} task(s) it already claimed; a later \
                 step failed: {e}",
                won.len()
            );
            Ok(won)
        }
    }
}

/// A batched completion ([`Store::succeed_many`]) whose outputs are checked first: an entry
/// whose output `succeed` would refuse as input ([`lifecycle::check_output`]) answers that
/// `InvalidInput` in its place, and `batch` gets the other entries, in order. Refusing an entry
/// writes nothing, so the others get what they would get from `succeed` one by one. For the
/// backends that write a batch natively (one statement or script never sees the refused ones).
pub async fn succeed_many_checked<B>(done: &[(Lease, Value)], batch: B) -> Result<Vec<Result<Task>>>
where
    B: AsyncFnOnce(&[(Lease, Value)]) -> Result<Vec<Result<Task>>>,
{
    let checks: Vec<Result<()>> = done
        .iter()
        .map(|(lease, output)| lifecycle::check_output(lease, output))
        .collect();
    if checks.iter().all(Result::is_ok) {
        return batch(done).await;
    }
    let valid: Vec<(Lease, Value)> = done
        .iter()
        .zip(&checks)
        .filter(|(_, check)| check.is_ok())
        .map(|(entry, _)| entry.clone())
        .collect();
    let mut written = if valid.is_empty() {
        Vec::new()
    } else {
        batch(&valid).await?
    }
    .into_iter();
    let mut answers = Vec::with_capacity(done.len());
    for check in checks {
        answers.push(match check {
            Err(e) => Err(e),
            Ok(()) => written.next().ok_or_else(|| {
                Error::Backend(
                    "a batched completion answered fewer entries than it was given".into(),
                )
            })?,
        });
    }
    Ok(answers)
}

/// The most tasks one `claim_next` may ask for. Far above any useful batch (the benchmarks
/// peak at a few hundred), and low enough that every backend can size its request and its
/// buffers from it without overflowing (Redis scripts see numbers as doubles).
pub const MAX_CLAIM_LIMIT: usize = 10_000;

/// Rejects a claim_next that can never succeed: a bad worker id or stage name, a limit outside
/// 1..=[`MAX_CLAIM_LIMIT`], a lease of zero.
pub fn check_claim_next(req: &ClaimNext) -> Result<()> {
    validate_key("worker id", &req.owner)?;
    if let Some(stage) = &req.stage {
        // Stage names follow the key rules (never empty), as when a job declares them.
        validate_key("stage name", stage)?;
    }
    if req.limit == 0 || req.limit > MAX_CLAIM_LIMIT {
        return Err(Error::invalid(format!(
            "claim limit must be between 1 and {MAX_CLAIM_LIMIT}, not {}",
            req.limit
        )));
    }
    crate::lifecycle::check_lease_length(req.lease_for)
}

/// [`Store::heartbeat`].
pub async fn heartbeat<D: Documents + ?Sized>(
    docs: &D,
    lease: &Lease,
    lease_for: Duration,
    now: Timestamp,
) -> Result<Lease> {
    let renewed = update_task(docs, &lease.key, |task| {
        match lifecycle::heartbeat(task, lease, lease_for, now) {
            Ok((t, l)) => Step::Write(t, Ok(l)),
            Err(e) => Step::Keep(Err(e)),
        }
    })
    .await;
    vanished_is_stale(renewed, lease)
}

/// A rule applied under a lease; a task that vanished under it is [`Error::StaleLease`].
async fn fenced<D, F>(docs: &D, lease: &Lease, rule: F) -> Result<Task>
where
    D: Documents + ?Sized,
    F: Fn(&Task) -> Result<Task> + Send + Sync,
{
    let done = update_task(docs, &lease.key, |task| Step::from_rule(rule(task))).await;
    vanished_is_stale(done, lease)
}

/// Maps a task that vanished under a lease (deleted once the lease ran out) to
/// [`Error::StaleLease`]: to the lease's holder the task was taken away.
fn vanished_is_stale<T>(result: Result<T>, lease: &Lease) -> Result<T> {
    match result {
        Err(Error::NotFound(_)) => Err(Error::StaleLease {
            key: lease.key.to_string(),
            token: lease.token,
        }),
        other => other,
    }
}

/// [`Store::patch_data`].
pub async fn patch_data<D: Documents + ?Sized>(
    docs: &D,
    lease: &Lease,
    patch: &Value,
    now: Timestamp,
) -> Result<Task> {
    lifecycle::check_patch(lease, patch)?;
    fenced(docs, lease, |t| lifecycle::patch_data(t, lease, patch, now)).await
}

/// [`Store::succeed`].
pub async fn succeed<D: Documents + ?Sized>(
    docs: &D,
    lease: &Lease,
    output: Value,
    now: Timestamp,
) -> Result<Task> {
    lifecycle::check_output(lease, &output)?;
    fenced(docs, lease, |t| {
        lifecycle::succeed(t, lease, output.clone(), now)
    })
    .await
}

/// [`Store::fail`].
pub async fn fail<D: Documents + ?Sized>(
    docs: &D,
    lease: &Lease,
    req: &Fail,
    now: Timestamp,
) -> Result<Task> {
    fenced(docs, lease, |t| lifecycle::fail(t, lease, req, now)).await
}

/// [`Store::release`].
pub async fn release<D: Documents + ?Sized>(
    docs: &D,
    lease: &Lease,
    now: Timestamp,
) -> Result<Task> {
    fenced(docs, lease, |t| lifecycle::release(t, lease, now)).await
}

/// [`Store::ignore`].
pub async fn ignore<D: Documents + ?Sized>(
    docs: &D,
    key: &TaskKey,
    req: &Ignore,
    now: Timestamp,
) -> Result<Task> {
    update_task(docs, key, |t| {
        Step::from_rule(lifecycle::ignore(t, req, now))
    })
    .await
}

/// [`Store::retry`].
pub async fn retry<D: Documents + ?Sized>(
    docs: &D,
    key: &TaskKey,
    req: &Retry,
    now: Timestamp,
) -> Result<Task> {
    update_task(docs, key, |t| {
        Step::from_rule(lifecycle::retry(t, req, now))
    })
    .await
}

/// [`Store::report`].
pub async fn report<D: Documents + ?Sized>(
    docs: &D,
    key: &TaskKey,
    req: &Report,
    now: Timestamp,
) -> Result<Task> {
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let written = match docs.get_task(key).await? {
            Some(current) => {
                let new = lifecycle::report(
                    Some(&current.value),
                    &Job::new(key.job.clone(), now),
                    key,
                    req,
                    now,
                )?;
                if new == current.value {
                    return Ok(new);
                }
                docs.replace_task(&current, &new).await?.then_some(new)
            }
            None => {
                let job = ensure_job(docs, &key.job, now).await?;
                let new = lifecycle::report(None, &job, key, req, now)?;
                docs.insert_task(&new).await?.then_some(new)
            }
        };
        if let Some(task) = written {
            return Ok(task);
        }
        conflict_pause(attempt).await;
    }
    Err(Error::Contention(format!(
        "task {key}: too many conflicting writes"
    )))
}

/// [`Store::delete`].
pub async fn delete<D: Documents + ?Sized>(docs: &D, key: &TaskKey, now: Timestamp) -> Result<()> {
    for attempt in 0..MAX_CAS_ATTEMPTS {
        let current = match docs.get_task(key).await {
            Ok(Some(current)) => current,
            Ok(None) => return Err(Error::NotFound(format!("task {key}"))),
            // No lease of a record nobody can read can be honoured: remove it as it is.
            Err(Error::Corrupt { .. }) if docs.delete_damaged(key).await? => return Ok(()),
            Err(Error::Corrupt { .. }) => return Err(Error::NotFound(format!("task {key}"))),
            Err(e) => return Err(e),
        };
        lifecycle::check_delete(&current.value, now)?;
        if docs.delete_task(&current).await? {
            return Ok(());
        }
        conflict_pause(attempt).await;
    }
    Err(Error::Contention(format!(
        "task {key}: too many conflicting writes"
    )))
}

/// Visits every task of `job` matching `query`'s filters, a page at a time.
async fn for_each_page<D, F>(docs: &D, mut query: TaskQuery, mut visit: F) -> Result<()>
where
    D: Documents + ?Sized,
    F: FnMut(TaskPage) + Send,
{
    query.limit = 500;
    loop {
        let mut page = docs.list_tasks(&query).await?;
        let next = page.next.take();
        visit(page);
        match next {
            Some(next) => query.after = Some(next),
            None => return Ok(()),
        }
    }
}

/// Deletes the given tasks unless held by a live lease (a damaged one whatever its lease says,
/// as [`delete`] does); returns (deleted, kept).
async fn delete_unleased<D: Documents + ?Sized>(
    docs: &D,
    keys: Vec<TaskKey>,
    now: Timestamp,
) -> Result<(u64, u64)> {
    let (mut deleted, mut kept) = (0, 0);
    for key in keys {
        match delete(docs, &key, now).await {
            Ok(()) => deleted += 1,
            Err(Error::Refused { .. }) => kept += 1,
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, kept))
}

/// [`Store::delete_job`].
pub async fn delete_job<D: Documents + ?Sized>(
    docs: &D,
    name: &JobName,
    now: Timestamp,
) -> Result<Deleted> {
    let record = docs.get_job(name).await?;
    let mut all = Vec::new();
    for_each_page(docs, TaskQuery::new(name.clone()), |page| {
        all.extend(page.tasks.iter().map(Task::key));
        let unreadable = page.unreadable.into_iter();
        all.extend(unreadable.map(|u| TaskKey::new(name.clone(), u.id)));
    })
    .await?;
    if record.is_none() && all.is_empty() {
        return Err(Error::NotFound(format!("job {name}")));
    }
    let (tasks, kept_leased) = delete_unleased(docs, all, now).await?;
    let mut job_removed = false;
    if kept_leased == 0
        && let Some(record) = docs.get_job(name).await?
    {
        job_removed = docs.delete_job(&record).await?;
        // A `create` that read the job record before it went may have added tasks since the
        // listing above: they keep their job, as if it had run first. (A store that can check
        // this under its own lock, the file store, refuses the record's delete instead.)
        if job_removed && !docs.count_tasks(name).await?.is_empty() {
            docs.insert_job(&record.value).await?;
            job_removed = false;
        }
    }
    Ok(Deleted {
        tasks,
        kept_leased,
        job_removed,
    })
}

/// [`Store::purge`]: finished tasks only, each re-checked by [`lifecycle::purgeable`] at delete
/// time.
pub async fn purge<D: Documents + ?Sized>(docs: &D, req: &Purge) -> Result<u64> {
    req.validate()?;
    let jobs = match &req.job {
        Some(j) => vec![j.clone()],
        None => docs
            .list_jobs(None)
            .await?
            .into_iter()
            .map(|j| j.name)
            .collect(),
    };
    let mut purged = 0;
    for job in jobs {
        let mut query = TaskQuery::new(job).with_statuses(req.statuses.iter().copied());
        query.updated_before = Some(req.older_than);
        let mut doomed = Vec::new();
        // A damaged task is left alone: nothing says it is finished.
        for_each_page(docs, query, |page| doomed.extend(page.tasks)).await?;
        for task in doomed {
            if let Some(current) = docs.get_task(&task.key()).await?
                && lifecycle::purgeable(&current.value, req)
                && docs.delete_task(&current).await?
            {
                purged += 1;
            }
        }
    }
    Ok(purged)
}

/// [`Store::get`].
pub async fn get<D: Documents + ?Sized>(docs: &D, key: &TaskKey) -> Result<Task> {
    match docs.get_task(key).await? {
        Some(t) => Ok(t.value),
        None => Err(Error::NotFound(format!("task {key}"))),
    }
}

/// [`Store::list`].
pub async fn list<D: Documents + ?Sized>(docs: &D, query: &TaskQuery) -> Result<TaskPage> {
    query.validate()?;
    docs.list_tasks(query).await
}

/// [`Store::counts`].
pub async fn counts<D: Documents + ?Sized>(docs: &D, job: &JobName) -> Result<Counts> {
    let record = docs.get_job(job).await?;
    let rows = docs.count_tasks(job).await?;
    Ok(Counts::from_raw(
        job.clone(),
        record.as_ref().map(|r| &r.value),
        rows,
    ))
}

/// A whole [`Store`] over any [`Documents`].
#[derive(Debug)]
pub struct CasStore<D> {
    docs: D,
}

impl<D: Documents> CasStore<D> {
    /// Wraps a document backend.
    pub fn new(docs: D) -> Self {
        CasStore { docs }
    }

    /// The document backend.
    pub fn documents(&self) -> &D {
        &self.docs
    }
}

#[async_trait]
impl<D: Documents> Store for CasStore<D> {
    fn backend(&self) -> &'static str {
        self.docs.backend()
    }
    async fn init(&self) -> Result<()> {
        self.docs.init().await
    }
    async fn put_job(&self, job: &JobName, spec: &JobSpec, now: Timestamp) -> Result<Job> {
        put_job(&self.docs, job, spec, now).await
    }
    async fn get_job(&self, job: &JobName) -> Result<Job> {
        get_job(&self.docs, job).await
    }
    async fn jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        self.docs.list_jobs(state).await
    }
    async fn set_job_state(
        &self,
        job: &JobName,
        change: JobStateChange,
        now: Timestamp,
    ) -> Result<Job> {
        set_job_state(&self.docs, job, change, now).await
    }
    async fn delete_job(&self, job: &JobName, now: Timestamp) -> Result<Deleted> {
        delete_job(&self.docs, job, now).await
    }
    async fn create(
        &self,
        job: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created> {
        create(&self.docs, job, tasks, mode, now).await
    }
    async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
        claim(&self.docs, key, req, now).await
    }
    async fn claim_next(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Vec<Claimed>> {
        claim_next(&self.docs, job, req, now).await
    }
    async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        heartbeat(&self.docs, lease, lease_for, now).await
    }
    async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
        patch_data(&self.docs, lease, patch, now).await
    }
    async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
        succeed(&self.docs, lease, output, now).await
    }
    async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
        fail(&self.docs, lease, req, now).await
    }
    async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
        release(&self.docs, lease, now).await
    }
    async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task> {
        ignore(&self.docs, key, req, now).await
    }
    async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task> {
        retry(&self.docs, key, req, now).await
    }
    async fn report(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task> {
        report(&self.docs, key, req, now).await
    }
    async fn delete(&self, key: &TaskKey, now: Timestamp) -> Result<()> {
        delete(&self.docs, key, now).await
    }
    async fn purge(&self, req: &Purge) -> Result<u64> {
        purge(&self.docs, req).await
    }
    async fn get(&self, key: &TaskKey) -> Result<Task> {
        get(&self.docs, key).await
    }
    async fn list(&self, query: &TaskQuery) -> Result<TaskPage> {
        list(&self.docs, query).await
    }
    async fn counts(&self, job: &JobName) -> Result<Counts> {
        counts(&self.docs, job).await
    }
}
