//! Connections, pragmas, migrations, and the one place where SQLite errors become [`Error`]s.
//!
//! One writer connection behind a mutex does every write, each in one `BEGIN IMMEDIATE`
//! transaction (so SQLite's file lock, not an optimistic retry, serializes writers, across
//! processes too). A few reader connections serve `get`, `list`, `counts` and `jobs` from WAL
//! snapshots without waiting for the writer. `rusqlite::Connection` is blocking and not `Sync`,
//! so every call runs on tokio's blocking pool.

use crate::url::{Location, SqliteUrl};
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tasktrack_core::{Error, Result};

/// The schema migrations, in order: `(user_version after it, SQL)`. A migration is never edited
/// once released; a change is a new file.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/001_init.sql"))];

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How many reader connections a file database keeps.
const READERS: usize = 4;

/// Maps a SQLite error onto the portable [`Error`], naming the database file.
///
/// Busy after the busy timeout is [`Error::Contention`] (transient: another process held the
/// write lock too long); an unreadable file is [`Error::Corrupt`]; a file that cannot be opened
/// is [`Error::Unavailable`].
pub(crate) fn sql_error(location: &Location, e: rusqlite::Error) -> Error {
    let rusqlite::Error::SqliteFailure(failure, message) = &e else {
        return Error::Backend(format!("sqlite {location}: {e}"));
    };
    let detail = message.clone().unwrap_or_else(|| failure.to_string());
    match failure.code {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Contention(format!(
            "sqlite {location}: the database stayed locked by another connection past the busy timeout ({detail}); \
             raise ?busy_timeout= or retry"
        )),
        ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => Error::Corrupt {
            location: location.to_string(),
            message: format!("not a readable SQLite database: {detail}"),
        },
        ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
            Error::Unavailable(format!(
                "sqlite {location}: cannot open or write the database file: {detail}"
            ))
        }
        _ => Error::Backend(format!("sqlite {location}: {detail}")),
    }
}

/// The open database: a writer and (for files) a few readers.
#[derive(Debug)]
pub(crate) struct Db {
    pub(crate) url: SqliteUrl,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// A poisoned lock only means a panic happened while a call held it; its transaction was rolled
/// back when the panic dropped it, so the connection is still consistent.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (creating if missing) and migrates the database. Blocking.
    pub(crate) fn open(url: SqliteUrl) -> Result<Db> {
        let loc = url.location.clone();
        let err = |e| sql_error(&loc, e);
        let (mut writer, readers) = match &url.location {
            Location::Memory => (Connection::open_in_memory().map_err(err)?, Vec::new()),
            Location::File(path) => {
                if path.is_dir() {
                    return Err(Error::invalid(format!(
                        "sqlite {}: is a directory; the URL must name a database file, e.g. sqlite://{}/tasktrack.db",
                        path.display(),
                        path.display()
                    )));
                }
                let writer = Connection::open(path).map_err(err)?;
                (writer, Vec::new())
            }
        };
        configure(&writer, &url, true)?;
        migrate(&mut writer, &loc)?;
        let readers = match &url.location {
            Location::Memory => readers,
            Location::File(path) => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                (0..READERS)
                    .map(|_| {
                        let c = Connection::open_with_flags(path, flags).map_err(err)?;
                        configure(&c, &url, false)?;
                        Ok(Mutex::new(c))
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Db {
            url,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Where the database lives, for error messages.
    pub(crate) fn location(&self) -> &Location {
        &self.url.location
    }

    /// Maps a SQLite error for this database.
    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        sql_error(&self.url.location, e)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, on the blocking pool.
    /// Commits if `f` returns `Ok` (even when the value inside is a refusal the rule decided to
    /// write, such as a lease that expired on its last attempt), rolls back on `Err`.
    pub(crate) async fn write<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Db, &Transaction<'_>) -> Result<R> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || {
            let mut conn = lock(&db.writer);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| db.err(e))?;
            let out = f(&db, &tx)?;
            tx.commit().map_err(|e| db.err(e))?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` on a reader connection (the writer for `:memory:`), on the blocking pool. Every
    /// statement sees one consistent snapshot when `f` runs a single query; `f` that reads twice
    /// opens its own transaction.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Db, &Connection) -> Result<R> + Send + 'static,
    {
        let db = Arc::clone(self);
        blocking(move || {
            if db.readers.is_empty() {
                return f(&db, &lock(&db.writer));
            }
            // Any idle reader will do; if all are busy, wait for the next one in turn.
            let idle = db.readers.iter().find_map(|r| r.try_lock().ok());
            let conn = match idle {
                Some(c) => c,
                None => lock(
                    &db.readers[db.next_reader.fetch_add(1, Ordering::Relaxed) % db.readers.len()],
                ),
            };
            f(&db, &conn)
        })
        .await
    }
}

/// Runs blocking SQLite work off the async executor.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Backend(format!("sqlite call did not complete: {e}")))?
}

/// Per-connection settings. WAL lets readers work beside the writer; `synchronous` trades the
/// last commits on an OS crash for speed (see the crate docs); the busy timeout makes a writer
/// wait for another process's transaction instead of failing at once.
fn configure(conn: &Connection, url: &SqliteUrl, writer: bool) -> Result<()> {
    let err = |e| sql_error(&url.location, e);
    conn.busy_timeout(url.busy_timeout).map_err(err)?;
    if writer && url.location != Location::Memory {
        // The first statement that reads the file header: a corrupt or foreign file fails here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Unavailable(format!(
                "sqlite {}: could not switch to WAL journal mode (got {mode}); is the file on a network filesystem?",
                url.location
            )));
        }
    }
    conn.pragma_update(None, "synchronous", url.synchronous.pragma())
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], in one immediate transaction so that two processes
/// opening a fresh file at once do not both migrate. A newer schema than this code knows is
/// refused rather than misread.
fn migrate(conn: &mut Connection, loc: &Location) -> Result<()> {
    let err = |e| sql_error(loc, e);
    let current = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    let check = |v: i64| {
        if v > SCHEMA_VERSION {
            Err(Error::Unsupported {
                backend: "sqlite",
                what: format!(
                    "{loc} has schema version {v}, newer than this tasktrack knows ({SCHEMA_VERSION}); upgrade tasktrack"
                ),
            })
        } else {
            Ok(v)
        }
    };
    if check(current(conn).map_err(err)?)? == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version = check(current(&tx).map_err(err)?)?;
    for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", to).map_err(err)?;
        tracing::info!(database = %loc, version = to, "sqlite schema migrated");
    }
    tx.commit().map_err(err)
}
