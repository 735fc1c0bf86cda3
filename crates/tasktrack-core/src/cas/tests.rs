//! The adapter's `claim_next` when a step fails or a candidate is damaged, over the memory
//! documents with a write that fails on purpose.

use super::*;
use crate::error::Error;
use crate::memory::MemoryDocuments;
use crate::model::{CountRow, NewTask, Status, TaskId};
use crate::store::{ClaimNext, CreateMode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Memory documents whose `fail_at`-th task replace (counting from 1) fails as a lost
/// connection would, before writing anything; with `race_create`, a `create` of task `late`
/// lands just before the first job record delete (a create racing `delete_job`).
#[derive(Debug, Default)]
struct FailingWrite {
    inner: MemoryDocuments,
    fail_at: usize,
    replaces: AtomicUsize,
    race_create: std::sync::atomic::AtomicBool,
    /// Every task replace loses its race (another writer got there first).
    always_lose: bool,
}

#[async_trait]
impl Documents for FailingWrite {
    fn backend(&self) -> &'static str {
        "failing"
    }
    async fn get_task(&self, key: &TaskKey) -> Result<Option<Versioned<Task>>> {
        self.inner.get_task(key).await
    }
    async fn insert_task(&self, task: &Task) -> Result<bool> {
        self.inner.insert_task(task).await
    }
    async fn replace_task(&self, old: &Versioned<Task>, new: &Task) -> Result<bool> {
        if self.replaces.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(Error::Unavailable("the write went nowhere".into()));
        }
        if self.always_lose {
            return Ok(false);
        }
        self.inner.replace_task(old, new).await
    }
    async fn delete_task(&self, old: &Versioned<Task>) -> Result<bool> {
        self.inner.delete_task(old).await
    }
    async fn delete_damaged(&self, key: &TaskKey) -> Result<bool> {
        self.inner.delete_damaged(key).await
    }
    async fn claimable(
        &self,
        job: &JobName,
        stage: Option<&str>,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Task>>> {
        self.inner.claimable(job, stage, now, limit).await
    }
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        self.inner.list_tasks(query).await
    }
    async fn count_tasks(&self, job: &JobName) -> Result<Vec<CountRow>> {
        self.inner.count_tasks(job).await
    }
    async fn get_job(&self, job: &JobName) -> Result<Option<Versioned<Job>>> {
        self.inner.get_job(job).await
    }
    async fn insert_job(&self, job: &Job) -> Result<bool> {
        self.inner.insert_job(job).await
    }
    async fn replace_job(&self, old: &Versioned<Job>, new: &Job) -> Result<bool> {
        self.inner.replace_job(old, new).await
    }
    async fn delete_job(&self, old: &Versioned<Job>) -> Result<bool> {
        if self.race_create.swap(false, Ordering::SeqCst) {
            let late = [NewTask::new(id("late"))];
            create(
                &self.inner,
                &old.value.name,
                &late,
                CreateMode::SkipExisting,
                NOW,
            )
            .await?;
        }
        self.inner.delete_job(old).await
    }
    async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        self.inner.list_jobs(state).await
    }
}

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const LEASE: Duration = Duration::from_secs(30);

fn job() -> JobName {
    JobName::new("j").unwrap_or_else(|e| panic!("{e}"))
}

