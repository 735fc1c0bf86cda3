//! Raw ceiling for postgres: a single-row `UPDATE … SET n = n + 1 WHERE id = $1 RETURNING n` loop
//! by primary key on a scratch table, one row and one connection per worker (`synchronous_commit`
//! as the server is configured). Every statement is its own transaction, as a claim or a
//! succeed of the store is, so the ratio store/ceiling reads as "how close to one commit per
//! operation".

use super::rate_since;
use super::sql::{connect, connect_each};
use anyhow::Result;
use sqlx::postgres::PgConnection;
use std::time::Instant;

/// Ops/s of the single-row `UPDATE … RETURNING` loop, `ops` statements over `workers` connections.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    // The store's own URL parser: tasktrack's parameters (`pool_size`, `schema`, …) removed.
    let url = tasktrack_sql::Config::parse(url, 5432)?.driver_url;
    let workers = workers.max(1);
    let mut setup: PgConnection = connect(&url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS tasktrack_bench_ceiling;
         CREATE TABLE tasktrack_bench_ceiling (id integer PRIMARY KEY, n bigint NOT NULL);",
    )
    .execute(&mut setup)
    .await?;
    sqlx::query(
        "INSERT INTO tasktrack_bench_ceiling (id, n) SELECT g, 0 FROM generate_series(0, $1 - 1) g",
    )
    .bind(workers as i32)
    .execute(&mut setup)
    .await?;
    let conns: Vec<PgConnection> = connect_each(&url, workers).await?;
    let per_worker = ops.div_ceil(workers);
    let started = Instant::now();
    let loops: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    let _n: i64 = sqlx::query_scalar(
                        "UPDATE tasktrack_bench_ceiling SET n = n + 1 WHERE id = $1 RETURNING n",
                    )
                    .bind(w as i32)
                    .fetch_one(&mut conn)
                    .await?;
                }
                anyhow::Ok(per_worker)
            })
        })
        .collect();
    let rate = rate_since(started, loops).await?;
    sqlx::raw_sql("DROP TABLE IF EXISTS tasktrack_bench_ceiling")
        .execute(&mut setup)
        .await?;
    Ok(rate)
}
