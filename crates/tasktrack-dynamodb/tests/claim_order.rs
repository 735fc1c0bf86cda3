//! Claim order in one process while its claim pool (`crate::pool`) holds candidates that this
//! same process has since changed (found by the conformance suite's model check):
//! - a success at a non-final pipeline stage makes the task claimable again, so the next
//!   `claim_next` (the hand-off's in particular) must see it at once, not when the pool expires;
//! - a task claimed by id is no longer claimable: the pool must not offer it again (a lost
//!   write taken for contention, which shuffles the pool), and above all must never hand it to
//!   its own holder with the lease renewed.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use serde_json::json;
use std::time::Duration;
use tasktrack_core::{
    Claim, ClaimNext, CreateMode, JobName, JobSpec, NewTask, TaskId, TaskKey, Timestamp,
};

const LEASE: Duration = Duration::from_secs(30);

fn new(id: &str, priority: i32) -> NewTask {
    NewTask::new(TaskId::new(id).unwrap()).with_priority(priority)
}

fn ids(claimed: &[tasktrack_core::Claimed]) -> Vec<String> {
    claimed.iter().map(|c| c.task.id.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_that_advances_a_stage_claims_that_task_again_in_its_order() {
    let Some(store) = common::store().await else {
        return;
    };
    let job = JobName::new("pipeline").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let spec = JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..Default::default()
    };
    store.put_job(&job, &spec, t).await.unwrap();
    store
        .create(
            &job,
            &[new("t2", 0), new("t1", -1), new("t0", -1)],
            CreateMode::SkipExisting,
            t,
        )
        .await
        .unwrap();
    let req = ClaimNext::new("w", LEASE);
    let first = store.claim_next(&job, &req, t).await.unwrap();
    assert_eq!(ids(&first), ["t2"]);
    let got = store
        .succeed_and_claim_next(&first[0].lease, json!(1), &req, t)
        .await
        .unwrap();
    assert_eq!(got.done.stage.as_deref(), Some("two"));
    assert_eq!(
        ids(&got.next),
        ["t2"],
        "t2, pending at stage two with priority 0, comes before t0 (priority -1)"
    );
    assert_eq!(got.next[0].task.stage.as_deref(), Some("two"));
    // The single-step way too.
    let done = store
        .succeed(&got.next[0].lease, json!(2), t)
        .await
        .unwrap();
    assert_eq!(done.status, tasktrack_core::Status::Succeeded);
    let next = store.claim_next(&job, &req, t).await.unwrap();
    assert_eq!(ids(&next), ["t0"]);
    let many = store
        .succeed_many(&[(next[0].lease.clone(), json!(3))], t)
        .await
        .unwrap();
    assert_eq!(many[0].as_ref().unwrap().stage.as_deref(), Some("two"));
    let next = store.claim_next(&job, &req, t).await.unwrap();
    assert_eq!(
        ids(&next),
        ["t0"],
        "t0 at stage two before t1 (same priority, t0 < t1)"
    );
}

async fn claimed_by_id_is_skipped(other: &str) {
    let Some(store) = common::store().await else {
        return;
    };
    let job = JobName::new("order").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let tasks: Vec<NewTask> = ["a", "b", "c", "d", "e", "f", "g"]
        .iter()
        .zip((-3..=3).rev())
        .map(|(id, p)| new(id, p))
        .collect();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let req = ClaimNext::new("w", LEASE);
    assert_eq!(ids(&store.claim_next(&job, &req, t).await.unwrap()), ["a"]);
    let b = TaskKey::new(job.clone(), TaskId::new("b").unwrap());
    let held = store.claim(&b, &Claim::new(other, LEASE), t).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..5 {
        let got = store.claim_next(&job, &req, t).await.unwrap();
        order.extend(ids(&got));
    }
    assert_eq!(order, ["c", "d", "e", "f", "g"], "in claim order, never b");
    let stored = store.get(&b).await.unwrap();
    assert_eq!(stored.version, held.task.version, "b untouched");
    assert_eq!(stored.lease.map(|l| l.token), Some(held.lease.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_claimed_by_id_by_another_owner_leaves_the_claim_order_intact() {
    claimed_by_id_is_skipped("other").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_claimed_by_id_by_the_same_owner_is_not_claimed_again() {
    claimed_by_id_is_skipped("w").await;
}

/// What a holder whose lease ran out (not reclaimed yet) still does to its task.
#[derive(Debug, Clone, Copy)]
enum LateWrite {
    /// Patches its data: the task stays claimable, and is reclaimed next, in its order.
    Patch,
    /// Completes it: the task is gone from the queue.
    Succeed,
    /// Renews the lease: the task is held again.
    Heartbeat,
}

/// A holder whose lease ran out may still patch, complete or renew until the task is reclaimed
/// (found by the model check: such a write then `claim_next` in the same instant). The claim
/// pool still held the task's copy from before that write: the next `claim_next` lost its write
/// on it, took that for contention with another process and claimed a shuffled candidate instead
/// (and the next few calls shuffled too).
async fn a_late_holders_write_leaves_the_claim_order_intact(late: LateWrite) {
    let Some(store) = common::store().await else {
        return;
    };
    let job = JobName::new("late").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let mut tasks = vec![new("a", 2), new("x", 1)];
    tasks.extend(["b", "c", "d", "e", "f", "g", "h"].map(|id| new(id, 0)));
    store
        .create(&job, &tasks, CreateMode::SkipExisting, t)
        .await
        .unwrap();
    let x = TaskKey::new(job.clone(), TaskId::new("x").unwrap());
    let held = store.claim(&x, &Claim::new("old", LEASE), t).await.unwrap();
    let expired = t.plus(LEASE + Duration::from_secs(1));
    let req = ClaimNext::new("w", LEASE);
    assert_eq!(
        ids(&store.claim_next(&job, &req, expired).await.unwrap()),
        ["a"],
        "the pool is filled, x's expired lease in it"
    );
    let lease = &held.lease;
    match late {
        LateWrite::Patch => drop(
            store
                .patch_data(lease, &json!({"checkpoint": 1}), expired)
                .await
                .unwrap(),
        ),
        LateWrite::Succeed => drop(store.succeed(lease, json!(1), expired).await.unwrap()),
        LateWrite::Heartbeat => drop(store.heartbeat(lease, LEASE, expired).await.unwrap()),
    }
    let mut order = Vec::new();
    for _ in 0..8 {
        order.extend(ids(&store.claim_next(&job, &req, expired).await.unwrap()));
    }
    let mut expected = vec!["b", "c", "d", "e", "f", "g", "h"];
    if let LateWrite::Patch = late {
        expected.insert(0, "x"); // its expired lease is reclaimed next (priority 1)
    }
    assert_eq!(order, expected, "{late:?}: then in claim order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_patch_by_an_expired_holder_leaves_the_claim_order_intact() {
    a_late_holders_write_leaves_the_claim_order_intact(LateWrite::Patch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_by_an_expired_holder_leaves_the_claim_order_intact() {
    a_late_holders_write_leaves_the_claim_order_intact(LateWrite::Succeed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_by_an_expired_holder_leaves_the_claim_order_intact() {
    a_late_holders_write_leaves_the_claim_order_intact(LateWrite::Heartbeat).await;
}
