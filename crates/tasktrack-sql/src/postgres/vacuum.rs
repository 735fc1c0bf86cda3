//! Vacuum housekeeping.
//!
//! PostgreSQL keeps the index entries of replaced row versions until a `VACUUM` removes them. A
//! claim replaces a pending row version whose claim-index entry sits at the front of the index
//! (earliest `claim_at` first), so until a vacuum every claim steps over the dead entries of all
//! the tasks claimed before it: about 550 index pages per claim after 60,000 claims (EXPLAIN
//! (ANALYZE, BUFFERS), `docs/benchmarks/postgres.md`). Autovacuum, where it runs, removes them
//! only after a fifth of the table has changed. So the store vacuums the task table itself,
//! in the background, every `vacuum_every` granted claims (URL parameter, default 10,000;
//! `0` turns it off). `VACUUM` takes no lock that blocks claims or completions.

use super::PgStore;
use crate::common::Dialect;
use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tasktrack_core::Result;

/// When the next background vacuum is due, shared by every clone of one store.
#[derive(Debug)]
pub(super) struct Housekeeping {
    /// Granted claims between two vacuums; 0: never.
    every: u64,
    /// Granted claims so far.
    claimed: AtomicU64,
    /// A vacuum is running (at most one per store).
    running: Arc<AtomicBool>,
}

impl Housekeeping {
    pub(super) fn new(every: u64) -> Housekeeping {
        Housekeeping {
            every,
            claimed: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts `n` granted claims. Returns a guard (the caller runs the vacuum while holding it)
    /// when they cross a multiple of `every` and no vacuum is running.
    fn due(&self, n: u64) -> Option<Running> {
        if self.every == 0 || n == 0 {
            return None;
        }
        let before = self.claimed.fetch_add(n, Ordering::Relaxed);
        let crossed = before / self.every != (before + n) / self.every;
        let idle = crossed && !self.running.swap(true, Ordering::AcqRel);
        idle.then(|| Running(self.running.clone()))
    }
}

/// Marks the vacuum finished when dropped, whatever way it ended.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl PgStore {
    /// Counts granted claims and starts a background vacuum of the task table when one is due.
    pub(super) fn note_claims(&self, granted: usize) {
        let Some(running) = self.housekeeping.due(granted as u64) else {
            return;
        };
        let store = self.clone();
        tokio::spawn(async move {
            let _running = running;
            let tables = format!("{t}task, {t}task_count", t = store.t);
            if let Err(e) = store.vacuum_tables(&tables, false).await {
                tracing::warn!(error = %e, "background vacuum of the task table failed");
            }
        });
    }

    /// `VACUUM (ANALYZE) of the task, counter and job tables: removes dead row versions and the
    /// index entries pointing to them. The store does this for the task table on its own (see
    /// the module docs); call this after bulk changes made outside the store, or after a large
    /// purge. Takes no lock that blocks claims or completions.
    pub async fn vacuum(&self) -> Result<()> {
        let tables = format!("{t}task, {t}task_count, {t}job", t = self.t);
        self.vacuum_tables(&tables, true).await
    }

    /// Vacuums `tables` on one connection, without the statement timeout (a vacuum of a big
    /// table may take longer). `INDEX_CLEANUP ON`: PostgreSQL would otherwise skip the indexes
    /// when few heap pages hold dead rows, which is exactly the claim index's case.
    ///
    /// The timeout is restored whatever the vacuum answers; a connection on which that fails is
    /// closed rather than returned to the pool without its timeout.
    async fn vacuum_tables(&self, tables: &str, analyze: bool) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(&e))?;
        let options = if analyze {
            "ANALYZE, INDEX_CLEANUP ON"
        } else {
            "INDEX_CLEANUP ON"
        };
        let run = |sql: String| sqlx::raw_sql(AssertSqlSafe(sql));
        run("SET statement_timeout = 0".into())
            .execute(&mut *conn)
            .await
            .map_err(|e| self.err(&e))?;
        let vacuumed = run(format!("VACUUM ({options}) {tables}"))
            .execute(&mut *conn)
            .await;
        if let Err(e) = run("RESET statement_timeout".into())
            .execute(&mut *conn)
            .await
        {
            conn.detach();
            return Err(self.err(&e));
        }
        vacuumed.map(drop).map_err(|e| self.err(&e))
    }
}
