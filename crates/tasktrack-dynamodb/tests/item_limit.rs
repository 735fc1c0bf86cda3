//! A task near DynamoDB's 400 KB item limit, on moto: its attempts add to its item (a lease,
//! history records, error details), and none of that may wedge the job's queue.
//!
//! A simulated worker claims one task at a time (`claim_next` with limit 1, as `tasktrack run`
//! does) from a job holding one big task of high priority and a few small ones, and either fails
//! the big task with a long traceback or dies holding it (its lease then expires). Every claim
//! must keep working, every attempt's outcome must be recorded (failure records are cut to fit),
//! and the big task must end `exhausted` once its attempts are used up. A task too full to hold
//! a lease at all is exhausted by the claim that finds it, saying why.
//!
//! moto refuses items over 405,000 bytes (AWS: 409,600), so the stores here use
//! `item_limit=400000`.

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::{Value, json};
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_dynamodb::{DynamoStore, RESERVED_BYTES};

/// The item limit of the stores here.
const LIMIT: usize = 400_000;

/// A URL naming a fresh table (`item_limit` is added by [`open`]), or `None` (SKIPPED without
/// moto; a failure under `CI=true`).
fn url() -> Option<String> {
    common::fresh_url_or_skip("&counter_shards=1")
}

/// A store on `url`'s table (created, and deleted when the store is dropped), at `item_limit`.
async fn open(url: &str, item_limit: usize) -> DynamoStore {
    common::open_temporary(&format!("{url}&item_limit={item_limit}"))
        .await
        .unwrap()
}

/// A second store on the same table, at another `item_limit` (the table stays).
async fn reopen(url: &str, item_limit: usize) -> DynamoStore {
    tasktrack_dynamodb::open(&format!("{url}&item_limit={item_limit}"))
        .await
        .unwrap()
}

const LEASE: Duration = Duration::from_secs(60);
const SMALL: [&str; 3] = ["s1", "s2", "s3"];

fn start() -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000)
}

fn key(job: &JobName, id: &str) -> TaskKey {
    TaskKey::new(job.clone(), TaskId::new(id).unwrap())
}

/// `big` (data of `data_bytes`, priority 10, `max_attempts`) and three small tasks.
async fn job_with_a_big_task(
    store: &DynamoStore,
    job: &JobName,
    data_bytes: usize,
    max_attempts: u32,
) {
    let mut tasks = vec![
        NewTask::new(TaskId::new("big").unwrap())
            .with_data(Value::String("x".repeat(data_bytes)))
            .with_priority(10)
            .with_max_attempts(max_attempts),
    ];
    tasks.extend(SMALL.map(|id| NewTask::new(TaskId::new(id).unwrap())));
    let created = store
        .create(job, &tasks, CreateMode::SkipExisting, start())
        .await
        .unwrap();
    assert_eq!(created.created, 4);
}

/// What the worker does with the big task when it gets it.
#[derive(Clone, Copy)]
enum OnBig {
    /// Fails it with a traceback of this many bytes.
    Fail(usize),
    /// Dies holding it: its lease expires.
    Die,
}

/// What happened over the rounds.
#[derive(Debug, Default)]
struct Run {
    claim_errors: Vec<Error>,
    fail_errors: Vec<Error>,
    big_claims: u32,
    small_done: Vec<String>,
}

/// `rounds` claims an hour apart (past any lease and backoff) by one worker.
async fn work(store: &DynamoStore, job: &JobName, on_big: OnBig, rounds: u32) -> Run {
    let mut run = Run::default();
    let req = ClaimNext::new("worker-1", LEASE);
    for round in 0..rounds {
        let now = start().plus(Duration::from_secs(3600) * (round + 1));
        let claimed = match store.claim_next(job, &req, now).await {
            Ok(claimed) => claimed,
            Err(e) => {
                run.claim_errors.push(e);
                continue;
            }
        };
        let Some(c) = claimed.into_iter().next() else {
            continue;
        };
        if c.task.id.as_str() != "big" {
            store.succeed(&c.lease, json!("ok"), now).await.unwrap();
            run.small_done.push(c.task.id.to_string());
            continue;
        }
        run.big_claims += 1;
        if let OnBig::Fail(bytes) = on_big {
            let failure =
                Failure::new("error", "boom").with_detail(traceback(c.lease.attempt, bytes));
            if let Err(e) = store.fail(&c.lease, &Fail::new(failure), now).await {
                // As the Tracker does: logged, and the lease left to expire.
                run.fail_errors.push(e);
            }
        }
    }
    run
}

/// The traceback the worker fails with at `attempt`: `bytes` long, ending in a line naming the
/// attempt.
fn traceback(attempt: u32, bytes: usize) -> String {
    "  File \"job.py\", line 1, in run\n".repeat(bytes / 34)
        + &format!("ValueError: attempt {attempt}")
}

