//! Exactly once across processes: 8 workers in 2 processes sharing one server drain a job of
//! 2,000 tasks, and each task is succeeded exactly once.
//!
//! Size: `TASKTRACK_MONGODB_RACE_TASKS` tasks (default [`DEFAULT_TASKS`], the figure).
//!
//! The test binary re-runs itself as the worker processes (the `#[ignore]`d `worker_process`
//! test, selected with `--exact --ignored`), so no extra binary is needed.
//!
//! Workers claim in batches of [`BATCH`] and complete each batch with one `succeed_many`, the
//! way the benchmark's `--batch` runs. Batches still race: every worker asks for the same first
//! tasks at about the same time, and each claim is a `replaceOne` conditional on the version it
//! read, which only one of them can win.

mod common;

use std::process::Stdio;
use std::time::Duration;
use tasktrack_core::{
    ClaimNext, CreateMode, JobName, NewTask, Outcome, Status, Store, TaskId, TaskQuery, Timestamp,
};

const DEFAULT_TASKS: usize = 2_000;
const PROCESSES: usize = 2;
const WORKERS_PER_PROCESS: usize = 4;
const BATCH: usize = 10;

const ENV_URL: &str = "TASKTRACK_MONGODB_WORKER_URL";
const ENV_JOB: &str = "TASKTRACK_MONGODB_WORKER_JOB";
const ENV_NAME: &str = "TASKTRACK_MONGODB_WORKER_NAME";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_workers_in_two_processes_succeed_every_task_exactly_once() {
    let tasks_wanted: usize = std::env::var("TASKTRACK_MONGODB_RACE_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TASKS);
    let prefix = common::unique_prefix();
    let Some(_) = common::store().await else {
        return;
    };
    let store = common::connect(&prefix).await.unwrap();
    let base = std::env::var("TASKTRACK_TEST_MONGODB_URL").unwrap();
    let url = common::url_with_prefix(&base, &prefix);
    let job = JobName::new("race").unwrap();
    let tasks: Vec<NewTask> = (0..tasks_wanted)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect();
    let created = store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(created.created, tasks_wanted as u64);

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| {
            tokio::process::Command::new(&exe)
                .args([
                    "worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(ENV_URL, &url)
                .env(ENV_JOB, job.as_str())
                .env(ENV_NAME, format!("p{p}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "worker process failed: {stdout}");
        let line = stdout
            .lines()
            // libtest may print "test worker_process ... " on the same line first.
            .find_map(|l| l.split("SUCCEEDED ").nth(1))
            .unwrap_or_else(|| panic!("{stdout}"));
        let n: usize = line.trim().parse().unwrap();
        assert!(n > 0, "each process should win some tasks");
        total += n;
    }
    assert_eq!(total, tasks_wanted, "successes accepted across all workers");

    let counts = store.counts(&job).await.unwrap();
    assert_eq!(
        counts.by_status.succeeded, tasks_wanted as u64,
        "{counts:?}"
    );
    let mut query = TaskQuery::new(job.clone()).with_limit(1_000);
    let mut seen = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        for t in &page.tasks {
            assert_eq!(t.status, Status::Succeeded, "{}", t.id);
            assert_eq!(
                (t.attempts, t.token),
                (1, 1),
                "{} was claimed more than once",
                t.id
            );
            let wins = t
                .history
                .iter()
                .filter(|a| a.outcome == Outcome::Succeeded)
                .count();
            assert_eq!(wins, 1, "{} succeeded {wins} times", t.id);
        }
        seen += page.tasks.len();
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, tasks_wanted);
}

/// One worker process: four workers claim and succeed until the job is drained; prints how many
/// successes were accepted. Run only by the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a worker process started by eight_workers_in_two_processes_succeed_every_task_exactly_once"]
async fn worker_process() {
    let (Ok(url), Ok(job), Ok(name)) = (
        std::env::var(ENV_URL),
        std::env::var(ENV_JOB),
        std::env::var(ENV_NAME),
    ) else {
        panic!("worker_process runs only as a child of the concurrency test");
    };
    let store = tasktrack_mongodb::open(&url).await.unwrap();
    let job = JobName::new(job).unwrap();
    let workers: Vec<_> = (0..WORKERS_PER_PROCESS)
        .map(|w| {
            let (store, job) = (store.clone(), job.clone());
            let owner = format!("{name}-w{w}");
            tokio::spawn(async move {
                let mut won = 0usize;
                loop {
                    let req =
                        ClaimNext::new(owner.clone(), Duration::from_secs(300)).with_limit(BATCH);
                    let claimed = store
                        .claim_next(&job, &req, Timestamp::now())
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return won;
                    }
                    let done: Vec<_> = claimed
                        .into_iter()
                        .map(|c| (c.lease, serde_json::json!({"by": owner})))
                        .collect();
                    for result in store.succeed_many(&done, Timestamp::now()).await.unwrap() {
                        assert_eq!(result.unwrap().status, Status::Succeeded);
                        won += 1;
                    }
                }
            })
        })
        .collect();
    let mut won = 0;
    for w in workers {
        won += w.await.unwrap();
    }
    println!("SUCCEEDED {won}");
}
