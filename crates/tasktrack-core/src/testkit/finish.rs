//! Conformance cases: succeed, fail, release, data patches and history.

use super::*;
use serde_json::json;

/// Success stores the output, clears the last error (kept in history) and finishes the task.
pub async fn succeed_records_output_and_clears_the_error(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w").await?;
    h.fail_now(&c.lease, "first try").await?;
    h.advance(Duration::from_secs(1));
    let c = h.claim("a", "w").await?;
    h.advance(Duration::from_secs(2));
    let t = h
        .store
        .succeed(&c.lease, json!({"rows": 3}), h.now())
        .await?;
    assert_eq!(
        (t.status, t.attempts, &t.output, &t.error, &t.lease),
        (
            Status::Succeeded,
            2,
            &Some(json!({"rows": 3})),
            &None,
            &None
        )
    );
    assert_eq!(t.finished_at, Some(h.now()));
    let outcomes: Vec<Outcome> = t.history.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [Outcome::Failed, Outcome::Succeeded]);
    assert_eq!(
        t.history[0].error.as_ref().map(|e| e.message.as_str()),
        Some("first try")
    );
    assert_eq!(
        (t.history[1].started, t.history[1].finished),
        (c.lease.acquired_at, h.now())
    );
    assert_eq!(h.get("a").await?, t);
    assert_stale(h.store.succeed(&c.lease, json!("twice"), h.now()).await);
    Ok(())
}

/// A failure with attempts left is `failed` until `now + backoff(attempts)`; the last allowed one
/// is `exhausted`.
pub async fn fail_waits_for_backoff_then_exhausts_at_max_attempts(h: Harness) -> Result<()> {
    h.store
        .create(
            &h.job,
            &[NewTask::new(tid("a")).with_max_attempts(2)],
            CreateMode::SkipExisting,
            h.now(),
        )
        .await?;
    let backoff = Backoff {
        initial_ms: 10_000,
        max_ms: 60_000,
        jitter: true,
    };
    let c = h.claim("a", "w").await?;
    let error = Failure::new("exit", "exit code 1").with_detail("Traceback: ...");
    let t = h
        .store
        .fail(
            &c.lease,
            &Fail {
                error: error.clone(),
                retryable: true,
                backoff,
            },
            h.now(),
        )
        .await?;
    let delay = backoff.delay(&h.key("a"), 1);
    assert!(delay >= Duration::from_secs(5) && delay <= Duration::from_secs(10));
    assert_eq!(
        (t.status, t.not_before, &t.error),
        (Status::Failed, Some(h.now().plus(delay)), &Some(error))
    );
    assert_refused(h.claim("a", "w").await, &Refusal::NotYet { until: h.now() });
    h.advance(delay);
    let c = h.claim("a", "w").await?;
    assert_eq!(c.task.attempts, 2);
    let t = h
        .store
        .fail(
            &c.lease,
            &Fail {
                error: Failure::new("exit", "again"),
                retryable: true,
                backoff,
            },
            h.now(),
        )
        .await?;
    assert_eq!(
        (t.status, t.attempts, t.finished_at),
        (Status::Exhausted, 2, Some(h.now()))
    );
    assert_eq!(t.error.map(|e| e.message), Some("again".to_string()));
    Ok(())
}

/// A non-retryable failure exhausts the task at once, attempts left or not.
pub async fn non_retryable_failure_exhausts_at_once(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w").await?;
    let req = Fail {
        error: Failure::new("bad_input", "cannot parse"),
        retryable: false,
        backoff: Backoff::default(),
    };
    let t = h.store.fail(&c.lease, &req, h.now()).await?;
    assert_eq!(
        (t.status, t.attempts, t.max_attempts),
        (Status::Exhausted, 1, 3)
    );
    Ok(())
}

/// Release gives the task back as pending without counting the attempt.
pub async fn release_returns_to_pending_without_counting_the_attempt(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w").await?;
    let t = h.store.release(&c.lease, h.now()).await?;
    assert_eq!(
        (t.status, t.attempts, &t.lease),
        (Status::Pending, 0, &None)
    );
    assert_eq!(t.history.last().map(|a| a.outcome), Some(Outcome::Released));
    let again = h.claim_next("w2", 1).await?;
    assert_eq!(again.len(), 1, "claimable at once");
    assert_eq!(again[0].task.attempts, 1);
    assert_stale(h.store.release(&c.lease, h.now()).await);
    Ok(())
}

