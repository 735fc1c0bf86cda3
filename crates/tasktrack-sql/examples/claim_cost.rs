//! Claim cost on a big job: what the benchmark harness cannot set up quickly. The harness drains
//! every task it creates; this example creates `TASKS` tasks, marks all but the last 2,000
//! `succeeded` with one `UPDATE` (the state a long drain leaves behind, without waiting for it),
//! optionally vacuums, then times 2,000 `claim_next(1)` calls (each followed by a `succeed`) with
//! one worker.
//!
//! ```text
//! cargo run --release -p tasktrack-sql --example claim_cost -- URL TASKS [vacuum]
//! ```
//!
//! Prints one JSON line: the mean claim and succeed latency in microseconds. Compare a run with
//! 10,000 tasks against one with 1,000,000, each in a fresh database (the bulk statement names
//! the default table, `tasktrack_task` in the search path: no `?schema=` or `?table_prefix=`).

use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack_core::*;
use tasktrack_sql::{MySqlStore, PgStore};

/// How many tasks stay claimable (and are timed).
const LIVE: usize = 2_000;

/// The bulk "finish all but the last `LIVE`" statement, per dialect.
const FINISH_PG: &str = "UPDATE tasktrack_task SET status = 40, claim_at = NULL, finished_at = updated_at WHERE job = $1 AND id < $2";
const FINISH_MY: &str = "UPDATE tasktrack_task SET status = 40, claim_at = NULL, finished_at = updated_at WHERE job = ? AND id < ?";

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
    finish_all_but_live(url, &job, tasks, vacuum).await?;
    let (claim, succeed) = time_rounds(&store, &job).await?;
    println!(
        "{{\"backend\":\"{}\",\"tasks\":{tasks},\"vacuum\":{vacuum},\"claims\":{LIVE},\"claim_us\":{claim:.0},\"succeed_us\":{succeed:.0}}}",
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

/// Moves all but the last `LIVE` tasks to `succeeded` in one statement (counters are kept by the
/// triggers), then vacuums if asked (PostgreSQL only; MariaDB purges old versions on its own).
async fn finish_all_but_live(url: &str, job: &JobName, tasks: usize, vacuum: bool) -> Result<()> {
    let cut = format!("t{:08}", tasks.saturating_sub(LIVE));
    if url.starts_with("postgres") {
        let pg = PgStore::connect(url).await?;
        sqlx::query(FINISH_PG)
            .bind(job.as_str())
            .bind(&cut)
            .execute(pg.pool())
            .await?;
        if vacuum {
            pg.vacuum().await?;
        }
    } else {
        let my = MySqlStore::connect(url).await?;
        sqlx::query(FINISH_MY)
            .bind(job.as_str())
            .bind(&cut)
            .execute(my.pool())
            .await?;
    }
    Ok(())
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
            .succeed(&c.lease, serde_json::Value::Null, Timestamp::now())
            .await?;
        succeeding += t.elapsed();
        rounds += 1;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(rounds.max(1));
    Ok((per(claiming), per(succeeding)))
}
