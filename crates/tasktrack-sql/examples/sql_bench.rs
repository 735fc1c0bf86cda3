//! Benchmark of the SQL backends' hot paths, including what the generic harness cannot reach:
//! the batched completion (`succeed_many`, an inherent method) and the claim cost on a big table.
//!
//! ```text
//! cargo run --release -p tasktrack-sql --example sql_bench -- URL drain TASKS WORKERS BATCH single|batched
//! cargo run --release -p tasktrack-sql --example sql_bench -- URL claimcost TASKS [vacuum]
//! ```
//!
//! `drain` bulk-creates TASKS tasks, lets WORKERS workers `claim_next(BATCH)` and complete them
//! (one `succeed` per task, or one `succeed_many` per batch) until drained, then measures the raw
//! ceiling of the same server with the same number of connections (the bench crate's
//! `ceiling/{postgres,mysql}.rs`, included here). `claimcost` creates TASKS tasks, marks all but
//! 2,000 of them succeeded (one UPDATE), optionally runs `PgStore::vacuum`, and times 2,000 single
//! claim+succeed rounds with one worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tasktrack-bench/src/ceiling/mysql.rs"]
mod mysql_ceiling;
#[path = "../../tasktrack-bench/src/ceiling/postgres.rs"]
mod pg_ceiling;

use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack_core::*;
use tasktrack_sql::{MySqlStore, PgStore};

#[derive(Clone)]
enum Any {
    Pg(Arc<PgStore>),
    My(Arc<MySqlStore>),
}

impl Any {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Any::Pg(s) => s.clone(),
            Any::My(s) => s.clone(),
        }
    }
    async fn succeed_many(
        &self,
        done: &[(Lease, Value)],
        now: Timestamp,
    ) -> Result<Vec<Result<Task>>> {
        match self {
            Any::Pg(s) => s.succeed_many(done, now).await,
            Any::My(s) => s.succeed_many(done, now).await,
        }
    }
}

async fn create(store: &Arc<dyn Store>, job: &JobName, n: usize) {
    let started = Instant::now();
    for start in (0..n).step_by(10_000) {
        let tasks: Vec<NewTask> = (start..n.min(start + 10_000))
            .map(|i| NewTask::new(TaskId::new(format!("t{i:08}")).unwrap()))
            .collect();
        store
            .create(job, &tasks, CreateMode::SkipExisting, Timestamp::now())
            .await
            .unwrap();
    }
    eprintln!(
        "created {n} tasks in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

async fn drain(
    s: Any,
    job: JobName,
    workers: usize,
    batch: usize,
    batched: bool,
) -> (usize, Duration) {
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (s, job) = (s.clone(), job.clone());
            tokio::spawn(async move {
                let store = s.store();
                let req = ClaimNext::new(format!("bench-{w}"), Duration::from_secs(300))
                    .with_limit(batch);
                let mut n = 0;
                loop {
                    let claimed = store
                        .claim_next(&job, &req, Timestamp::now())
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        return n;
                    }
                    if batched {
                        let done: Vec<(Lease, Value)> = claimed
                            .into_iter()
                            .map(|c| (c.lease, Value::Null))
                            .collect();
                        for r in s.succeed_many(&done, Timestamp::now()).await.unwrap() {
                            r.unwrap();
                            n += 1;
                        }
                    } else {
                        for c in claimed {
                            store
                                .succeed(&c.lease, Value::Null, Timestamp::now())
                                .await
                                .unwrap();
                            n += 1;
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    (total, started.elapsed())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args[0].clone();
    let mode = args[1].as_str();
    let tasks: usize = args[2].parse().unwrap();
    let pg = url.starts_with("postgres");
    let s = if pg {
        Any::Pg(Arc::new(PgStore::connect(&url).await.unwrap()))
    } else {
        Any::My(Arc::new(MySqlStore::connect(&url).await.unwrap()))
    };
    let store = s.store();
    store.init().await.unwrap();
    let job = JobName::new(format!("bench-{}", std::process::id())).unwrap();
    create(&store, &job, tasks).await;
    match mode {
        "drain" => {
            let workers: usize = args[3].parse().unwrap();
            let batch: usize = args[4].parse().unwrap();
            let batched = args[5] == "batched";
            let (n, took) = drain(s.clone(), job.clone(), workers, batch, batched).await;
            assert_eq!(n, tasks, "every task completed once");
            let rate = n as f64 / took.as_secs_f64();
            let ops = tasks.min(20_000);
            let ceiling = if pg {
                pg_ceiling::measure(&url, workers, ops).await.unwrap()
            } else {
                mysql_ceiling::measure(&url, workers, ops).await.unwrap()
            };
            println!(
                "{{\"backend\":\"{}\",\"tasks\":{tasks},\"workers\":{workers},\"batch\":{batch},\"completion\":\"{}\",\"tasks_per_s\":{rate:.0},\"ceiling_ops_per_s\":{ceiling:.0},\"ratio\":{:.2}}}",
                store.backend(),
                args[5],
                rate / ceiling
            );
        }
        "claimcost" => {
            // All but the last 2,000 tasks are moved to `succeeded` with one UPDATE: the table
            // then holds `tasks` rows (and as many dead versions, autovacuum permitting).
            let keep = 2_000.min(tasks);
            let cut = format!("t{:08}", tasks - keep);
            let sql = if pg {
                "UPDATE tasktrack_task SET status = 40, claim_at = NULL, finished_at = updated_at WHERE job = $1 AND id < $2"
            } else {
                "UPDATE tasktrack_task SET status = 40, claim_at = NULL, finished_at = updated_at WHERE job = ? AND id < ?"
            };
            match &s {
                Any::Pg(p) => {
                    sqlx::query(sql)
                        .bind(job.as_str())
                        .bind(&cut)
                        .execute(p.pool())
                        .await
                        .unwrap();
                }
                Any::My(m) => {
                    sqlx::query(sql)
                        .bind(job.as_str())
                        .bind(&cut)
                        .execute(m.pool())
                        .await
                        .unwrap();
                }
            }
            let vacuumed = args.get(3).is_some_and(|a| a == "vacuum");
            if let (true, Any::Pg(p)) = (vacuumed, &s) {
                p.vacuum().await.unwrap();
            }
            let (n, took) = drain(s.clone(), job.clone(), 1, 1, false).await;
            assert_eq!(n, keep);
            println!(
                "{{\"backend\":\"{}\",\"tasks\":{tasks},\"vacuum\":{vacuumed},\"claimed\":{n},\"us_per_claim_and_succeed\":{:.0}}}",
                store.backend(),
                took.as_secs_f64() * 1e6 / n as f64
            );
        }
        other => panic!("unknown mode {other}"),
    }
}
