//! Claim cost on a big job: what the benchmark harness does not measure. The harness times the
//! whole drain; this example creates `TASKS` tasks, completes all but the last 2,000 through the
//! store (4 workers, `claim_next(250)` + `succeed_many`: every dead row version a real drain
//! leaves behind, and whatever vacuuming the store does on its own), optionally runs a manual
//! `VACUUM` (PostgreSQL), then times 2,000 single `claim_next(1)` + `succeed` rounds with one
//! worker.
//!
//! ```text
//! cargo run --release -p tasktrack-sql --example claim_cost -- URL TASKS [vacuum]
//! ```
//!
//! Prints one JSON line with the mean claim and succeed latency in microseconds. Compare a run
//! with 10,000 tasks against one with 1,000,000, each in a fresh schema or database; on
//! PostgreSQL, `?vacuum_every=0` shows the cost without the store's own vacuuming.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tasktrack_core::*;
use tasktrack_sql::PgStore;

/// How many tasks stay claimable (and are timed).
const LIVE: usize = 2_000;
/// Workers and batch size of the drain before the timing.
const DRAIN_WORKERS: usize = 4;
const DRAIN_BATCH: usize = 250;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(tasks)) = (args.first(), args.get(1)) else {
        bail!("usage: claim_cost URL TASKS [vacuum]");
    };
    let tasks: usize = tasks.parse().context("TASKS must be a number")?;
    let vacuum = args.get(2).is_some_and(|a| a == "vacuum");
    let store: Arc<dyn Store> = tasktrack_sql::open(url).await?;
    store.init().await?;
    let job = JobName::new(format!("claimcost-{}", std::process::id()))?;
    create(&store, &job, tasks).await?;
    let started = Instant::now();
    drain(&store, &job, tasks.saturating_sub(LIVE)).await?;
    let drained_s = started.elapsed().as_secs_f64();
    if vacuum && url.starts_with("postgres") {
        PgStore::connect(url).await?.vacuum().await?;
    }
    let (claim, succeed) = time_rounds(&store, &job).await?;
    println!(
        "{{\"backend\":\"{}\",\"tasks\":{tasks},\"drained_s\":{drained_s:.1},\"manual_vacuum\":{vacuum},\"claims\":{LIVE},\"claim_us\":{claim:.0},\"succeed_us\":{succeed:.0}}}",
        store.backend()
    );
    Ok(())
}

async fn create(store: &Arc<dyn Store>, job: &JobName, n: usize) -> Result<()> {
    for start in (0..n).step_by(10_000) {
        let chunk = (start..n.min(start + 10_000))
            .map(|i| Ok(NewTask::new(TaskId::new(format!("t{i:08}"))?)))
            .collect::<Result<Vec<_>>>()?;
        store
            .create(job, &chunk, CreateMode::SkipExisting, Timestamp::now())
            .await?;
    }
    Ok(())
}

/// Claims and completes `n` tasks in batches with a few workers, as a busy queue would.
async fn drain(store: &Arc<dyn Store>, job: &JobName, n: usize) -> Result<()> {
    let left = Arc::new(AtomicUsize::new(n));
    let workers: Vec<_> = (0..DRAIN_WORKERS)
        .map(|w| {
            let (store, job, left) = (store.clone(), job.clone(), left.clone());
            tokio::spawn(async move { drain_worker(store, job, left, w).await })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(())
}

async fn drain_worker(
    store: Arc<dyn Store>,
    job: JobName,
    left: Arc<AtomicUsize>,
    w: usize,
) -> Result<()> {
    loop {
        let take = left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                l.checked_sub(l.min(DRAIN_BATCH)).filter(|_| l > 0)
            })
            .map_or(0, |l| l.min(DRAIN_BATCH));
        if take == 0 {
            return Ok(());
        }
        let req = ClaimNext::new(format!("drain-{w}"), Duration::from_secs(300)).with_limit(take);
        let claimed = store.claim_next(&job, &req, Timestamp::now()).await?;
        let done: Vec<(Lease, Value)> = claimed
            .into_iter()
            .map(|c| (c.lease, Value::Null))
            .collect();
        for result in store.succeed_many(&done, Timestamp::now()).await? {
            result?;
        }
    }
}

/// Mean claim and succeed latency (µs) over `LIVE` single claim+succeed rounds.
async fn time_rounds(store: &Arc<dyn Store>, job: &JobName) -> Result<(f64, f64)> {
    let req = ClaimNext::new("claimcost", Duration::from_secs(300));
    let (mut claiming, mut succeeding, mut rounds) = (Duration::ZERO, Duration::ZERO, 0u32);
    loop {
        let t = Instant::now();
        let claimed = store.claim_next(job, &req, Timestamp::now()).await?;
        claiming += t.elapsed();
        let Some(c) = claimed.into_iter().next() else {
            break;
        };
        let t = Instant::now();
        store
            .succeed(&c.lease, Value::Null, Timestamp::now())
            .await?;
        succeeding += t.elapsed();
        rounds += 1;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(rounds.max(1));
    Ok((per(claiming), per(succeeding)))
}
