//! [`Documents`] over Redis: the versioned-record view the generic compare-and-swap adapter
//! ([`tasktrack_core::cas`]) needs. Every write is one Lua script that checks the version and
//! moves the task's indexes and counters in the same atomic step.

use crate::codec::{self, Fields};
use crate::error;
use crate::keys::Keys;
use crate::scripts::Scripts;
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{FromRedisValue, RedisError, ScriptInvocation};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tasktrack_core::cas::{self, Documents, Versioned};
use tasktrack_core::{
    CountRow, Error, Job, JobName, JobState, Result, Status, Task, TaskKey, TaskPage, TaskQuery,
    Timestamp,
};

/// A connection, the key layout and the scripts: everything an operation needs.
#[derive(Clone)]
pub(crate) struct RedisDocs {
    pub conn: ConnectionManager,
    pub keys: Keys,
    pub scripts: Arc<Scripts>,
    pub address: String,
}

impl fmt::Debug for RedisDocs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDocs")
            .field("address", &self.address)
            .field("keys", &self.keys)
            .finish()
    }
}

impl RedisDocs {
    /// Maps a Redis error (the one place, see [`error::map`]).
    pub fn err(&self, e: RedisError) -> Error {
        error::map(&self.address, e)
    }

    /// Runs a script.
    pub async fn eval<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T> {
        inv.invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err(e))
    }

    /// Runs a command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        cmd.query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err(e))
    }

    /// Reads one task hash.
    pub async fn load(&self, key: &TaskKey) -> Result<Option<Task>> {
        let hkey = self.keys.task(key);
        let pairs: HashMap<Vec<u8>, Vec<u8>> = self.query(redis::cmd("HGETALL").arg(&hkey)).await?;
        let fields = Fields::from_pairs(pairs);
        if fields.is_empty() {
            return Ok(None);
        }
        codec::decode(&key.job, key.id.as_str(), &fields, &hkey).map(Some)
    }

    /// Reads many task hashes of one job in one round trip (absent ones are skipped).
    pub async fn load_many(&self, job: &JobName, ids: &[String]) -> Result<Vec<Task>> {
        let mut tasks = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(self.read_hashes(job, ids).await?) {
            if !fields.is_empty() {
                tasks.push(self.decode(job, id, &fields)?);
            }
        }
        Ok(tasks)
    }

    /// The fields of many task hashes of one job, in one round trip, one map per id in the
    /// same order (empty for a task that does not exist), undecoded: a listing decodes each on
    /// its own, so that one that does not decode is named rather than failing the others.
    pub async fn read_hashes(&self, job: &JobName, ids: &[impl AsRef<str>]) -> Result<Vec<Fields>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.task_hash(job, id.as_ref()));
        }
        let hashes: Vec<HashMap<Vec<u8>, Vec<u8>>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.err(e))?;
        Ok(hashes.into_iter().map(Fields::from_pairs).collect())
    }

    /// Decodes the hash of task `id` of `job`; a hash that does not decode is `Corrupt` naming
    /// its key.
    pub fn decode(&self, job: &JobName, id: &str, fields: &Fields) -> Result<Task> {
        codec::decode(job, id, fields, &self.task_hash(job, id))
    }

    /// The key of task `id`'s hash (as [`Keys::task`], from an id not yet checked).
    fn task_hash(&self, job: &JobName, id: &str) -> String {
        format!("{}t:{id}", self.keys.job_base(job))
    }

    /// Inserts tasks of one job (one script call); one flag per task.
    pub async fn insert_batch(&self, job: &JobName, tasks: &[Task]) -> Result<Vec<bool>> {
        let mut inv = self.scripts.insert.prepare_invoke();
        inv.key(self.keys.job_base(job)).arg(tasks.len());
        for t in tasks {
            let args = codec::encode_args(t)?;
            inv.arg(t.id.as_str()).arg(args.len() / 2).arg(args);
        }
        let flags: Vec<i64> = self.eval(&inv).await?;
        Ok(flags.into_iter().map(|f| f == 1).collect())
    }

    fn decode_job(&self, name: &str, json: &str) -> Result<Job> {
        serde_json::from_str(json).map_err(|e| {
            Error::corrupt(
                format!("{} field {name}", self.keys.job_records()),
                e.to_string(),
            )
        })
    }

    async fn write_job(&self, expected: &str, job: &Job) -> Result<bool> {
        // Every job write stamps updated_at with its `now`, which the JSON holds as RFC 3339.
        codec::check_now(job.updated_at)?;
        let json = serde_json::to_string(job)
            .map_err(|e| Error::backend(format!("cannot encode job: {e}")))?;
        let mut inv = self.scripts.job_write.prepare_invoke();
        inv.key(self.keys.jobs_base())
            .arg(job.name.as_str())
            .arg(expected)
            .arg(job.version.to_string())
            .arg(json)
            .arg(job.state.as_str());
        Ok(self.eval::<i64>(&inv).await? == 1)
    }
}

