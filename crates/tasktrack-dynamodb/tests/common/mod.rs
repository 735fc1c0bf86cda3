//! Shared test helpers: a store on a table of its own, on the moto server `scripts/test` starts.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tasktrack_core::{
    ClaimNext, CreateMode, Error, JobName, Lease, NewTask, Result, Store, Task, TaskId, TaskKey,
    Timestamp,
};
use tasktrack_dynamodb::{DynamoStore, Settings};

/// How to start the emulator, for the skip / failure message.
pub const HOW_TO_START: &str =
    "bash scripts/test -p tasktrack-dynamodb (starts moto), or set TASKTRACK_TEST_MOTO_ENDPOINT";

/// The emulator's endpoint.
pub fn endpoint() -> Result<String> {
    std::env::var("TASKTRACK_TEST_MOTO_ENDPOINT").map_err(|_| {
        Error::Unavailable("TASKTRACK_TEST_MOTO_ENDPOINT is not set (moto is not started)".into())
    })
}

/// A URL naming a fresh table on the emulator.
pub fn fresh_url(extra: &str) -> Result<String> {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let table = format!(
        "tt-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Ok(format!(
        "dynamodb://{table}?endpoint={}&region=us-east-1{extra}",
        endpoint()?
    ))
}

/// [`fresh_url`], or `None` with a SKIPPED line when moto is not running (a failure under
/// `CI=true`: backend tests never skip there).
pub fn fresh_url_or_skip(extra: &str) -> Option<String> {
    let Ok(url) = fresh_url(extra) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "moto is not running: {HOW_TO_START}"
        );
        eprintln!("SKIPPED: moto is not running ({HOW_TO_START})");
        return None;
    };
    Some(url)
}

/// A store on a fresh table with one counter shard, or `None` (see [`fresh_url_or_skip`]).
pub async fn fresh_store() -> Option<DynamoStore> {
    let url = fresh_url_or_skip("&counter_shards=1")?;
    match open_temporary(&url).await {
        Ok(store) => Some(store),
        Err(e) => panic!("cannot open {url}: {e}"),
    }
}

/// Opens `url`, creates its table, and deletes the table when the store is dropped.
pub async fn open_temporary(url: &str) -> Result<DynamoStore> {
    let settings = Settings::parse(url)?;
    let store = tasktrack_dynamodb::open(url).await?.temporary(settings);
    store.init().await?;
    Ok(store)
}

/// A store on a fresh table, or `None` (with a SKIPPED line; a failure under `CI=true`).
pub async fn store() -> Option<Arc<dyn Store>> {
    store_and_url().await.map(|(store, _)| store)
}

/// [`store`] and the URL of its table, for the cases that open more stores on the same table.
#[allow(clippy::unwrap_used)] // the store opened, so its URL was made
pub async fn store_and_url() -> Option<(Arc<dyn Store>, String)> {
    // The credentials the SDK needs; moto accepts any.
    let url = fresh_url("");
    let store = tasktrack_core::testkit::connect_or_skip("dynamodb", HOW_TO_START, async {
        let url = url.clone()?;
        open_temporary(&url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
    })
    .await?;
    Some((store, url.unwrap()))
}

/// The instant the single-process tests run at.
pub fn now() -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000)
}

/// Plain new tasks named `ids`.
#[allow(clippy::unwrap_used)] // test ids are valid
pub fn new_tasks(ids: &[&str]) -> Vec<NewTask> {
    ids.iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect()
}

/// Creates `ids` in `job` and claims them all (in id order), returning their leases.
#[allow(clippy::unwrap_used)] // a test's setup failing is the test failing
pub async fn claimed(store: &DynamoStore, job: &JobName, ids: &[&str]) -> Vec<Lease> {
    store
        .create(job, &new_tasks(ids), CreateMode::SkipExisting, now())
        .await
        .unwrap();
    let req = ClaimNext::new("w", Duration::from_secs(600)).with_limit(ids.len());
    let claims = store.claim_next(job, &req, now()).await.unwrap();
    let mut leases: Vec<Lease> = claims.into_iter().map(|c| c.lease).collect();
    leases.sort_by(|a, b| a.key.id.as_str().cmp(b.key.id.as_str()));
    assert_eq!(leases.len(), ids.len());
    leases
}

/// The key of task `id` in `job`.
#[allow(clippy::unwrap_used)] // test ids are valid
pub fn key(job: &JobName, id: &str) -> TaskKey {
    TaskKey::new(job.clone(), TaskId::new(id).unwrap())
}

/// The message of `result`'s `InvalidInput` refusal; any other answer fails the test, naming
/// `what` was expected to be refused.
pub fn invalid_input<'a, T: std::fmt::Debug>(result: &'a Result<T>, what: &str) -> &'a str {
    match result {
        Err(Error::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput for {what}, got {other:?}"),
    }
}

/// Claims `a`, `b` and `c` in `job` and completes them in one `succeed_many`, `b` with
/// `b_output` and the others with `0` and `2`: the leases and the per-lease answers.
#[allow(clippy::unwrap_used)] // a test's setup failing is the test failing
pub async fn succeed_many_abc(
    store: &DynamoStore,
    job: &JobName,
    b_output: Value,
) -> (Vec<Lease>, Vec<Result<Task>>) {
    let leases = claimed(store, job, &["a", "b", "c"]).await;
    let done = vec![
        (leases[0].clone(), json!(0)),
        (leases[1].clone(), b_output),
        (leases[2].clone(), json!(2)),
    ];
    let results = store.succeed_many(&done, now()).await.unwrap();
    (leases, results)
}