/// Data patches by the holder are merge patches fenced by its token, and they persist whatever
/// the outcome (a checkpoint survives a failure).
pub async fn data_patches_by_the_holder_survive_a_failure(h: Harness) -> Result<()> {
    let new = NewTask::new(tid("a")).with_data(json!({"input": "x", "progress": 0, "tmp": true}));
    h.store
        .create(&h.job, &[new], CreateMode::SkipExisting, h.now())
        .await?;
    let c = h.claim("a", "w").await?;
    let t = h
        .store
        .patch_data(&c.lease, &json!({"progress": 50, "tmp": null}), h.now())
        .await?;
    assert_eq!(t.data, json!({"input": "x", "progress": 50}));
    h.fail_now(&c.lease, "crash after checkpoint").await?;
    let t = h.get("a").await?;
    assert_eq!(
        (t.status, &t.data, &t.output),
        (
            Status::Failed,
            &json!({"input": "x", "progress": 50}),
            &None
        )
    );
    Ok(())
}

/// History keeps the newest twenty records.
pub async fn history_keeps_the_last_twenty_attempts(h: Harness) -> Result<()> {
    h.store
        .create(
            &h.job,
            &[NewTask::new(tid("a")).with_max_attempts(100)],
            CreateMode::SkipExisting,
            h.now(),
        )
        .await?;
    for i in 1..=25 {
        let c = h.claim("a", "w").await?;
        h.fail_now(&c.lease, &format!("failure {i}")).await?;
    }
    let t = h.get("a").await?;
    assert_eq!((t.attempts, t.history.len()), (25, HISTORY_LIMIT));
    assert_eq!(t.history.first().map(|a| a.attempt), Some(6));
    assert_eq!(
        t.history
            .last()
            .and_then(|a| a.error.as_ref())
            .map(|e| e.message.as_str()),
        Some("failure 25")
    );
    Ok(())
}

/// Batched completion answers per lease, in order, exactly as one `succeed` each would: fresh
/// leases succeed, a stale one is [`Error::StaleLease`] without spoiling the others, and a
/// pipeline task advances to its next stage.
pub async fn succeed_many_answers_each_lease_in_order(h: Harness) -> Result<()> {
    h.add(&["a", "b", "c", "d"]).await?;
    let a = h.claim("a", "w").await?;
    let b = h.claim("b", "w").await?;
    let stale = h.claim("c", "w").await?;
    let d = h.claim("d", "w").await?;
    h.store.release(&stale.lease, h.now()).await?;
    let c = h.claim("c", "w2").await?;
    h.advance(Duration::from_secs(1));
    let done = [
        (b.lease.clone(), json!("b")),
        (stale.lease.clone(), json!("late")),
        (a.lease.clone(), json!({"a": 1})),
        (d.lease.clone(), json!(null)),
    ];
    let results = h.store.succeed_many(&done, h.now()).await?;
    assert_eq!(results.len(), 4);
    let mut results = results.into_iter();
    let mut next = || {
        results
            .next()
            .ok_or_else(|| Error::backend("missing result"))
    };
    let t = next()??;
    assert_eq!((t.id.as_str(), t.status), ("b", Status::Succeeded));
    assert_stale(next()?);
    let t = next()??;
    assert_eq!((t.id.as_str(), &t.output), ("a", &Some(json!({"a": 1}))));
    assert_eq!(t.finished_at, Some(h.now()));
    assert_eq!(next()??.status, Status::Succeeded);
    assert_eq!(h.get("a").await?, t);
    assert_eq!(h.get("c").await?.lease.map(|l| l.owner), Some("w2".into()));
    assert_eq!(h.store.succeed_many(&[], h.now()).await?.len(), 0);
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (3, 1)
    );
    h.store.succeed(&c.lease, json!("c"), h.now()).await?;
    Ok(())
}

