//! Conformance cases: ignore, retry, report, delete and purge.

use super::*;
use serde_json::json;

/// Ignore is refused while someone holds a live lease, unless forced (which fences the holder).
pub async fn ignore_is_refused_on_a_live_lease_unless_forced(h: Harness) -> Result<()> {
    h.add(&["a", "b"]).await?;
    let c = h.claim("a", "w").await?;
    let plain = Ignore {
        reason: Some("bad file".into()),
        force: false,
    };
    assert_refused(
        h.store.ignore(&h.key("a"), &plain, h.now()).await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    assert_eq!(h.get("a").await?, c.task);
    let t = h
        .store
        .ignore(
            &h.key("a"),
            &Ignore {
                force: true,
                ..plain.clone()
            },
            h.now(),
        )
        .await?;
    assert_eq!((t.status, &t.lease), (Status::Ignored, &None));
    assert_eq!(
        t.history
            .last()
            .and_then(|a| a.error.as_ref())
            .map(|e| e.message.as_str()),
        Some("bad file")
    );
    assert_stale(h.store.succeed(&c.lease, json!(1), h.now()).await);
    let b = h.store.ignore(&h.key("b"), &plain, h.now()).await?;
    assert_eq!(b.status, Status::Ignored);
    assert!(h.claim_next("w", 5).await?.is_empty());
    Ok(())
}

/// Retry resets to pending with zero attempts from failed, exhausted and ignored; under a live
/// lease it is refused unless forced, which fences the holder out.
pub async fn retry_resets_attempts_from_failed_exhausted_and_ignored(h: Harness) -> Result<()> {
    h.add(&["failed", "exhausted", "ignored", "live"]).await?;
    // Under a live lease: refused, unless forced, which fences the holder out.
    let held = h.claim("live", "w").await?;
    assert_refused(
        h.store
            .retry(&h.key("live"), &Retry::default(), h.now())
            .await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    let forced = h
        .store
        .retry(&h.key("live"), &Retry { force: true }, h.now())
        .await?;
    assert_eq!((forced.status, forced.attempts), (Status::Pending, 0));
    assert_stale(h.store.succeed(&held.lease, json!("late"), h.now()).await);
    let c = h.claim("failed", "w").await?;
    h.store
        .fail(&c.lease, &Fail::new(Failure::new("x", "once")), h.now())
        .await?;
    let c = h.claim("exhausted", "w").await?;
    h.store
        .fail(
            &c.lease,
            &Fail {
                retryable: false,
                ..Fail::new(Failure::new("x", "fatal"))
            },
            h.now(),
        )
        .await?;
    h.store
        .ignore(&h.key("ignored"), &Ignore::default(), h.now())
        .await?;
    for id in ["failed", "exhausted", "ignored"] {
        let t = h
            .store
            .retry(&h.key(id), &Retry::default(), h.now())
            .await?;
        assert_eq!(
            (t.status, t.attempts, t.not_before, t.finished_at),
            (Status::Pending, 0, None, None),
            "{id}"
        );
    }
    assert_eq!(
        h.claim_next("w", 10).await?.len(),
        4,
        "all claimable at once"
    );
    Ok(())
}

/// Nothing leaves `succeeded` without force: not a claim, ignore, retry, report or release;
/// a forced retry or ignore does.
pub async fn nothing_leaves_succeeded_without_force(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let c = h.claim("a", "w").await?;
    let done = h.store.succeed(&c.lease, json!("out"), h.now()).await?;
    assert_refused(h.claim("a", "w").await, &Refusal::Succeeded);
    assert_refused(
        h.store
            .ignore(&h.key("a"), &Ignore::default(), h.now())
            .await,
        &Refusal::Succeeded,
    );
    assert_refused(
        h.store.retry(&h.key("a"), &Retry::default(), h.now()).await,
        &Refusal::Succeeded,
    );
    let fail = Report {
        success: false,
        detail: None,
    };
    assert_refused(
        h.store.report(&h.key("a"), &fail, h.now()).await,
        &Refusal::Succeeded,
    );
    assert_stale(h.store.release(&c.lease, h.now()).await);
    assert_eq!(h.get("a").await?, done, "still exactly as it succeeded");
    let t = h
        .store
        .retry(&h.key("a"), &Retry { force: true }, h.now())
        .await?;
    assert_eq!((t.status, t.attempts), (Status::Pending, 0));
    // A forced ignore moves a succeeded task too.
    h.add(&["b"]).await?;
    let c = h.claim("b", "w").await?;
    h.store.succeed(&c.lease, json!("out"), h.now()).await?;
    let skip = Ignore {
        reason: Some("not needed after all".into()),
        force: true,
    };
    let t = h.store.ignore(&h.key("b"), &skip, h.now()).await?;
    assert_eq!(t.status, Status::Ignored);
    assert_eq!(h.get("b").await?.status, Status::Ignored);
    Ok(())
}

/// Deleting a task is refused while a live lease holds it; afterwards it is gone.
/// Once deleted, the old lease is stale for every fenced operation (never `NotFound`: to its
/// holder the task was taken away, and a worker stops on `StaleLease`).
pub async fn delete_is_refused_on_a_live_lease(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let held = h.claim("a", "w").await?.lease;
    assert_refused(
        h.store.delete(&h.key("a"), h.now()).await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    h.advance(LEASE);
    h.store.delete(&h.key("a"), h.now()).await?;
    assert!(matches!(h.get("a").await, Err(Error::NotFound(_))));
    assert!(matches!(
        h.store.delete(&h.key("a"), h.now()).await,
        Err(Error::NotFound(_))
    ));
    let now = h.now();
    let fail = Fail::new(Failure::new("e", "late"));
    let answers = [
        (
            "heartbeat",
            h.store.heartbeat(&held, LEASE, now).await.map(|_| ()),
        ),
        (
            "patch_data",
            h.store
                .patch_data(&held, &json!({"k": 1}), now)
                .await
                .map(|_| ()),
        ),
        (
            "succeed",
            h.store.succeed(&held, json!(null), now).await.map(|_| ()),
        ),
        ("fail", h.store.fail(&held, &fail, now).await.map(|_| ())),
        ("release", h.store.release(&held, now).await.map(|_| ())),
    ];
    for (op, answer) in answers {
        assert!(
            matches!(answer, Err(Error::StaleLease { .. })),
            "{op} on a deleted task: {answer:?}"
        );
    }
    Ok(())
}

/// A task deleted once its lease ran out and created again is a new task: its first claim has
/// the same token as the deleted task's had, but the deleted task's holder is fenced out of it.
pub async fn a_lease_on_a_deleted_task_does_not_hold_its_re_creation(h: Harness) -> Result<()> {
    h.add(&["a"]).await?;
    let old = h.claim("a", "w1").await?.lease;
    h.advance(LEASE);
    h.store.delete(&h.key("a"), h.now()).await?;
    h.add(&["a"]).await?;
    h.advance(Duration::from_secs(1));
    let new = h.claim("a", "w2").await?.lease;
    assert_eq!(new.token, old.token, "tokens restart with the task");
    let now = h.now();
    let stale = [
        (
            "heartbeat",
            h.store.heartbeat(&old, LEASE, now).await.map(|_| ()),
        ),
        (
            "succeed",
            h.store.succeed(&old, json!("old"), now).await.map(|_| ()),
        ),
        (
            "fail",
            h.store
                .fail(&old, &Fail::new(Failure::new("e", "old")), now)
                .await
                .map(|_| ()),
        ),
        ("release", h.store.release(&old, now).await.map(|_| ())),
        (
            "patch_data",
            h.store
                .patch_data(&old, &json!({"old": 1}), now)
                .await
                .map(|_| ()),
        ),
    ];
    for (op, answer) in stale {
        assert!(
            matches!(answer, Err(Error::StaleLease { .. })),
            "{op} with the deleted task's lease: {answer:?}"
        );
    }
    let done = h.store.succeed(&new, json!("new"), now).await?;
    assert_eq!(
        (done.status, done.output),
        (Status::Succeeded, Some(json!("new")))
    );
    Ok(())
}

/// `report` records outcomes without a claim (creating the task if needed), and the tallies and
/// the ids per outcome are queryable.
pub async fn report_records_outcomes_without_a_claim(h: Harness) -> Result<()> {
    let ok = Report {
        success: true,
        detail: Some("fine".into()),
    };
    let bad = Report {
        success: false,
        detail: Some("broken".into()),
    };
    let t = h.store.report(&h.key("new-ok"), &ok, h.now()).await?;
    assert_eq!(
        (t.status, t.attempts, &t.output),
        (Status::Succeeded, 1, &Some(json!({"detail": "fine"})))
    );
    let t = h.store.report(&h.key("new-bad"), &bad, h.now()).await?;
    assert_eq!((t.status, t.attempts), (Status::Failed, 1));
    assert_eq!(t.error.map(|e| e.message), Some("broken".to_string()));
    let again = h.store.report(&h.key("new-ok"), &ok, h.now()).await?;
    assert_eq!(
        again.status,
        Status::Succeeded,
        "reporting success twice is harmless"
    );
    h.add(&["locked"]).await?;
    h.claim("locked", "w").await?;
    assert_refused(
        h.store.report(&h.key("locked"), &ok, h.now()).await,
        &Refusal::Locked {
            owner: String::new(),
            expires_at: h.now(),
        },
    );
    // An implicit claim: the last attempt's expired lease exhausts the task, as a claim would,
    // instead of granting an attempt past the limit.
    let last = NewTask::new(TaskId::new("last")?).with_max_attempts(1);
    h.store
        .create(&h.job, &[last], CreateMode::SkipExisting, h.now())
        .await?;
    h.claim("last", "w").await?;
    h.advance(LEASE);
    for report in [&ok, &bad] {
        assert_refused(
            h.store.report(&h.key("last"), report, h.now()).await,
            &Refusal::Exhausted,
        );
    }
    let last = h.get("last").await?;
    assert_eq!(
        (last.status, last.attempts),
        (Status::InProgress, 1),
        "unchanged"
    );
    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.failed),
        (1, 1)
    );
    let failed = h
        .store
        .list(&TaskQuery::new(h.job.clone()).with_statuses([Status::Failed]))
        .await?;
    assert_eq!(
        failed
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["new-bad"]
    );
    Ok(())
}

/// Purge removes finished tasks older than the cut-off and nothing else; it refuses live statuses.
pub async fn purge_removes_only_old_finished_tasks(h: Harness) -> Result<()> {
    h.add(&[
        "old-done",
        "old-ignored",
        "old-failed",
        "old-exhausted",
        "new-done",
        "running",
    ])
    .await?;
    let c = h.claim("old-exhausted", "w").await?;
    let fatal = Fail {
        retryable: false,
        ..Fail::new(Failure::new("x", "fatal"))
    };
    h.store.fail(&c.lease, &fatal, h.now()).await?;
    let c = h.claim("old-done", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.store
        .ignore(&h.key("old-ignored"), &Ignore::default(), h.now())
        .await?;
    let c = h.claim("old-failed", "w").await?;
    h.fail_now(&c.lease, "x").await?;
    h.advance(Duration::from_secs(3600));
    let cutoff = h.now();
    let c = h.claim("new-done", "w").await?;
    h.store.succeed(&c.lease, json!(1), h.now()).await?;
    h.claim("running", "w").await?;
    let req = Purge {
        job: Some(h.job.clone()),
        statuses: vec![Status::Succeeded, Status::Ignored, Status::Exhausted],
        older_than: cutoff,
    };
    assert_eq!(h.store.purge(&req).await?, 3);
    for gone in ["old-done", "old-ignored", "old-exhausted"] {
        assert!(
            matches!(h.get(gone).await, Err(Error::NotFound(_))),
            "{gone}"
        );
    }
    for kept in ["old-failed", "new-done", "running"] {
        h.get(kept).await?;
    }
    assert_eq!(h.store.counts(&h.job).await?.known, 3);
    let live = Purge {
        statuses: vec![Status::InProgress],
        ..req
    };
    assert!(matches!(
        h.store.purge(&live).await,
        Err(Error::InvalidInput(_))
    ));
    Ok(())
}

/// Deleting a job removes its tasks and record, but never a task under a live lease; a job
/// that is gone is `NotFound`.
pub async fn delete_job_keeps_tasks_with_live_leases(h: Harness) -> Result<()> {
    h.add(&["a", "b", "c"]).await?;
    h.claim("a", "w").await?;
    let d = h.store.delete_job(&h.job, h.now()).await?;
    assert_eq!((d.tasks, d.kept_leased, d.job_removed), (2, 1, false));
    h.get("a").await?;
    h.advance(LEASE);
    let d = h.store.delete_job(&h.job, h.now()).await?;
    assert_eq!((d.tasks, d.kept_leased, d.job_removed), (1, 0, true));
    assert!(matches!(
        h.store.get_job(&h.job).await,
        Err(Error::NotFound(_))
    ));
    assert!(!h.store.counts(&h.job).await?.exists);
    let again = h.store.delete_job(&h.job, h.now()).await;
    assert!(matches!(again, Err(Error::NotFound(_))), "{again:?}");
    Ok(())
}

/// `report` keeps a success/failure tally per job with the set of ids per outcome: a failure
/// reported again as a success moves to the successes; a success reported again changes
/// nothing at all (its output is written once); a failure on the last attempt exhausts the
/// task, and reports on exhausted or ignored tasks are refused without writing.
pub async fn report_tallies_and_id_sets_follow_each_outcome(h: Harness) -> Result<()> {
    let report = |success: bool, detail: &str| Report {
        success,
        detail: Some(detail.into()),
    };
    for (id, success) in [
        ("ok-1", true),
        ("ok-2", true),
        ("bad-1", false),
        ("bad-2", false),
    ] {
        h.store
            .report(&h.key(id), &report(success, id), h.now())
            .await?;
    }
    h.advance(Duration::from_secs(1));
    let first = h.get("ok-1").await?;
    let again = h
        .store
        .report(&h.key("ok-1"), &report(true, "different"), h.now())
        .await?;
    assert_eq!(again, first, "a success reported again changes nothing");
    assert_eq!(h.get("ok-1").await?, first);
    let t = h
        .store
        .report(&h.key("bad-2"), &report(true, "fixed"), h.now())
        .await?;
    assert_eq!(
        (t.status, t.attempts, &t.error, &t.output),
        (
            Status::Succeeded,
            2,
            &None,
            &Some(json!({"detail": "fixed"}))
        )
    );
    assert_eq!(
        t.history.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [Outcome::Failed, Outcome::Succeeded]
    );

    h.store
        .create(
            &h.job,
            &[NewTask::new(tid("once")).with_max_attempts(1)],
            CreateMode::SkipExisting,
            h.now(),
        )
        .await?;
    let t = h
        .store
        .report(&h.key("once"), &report(false, "no luck"), h.now())
        .await?;
    assert_eq!((t.status, t.attempts), (Status::Exhausted, 1));
    assert_refused(
        h.store
            .report(&h.key("once"), &report(true, "late"), h.now())
            .await,
        &Refusal::Exhausted,
    );
    assert_eq!(h.get("once").await?, t);
    h.add(&["skip"]).await?;
    let skipped = h
        .store
        .ignore(&h.key("skip"), &Ignore::default(), h.now())
        .await?;
    assert_refused(
        h.store
            .report(&h.key("skip"), &report(false, "x"), h.now())
            .await,
        &Refusal::Ignored,
    );
    assert_eq!(h.get("skip").await?, skipped);

    let counts = h.store.counts(&h.job).await?;
    assert_eq!(
        counts.by_status,
        StatusCounts {
            succeeded: 3,
            failed: 1,
            exhausted: 1,
            ignored: 1,
            ..StatusCounts::default()
        }
    );
    for (status, want) in [
        (Status::Succeeded, vec!["bad-2", "ok-1", "ok-2"]),
        (Status::Failed, vec!["bad-1"]),
        (Status::Exhausted, vec!["once"]),
    ] {
        let page = h
            .store
            .list(&TaskQuery::new(h.job.clone()).with_statuses([status]))
            .await?;
        let mut ids: Vec<&str> = page.tasks.iter().map(|t| t.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, want, "{status}");
    }
    Ok(())
}
