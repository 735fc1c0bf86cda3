//! Test support: a store under a fresh key prefix, whose keys are removed when it is dropped.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A scratch store and the same store as `Arc<dyn Store>`, or `None` (see [`scratch`]). Keep the
/// first alive while the second is in use: dropping it removes the keys.
pub async fn scratch_store() -> Option<(Arc<Scratch>, Arc<dyn Store>)> {
    let scratch = scratch().await?;
    let store: Arc<dyn Store> = Arc::new(scratch.0.clone());
    Some((scratch, store))
}

/// A connection of the test's own to the server, for reading and editing keys behind the
/// store's back.
#[allow(clippy::unwrap_used)] // the store just reached the same server
pub async fn connection() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Plain new tasks named `ids`.
#[allow(clippy::unwrap_used)] // test ids are valid
pub fn new_tasks(ids: &[&str]) -> Vec<NewTask> {
    ids.iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect()
}

/// Creates `tasks` in `job`, leaving existing ones alone.
#[allow(clippy::unwrap_used)] // a test's setup failing is the test failing
pub async fn create(store: &dyn Store, job: &JobName, tasks: &[NewTask], now: Timestamp) {
    store
        .create(job, tasks, CreateMode::SkipExisting, now)
        .await
        .unwrap();
}

/// The conformance factory: a scratch store as `Arc<dyn Store>`.
pub async fn store() -> Option<Arc<dyn Store>> {
    let prefix = fresh_prefix();
    tasktrack_core::testkit::connect_or_skip("redis", HOW_TO_START, async {
        let store = tasktrack_redis::open(&url_with(&prefix)).await?;
        store.init().await?;
        let scratch = Arc::new(Scratch(store.clone()));
        Ok::<_, Error>(testkit::Guarded::wrap(Arc::new(store), scratch))
    })
    .await
}
