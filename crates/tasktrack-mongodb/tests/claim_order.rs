//! A lone worker claims in claim order even when the head of the queue is not claimable after
//! all: a task whose expired lease was its last attempt is exhausted by the claim that meets it,
//! and the next task in claim order takes its place — not a random one of the spare candidates
//! (found by the conformance suite's model check).

mod common;

use std::time::Duration;
use tasktrack_core::{
    Claim, ClaimNext, CreateMode, Error, JobName, NewTask, Status, TaskId, TaskKey, Timestamp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_after_an_exhausted_head_is_the_next_in_claim_order() -> Result<(), Error> {
    let Some(store) = common::store().await else {
        return Ok(());
    };
    let t = Timestamp::from_millis(1_800_000_000_000);
    let lease = Duration::from_secs(30);
    // The spares were shuffled: a wrong pick had a 2 in 3 chance each time.
    for round in 0..8 {
        let job = JobName::new(format!("order-{round}"))?;
        let id = |s: &str| TaskId::new(s);
        let mut tasks = vec![
            NewTask::new(id("last")?)
                .with_max_attempts(1)
                .with_priority(9),
        ];
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            tasks.push(NewTask::new(id(name)?).with_priority(-(i as i32)));
        }
        store
            .create(&job, &tasks, CreateMode::SkipExisting, t)
            .await?;
        let key = TaskKey::new(job.clone(), id("last")?);
        store.claim(&key, &Claim::new("gone", lease), t).await?;
        let later = t.plus(Duration::from_secs(31));
        let next = store
            .claim_next(&job, &ClaimNext::new("w", lease), later)
            .await?;
        let ids: Vec<String> = next.iter().map(|c| c.task.id.to_string()).collect();
        assert_eq!(
            ids,
            ["a"],
            "round {round}: a, the next after the exhausted head"
        );
        assert_eq!(store.get(&key).await?.status, Status::Exhausted);
    }
    Ok(())
}