/// A batch that names one task twice is answered per lease, by each lease's own fence: the
/// earlier holder's lease (expired, the task since claimed again) is stale and the current
/// holder's succeeds, in either order; the same lease given twice succeeds once, with the
/// output of its first entry, and is stale the second time, as two `succeed` calls would be.
pub async fn succeed_many_answers_each_lease_by_its_own_fence(h: Harness) -> Result<()> {
    h.add(&["a", "b", "c"]).await?;
    let (old_a, old_c) = (h.claim("a", "w1").await?, h.claim("c", "w1").await?);
    h.advance(LEASE + Duration::from_secs(1));
    let (a, c) = (h.claim("a", "w2").await?, h.claim("c", "w2").await?);
    let done = [
        (old_a.lease.clone(), json!("old")),
        (a.lease.clone(), json!("current")),
        (c.lease.clone(), json!("current")),
        (old_c.lease.clone(), json!("old")),
    ];
    let mut results = h.store.succeed_many(&done, h.now()).await?.into_iter();
    let mut next = || results.next().ok_or_else(|| Error::backend("no answer"));
    assert_stale(next()?);
    assert_eq!(next()??.output, Some(json!("current")));
    assert_eq!(next()??.output, Some(json!("current")));
    assert_stale(next()?);
    for id in ["a", "c"] {
        assert_eq!(h.get(id).await?.output, Some(json!("current")), "{id}");
    }

    let b = h.claim("b", "w").await?;
    let twice = [
        (b.lease.clone(), json!("first")),
        (b.lease.clone(), json!("second")),
    ];
    let mut results = h.store.succeed_many(&twice, h.now()).await?.into_iter();
    let mut next = || results.next().ok_or_else(|| Error::backend("no answer"));
    assert_eq!(next()??.output, Some(json!("first")));
    assert_stale(next()?);
    assert_eq!(h.get("b").await?.output, Some(json!("first")));
    assert_eq!(h.store.counts(&h.job).await?.by_status.succeeded, 3);
    Ok(())
}

/// Batched completion of pipeline tasks advances each to its next stage (not succeeded).
pub async fn succeed_many_advances_pipeline_stages(h: Harness) -> Result<()> {
    h.set_job(JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..Default::default()
    })
    .await?;
    h.add(&["p", "q"]).await?;
    let p = h.claim("p", "w").await?;
    let q = h.claim("q", "w").await?;
    let done = [(p.lease, json!(1)), (q.lease, json!(2))];
    for t in h.store.succeed_many(&done, h.now()).await? {
        let t = t?;
        assert_eq!(
            (t.status, t.stage.as_deref(), t.attempts),
            (Status::Pending, Some("two"), 0)
        );
    }
    Ok(())
}

/// A hand-off records the success, then claims the next task in claim order for the same owner;
/// on a drained job it claims nothing.
pub async fn succeed_and_claim_next_completes_then_claims(h: Harness) -> Result<()> {
    h.add(&["a", "b", "c"]).await?;
    let a = h.claim("a", "w").await?;
    h.advance(Duration::from_secs(1));
    let req = ClaimNext::new("w", LEASE);
    let got = h
        .store
        .succeed_and_claim_next(&a.lease, json!({"a": 1}), &req, h.now())
        .await?;
    assert_eq!(
        (got.done.id.as_str(), got.done.status, &got.done.output),
        ("a", Status::Succeeded, &Some(json!({"a": 1})))
    );
    assert_eq!(got.done.finished_at, Some(h.now()));
    assert_eq!(h.get("a").await?, got.done);
    let ids: Vec<&str> = got.next.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["b"]);
    let b = &got.next[0];
    assert_eq!(
        (b.task.status, b.task.attempts, b.lease.owner.as_str()),
        (Status::InProgress, 1, "w")
    );
    assert_eq!(b.lease.expires_at, h.now().plus(LEASE));
    assert_eq!(h.get("b").await?, b.task);
    let two = ClaimNext::new("w", LEASE).with_limit(2);
    let got = h
        .store
        .succeed_and_claim_next(&b.lease, json!(null), &two, h.now())
        .await?;
    let ids: Vec<&str> = got.next.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["c"]);
    let got = h
        .store
        .succeed_and_claim_next(&got.next[0].lease, json!(null), &req, h.now())
        .await?;
    assert!(got.next.is_empty(), "nothing left to claim: {:?}", got.next);
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.in_progress),
        (3, 0)
    );
    Ok(())
}

