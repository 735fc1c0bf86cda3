//! Concurrency on moto beyond the conformance suite: 8 workers in 2 processes drain 2,000 tasks
//! (each task succeeds exactly once), and two workers with separate clients race for one fresh
//! task 200 times (exactly one wins each round).
//!
//! The worker processes are this test binary again, running the ignored `worker_process` test
//! with `TT_DYNAMO_WORKER_URL` / `TT_DYNAMO_WORKER_JOB` set.

mod common;

use serde_json::json;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack_core::testkit::tid;
use tasktrack_core::*;

/// The brief's size; `TT_DYNAMO_DRAIN_TASKS` overrides it (e.g. for a quick local run).
fn tasks() -> usize {
    std::env::var("TT_DYNAMO_DRAIN_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

const PROCESSES: usize = 2;
const WORKERS_PER_PROCESS: usize = 4;
const LEASE: Duration = Duration::from_secs(600);

/// A worker process: 4 workers claim and succeed until the job is drained, printing
/// `CLAIMED <id>` for each task it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by many_workers_in_two_processes_run_each_task_once"]
async fn worker_process() {
    let (Ok(url), Ok(job)) = (
        std::env::var("TT_DYNAMO_WORKER_URL"),
        std::env::var("TT_DYNAMO_WORKER_JOB"),
    ) else {
        return;
    };
    let store = Arc::new(tasktrack_dynamodb::open(&url).await.unwrap());
    let job = JobName::new(job).unwrap();
    let mut workers = Vec::new();
    for w in 0..WORKERS_PER_PROCESS {
        let (store, job) = (store.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            let owner = format!("p{}-w{w}", std::process::id());
            let mut ran = Vec::new();
            loop {
                let batch = store
                    .claim_next(&job, &ClaimNext::new(&owner, LEASE), Timestamp::now())
                    .await
                    .unwrap();
                let Some(claimed) = batch.into_iter().next() else {
                    return ran;
                };
                store
                    .succeed(&claimed.lease, json!({ "by": owner }), Timestamp::now())
                    .await
                    .unwrap();
                ran.push(claimed.task.id.to_string());
            }
        }));
    }
    for w in workers {
        for id in w.await.unwrap() {
            println!("CLAIMED {id}");
        }
    }
    let [get, write, transact, query, refused] = store.documents().requests().snapshot();
    println!(
        "REQUESTS get={get} write={write} transact={transact} query={query} refused={refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_in_two_processes_run_each_task_once() {
    let Some((store, url)) = common::store_and_url().await else {
        return;
    };
    let job = JobName::new("drain").unwrap();
    let n = tasks();
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(tid(&format!("t{i:05}"))))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created, n as u64);

    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("TT_DYNAMO_WORKER_URL", &url)
                .env("TT_DYNAMO_WORKER_JOB", job.as_str())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut runs: std::collections::BTreeMap<String, usize> = Default::default();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "a worker process failed: {}",
            out.status
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // libtest may print `test worker_process ... ` on the same line as the first output.
            if let Some((_, id)) = line.split_once("CLAIMED ") {
                *runs.entry(id.to_owned()).or_default() += 1;
            } else if line.contains("REQUESTS ") {
                eprintln!("{line}");
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{n} tasks, {} workers in {PROCESSES} processes: {elapsed:?} ({:.1} tasks/s)",
        PROCESSES * WORKERS_PER_PROCESS,
        n as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(runs.len(), n, "every task ran");
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "tasks run more than once: {twice:?}");
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded, n as u64, "{counts:?}");
    assert_eq!(counts.known, n as u64);
    let page = store
        .list(
            &TaskQuery::new(job.clone())
                .with_statuses([Status::Succeeded])
                .with_limit(10_000),
        )
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), n);
    assert!(
        page.tasks
            .iter()
            .all(|t| t.attempts == 1 && t.history.len() == 1),
        "every task started once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_race_for_one_fresh_task_and_exactly_one_wins() {
    let Some((store, url)) = common::store_and_url().await else {
        return;
    };
    // Two stores, two clients: nothing is shared in-process, the race is decided by DynamoDB.
    let racers = [
        Arc::new(tasktrack_dynamodb::open(&url).await.unwrap()),
        Arc::new(tasktrack_dynamodb::open(&url).await.unwrap()),
    ];
    let job = JobName::new("race").unwrap();
    for round in 0..200 {
        let now = Timestamp::now();
        let id = tid(&format!("r{round:03}"));
        store
            .create(
                &job,
                &[NewTask::new(id.clone())],
                CreateMode::SkipExisting,
                now,
            )
            .await
            .unwrap();
        let handles: Vec<_> = racers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (s, job) = (s.clone(), job.clone());
                tokio::spawn(async move {
                    s.claim_next(&job, &ClaimNext::new(format!("w{i}"), LEASE), now)
                        .await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for h in handles {
            winners.extend(h.await.unwrap().unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let winner = &winners[0];
        assert_eq!(winner.task.id, id, "round {round}");
        store
            .succeed(&winner.lease, json!(round), now)
            .await
            .unwrap();
        assert_eq!(
            store
                .get(&TaskKey::new(job.clone(), id))
                .await
                .unwrap()
                .attempts,
            1,
            "round {round}"
        );
    }
    assert_eq!(store.counts(&job).await.unwrap().by_status.succeeded, 200);
}
