//! Conformance cases: claiming by id and claiming the next tasks.

use super::*;
use serde_json::json;

/// A claim sets `in_progress`, counts an attempt, bumps the token and returns a matching lease.
pub async fn claim_grants_a_lease_and_counts_an_attempt(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    assert_eq!(
        (c.task.status, c.task.attempts, c.task.token),
        (Status::InProgress, 1, 1)
    );
    assert_eq!(c.lease.key, h.key("a"));
    assert_eq!(
        (c.lease.owner.as_str(), c.lease.token, c.lease.attempt),
        ("w1", 1, 1)
    );
    assert_eq!(
        (c.lease.acquired_at, c.lease.expires_at),
        (h.now(), h.now().plus(LEASE))
    );
    assert_eq!(c.task.started_at, Some(h.now()));
    assert_eq!(
        h.get("a").await?,
        c.task,
        "the returned task is what was stored"
    );
    Ok(())
}

/// A claim refused because of someone else's live lease changes nothing on the task.
pub async fn claim_refused_by_live_lease_counts_no_attempt(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w1").await?;
    h.advance(Duration::from_secs(5));
    match h.claim("a", "w2").await {
        Err(Error::Refused {
            reason: Refusal::Locked { owner, expires_at },
            ..
        }) => {
            assert_eq!((owner.as_str(), expires_at), ("w1", c.lease.expires_at));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(h.get("a").await?, c.task, "a refused claim writes nothing");
    Ok(())
}

/// The holder claiming again gets the same token back, a later expiry, and no extra attempt.
pub async fn own_live_lease_is_reentrant_with_the_same_token(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let first = h.claim("a", "w1").await?;
    h.advance(Duration::from_secs(10));
    let again = h.claim("a", "w1").await?;
    assert_eq!(
        (again.lease.token, again.task.attempts),
        (first.lease.token, 1)
    );
    assert_eq!(again.lease.expires_at, h.now().plus(LEASE));
    h.store.succeed(&first.lease, json!("ok"), h.now()).await?;
    Ok(())
}

/// Claims of finished or missing tasks are typed refusals saying why.
pub async fn claim_of_finished_or_missing_task_says_why(h: Harness) -> Result<()> {
    h.add(&["done", "dead", "skip"]).await?;
    let c = h.claim("done", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    let c = h.claim("dead", "w").await?;
    let req = Fail {
        error: Failure::new("x", "boom"),
        retryable: false,
        backoff: Backoff::NONE,
    };
    h.store.fail(&c.lease, &req, h.now()).await?;
    h.store
        .ignore(&h.key("skip"), &Ignore::default(), h.now())
        .await?;
    assert_refused(h.claim("done", "w2").await, &Refusal::Succeeded);
    assert_refused(h.claim("dead", "w2").await, &Refusal::Exhausted);
    assert_refused(h.claim("skip", "w2").await, &Refusal::Ignored);
    let missing = h.claim("missing", "w2").await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    Ok(())
}

/// A lease of zero length, or longer than a century, is rejected before anything runs (and an
/// invalid worker id too); a century-long lease is granted and its expiry reads back.
pub async fn claim_with_zero_or_endless_lease_is_rejected(h: Harness) -> Result<()> {
    h.add(&["a", "long"]).await?;
    let endless = Duration::MAX;
    let too_long = h
        .store
        .claim(&h.key("a"), &Claim::new("w", endless), h.now())
        .await;
    assert!(
        matches!(too_long, Err(Error::InvalidInput(_))),
        "{too_long:?}"
    );
    let too_long_next = h
        .store
        .claim_next(&h.job, &ClaimNext::new("w", endless), h.now())
        .await;
    assert!(
        matches!(too_long_next, Err(Error::InvalidInput(_))),
        "{too_long_next:?}"
    );
    let century = crate::lifecycle::MAX_LEASE;
    let long = h
        .store
        .claim(&h.key("long"), &Claim::new("w", century), h.now())
        .await?;
    assert_eq!(long.lease.expires_at, h.now().plus(century));
    let stored = h.get("long").await?;
    assert_eq!(
        stored.lease.map(|l| l.expires_at),
        Some(h.now().plus(century))
    );
    let renewed = h.store.heartbeat(&long.lease, endless, h.now()).await;
    assert!(
        matches!(renewed, Err(Error::InvalidInput(_))),
        "{renewed:?}"
    );

    let zero = h
        .store
        .claim(&h.key("a"), &Claim::new("w", Duration::ZERO), h.now())
        .await;
    assert!(matches!(zero, Err(Error::InvalidInput(_))), "{zero:?}");
    let zero_next = h
        .store
        .claim_next(&h.job, &ClaimNext::new("w", Duration::ZERO), h.now())
        .await;
    assert!(
        matches!(zero_next, Err(Error::InvalidInput(_))),
        "{zero_next:?}"
    );
    let bad_owner = h
        .store
        .claim(&h.key("a"), &Claim::new("", LEASE), h.now())
        .await;
    assert!(
        matches!(bad_owner, Err(Error::InvalidInput(_))),
        "{bad_owner:?}"
    );
    assert_eq!(h.get("a").await?.status, Status::Pending);
    Ok(())
}

/// `force` takes a task from a live holder (or out of succeeded) with a new token; the old
/// holder's result is rejected.
pub async fn force_claim_bumps_the_token_and_fences_the_holder(h: Harness) -> Result<()> {
    h.add(&["a", "b"]).await?;
    let old = h.claim("a", "w1").await?;
    let forced = Claim {
        force: true,
        ..Claim::new("w2", LEASE)
    };
    let new = h.store.claim(&h.key("a"), &forced, h.now()).await?;
    assert!(new.lease.token > old.lease.token);
    assert_eq!((new.task.attempts, new.lease.owner.as_str()), (2, "w2"));
    assert_stale(h.store.succeed(&old.lease, json!("late"), h.now()).await);
    h.store.succeed(&new.lease, json!("mine"), h.now()).await?;
    assert_eq!(h.get("a").await?.output, Some(json!("mine")));
    let b = h.claim("b", "w1").await?;
    h.store.succeed(&b.lease, json!(1), h.now()).await?;
    let again = h.store.claim(&h.key("b"), &forced, h.now()).await?;
    assert_eq!(
        again.task.status,
        Status::InProgress,
        "force moves even a succeeded task"
    );
    Ok(())
}

/// claim_next hands out higher priority first, then the task claimable earliest, then by id.
pub async fn claim_next_takes_higher_priority_then_older_first(h: Harness) -> Result<()> {
    let t0 = h.now();
    let tasks = [
        NewTask {
            not_before: Some(t0.minus(Duration::from_secs(1))),
            ..NewTask::new(tid("low-old"))
        },
        NewTask::new(tid("low-new")).with_priority(0),
        NewTask::new(tid("high")).with_priority(5),
        NewTask {
            not_before: Some(t0.minus(Duration::from_secs(9))),
            ..NewTask::new(tid("low-oldest"))
        },
    ];
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, t0)
        .await?;
    let mut order = Vec::new();
    while let Some(c) = h.claim_next("w", 1).await?.pop() {
        order.push(c.task.id.to_string());
    }
    assert_eq!(order, ["high", "low-oldest", "low-old", "low-new"]);
    Ok(())
}

/// claim_next passes over the tasks not due yet of every priority: twelve priorities (more than
/// a store may seek one by one before it scans), each with a task scheduled 20 s ahead and most
/// with a due one, some only waiting. The due ones come in priority order, a batch stops at its
/// limit, an idle claim finds nothing, and 20 s later (the first claims' leases still live) the
/// waiting ones come in order.
pub async fn claim_next_passes_waiting_tasks_of_every_priority(h: Harness) -> Result<()> {
    let t0 = h.now();
    let later = t0.plus(Duration::from_secs(20));
    let priorities: Vec<i32> = (-5..7).rev().collect();
    let mut tasks = Vec::new();
    for &p in &priorities {
        tasks.push(NewTask {
            not_before: Some(later),
            ..NewTask::new(tid(&format!("wait{p}"))).with_priority(p)
        });
        if p % 3 != 0 {
            tasks.push(NewTask::new(tid(&format!("due{p}"))).with_priority(p));
        }
    }
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, t0)
        .await?;
    let ids = |claimed: Vec<Claimed>| -> Vec<String> {
        claimed.iter().map(|c| c.task.id.to_string()).collect()
    };
    let due: Vec<String> = priorities
        .iter()
        .filter(|&&p| p % 3 != 0)
        .map(|p| format!("due{p}"))
        .collect();
    assert_eq!(ids(h.claim_next("w", 3).await?), due[..3]);
    assert_eq!(ids(h.claim_next("w", 100).await?), due[3..]);
    assert!(
        h.claim_next("w", 100).await?.is_empty(),
        "nothing due: only waiting tasks and live leases"
    );
    h.clock.set(later);
    let waiting: Vec<String> = priorities.iter().map(|p| format!("wait{p}")).collect();
    assert_eq!(ids(h.claim_next("w", 100).await?), waiting);
    Ok(())
}

/// A batch claim returns distinct tasks, each with its own lease, up to the limit.
pub async fn claim_next_batch_returns_distinct_tasks(h: Harness) -> Result<()> {
    let ids: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    h.add(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await?;
    let first = h.claim_next("w1", 4).await?;
    let second = h.claim_next("w2", 100).await?;
    assert_eq!((first.len(), second.len()), (4, 6));
    let mut seen: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|c| c.task.id.to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 10);
    assert!(
        first
            .iter()
            .all(|c| c.lease.owner == "w1" && c.task.status == Status::InProgress)
    );
    assert!(
        h.claim_next("w3", 5).await?.is_empty(),
        "nothing left while leases are live"
    );
    let zero = h
        .store
        .claim_next(&h.job, &ClaimNext::new("w", LEASE).with_limit(0), h.now())
        .await;
    assert!(matches!(zero, Err(Error::InvalidInput(_))), "{zero:?}");
    let too_many = ClaimNext::new("w", LEASE).with_limit(crate::cas::MAX_CLAIM_LIMIT + 1);
    let refused = h.store.claim_next(&h.job, &too_many, h.now()).await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    // Stage names are never empty: an empty one is refused, not read as "any stage".
    let empty_stage = ClaimNext::new("w", LEASE).at_stage("");
    let refused = h.store.claim_next(&h.job, &empty_stage, h.now()).await;
    assert!(
        matches!(refused, Err(Error::InvalidInput(_))),
        "{refused:?}"
    );
    Ok(())
}

/// claim_next never hands out a task waiting for its backoff, a finished one, or a live one.
pub async fn claim_next_skips_backoff_finished_and_live_tasks(h: Harness) -> Result<()> {
    h.add(&["backoff", "done", "live", "free"]).await?;
    let c = h.claim("backoff", "w").await?;
    let wait = Fail {
        error: Failure::new("x", "later"),
        retryable: true,
        backoff: Backoff::new(Duration::from_secs(20), Duration::from_secs(20)),
    };
    let failed = h
        .store
        .fail(
            &c.lease,
            &Fail {
                backoff: Backoff {
                    jitter: false,
                    ..wait.backoff
                },
                ..wait
            },
            h.now(),
        )
        .await?;
    assert_eq!(
        failed.not_before,
        Some(h.now().plus(Duration::from_secs(20)))
    );
    let c = h.claim("done", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.claim("live", "w").await?;
    let got = h.claim_next("w2", 10).await?;
    assert_eq!(
        got.iter().map(|c| c.task.id.as_str()).collect::<Vec<_>>(),
        ["free"]
    );
    assert_refused(
        h.claim("backoff", "w2").await,
        &Refusal::NotYet { until: h.now() },
    );
    h.advance(Duration::from_secs(20)); // backoff over; the leases (30 s) are still live
    let got = h.claim_next("w2", 10).await?;
    assert_eq!(
        got.iter().map(|c| c.task.id.as_str()).collect::<Vec<_>>(),
        ["backoff"]
    );
    Ok(())
}

/// A `pending` task whose `not_before` is in the future is claimable from that instant on, not
/// before: a claim of its id is refused `NotYet` carrying that instant (and writes nothing) and
/// claim_next passes it by until then. A `failed` task waiting for its backoff says the same,
/// with its retry instant.
pub async fn a_scheduled_task_is_claimable_from_its_not_before(h: Harness) -> Result<()> {
    let at = h.now().plus(Duration::from_secs(60));
    let later = NewTask {
        not_before: Some(at),
        ..NewTask::new(tid("later"))
    };
    h.store
        .create(&h.job, &[later], CreateMode::SkipExisting, h.now())
        .await?;
    let before = h.get("later").await?;
    assert_eq!(
        (before.status, before.not_before),
        (Status::Pending, Some(at))
    );
    h.clock.set(at.minus(Duration::from_millis(1)));
    assert_refused_exactly(h.claim("later", "w").await, &Refusal::NotYet { until: at });
    assert!(
        h.claim_next("w", 5).await?.is_empty(),
        "not claimable a millisecond before its not_before"
    );
    assert_eq!(
        h.get("later").await?,
        before,
        "a refused claim writes nothing"
    );
    h.clock.set(at);
    let got = h.claim_next("w", 5).await?;
    assert_eq!(
        got.iter().map(|c| c.task.id.as_str()).collect::<Vec<_>>(),
        ["later"],
        "claimable exactly at its not_before"
    );
    assert_eq!((got[0].task.attempts, got[0].task.not_before), (1, None));

    h.add(&["retry"]).await?;
    let c = h.claim("retry", "w").await?;
    let req = Fail {
        error: Failure::new("x", "later"),
        retryable: true,
        backoff: Backoff {
            initial_ms: 10_000,
            max_ms: 10_000,
            jitter: false,
        },
    };
    let failed = h.store.fail(&c.lease, &req, h.now()).await?;
    let until = h.now().plus(Duration::from_secs(10));
    assert_eq!(failed.not_before, Some(until));
    h.clock.set(until.minus(Duration::from_millis(1)));
    assert_refused_exactly(h.claim("retry", "w2").await, &Refusal::NotYet { until });
    assert_eq!(
        h.get("retry").await?,
        failed,
        "a refused claim writes nothing"
    );
    h.clock.set(until);
    let again = h.claim("retry", "w2").await?;
    assert_eq!((again.task.attempts, again.lease.owner.as_str()), (2, "w2"));
    Ok(())
}

/// A re-entrant claim by the live holder keeps its token, acquisition and attempt, and moves
/// the expiry to `max(current, now + lease)`: a shorter lease never shortens the one held.
pub async fn a_reentrant_claim_never_shortens_the_lease(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let first = h.claim("a", "w1").await?;
    h.advance(Duration::from_secs(5));
    let short = h
        .store
        .claim(
            &h.key("a"),
            &Claim::new("w1", Duration::from_secs(10)),
            h.now(),
        )
        .await?;
    assert_eq!(short.lease, first.lease, "the lease held is kept as it was");
    assert_eq!(
        (
            short.task.attempts,
            short.task.token,
            short.task.started_at,
            short.task.history.len()
        ),
        (1, first.task.token, first.task.started_at, 0)
    );
    assert_eq!(h.get("a").await?, short.task);
    h.advance(Duration::from_secs(5));
    let long = h
        .store
        .claim(
            &h.key("a"),
            &Claim::new("w1", Duration::from_secs(60)),
            h.now(),
        )
        .await?;
    let extended = h.now().plus(Duration::from_secs(60));
    assert_eq!(
        (
            long.lease.token,
            long.lease.acquired_at,
            long.lease.expires_at
        ),
        (first.lease.token, first.lease.acquired_at, extended)
    );
    assert_eq!(
        h.get("a").await?.lease.map(|l| l.expires_at),
        Some(extended)
    );
    h.clock.set(first.lease.expires_at);
    assert_refused_exactly(
        h.claim("a", "w2").await,
        &Refusal::Locked {
            owner: "w1".into(),
            expires_at: extended,
        },
    );
    h.store.succeed(&first.lease, json!("ok"), h.now()).await?;
    Ok(())
}
