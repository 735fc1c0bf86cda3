//! The S3 tracker this backend replaces, re-enacted on the same emulator: one JSON object per
//! task; each worker LISTs the tasks, and for each one GETs it, checks its status in memory,
//! PUTs it back as started *unconditionally*, runs it, and PUTs it back as done (3 requests per
//! task plus a LIST per 1,000). It is fast and wrong: workers that read the same pending task
//! all "win" and all run it. This measures its rate, its requests per task and its double
//! executions, so that the benchmark doc can put ours beside it, measured in the same minutes on
//! the same moto.
//!
//! ```text
//! cargo run --release -p tasktrack-s3 --example old_s3_tracker -- \
//!     http://127.0.0.1:PORT 1000 8
//! ```

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Executions and requests, over all workers.
#[derive(Default)]
struct Tally {
    runs: AtomicU64,
    requests: AtomicU64,
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .ok_or("usage: old_s3_tracker ENDPOINT [TASKS] [WORKERS]")?;
    let tasks: usize = args.get(2).map_or(Ok(1000), |a| a.parse())?;
    let workers: usize = args.get(3).map_or(Ok(8), |a| a.parse())?;
    let bucket = "tasktrack-old-tracker";
    // moto creates a bucket on a plain PUT of its name; object_store cannot create buckets.
    reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await?;
    let s3: Arc<AmazonS3> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(endpoint)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()?,
    );
    let prefix = format!("run-{}", std::process::id());
    for i in 0..tasks {
        let key = Path::from(format!("{prefix}/t{i:05}.json"));
        s3.put(&key, PutPayload::from_static(br#"{"status":"pending"}"#))
            .await?;
    }

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (s3, prefix, tally) = (s3.clone(), prefix.clone(), tally.clone());
            tokio::spawn(async move { worker(&s3, &prefix, w, &tally).await })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let runs = tally.runs.load(Ordering::Relaxed);
    println!(
        "old S3 tracker: {tasks} tasks, {workers} workers: {secs:.1}s, {:.1} tasks/s, {runs} executions ({} double), {:.2} requests per task",
        tasks as f64 / secs,
        runs.saturating_sub(tasks as u64),
        tally.requests.load(Ordering::Relaxed) as f64 / tasks as f64
    );
    Ok(())
}

/// Passes over the listing until a whole pass finds nothing pending.
async fn worker(s3: &AmazonS3, prefix: &str, w: usize, tally: &Tally) -> Res<()> {
    loop {
        let listed: Vec<_> = s3.list(Some(&Path::from(prefix))).try_collect().await?;
        tally
            .requests
            .fetch_add(listed.len().div_ceil(1000).max(1) as u64, Ordering::Relaxed);
        let mut found = false;
        for meta in listed {
            // Read it and check its status in memory.
            tally.requests.fetch_add(1, Ordering::Relaxed);
            let body = s3.get(&meta.location).await?.bytes().await?;
            if !body.windows(9).any(|b| b == b"\"pending\"") {
                continue;
            }
            found = true;
            // Write it back as started, unconditionally; run it; write it back as done.
            let started = format!(r#"{{"status":"in_progress","owner":"w{w}"}}"#);
            s3.put(&meta.location, PutPayload::from(started.into_bytes()))
                .await?;
            tally.runs.fetch_add(1, Ordering::Relaxed);
            s3.put(
                &meta.location,
                PutPayload::from_static(br#"{"status":"succeeded"}"#),
            )
            .await?;
            tally.requests.fetch_add(2, Ordering::Relaxed);
        }
        if !found {
            return Ok(());
        }
    }
}
