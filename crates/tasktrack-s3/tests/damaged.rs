//! A task object damaged by hand (or by another tool) must not stop its job: every `claim_next`
//! would otherwise meet it at the head of the claim order and fail with `Corrupt`. Claims go
//! past it, `get` still names it, and once it is repaired, a write through the store makes it
//! claimable again.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;
use tasktrack_core::{
    ClaimNext, CreateMode, ErrorKind, JobName, NewTask, Store, TaskId, TaskKey, Timestamp,
};
use tasktrack_s3::objects::{Got, Put};

fn ids(claimed: &[tasktrack_core::Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.task.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_go_past_a_damaged_task_object_until_it_is_repaired_and_rewritten() {
    let Some(writer) = common::fresh("damaged").await else {
        return;
    };
    let job = JobName::new("j").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let new = |id: &str| NewTask::new(TaskId::new(id).unwrap());
    let tasks = [new("a"), new("b"), new("c")];
    writer
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let a = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    let docs = writer.documents();
    let path = docs.layout().task(&a);
    let Got::Found(original, etag) = docs
        .objects()
        .get_json::<serde_json::Value>(&path, None)
        .await
        .unwrap()
    else {
        panic!("task a was not stored");
    };
    let Put::Written(damaged) = docs
        .objects()
        .put(&path, b"{ damaged".to_vec(), Some(&etag))
        .await
        .unwrap()
    else {
        panic!("task a was not damaged");
    };

    // Another process, which has not seen the tasks before, claims them.
    let store = common::open(writer.url()).await.unwrap();
    let claim = ClaimNext::new("w", Duration::from_secs(30));
    let first = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&first), ["b"], "a, first in claim order, is skipped");
    let err = store.get(&a).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("a.json"), "{err}");
    let second = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&second), ["c"]);
    assert!(store.claim_next(&job, &claim, t).await.unwrap().is_empty());
    // The process that wrote the tasks still has a's healthy copy in its cache: its claim
    // fails to write over the damaged object, and goes past it as well.
    let other = ClaimNext::new("w2", Duration::from_secs(30));
    let late = writer.claim_next(&job, &other, t).await;
    assert!(late.as_ref().is_ok_and(Vec::is_empty), "{late:?}");

    // Repaired by hand, then rewritten through the store: claimable again.
    let repaired = docs
        .objects()
        .put(
            &path,
            serde_json::to_vec(&original).unwrap(),
            Some(&damaged),
        )
        .await
        .unwrap();
    assert!(matches!(repaired, Put::Written(_)));
    store
        .create(&job, &[new("a")], CreateMode::Replace, t)
        .await
        .unwrap();
    let again = store.claim_next(&job, &claim, t).await.unwrap();
    assert_eq!(ids(&again), ["a"]);
}

/// `delete` removes a damaged task whatever its lease says, its index entry (counts, lists)
/// with it (the testkit's case; DESIGN.md, "A damaged task record does not stop its job"). The
/// object is damaged as above: a body that does not parse, written over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_task_can_be_deleted() {
    let Some(store) = common::fresh("damaged-delete").await else {
        return;
    };
    let docs = store.documents().clone();
    let h = tasktrack_core::testkit::Harness::new(store, "a_damaged_task_can_be_deleted", 1.0);
    tasktrack_core::testkit::damaged::a_damaged_task_can_be_deleted(h, |key| {
        damage(docs.clone(), key)
    })
    .await
    .unwrap();
}

/// A list names a damaged object in its page's `unreadable`, at the position its index entry
/// gives it, instead of failing the whole job's listing; `delete_job` removes it with the job
/// (the testkit's case; DESIGN.md, "A damaged task record does not stop its job"). Damaged as
/// above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_task_is_named_by_lists_not_hiding_the_others() {
    let Some(store) = common::fresh("damaged-list").await else {
        return;
    };
    let docs = store.documents().clone();
    let name = "a_damaged_task_is_named_by_lists_not_hiding_the_others";
    let h = tasktrack_core::testkit::Harness::new(store, name, 1.0);
    tasktrack_core::testkit::damaged::a_damaged_task_is_named_by_lists_not_hiding_the_others(
        h,
        |key| damage(docs.clone(), key),
    )
    .await
    .unwrap();
}

/// The testkit's `damage` hand: writes a body that does not parse over task `key`'s object
/// (conditional on the object as read, so that it damages the task the case wrote).
async fn damage(docs: tasktrack_s3::S3Documents, key: TaskKey) {
    let path = docs.layout().task(&key);
    let Got::Found(_, etag) = docs
        .objects()
        .get_json::<serde_json::Value>(&path, None)
        .await
        .unwrap()
    else {
        panic!("task {key} was not stored");
    };
    let put = docs
        .objects()
        .put(&path, b"{ damaged".to_vec(), Some(&etag))
        .await
        .unwrap();
    assert!(matches!(put, Put::Written(_)), "task {key} was not damaged");
}
