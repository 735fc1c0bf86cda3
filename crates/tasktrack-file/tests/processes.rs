//! Several OS processes on one directory: the test binary re-runs itself (`child_process`,
//! selected by an environment variable) as the worker processes.
//!
//! - `four_processes_of_four_workers_complete_each_task_exactly_once`: 4 processes × 4 workers
//!   drain 2,000 tasks; every task succeeded once, by the per-task completion counter that each
//!   worker appends to (one line per accepted `succeed`). Half the workers of each process
//!   complete by hand-offs (`succeed_and_claim_next`), half by `succeed` then `claim_next`.
//! - `workers_killed_mid_write_lose_nothing_and_their_tasks_are_reclaimed`: worker processes are
//!   SIGKILLed in a loop while they write; afterwards every file parses, no task is lost, the
//!   index agrees with the files, and the tasks the dead held are reclaimed after their lease.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use common::open;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use tasktrack_core::*;
use tasktrack_file::FileStore;

const CHILD_DIR: &str = "TASKTRACK_FILE_TEST_CHILD_DIR";
const CHILD_LOG: &str = "TASKTRACK_FILE_TEST_CHILD_LOG";
const CHILD_WORK_MS: &str = "TASKTRACK_FILE_TEST_CHILD_WORK_MS";
const JOB: &str = "shared";
const LEASE: Duration = Duration::from_secs(600);
/// Tasks the rescuer claims at once after the kills (also the most files one of its transactions
/// replaces).
const RESCUE_BATCH: usize = 100;

/// Not a test of its own: the body of a worker process. Does nothing unless started by one of
/// the tests below (with `CHILD_DIR` set).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let log = PathBuf::from(std::env::var(CHILD_LOG).unwrap());
    let work =
        Duration::from_millis(std::env::var(CHILD_WORK_MS).map_or(0, |v| v.parse().unwrap()));
    let store = std::sync::Arc::new(open(Path::new(&dir)).await);
    let job = JobName::new(JOB).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (store, job, log) = (store.clone(), job.clone(), log.clone());
            tokio::spawn(async move {
                let me = format!("p{}-w{w}", std::process::id());
                let req = ClaimNext::new(me.clone(), LEASE);
                // Half the workers complete by hand-offs (the success and the next claim in one
                // call), half by `succeed` then `claim_next`.
                let hand_off = w % 2 == 1;
                let mut held = store
                    .claim_next(&job, &req, Timestamp::now())
                    .await
                    .unwrap();
                while let Some(c) = held.pop() {
                    tokio::time::sleep(work).await;
                    let output = serde_json::json!({ "by": me });
                    if hand_off {
                        let got = store
                            .succeed_and_claim_next(&c.lease, output, &req, Timestamp::now())
                            .await
                            .unwrap();
                        record_completion(&log, c.task.id.as_str());
                        held = got.next;
                    } else {
                        store
                            .succeed(&c.lease, output, Timestamp::now())
                            .await
                            .unwrap();
                        record_completion(&log, c.task.id.as_str());
                        held = store
                            .claim_next(&job, &req, Timestamp::now())
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

/// The completion counter: one line per accepted success, appended with O_APPEND.
fn record_completion(log: &Path, id: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    f.write_all(format!("{id}\n").as_bytes()).unwrap();
}

fn spawn_child(dir: &Path, log: &Path, work_ms: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_LOG, log)
        .env(CHILD_WORK_MS, work_ms.to_string())
        .spawn()
        .unwrap()
}

async fn create(store: &FileStore, n: usize) -> JobName {
    let job = JobName::new(JOB).unwrap();
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(TaskId::new(format!("task-{i:05}")).unwrap()))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created as usize, n);
    job
}

/// How many times each id appears in the completion logs under `dir`.
fn completions(logs: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(logs).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .lines()
        {
            *counts.entry(line.to_string()).or_default() += 1;
        }
    }
    counts
}