#[tokio::test(flavor = "current_thread")]
async fn a_big_task_failing_with_long_tracebacks_never_blocks_the_queue() {
    let Some(url) = url() else { return };
    let store = open(&url, LIMIT).await;
    let job = JobName::new("tracebacks").unwrap();
    // 300 KB of data, then 12 failures with 20 KB tracebacks: each is stored twice (the last
    // error and its history record), so the fifth would not fit whole.
    job_with_a_big_task(&store, &job, 300 * 1024, 12).await;
    let run = work(&store, &job, OnBig::Fail(20 * 1024), 20).await;

    assert!(run.claim_errors.is_empty(), "{:?}", run.claim_errors);
    assert!(
        run.fail_errors.is_empty(),
        "every failure recorded: {:?}",
        run.fail_errors
    );
    assert_eq!(run.big_claims, 12);
    assert_eq!(run.small_done, SMALL, "then the other tasks, in order");
    let big = store.get(&key(&job, "big")).await.unwrap();
    assert_eq!((big.status, big.attempts), (Status::Exhausted, 12));
    assert_eq!(big.history.len(), 12, "a record per attempt");
    // The last traceback whole; in history the newest ones (the room of about three), the
    // older ones cut with a note; every message kept.
    let error = big.error.as_ref().unwrap();
    assert_eq!(
        error.detail.as_deref(),
        Some(traceback(12, 20 * 1024).as_str())
    );
    let whole: Vec<bool> = big
        .history
        .iter()
        .map(|a| {
            let detail = a.error.as_ref().unwrap().detail.as_deref().unwrap();
            if !detail.starts_with('[') {
                assert_eq!(detail, traceback(a.attempt, 20 * 1024));
                return true;
            }
            assert!(
                detail.ends_with("bytes cut to keep the task within DynamoDB's item size limit]"),
                "{detail}"
            );
            false
        })
        .collect();
    assert_eq!(whole, [[false; 9].as_slice(), &[true; 3]].concat());
    assert!(
        big.history
            .iter()
            .all(|a| a.error.as_ref().unwrap().message == "boom")
    );
    let counts = store.counts(&job).await.unwrap().by_status;
    assert_eq!(
        (counts.exhausted, counts.succeeded, counts.pending),
        (1, 3, 0)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_big_task_whose_worker_keeps_dying_never_blocks_the_queue() {
    let Some(url) = url() else { return };
    let store = open(&url, LIMIT).await;
    let job = JobName::new("dying").unwrap();
    // As large as a task may be created (about 600 bytes for the rest of the record): each
    // lease that expires adds a history record and an error.
    job_with_a_big_task(&store, &job, LIMIT - RESERVED_BYTES - 700, 20).await;
    let run = work(&store, &job, OnBig::Die, 24).await;

    assert!(run.claim_errors.is_empty(), "{:?}", run.claim_errors);
    assert_eq!(run.big_claims, 20);
    assert_eq!(run.small_done, SMALL);
    let big = store.get(&key(&job, "big")).await.unwrap();
    assert_eq!((big.status, big.attempts), (Status::Exhausted, 20));
    assert_eq!(big.error.as_ref().unwrap().kind, "lease_expired");
    // The oldest records went to make room; the newest are kept.
    assert!(
        (1..20).contains(&big.history.len()),
        "{}",
        big.history.len()
    );
    assert_eq!(big.history.last().unwrap().attempt, 20);
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_that_cannot_hold_a_lease_is_exhausted_by_the_claim_that_finds_it() {
    let Some(url) = url() else { return };
    let store = open(&url, LIMIT).await;
    let job = JobName::new("full").unwrap();
    let data = 390_000;
    job_with_a_big_task(&store, &job, data, 3).await;
    store
        .create(
            &job,
            &[NewTask::new(TaskId::new("big2").unwrap())
                .with_data(Value::String("x".repeat(data)))
                .with_priority(-1)],
            CreateMode::SkipExisting,
            start(),
        )
        .await
        .unwrap();
    // Under a lower limit (the big tasks are about 600 bytes over their data), a lease of a
    // 512-byte owner of `"`s (over 1 KB of JSON) no longer fits; a record of why does.
    let tighter = reopen(&url, data + 1_200).await;
    let owner = "\"".repeat(512);
    let now = start().plus(Duration::from_secs(60));
    let claimed = tighter
        .claim_next(&job, &ClaimNext::new(owner.clone(), LEASE), now)
        .await
        .unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.task.id.as_str()).collect();
    assert_eq!(ids, ["s1"], "the next task, claimed in the same call");
    let big = tighter.get(&key(&job, "big")).await.unwrap();
    assert_eq!((big.status, big.attempts), (Status::Exhausted, 1));
    let error = big.error.as_ref().unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(
        error
            .message
            .contains("cannot hold this task under a lease")
            && error
                .message
                .contains(&format!("limit of {} bytes", data + 1_200)),
        "{}",
        error.message
    );
    // A claim by id does the same, and says the task is exhausted.
    let by_id = tighter
        .claim(&key(&job, "big2"), &Claim::new(owner, LEASE), now)
        .await;
    assert!(
        matches!(
            by_id,
            Err(Error::Refused {
                reason: Refusal::Exhausted,
                ..
            })
        ),
        "{by_id:?}"
    );
    let big2 = tighter.get(&key(&job, "big2")).await.unwrap();
    assert_eq!(big2.status, Status::Exhausted);
    assert_eq!(big2.error.unwrap().kind, "unrecordable");

    // Under a limit below the task itself nothing about it can be written: claims leave it
    // and go on; a claim by id says why.
    let job = JobName::new("over").unwrap();
    job_with_a_big_task(&store, &job, data, 3).await;
    let below = reopen(&url, data).await;
    let req = ClaimNext::new("w", LEASE).with_limit(4);
    let claimed = below.claim_next(&job, &req, now).await.unwrap();
    let mut ids: Vec<&str> = claimed.iter().map(|c| c.task.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, SMALL);
    assert!(below.claim_next(&job, &req, now).await.unwrap().is_empty());
    let by_id = below
        .claim(&key(&job, "big"), &Claim::new("w", LEASE), now)
        .await;
    assert!(
        matches!(&by_id, Err(Error::InvalidInput(m)) if m.contains(&format!("limit of {data} bytes"))),
        "{by_id:?}"
    );
    assert_eq!(
        below.get(&key(&job, "big")).await.unwrap().status,
        Status::Pending
    );
}
