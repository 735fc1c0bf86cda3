//! Raw ceiling for mongodb: `updateOne({_id}, {$inc: {n: 1}})` of one small document per loop
//! (each loop its own document, so loops never wait on each other), `workers` loops sharing one
//! driver client (its connection pool gives each in-flight operation a connection, as the
//! store's workers share theirs), on a scratch collection `{prefix}bench_ceiling` of the
//! database the store URL names.
//!
//! The store writes each transition as one `replaceOne` by `_id` (the same point write as this
//! loop, with a bigger document) and reads in batches: a claim batch of B tasks is one sorted
//! `find` + B replaces, a `succeed_many` of B one `find` by `_id` + B replaces. At 2 + 2/B
//! requests per task, a store near 0.5× this ceiling spends nothing beyond the server's cost of
//! the bigger documents and the sorted query.

use anyhow::{Context, Result};
use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use std::time::Instant;

/// Ops/s of the single-document update loop, `ops` updates spread over `workers` loops.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let (driver_url, prefix) = split_prefix(url);
    let options = ClientOptions::parse(&driver_url)
        .await
        .context("bad mongodb URL")?;
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| "tasktrack".to_string());
    let client = mongodb::Client::with_options(options)?;
    let coll = client
        .database(&database)
        .collection::<Document>(&format!("{prefix}bench_ceiling"));
    let workers = workers.max(1);
    let per_worker = ops.div_ceil(workers);
    for w in 0..workers {
        coll.replace_one(doc! {"_id": w as i64}, doc! {"n": 0_i64})
            .upsert(true)
            .await
            .context("preparing the mongodb ceiling documents")?;
    }
    let started = Instant::now();
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let coll = coll.clone();
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    coll.update_one(doc! {"_id": w as i64}, doc! {"$inc": {"n": 1_i64}})
                        .await?;
                }
                Ok::<usize, mongodb::error::Error>(per_worker)
            })
        })
        .collect();
    let rate = super::rate_since(started, loops).await?;
    coll.drop().await?;
    Ok(rate)
}

/// The URL without the store's own `prefix=` option (the driver rejects unknown options), and
/// that prefix.
fn split_prefix(url: &str) -> (String, String) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), String::new());
    };
    let mut prefix = String::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("prefix=") {
            Some(v) => {
                prefix = v.to_string();
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    let driver_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (driver_url, prefix)
}
