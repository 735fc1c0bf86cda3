//! Claim order in one process while the index lags its own claims: a claim's index update is
//! deferred to the next flush, so the index still places a claimed task where it was before the
//! claim. `claim_next` must order by this process's newer entry (the lease's expiry), as every
//! backend does (found by the conformance suite's model check).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::time::Duration;
use tasktrack_core::{Claim, ClaimNext, CreateMode, JobName, NewTask, Store, TaskId, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_claimed_in_its_expiry_order_not_its_stale_index_order() {
    let Some(store) = common::fresh("claim-order").await else {
        return;
    };
    let job = JobName::new("order").unwrap();
    let t = Timestamp::from_millis(1_800_000_000_000);
    let new = |id: &str| NewTask::new(TaskId::new(id).unwrap());
    store
        .create(&job, &[new("a"), new("b")], CreateMode::SkipExisting, t)
        .await
        .unwrap();
    // `a` is claimed (its index entry, claimable since `t`, now lags) and its lease runs out at
    // t + 30 s; `b` has been claimable since `t`.
    let key = tasktrack_core::TaskKey::new(job.clone(), TaskId::new("a").unwrap());
    store
        .claim(&key, &Claim::new("w", Duration::from_secs(30)), t)
        .await
        .unwrap();
    let later = t.plus(Duration::from_secs(44));
    let next = store
        .claim_next(&job, &ClaimNext::new("w2", Duration::from_secs(30)), later)
        .await
        .unwrap();
    let ids: Vec<String> = next.iter().map(|c| c.task.id.to_string()).collect();
    assert_eq!(
        ids,
        ["b"],
        "b (claimable since t) before a (since t + 30 s)"
    );
    let both = store
        .claim_next(
            &job,
            &ClaimNext::new("w2", Duration::from_secs(30)).with_limit(2),
            later,
        )
        .await
        .unwrap();
    let ids: Vec<String> = both.iter().map(|c| c.task.id.to_string()).collect();
    assert_eq!(ids, ["a"], "then a, its dead attempt recorded");
    assert_eq!(both[0].task.attempts, 2);
}
