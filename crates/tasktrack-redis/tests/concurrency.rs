//! Concurrency beyond the shared suite: workers in two OS processes draining one job, and a
//! randomised concurrent run after which the job's counters equal a full recount.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::{Scratch, scratch_store, url_with};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tasktrack_core::*;

const WORKER_ENV: &str = "TASKTRACK_REDIS_TEST_WORKER";
const TASKS: usize = 10_000;
const WORKERS_PER_PROCESS: usize = 4;

/// Claims and succeeds until the job is drained; returns the ids this worker completed.
async fn drain(store: Arc<dyn Store>, job: JobName, owner: String) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let req = ClaimNext::new(owner, Duration::from_secs(600)).with_limit(4);
    loop {
        let claimed = store.claim_next(&job, &req, Timestamp::now()).await?;
        if claimed.is_empty() {
            return Ok(done);
        }
        for c in claimed {
            store
                .succeed(
                    &c.lease,
                    serde_json::json!({"by": c.lease.owner}),
                    Timestamp::now(),
                )
                .await?;
            done.push(c.task.id.to_string());
        }
    }
}

/// `WORKERS_PER_PROCESS` workers in this process; returns every id they completed.
async fn run_workers(store: Arc<dyn Store>, job: &JobName, tag: &str) -> Vec<String> {
    let handles: Vec<_> = (0..WORKERS_PER_PROCESS)
        .map(|w| tokio::spawn(drain(store.clone(), job.clone(), format!("{tag}-w{w}"))))
        .collect();
    let mut ids = Vec::new();
    for h in handles {
        ids.extend(h.await.unwrap().unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_in_two_processes_succeed_every_task_exactly_once() {
    // Child mode: this same test binary, re-run by the parent below with the job in the env.
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let (prefix, job) = spec.split_once('/').unwrap();
        let store = tasktrack_redis::open(&url_with(prefix)).await.unwrap();
        let ids = run_workers(Arc::new(store), &JobName::new(job).unwrap(), "child").await;
        println!("CHILD-DONE {}", ids.len());
        return;
    }
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("two-processes").unwrap();
    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created, TASKS as u64);

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "eight_workers_in_two_processes_succeed_every_task_exactly_once",
            "--nocapture",
        ])
        .env(WORKER_ENV, format!("{}/{}", scratch.0.prefix(), job))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mine = run_workers(store.clone(), &job, "parent").await;
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-DONE "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("child printed no count: {stdout}"));

    assert_eq!(
        mine.len() + theirs,
        TASKS,
        "every success is reported once across both processes"
    );
    assert!(
        theirs > 0 && !mine.is_empty(),
        "both processes took part ({} / {theirs})",
        mine.len()
    );
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded, TASKS as u64);
    assert_eq!(counts.known, TASKS as u64);
    // Every task was claimed once (token 1) and has exactly one success in its history.
    let mut query = TaskQuery::new(job.clone()).with_limit(1000);
    let mut seen = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        for t in &page.tasks {
            assert_eq!(
                (t.status, t.token, t.attempts),
                (Status::Succeeded, 1, 1),
                "{}",
                t.id
            );
            assert_eq!(t.history.len(), 1, "{}", t.id);
        }
        seen += page.tasks.len();
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, TASKS);
    drop(scratch);
}

