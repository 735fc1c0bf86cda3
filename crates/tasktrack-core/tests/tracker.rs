//! The library face: `Tracker::run` / `run_next` / `run_all` record outputs, errors and panics, keep the
//! lease alive while the work runs, and release it when the run is cancelled.
//!
//! Time: the store sees a `ManualClock`; heartbeat pacing uses tokio's paused (virtual) time.

#![allow(clippy::unwrap_used)] // test helpers

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::tracker::{NonRetryable, TaskContext};
use tasktrack_core::*;

fn setup() -> (Arc<dyn Store>, ManualClock, JobName) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::in_memory());
    (
        store,
        ManualClock::new(Timestamp::from_millis(1_800_000_000_000)),
        JobName::new("tracked").unwrap(),
    )
}

async fn add(store: &Arc<dyn Store>, job: &JobName, clock: &ManualClock, ids: &[&str]) {
    let tasks: Vec<NewTask> = ids
        .iter()
        .map(|id| NewTask::new(TaskId::new(*id).unwrap()))
        .collect();
    store
        .create(job, &tasks, CreateMode::SkipExisting, clock.now())
        .await
        .unwrap();
}

fn tracker(store: &Arc<dyn Store>, job: &JobName, clock: &ManualClock) -> Tracker {
    Tracker::new(store.clone(), job.clone())
        .with_owner("worker-1")
        .with_lease(Duration::from_secs(30))
        .with_backoff(Backoff::NONE)
        .with_clock(Arc::new(clock.clone()))
}

/// Runs `f` on task `a`, alone in a fresh job, through a [`tracker`]: the task afterwards.
async fn run_a<F, Fut, T, E>(f: F) -> Task
where
    F: FnOnce(TaskContext) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
    T: serde::Serialize,
    E: Into<anyhow::Error>,
{
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    tracker(&store, &job, &clock)
        .run(&TaskId::new("a").unwrap(), f)
        .await
        .unwrap()
}

fn key(job: &JobName, id: &str) -> TaskKey {
    TaskKey::new(job.clone(), TaskId::new(id).unwrap())
}

/// Work that outlasts every test: it is only ever cancelled.
async fn an_hour_of_work<C>(_: C) -> std::io::Result<()> {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[tokio::test]
async fn run_records_the_output_on_success() {
    let t = run_a(|ctx| async move {
        assert_eq!(ctx.lease.attempt, 1);
        Ok::<_, std::io::Error>(json!({ "id": ctx.task.id.as_str() }))
    })
    .await;
    assert_eq!(
        (t.status, t.output),
        (Status::Succeeded, Some(json!({ "id": "a" })))
    );
}

#[tokio::test]
async fn run_records_the_error_chain_and_retries_later() {
    let t = run_a(|_| async {
        let inner = std::io::Error::other("disk full");
        Err::<(), _>(anyhow::Error::new(inner).context("writing output"))
    })
    .await;
    assert_eq!(t.status, Status::Failed);
    let error = t.error.unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("error", "writing output: disk full")
    );
    assert!(error.detail.unwrap().contains("disk full"));
}

#[tokio::test]
async fn non_retryable_errors_exhaust_at_once() {
    let t = run_a(|_| async { Err::<(), _>(NonRetryable(anyhow::anyhow!("bad input"))) }).await;
    assert_eq!((t.status, t.attempts), (Status::Exhausted, 1));
}

#[tokio::test]
async fn a_panic_is_recorded_as_a_failure() {
    let t = run_a(|_| async {
        if true {
            panic!("index out of bounds");
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    assert_eq!(t.status, Status::Failed);
    let error = t.error.unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("panic", "panicked: index out of bounds")
    );
}

#[tokio::test]
async fn run_of_a_locked_task_is_refused_and_runs_nothing() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    let key = TaskKey::parse("tracked", "a").unwrap();
    store
        .claim(
            &key,
            &Claim::new("someone-else", Duration::from_secs(30)),
            clock.now(),
        )
        .await
        .unwrap();
    let result = tracker(&store, &job, &clock)
        .run(&key.id, |_| async {
            panic!("must not run") as Result<(), std::io::Error>
        })
        .await;
    assert!(matches!(
        result.unwrap_err().refusal(),
        Some(Refusal::Locked { .. })
    ));
}

#[tokio::test]
async fn run_next_drains_the_job_then_returns_none() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a", "b", "c"]).await;
    let tracker = tracker(&store, &job, &clock);
    let mut done = 0;
    while let Some(t) = tracker
        .run_next(|_| async { Ok::<_, std::io::Error>(1) })
        .await
        .unwrap()
    {
        assert_eq!(t.status, Status::Succeeded);
        done += 1;
    }
    assert_eq!(done, 3);
}

