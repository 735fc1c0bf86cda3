//! A task deleted and created again under its id, seen from two processes: the first still has
//! its copy of the deleted task in its cache, at a higher version than the new task (versions
//! start afresh). That copy must neither decide the first process's claims nor be written into
//! the index over the new task's entry (which would hide the new task from every claim).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use serde_json::json;
use std::time::Duration;
use tasktrack_core::{
    Claim, ClaimNext, CreateMode, JobName, NewTask, Status, Store, TaskId, TaskKey, Timestamp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_copy_of_a_deleted_task_does_not_hide_its_re_creation() {
    let Some(first) = common::fresh("recreated").await else {
        return;
    };
    let job = JobName::new("j").unwrap();
    let key = TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    let new = [NewTask::new(key.id.clone())];
    let lease = Duration::from_secs(30);
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    first
        .create(&job, &new, CreateMode::SkipExisting, t0)
        .await
        .unwrap();
    let claimed = first
        .claim(&key, &Claim::new("w1", lease), t0)
        .await
        .unwrap();
    let done = first
        .succeed(&claimed.lease, json!("old"), t0)
        .await
        .unwrap();
    assert_eq!((done.status, done.version), (Status::Succeeded, 3));

    // Another process deletes the finished task and creates it again: version 1, pending.
    let second = common::open(first.url()).await.unwrap();
    let t1 = t0.plus(Duration::from_secs(1));
    second.delete(&key, t1).await.unwrap();
    second
        .create(&job, &new, CreateMode::SkipExisting, t1)
        .await
        .unwrap();

    // The first process, which remembers the deleted task (succeeded, version 3), claims.
    let req = ClaimNext::new("w2", lease);
    let won = first.claim_next(&job, &req, t1).await.unwrap();
    let got: Vec<(&str, Timestamp)> = won
        .iter()
        .map(|c| (c.task.id.as_str(), c.task.created_at))
        .collect();
    assert_eq!(got, [("a", t1)], "the re-created task is claimed");
    first
        .succeed(&won[0].lease, json!("new"), t1)
        .await
        .unwrap();
    let counts = second.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded, 1, "{counts:?}");
}
