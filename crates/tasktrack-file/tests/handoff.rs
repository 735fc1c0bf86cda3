//! The native hand-off (`succeed_and_claim_next`) is one transaction: one `commit` in the
//! journal (one journal fsync) where `succeed` then `claim_next` write two.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{journal, now, open};
use std::path::Path;
use std::time::Duration;
use tasktrack_core::*;

const LEASE: Duration = Duration::from_secs(60);

/// The number of transactions the job's journal has recorded.
fn commits(dir: &Path, job: &str) -> usize {
    std::fs::read_to_string(journal(dir, job))
        .unwrap()
        .lines()
        .filter(|l| l.trim() == "\"commit\"")
        .count()
}

#[tokio::test]
async fn a_hand_off_is_one_transaction_and_two_calls_are_two() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let job = JobName::new("j").unwrap();
    let tasks: Vec<NewTask> = ["a", "b", "c"]
        .iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, now())
        .await
        .unwrap();
    let req = ClaimNext::new("w", LEASE);
    let a = store.claim_next(&job, &req, now()).await.unwrap().remove(0);

    let before = commits(dir.path(), "j");
    let got = store
        .succeed_and_claim_next(&a.lease, serde_json::json!(1), &req, now())
        .await
        .unwrap();
    assert_eq!(commits(dir.path(), "j"), before + 1, "one transaction");
    assert_eq!(got.done.status, Status::Succeeded);
    let b = &got.next[0];
    assert_eq!(b.task.id.as_str(), "b");

    let before = commits(dir.path(), "j");
    store
        .succeed(&b.lease, serde_json::json!(2), now())
        .await
        .unwrap();
    store.claim_next(&job, &req, now()).await.unwrap();
    assert_eq!(commits(dir.path(), "j"), before + 2, "two transactions");

    // A refused hand-off writes nothing at all.
    let before = commits(dir.path(), "j");
    let refused = store
        .succeed_and_claim_next(&b.lease, serde_json::json!(3), &req, now())
        .await;
    assert!(
        matches!(refused, Err(Error::StaleLease { .. })),
        "{refused:?}"
    );
    assert_eq!(commits(dir.path(), "j"), before);

    // A hand-off in a job that has no directory is a stale lease, as `succeed` is.
    let ghost = Lease {
        key: TaskKey::new(JobName::new("ghost").unwrap(), TaskId::new("x").unwrap()),
        ..a.lease.clone()
    };
    let gone = store
        .succeed_and_claim_next(&ghost, serde_json::json!(4), &req, now())
        .await;
    assert!(matches!(gone, Err(Error::StaleLease { .. })), "{gone:?}");
}

/// The largest limit a claim takes (`cas::MAX_CLAIM_LIMIT`, "everything claimable" for a job this
/// size) claims every task, by `claim_next` and by a hand-off, without overflowing the batch
/// arithmetic (a panic in debug builds).
#[tokio::test]
async fn the_largest_claim_limit_claims_everything_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let job = JobName::new("j").unwrap();
    let tasks: Vec<NewTask> = (0..40)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:02}")).unwrap()))
        .collect();
    store
        .create(&job, &tasks[..20], CreateMode::SkipExisting, now())
        .await
        .unwrap();
    let all = ClaimNext::new("w", LEASE).with_limit(tasktrack_core::cas::MAX_CLAIM_LIMIT);
    let claimed = store.claim_next(&job, &all, now()).await.unwrap();
    assert_eq!(claimed.len(), 20);
    store
        .create(&job, &tasks[20..], CreateMode::SkipExisting, now())
        .await
        .unwrap();
    let got = store
        .succeed_and_claim_next(&claimed[0].lease, serde_json::json!(1), &all, now())
        .await
        .unwrap();
    assert_eq!(got.done.status, Status::Succeeded);
    assert_eq!(got.next.len(), 20);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.in_progress, counts.by_status.succeeded),
        (39, 1)
    );
}