#[tokio::test]
async fn run_all_runs_every_task_through_failures_and_lost_leases() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a", "b", "c", "d", "e"]).await;
    let (thief_store, thief_clock) = (store.clone(), clock.clone());
    let ran = tracker(&store, &job, &clock)
        .run_all(|ctx| {
            let (store, clock) = (thief_store.clone(), thief_clock.clone());
            async move {
                match ctx.task.id.as_str() {
                    "b" => {
                        let steal = Claim {
                            force: true,
                            ..Claim::new("thief", Duration::from_secs(30))
                        };
                        store
                            .claim(&ctx.lease.key, &steal, clock.now())
                            .await
                            .unwrap();
                        Ok(json!("b"))
                    }
                    "c" => Err(NonRetryable(anyhow::anyhow!("bad input")).into()),
                    id => Ok::<_, anyhow::Error>(json!(id)),
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(ran, 5);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        (
            counts.by_status.succeeded,
            counts.by_status.exhausted,
            counts.by_status.in_progress
        ),
        (3, 1, 1)
    );
    let b = store
        .get(&TaskKey::parse("tracked", "b").unwrap())
        .await
        .unwrap();
    assert_eq!(b.lease.map(|l| l.owner), Some("thief".to_string()));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_the_lease_alive_while_work_runs() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    let key = TaskKey::parse("tracked", "a").unwrap();
    let (store2, clock2, key2) = (store.clone(), clock.clone(), key.clone());
    let t = tracker(&store, &job, &clock)
        .run(&key.id, |_| async move {
            // Two minutes of work against a 30 s lease, in 5 s steps of both clocks.
            for _ in 0..24 {
                clock2.advance(Duration::from_secs(5));
                tokio::time::sleep(Duration::from_secs(5)).await;
                let other = store2
                    .claim(
                        &key2,
                        &Claim::new("thief", Duration::from_secs(30)),
                        clock2.now(),
                    )
                    .await;
                assert!(
                    matches!(other.unwrap_err().refusal(), Some(Refusal::Locked { .. })),
                    "lease kept alive"
                );
            }
            Ok::<_, std::io::Error>("done")
        })
        .await
        .unwrap();
    assert_eq!((t.status, t.attempts), (Status::Succeeded, 1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_releases_its_lease() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    let tracker = tracker(&store, &job, &clock);
    let id = TaskId::new("a").unwrap();
    let run = tracker.run(&id, an_hour_of_work);
    let timed_out = tokio::time::timeout(Duration::from_secs(1), run).await;
    assert!(timed_out.is_err(), "the run was cancelled");
    tokio::time::sleep(Duration::from_millis(10)).await; // let the release task run
    let t = store
        .get(&TaskKey::parse("tracked", "a").unwrap())
        .await
        .unwrap();
    assert_eq!((t.status, t.attempts, t.lease), (Status::Pending, 0, None));
}

/// The same for `run_next` and `run_all` cancelled while their closure runs: the task they
/// claimed is pending again at once, the attempt not counted, and the id is free for `run`.
#[tokio::test(start_paused = true)]
async fn a_cancelled_run_next_or_run_all_releases_its_lease() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a", "b"]).await;
    let t = tracker(&store, &job, &clock);
    let next = tokio::time::timeout(Duration::from_secs(1), t.run_next(an_hour_of_work)).await;
    assert!(next.is_err(), "run_next was cancelled");
    let all = tokio::time::timeout(Duration::from_secs(1), t.run_all(an_hour_of_work)).await;
    assert!(all.is_err(), "run_all was cancelled");
    tokio::time::sleep(Duration::from_millis(10)).await; // let the release tasks run
    for id in ["a", "b"] {
        let task = store.get(&key(&job, id)).await.unwrap();
        assert_eq!(
            (task.status, task.attempts, task.lease),
            (Status::Pending, 0, None),
            "{id}"
        );
    }
    let done = t
        .run(&TaskId::new("a").unwrap(), |_| async {
            Ok::<_, std::io::Error>("ran")
        })
        .await
        .unwrap();
    assert_eq!(
        done.status,
        Status::Succeeded,
        "no mark of the cancelled runs is left"
    );
}

/// `Tracker::for_job` takes the lease and backoff the job was given, and says when the job has
/// no record.
#[tokio::test]
async fn for_job_takes_the_jobs_lease_and_backoff() {
    let (store, clock, job) = setup();
    let spec = JobSpec {
        lease: Some(Duration::from_secs(90)),
        backoff: Some(Backoff::NONE),
        ..JobSpec::default()
    };
    store.put_job(&job, &spec, clock.now()).await.unwrap();
    add(&store, &job, &clock, &["a"]).await;
    let t = Tracker::for_job(store.clone(), job.clone())
        .await
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let failed = t
        .run(&TaskId::new("a").unwrap(), |ctx| async move {
            assert_eq!(
                ctx.lease.expires_at,
                ctx.lease.acquired_at.plus(Duration::from_secs(90))
            );
            Err::<(), _>(std::io::Error::other("once"))
        })
        .await
        .unwrap();
    let error = failed.error.as_ref().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("error", "once"),
        "not the lease assertion's panic"
    );
    assert_eq!(
        failed.not_before,
        Some(clock.now()),
        "no backoff: {failed:?}"
    );
    let missing = Tracker::for_job(store, JobName::new("nope").unwrap()).await;
    assert_eq!(missing.unwrap_err().kind(), ErrorKind::NotFound);
}

/// The release of a cancelled run rides out an outage as recording an outcome does
/// (`recovery::release`): the task is not left held until its lease runs out.
#[tokio::test(start_paused = true)]
async fn a_cancelled_run_releases_its_lease_through_an_outage() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a"]).await;
    let faults = Faults {
        releases_unavailable: 5,
        ..Faults::default()
    };
    let (spy, tracker) = Faulty::tracker(&inner, faults, &job, &clock);
    let id = TaskId::new("a").unwrap();
    let run = tracker.run(&id, an_hour_of_work);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(60), spy.released.notified())
        .await
        .expect("released once the store is back");
    assert_eq!(
        spy.releases_tried.load(std::sync::atomic::Ordering::SeqCst),
        6
    );
    let t = inner
        .get(&TaskKey::parse("tracked", "a").unwrap())
        .await
        .unwrap();
    assert_eq!((t.status, t.attempts, t.lease), (Status::Pending, 0, None));
}

