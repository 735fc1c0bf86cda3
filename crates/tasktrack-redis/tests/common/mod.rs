//! Test support: a store under a fresh key prefix, whose keys are removed when it is dropped.

#![allow(dead_code)]

use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_redis::RedisStore;

/// The server tests use.
pub fn url() -> String {
    std::env::var("TASKTRACK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_string())
}

/// A prefix no other test (or run) uses.
pub fn fresh_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "tt-test-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The store URL for `prefix`.
pub fn url_with(prefix: &str) -> String {
    let base = url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}prefix={prefix}")
}

const HOW_TO_START: &str = "redis-server --daemonize yes --port 6379 --save '' --appendonly no (or: bash scripts/test -p tasktrack-redis)";

/// A [`RedisStore`] that removes its prefix's keys when dropped (also when a test panics).
#[derive(Debug)]
pub struct Scratch(pub RedisStore);

impl Drop for Scratch {
    fn drop(&mut self) {
        let prefix = self.0.prefix().to_string();
        // Drop cannot await, and the store's connection belongs to the test's runtime: remove
        // the keys over a fresh connection on a runtime of our own, in a thread of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(s) = tasktrack_redis::open(&url_with(&prefix)).await {
                    let _ = s.remove_all().await;
                }
            });
        })
        .join();
    }
}

/// Opens a scratch store, or `None` (printed; a failure under `CI=true`).
pub async fn scratch() -> Option<Arc<Scratch>> {
    let prefix = fresh_prefix();
    match tasktrack_redis::open(&url_with(&prefix)).await {
        Ok(s) => Some(Arc::new(Scratch(s))),
        Err(e) if tasktrack_core::testkit::in_ci() => {
            panic!("redis unreachable under CI=true: {e}. Start it with: {HOW_TO_START}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED redis test: server unreachable ({e}); start it with: {HOW_TO_START}"
            );
            None
        }
    }
}

/// The conformance factory: a scratch store as `Arc<dyn Store>`.
pub async fn store() -> Option<Arc<dyn Store>> {
    let prefix = fresh_prefix();
    tasktrack_core::testkit::connect_or_skip("redis", HOW_TO_START, async {
        let store = tasktrack_redis::open(&url_with(&prefix)).await?;
        store.init().await?;
        Ok::<_, Error>(Arc::new(Scratch(store)) as Arc<dyn Store>)
    })
    .await
}

#[async_trait]
impl Store for Scratch {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn init(&self) -> Result<()> {
        self.0.init().await
    }
    async fn put_job(&self, job: &JobName, spec: &JobSpec, now: Timestamp) -> Result<Job> {
        self.0.put_job(job, spec, now).await
    }
    async fn get_job(&self, job: &JobName) -> Result<Job> {
        self.0.get_job(job).await
    }
    async fn jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        self.0.jobs(state).await
    }
    async fn set_job_state(
        &self,
        job: &JobName,
        change: JobStateChange,
        now: Timestamp,
    ) -> Result<Job> {
        self.0.set_job_state(job, change, now).await
    }
    async fn delete_job(&self, job: &JobName, now: Timestamp) -> Result<Deleted> {
        self.0.delete_job(job, now).await
    }
    async fn create(
        &self,
        job: &JobName,
        tasks: &[NewTask],
        mode: CreateMode,
        now: Timestamp,
    ) -> Result<Created> {
        self.0.create(job, tasks, mode, now).await
    }
    async fn claim(&self, key: &TaskKey, req: &Claim, now: Timestamp) -> Result<Claimed> {
        self.0.claim(key, req, now).await
    }
    async fn claim_next(
        &self,
        job: &JobName,
        req: &ClaimNext,
        now: Timestamp,
    ) -> Result<Vec<Claimed>> {
        self.0.claim_next(job, req, now).await
    }
    async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
        self.0.heartbeat(lease, lease_for, now).await
    }
    async fn patch_data(&self, lease: &Lease, patch: &Value, now: Timestamp) -> Result<Task> {
        self.0.patch_data(lease, patch, now).await
    }
    async fn succeed(&self, lease: &Lease, output: Value, now: Timestamp) -> Result<Task> {
        self.0.succeed(lease, output, now).await
    }
    async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
        self.0.fail(lease, req, now).await
    }
    async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
        self.0.release(lease, now).await
    }
    async fn ignore(&self, key: &TaskKey, req: &Ignore, now: Timestamp) -> Result<Task> {
        self.0.ignore(key, req, now).await
    }
    async fn retry(&self, key: &TaskKey, req: &Retry, now: Timestamp) -> Result<Task> {
        self.0.retry(key, req, now).await
    }
    async fn report(&self, key: &TaskKey, req: &Report, now: Timestamp) -> Result<Task> {
        self.0.report(key, req, now).await
    }
    async fn delete(&self, key: &TaskKey, now: Timestamp) -> Result<()> {
        self.0.delete(key, now).await
    }
    async fn purge(&self, req: &Purge) -> Result<u64> {
        self.0.purge(req).await
    }
    async fn get(&self, key: &TaskKey) -> Result<Task> {
        self.0.get(key).await
    }
    async fn list(&self, query: &TaskQuery) -> Result<TaskPage> {
        self.0.list(query).await
    }
    async fn counts(&self, job: &JobName) -> Result<Counts> {
        self.0.counts(job).await
    }
}
