//! `memory://`: an in-process store, for tests and embedding.
//!
//! # Atomicity
//! One mutex around all state; every conditional write checks the revision under it (a task's
//! version and creation time, [`crate::cas::task_revision`]; a job's version). Built on the
//! generic [`crate::cas`] adapter, which it exists partly to prove.
//!
//! # Layout
//! Per job, a map of tasks by id and an ordered set of claimable tasks keyed by
//! `(priority descending, claimable_at, id)`, so `claim_next` never looks at finished tasks.
//!
//! # Limits
//! Nothing survives the process. `counts` and `list` walk the job's tasks in memory.
//!
//! # Testing
//! Needs nothing; it runs the conformance suite in `cargo test -p tasktrack-core`.

use crate::cas::{CasStore, Documents, Versioned, task_revision};
use crate::error::Result;
use crate::model::*;
use crate::time::Timestamp;
use async_trait::async_trait;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The in-process store: `CasStore` over [`MemoryDocuments`].
pub type MemoryStore = CasStore<MemoryDocuments>;

impl MemoryStore {
    /// An empty in-process store.
    pub fn in_memory() -> Self {
        CasStore::new(MemoryDocuments::default())
    }
}

type ClaimKey = (Reverse<i32>, Timestamp, TaskId);

#[derive(Debug, Default)]
struct JobTasks {
    tasks: BTreeMap<TaskId, Task>,
    claimable: BTreeSet<ClaimKey>,
}

impl JobTasks {
    fn claim_key(task: &Task) -> Option<ClaimKey> {
        task.claimable_at()
            .map(|at| (Reverse(task.priority), at, task.id.clone()))
    }

    fn put(&mut self, task: Task) {
        if let Some(old) = self.tasks.get(&task.id)
            && let Some(k) = Self::claim_key(old)
        {
            self.claimable.remove(&k);
        }
        if let Some(k) = Self::claim_key(&task) {
            self.claimable.insert(k);
        }
        self.tasks.insert(task.id.clone(), task);
    }