/// A hand-off whose success is refused (the lease was taken over) returns that error and claims
/// nothing; a bad claim request is rejected before anything is written.
pub async fn succeed_and_claim_next_with_a_stale_lease_claims_nothing(h: Harness) -> Result<()> {
    h.add(&["a", "b"]).await?;
    let old = h.claim("a", "w1").await?;
    let forced = Claim {
        force: true,
        ..Claim::new("w2", LEASE)
    };
    h.store.claim(&h.key("a"), &forced, h.now()).await?;
    let req = ClaimNext::new("w1", LEASE);
    assert_stale(
        h.store
            .succeed_and_claim_next(&old.lease, json!("late"), &req, h.now())
            .await,
    );
    assert_eq!(h.get("b").await?.status, Status::Pending);
    let a = h.get("a").await?;
    assert_eq!(
        (a.status, a.lease.map(|l| l.owner)),
        (Status::InProgress, Some("w2".to_string()))
    );

    let mine = h.claim("b", "w1").await?;
    let bad = ClaimNext::new("w1", LEASE).with_limit(0);
    let result = h
        .store
        .succeed_and_claim_next(&mine.lease, json!(1), &bad, h.now())
        .await;
    assert!(
        matches!(result, Err(Error::InvalidInput(_))),
        "a zero limit is rejected: {result:?}"
    );
    assert_eq!(h.get("b").await?.status, Status::InProgress);
    Ok(())
}

/// A hand-off of a pipeline task advances it to its next stage; the claim that follows honours
/// the request's stage.
pub async fn succeed_and_claim_next_advances_a_pipeline_stage(h: Harness) -> Result<()> {
    h.set_job(JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..Default::default()
    })
    .await?;
    h.add(&["p", "q"]).await?;
    let p = h.claim("p", "w").await?;
    let req = ClaimNext::new("w", LEASE).at_stage("two");
    let got = h
        .store
        .succeed_and_claim_next(&p.lease, json!(1), &req, h.now())
        .await?;
    assert_eq!(
        (
            got.done.status,
            got.done.stage.as_deref(),
            got.done.attempts
        ),
        (Status::Pending, Some("two"), 0)
    );
    let ids: Vec<(&str, Option<&str>)> = got
        .next
        .iter()
        .map(|c| (c.task.id.as_str(), c.task.stage.as_deref()))
        .collect();
    assert_eq!(ids, [("p", Some("two"))]);
    assert_eq!(h.get("q").await?.status, Status::Pending);
    Ok(())
}

/// The retry instant after the n-th failed start is `now + backoff(n)`: doubling from its
/// initial delay, capped, and (with jitter) exactly the deterministic point the rule computes.
pub async fn fail_backoff_doubles_per_attempt_up_to_its_cap(h: Harness) -> Result<()> {
    let tasks = [
        NewTask::new(tid("exact")).with_max_attempts(4),
        NewTask::new(tid("jittered")).with_max_attempts(4),
    ];
    h.store
        .create(&h.job, &tasks, CreateMode::SkipExisting, h.now())
        .await?;
    let exact = Backoff {
        initial_ms: 10_000,
        max_ms: 25_000,
        jitter: false,
    };
    for (id, backoff) in [
        ("exact", exact),
        (
            "jittered",
            Backoff {
                jitter: true,
                ..exact
            },
        ),
    ] {
        let mut waited = Vec::new();
        for attempt in 1..=4u32 {
            let c = h.claim(id, "w").await?;
            assert_eq!(c.task.attempts, attempt, "{id}");
            let req = Fail {
                error: Failure::new("x", format!("failure {attempt}")),
                retryable: true,
                backoff,
            };
            let t = h.store.fail(&c.lease, &req, h.now()).await?;
            assert_eq!(h.get(id).await?, t, "{id}");
            if attempt == 4 {
                assert_eq!((t.status, t.not_before), (Status::Exhausted, None), "{id}");
                break;
            }
            let delay = backoff.delay(&h.key(id), attempt);
            assert_eq!(
                (t.status, t.not_before),
                (Status::Failed, Some(h.now().plus(delay))),
                "{id}, failure {attempt}"
            );
            waited.push(delay.as_millis());
            h.advance(delay);
        }
        if !backoff.jitter {
            assert_eq!(waited, [10_000, 20_000, 25_000]);
        }
    }
    Ok(())
}