#[tokio::test(start_paused = true)]
async fn a_task_running_in_this_tracker_or_a_clone_is_not_run_again() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    let tracker = tracker(&store, &job, &clock);
    let clone = tracker.clone();
    let id = TaskId::new("a").unwrap();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn({
        let (tracker, id) = (tracker.clone(), id.clone());
        async move {
            tracker
                .run(&id, |_| async move {
                    let _ = started_tx.send(());
                    let _ = finish_rx.await;
                    Ok::<_, std::io::Error>("first")
                })
                .await
        }
    });
    started_rx.await.unwrap();
    // The store would grant the same owner's claim again (re-entrant); the tracker refuses.
    for t in [&tracker, &clone] {
        let refused = t
            .run(&id, |_| async { Ok::<_, std::io::Error>("second") })
            .await
            .unwrap_err();
        match refused.refusal() {
            Some(Refusal::Locked { owner, expires_at }) => {
                assert_eq!(owner, "worker-1");
                assert_eq!(*expires_at, clock.now().plus(Duration::from_secs(30)));
            }
            other => panic!("expected Locked, got {other:?} ({refused})"),
        }
    }
    finish_tx.send(()).unwrap();
    let done = first.await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.attempts, done.output),
        (Status::Succeeded, 1, Some(json!("first")))
    );
    // Once the first run has ended, the id is free again (here: already succeeded).
    let again = tracker
        .run(&id, |_| async { Ok::<_, std::io::Error>("third") })
        .await
        .unwrap_err();
    assert_eq!(again.refusal(), Some(&Refusal::Succeeded));
}

/// The faults a [`Faulty`] store has switched on.
#[derive(Debug, Default)]
struct Faults {
    release_fails: bool,
    refuse_huge_outputs: bool,
    hold: Option<&'static str>,
    /// How many successes (hand-offs included) are written, then answered with a connection
    /// error, as when a connection breaks after the commit.
    answers_to_lose: usize,
    /// How many claims are granted, then answered with a connection error.
    claim_answers_to_lose: usize,
    /// Every failure is refused as invalid input.
    refuse_failures: bool,
    /// A failure whose message is longer than this is refused as invalid input.
    refuse_failure_messages_over: Option<usize>,
    /// The first heartbeat never answers.
    hang_first_heartbeat: bool,
    /// How many failures find the store unreachable (nothing written).
    failures_unavailable: usize,
    /// How many releases find the store unreachable (nothing written).
    releases_unavailable: usize,
}

impl Faults {
    /// Only the answer of `op` held.
    fn holding(op: &'static str) -> Faults {
        Faults {
            hold: Some(op),
            ..Faults::default()
        }
    }
}

