//! The hot paths as single Lua scripts: claim_next, heartbeat, succeed, the hand-off
//! (succeed_and_claim_next), fail, and bulk create.
//! Each restates a rule of [`tasktrack_core::lifecycle`] (named in the script) and is pinned to
//! it by the conformance suite.

use crate::codec;
use crate::docs::RedisDocs;
use crate::error;
use redis::Value;
use serde_json::Value as Json;
use std::time::Duration;
use tasktrack_core::cas::{self, Documents};
use tasktrack_core::{
    ClaimNext, Claimed, CreateMode, Created, Error, Fail, Handoff, JobName, Lease, NewTask, Result,
    Task, TaskKey, Timestamp, lifecycle,
};

/// Tasks per insert script call, and how many such calls are in flight at once.
const CREATE_CHUNK: usize = 500;
const CREATE_IN_FLIGHT: usize = 8;

/// Most leases one `succeed.lua` call completes, so that one script never holds the server for
/// long (Redis runs nothing else meanwhile); bigger batches become several calls in flight.
const SUCCEED_CHUNK: usize = 256;

/// One task a claim script granted: its id and its fields, `[field, value, ...]`, as bytes (a
/// value need not be UTF-8: see [`codec::Fields`]).
type Granted = (Vec<u8>, Vec<Vec<u8>>);

/// One lease of a `succeed_many` batch: its position in the batch and its output as JSON text.
struct Completion<'a> {
    slot: usize,
    lease: &'a Lease,
    output: String,
}