/// A lease length of zero or over a century is rejected before anything is written wherever
/// one is given: the claim of a hand-off (whose success is then not recorded either), a
/// heartbeat (the lease stays as it was) and a job's default lease.
pub async fn bad_lease_lengths_are_rejected_before_anything_is_written(h: Harness) -> Result<()> {
    h.add(&["a", "b"]).await?;
    let a = h.claim("a", "w").await?;
    let b = h.get("b").await?;
    let job = h.store.get_job(&h.job).await?;
    for bad in [Duration::ZERO, Duration::MAX] {
        let next = ClaimNext::new("w", bad);
        assert_invalid(
            h.store
                .succeed_and_claim_next(&a.lease, json!("done"), &next, h.now())
                .await,
        );
        assert_invalid(h.store.heartbeat(&a.lease, bad, h.now()).await);
        let spec = JobSpec {
            lease: Some(bad),
            ..Default::default()
        };
        assert_invalid(h.store.put_job(&h.job, &spec, h.now()).await);
        assert_eq!(h.get("a").await?, a.task, "lease {bad:?}: a is untouched");
        assert_eq!(h.get("b").await?, b, "lease {bad:?}: b is untouched");
        assert_eq!(h.store.get_job(&h.job).await?, job, "lease {bad:?}");
    }
    h.store.succeed(&a.lease, json!("done"), h.now()).await?;
    Ok(())
}

/// Data patched by the holder persists whatever ends the attempt (a release, an expired lease
/// taken over, a failure that exhausts the task, a retry) and the output is written only by a
/// success.
pub async fn data_checkpoints_persist_through_every_outcome(h: Harness) -> Result<()> {
    let new = NewTask::new(tid("a")).with_data(json!({"n": 0}));
    h.store
        .create(&h.job, &[new], CreateMode::SkipExisting, h.now())
        .await?;
    let c = h.claim("a", "w1").await?;
    h.store
        .patch_data(&c.lease, &json!({"n": 1}), h.now())
        .await?;
    let t = h.store.release(&c.lease, h.now()).await?;
    assert_eq!((&t.data, &t.output), (&json!({"n": 1}), &None), "release");

    let c = h.claim("a", "w1").await?;
    h.store
        .patch_data(&c.lease, &json!({"n": 2}), h.now())
        .await?;
    h.advance(LEASE);
    let taken = h.claim("a", "w2").await?;
    assert_eq!(
        taken.task.data,
        json!({"n": 2}),
        "an expired lease taken over"
    );
    assert_stale(
        h.store
            .patch_data(&c.lease, &json!({"n": -1}), h.now())
            .await,
    );

    h.store
        .patch_data(&taken.lease, &json!({"n": 3}), h.now())
        .await?;
    let fatal = Fail {
        retryable: false,
        ..Fail::new(Failure::new("x", "fatal"))
    };
    let t = h.store.fail(&taken.lease, &fatal, h.now()).await?;
    assert_eq!(
        (t.status, &t.data, &t.output),
        (Status::Exhausted, &json!({"n": 3}), &None),
        "exhausted"
    );
    let t = h
        .store
        .retry(&h.key("a"), &Retry::default(), h.now())
        .await?;
    assert_eq!(t.data, json!({"n": 3}), "retry");

    let c = h.claim("a", "w1").await?;
    h.store
        .patch_data(&c.lease, &json!({"done": true}), h.now())
        .await?;
    let t = h.store.succeed(&c.lease, json!("out"), h.now()).await?;
    assert_eq!(
        (&t.data, &t.output),
        (&json!({"n": 3, "done": true}), &Some(json!("out")))
    );
    assert_eq!(h.get("a").await?, t);
    Ok(())
}

