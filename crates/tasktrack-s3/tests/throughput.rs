//! Throughput on moto, for docs/benchmarks/s3.md (ignored by default: it measures, it does not
//! check). Run: `S3_TASKS=2000 S3_WORKERS=8 cargo nextest run -p tasktrack-s3 --run-ignored
//! only --no-capture throughput`. With `MOTO_PID` set, also prints the emulator's CPU time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tasktrack_core::{ClaimNext, CreateMode, JobName, NewTask, Store, TaskId, Timestamp};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) used so far by process `pid`, from /proc.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check: run by hand for docs/benchmarks/s3.md"]
async fn throughput() {
    let Some(store) = common::fresh("throughput").await else {
        return;
    };
    let (n, workers) = (env_usize("S3_TASKS", 2000), env_usize("S3_WORKERS", 8));
    let job = JobName::new("bench").unwrap();
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask::new(TaskId::new(format!("task-{i:08}")).unwrap()))
        .collect();
    let t = Instant::now();
    for chunk in tasks.chunks(5000) {
        store
            .create(&job, chunk, CreateMode::SkipExisting, Timestamp::now())
            .await
            .unwrap();
    }
    let create_s = t.elapsed().as_secs_f64();
    let moto_pid = std::env::var("MOTO_PID").ok();
    let cpu0 = moto_pid.as_deref().and_then(cpu_seconds);
    let own0 = cpu_seconds("self");
    let before = store.requests();
    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (store, job) = (store.clone(), job.clone());
            tokio::spawn(async move {
                let req = ClaimNext::new(format!("w{w}"), Duration::from_secs(300));
                let mut done = 0usize;
                while let Some(c) = store
                    .claim_next(&job, &req, Timestamp::now())
                    .await
                    .unwrap()
                    .pop()
                {
                    store
                        .succeed(&c.lease, serde_json::Value::Null, Timestamp::now())
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for h in handles {
        done += h.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let own = cpu_seconds("self").zip(own0).map(|(a, b)| a - b);
    let used = store.requests().since(&before);
    assert_eq!(done, n);
    let t = Instant::now();
    let counts = Arc::clone(&store).counts(&job).await.unwrap();
    let counts_ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(counts.by_status.succeeded as usize, n);
    println!(
        "S3 on moto: {n} tasks, {workers} workers: create {:.0} tasks/s; drain {secs:.1}s = {:.1} tasks/s; \
         {:.2} requests/task (GET {:.2} of which index {:.2}, PUT {:.2}); counts {counts_ms:.0} ms",
        n as f64 / create_s,
        n as f64 / secs,
        used.total() as f64 / n as f64,
        used.get as f64 / n as f64,
        used.get_index as f64 / n as f64,
        used.put as f64 / n as f64,
    );
    if let Some(own) = own {
        println!(
            "this process's CPU during the drain: {own:.1}s ({:.0}% of one core)",
            own / secs * 100.0
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine load average (1, 5, 15 min): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let (Some(pid), Some(c0)) = (moto_pid.as_deref(), cpu0)
        && let Some(c1) = cpu_seconds(pid)
    {
        println!(
            "moto CPU during the drain: {:.1}s of {secs:.1}s wall = {:.0}% of one core",
            c1 - c0,
            (c1 - c0) / secs * 100.0
        );
    }
}
