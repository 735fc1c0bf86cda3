//! Raw ceiling for mysql / mariadb: a single-row `UPDATE … SET n = n + 1 WHERE id = ?` loop by
//! primary key on a scratch table, one row and one connection per worker, each statement its own
//! transaction (autocommit). MySQL has no `UPDATE … RETURNING`; the update alone is the
//! cheapest durable write, so this is the ceiling a claim or a succeed is compared with.

use super::rate_since;
use super::sql::{connect, connect_each};
use anyhow::Result;
use sqlx::mysql::MySqlConnection;
use std::time::Instant;

/// Ops/s of the single-row update loop, `ops` statements over `workers` connections.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    // The store's own URL parser: `mariadb://` spelled `mysql://`, tasktrack's parameters removed.
    let url = tasktrack_sql::Config::parse(url, 3306)?.driver_url;
    let workers = workers.max(1);
    let mut setup: MySqlConnection = connect(&url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS tasktrack_bench_ceiling;
         CREATE TABLE tasktrack_bench_ceiling (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE = InnoDB;",
    )
    .execute(&mut setup)
    .await?;
    for id in 0..workers {
        sqlx::query("INSERT INTO tasktrack_bench_ceiling (id, n) VALUES (?, 0)")
            .bind(id as i32)
            .execute(&mut setup)
            .await?;
    }
    let conns: Vec<MySqlConnection> = connect_each(&url, workers).await?;
    let per_worker = ops.div_ceil(workers);
    let started = Instant::now();
    let loops: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(w, mut conn)| {
            tokio::spawn(async move {
                for _ in 0..per_worker {
                    sqlx::query("UPDATE tasktrack_bench_ceiling SET n = n + 1 WHERE id = ?")
                        .bind(w as i32)
                        .execute(&mut conn)
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
