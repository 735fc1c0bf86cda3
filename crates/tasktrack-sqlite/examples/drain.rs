//! A profiling loop for the SQLite store alone (the full harness is `tasktrack-bench`): creates
//! `N` tasks, drains them with `W` workers, prints tasks/s. `B = 1`: hand-offs
//! (`succeed_and_claim_next`, one call per task); `B = 0`: `claim_next(1)` + `succeed`; `B > 1`:
//! `claim_next(B)` + `succeed_many`. Builds without the other backends, so it is quick to iterate
//! on.
//!
//! `cargo run --release -p tasktrack-sqlite --example drain -- /tmp/drain.db 100000 4 1`

use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack_core::*;

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("/tmp/drain.db", String::as_str);
    let n: usize = args.get(2).map_or(Ok(100_000), |a| a.parse())?;
    let workers: usize = args.get(3).map_or(Ok(4), |a| a.parse())?;
    let batch: usize = args.get(4).map_or(Ok(1), |a| a.parse())?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let store: Arc<dyn Store> =
        Arc::new(tasktrack_sqlite::open(&format!("sqlite://{path}")).await?);
    store.init().await?;
    let job = JobName::new("drain")?;
    let tasks = (0..n)
        .map(|i| Ok(NewTask::new(TaskId::new(format!("task-{i:08}"))?)))
        .collect::<Result<Vec<_>>>()?;
    let t = Instant::now();
    store
        .create(&job, &tasks, CreateMode::SkipExisting, Timestamp::now())
        .await?;
    eprintln!("created {n} in {:.2}s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (store, job) = (store.clone(), job.clone());
            tokio::spawn(async move {
                let req = ClaimNext::new(format!("w{w}"), Duration::from_secs(300))
                    .with_limit(batch.max(1));
                let mut done = 0usize;
                loop {
                    let mut claimed = store.claim_next(&job, &req, Timestamp::now()).await?;
                    if claimed.is_empty() {
                        return Ok::<_, Error>(done);
                    }
                    if batch == 1 {
                        while let Some(c) = claimed.pop() {
                            let got = store
                                .succeed_and_claim_next(
                                    &c.lease,
                                    serde_json::Value::Null,
                                    &req,
                                    Timestamp::now(),
                                )
                                .await?;
                            claimed = got.next;
                            done += 1;
                        }
                        continue;
                    }
                    let leases: Vec<_> = claimed
                        .into_iter()
                        .map(|c| (c.lease, serde_json::Value::Null))
                        .collect();
                    if batch == 0 {
                        for (lease, out) in leases {
                            store.succeed(&lease, out, Timestamp::now()).await?;
                            done += 1;
                        }
                    } else {
                        for r in store.succeed_many(&leases, Timestamp::now()).await? {
                            r?;
                            done += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let mut done = 0;
    for h in handles {
        done += h.await??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{done} tasks in {secs:.2}s: {:.0} tasks/s",
        done as f64 / secs
    );
    Ok(())
}
