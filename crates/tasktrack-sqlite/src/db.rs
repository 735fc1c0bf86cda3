//! Connections, pragmas, migrations, and the one place where SQLite errors become [`Error`]s.
//!
//! One writer connection, owned by a dedicated thread, does every write, each in a
//! `BEGIN IMMEDIATE` transaction (so SQLite's file lock, not an optimistic retry, serializes
//! writers, across processes too). A few reader connections serve `get`, `list`, `counts` and
//! `jobs` from WAL snapshots without waiting for the writer, on tokio's blocking pool
//! (`rusqlite::Connection` is blocking and not `Sync`).

use crate::url::{Location, SqliteUrl};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tasktrack_core::{Error, Result};
use tokio::sync::oneshot;

/// The schema migrations, in order: `(user_version after it, SQL)`. A migration is never edited
/// once released; a change is a new file.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/002_counts_from_the_store.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/003_attention_without_in.sql"),
    ),
];

/// The schema version this code writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

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

/// Most operations one writer transaction carries (group commit, see [`Db::write`]).
const MAX_BATCH: usize = 64;

/// What an operation tells the writer after running: how to report the outcome once the batch's
/// commit is known, and whether its savepoint could not be closed (the batch must roll back).
type Done = Box<dyn FnOnce(Option<&Error>) + Send>;
/// An operation queued for the writer; gets the open transaction (or why there is none) and
/// whether it is alone in it (then the transaction itself is its savepoint).
type Op = Box<
    dyn FnOnce(&Db, std::result::Result<&Transaction<'_>, &Error>, bool) -> (Done, bool) + Send,
>;

/// The open database: the queue to the writer thread and (for files) a few readers.
pub(crate) struct Db {
    pub(crate) url: SqliteUrl,
    /// Operations for the writer thread, which owns the writer connection; it stops when the
    /// `Db` (the only sender) is dropped.
    writer: Sender<Op>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.url)
            .field("readers", &self.readers.len())
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means a panic happened while it was held; operations run in savepoints
/// and panics are caught and rolled back, so the state behind it is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Db {
    /// Opens (creating if missing) and migrates the database. Blocking.
    pub(crate) fn open(url: SqliteUrl) -> Result<Arc<Db>> {
        let loc = url.location.clone();
        let err = |e| sql_error(&loc, e);
        let mut writer = match &url.location {
            Location::Memory => Connection::open_in_memory().map_err(err)?,
            Location::File(path) => {
                if path.is_dir() {
                    return Err(Error::invalid(format!(
                        "sqlite {}: is a directory; the URL must name a database file, e.g. sqlite://{}/tasktrack.db",
                        path.display(),
                        path.display()
                    )));
                }
                Connection::open(path).map_err(err)?
            }
        };
        configure(&writer, &url, true)?;
        migrate(&mut writer, &loc)?;
        let readers = match &url.location {
            Location::Memory => Vec::new(),
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
        let (ops, queue) = channel();
        let db = Arc::new(Db {
            url,
            writer: ops,
            readers,
            next_reader: AtomicUsize::new(0),
        });
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("tasktrack-sqlite-writer".into())
            .spawn(move || write_loop(&weak, writer, &queue))
            .map_err(|e| {
                Error::Backend(format!("sqlite {loc}: cannot start the writer thread: {e}"))
            })?;
        Ok(db)
    }

    /// Where the database lives, for error messages.
    pub(crate) fn location(&self) -> &Location {
        &self.url.location
    }

    /// Maps a SQLite error for this database.
    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        sql_error(&self.url.location, e)
    }

    /// Runs `f` atomically on the writer: inside a `BEGIN IMMEDIATE` transaction, in its own
    /// savepoint. `Ok` keeps what `f` wrote (even when the value inside is a refusal the rule
    /// decided to write, such as a lease that expired on its last attempt); `Err` rolls back
    /// exactly what `f` wrote. The answer comes after the commit.
    ///
    /// Group commit: the writer thread takes every operation queued while it was busy (up to
    /// [`MAX_BATCH`]) into one transaction, each in its own savepoint. Alone, an operation runs
    /// at once in a transaction of its own; when callers pile up behind a commit, the next one
    /// carries them all. SQLite's cost is mostly the commit (the pages written to the WAL), so
    /// sharing it lets throughput grow with the number of concurrent callers instead of being
    /// capped at one commit per operation. One thread owning the connection (rather than each
    /// caller taking it in turn on the blocking pool) costs one wake-up per operation, not one
    /// per caller fighting for a lock.
    pub(crate) async fn write<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Db, &Transaction<'_>) -> Result<R> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<R>>();
        let op: Op = Box::new(move |db, tx, alone| {
            let tx = match tx {
                Ok(tx) => tx,
                Err(e) => {
                    let e = e.clone();
                    return (Box::new(move |_| drop(answer.send(Err(e)))), false);
                }
            };
            let (out, broken) = if alone {
                run_caught(db, tx, f)
            } else {
                in_savepoint(db, tx, f)
            };
            let done: Done = Box::new(move |commit: Option<&Error>| {
                let out = match (out, commit) {
                    (Ok(_), Some(e)) => Err(e.clone()),
                    (out, _) => out,
                };
                drop(answer.send(out));
            });
            (done, broken)
        });
        if self.writer.send(op).is_err() {
            return Err(self.writer_stopped());
        }
        answered.await.map_err(|_| self.writer_stopped())?
    }

    fn writer_stopped(&self) -> Error {
        Error::Backend(format!(
            "sqlite {}: the writer thread stopped; the operation was not run",
            self.location()
        ))
    }

    /// Runs `f` on a reader connection, on the blocking pool (for `:memory:`, on the writer: it
    /// is the only connection that sees the database). `f` that reads twice and needs one
    /// snapshot opens its own transaction.
    pub(crate) async fn read<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Db, &Connection) -> Result<R> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.write(move |db, tx| f(db, tx)).await;
        }
        let db = Arc::clone(self);
        blocking(move || {
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

/// Runs `f` in a savepoint: released on `Ok`, rolled back on `Err` or panic. The flag says the
/// savepoint itself failed, leaving the transaction unusable.
fn in_savepoint<R, F>(db: &Db, tx: &Transaction<'_>, f: F) -> (Result<R>, bool)
where
    F: FnOnce(&Db, &Transaction<'_>) -> Result<R>,
{
    if let Err(e) = execute_cached(tx, "SAVEPOINT tasktrack_op") {
        return (Err(db.err(e)), true);
    }
    let (out, _) = run_caught(db, tx, f);
    let closed = if out.is_ok() {
        execute_cached(tx, "RELEASE tasktrack_op")
    } else {
        execute_cached(tx, "ROLLBACK TO tasktrack_op")
            .and_then(|()| execute_cached(tx, "RELEASE tasktrack_op"))
    };
    match closed {
        Ok(()) => (out, false),
        Err(e) => (out.and(Err(db.err(e))), true),
    }
}

/// Runs `f`, turning a panic into an error. The flag says the transaction must roll back: an
/// operation alone in its transaction has no savepoint, so its `Err` undoes the transaction.
fn run_caught<R, F>(db: &Db, tx: &Transaction<'_>, f: F) -> (Result<R>, bool)
where
    F: FnOnce(&Db, &Transaction<'_>) -> Result<R>,
{
    let out =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(db, tx))).unwrap_or_else(|_| {
            Err(Error::Backend(format!(
                "sqlite {}: an operation panicked; it was rolled back",
                db.location()
            )))
        });
    let failed = out.is_err();
    (out, failed)
}

/// A statement without parameters, prepared once per connection (parsing `SAVEPOINT` for every
/// operation showed up in profiles).
fn execute_cached(tx: &Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(drop)
}

/// How long the writer thread polls for the next operation before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(30);

/// The next operation, `None` once the `Db` is dropped. Polls for [`SPIN_BEFORE_SLEEP`] first:
/// a worker that just got its answer usually sends its next operation within microseconds, and
/// waking a sleeping thread took longer than that on the test machine (one worker handing off:
/// 8,800 tasks/s sleeping at once, 11,600–12,000 polling 30 µs; no change with 4 or 16 workers,
/// whose operations are already queued when a batch ends).
fn next_op(queue: &Receiver<Op>) -> Option<Op> {
    let until = Instant::now() + SPIN_BEFORE_SLEEP;
    while Instant::now() < until {
        match queue.try_recv() {
            Ok(op) => return Some(op),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    queue.recv().ok()
}

/// The writer thread: takes the next operation, then everything else already queued (up to
/// [`MAX_BATCH`]), runs them in one transaction, and repeats until the `Db` is dropped.
fn write_loop(db: &Weak<Db>, mut conn: Connection, queue: &Receiver<Op>) {
    while let Some(first) = next_op(queue) {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        // Callers hold the `Db` while they wait, so it is alive whenever an operation is queued.
        let Some(db) = db.upgrade() else { return };
        run_batch(&db, &mut conn, batch);
    }
}

/// One transaction for a batch of operations; every one is answered after the commit (or with
/// the reason there was none).
fn run_batch(db: &Db, conn: &mut Connection, batch: Vec<Op>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = db.err(e);
            for op in batch {
                let (done, _) = op(db, Err(&e), false);
                done(Some(&e));
            }
            return;
        }
    };
    let alone = batch.len() == 1;
    let mut broken = false;
    let mut answers = Vec::with_capacity(batch.len());
    for op in batch {
        // SQLite rolls the whole transaction back by itself on some errors (a full disk, an I/O
        // error): what is left of the batch must not run, or its next SAVEPOINT would open a
        // transaction of its own, outside `BEGIN IMMEDIATE`, which RELEASE commits at once
        // while the operation is answered with the batch's failure.
        if broken || tx.is_autocommit() {
            broken = true;
            let unusable = Error::Backend(format!(
                "sqlite {}: the transaction was rolled back by an earlier operation of the \
                 same batch",
                db.location()
            ));
            let (done, _) = op(db, Err(&unusable), false);
            answers.push(done);
            continue;
        }
        let (done, failed) = op(db, Ok(&tx), alone);
        broken |= failed;
        answers.push(done);
    }
    let outcome = if broken && alone {
        // The operation's own error is its answer; nothing of it is kept.
        let _ = tx.rollback();
        None
    } else if broken {
        let _ = tx.rollback();
        Some(Error::Backend(format!(
            "sqlite {}: a savepoint failed; the transaction was rolled back",
            db.location()
        )))
    } else {
        tx.commit().err().map(|e| db.err(e))
    };
    for done in answers {
        done(outcome.as_ref());
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
    // Savepoints (one per operation in a group commit) and multi-row statements keep the
    // original of every page they change in a sub-journal; on disk, past 64 KiB, that was a
    // third of the writer's time in pwrite. In memory it costs at most the pages one batch
    // changes.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err)?;
    // The query planner stability guarantee: a plan never depends on the values bound to it.
    // Without it, a cached statement whose WHERE is compared against a partial index's
    // condition is re-planned on every execution (profiled: a sixth of the writer's time in
    // the parser); every query here states a partial index's condition word for word instead.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
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
