//! Conformance cases: progress counts.

use super::*;
use serde_json::json;

/// Counts follow every transition, status by status.
pub async fn counts_per_status_after_every_transition(h: Harness) -> Result<()> {
    h.add(&["p", "r", "f", "x", "s", "i"]).await?;
    h.claim("r", "w").await?;
    let c = h.claim("f", "w").await?;
    h.fail_now(&c.lease, "x").await?;
    let c = h.claim("x", "w").await?;
    h.store
        .fail(
            &c.lease,
            &Fail {
                retryable: false,
                ..Fail::new(Failure::new("x", "x"))
            },
            h.now(),
        )
        .await?;
    let c = h.claim("s", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.store
        .ignore(&h.key("i"), &Ignore::default(), h.now())
        .await?;
    let counts = h.store.counts(&h.job).await?;
    let expected = StatusCounts {
        pending: 1,
        in_progress: 1,
        failed: 1,
        exhausted: 1,
        succeeded: 1,
        ignored: 1,
    };
    assert_eq!(
        (counts.exists, counts.known, counts.by_status),
        (true, 6, expected)
    );
    assert!(counts.has_failures() && !counts.all_terminal());
    h.store.delete(&h.key("p"), h.now()).await?;
    assert_eq!(
        h.store.counts(&h.job).await?.by_status.pending,
        0,
        "deletes are counted too"
    );
    Ok(())
}

/// With an expected amount, tasks not yet created count as pending; more tasks than the amount
/// never give a negative count.
pub async fn counts_with_amount_count_missing_tasks_as_pending_never_negative(
    h: Harness,
) -> Result<()> {
    h.set_job(JobSpec {
        amount: Some(Some(5)),
        ..Default::default()
    })
    .await?;
    h.add(&["a", "b"]).await?;
    let c = h.claim("a", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (
            counts.amount,
            counts.known,
            counts.by_status.pending,
            counts.by_status.succeeded
        ),
        (Some(5), 2, 4, 1)
    );
    h.add(&["c", "d", "e", "f", "g"]).await?;
    let counts = h.store.counts(&h.job).await?;
    assert_eq!((counts.known, counts.by_status.pending), (7, 6));
    Ok(())
}

/// Counts of a job that does not exist are all zero and say `exists: false`.
pub async fn counts_of_an_unknown_job_are_zero_and_say_it_does_not_exist(h: Harness) -> Result<()> {
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.exists, counts.known, counts.by_status),
        (false, 0, StatusCounts::default())
    );
    Ok(())
}

/// Counts follow the transitions that counters are easiest to get wrong: a job with an amount
/// and no tasks yet is all pending (and exists); an expired lease counts as in progress until a
/// claim settles it (exhausting the task on its last attempt, or taking it); a replace, a purge
/// and a partial delete_job move the counts too, and tasks removed count as expected again.
pub async fn counts_follow_expiry_replace_purge_and_delete_job(h: Harness) -> Result<()> {
    let by_status = |pending, in_progress, exhausted, succeeded| StatusCounts {
        pending,
        in_progress,
        exhausted,
        succeeded,
        ..StatusCounts::default()
    };
    h.set_job(JobSpec {
        amount: Some(Some(10)),
        ..Default::default()
    })
    .await?;
    let c = h.store.counts(&h.job).await?;
    assert_eq!(
        (c.exists, c.amount, c.known, c.by_status),
        (true, Some(10), 0, by_status(10, 0, 0, 0))
    );
    let tasks = [
        NewTask::new(tid("a")).with_max_attempts(1),
        NewTask::new(tid("b")),
        NewTask::new(tid("c")),
    ];
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    h.claim("a", "w1").await?;
    h.claim("b", "w1").await?;
    h.advance(LEASE);
    let c = h.store.counts(&h.job).await?;
    assert_eq!(
        (c.known, c.by_status),
        (3, by_status(8, 2, 0, 0)),
        "expired leases are in progress until a claim settles them"
    );
    let got = h.claim_next("w2", 10).await?;
    let mut ids: Vec<&str> = got.iter().map(|c| c.task.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["b", "c"]);
    let c = h.store.counts(&h.job).await?;
    assert_eq!((c.known, c.by_status), (3, by_status(7, 2, 1, 0)));
    let done = got
        .iter()
        .find(|c| c.task.id.as_str() == "c")
        .ok_or_else(|| Error::backend("c was not claimed"))?;
    h.store.succeed(&done.lease, json!(1), h.now()).await?;
    assert_eq!(
        h.store.counts(&h.job).await?.by_status,
        by_status(7, 1, 1, 1)
    );
    h.store
        .create(
            &h.job,
            &[NewTask::new(tid("c"))],
            CreateMode::Replace,
            h.now(),
        )
        .await?;
    assert_eq!(
        h.store.counts(&h.job).await?.by_status,
        by_status(8, 1, 1, 0)
    );
    let purge = Purge {
        job: Some(h.job.clone()),
        statuses: vec![Status::Exhausted],
        older_than: h.now().plus(Duration::from_millis(1)),
    };
    assert_eq!(h.store.purge(&purge).await?, 1);
    let c = h.store.counts(&h.job).await?;
    assert_eq!((c.known, c.by_status), (2, by_status(9, 1, 0, 0)));
    let d = h.store.delete_job(&h.job, h.now()).await?;
    assert_eq!((d.tasks, d.kept_leased, d.job_removed), (1, 1, false));
    let c = h.store.counts(&h.job).await?;
    assert_eq!(
        (c.exists, c.known, c.by_status),
        (true, 1, by_status(9, 1, 0, 0))
    );
    Ok(())
}