/// A tiny deterministic generator (no dependency needed for a test's dice).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_concurrent_run_leaves_counters_equal_to_a_recount() {
    let Some((scratch, store)) = scratch_store().await else {
        return;
    };
    let job = JobName::new("random-run").unwrap();
    store
        .put_job(
            &job,
            &JobSpec {
                stages: Some(vec!["a".into(), "b".into()]),
                ..Default::default()
            },
            Timestamp::from_millis(1_000),
        )
        .await
        .unwrap();
    let ids: Vec<TaskId> = (0..200)
        .map(|i| TaskId::new(format!("r{i}")).unwrap())
        .collect();
    let news: Vec<NewTask> = ids.iter().map(|id| NewTask::new(id.clone())).collect();
    store
        .create(
            &job,
            &news,
            CreateMode::SkipExisting,
            Timestamp::from_millis(1_000),
        )
        .await
        .unwrap();
    // A shared clock every worker moves forward, so leases expire and backoffs pass mid-run.
    let clock = Arc::new(AtomicI64::new(1_000));
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let (store, job, ids, clock) = (store.clone(), job.clone(), ids.clone(), clock.clone());
            tokio::spawn(async move {
                let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ ((w + 1) * 0x1234_5678));
                let owner = format!("w{w}");
                let mut held: Vec<Lease> = Vec::new();
                for _ in 0..400 {
                    let now = Timestamp::from_millis(
                        clock.fetch_add(dice.roll(40) as i64, Ordering::SeqCst),
                    );
                    let id = &ids[dice.roll(ids.len() as u64) as usize];
                    let key = TaskKey::new(job.clone(), id.clone());
                    let lease_for = Duration::from_millis(200 + dice.roll(2_000));
                    // Errors (refusals, stale leases) are part of the game; only store failures count.
                    let outcome: Result<()> = match dice.roll(10) {
                        0..=2 => {
                            let stage = if dice.roll(3) == 0 {
                                Some("b".to_string())
                            } else {
                                None
                            };
                            let req = ClaimNext {
                                owner: owner.clone(),
                                lease_for,
                                limit: 1 + dice.roll(3) as usize,
                                stage,
                            };
                            store
                                .claim_next(&job, &req, now)
                                .await
                                .map(|c| held.extend(c.into_iter().map(|c| c.lease)))
                        }
                        3 => store
                            .claim(&key, &Claim::new(owner.clone(), lease_for), now)
                            .await
                            .map(|c| held.push(c.lease)),
                        4 | 5 if !held.is_empty() => {
                            let lease = held.swap_remove(dice.roll(held.len() as u64) as usize);
                            store
                                .succeed(&lease, serde_json::Value::Null, now)
                                .await
                                .map(|_| ())
                        }
                        6 if !held.is_empty() => {
                            let lease = held.swap_remove(dice.roll(held.len() as u64) as usize);
                            let fail = Fail::new(Failure::new("test", "boom"));
                            store
                                .fail(
                                    &lease,
                                    &Fail {
                                        retryable: dice.roll(4) != 0,
                                        ..fail
                                    },
                                    now,
                                )
                                .await
                                .map(|_| ())
                        }
                        7 if !held.is_empty() => {
                            let lease = held[dice.roll(held.len() as u64) as usize].clone();
                            if dice.roll(2) == 0 {
                                store.heartbeat(&lease, lease_for, now).await.map(|_| ())
                            } else {
                                store.release(&lease, now).await.map(|_| ())
                            }
                        }
                        8 => store
                            .retry(
                                &key,
                                &Retry {
                                    force: dice.roll(3) == 0,
                                },
                                now,
                            )
                            .await
                            .map(|_| ()),
                        _ => match dice.roll(3) {
                            0 => store
                                .ignore(&key, &Ignore::default(), now)
                                .await
                                .map(|_| ()),
                            1 => store
                                .report(
                                    &key,
                                    &Report {
                                        success: dice.roll(2) == 0,
                                        detail: None,
                                    },
                                    now,
                                )
                                .await
                                .map(|_| ()),
                            _ => store
                                .create(&job, &[NewTask::new(id.clone())], CreateMode::Replace, now)
                                .await
                                .map(|_| ()),
                        },
                    };
                    match outcome {
                        Ok(())
                        | Err(
                            Error::Refused { .. } | Error::StaleLease { .. } | Error::NotFound(_),
                        ) => {}
                        Err(e) => panic!("store error: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    // Recount from the tasks themselves and compare with the counters.
    let mut recount: HashMap<(Option<String>, Status), u64> = HashMap::new();
    let page = store
        .list(&TaskQuery::new(job.clone()).with_limit(10_000))
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), ids.len());
    for t in &page.tasks {
        *recount.entry((t.stage.clone(), t.status)).or_default() += 1;
    }
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.known, ids.len() as u64);
    for status in Status::ALL {
        let total: u64 = recount
            .iter()
            .filter(|((_, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(counts.by_status.get(status), total, "{status}");
        for stage in ["a", "b"] {
            let n = recount
                .get(&(Some(stage.to_string()), status))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                counts.by_stage.get(stage).map_or(0, |c| c.get(status)),
                n,
                "{stage}/{status}"
            );
        }
    }
    let _keep: &Scratch = &scratch;
}
