//! Redis-specific behaviour: counts come from counters, errors name the server, prefixes isolate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{connection, create, new_tasks, scratch, scratch_store};
use tasktrack_core::*;

#[tokio::test]
async fn counts_read_the_counters_not_the_tasks() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("counted").unwrap();
    let news: Vec<NewTask> = (0..50)
        .map(|i| NewTask::new(TaskId::new(format!("c{i}")).unwrap()))
        .collect();
    create(&*store, &job, &news, Timestamp::from_millis(5)).await;
    // Remove one task's hash behind the store's back: counts must not notice, because it never
    // reads task hashes (no SCAN, no per-task reads), only the job's counters hash.
    let mut conn = connection().await;
    let key = format!("{}:{{counted}}:t:c7", scratch.0.prefix());
    let removed: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, 1, "the layout documented in lib.rs: {key}");
    let counts = store.counts(&job).await.unwrap();
    assert_eq!((counts.known, counts.by_status.pending), (50, 50));
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named() {
    let err = tasktrack_redis::open("redis://127.0.0.1:1/0")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_corrupt_task_hash_is_reported_with_its_key() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let key = TaskKey::parse("corrupt", "x").unwrap();
    let task = NewTask::new(key.id.clone());
    create(&*store, &key.job, &[task], Timestamp::from_millis(5)).await;
    let mut conn = connection().await;
    let hkey = format!("{}:{{corrupt}}:t:x", scratch.0.prefix());
    let _: i64 = redis::cmd("HSET")
        .arg(&hkey)
        .arg("attempts")
        .arg("many")
        .query_async(&mut conn)
        .await
        .unwrap();
    match store.get(&key).await {
        Err(Error::Corrupt { location, .. }) => assert_eq!(location, hkey),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn two_prefixes_on_one_server_never_see_each_other() {
    let (Some(a), Some(b)) = (scratch().await, scratch().await) else {
        return;
    };
    let job = JobName::new("shared-name").unwrap();
    create(
        &a.0,
        &job,
        &new_tasks(&["only-in-a"]),
        Timestamp::from_millis(5),
    )
    .await;
    assert_eq!(b.0.counts(&job).await.unwrap().known, 0);
    assert!(!b.0.counts(&job).await.unwrap().exists);
    assert!(b.0.jobs(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn remove_all_deletes_every_key_of_the_prefix() {
    let Some(s) = scratch().await else { return };
    let job = JobName::new("gone").unwrap();
    create(&s.0, &job, &new_tasks(&["x"]), Timestamp::from_millis(5)).await;
    assert!(s.0.remove_all().await.unwrap() > 0);
    assert!(!s.0.counts(&job).await.unwrap().exists);
    assert_eq!(s.0.remove_all().await.unwrap(), 0);
}

/// A drained job, once deleted, leaves no key at all under the prefix: counters that reach zero
/// are removed with the tasks, so deleting jobs never leaves an empty counters hash behind.
#[tokio::test]
async fn a_deleted_job_leaves_no_keys() {
    let Some(s) = scratch().await else { return };
    let job = JobName::new("drained").unwrap();
    let now = Timestamp::from_millis(5);
    let news: Vec<NewTask> = (0..5)
        .map(|i| NewTask::new(TaskId::new(format!("t{i}")).unwrap()))
        .collect();
    create(&s.0, &job, &news, now).await;
    let req = ClaimNext::new("w", std::time::Duration::from_secs(60)).with_limit(5);
    for c in s.0.claim_next(&job, &req, now).await.unwrap() {
        s.0.succeed(&c.lease, serde_json::json!(1), now)
            .await
            .unwrap();
    }
    let deleted = s.0.delete_job(&job, now).await.unwrap();
    assert_eq!((deleted.tasks, deleted.job_removed), (5, true));
    let mut conn = connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", s.0.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, Vec::<String>::new());
    let counts = s.0.counts(&job).await.unwrap();
    assert_eq!((counts.exists, counts.known), (false, 0));
}

/// `succeed_many` splits a batch into one script call per run of one job's leases (and per 256
/// leases): a batch of 600 leases alternating between two jobs in runs, with a stale lease in
/// the middle, still answers each lease in its own place.
#[tokio::test]
async fn succeed_many_answers_in_order_across_jobs_and_script_calls() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let now = Timestamp::from_millis(1_000);
    let mut leases = Vec::new();
    for name in ["left", "right"] {
        let job = JobName::new(name).unwrap();
        let news: Vec<NewTask> = (0..300)
            .map(|i| NewTask::new(TaskId::new(format!("{name}-{i:03}")).unwrap()))
            .collect();
        create(&*store, &job, &news, now).await;
        let req = ClaimNext::new("w", std::time::Duration::from_secs(60)).with_limit(300);
        let claimed = store.claim_next(&job, &req, now).await.unwrap();
        leases.push(claimed.into_iter().map(|c| c.lease).collect::<Vec<_>>());
    }
    // Runs of 300 "left" then 300 "right": four script calls, each run split at 256.
    let mut done: Vec<(Lease, serde_json::Value)> = leases
        .concat()
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, serde_json::json!(i)))
        .collect();
    done[400].0.token += 1; // a token the task never had: that entry alone is stale
    let results = store.succeed_many(&done, now).await.unwrap();
    assert_eq!(results.len(), 600);
    for (i, (result, (lease, _))) in results.into_iter().zip(&done).enumerate() {
        if i == 400 {
            assert!(
                matches!(result, Err(Error::StaleLease { .. })),
                "{result:?}"
            );
            continue;
        }
        let task = result.unwrap();
        assert_eq!(task.key(), lease.key);
        assert_eq!(task.output, Some(serde_json::json!(i)));
        assert_eq!(task.status, Status::Succeeded);
    }
    let right = store.counts(&JobName::new("right").unwrap()).await.unwrap();
    assert_eq!(
        (right.by_status.succeeded, right.by_status.in_progress),
        (299, 1)
    );
}

/// The hand-off script claims with `claim_next`'s rule for lapsed leases: an expired lease is
/// recorded as `lease_expired` and reclaimed, and at `max_attempts` the task is exhausted and not
/// returned.
#[tokio::test]
async fn succeed_and_claim_next_expires_lapsed_leases_as_claim_next_does() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("handoff").unwrap();
    let at = Timestamp::from_millis;
    let spec = JobSpec {
        max_attempts: Some(2),
        ..Default::default()
    };
    store.put_job(&job, &spec, at(1_000)).await.unwrap();
    create(&*store, &job, &new_tasks(&["a", "b"]), at(1_000)).await;
    let short = ClaimNext::new("w1", std::time::Duration::from_secs(1)).with_limit(2);
    let held = store.claim_next(&job, &short, at(1_000)).await.unwrap();
    let ids: Vec<&str> = held.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let b = store
        .heartbeat(
            &held[1].lease,
            std::time::Duration::from_secs(60),
            at(1_500),
        )
        .await
        .unwrap();

    // a's lease lapsed at 2,000: the hand-off of b records the expiry and claims a again.
    let req = ClaimNext::new("w2", std::time::Duration::from_secs(1));
    let got = store
        .succeed_and_claim_next(&b, serde_json::json!("b"), &req, at(3_000))
        .await
        .unwrap();
    assert_eq!(got.done.status, Status::Succeeded);
    assert_eq!(got.next.len(), 1);
    let a = &got.next[0];
    assert_eq!(
        (a.task.id.as_str(), a.task.attempts, a.lease.owner.as_str()),
        ("a", 2, "w2")
    );
    let last = a.task.history.last().unwrap();
    assert_eq!((last.outcome, last.attempt), (Outcome::LeaseExpired, 1));
    assert_eq!(store.get(&a.task.key()).await.unwrap(), a.task);

    // a's second lease lapses at 4,000 with attempts at max: exhausted, not handed to anyone.
    create(&*store, &job, &new_tasks(&["c"]), at(3_000)).await;
    let c_key = TaskKey::parse("handoff", "c").unwrap();
    let c = store
        .claim(
            &c_key,
            &Claim::new("w3", std::time::Duration::from_secs(60)),
            at(3_000),
        )
        .await
        .unwrap();
    let got = store
        .succeed_and_claim_next(&c.lease, serde_json::json!("c"), &req, at(5_000))
        .await
        .unwrap();
    assert!(got.next.is_empty(), "{:?}", got.next);
    let a = store.get(&a.task.key()).await.unwrap();
    assert_eq!((a.status, a.attempts), (Status::Exhausted, 2));
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (counts.by_status.succeeded, counts.by_status.exhausted),
        (2, 1)
    );
}

