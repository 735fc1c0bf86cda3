//! Several stores, and several processes, on one file: every task claimed once, no lost update,
//! and the counter table always agrees with the tasks.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;
use tasktrack_core::*;

const TASKS: usize = 2_000;
const CHILD_ENV: &str = "TASKTRACK_SQLITE_CHILD_DB";

fn job() -> JobName {
    JobName::new("race").unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

async fn fill(store: &dyn Store) {
    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new(TaskId::new(format!("t{i:05}")).unwrap()))
        .collect();
    store
        .create(&job(), &tasks, CreateMode::SkipExisting, now())
        .await
        .unwrap();
}

/// Claims and succeeds until the job is drained; returns the ids it completed.
async fn drain(store: Arc<dyn Store>, worker: String, batch: usize) -> Vec<String> {
    let mut done = Vec::new();
    loop {
        let req = ClaimNext::new(worker.clone(), Duration::from_secs(600)).with_limit(batch);
        let claimed = store.claim_next(&job(), &req, now()).await.unwrap();
        if claimed.is_empty() {
            return done;
        }
        for c in claimed {
            store
                .succeed(&c.lease, serde_json::json!({ "by": worker }), now())
                .await
                .unwrap();
            done.push(c.task.id.to_string());
        }
    }
}

/// Every task succeeded once, by one worker, on its first attempt; counters match the rows.
async fn check_exactly_once(store: &dyn Store, path: &std::path::Path, claimed: &[String]) {
    let mut ids = claimed.to_vec();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), claimed.len(), "a task was claimed twice");
    assert_eq!(ids.len(), TASKS, "a task was never claimed");
    let counts = store.counts(&job()).await.unwrap();
    assert_eq!(counts.by_status.succeeded, TASKS as u64, "{counts:?}");
    let conn = rusqlite::Connection::open(path).unwrap();
    let bad: i64 = conn
        .query_row(
            "SELECT count(*) FROM tasktrack_task WHERE job = 'race' AND (attempts != 1 OR token != 1 OR status != 'succeeded')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad, 0, "tasks completed more than once or not at all");
    let mismatched: i64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT job, coalesce(stage, '') AS stage, status, count(*) AS n FROM tasktrack_task GROUP BY 1, 2, 3) t
             FULL JOIN (SELECT * FROM tasktrack_count WHERE n != 0) c USING (job, stage, status)
             WHERE t.n IS NOT c.n",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0, "tasktrack_count disagrees with the tasks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_claim_every_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let url = format!("sqlite://{}", path.display());
    let a: Arc<dyn Store> = Arc::new(tasktrack_sqlite::open(&url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(tasktrack_sqlite::open(&url).await.unwrap());
    fill(a.as_ref()).await;
    let mut workers = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        workers.push(tokio::spawn(drain(store, format!("w{i}"), 1 + i * 3)));
    }
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.await.unwrap());
    }
    check_exactly_once(a.as_ref(), &path, &claimed).await;
}

/// Run by [`two_processes_on_one_file_claim_every_task_once`] in a child process; a no-op otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(
        tasktrack_sqlite::open(&format!("sqlite://{path}"))
            .await
            .unwrap(),
    );
    let done = drain(store, format!("child-{}", std::process::id()), 2).await;
    std::fs::write(format!("{path}.child"), done.join("\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_file_claim_every_task_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("procs.db");
    let store: Arc<dyn Store> = Arc::new(
        tasktrack_sqlite::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap(),
    );
    fill(store.as_ref()).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--nocapture"])
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let mine = drain(store.clone(), "parent".into(), 3).await;
    assert!(child.wait().await.unwrap().success(), "child worker failed");
    let theirs = std::fs::read_to_string(format!("{}.child", path.display())).unwrap();
    let mut claimed: Vec<String> = theirs.lines().map(str::to_string).collect();
    eprintln!("parent completed {}, child {}", mine.len(), claimed.len());
    claimed.extend(mine);
    check_exactly_once(store.as_ref(), &path, &claimed).await;
}

/// Operations that share a commit (group commit) stay isolated: a refused or stale one rolls back
/// only itself, every other one lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_sharing_a_commit_succeed_or_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("batch.db").display());
    let store: Arc<dyn Store> = Arc::new(tasktrack_sqlite::open(&url).await.unwrap());
    fill(store.as_ref()).await;
    let req = ClaimNext::new("w", Duration::from_secs(600)).with_limit(200);
    let claimed = store.claim_next(&job(), &req, now()).await.unwrap();
    assert_eq!(claimed.len(), 200);
    // Half the leases are presented with a wrong token (stale), all at once.
    let calls = claimed.into_iter().enumerate().map(|(i, c)| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut lease = c.lease.clone();
            if i % 2 == 1 {
                lease.token += 7;
            }
            (i, store.succeed(&lease, serde_json::json!(i), now()).await)
        })
    });
    let results = futures_join(calls.collect()).await;
    for (i, result) in results {
        if i % 2 == 1 {
            assert!(
                matches!(result, Err(Error::StaleLease { .. })),
                "{i}: {result:?}"
            );
        } else {
            assert_eq!(result.unwrap().status, Status::Succeeded, "{i}");
        }
    }
    let counts = store.counts(&job()).await.unwrap();
    assert_eq!(counts.by_status.succeeded, 100);
    assert_eq!(counts.by_status.in_progress, 100);
    assert_eq!(counts.by_status.pending, (TASKS - 200) as u64);
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
