//! Conformance cases: many workers at once.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::future::Future;

/// Eight concurrent workers draining a job: each task is claimed exactly once while leases are
/// live, and every task ends succeeded.
pub async fn many_workers_claim_each_task_once(h: Harness) -> Result<()> {
    eight_workers_drain(&h, |h, w| async move {
        let mut mine = Vec::new();
        loop {
            let batch = h.claim_next(&format!("w{w}"), 1 + w % 3).await?;
            if batch.is_empty() {
                return Ok(mine);
            }
            for c in batch {
                h.store.succeed(&c.lease, json!(w), h.now()).await?;
                mine.push(c.task.id.to_string());
            }
        }
    })
    .await
}

/// Eight concurrent workers draining a job by hand-offs (`succeed_and_claim_next`): each task is
/// claimed exactly once and every task ends succeeded.
pub async fn workers_handing_off_claim_each_task_once(h: Harness) -> Result<()> {
    eight_workers_drain(&h, |h, w| async move {
        let req = ClaimNext::new(format!("w{w}"), LEASE);
        let mut mine = Vec::new();
        let mut held = h.store.claim_next(&h.job, &req, h.now()).await?;
        while let Some(c) = held.pop() {
            mine.push(c.task.id.to_string());
            let got = h
                .store
                .succeed_and_claim_next(&c.lease, json!(w), &req, h.now())
                .await?;
            held = got.next;
        }
        Ok(mine)
    })
    .await
}

/// Creates 400 tasks (scaled), runs eight `worker(h, w)` at once, each answering the ids it
/// completed, and checks that every task was completed by exactly one worker and counts as
/// succeeded.
async fn eight_workers_drain<W, F>(h: &Harness, worker: W) -> Result<()>
where
    W: Fn(Harness, usize) -> F,
    F: Future<Output = Result<Vec<String>>> + Send + 'static,
{
    let n = h.scaled(400);
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(tid(&format!("t{i:05}"))))
        .collect();
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    let workers: Vec<_> = (0..8).map(|w| tokio::spawn(worker(h.clone(), w))).collect();
    let mut claims: BTreeMap<String, usize> = BTreeMap::new();
    for w in workers {
        for id in w.await.map_err(Error::backend)?? {
            *claims.entry(id).or_default() += 1;
        }
    }
    assert_eq!(claims.len(), n, "every task was claimed");
    assert!(
        claims.values().all(|&c| c == 1),
        "no task was claimed twice: {claims:?}"
    );
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (n as u64, 0)
    );
    Ok(())
}

/// Two workers race for the same fresh task, round after round: exactly one wins each round, the
/// other is told it is locked.
pub async fn two_workers_race_for_one_task_and_exactly_one_wins(h: Harness) -> Result<()> {
    let rounds = h.scaled(1000);
    for round in 0..rounds {
        let id = format!("r{round}");
        h.add(&[id.as_str()]).await?;
        let race = |owner: &'static str| {
            let h = h.clone();
            let id = id.clone();
            tokio::spawn(async move { h.claim(&id, owner).await })
        };
        let (a, b) = (race("w1"), race("w2"));
        let results = [
            a.await.map_err(Error::backend)?,
            b.await.map_err(Error::backend)?,
        ];
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e.refusal(), Some(Refusal::Locked { .. })),
                    "round {round}: loser got {e:?}"
                );
            }
        }
        assert_eq!(
            h.get(&id).await?.attempts,
            1,
            "round {round}: only the winner's attempt counts"
        );
    }
    Ok(())
}
