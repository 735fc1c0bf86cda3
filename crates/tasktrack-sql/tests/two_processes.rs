//! 8 workers in 2 processes claim and complete 10,000 tasks on each database: every task succeeds
//! exactly once, and no error (deadlock or otherwise) reaches a worker.
//!
//! The second process is this test binary itself, re-run with `TT_CHILD_*` variables so that only
//! `child_process_workers` does work in it (without them that test returns at once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tasktrack_core::*;

const TASKS: usize = 10_000;
const WORKERS_PER_PROCESS: usize = 4;

/// Runs `n` workers until nothing is claimable; returns the ids each successful `succeed` closed.
async fn workers(store: Arc<dyn Store>, job: JobName, n: usize, tag: &str) -> Vec<String> {
    let handles: Vec<_> = (0..n)
        .map(|w| {
            let (store, job) = (store.clone(), job.clone());
            let owner = format!("{tag}-{w}");
            tokio::spawn(async move {
                let req = ClaimNext::new(owner, Duration::from_secs(600));
                let mut done = Vec::new();
                loop {
                    let claimed = store
                        .claim_next(&job, &req, Timestamp::now())
                        .await
                        .expect("claim_next failed");
                    if claimed.is_empty() {
                        return done;
                    }
                    for c in claimed {
                        store
                            .succeed(&c.lease, serde_json::Value::Null, Timestamp::now())
                            .await
                            .expect("succeed failed");
                        done.push(c.task.id.to_string());
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

async fn two_processes(dialect: &str) {
    let store = match scratch_store(dialect, "conc").await {
        Ok(s) => s,
        Err(e) if tasktrack_core::testkit::in_ci() => {
            panic!("{dialect} unreachable under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED {dialect} two-process test: server unreachable ({e})");
            return;
        }
    };
    let job = JobName::new(unique("conc")).unwrap();
    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created, TASKS as u64);

    let out = std::env::temp_dir().join(format!("{}.ids", unique("child")));
    let child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_workers", "--nocapture"])
        .env("TT_CHILD_URL", &store.scratch.url)
        .env("TT_CHILD_JOB", job.as_str())
        .env("TT_CHILD_OUT", &out)
        .spawn()
        .unwrap();
    let inner: Arc<dyn Store> = store.inner.clone();
    let mine = workers(inner, job.clone(), WORKERS_PER_PROCESS, "parent").await;
    let status = child.wait_with_output().await.unwrap().status;
    assert!(status.success(), "child process failed: {status}");
    let theirs: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_file(&out);

    assert!(
        !mine.is_empty() && !theirs.is_empty(),
        "both processes must have worked ({} / {})",
        mine.len(),
        theirs.len()
    );
    let total = mine.len() + theirs.len();
    let distinct: HashSet<&String> = mine.iter().chain(&theirs).collect();
    assert_eq!(total, TASKS, "successful completions");
    assert_eq!(distinct.len(), TASKS, "every task completed exactly once");
    let counts = store.counts(&job).await.unwrap();
    assert_eq!(counts.by_status.succeeded, TASKS as u64);
    assert_eq!(counts.by_status.total(), TASKS as u64);
    eprintln!(
        "{dialect}: parent completed {}, child {}",
        mine.len(),
        theirs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_eight_workers_in_two_processes_complete_each_task_once() {
    two_processes("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_eight_workers_in_two_processes_complete_each_task_once() {
    two_processes("mysql").await;
}

/// The second process's half of the work (does nothing unless started by the tests above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_workers() {
    let (Ok(url), Ok(job), Ok(out)) = (
        std::env::var("TT_CHILD_URL"),
        std::env::var("TT_CHILD_JOB"),
        std::env::var("TT_CHILD_OUT"),
    ) else {
        return;
    };
    let store = tasktrack_sql::open(&url).await.unwrap();
    let done = workers(
        store,
        JobName::new(job).unwrap(),
        WORKERS_PER_PROCESS,
        "child",
    )
    .await;
    std::fs::write(out, done.join("\n")).unwrap();
}
