//! Exactly-once under real concurrency on moto:
//! - 2,000 tasks drained by 8 workers in 2 processes (this test binary re-runs itself as the
//!   second process): every task succeeded exactly once;
//! - two workers with separate stores (no shared cache or index copy, as two machines) race
//!   for one fresh task, 200 rounds: exactly one winner every round.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::{ClaimNext, CreateMode, JobName, NewTask, Status, Store, TaskId, Timestamp};
use tasktrack_s3::S3Store;

const TASKS: usize = 2_000;
const WORKERS_PER_PROCESS: usize = 4;
const LEASE: Duration = Duration::from_secs(300);
const CHILD_URL: &str = "TASKTRACK_S3_TEST_CHILD_URL";
const CHILD_JOB: &str = "TASKTRACK_S3_TEST_CHILD_JOB";

/// Claims and succeeds tasks of `job` until none is left; returns the ids it ran.
async fn worker(store: Arc<S3Store>, job: JobName, name: String) -> Vec<String> {
    let mut ran = Vec::new();
    let req = ClaimNext::new(name.clone(), LEASE);
    loop {
        let claimed = store
            .claim_next(&job, &req, Timestamp::now())
            .await
            .unwrap();
        let Some(c) = claimed.into_iter().next() else {
            break;
        };
        store
            .succeed(
                &c.lease,
                serde_json::json!({ "by": name }),
                Timestamp::now(),
            )
            .await
            .unwrap();
        ran.push(c.task.id.as_str().to_owned());
    }
    ran
}

async fn run_workers(store: Arc<S3Store>, job: &JobName, tag: &str) -> Vec<String> {
    let handles: Vec<_> = (0..WORKERS_PER_PROCESS)
        .map(|w| tokio::spawn(worker(store.clone(), job.clone(), format!("{tag}-w{w}"))))
        .collect();
    let mut ran = Vec::new();
    for h in handles {
        ran.extend(h.await.unwrap());
    }
    ran
}

/// The second process: started by the test below with the store URL and job in its
/// environment; prints the ids it ran, one `RAN <id>` line each (libtest may print its own
/// `test … ` on the first line, so the parent looks for `RAN ` anywhere). Does nothing otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "helper process for eight_workers_in_two_processes_run_each_task_once"]
async fn child_worker_process() {
    let (Ok(url), Ok(job)) = (std::env::var(CHILD_URL), std::env::var(CHILD_JOB)) else {
        return;
    };
    let store = Arc::new(common::open(&url).await.unwrap());
    for id in run_workers(store, &JobName::new(job).unwrap(), "child").await {
        println!("RAN {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_in_two_processes_run_each_task_once() {
    let Some(store) = common::fresh("two-processes").await else {
        return;
    };
    let url = store.url().to_owned();
    let job = JobName::new("drain").unwrap();
    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created as usize, TASKS);

    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL, &url)
        .env(CHILD_JOB, job.as_str())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mine = run_workers(store.clone(), &job, "parent").await;
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "child process failed: {out:?}");
    let elapsed = started.elapsed();
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("RAN ").map(|(_, id)| id.trim().to_owned()))
        .collect();
    assert!(
        !theirs.is_empty(),
        "the second process ran nothing; its output: {out:?}"
    );

    let mut seen = HashSet::new();
    for id in mine.iter().chain(&theirs) {
        assert!(seen.insert(id.clone()), "task {id} ran twice");
    }
    assert_eq!(seen.len(), TASKS, "every task ran");
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded as usize, TASKS, "{counts:?}");
    for id in ["t00000", "t00999", "t01999"] {
        let t = store
            .get(&tasktrack_core::TaskKey::new(
                job.clone(),
                TaskId::new(id).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(
            (t.status, t.attempts, t.history.len()),
            (Status::Succeeded, 1, 1),
            "{id}"
        );
    }
    println!(
        "{TASKS} tasks, 8 workers in 2 processes: {:.1}s, {:.0} tasks/s; this process ran {}, the other {}; \
         this process sent {:?}",
        elapsed.as_secs_f64(),
        TASKS as f64 / elapsed.as_secs_f64(),
        mine.len(),
        theirs.len(),
        store.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_race_for_one_fresh_task_200_rounds_one_winner_each() {
    let Some(a) = common::fresh("race").await else {
        return;
    };
    // A second, independent store on the same prefix: its own cache and index copy.
    let b = Arc::new(common::open(a.url()).await.unwrap());
    let job = JobName::new("race").unwrap();
    for round in 0..200 {
        let id = TaskId::new(format!("r{round:03}")).unwrap();
        a.create(
            &job,
            &[NewTask::new(id.clone())],
            CreateMode::SkipExisting,
            Timestamp::now(),
        )
        .await
        .unwrap();
        let race = |store: Arc<S3Store>, who: &'static str| {
            let job = job.clone();
            tokio::spawn(async move {
                store
                    .claim_next(&job, &ClaimNext::new(who, LEASE), Timestamp::now())
                    .await
            })
        };
        let (ra, rb) = (race(a.clone(), "a"), race(b.clone(), "b"));
        let (ca, cb) = (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap());
        let winners: Vec<_> = ca.iter().chain(&cb).collect();
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        assert_eq!(winners[0].task.id, id, "round {round}");
        let w = winners[0];
        let holder = if ca.is_empty() { &b } else { &a };
        holder
            .succeed(&w.lease, serde_json::json!(round), Timestamp::now())
            .await
            .unwrap();
    }
    let counts = a.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded, 200, "{counts:?}");
}