/// An output as the scripts take it, checked first as `succeed` checks it (too deep, it could
/// not be read back): the Lua scripts write it as they get it.
fn encode_output(lease: &Lease, output: &Json) -> Result<String> {
    lifecycle::check_output(lease, output)?;
    serde_json::to_string(output).map_err(|e| Error::invalid(format!("output is not JSON: {e}")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The lease an `in_progress` task's holder presents.
fn lease_of(task: &Task) -> Result<Lease> {
    let l = task.lease.as_ref().ok_or_else(|| {
        Error::backend(format!("task {} was claimed without a lease", task.key()))
    })?;
    Ok(Lease {
        key: task.key(),
        owner: l.owner.clone(),
        token: l.token,
        attempt: task.attempts,
        acquired_at: l.acquired_at,
        expires_at: l.expires_at,
    })
}

/// A fenced script's answer: the task's new fields, or 0 for a stale lease (-1: slow path). A
/// corrupt task is an error: an error reply (mapped by [`crate::error::map`]), or, as one entry of
/// `succeed.lua`'s batch, the same text as a plain string.
enum Fenced {
    Written(Box<Task>),
    Stale,
    SlowPath,
}

impl RedisDocs {
    fn fenced(&self, key: &TaskKey, reply: Value) -> Result<Fenced> {
        match reply {
            Value::Int(0) => Ok(Fenced::Stale),
            Value::Int(-1) => Ok(Fenced::SlowPath),
            Value::BulkString(text) => {
                let text = String::from_utf8_lossy(&text);
                Err(error::corrupt_reply(&text).unwrap_or_else(|| {
                    Error::backend(format!("unexpected script reply for {key}: {text}"))
                }))
            }
            other => {
                let flat: Vec<Vec<u8>> = redis::from_redis_value(other).map_err(|e| {
                    Error::backend(format!("unexpected script reply for {key}: {e}"))
                })?;
                Ok(Fenced::Written(Box::new(codec::decode_flat(
                    key,
                    flat,
                    &self.keys.task(key),
                )?)))
            }
        }
    }

    /// `claim_next.lua`: promotes due entries, then claims up to `limit` from the queue head.
    pub async fn claim_next(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Vec<Claimed>> {
        cas::check_claim_next(req)?;
        codec::check_now(now)?;
        let mut inv = self.scripts.claim_next.prepare_invoke();
        inv.key(self.keys.job_base(job))
            .arg(&req.owner)
            .arg(millis(req.lease_for))
            .arg(req.limit)
            .arg(now.as_millis())
            .arg(req.stage.as_deref().unwrap_or(""));
        let rows: Vec<Granted> = self.eval(&inv).await?;
        Ok(self.claimed(job, rows))
    }

    /// The tasks a claim script granted: `{id, fields...}` per task. A granted task that does
    /// not decode (its JSON edited by hand: the scripts pass JSON through unparsed; a value or
    /// its id not UTF-8, written by another tool) is logged and left out rather than failing
    /// the call, which would lose the other grants: its lease runs out, each later grant of it
    /// counts an attempt, and at its last one the claim script exhausts it, so it never blocks
    /// the job.
    fn claimed(&self, job: &JobName, rows: Vec<Granted>) -> Vec<Claimed> {
        let mut claimed = Vec::with_capacity(rows.len());
        for (id, flat) in rows {
            match self.granted(job, &id, flat) {
                Ok(c) => claimed.push(c),
                Err(e) => {
                    let id = String::from_utf8_lossy(&id);
                    tracing::warn!(%job, %id, error = %e, "granted task left out: it does not decode")
                }
            }
        }
        claimed
    }

    /// One granted task from its id (bytes, as its queue entry holds it) and its fields.
    fn granted(&self, job: &JobName, id: &[u8], flat: Vec<Vec<u8>>) -> Result<Claimed> {
        let id = std::str::from_utf8(id).map_err(|_| {
            let hash = format!(
                "{}t:{}",
                self.keys.job_base(job),
                String::from_utf8_lossy(id)
            );
            Error::corrupt(hash, "its id is not UTF-8 text")
        })?;
        let key = TaskKey::parse(job.as_str(), id)?;
        let task = codec::decode_flat(&key, flat, &self.keys.task(&key))?;
        Ok(Claimed {
            lease: lease_of(&task)?,
            task,
        })
    }

    /// `succeed_claim_next.lua`: the success and the next claims in one script, so one round
    /// trip per task. The request is checked before anything is sent; a stale lease writes
    /// nothing and claims nothing.
    pub async fn succeed_and_claim_next(
        &self,
        lease: &Lease,
        output: Json,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Handoff> {
        cas::check_claim_next(req)?;
        codec::check_now(now)?;
        let output = encode_output(lease, &output)?;
        let job = &lease.key.job;
        let mut inv = self.scripts.succeed_claim_next.prepare_invoke();
        inv.key(self.keys.job_base(job))
            .arg(lease.key.id.as_str())
            .arg(fence(lease))
            .arg(&output)
            .arg(now.as_millis())
            .arg(&req.owner)
            .arg(millis(req.lease_for))
            .arg(req.limit)
            .arg(req.stage.as_deref().unwrap_or(""));
        let (done, rows) = match self.eval(&inv).await? {
            Value::Int(0) => return Err(stale(lease)),
            Value::Array(mut parts) if parts.len() == 2 => {
                let rows = parts.pop().unwrap_or(Value::Nil);
                let done = parts.pop().unwrap_or(Value::Nil);
                (done, rows)
            }
            other => {
                return Err(Error::backend(format!(
                    "unexpected succeed_claim_next.lua reply for {}: {other:?}",
                    lease.key
                )));
            }
        };
        let rows: Vec<Granted> = redis::from_redis_value(rows).map_err(|e| {
            Error::backend(format!("unexpected succeed_claim_next.lua claims: {e}"))
        })?;
        let next = self.claimed(job, rows);
        match self.fenced(&lease.key, done) {
            Ok(Fenced::Written(done)) => Ok(Handoff { done: *done, next }),
            Ok(_) => Err(Error::backend("succeed_claim_next.lua answered no task")),
            Err(e) => {
                // The success is written, but the completed task does not decode (its hash was
                // edited by hand). The caller gets the error and so never sees the leases the
                // script granted: release them now rather than leave them to expire as failed
                // attempts.
                self.release_unseen(&next, now).await;
                Err(e)
            }
        }
    }

    /// Releases leases granted by a call that answers an error (so their holder never learns
    /// of them). Best effort: a lease that cannot be released expires on its own.
    async fn release_unseen(&self, granted: &[Claimed], now: Timestamp) {
        for c in granted {
            if let Err(e) = cas::release(self, &c.lease, now).await {
                tracing::warn!(key = %c.lease.key, error = %e, "granted lease not released: it will expire");
            }
        }
    }

    /// `heartbeat.lua`.
    pub async fn heartbeat(
        &self,
        lease: &Lease,
        lease_for: Duration,
        now: Timestamp,
    ) -> Result<Lease> {
        lifecycle::check_lease_length(lease_for)?;
        codec::check_now(now)?;
        let mut inv = self.scripts.heartbeat.prepare_invoke();
        inv.key(self.keys.job_base(&lease.key.job))
            .arg(lease.key.id.as_str())
            .arg(fence(lease))
            .arg(millis(lease_for))
            .arg(now.as_millis());
        match self.fenced(&lease.key, self.eval(&inv).await?)? {
            Fenced::Written(t) => lease_of(&t),
            _ => Err(stale(lease)),
        }
    }

    /// `succeed.lua` for one lease.
    pub async fn succeed(&self, lease: &Lease, output: Json, now: Timestamp) -> Result<Task> {
        codec::check_now(now)?;
        let entry = Completion {
            slot: 0,
            lease,
            output: encode_output(lease, &output)?,
        };
        let mut answers = self.succeed_call(std::slice::from_ref(&entry), now).await?;
        answers.pop().map_or_else(
            || Err(Error::backend("succeed.lua answered nothing")),
            |(_, t)| t,
        )
    }

    /// `succeed.lua` over a batch: one call per run of leases of the same job (at most
    /// [`SUCCEED_CHUNK`] each), all calls in flight at once on the multiplexed connection. Each
    /// lease gets its own answer, in order. A call that fails answers its own leases with its
    /// error (the others' calls may have committed, and their answers are kept); only a lost
    /// connection ([`Error::Unavailable`]: which calls landed is unknown) fails the whole batch.
    pub async fn succeed_many(
        &self,
        done: &[(Lease, Json)],
        now: Timestamp,
    ) -> Result<Vec<Result<Task>>> {
        // Every lease of the batch is completed at the same `now`: refused, it refuses them all.
        codec::check_now(now)?;
        let mut answers: Vec<Option<Result<Task>>> = done.iter().map(|_| None).collect();
        let mut entries = Vec::with_capacity(done.len());
        for (slot, (lease, output)) in done.iter().enumerate() {
            match encode_output(lease, output) {
                Ok(output) => entries.push(Completion {
                    slot,
                    lease,
                    output,
                }),
                Err(e) => answers[slot] = Some(Err(e)),
            }
        }
        let chunks: Vec<&[Completion<'_>]> = entries
            .chunk_by(|a, b| a.lease.key.job == b.lease.key.job)
            .flat_map(|run| run.chunks(SUCCEED_CHUNK))
            .collect();
        let calls = chunks.iter().map(|chunk| self.succeed_call(chunk, now));
        for (chunk, call) in chunks.iter().zip(futures::future::join_all(calls).await) {
            match call {
                Ok(call) => {
                    for (slot, answer) in call {
                        answers[slot] = Some(answer);
                    }
                }
                Err(e @ Error::Unavailable(_)) => return Err(e),
                Err(e) => {
                    for entry in chunk.iter() {
                        answers[entry.slot] = Some(Err(e.clone()));
                    }
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Error::backend("succeed.lua skipped a lease"))))
            .collect())
    }

    /// One `succeed.lua` call for leases of one job: each entry's slot and answer.
    async fn succeed_call(
        &self,
        entries: &[Completion<'_>],
        now: Timestamp,
    ) -> Result<Vec<(usize, Result<Task>)>> {
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let mut inv = self.scripts.succeed.prepare_invoke();
        inv.key(self.keys.job_base(&first.lease.key.job))
            .arg(now.as_millis());
        for e in entries {
            inv.arg(e.lease.key.id.as_str())
                .arg(fence(e.lease))
                .arg(&e.output);
        }
        let replies: Vec<Value> = self.eval(&inv).await?;
        if replies.len() != entries.len() {
            return Err(Error::backend(format!(
                "succeed.lua answered {} of {} leases",
                replies.len(),
                entries.len()
            )));
        }
        Ok(entries
            .iter()
            .zip(replies)
            .map(|(e, reply)| {
                let answer = match self.fenced(&e.lease.key, reply) {
                    Ok(Fenced::Written(t)) => Ok(*t),
                    Ok(_) => Err(stale(e.lease)),
                    Err(err) => Err(err),
                };
                (e.slot, answer)
            })
            .collect())
    }

    /// `fail.lua`, with the retry instant computed here by [`tasktrack_core::Backoff::delay`];
    /// falls back to the compare-and-set path if the lease's attempt number is not the task's.
    pub async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
        codec::check_now(now)?;
        let error = serde_json::to_string(&req.error)
            .map_err(|e| Error::invalid(format!("bad error: {e}")))?;
        let retry_at = now.plus(req.backoff.delay(&lease.key, lease.attempt));
        let mut inv = self.scripts.fail.prepare_invoke();
        inv.key(self.keys.job_base(&lease.key.job))
            .arg(lease.key.id.as_str())
            .arg(fence(lease))
            .arg(lease.attempt)
            .arg(error)
            .arg(if req.retryable { "1" } else { "0" })
            .arg(retry_at.as_millis())
            .arg(now.as_millis());
        match self.fenced(&lease.key, self.eval(&inv).await?)? {
            Fenced::Written(t) => Ok(*t),
            Fenced::Stale => Err(stale(lease)),
            Fenced::SlowPath => cas::fail(self, lease, req, now).await,
        }
    }

    /// Bulk create: the job record first, then `insert.lua` over chunks of
    /// [`CREATE_CHUNK`] tasks with several calls in flight on the multiplexed connection
    /// (pipelined). Existing tasks are replaced through the compare-and-set path when asked.
    pub async fn create(
        &self,
        job: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created> {
        // Every task's input first: a refused create writes nothing, not even its job record.
        codec::check_now(now)?;
        for new in tasks {
            lifecycle::check_new_task(job, new)?;
        }
        let record = cas::ensure_job(self, job, now).await?;
        let fresh = tasks
            .iter()
            .map(|n| lifecycle::create_task(&record, n, now))
            .collect::<Result<Vec<_>>>()?;
        let mut flags = Vec::with_capacity(fresh.len());
        for wave in fresh.chunks(CREATE_CHUNK * CREATE_IN_FLIGHT) {
            let calls = wave
                .chunks(CREATE_CHUNK)
                .map(|chunk| self.insert_batch(job, chunk));
            for chunk_flags in futures::future::try_join_all(calls).await? {
                flags.extend(chunk_flags);
            }
        }
        let mut created = Created::default();
        for ((new, task), inserted) in tasks.iter().zip(&fresh).zip(flags) {
            if inserted {
                created.created += 1;
            } else if mode == CreateMode::Replace {
                cas::update_task(self, &task.key(), |old| {
                    cas::Step::from_rule(lifecycle::replace_task(old, &record, new, now))
                })
                .await?;
                created.replaced += 1;
            } else {
                created.existing += 1;
            }
        }
        Ok(created)
    }

    /// Progress from the counters hash and the job record: two reads, whatever the job's size.
    pub async fn counts(&self, job: &JobName) -> Result<tasktrack_core::Counts> {
        let record = Documents::get_job(self, job).await?;
        let rows = self.count_tasks(job).await?;
        Ok(tasktrack_core::Counts::from_raw(
            job.clone(),
            record.as_ref().map(|r| &r.value),
            rows,
        ))
    }
}

fn stale(lease: &Lease) -> Error {
    Error::StaleLease {
        key: lease.key.to_string(),
        token: lease.token,
    }
}

/// What a script checks a lease against: its token and acquisition instant, `<token>:<ms>`
/// (`fence` in common.lua), as lifecycle::check_fence compares both.
fn fence(lease: &Lease) -> String {
    format!("{}:{}", lease.token, lease.acquired_at.as_millis())
}