/// A worker whose clock runs ahead promotes tasks that are not due yet at another worker's
/// `now`. That worker's claims move each such entry back to the delayed set instead of skipping
/// it: however many there are at the head of the queue, the claimable task behind them is
/// found (it was not, past 100 of them).
#[tokio::test]
async fn entries_promoted_by_a_clock_ahead_do_not_hide_claimable_tasks() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("skewed").unwrap();
    let t0 = Timestamp::from_millis(1_800_000_000_000);
    let later = t0.plus(std::time::Duration::from_secs(10));
    let mut news: Vec<NewTask> = (0..150)
        .map(|i| NewTask {
            not_before: Some(later),
            ..NewTask::new(TaskId::new(format!("hi{i:03}")).unwrap()).with_priority(5)
        })
        .collect();
    news.push(NewTask::new(TaskId::new("lo").unwrap()));
    create(&*store, &job, &news, t0).await;
    let lease = std::time::Duration::from_secs(60);
    let ahead = ClaimNext::new("ahead", lease);
    let won = store
        .claim_next(&job, &ahead, t0.plus(std::time::Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    let behind = ClaimNext::new("behind", lease);
    let on_time = t0.plus(std::time::Duration::from_secs(1));
    let won = store.claim_next(&job, &behind, on_time).await.unwrap();
    let ids: Vec<&str> = won.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["lo"]);
    // The entries moved back are claimable again once due.
    let won = store
        .claim_next(&job, &behind.clone().with_limit(500), later)
        .await
        .unwrap();
    assert_eq!(won.len(), 149, "every other hi task, once due");
}