fn id(s: &str) -> TaskId {
    TaskId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

/// Documents holding pending tasks `ids`, in that claim order, whose `fail_at`-th replace fails.
async fn with_tasks(ids: &[&str], fail_at: usize) -> FailingWrite {
    let docs = FailingWrite {
        fail_at,
        ..FailingWrite::default()
    };
    let new: Vec<NewTask> = ids
        .iter()
        .zip(0..)
        .map(|(s, i)| NewTask::new(id(s)).with_priority(-i))
        .collect();
    create(&docs, &job(), &new, CreateMode::SkipExisting, NOW)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    docs
}

async fn status(docs: &FailingWrite, s: &str) -> Status {
    get(docs, &TaskKey::new(job(), id(s)))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status
}

#[tokio::test]
async fn a_claim_whose_later_write_fails_answers_with_the_leases_it_granted() {
    let docs = with_tasks(&["a", "b", "c", "d", "e"], 4).await;
    let req = ClaimNext::new("w", LEASE).with_limit(5);
    let won = claim_next(&docs, &job(), &req, NOW)
        .await
        .unwrap_or_else(|e| panic!("the three leases granted were dropped: {e}"));
    let ids: Vec<&str> = won.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    for (s, expected) in [("c", Status::InProgress), ("d", Status::Pending)] {
        assert_eq!(status(&docs, s).await, expected, "task {s}");
    }
}

#[tokio::test]
async fn a_claim_that_won_nothing_answers_the_error() {
    let docs = with_tasks(&["a", "b"], 1).await;
    let req = ClaimNext::new("w", LEASE).with_limit(2);
    let claimed = claim_next(&docs, &job(), &req, NOW).await;
    assert!(matches!(claimed, Err(Error::Unavailable(_))), "{claimed:?}");
}

/// Edits `name`'s token by hand to the largest value: the claim rule can no longer bump it.
async fn damage(docs: &FailingWrite, name: &str) {
    let key = TaskKey::new(job(), id(name));
    let read = docs
        .get_task(&key)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    let mut edited = read.value.clone();
    edited.token = u64::MAX;
    assert!(
        docs.inner
            .replace_task(&read, &edited)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
}

#[tokio::test]
async fn a_candidate_the_claim_rule_finds_corrupt_is_passed_over() {
    let docs = with_tasks(&["damaged", "b"], 0).await;
    damage(&docs, "damaged").await;
    for limit in [1, 2] {
        let req = ClaimNext::new(format!("w{limit}"), LEASE).with_limit(limit);
        let won = claim_next(&docs, &job(), &req, NOW)
            .await
            .unwrap_or_else(|e| panic!("a damaged head stopped the claim: {e}"));
        let ids: Vec<&str> = won.iter().map(|c| c.task.id.as_str()).collect();
        let expected: &[&str] = if limit == 1 { &["b"] } else { &[] };
        assert_eq!(ids, expected, "limit {limit}");
    }
    assert_eq!(status(&docs, "damaged").await, Status::Pending);
}

/// More corrupt heads than a claim has rounds: the rounds ask for twice as many candidates as
/// they passed over, so a claim of one still reaches the healthy task behind them.
#[tokio::test]
async fn many_corrupt_heads_do_not_hide_the_queue() {
    let names: Vec<String> = (0..100).map(|i| format!("d{i:03}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.push("healthy");
    let docs = with_tasks(&all, 0).await;
    for name in &names {
        damage(&docs, name).await;
    }
    let req = ClaimNext::new("w", LEASE);
    let won = claim_next(&docs, &job(), &req, NOW)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = won.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["healthy"]);
}

/// A `create` that lands between `delete_job`'s listing and its removal of the job record keeps
/// its job: the record is put back, as if the create had run first and its task were kept.
#[tokio::test]
async fn a_create_racing_delete_job_keeps_its_job_record() {
    let docs = with_tasks(&["a"], 0).await;
    docs.race_create.store(true, Ordering::SeqCst);
    let deleted = delete_job(&docs, &job(), NOW)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (deleted.tasks, deleted.job_removed),
        (1, false),
        "{deleted:?}"
    );
    let record = get_job(&docs, &job()).await;
    assert!(record.is_ok(), "the job record is back: {record:?}");
    assert_eq!(status(&docs, "late").await, Status::Pending);
}

/// A `claim_next` whose every write loses its race, round after round, says so (`Contention`)
/// instead of answering "nothing to claim" while the task waits: a worker would stop.
#[tokio::test]
async fn a_claim_that_loses_every_race_is_contention_not_an_empty_queue() {
    let mut docs = with_tasks(&["a"], 0).await;
    docs.always_lose = true;
    let got = claim_next(&docs, &job(), &ClaimNext::new("w", LEASE), NOW).await;
    assert!(matches!(got, Err(Error::Contention(_))), "{got:?}");
}
