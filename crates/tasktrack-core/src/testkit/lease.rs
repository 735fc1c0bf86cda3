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

/// A lease ends at its expiry instant for every operation that respects one, not only for
/// claim_next: a millisecond before it, a claim of its id, ignore, retry, report, delete and
/// delete_job are refused (`Locked`, naming the holder and the expiry) and change nothing; at
/// it, each goes ahead and the dead attempt is recorded.
pub async fn a_lease_ends_at_its_expiry_for_every_operation(h: Harness) -> Result<()> {
    let ids = ["claim", "ignore", "retry", "report", "delete"];
    h.add(&ids).await?;
    let other = JobName::new(format!("{}-whole", h.job))?;
    let whole = TaskKey::new(other.clone(), tid("a"));
    h.store
        .create(
            &other,
            &[NewTask::new(tid("a"))],
            CreateMode::SkipExisting,
            h.now(),
        )
        .await?;
    let mut held = Vec::new();
    for id in ids {
        held.push(h.claim(id, "w1").await?);
    }
    h.store
        .claim(&whole, &Claim::new("w1", LEASE), h.now())
        .await?;
    let expiry = h.now().plus(LEASE);
    let locked = Refusal::Locked {
        owner: "w1".into(),
        expires_at: expiry,
    };

    h.clock.set(expiry.minus(Duration::from_millis(1)));
    let now = h.now();
    let ok = Report {
        success: true,
        detail: None,
    };
    assert_refused_exactly(h.claim("claim", "w2").await, &locked);
    assert_refused_exactly(
        h.store
            .ignore(&h.key("ignore"), &Ignore::default(), now)
            .await,
        &locked,
    );
    assert_refused_exactly(
        h.store.retry(&h.key("retry"), &Retry::default(), now).await,
        &locked,
    );
    assert_refused_exactly(h.store.report(&h.key("report"), &ok, now).await, &locked);
    assert_refused_exactly(h.store.delete(&h.key("delete"), now).await, &locked);
    for c in &held {
        assert_eq!(
            h.get(c.task.id.as_str()).await?,
            c.task,
            "a refusal writes nothing"
        );
    }
    let kept = h.store.delete_job(&other, now).await?;
    assert_eq!(
        (kept.tasks, kept.kept_leased, kept.job_removed),
        (0, 1, false)
    );

    h.clock.set(expiry);
    let now = h.now();
    let dead = |t: &Task, outcome: Outcome| {
        let outcomes: Vec<Outcome> = t.history.iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, [Outcome::LeaseExpired, outcome], "{}", t.id);
    };
    let c = h.claim("claim", "w2").await?;
    assert_eq!((c.task.attempts, c.lease.owner.as_str()), (2, "w2"));
    assert_eq!(
        c.task.history.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::LeaseExpired]
    );
    let t = h
        .store
        .ignore(&h.key("ignore"), &Ignore::default(), now)
        .await?;
    assert_eq!((t.status, &t.lease), (Status::Ignored, &None));
    dead(&t, Outcome::Ignored);
    let t = h
        .store
        .retry(&h.key("retry"), &Retry::default(), now)
        .await?;
    assert_eq!(
        (t.status, t.attempts, &t.lease),
        (Status::Pending, 0, &None)
    );
    assert_eq!(
        t.history.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::LeaseExpired]
    );
    let t = h.store.report(&h.key("report"), &ok, now).await?;
    assert_eq!((t.status, t.attempts), (Status::Succeeded, 2));
    dead(&t, Outcome::Succeeded);
    h.store.delete(&h.key("delete"), now).await?;
    assert!(matches!(h.get("delete").await, Err(Error::NotFound(_))));
    let gone = h.store.delete_job(&other, now).await?;
    assert_eq!(
        (gone.tasks, gone.kept_leased, gone.job_removed),
        (1, 0, true)
    );
    Ok(())
}