/// A store with faults switched on by the test: `release` always fails; outputs holding `"huge"`
/// are refused (as a store with a size limit refuses an output too large for it); the answer
/// of the operation named by `hold` (`claim_next` or `handoff`) waits, after the store granted
/// its leases, until `open` is notified (a call in flight whose caller may be gone by then).
/// It counts heartbeats and notifies `released` after each successful release.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Store>,
    faults: Faults,
    answers_lost: std::sync::atomic::AtomicUsize,
    claim_answers_lost: std::sync::atomic::AtomicUsize,
    failures_tried: std::sync::atomic::AtomicUsize,
    releases_tried: std::sync::atomic::AtomicUsize,
    heartbeats: std::sync::atomic::AtomicUsize,
    entered: tokio::sync::Notify,
    open: tokio::sync::Notify,
    released: tokio::sync::Notify,
}

impl Faulty {
    fn new(inner: &Arc<dyn Store>, faults: Faults) -> Arc<Faulty> {
        Arc::new(Faulty {
            inner: inner.clone(),
            faults,
            answers_lost: Default::default(),
            claim_answers_lost: Default::default(),
            failures_tried: Default::default(),
            releases_tried: Default::default(),
            heartbeats: Default::default(),
            entered: Default::default(),
            open: Default::default(),
            released: Default::default(),
        })
    }

    /// A [`Faulty`] store over `inner` with `faults` on, and a [`tracker`] working through it.
    fn tracker(
        inner: &Arc<dyn Store>,
        faults: Faults,
        job: &JobName,
        clock: &ManualClock,
    ) -> (Arc<Faulty>, Tracker) {
        let faulty = Faulty::new(inner, faults);
        let store: Arc<dyn Store> = faulty.clone();
        (faulty, tracker(&store, job, clock))
    }

    fn check_output(&self, output: &serde_json::Value) -> Result<()> {
        match output.get("huge") {
            Some(_) if self.faults.refuse_huge_outputs => {
                Err(Error::invalid("output too large for this store"))
            }
            _ => Ok(()),
        }
    }

    /// `answer`, or the connection error that replaces it while `lost` (counting the answers
    /// lost so far) is below `to_lose`.
    fn deliver<T>(
        lost: &std::sync::atomic::AtomicUsize,
        to_lose: usize,
        answer: Result<T>,
    ) -> Result<T> {
        use std::sync::atomic::Ordering::SeqCst;
        match answer {
            Ok(_) if lost.fetch_add(1, SeqCst) < to_lose => Err(Error::Unavailable(
                "connection reset after the commit (the test)".into(),
            )),
            other => other,
        }
    }

    async fn gate(&self, op: &str) {
        if self.faults.hold == Some(op) {
            self.entered.notify_one();
            self.open.notified().await;
        }
    }
}