    fn remove(&mut self, id: &TaskId) {
        if let Some(old) = self.tasks.remove(id)
            && let Some(k) = Self::claim_key(&old)
        {
            self.claimable.remove(&k);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<JobName, JobTasks>,
    jobs: BTreeMap<JobName, Job>,
}

/// The documents behind [`MemoryStore`].
#[derive(Debug, Default)]
pub struct MemoryDocuments {
    state: Mutex<State>,
}

impl MemoryDocuments {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written record (every write is a
        // single insert), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn versioned<T: Clone>(value: &T, version: u64) -> Versioned<T> {
    Versioned::new(value.clone(), version.to_string())
}

fn versioned_task(task: &Task) -> Versioned<Task> {
    Versioned::new(task.clone(), task_revision(task))
}

#[async_trait]
impl Documents for MemoryDocuments {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        let state = self.lock();
        let task = state.tasks.get(&key.job).and_then(|j| j.tasks.get(&key.id));
        Ok(task.map(versioned_task))
    }

    async fn insert_task(&self, task: &Task) -> Result<bool> {
        let mut state = self.lock();
        let job = state.tasks.entry(task.job.clone()).or_default();
        if job.tasks.contains_key(&task.id) {
            return Ok(false);
        }
        job.put(task.clone());
        Ok(true)
    }

    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        let mut state = self.lock();
        let Some(job) = state.tasks.get_mut(&new.job) else {
            return Ok(false);
        };
        match job.tasks.get(&new.id) {
            Some(current) if task_revision(current) == old.revision => {
                job.put(new.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        let mut state = self.lock();
        let Some(job) = state.tasks.get_mut(&old.value.job) else {
            return Ok(false);
        };
        match job.tasks.get(&old.value.id) {
            Some(current) if task_revision(current) == old.revision => {
                job.remove(&old.value.id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Never called: a memory record is never damaged (it holds no encoded form).
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        let mut state = self.lock();
        let Some(job) = state.tasks.get_mut(&key.job) else {
            return Ok(false);
        };
        let found = job.tasks.contains_key(&key.id);
        job.remove(&key.id);
        Ok(found)
    }

    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        let state = self.lock();
        let Some(tasks) = state.tasks.get(job) else {
            return Ok(Vec::new());
        };
        let found = tasks
            .claimable
            .iter()
            .filter(|(_, at, _)| *at <= now)
            .filter_map(|(_, _, id)| tasks.tasks.get(id))
            .filter(|t| stage.is_none() || t.stage.as_deref() == stage)
            .take(limit)
            .map(versioned_task)
            .collect();
        Ok(found)
    }

    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let state = self.lock();
        let tasks = state
            .tasks
            .get(&query.job)
            .map(|j| j.tasks.values().cloned().collect::<Vec<_>>());
        Ok(query.paginate(tasks.unwrap_or_default()))
    }

    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        let state = self.lock();
        let mut counts: BTreeMap<(Option<String>, Status), u64> = BTreeMap::new();
        for t in state
            .tasks
            .get(job)
            .into_iter()
            .flat_map(|j| j.tasks.values())
        {
            *counts.entry((t.stage.clone(), t.status)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((stage, status), n)| (stage, Some(status), n))
            .collect())
    }

    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        Ok(self.lock().jobs.get(job).map(|j| versioned(j, j.version)))
    }

    async fn insert_job(&self, job: &Job) -> Result<bool> {
        let mut state = self.lock();
        if state.jobs.contains_key(&job.name) {
            return Ok(false);
        }
        state.jobs.insert(job.name.clone(), job.clone());
        Ok(true)
    }

    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        let mut state = self.lock();
        match state.jobs.get(&new.name) {
            Some(current) if current.version.to_string() == old.revision => {
                state.jobs.insert(new.name.clone(), new.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        let mut state = self.lock();
        match state.jobs.get(&old.value.name) {
            Some(current) if current.version.to_string() == old.revision => {
                state.jobs.remove(&old.value.name);
                // Only the record: a task created after `delete_job`'s scan (and maybe claimed
                // since) stays, as on every other backend; an emptied job's map goes.
                if state
                    .tasks
                    .get(&old.value.name)
                    .is_some_and(|job| job.tasks.is_empty())
                {
                    state.tasks.remove(&old.value.name);
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn list_jobs(&self, state_filter: Option<JobState>) -> Result<Vec<Job>> {
        let state = self.lock();
        Ok(state
            .jobs
            .values()
            .filter(|j| state_filter.is_none_or(|s| j.state == s))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewTask, TaskId};

    #[cfg(feature = "testkit")]
    #[tokio::test]
    async fn a_copy_read_before_a_delete_does_not_match_the_re_created_task() {
        let docs = MemoryDocuments::default();
        crate::testkit::documents::a_copy_read_before_a_delete_does_not_match_the_re_created_task(
            &docs,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn deleting_a_job_record_leaves_a_task_created_after_the_scan() {
        let docs = MemoryDocuments::default();
        let now = Timestamp::from_millis(1_000);
        let name = JobName::new("j").unwrap_or_else(|e| panic!("{e}"));
        let record = crate::cas::ensure_job(&docs, &name, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let late = crate::lifecycle::create_task(
            &record,
            &NewTask::new(TaskId::new("late").unwrap_or_else(|e| panic!("{e}"))),
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        docs.insert_tasks(&[late])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let versioned = docs
            .get_job(&name)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("job"));
        assert!(
            docs.delete_job(&versioned)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        assert!(
            docs.get_job(&name)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        let key = TaskKey::new(name, TaskId::new("late").unwrap_or_else(|e| panic!("{e}")));
        assert!(
            docs.get_task(&key)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some(),
            "the late task stays"
        );
    }
}
