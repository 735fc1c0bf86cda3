//! A task deleted and created again under its id, seen from two processes on moto: the first
//! process still remembers its copy of the deleted task (the store keeps recently written tasks
//! to write without reading), and that copy matches the new task on version, status and token
//! (they restart with the task). Its lease must not touch the new task.

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::json;
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_dynamodb::DynamoStore;

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "current_thread")]
async fn a_remembered_copy_of_a_deleted_task_never_overwrites_its_re_creation() {
    let Some(url) = common::fresh_url_or_skip("&counter_shards=1") else {
        return;
    };
    let first: DynamoStore = common::open_temporary(&url).await.unwrap();
    let second = tasktrack_dynamodb::open(&url).await.unwrap();
    let job = JobName::new("j").unwrap();
    let key = TaskKey::new(job.clone(), TaskId::new("x").unwrap());
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let new = [NewTask::new(key.id.clone())];

    first
        .create(&job, &new, CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    let old = first
        .claim(&key, &Claim::new("w1", LEASE), t0)
        .await
        .unwrap()
        .lease;

    // The lease runs out; the other process deletes the task, creates it again and claims it.
    let t1 = t0.plus(LEASE).plus(Duration::from_secs(1));
    second.delete(&key, t1).await.unwrap();
    second
        .create(&job, &new, CreateMode::SkipExisting, t1)
        .await
        .unwrap();
    let t2 = t1.plus(Duration::from_secs(1));
    let current = second
        .claim(&key, &Claim::new("w2", LEASE), t2)
        .await
        .unwrap();
    assert_eq!(
        (current.lease.token, current.task.version),
        (old.token, 2),
        "token and version restart with the task"
    );

    // The first process, from its remembered copy: every fenced call is refused.
    let heartbeat = first.heartbeat(&old, LEASE, t2).await;
    assert!(
        matches!(heartbeat, Err(Error::StaleLease { .. })),
        "{heartbeat:?}"
    );
    let succeed = first.succeed(&old, json!("old"), t2).await;
    assert!(
        matches!(succeed, Err(Error::StaleLease { .. })),
        "{succeed:?}"
    );

    let task = second.get(&key).await.unwrap();
    assert_eq!(task.lease.map(|l| l.owner), Some("w2".to_string()));
    assert_eq!(task.output, None);
    let done = second
        .succeed(&current.lease, json!("new"), t2)
        .await
        .unwrap();
    assert_eq!(
        (done.status, done.output),
        (Status::Succeeded, Some(json!("new")))
    );
}