tasktrack_core::store_impl! {
    Faulty;
    native {
        fn backend(&self) -> &'static str {
            "faulty"
        }
        async fn heartbeat(&self, lease: &Lease, lease_for: Duration, now: Timestamp) -> Result<Lease> {
            let sent = self.heartbeats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if sent == 0 && self.faults.hang_first_heartbeat {
                std::future::pending::<()>().await;
            }
            self.inner.heartbeat(lease, lease_for, now).await
        }
        async fn release(&self, lease: &Lease, now: Timestamp) -> Result<Task> {
            if self.faults.release_fails {
                return Err(Error::Backend("release refused by the test".into()));
            }
            let tried = self.releases_tried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if tried < self.faults.releases_unavailable {
                return Err(Error::Unavailable("store down (the test)".into()));
            }
            let task = self.inner.release(lease, now).await;
            if task.is_ok() {
                self.released.notify_one();
            }
            task
        }
        async fn claim_next(&self, job: &JobName, req: &ClaimNext, now: Timestamp) -> Result<Vec<Claimed>> {
            let won = self.inner.claim_next(job, req, now).await;
            self.gate("claim_next").await;
            Self::deliver(&self.claim_answers_lost, self.faults.claim_answers_to_lose, won)
        }
        async fn fail(&self, lease: &Lease, req: &Fail, now: Timestamp) -> Result<Task> {
            if self.faults.refuse_failures {
                return Err(Error::invalid("failure refused by the test"));
            }
            if self.faults.refuse_failure_messages_over.is_some_and(|n| req.error.message.len() > n) {
                return Err(Error::invalid("error message too large for this store"));
            }
            let tried = self.failures_tried.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if tried < self.faults.failures_unavailable {
                return Err(Error::Unavailable("the store is down (the test)".into()));
            }
            self.inner.fail(lease, req, now).await
        }
        async fn succeed(&self, lease: &Lease, output: serde_json::Value, now: Timestamp) -> Result<Task> {
            self.check_output(&output)?;
            let done = self.inner.succeed(lease, output, now).await;
            Self::deliver(&self.answers_lost, self.faults.answers_to_lose, done)
        }
        async fn succeed_and_claim_next(&self, lease: &Lease, output: serde_json::Value, next: &ClaimNext, now: Timestamp) -> Result<Handoff> {
            self.check_output(&output)?;
            let got = self.inner.succeed_and_claim_next(lease, output, next, now).await;
            self.gate("handoff").await;
            Self::deliver(&self.answers_lost, self.faults.answers_to_lose, got)
        }
    }
    via self.inner {
        init() -> ();
        put_job(job: &JobName, spec: &JobSpec, now: Timestamp) -> Job;
        get_job(job: &JobName) -> Job;
        jobs(state: Option<JobState>) -> Vec<Job>;
        set_job_state(job: &JobName, change: JobStateChange, now: Timestamp) -> Job;
        delete_job(job: &JobName, now: Timestamp) -> Deleted;
        create(job: &JobName, tasks: &[NewTask], mode: CreateMode, now: Timestamp) -> Created;
        claim(key: &TaskKey, req: &Claim, now: Timestamp) -> Claimed;
        patch_data(lease: &Lease, patch: &serde_json::Value, now: Timestamp) -> Task;
        succeed_many(done: &[(Lease, serde_json::Value)], now: Timestamp) -> Vec<Result<Task>>;
        ignore(key: &TaskKey, req: &Ignore, now: Timestamp) -> Task;
        retry(key: &TaskKey, req: &Retry, now: Timestamp) -> Task;
        report(key: &TaskKey, req: &Report, now: Timestamp) -> Task;
        delete(key: &TaskKey, now: Timestamp) -> ();
        purge(req: &Purge) -> u64;
        get(key: &TaskKey) -> Task;
        list(query: &TaskQuery) -> TaskPage;
        counts(job: &JobName) -> Counts;
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_stops_its_heartbeat_even_when_the_release_fails() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a"]).await;
    let faults = Faults {
        release_fails: true,
        ..Faults::default()
    };
    let (spy, tracker) = Faulty::tracker(&inner, faults, &job, &clock);
    let id = TaskId::new("a").unwrap();
    let run = tracker.run(&id, an_hour_of_work);
    // Heartbeats every 10 s of a 30 s lease: two in 25 s, then the run is cancelled.
    assert!(
        tokio::time::timeout(Duration::from_secs(25), run)
            .await
            .is_err()
    );
    let beats = spy.heartbeats.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(beats, 2);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        spy.heartbeats.load(std::sync::atomic::Ordering::SeqCst),
        beats,
        "no heartbeat after the run was dropped"
    );
}

/// An output the store refuses is the attempt's failure (kind `unrecordable`, not retried), as
/// `tasktrack run` records it: the task is not left held until its lease expires, to run again.
/// `run_all` goes on to the next task.
#[tokio::test]
async fn an_output_the_store_refuses_is_recorded_as_an_unrecordable_failure() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a", "b", "c"]).await;
    let faults = Faults {
        refuse_huge_outputs: true,
        ..Faults::default()
    };
    let (_, t) = Faulty::tracker(&inner, faults, &job, &clock);
    let a = t
        .run(&TaskId::new("a").unwrap(), |_| async {
            Ok::<_, std::io::Error>(json!({ "huge": "..." }))
        })
        .await
        .unwrap();
    assert_eq!((a.status, a.lease.is_none()), (Status::Exhausted, true));
    let error = a.error.unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(
        error.message.contains("output too large"),
        "{}",
        error.message
    );

    // Through the hand-off too: b's output is refused, c's is stored.
    let ran = t
        .run_all(|ctx| async move {
            let output = match ctx.task.id.as_str() {
                "b" => json!({ "huge": "..." }),
                id => json!({ "id": id }),
            };
            Ok::<_, std::io::Error>(output)
        })
        .await
        .unwrap();
    assert_eq!(ran, 2);
    let status = |id: &'static str| {
        let key = key(&job, id);
        let inner = inner.clone();
        async move { inner.get(&key).await.unwrap().status }
    };
    assert_eq!(status("b").await, Status::Exhausted);
    assert_eq!(status("c").await, Status::Succeeded);
}

