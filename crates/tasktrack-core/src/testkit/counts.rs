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