/// User JSON nesting deeper than [`crate::lifecycle::MAX_JSON_DEPTH`] (which serde_json could
/// write but, wrapped in a stored record, not read back) is refused as `InvalidInput` wherever it
/// enters: task data (create), a data patch, an output (succeed, succeed_many, the hand-off), job
/// metadata. A refusal writes nothing: the task is unchanged and its lease still held, so the
/// worker can record a failure instead; in a batch only that entry is refused. Exactly the
/// limit is accepted and reads back equal, through `get` and `list`.
pub async fn json_nested_past_the_depth_limit_is_refused_everywhere(h: Harness) -> Result<()> {
    let max = crate::lifecycle::MAX_JSON_DEPTH;
    let (ok, deep) = (nested_json(max), nested_json(max + 1));
    let now = h.now();

    let too_deep = NewTask::new(tid("deep")).with_data(deep.clone());
    let batch = [NewTask::new(tid("x")), too_deep];
    assert_invalid(
        h.store
            .create(&h.job, &batch, CreateMode::SkipExisting, now)
            .await,
    );
    assert!(matches!(h.get("x").await, Err(Error::NotFound(_))), "x");
    assert!(
        matches!(h.get("deep").await, Err(Error::NotFound(_))),
        "deep"
    );
    let meta = |m: &serde_json::Value| JobSpec {
        metadata: Some(m.clone()),
        ..Default::default()
    };
    assert_invalid(h.set_job(meta(&deep)).await);
    assert!(
        matches!(h.store.get_job(&h.job).await, Err(Error::NotFound(_))),
        "a refused create or put_job creates no job record"
    );
    assert_eq!(h.set_job(meta(&ok)).await?.metadata, ok);
    let job = h.store.get_job(&h.job).await?;
    assert_eq!(job.metadata, ok, "metadata at the limit reads back");
    assert_invalid(h.set_job(meta(&deep)).await);
    assert_eq!(h.store.get_job(&h.job).await?, job, "metadata refused");

    let at_limit = NewTask::new(tid("a")).with_data(ok.clone());
    h.store
        .create(&h.job, &[at_limit], CreateMode::SkipExisting, now)
        .await?;
    assert_eq!(h.get("a").await?.data, ok, "data at the limit reads back");
    h.add(&["b", "c"]).await?;
    let (a, b, c) = (
        h.claim("a", "w").await?,
        h.claim("b", "w").await?,
        h.claim("c", "w").await?,
    );
    assert_invalid(h.store.patch_data(&a.lease, &deep, now).await);
    assert_invalid(h.store.succeed(&a.lease, deep.clone(), now).await);
    let next = ClaimNext::new("w", LEASE);
    assert_invalid(
        h.store
            .succeed_and_claim_next(&a.lease, deep.clone(), &next, now)
            .await,
    );
    assert_eq!(h.get("a").await?, a.task, "a is untouched, its lease held");

    let answers = h
        .store
        .succeed_many(
            &[
                (c.lease.clone(), deep.clone()),
                (b.lease.clone(), ok.clone()),
            ],
            now,
        )
        .await?;
    let [c_answer, b_answer] = <[Result<Task>; 2]>::try_from(answers)
        .unwrap_or_else(|a| panic!("succeed_many answered {} entries for 2", a.len()));
    assert_invalid(c_answer);
    let b_done = b_answer?;
    assert_eq!(
        b_done.output.as_ref(),
        Some(&ok),
        "b's entry is not spoiled"
    );
    assert_eq!(h.get("c").await?, c.task, "c is untouched, its lease held");
    let failed = h.fail_now(&c.lease, "output too deep").await?;
    assert_eq!(
        failed.status,
        Status::Failed,
        "the holder records a failure instead"
    );

    h.store.patch_data(&a.lease, &ok, now).await?;
    assert_eq!(
        h.get("a").await?.data,
        ok,
        "a patch at the limit reads back"
    );
    h.store.succeed(&a.lease, ok.clone(), now).await?;
    let a_done = h.get("a").await?;
    assert_eq!(
        a_done.output.as_ref(),
        Some(&ok),
        "an output at the limit reads back"
    );
    let page = h.store.list(&TaskQuery::new(h.job.clone())).await?;
    let mut listed = ids(&page);
    listed.sort_unstable();
    assert_eq!(listed, ["a", "b", "c"], "list reads every task back");
    let listed_a = page.tasks.iter().find(|t| t.id.as_str() == "a");
    assert_eq!(listed_a, Some(&a_done), "list reads a back whole");
    Ok(())
}