/// The failure recorded for a refused output rides out an outage like any recording; refused
/// too, it is the store's trouble ([`Error::Backend`], naming the task), not bad input.
#[tokio::test(start_paused = true)]
async fn the_failure_recorded_for_a_refused_output_is_retried_and_its_refusal_is_a_store_error() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a", "b"]).await;
    let huge = |_| async { Ok::<_, std::io::Error>(json!({ "huge": "..." })) };
    let faults = Faults {
        refuse_huge_outputs: true,
        failures_unavailable: 1,
        ..Faults::default()
    };
    let (_, t) = Faulty::tracker(&inner, faults, &job, &clock);
    let a = t.run(&TaskId::new("a").unwrap(), huge).await.unwrap();
    assert_eq!(a.status, Status::Exhausted);
    assert_eq!(a.error.unwrap().kind, "unrecordable");

    let faults = Faults {
        refuse_huge_outputs: true,
        refuse_failures: true,
        ..Faults::default()
    };
    let (_, t) = Faulty::tracker(&inner, faults, &job, &clock);
    let e = t.run(&TaskId::new("b").unwrap(), huge).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    let message = e.to_string();
    assert!(
        message.contains("tracked/b: the store refused this attempt's outcome")
            && message.contains("failure refused by the test"),
        "{message}"
    );
}

/// Drops `run` once the store has granted its claim (`entered`), then lets the store answer, and
/// waits (in paused time: no wall clock) for the lease to be given back.
async fn drop_while_answering<F: std::future::Future>(gate: &Faulty, run: F) {
    tokio::select! {
        _ = run => panic!("the store's answer is held, so the run cannot end"),
        _ = gate.entered.notified() => {}
    }
    gate.open.notify_one();
    let released = tokio::time::timeout(Duration::from_secs(600), gate.released.notified()).await;
    assert!(
        released.is_ok(),
        "the lease granted to the dropped run is released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_dropped_while_its_claim_is_in_flight_gives_the_lease_back() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a"]).await;
    let (gate, t) = Faulty::tracker(&inner, Faults::holding("claim_next"), &job, &clock);
    drop_while_answering(
        &gate,
        t.run_next(|_| async { Ok::<_, std::io::Error>(json!(1)) }),
    )
    .await;
    let a = inner.get(&key(&job, "a")).await.unwrap();
    assert_eq!((a.status, a.lease, a.attempts), (Status::Pending, None, 0));
}

#[tokio::test(start_paused = true)]
async fn a_run_all_dropped_while_a_hand_off_is_in_flight_gives_the_next_lease_back() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a", "b"]).await;
    let (gate, t) = Faulty::tracker(&inner, Faults::holding("handoff"), &job, &clock);
    drop_while_answering(
        &gate,
        t.run_all(|_| async { Ok::<_, std::io::Error>(json!(1)) }),
    )
    .await;
    let (a, b) = (
        inner.get(&key(&job, "a")).await.unwrap(),
        inner.get(&key(&job, "b")).await.unwrap(),
    );
    assert_eq!(a.status, Status::Succeeded);
    assert_eq!((b.status, b.lease, b.attempts), (Status::Pending, None, 0));
}

/// A connection that breaks after the store committed a hand-off loses its answer: the success
/// was recorded and the next task claimed, but the tracker hears only an error. `run_all` retries,
/// finds its own success recorded (not a lost lease), and runs the task the lost hand-off
/// claimed, still leased to it: every task succeeds once, at its first attempt, and nothing is
/// left to wait out a lease. (With the answer of a plain success lost too: the second task's.)
#[tokio::test(start_paused = true)]
async fn run_all_rides_out_answers_lost_after_the_commit() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a", "b", "c"]).await;
    let faults = Faults {
        answers_to_lose: 2,
        ..Faults::default()
    };
    let (_faulty, tracker) = Faulty::tracker(&inner, faults, &job, &clock);
    let ran = tracker
        .run_all(|ctx| async move { Ok::<_, std::io::Error>(ctx.task.id.to_string()) })
        .await
        .unwrap();
    assert_eq!(ran, 3);
    for id in ["a", "b", "c"] {
        let t = inner.get(&key(&job, id)).await.unwrap();
        assert_eq!(
            (t.status, t.attempts, t.output),
            (Status::Succeeded, 1, Some(json!(id))),
            "{id}"
        );
    }
}

/// A pipeline task's hand-off written with its answer lost: the success moved the task to its
/// next stage and the same hand-off claimed it again there (first in claim order). `run_all`
/// finds that grant and runs the second stage at once, rather than leave the task leased to
/// nobody until the lease runs out (a dead attempt).
#[tokio::test(start_paused = true)]
async fn run_all_adopts_the_next_stage_its_lost_hand_off_claimed() {
    let (inner, clock, job) = setup();
    let stages = JobSpec {
        stages: Some(vec!["one".into(), "two".into()]),
        ..JobSpec::default()
    };
    inner.put_job(&job, &stages, clock.now()).await.unwrap();
    add(&inner, &job, &clock, &["a"]).await;
    let faults = Faults {
        answers_to_lose: 1,
        ..Faults::default()
    };
    let (_faulty, tracker) = Faulty::tracker(&inner, faults, &job, &clock);
    let ran = tracker
        .run_all(|ctx| async move { Ok::<_, std::io::Error>(ctx.task.stage.clone()) })
        .await
        .unwrap();
    assert_eq!(ran, 2, "both stages ran, once each");
    let t = inner.get(&key(&job, "a")).await.unwrap();
    assert_eq!(
        (t.status, t.output),
        (Status::Succeeded, Some(json!("two")))
    );
    let outcomes: Vec<Outcome> = t.history.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [Outcome::Succeeded, Outcome::Succeeded],
        "no dead attempt"
    );
}