/// Every task file parses (read directly, not through the store).
fn every_file_parses(dir: &Path) -> usize {
    let tasks = dir.join("jobs").join(JOB).join("tasks");
    let mut n = 0;
    for entry in std::fs::read_dir(tasks).unwrap() {
        let path = entry.unwrap().path();
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        assert_eq!(value["schema"], 1, "{}", path.display());
        serde_json::from_value::<Task>(value).unwrap();
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_of_four_workers_complete_each_task_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let (data, logs) = (dir.path().join("store"), dir.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let store = open(&data).await;
    let n = 2_000;
    let job = create(&store, n).await;

    let children: Vec<Child> = (0..4)
        .map(|p| spawn_child(&data, &logs.join(format!("p{p}")), 0))
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }

    let done = completions(&logs);
    assert_eq!(done.len(), n, "every task completed");
    assert!(
        done.values().all(|c| *c == 1),
        "a task was completed twice: {:?}",
        done.iter().find(|(_, c)| **c != 1)
    );
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded as usize, n);
    let mut by_process = HashMap::<String, usize>::new();
    let mut query = TaskQuery::new(job.clone()).with_limit(1000);
    loop {
        let page = store.list(&query).await.unwrap();
        for t in &page.tasks {
            assert_eq!(
                (t.status, t.attempts, t.token),
                (Status::Succeeded, 1, 1),
                "{}",
                t.id
            );
            let by = t.output.as_ref().unwrap()["by"].as_str().unwrap();
            *by_process
                .entry(by.split('-').next().unwrap().to_string())
                .or_default() += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(by_process.values().sum::<usize>(), n);
    assert_eq!(
        by_process.len(),
        4,
        "all four processes took part: {by_process:?}"
    );
    assert_eq!(every_file_parses(&data), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_mid_write_lose_nothing_and_their_tasks_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let (data, logs) = (dir.path().join("store"), dir.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let store = open(&data).await;
    let n = 1_500;
    let job = create(&store, n).await;

    // Three live workers at all times; every few milliseconds the oldest is SIGKILLed (mid-task
    // or mid-write, wherever it is) and replaced.
    let mut spawned = 0;
    let mut live: Vec<Child> = Vec::new();
    let mut kills = 0;
    let mut seed = 0x2545_f491_u64;
    while kills < 40 {
        while live.len() < 3 {
            live.push(spawn_child(&data, &logs.join(format!("c{spawned}")), 2));
            spawned += 1;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(40 + seed % 120)).await;
        let mut victim = live.remove(0);
        victim.kill().unwrap(); // SIGKILL
        victim.wait().unwrap();
        kills += 1;
    }
    for mut child in live {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    // Afterwards: the store opens, every record parses, no task is lost, the index agrees.
    assert_eq!(every_file_parses(&data), n, "no task file lost");
    let reopened = open(&data).await;
    let counts = reopened.counts(&job).await.unwrap();
    assert_eq!(counts.known as usize, n);
    let mut by_status = HashMap::<Status, u64>::new();
    let mut query = TaskQuery::new(job.clone()).with_limit(1000);
    loop {
        let page = reopened.list(&query).await.unwrap();
        for t in &page.tasks {
            *by_status.entry(t.status).or_default() += 1;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    for status in Status::ALL {
        assert_eq!(
            by_status.get(&status).copied().unwrap_or(0),
            counts.by_status.get(status),
            "{status}"
        );
    }
    let held = counts.by_status.in_progress;
    let done_before = completions(&logs);
    assert!(done_before.values().all(|c| *c == 1));
    eprintln!(
        "after {kills} kills: {} succeeded, {held} held by dead workers, {} pending",
        counts.by_status.succeeded, counts.by_status.pending
    );
    assert!(
        held > 0,
        "some kills should have caught a worker holding a task"
    );

    // Before the lease runs out, the dead workers' tasks stay theirs; after it, they are reclaimed.
    let req = ClaimNext::new("rescuer", LEASE).with_limit(RESCUE_BATCH);
    let later = Timestamp::now().plus(LEASE).plus(Duration::from_secs(1));
    let rescue_log = logs.join("rescuer");
    let mut reclaimed = 0;
    loop {
        let claimed = reopened.claim_next(&job, &req, later).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        for c in claimed {
            if c.task
                .history
                .iter()
                .any(|a| a.outcome == Outcome::LeaseExpired)
            {
                reclaimed += 1;
            }
            reopened
                .succeed(&c.lease, serde_json::json!({ "by": "rescuer" }), later)
                .await
                .unwrap();
            record_completion(&rescue_log, c.task.id.as_str());
        }
    }
    assert_eq!(
        reclaimed, held,
        "every task held by a killed worker was reclaimed after its lease"
    );
    // Exactly once: no id was reported done twice, and every task's history holds exactly one
    // success. (A worker killed between its accepted `succeed` and its log line leaves the id
    // out of the log: at most one id per worker, four per killed process.)
    let done = completions(&logs);
    assert!(done.values().all(|c| *c == 1), "a task was completed twice");
    assert!(
        done.len() + 4 * kills >= n,
        "{} logged completions for {n} tasks",
        done.len()
    );
    assert_eq!(
        reopened.counts(&job).await.unwrap().by_status.succeeded as usize,
        n
    );
    let mut query = TaskQuery::new(job.clone()).with_limit(1000);
    loop {
        let page = reopened.list(&query).await.unwrap();
        for t in &page.tasks {
            let wins = t
                .history
                .iter()
                .filter(|a| a.outcome == Outcome::Succeeded)
                .count();
            assert_eq!((t.status, wins), (Status::Succeeded, 1), "{}", t.id);
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let scratch = data.join("jobs").join(JOB).join("scratch");
    // scratch/ holds only recycled inodes, never a half-written file of a dead writer: the
    // repair cleared those. A process keeps as many recycled inodes as its largest transaction
    // replaced files: 6 for a worker process (one operation per worker in a group commit; the
    // two hand-off workers' operations replace two files each), and RESCUE_BATCH for this one
    // (the rescuer's claims).
    let files = std::fs::read_dir(scratch).unwrap().count();
    assert!(
        files <= 6 * spawned + RESCUE_BATCH,
        "{files} scratch files for {spawned} worker processes"
    );
}
