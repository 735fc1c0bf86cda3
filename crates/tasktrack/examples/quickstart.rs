//! A whole job on the embedded SQLite default: create 50 tasks, run them with 4 workers where
//! some fail (and are retried with backoff) and one always fails (and ends exhausted), and print
//! progress as it goes.
//!
//! ```text
//! cargo run -p tasktrack --example quickstart [-- sqlite://./quickstart.db]
//! ```

use std::sync::Arc;
use std::time::Duration;
use tasktrack::{
    Backoff, CreateMode, JobName, JobSpec, NewTask, Status, Store, TaskId, TaskQuery, Timestamp,
    Tracker,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://./quickstart.db".to_string());
    let store = tasktrack::open(&url).await?;
    let job = JobName::new(format!("quickstart-{}", Timestamp::now().as_millis()))?;
    let backoff = Backoff {
        initial_ms: 50,
        max_ms: 200,
        jitter: true,
    };
    let spec = JobSpec {
        max_attempts: Some(3),
        backoff: Some(backoff),
        ..Default::default()
    };
    store.put_job(&job, &spec, Timestamp::now()).await?;
    let tasks = (0..50)
        .map(|i| Ok(NewTask::new(TaskId::new(format!("file-{i:02}.csv"))?)))
        .collect::<tasktrack::Result<Vec<_>>>()?;
    store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await?;
    println!("created 50 tasks in job {job} on {url}");

    let workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(work(store.clone(), job.clone(), w)))
        .collect();
    let progress = tokio::spawn(report_progress(store.clone(), job.clone()));
    for w in workers {
        w.await??;
    }
    progress.abort();

    let counts = store.counts(&job).await?;
    println!(
        "\ndone: {} succeeded, {} exhausted",
        counts.by_status.succeeded, counts.by_status.exhausted
    );
    let failed = store
        .list(&TaskQuery::new(job.clone()).with_statuses([Status::Exhausted]))
        .await?;
    for t in failed.tasks {
        let error = t.error.map(|e| e.message).unwrap_or_default();
        println!(
            "  {} exhausted after {} attempts: {error}",
            t.id, t.attempts
        );
    }
    Ok(())
}

/// A worker: runs tasks until none is claimable now or later.
async fn work(store: Arc<dyn Store>, job: JobName, w: usize) -> anyhow::Result<()> {
    let tracker = Tracker::new(store.clone(), job.clone())
        .with_owner(format!("worker-{w}"))
        .with_backoff(Backoff {
            initial_ms: 50,
            max_ms: 200,
            jitter: true,
        });
    loop {
        let ran = tracker
            .run_next(|ctx| async move {
                let n: u32 = ctx.task.id.as_str()[5..7].parse()?;
                tokio::time::sleep(Duration::from_millis(20)).await;
                // Every 7th file fails on its first attempt; file 13 is broken for good.
                if n == 13 || (n % 7 == 0 && ctx.lease.attempt == 1) {
                    anyhow::bail!(
                        "could not parse {} (attempt {})",
                        ctx.task.id,
                        ctx.lease.attempt
                    );
                }
                Ok(serde_json::json!({ "rows": n * 100 }))
            })
            .await?;
        if ran.is_none() {
            let counts = store.counts(&job).await?;
            if counts.by_status.pending + counts.by_status.failed + counts.by_status.in_progress
                == 0
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // retries are backing off
        }
    }
}

async fn report_progress(store: Arc<dyn Store>, job: JobName) -> anyhow::Result<()> {
    loop {
        let c = store.counts(&job).await?;
        println!(
            "progress: {:>2}/50 finished  (pending {}, running {}, failed {}, succeeded {}, exhausted {})",
            c.finished(),
            c.by_status.pending,
            c.by_status.in_progress,
            c.by_status.failed,
            c.by_status.succeeded,
            c.by_status.exhausted
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