/// A claim granted with its answer lost: `run_all` retries, finds the task still leased to it,
/// and runs it, rather than end at the error or leave the task to wait out its lease.
#[tokio::test(start_paused = true)]
async fn run_all_rides_out_a_claim_whose_answer_was_lost() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a", "b"]).await;
    let faults = Faults {
        claim_answers_to_lose: 1,
        ..Faults::default()
    };
    let (_faulty, tracker) = Faulty::tracker(&inner, faults, &job, &clock);
    let ran = tracker
        .run_all(|_| async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap();
    assert_eq!(ran, 2);
    for id in ["a", "b"] {
        let t = inner.get(&key(&job, id)).await.unwrap();
        assert_eq!((t.status, t.attempts), (Status::Succeeded, 1), "{id}");
    }
}

/// An output nesting deeper than `MAX_JSON_DEPTH` (which a store could write but not read back)
/// is refused by the store itself as `InvalidInput`, so the tracker records the attempt as an
/// `unrecordable` failure, alone and through the hand-off, and goes on to the next task.
#[tokio::test]
async fn an_output_nested_too_deep_is_recorded_as_an_unrecordable_failure() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a", "b", "c"]).await;
    let deep = || tasktrack_core::testkit::nested_json(lifecycle::MAX_JSON_DEPTH + 1);
    let t = tracker(&store, &job, &clock);
    let a = t
        .run(&TaskId::new("a").unwrap(), |_| async move {
            Ok::<_, std::io::Error>(deep())
        })
        .await
        .unwrap();
    assert_eq!((a.status, a.lease.is_none()), (Status::Exhausted, true));
    let error = a.error.unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(
        error
            .message
            .contains("nests 65 levels deep; the limit is 64"),
        "{}",
        error.message
    );

    let ran = t
        .run_all(|ctx| async move {
            let output = match ctx.task.id.as_str() {
                "b" => deep(),
                id => json!({ "id": id }),
            };
            Ok::<_, std::io::Error>(output)
        })
        .await
        .unwrap();
    assert_eq!(ran, 2);
    let b = store.get(&key(&job, "b")).await.unwrap();
    assert_eq!(
        (b.status, b.error.map(|e| e.kind)),
        (Status::Exhausted, Some("unrecordable".to_string()))
    );
    let c = store.get(&key(&job, "c")).await.unwrap();
    assert_eq!(
        (c.status, c.output),
        (Status::Succeeded, Some(json!({ "id": "c" })))
    );
}

/// A clone's `run_next` granted a task whose lease a slower clone's run let run out: the task is
/// held by two runs of one worker. When the slower run ends (fenced out), `run` of that task is
/// still refused while the other run goes on: granted the live lease again (a claim by its
/// holder is re-entrant), it would run the task a second time at once.
#[tokio::test(start_paused = true)]
async fn a_task_two_runs_hold_stays_locked_until_both_end() {
    let (store, clock, job) = setup();
    add(&store, &job, &clock, &["a"]).await;
    let slow = tracker(&store, &job, &clock);
    let quick = slow.clone();
    let id = TaskId::new("a").unwrap();
    let gated = |started: tokio::sync::oneshot::Sender<()>,
                 finish: tokio::sync::oneshot::Receiver<()>,
                 output: &'static str| {
        move |_: TaskContext| async move {
            let _ = started.send(());
            let _ = finish.await;
            Ok::<_, std::io::Error>(output)
        }
    };
    let (slow_started, slow_running) = tokio::sync::oneshot::channel();
    let (slow_finish, slow_finishing) = tokio::sync::oneshot::channel();
    let first = tokio::spawn({
        let (slow, id) = (slow.clone(), id.clone());
        let work = gated(slow_started, slow_finishing, "slow");
        async move { slow.run(&id, work).await }
    });
    slow_running.await.unwrap();
    // The slow run's lease lapses (its heartbeats are not answered in time, say).
    clock.advance(Duration::from_secs(31));
    let (quick_started, quick_running) = tokio::sync::oneshot::channel();
    let (quick_finish, quick_finishing) = tokio::sync::oneshot::channel();
    let second = tokio::spawn({
        let quick = quick.clone();
        let work = gated(quick_started, quick_finishing, "quick");
        async move { quick.run_next(work).await }
    });
    quick_running.await.unwrap();
    slow_finish.send(()).unwrap();
    let fenced = first.await.unwrap().unwrap_err();
    assert_eq!(fenced.kind(), ErrorKind::StaleLease, "{fenced}");

    let refused = slow
        .run(&id, |_| async { Ok::<_, std::io::Error>("third") })
        .await
        .unwrap_err();
    assert!(
        matches!(refused.refusal(), Some(Refusal::Locked { .. })),
        "{refused}"
    );
    quick_finish.send(()).unwrap();
    let done = second.await.unwrap().unwrap().unwrap();
    assert_eq!(
        (done.status, done.output),
        (Status::Succeeded, Some(json!("quick")))
    );
}

