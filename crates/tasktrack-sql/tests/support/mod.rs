//! Test support: every test gets its own PostgreSQL schema or MariaDB database, created here and
//! dropped when the test's store is dropped, so tests run in parallel and never see each other.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tasktrack_core::testkit::connect_or_skip;
use tasktrack_core::*;

/// The base PostgreSQL URL (set by scripts/services/postgres.sh).
pub fn pg_url() -> String {
    std::env::var("TASKTRACK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The base MariaDB URL (set by scripts/services/mariadb.sh).
pub fn mysql_url() -> String {
    std::env::var("TASKTRACK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub const PG_HOW: &str = "bash scripts/services/postgres.sh (pg_ctlcluster <version> main start)";
pub const MYSQL_HOW: &str = "start-stop-daemon --start --background --exec /usr/sbin/mariadbd";

/// A name no other test (in this or another process) uses.
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "tt_{tag}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn with_param(base: &str, param: &str) -> String {
    if base.contains('?') {
        format!("{base}&{param}")
    } else {
        format!("{base}?{param}")
    }
}

/// `base` with its database path replaced by `db`.
fn with_database(base: &str, db: &str) -> String {
    let (head, query) = base
        .split_once('?')
        .map_or((base, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let host_part = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// A scratch namespace: its URL, and how to drop it.
pub struct Scratch {
    pub url: String,
    drop_sql: String,
    admin_url: String,
}

impl Scratch {
    /// A fresh PostgreSQL schema.
    pub async fn postgres(tag: &str) -> Result<Scratch, Error> {
        let schema = unique(tag);
        let base = pg_url();
        admin_exec(&base, &format!("CREATE SCHEMA \"{schema}\"")).await?;
        Ok(Scratch {
            url: with_param(&base, &format!("schema={schema}")),
            drop_sql: format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
            admin_url: base,
        })
    }

    /// A fresh MariaDB database.
    pub async fn mysql(tag: &str) -> Result<Scratch, Error> {
        let db = unique(tag);
        let base = mysql_url();
        admin_exec(&base, &format!("CREATE DATABASE `{db}`")).await?;
        Ok(Scratch {
            url: with_database(&base, &db),
            drop_sql: format!("DROP DATABASE IF EXISTS `{db}`"),
            admin_url: base,
        })
    }

    /// Drops the namespace now (blocking: called from `Drop`).
    fn drop_now(&self) {
        let (url, sql) = (self.admin_url.clone(), self.drop_sql.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(admin_exec(&url, &sql));
            }
        })
        .join();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// Runs one administrative statement on its own connection. A failed connection is
/// [`Error::Unavailable`] (the server is not running: skip outside CI); a failed statement is a bug.
pub async fn admin_exec(url: &str, sql: &str) -> Result<(), Error> {
    if url.starts_with("postgres") {
        exec_once::<sqlx::PgConnection>(url, sql).await
    } else {
        exec_once::<sqlx::MySqlConnection>(url, sql).await
    }
}

/// [`admin_exec`] on a connection of type `C`.
async fn exec_once<C>(url: &str, sql: &str) -> Result<(), Error>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut c = C::connect(url)
        .await
        .map_err(|e| Error::Unavailable(format!("{url}: {e}")))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .map_err(|e| Error::Backend(format!("{url}: {sql}: {e}")))?;
    let _ = c.close().await;
    Ok(())
}

/// Opens and initialises a store in a fresh namespace.
pub async fn scratch_store(dialect: &str, tag: &str) -> Result<ScopedStore, Error> {
    let scratch = if dialect == "postgres" {
        Scratch::postgres(tag).await?
    } else {
        Scratch::mysql(tag).await?
    };
    let inner = tasktrack_sql::open(&scratch.url).await?;
    inner.init().await?;
    Ok(ScopedStore {
        inner,
        scratch: Arc::new(scratch),
    })
}

/// The conformance factory for PostgreSQL.
pub async fn pg_store() -> Option<Arc<dyn Store>> {
    conformance_store("postgres", "postgres", "pg", PG_HOW).await
}

/// The conformance factory for MariaDB.
pub async fn mysql_store() -> Option<Arc<dyn Store>> {
    conformance_store("mariadb", "mysql", "my", MYSQL_HOW).await
}

/// A scratch store of `dialect` for the conformance suite, or `None` (SKIPPED, naming `backend`
/// and how to start it; a failure under `CI=true`).
async fn conformance_store(
    backend: &str,
    dialect: &str,
    tag: &str,
    how_to_start: &str,
) -> Option<Arc<dyn Store>> {
    connect_or_skip(backend, how_to_start, async {
        scratch_store(dialect, tag).await.map(|s| s.guarded())
    })
    .await
}

/// A store in a scratch namespace, which is dropped when the last handle to it goes. It
/// dereferences to the store (`s.create(…)`); [`ScopedStore::guarded`] is the same store for
/// whoever needs an `Arc<dyn Store>` that keeps the namespace (the conformance suite).
#[derive(Clone)]
pub struct ScopedStore {
    pub inner: Arc<dyn Store>,
    pub scratch: Arc<Scratch>,
}

impl ScopedStore {
    /// The store, holding the namespace as long as it lives.
    pub fn guarded(&self) -> Arc<dyn Store> {
        testkit::Guarded::wrap(self.inner.clone(), self.scratch.clone())
    }
}

impl std::ops::Deref for ScopedStore {
    type Target = dyn Store;

    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.inner
    }
}

impl std::fmt::Debug for ScopedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScopedStore({:?} at {})", self.inner, self.scratch.url)
    }
}