/// A lease taken or renewed near the last instant the store can write stops there
/// (`Timestamp::plus`), so the task's next write still passes the scripts' check: its
/// heartbeat and success are recorded, not refused as corrupt.
#[tokio::test]
async fn a_lease_near_the_end_of_time_stops_at_the_last_instant() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("late").unwrap();
    let now = Timestamp::MAX.minus(std::time::Duration::from_secs(1));
    create(&*store, &job, &new_tasks(&["a"]), now).await;
    let hour = std::time::Duration::from_secs(3600);
    let won = store
        .claim_next(&job, &ClaimNext::new("w", hour), now)
        .await
        .unwrap();
    let lease = &won[0].lease;
    assert_eq!(lease.expires_at, Timestamp::MAX);
    let renewed = store.heartbeat(lease, hour, now).await.unwrap();
    assert_eq!(renewed.expires_at, Timestamp::MAX);
    let done = store
        .succeed(lease, serde_json::json!("ok"), now)
        .await
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);
}

/// A `now` before 1970 is a negative number of milliseconds, which the other stores take like
/// any instant: a lease taken then (by `claim_next`'s script or by a claim of one id, written
/// from Rust) is renewed, failed, expired and completed, not refused as corrupt by the next
/// script that reads its acquisition instant.
#[tokio::test]
async fn a_lease_taken_before_1970_is_renewed_expired_and_completed() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("early").unwrap();
    let now = Timestamp::from_millis(-86_400_000); // 1969-12-31
    let minute = std::time::Duration::from_secs(60);
    create(&*store, &job, &new_tasks(&["a", "b"]), now).await;
    let req = ClaimNext::new("w", minute).with_limit(2);
    let won = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(won.len(), 2);
    let renewed = store.heartbeat(&won[0].lease, minute, now).await.unwrap();
    let done = store.succeed(&renewed, serde_json::json!("ok"), now).await;
    let done = done.unwrap();
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.history[0].started, now);
    // The other lease lapses, still before 1970: the next claim expires it and grants it again.
    let later = now.plus(minute * 2);
    let again = store.claim_next(&job, &req, later).await.unwrap();
    assert_eq!(again.len(), 1);
    let regrant = &again[0];
    assert_eq!(regrant.task.id, won[1].task.id);
    assert_eq!(regrant.task.attempts, 2);
    let failed = store
        .fail(&regrant.lease, &Fail::new(Failure::new("k", "m")), later)
        .await
        .unwrap();
    assert_eq!(failed.status, Status::Failed);
    // A lease written from Rust (the compare-and-set path) reads back in the scripts too.
    create(&*store, &job, &new_tasks(&["c"]), later).await;
    let key = TaskKey::parse("early", "c").unwrap();
    let mut held = store
        .claim(&key, &Claim::new("w", minute), later)
        .await
        .unwrap()
        .lease;
    held = store.heartbeat(&held, minute, later).await.unwrap();
    let done = store.succeed(&held, serde_json::json!(1), later).await;
    assert_eq!(done.unwrap().status, Status::Succeeded);
}

