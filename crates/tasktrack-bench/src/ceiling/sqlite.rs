//! Raw ceiling for sqlite: a single-row `BEGIN IMMEDIATE; UPDATE … WHERE id = ?; COMMIT` loop
//! on a scratch table in the same file, with the same pragmas the store uses (WAL, the URL's
//! `synchronous` and `busy_timeout`).
//!
//! SQLite has one write lock per file, so writers are serialized whatever their number. The
//! `workers` loops share one connection behind a mutex, as the store's workers share its one
//! writer connection: separate connections would contend through SQLite's sleeping busy
//! handler and measure a lower ceiling than the file allows (see docs/benchmarks/sqlite.md).

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tasktrack_sqlite::url::{Location, SqliteUrl};

/// Ops/s of the single-row update transaction loop, `ops` transactions over `workers` loops.
pub async fn measure(url: &str, workers: usize, ops: usize) -> Result<f64> {
    let (path, synchronous, busy) = parse(url)?;
    let workers = workers.max(1);
    let conn =
        tokio::task::spawn_blocking(move || setup(&path, &synchronous, busy, workers)).await??;
    let conn = Arc::new(Mutex::new(conn));
    let started = Instant::now();
    let per_worker = ops.div_ceil(workers);
    let loops: Vec<_> = (0..workers)
        .map(|w| {
            let conn = conn.clone();
            tokio::task::spawn_blocking(move || update_loop(&conn, w as i64, per_worker))
        })
        .collect();
    let rate = super::rate_since(started, loops).await?;
    let conn = conn
        .lock()
        .map_err(|_| anyhow::anyhow!("ceiling connection poisoned"))?;
    conn.execute_batch("DROP TABLE IF EXISTS tasktrack_bench_ceiling")?;
    Ok(rate)
}

/// The store's own URL parser: (path, synchronous pragma, busy timeout).
fn parse(url: &str) -> Result<(String, String, Duration)> {
    let url = SqliteUrl::parse(url)?;
    match url.location {
        Location::File(path) => Ok((
            path.display().to_string(),
            url.synchronous.pragma().to_string(),
            url.busy_timeout,
        )),
        Location::Memory => {
            bail!("the sqlite ceiling needs a file (the in-memory store has no file to share)")
        }
    }
}

fn setup(path: &str, synchronous: &str, busy: Duration, rows: usize) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {path}"))?;
    conn.busy_timeout(busy)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{path}: WAL journal mode refused (got {mode})");
    }
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(
        "DROP TABLE IF EXISTS tasktrack_bench_ceiling;
         CREATE TABLE tasktrack_bench_ceiling (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);",
    )?;
    for id in 0..rows {
        conn.execute(
            "INSERT INTO tasktrack_bench_ceiling (id, n) VALUES (?1, 0)",
            [id as i64],
        )?;
    }
    Ok(conn)
}

/// One worker: `ops` single-row update transactions on its own row.
fn update_loop(conn: &Mutex<Connection>, id: i64, ops: usize) -> Result<usize> {
    for _ in 0..ops {
        let mut conn = conn
            .lock()
            .map_err(|_| anyhow::anyhow!("ceiling connection poisoned"))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("UPDATE tasktrack_bench_ceiling SET n = n + 1 WHERE id = ?1")?
            .execute([id])?;
        tx.commit()?;
    }
    Ok(ops)
}
