//! The tasktrack benchmark: claim+succeed throughput of a store, beside the raw ceiling of the
//! same backend measured in the same run.
//!
//! ```text
//! cargo run --release -p tasktrack-bench -- --store sqlite:///tmp/bench.db --tasks 100000 --workers 4
//! ```
//!
//! 1. bulk-creates `--tasks` no-op tasks in a fresh job;
//! 2. `--workers` concurrent workers claim and succeed until the job is drained, one task at a
//!    time by hand-offs (`succeed_and_claim_next`: the success and the next claim in one call,
//!    as `Tracker::run_all` and `tasktrack run` do), or with `--two-calls` by `claim_next(1)` then
//!    `succeed`, or with `--batch B` > 1 by `claim_next(B)` then one `succeed_many` per batch;
//! 3. times `counts(job)` on the full job, and with `--idle-claims` an idle `claim_next` over a
//!    second job of `--tasks` tasks all scheduled a day ahead (what an idle worker's poll costs);
//! 4. measures the backend's raw ceiling (see `ceiling/`): the cheapest single-row write loop the
//!    same server can do with the same number of connections;
//! 5. prints tasks/s, the ceiling in ops/s, and their ratio (a table, or `--json`).

mod ceiling;
mod report;

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack::{ClaimNext, CreateMode, JobName, NewTask, Store, TaskId, Timestamp};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Throughput of claim+succeed against the backend's raw ceiling"
)]
struct Args {
    /// The store URL (as for `tasktrack --store`).
    #[arg(long)]
    store: String,
    /// How many tasks to create and drain.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Tasks per claim_next call; above 1, each batch completes in one `succeed_many`.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// With `--batch 1`: `claim_next` then `succeed` (two calls per task) instead of hand-offs.
    #[arg(long, conflicts_with = "batch")]
    two_calls: bool,
    /// Operations for the ceiling loop, half just before the drain and half just after
    /// (default: as many as tasks, at most 20,000).
    #[arg(long)]
    ceiling_ops: Option<usize>,
    /// Skip the ceiling measurement.
    #[arg(long)]
    no_ceiling: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also time an idle claim: `claim_next` on a second job of `--tasks` tasks, none due.
    #[arg(long)]
    idle_claims: bool,
    /// Delete the benchmark job afterwards.
    #[arg(long)]
    cleanup: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.tasks == 0 || args.workers == 0 || args.batch == 0 {
        bail!("--tasks, --workers and --batch must be at least 1");
    }
    let store = tasktrack::open(&args.store)
        .await
        .with_context(|| format!("opening {}", tasktrack::redact_url(&args.store)))?;
    let job = JobName::new(format!("bench-{}", Timestamp::now().as_millis()))?;

    let create = bulk_create(&store, &job, args.tasks).await?;
    let mode = Mode::of(&args);
    // The ceiling brackets the drain: measured once just before it and once just after, so a
    // machine whose speed changed during the run shows it (the two disagree) instead of
    // skewing the ratio unseen.
    let half = args
        .ceiling_ops
        .unwrap_or(args.tasks.min(20_000))
        .div_ceil(2);
    let ceiling_before = measure_ceiling(&args, half).await?;
    let drain = drain(&store, &job, args.workers, mode).await?;
    let ceiling_after = measure_ceiling(&args, half).await?;
    let counts_ms = time_counts(&store, &job).await?;
    let idle_claim_ms = match args.idle_claims {
        true => Some(time_idle_claims(&store, &job, &args).await?),
        false => None,
    };
    let ceiling = ceiling_before.into_iter().chain(ceiling_after).collect();
    if args.cleanup {
        store.delete_job(&job, Timestamp::now()).await?;
    }
    let result = report::Report::new(
        &tasktrack::redact_url(&args.store),
        store.backend(),
        &args,
        create,
        drain,
        counts_ms,
        ceiling,
    )
    .with_idle_claim_ms(idle_claim_ms);
    result.print(args.json)
}

/// One ceiling measurement of `ops` operations, or `None` with `--no-ceiling`.
async fn measure_ceiling(args: &Args, ops: usize) -> Result<Option<f64>> {
    if args.no_ceiling {
        return Ok(None);
    }
    Ok(Some(
        ceiling::measure(&args.store, args.workers, ops).await?,
    ))
}

/// Creates `n` tasks in chunks; returns tasks/s.
async fn bulk_create(store: &Arc<dyn Store>, job: &JobName, n: usize) -> Result<f64> {
    bulk_create_at(store, job, n, None).await
}