#[async_trait]
impl Documents for RedisDocs {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        Ok(self.load(key).await?.map(|t| {
            // Version and creation time (`cas::task_revision`): the scripts compare both.
            let revision = cas::task_revision(&t);
            Versioned::new(t, revision)
        }))
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        let flags = self
            .insert_batch(&task.job, std::slice::from_ref(task))
            .await?;
        Ok(flags.first().copied().unwrap_or(false))
    }

    async fn insert_tasks(&self, tasks: &[Task]) -> Result<Vec<bool>> {
        // The adapter passes one job's tasks; group anyway so each script stays in one slot.
        let mut flags = Vec::with_capacity(tasks.len());
        for run in tasks.chunk_by(|a, b| a.job == b.job) {
            if let Some(first) = run.first() {
                flags.extend(self.insert_batch(&first.job, run).await?);
            }
        }
        Ok(flags)
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let mut inv = self.scripts.replace.prepare_invoke();
        inv.key(self.keys.job_base(&new.job))
            .arg(new.id.as_str())
            .arg(&old.revision)
            .arg(codec::encode_args(new)?);
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let mut inv = self.scripts.delete.prepare_invoke();
        inv.key(self.keys.job_base(&old.value.job))
            .arg(old.value.id.as_str())
            .arg(&old.revision);
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    /// One script (`lua/delete_damaged.lua`) removes the hash with its queue, listing and
    /// set-aside entries and its counter, trusting only the fields that still read as valid, so
    /// that a damaged task leaves nothing behind that would count or list it.
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        let mut inv = self.scripts.delete_damaged.prepare_invoke();
        inv.key(self.keys.job_base(&key.job)).arg(key.id.as_str());
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        // Read-only: the ready queue's head plus what became due in the delayed one. The native
        // claim_next never uses this; it is here so the adapter's claim_next works too.
        let suffix = stage.map(|s| format!(":{s}")).unwrap_or_default();
        let base = self.keys.job_base(job);
        let count = isize::try_from(limit).unwrap_or(isize::MAX);
        let ready: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(format!("{base}r{suffix}"))
                    .arg(0)
                    .arg(count - 1),
            )
            .await?;
        let due: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(format!("{base}d{suffix}"))
                    .arg("-inf")
                    .arg(now.as_millis())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(count),
            )
            .await?;
        let ids: Vec<String> = ready
            .iter()
            .chain(&due)
            .filter_map(|m| m.get(20..))
            .map(str::to_string)
            .collect();
        let mut tasks: Vec<Task> = self
            .load_many(job, &ids)
            .await?
            .into_iter()
            .filter(|t| t.is_claimable(now))
            .collect();
        tasks.sort_by(|a, b| {
            (Reverse(a.priority), a.claimable_at(), &a.id).cmp(&(
                Reverse(b.priority),
                b.claimable_at(),
                &b.id,
            ))
        });
        tasks.truncate(limit);
        Ok(tasks
            .into_iter()
            .map(|t| {
                let r = cas::task_revision(&t);
                Versioned::new(t, r)
            })
            .collect())
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        crate::list::list(self, query).await
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        let raw: HashMap<String, i64> = self
            .query(redis::cmd("HGETALL").arg(self.keys.counters(job)))
            .await?;
        let mut rows = Vec::with_capacity(raw.len());
        for (field, n) in raw {
            let (status, stage) = match field.split_once(':') {
                Some((s, stage)) => (s, Some(stage.to_string())),
                None => (field.as_str(), None),
            };
            // A counter under a status nobody knows (a task's status edited by hand, then
            // moved by a script) counts its tasks as unreadable.
            let status: Option<Status> = status.parse().ok();
            if n > 0 {
                rows.push((stage, status, n.unsigned_abs()));
            }
        }
        Ok(rows)
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        let json: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(self.keys.job_records())
                    .arg(job.as_str()),
            )
            .await?;
        match json {
            Some(json) => {
                let job = self.decode_job(job.as_str(), &json)?;
                let revision = job.version.to_string();
                Ok(Some(Versioned::new(job, revision)))
            }
            None => Ok(None),
        }
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        self.write_job("", job).await
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        self.write_job(&old.revision, new).await
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let mut inv = self.scripts.job_delete.prepare_invoke();
        inv.key(self.keys.jobs_base())
            .arg(old.value.name.as_str())
            .arg(&old.revision);
        Ok(self.eval::<i64>(&inv).await? == 1)
    }

    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        let index = match state {
            Some(s) => self.keys.jobs_in(s),
            None => self.keys.all_jobs(),
        };
        let names: Vec<String> = self
            .query(redis::cmd("ZRANGE").arg(index).arg(0).arg(-1))
            .await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = self
            .query(redis::cmd("HMGET").arg(self.keys.job_records()).arg(&names))
            .await?;
        let mut jobs = Vec::with_capacity(names.len());
        for (name, json) in names.iter().zip(records) {
            if let Some(json) = json {
                jobs.push(self.decode_job(name, &json)?);
            }
        }
        Ok(jobs)
    }
}
