//! A write the server refuses for what it carries although the store let it through, on moto.
//!
//! moto refuses items over 405,000 bytes; the stores here keep DynamoDB's 409,600 (the default
//! `item_limit`), so an output or data of about 406,000 bytes passes the store's own check
//! (which leaves 2 KB of the limit free) and moto refuses the request with a
//! `ValidationException` ("Item size has exceeded the maximum allowed size") for the whole
//! request: a `PutItem`, or a `TransactWriteItems` whatever else it carries. That is the task's
//! fault, not the store's: `InvalidInput` naming the task, which the `Tracker` and `tasktrack
//! run` record as the attempt's failure (kind `unrecordable`) before going on, and the writes
//! that would have shared its request are written.

#![allow(clippy::unwrap_used)]

mod common;

use common::{claimed, invalid_input, key, new_tasks, now, succeed_many_abc};

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_dynamodb::DynamoStore;

/// A store on a fresh table at the default `item_limit` (above moto's), or `None` (SKIPPED
/// without moto; a failure under `CI=true`).
async fn store() -> Option<DynamoStore> {
    common::fresh_store().await
}

/// 406,000 bytes of JSON: within the store's limit (409,600 less 2 KB), over moto's 405,000.
fn over_moto() -> Value {
    Value::String("x".repeat(406_000))
}

/// `result` is the `InvalidInput` of moto's refusal of task `key`.
fn assert_refused(result: &Result<impl std::fmt::Debug>, key: &str) {
    let m = invalid_input(result, key);
    assert!(m.contains(&format!("task {key}")), "names the task: {m}");
    assert!(
        m.contains("Item size has exceeded the maximum allowed size"),
        "says why, in the server's words: {m}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_succeed_the_server_refuses_is_invalid_input_naming_the_task() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let leases = claimed(&store, &job, &["a"]).await;
    // A success moves the task's counter: one TransactWriteItems, refused as a whole.
    let refused = store.succeed(&leases[0], over_moto(), now()).await;
    assert_refused(&refused, "big/a");
    // Nothing was written: the holder can still record the failure, as the Tracker does.
    let a = store.get(&leases[0].key).await.unwrap();
    assert_eq!((a.status, &a.output), (Status::InProgress, &None));
    let err = refused.unwrap_err();
    let fail = Fail {
        retryable: false,
        ..Fail::new(Failure::unrecordable(&err))
    };
    let failed = store.fail(&leases[0], &fail, now()).await.unwrap();
    assert_eq!(failed.status, Status::Exhausted);
}

#[tokio::test(flavor = "current_thread")]
async fn a_data_patch_the_server_refuses_is_invalid_input_naming_the_task() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let leases = claimed(&store, &job, &["a"]).await;
    // A patch moves no counter: one PutItem.
    let patch = json!({ "blob": over_moto() });
    let refused = store.patch_data(&leases[0], &patch, now()).await;
    assert_refused(&refused, "big/a");
    let a = store.get(&leases[0].key).await.unwrap();
    assert_eq!((a.status, &a.data), (Status::InProgress, &Value::Null));
    // The lease still holds.
    store.succeed(&leases[0], json!("ok"), now()).await.unwrap();
}

/// What `tasktrack run` and the `Tracker` do with it: the attempt fails (`unrecordable`, not
/// retried), and the run goes on with the next task.
#[tokio::test(flavor = "current_thread")]
async fn the_tracker_records_an_output_the_server_refuses_and_goes_on() {
    let Some(store) = store().await else { return };
    let store: Arc<dyn Store> = Arc::new(store);
    let job = JobName::new("tracked").unwrap();
    store
        .create(
            &job,
            &new_tasks(&["a", "b", "c"]),
            CreateMode::SkipExisting,
            Timestamp::now(),
        )
        .await
        .unwrap();
    let tracker = Tracker::new(store.clone(), job.clone())
        .with_owner("worker-1")
        .with_lease(Duration::from_secs(60))
        .with_backoff(Backoff::NONE);
    let ran = tracker
        .run_all(|ctx| async move {
            let output = match ctx.task.id.as_str() {
                "a" => over_moto(),
                id => json!({ "id": id }),
            };
            Ok::<_, std::io::Error>(output)
        })
        .await
        .unwrap();
    assert_eq!(ran, 3);
    let a = store.get(&key(&job, "a")).await.unwrap();
    assert_eq!(a.status, Status::Exhausted);
    let error = a.error.unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(
        error.message.contains("task tracked/a")
            && error.message.contains("Item size has exceeded"),
        "{}",
        error.message
    );
    for id in ["b", "c"] {
        assert_eq!(
            store.get(&key(&job, id)).await.unwrap().status,
            Status::Succeeded
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn succeed_many_answers_an_output_the_server_refuses_alone() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    // The three completions share one transaction, which moto refuses as a whole.
    let (leases, results) = succeed_many_abc(&store, &job, over_moto()).await;
    assert_eq!(results.len(), 3);
    assert_refused(&results[1], "big/b");
    for i in [0, 2] {
        assert_eq!(results[i].as_ref().unwrap().status, Status::Succeeded);
        assert_eq!(
            store.get(&leases[i].key).await.unwrap().output,
            Some(json!(i))
        );
    }
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!((counts.succeeded, counts.in_progress), (2, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn a_create_the_server_refuses_for_one_task_writes_the_others_and_names_it() {
    let Some(store) = store().await else { return };
    let job = JobName::new("big").unwrap();
    let mut tasks = new_tasks(&["t0", "t1", "t2", "t3"]);
    tasks[2] = tasks[2].clone().with_data(over_moto());
    // The four inserts share one transaction, which moto refuses as a whole.
    let refused = store
        .create(&job, &tasks, CreateMode::SkipExisting, now())
        .await;
    let m = invalid_input(&refused, "big/t2");
    assert!(m.contains("1 task(s) not created"), "{m}");
    assert!(m.contains("task big/t2"), "names the task: {m}");
    assert!(m.contains("Item size has exceeded"), "says why: {m}");
    assert!(m.contains("3 created"), "says what became of the rest: {m}");
    for id in ["t0", "t1", "t3"] {
        assert_eq!(
            store.get(&key(&job, id)).await.unwrap().status,
            Status::Pending
        );
    }
    assert!(matches!(
        store.get(&key(&job, "t2")).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.counts(&job).await.unwrap().by_status.pending, 3);
}