/// [`bulk_create`] of tasks not claimable before `not_before`.
async fn bulk_create_at(
    store: &Arc<dyn Store>,
    job: &JobName,
    n: usize,
    not_before: Option<Timestamp>,
) -> Result<f64> {
    let started = Instant::now();
    for chunk_start in (0..n).step_by(5_000) {
        let tasks = (chunk_start..n.min(chunk_start + 5_000))
            .map(|i| {
                Ok(NewTask {
                    not_before,
                    ..NewTask::new(TaskId::new(format!("task-{i:08}"))?)
                })
            })
            .collect::<tasktrack::Result<Vec<_>>>()?;
        store
            .create(job, &tasks, CreateMode::SkipExisting, Timestamp::now())
            .await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// What draining the job measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Drain {
    /// Tasks completed.
    pub tasks: usize,
    /// Wall time.
    pub seconds: f64,
    /// Mean latency of one claim_next call, in milliseconds.
    pub claim_ms: f64,
    /// Mean time per task spent completing it (succeed, hand-off or its share of succeed_many), ms.
    pub succeed_ms: f64,
}

/// How a worker completes what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `claim_next(1)` once, then `succeed_and_claim_next` per task: one call per task.
    Handoff,
    /// `claim_next(1)` then `succeed`: two calls per task.
    TwoCalls,
    /// `claim_next(B)` then one `succeed_many` per batch.
    Batched(usize),
}

impl Mode {
    pub(crate) fn of(args: &Args) -> Self {
        match (args.batch, args.two_calls) {
            (1, true) => Mode::TwoCalls,
            (1, false) => Mode::Handoff,
            (b, _) => Mode::Batched(b),
        }
    }

    fn batch(self) -> usize {
        match self {
            Mode::Batched(b) => b,
            Mode::Handoff | Mode::TwoCalls => 1,
        }
    }
}

/// Runs `workers` claim+succeed loops until the job is drained.
async fn drain(store: &Arc<dyn Store>, job: &JobName, workers: usize, mode: Mode) -> Result<Drain> {
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            let job = job.clone();
            tokio::spawn(async move { worker(store, job, format!("bench-{w}"), mode).await })
        })
        .collect();
    let (mut tasks, mut claim_time, mut claims, mut succeed_time) =
        (0, Duration::ZERO, 0u32, Duration::ZERO);
    for h in handles {
        let w = h.await??;
        tasks += w.tasks;
        claims += w.claims;
        claim_time += w.claim_time;
        succeed_time += w.succeed_time;
    }
    Ok(Drain {
        tasks,
        seconds: started.elapsed().as_secs_f64(),
        claim_ms: claim_time.as_secs_f64() * 1e3 / f64::from(claims.max(1)),
        succeed_ms: succeed_time.as_secs_f64() * 1e3 / tasks.max(1) as f64,
    })
}

struct WorkerStats {
    tasks: usize,
    claims: u32,
    claim_time: Duration,
    succeed_time: Duration,
}

async fn worker(
    store: Arc<dyn Store>,
    job: JobName,
    owner: String,
    mode: Mode,
) -> Result<WorkerStats> {
    let req = ClaimNext::new(owner, Duration::from_secs(300)).with_limit(mode.batch());
    let mut stats = WorkerStats {
        tasks: 0,
        claims: 0,
        claim_time: Duration::ZERO,
        succeed_time: Duration::ZERO,
    };
    loop {
        let t = Instant::now();
        let mut claimed = store.claim_next(&job, &req, Timestamp::now()).await?;
        stats.claim_time += t.elapsed();
        stats.claims += 1;
        if claimed.is_empty() {
            return Ok(stats);
        }
        let t = Instant::now();
        match mode {
            Mode::Handoff => {
                // Until a hand-off finds nothing left to claim; then one last claim_next above.
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
                    stats.tasks += 1;
                }
            }
            Mode::TwoCalls => {
                for c in claimed {
                    store
                        .succeed(&c.lease, serde_json::Value::Null, Timestamp::now())
                        .await?;
                    stats.tasks += 1;
                }
            }
            Mode::Batched(_) => {
                let done: Vec<_> = claimed
                    .into_iter()
                    .map(|c| (c.lease, serde_json::Value::Null))
                    .collect();
                for result in store.succeed_many(&done, Timestamp::now()).await? {
                    result?;
                    stats.tasks += 1;
                }
            }
        }
        stats.succeed_time += t.elapsed();
    }
}

/// Median time of an idle `claim_next(1)` over 21 calls, in milliseconds: on a second job of
/// `--tasks` tasks all scheduled a day ahead, so every call finds nothing due. The job is
/// deleted afterwards.
async fn time_idle_claims(store: &Arc<dyn Store>, job: &JobName, args: &Args) -> Result<f64> {
    let waiting = JobName::new(format!("{job}-waiting"))?;
    let tomorrow = Timestamp::now().plus(Duration::from_secs(86_400));
    bulk_create_at(store, &waiting, args.tasks, Some(tomorrow)).await?;
    let claim = ClaimNext::new("idle", Duration::from_secs(60));
    let mut samples = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let claimed = store.claim_next(&waiting, &claim, Timestamp::now()).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        if !claimed.is_empty() {
            bail!("an idle claim on {waiting} claimed {} tasks", claimed.len());
        }
    }
    store.delete_job(&waiting, Timestamp::now()).await?;
    Ok(median(samples))
}

/// The median of some samples (the upper one of an even count).
fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median time of `counts(job)` over 21 calls, in milliseconds.
async fn time_counts(store: &Arc<dyn Store>, job: &JobName) -> Result<f64> {
    let mut samples = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        store.counts(job).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(samples))
}
