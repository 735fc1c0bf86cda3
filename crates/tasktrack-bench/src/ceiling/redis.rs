//! Raw ceiling for redis: `EVALSHA` of a trivial script that writes one hash field
//! (`HSET KEYS[1] ARGV[1] ARGV[2]`), one call at a time per loop, `workers` loops, on the server
//! and database the store URL names.
//!
//! The loops share ONE multiplexed connection, because that is what the store does (one
//! `ConnectionManager` per store, however many workers): the same connection count, the same
//! client-side path (one task writing and reading the socket, pipelining whatever the loops have
//! in flight). The store's claim and succeed are each one `EVALSHA` of a bigger script, so two
//! calls per task bound the store at 0.5× this ceiling even if its scripts cost what this one
//! costs.

use anyhow::{Context, Result};
use std::time::Instant;

const SCRIPT: &str = "return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])";

/// Ops/s of the one-field EVALSHA loop, `ops` calls spread over `workers` loops on one connection.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let (connect, prefix) = parse(url)?;
    let client = redis::Client::open(connect.as_str()).context("bad redis URL")?;
    let script = redis::Script::new(SCRIPT);
    let key = format!("{prefix}:bench-ceiling");
    let workers = workers.max(1);
    let per_worker = ops.div_ceil(workers);
    let shared = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to redis for the ceiling")?;
    script
        .prepare_invoke()
        .load_async(&mut shared.clone())
        .await?;
    let started = Instant::now();
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let mut conn = shared.clone();
            let script = script.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for i in 0..per_worker {
                    let _: i64 = script
                        .key(&key)
                        .arg(format!("w{w}-{}", i % 1000))
                        .arg(i)
                        .invoke_async(&mut conn)
                        .await?;
                }
                Ok::<usize, redis::RedisError>(per_worker)
            })
        })
        .collect();
    let rate = super::rate_since(started, loops).await?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
    Ok(rate)
}

/// The URL without the store's own `prefix` parameter, and that prefix (default `tasktrack`).
fn parse(url: &str) -> Result<(String, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut prefix = "tasktrack".to_string();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", v)) => prefix = v.to_string(),
            _ => kept.push(pair),
        }
    }
    let connect = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((connect, prefix))
}