/// An output whose `Serialize` panics.
struct PanicsWhenSerialized;

impl serde::Serialize for PanicsWhenSerialized {
    fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
        panic!("no JSON for this")
    }
}

/// A panic in the caller's code that turns the attempt's result into what is recorded (here the
/// output's `Serialize`) is the attempt's failure, like a panic of the closure: it does not
/// escape the run, which would give the task back with the attempt uncounted.
#[tokio::test]
async fn a_panic_while_turning_the_result_into_json_is_the_attempts_failure() {
    let task = run_a(|_| async { Ok::<_, std::io::Error>(PanicsWhenSerialized) }).await;
    assert_eq!((task.status, task.attempts), (Status::Failed, 1));
    let error = task.error.unwrap();
    assert_eq!(error.kind, "panic");
    assert!(
        error
            .message
            .starts_with("panicked: no JSON for this while turning"),
        "{}",
        error.message
    );
}

/// Called outside a Tokio runtime, a run is an error saying what it needs, not a panic.
#[test]
fn a_run_outside_a_tokio_runtime_is_an_error() {
    let (store, clock, job) = setup();
    let t = tracker(&store, &job, &clock);
    let id = TaskId::new("a").unwrap();
    let ran = futures::executor::block_on(t.run(&id, |_| async { Ok::<_, std::io::Error>(()) }));
    let e = ran.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
    let next = futures::executor::block_on(t.run_next(|_| async { Ok::<_, std::io::Error>(()) }));
    assert_eq!(next.unwrap_err().kind(), ErrorKind::InvalidInput);
}

/// A failure the store refuses (its message too large for it) is recorded in its place as an
/// `unrecordable` failure that keeps the start of the message and stays as retryable as it
/// was: the task is retried, not exhausted, and what went wrong is not lost entirely.
#[tokio::test]
async fn a_refused_failure_keeps_the_start_of_its_message_and_its_retries() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a"]).await;
    let faults = Faults {
        refuse_failure_messages_over: Some(2_000),
        ..Faults::default()
    };
    let (_, t) = Faulty::tracker(&inner, faults, &job, &clock);
    let long = format!("disk full: {}", "x".repeat(5_000));
    let task = t
        .run(&TaskId::new("a").unwrap(), |_| async move {
            Err::<(), _>(std::io::Error::other(long))
        })
        .await
        .unwrap();
    assert_eq!((task.status, task.attempts), (Status::Failed, 1));
    let error = task.error.unwrap();
    assert_eq!(error.kind, "unrecordable");
    assert!(
        error.message.contains("error message too large"),
        "{}",
        error.message
    );
    let detail = error.detail.unwrap();
    assert!(detail.starts_with("error: disk full: xxx"), "{detail}");
    assert_eq!(
        detail.chars().count(),
        "error: ".len() + Fail::KEPT_OF_REFUSED,
        "{detail}"
    );
}

/// A renewal the store never answers is given up on at the next one, which renews the lease:
/// one hung call does not stop the heartbeats.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_never_answers_does_not_stop_the_next_ones() {
    let (inner, clock, job) = setup();
    add(&inner, &job, &clock, &["a"]).await;
    let faults = Faults {
        hang_first_heartbeat: true,
        ..Faults::default()
    };
    let (faulty, t) = Faulty::tracker(&inner, faults, &job, &clock);
    let task = t
        .run(&TaskId::new("a").unwrap(), |_| {
            let clock = clock.clone();
            async move {
                // 45 s of work under a 30 s lease: each 10 s the clock moves on with tokio's.
                for _ in 0..9 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    clock.advance(Duration::from_secs(5));
                }
                Ok::<_, std::io::Error>("done")
            }
        })
        .await
        .unwrap();
    assert_eq!(
        task.status,
        Status::Succeeded,
        "the lease was renewed in time"
    );
    let sent = faulty.heartbeats.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent >= 3, "renewals went on after the hung one: {sent}");
}
