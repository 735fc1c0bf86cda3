//! Conformance cases: lease expiry, heartbeats and fencing.

use super::*;
use serde_json::json;

/// A lease is live while `now < expires_at`: at its expiry instant the task is claimable.
pub async fn lease_is_live_strictly_before_its_expiry(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    h.clock
        .set(c.lease.expires_at.minus(Duration::from_millis(1)));
    assert_refused(
        h.claim("a", "w2").await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    assert!(h.claim_next("w2", 1).await?.is_empty());
    h.clock.set(c.lease.expires_at);
    let taken = h.claim_next("w2", 1).await?;
    assert_eq!(taken.len(), 1, "claimable exactly at expires_at");
    assert_eq!(taken[0].lease.owner, "w2");
    Ok(())
}

/// A task whose lease expired is handed out again; the dead attempt is counted and recorded in
/// history as `lease_expired`.
pub async fn expired_lease_is_reclaimed_and_recorded_as_a_failed_attempt(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let dead = h.claim("a", "crashed").await?;
    h.advance(LEASE);
    let c = h.claim("a", "w2").await?;
    assert_eq!((c.task.attempts, c.lease.attempt), (2, 2));
    assert!(c.lease.token > dead.lease.token);
    let last = c
        .task
        .history
        .last()
        .ok_or_else(|| Error::backend("no history"))?;
    assert_eq!(
        (last.outcome, last.attempt, last.worker.as_str()),
        (Outcome::LeaseExpired, 1, "crashed")
    );
    assert_eq!(
        last.error.as_ref().map(|e| e.kind.as_str()),
        Some("lease_expired")
    );
    assert_eq!(
        c.task.error.as_ref().map(|e| e.kind.as_str()),
        Some("lease_expired")
    );
    assert_stale(h.store.succeed(&dead.lease, json!("late"), h.now()).await);
    Ok(())
}

/// When the expired lease was the last allowed attempt, the task becomes `exhausted` instead of
/// being claimed again, by a claim of its id or by claim_next.
pub async fn expired_lease_on_the_last_attempt_exhausts_the_task(h: Harness) -> Result<()> {
    let tasks = [
        NewTask::new(tid("a")).with_max_attempts(1),
        NewTask::new(tid("b")).with_max_attempts(1),
    ];
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    h.claim("a", "crashed").await?;
    h.claim("b", "crashed").await?;
    h.advance(LEASE);
    assert_refused(h.claim("a", "w2").await, &Refusal::Exhausted);
    assert!(
        h.claim_next("w2", 5).await?.is_empty(),
        "an exhausted task is never handed out"
    );
    for id in ["a", "b"] {
        let t = h.get(id).await?;
        assert_eq!(
            (t.status, t.attempts, &t.lease),
            (Status::Exhausted, 1, &None),
            "{id}"
        );
        assert_eq!(
            t.error.as_ref().map(|e| e.kind.as_str()),
            Some("lease_expired"),
            "{id}"
        );
        assert_eq!(t.finished_at, Some(h.now()), "{id}");
    }
    Ok(())
}

/// A heartbeat moves the expiry to `now + lease`, keeping the token.
pub async fn heartbeat_extends_the_lease(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    h.advance(Duration::from_secs(20));
    let renewed = h.store.heartbeat(&c.lease, LEASE, h.now()).await?;
    assert_eq!(
        (renewed.token, renewed.expires_at),
        (c.lease.token, h.now().plus(LEASE))
    );
    h.advance(Duration::from_secs(20));
    assert_refused(
        h.claim("a", "w2").await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    let zero = h.store.heartbeat(&c.lease, Duration::ZERO, h.now()).await;
    assert!(matches!(zero, Err(Error::InvalidInput(_))), "{zero:?}");
    h.store.succeed(&renewed, json!(1), h.now()).await?;
    Ok(())
}

/// After a takeover, the old holder's heartbeat, succeed, fail, release and data patch are all
/// `StaleLease`, and the new holder's state is untouched.
pub async fn stale_holder_cannot_heartbeat_succeed_fail_or_release(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let old = h.claim("a", "w1").await?;
    h.advance(LEASE);
    let new = h.claim("a", "w2").await?;
    assert_stale(h.store.heartbeat(&old.lease, LEASE, h.now()).await);
    assert_stale(h.store.succeed(&old.lease, json!("late"), h.now()).await);
    assert_stale(h.fail_now(&old.lease, "late").await);
    assert_stale(h.store.release(&old.lease, h.now()).await);
    assert_stale(
        h.store
            .patch_data(&old.lease, &json!({"x": 1}), h.now())
            .await,
    );
    assert_eq!(
        h.get("a").await?,
        new.task,
        "nothing the stale holder sent was written"
    );
    let mut forged = new.lease.clone();
    forged.token += 1;
    assert_stale(h.store.succeed(&forged, json!("forged"), h.now()).await);
    let mut other_task = new.lease.clone();
    other_task.key = h.key("missing");
    assert_stale(h.store.succeed(&other_task, json!(1), h.now()).await);
    Ok(())
}

/// A lease that ran out but was not taken over still holds its token: the holder may finish.
pub async fn holder_may_still_succeed_after_expiry_until_reclaimed(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "slow").await?;
    h.advance(LEASE + Duration::from_secs(5));
    let t = h.store.succeed(&c.lease, json!("made it"), h.now()).await?;
    assert_eq!((t.status, t.attempts), (Status::Succeeded, 1));
    Ok(())
}
