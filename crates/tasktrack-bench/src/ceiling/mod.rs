//! Raw ceilings: the cheapest write loop each backend's server can do, measured in the same run
//! with the same number of connections, so that a figure is read as a ratio to what the
//! hardware and server allow rather than as an absolute.
//!
//! Each backend module exposes `measure(url, workers, ops) -> ops/s`: it prepares the scratch
//! state, starts one loop per worker, and hands the loops to [`rate_since`], which waits for
//! them and turns their count into a rate.

mod dynamodb;
mod file;
mod mongodb;
mod mysql;
mod postgres;
mod redis;
mod s3;
mod sql;
mod sqlite;

use anyhow::{Context, Result, bail};
use std::time::Instant;
use tokio::task::JoinHandle;

/// The raw ceiling of the backend `url` names, in operations per second.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "sqlite" => sqlite::measure(url, workers, ops).await,
        "file" => file::measure(url, workers, ops).await,
        "postgres" | "postgresql" => postgres::measure(url, workers, ops).await,
        "mysql" | "mariadb" => mysql::measure(url, workers, ops).await,
        "redis" | "rediss" => redis::measure(url, workers, ops).await,
        "s3" => s3::measure(url, workers, ops).await,
        "dynamodb" => dynamodb::measure(url, workers, ops).await,
        "mongodb" => mongodb::measure(url, workers, ops).await,
        other => bail!("no raw ceiling is defined for {other}:// (use --no-ceiling)"),
    }
}

/// Waits for the workers' loops, each answering how many operations it did, and returns all
/// their operations per second since `started`.
async fn rate_since<E>(started: Instant, loops: Vec<JoinHandle<Result<usize, E>>>) -> Result<f64>
where
    anyhow::Error: From<E>,
{
    let mut done = 0;
    for l in loops {
        done += l.await.context("a ceiling loop did not finish")??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}