/// Tasks last written before 1970 page in `(updated_at, id)` order like any others, in both
/// orders: a walk one task per page meets each once (their listing entries used to share the
/// time part of 1970, so a page's cursor skipped the tasks of a later negative time but a
/// smaller id), and a time range before 1970 holds exactly its tasks. Claims take them oldest
/// first.
#[tokio::test]
async fn tasks_written_before_1970_page_and_claim_in_time_order() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("old").unwrap();
    for (id, ms) in [("a", -10), ("b", -20), ("c", 5), ("d", -3_000_000_000_000)] {
        create(&*store, &job, &new_tasks(&[id]), Timestamp::from_millis(ms)).await;
    }
    for (newest_first, expected) in [(false, ["d", "b", "a", "c"]), (true, ["c", "a", "b", "d"])] {
        let mut query = TaskQuery::new(job.clone()).with_limit(1);
        query.newest_first = newest_first;
        let mut walked = Vec::new();
        loop {
            let page = store.list(&query).await.unwrap();
            walked.extend(testkit::ids(&page).into_iter().map(str::to_string));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        assert_eq!(walked, expected, "newest_first: {newest_first}");
    }
    let mut range = TaskQuery::new(job.clone());
    range.updated_after = Some(Timestamp::from_millis(-20));
    range.updated_before = Some(Timestamp::from_millis(0));
    let page = store.list(&range).await.unwrap();
    assert_eq!(testkit::ids(&page), ["b", "a"]);
    // Claims take them by their time too (their queue entries used to be ordered by id).
    let req = ClaimNext::new("w", std::time::Duration::from_secs(60)).with_limit(4);
    let won = store
        .claim_next(&job, &req, Timestamp::from_millis(5))
        .await;
    let ids: Vec<String> = won.unwrap().iter().map(|c| c.task.id.to_string()).collect();
    assert_eq!(ids, ["d", "b", "a", "c"]);
}

/// A `now` outside what RFC 3339 writes (before 0000-01-01 or after 9999-12-31, the range the
/// core allows a `not_before`) is refused as invalid input, writing nothing, by the scripted
/// operations and by those written from Rust alike. It used to be written: the job record,
/// whose JSON holds it as RFC 3339, no longer decoded (every command of the job failed
/// `Corrupt`), and a lease taken then was refused as corrupt by the next script.
#[tokio::test]
async fn a_now_outside_what_rfc_3339_writes_is_refused_and_writes_nothing() {
    let Some((_scratch, store)) = scratch_store().await else {
        return;
    };
    let minute = std::time::Duration::from_secs(60);
    let earliest = Timestamp::parse("0000-01-01T00:00:00.000Z").unwrap();
    let bad = [
        Timestamp::from_millis(Timestamp::MAX.as_millis() + 1),
        Timestamp::from_millis(earliest.as_millis() - 1),
        Timestamp::from_millis(i64::MIN),
    ];
    let job = JobName::new("ranged").unwrap();
    let tasks = new_tasks(&["a", "b"]);
    for now in bad {
        let created = store.create(&job, &tasks, CreateMode::SkipExisting, now);
        testkit::assert_invalid(created.await);
        testkit::assert_invalid(store.put_job(&job, &JobSpec::default(), now).await);
    }
    assert!(!store.counts(&job).await.unwrap().exists);
    let ok = Timestamp::from_millis(1_000);
    create(&*store, &job, &tasks, ok).await;
    let key = TaskKey::parse("ranged", "a").unwrap();
    let other = TaskKey::parse("ranged", "b").unwrap();
    let claim = Claim::new("w", minute);
    let held = store.claim(&key, &claim, ok).await.unwrap();
    let lease = &held.lease;
    let req = ClaimNext::new("w", minute);
    for now in bad {
        testkit::assert_invalid(store.claim_next(&job, &req, now).await);
        testkit::assert_invalid(store.claim(&other, &claim, now).await);
        testkit::assert_invalid(store.heartbeat(lease, minute, now).await);
        testkit::assert_invalid(store.succeed(lease, serde_json::json!(1), now).await);
        let many = store
            .succeed_many(&[(lease.clone(), serde_json::json!(1))], now)
            .await;
        testkit::assert_invalid(many);
        let handoff = store.succeed_and_claim_next(lease, serde_json::json!(1), &req, now);
        testkit::assert_invalid(handoff.await);
        let failure = Fail::new(Failure::new("k", "m"));
        testkit::assert_invalid(store.fail(lease, &failure, now).await);
        testkit::assert_invalid(store.release(lease, now).await);
        testkit::assert_invalid(store.put_job(&job, &JobSpec::default(), now).await);
    }
    assert_eq!(store.get(&key).await.unwrap(), held.task);
    assert_eq!(store.get_job(&job).await.unwrap().version, 1);
    let done = store.succeed(lease, serde_json::json!(1), ok).await;
    assert_eq!(done.unwrap().status, Status::Succeeded);
}
