//! # tasktrack-sql
//!
//! The PostgreSQL (`postgres://`, `postgresql://`) and MySQL / MariaDB (`mysql://`, `mariadb://`)
//! backends of tasktrack, for teams that spread work over several machines and already run a
//! database. [`open`] picks the dialect from the URL scheme.
//!
//! ```no_run
//! # async fn demo() -> tasktrack_core::Result<()> {
//! let store = tasktrack_sql::open("postgres://postgres@127.0.0.1:5432/test?pool_size=16").await?;
//! store.init().await?; // creates or upgrades the tables (the facade's open does this for you)
//! # Ok(()) }
//! ```
//!
//! # Atomicity
//! Both dialects claim with an index range scan `FOR UPDATE SKIP LOCKED`: concurrent workers take
//! disjoint tasks and never wait for one another. A worker whose lease was taken over can never
//! complete the task (`StaleLease`): PostgreSQL's single statements carry the lease's token and
//! acquisition time in their `WHERE` clause, and every other write applies the fencing rule to
//! the row it read and is conditional on that row being unchanged. On PostgreSQL `claim_next`,
//! `succeed` and the hand-off are single statements (`UPDATE … RETURNING`); on MariaDB
//! `claim_next`, the hand-off and `succeed_many` are one short transaction each (a locking read,
//! the pure rules in Rust, one write-back). Every other operation is "load → pure rule →
//! conditional write" (`UPDATE … WHERE version = $read AND created_at = $read_created`) through
//! [`tasktrack_core::cas`], so the lifecycle rules are the core's, verbatim. Counts are kept by
//! triggers in the same transaction as each write. `now` is always a bound parameter.
//!
//! # Layout
//! - `common/`: URL options ([`Config`]), the row ⇄ task mapping, the one error mapping, and the
//!   conditional-write path both dialects share (`docs.rs`: the `Documents` logic, written once
//!   over the small `Dialect` trait of `dialect.rs`: placeholders, parameter types, the few
//!   clauses each dialect writes its own way).
//! - `postgres/`, `mysql/`: one store per dialect (`mod.rs`: open, migrations, the [`Store`]
//!   impl and its native statements; `docs.rs`: its `Dialect` impl; `rows.rs`: its row reader
//!   and parameter binders). PostgreSQL adds `combine.rs` (concurrent hand-offs as one
//!   statement) and `vacuum.rs` (the store's own vacuums); MySQL adds `write_back.rs` (one
//!   `UPDATE … JOIN JSON_TABLE` for every row a transaction changed).
//! - `queries/<dialect>/<operation>.sql`: every statement, with the rule it restates named.
//! - `migrations/<dialect>/NNNN_name.sql`: versioned schema, applied by `init` in order.
//!
//! Tables (prefix `tasktrack_` by default, `?table_prefix=` to change, `?schema=` on PostgreSQL):
//! `job`, `task`, `task_count`, `schema_version`, and the analytics view `tasks`
//! (see `docs/backends/postgres.md`).
//!
//! # Limits
//! - Ids and job names up to 512 bytes (the core's limit); MySQL stores them as `VARBINARY`.
//! - `counts` reads at most 64 shards × statuses × stages counter rows per job, never the tasks.
//! - `delete_job` removes tasks one conditional delete at a time; `purge` deletes in batches of
//!   1000 rows per statement.
//! - PostgreSQL cannot store U+0000 (NUL) in `text` or in a `jsonb` string: in what workers and
//!   people report (output, error, history) the store replaces it with U+FFFD, so the outcome is
//!   recorded; in a task's `data` it is refused with [`Error::InvalidInput`] naming the task.
//!   MySQL stores it as is. See `docs/backends/postgres.md`, "Limits".
//! - PostgreSQL: every claim leaves a dead entry at the front of the claim index until a vacuum;
//!   the store vacuums the task table itself every `?vacuum_every=` claims (default 10,000, in
//!   the background). See the backend docs for the rest of the vacuum advice.
//!
//! # Testing
//! The conformance suite runs against real servers: PostgreSQL on 127.0.0.1:5432 (user
//! `postgres`, database `test`) and MariaDB on 127.0.0.1:3306 (root, database `test`), or the
//! URLs in `TASKTRACK_TEST_POSTGRES_URL` / `TASKTRACK_TEST_MYSQL_URL`. Each test creates its own
//! schema (PostgreSQL) or database (MariaDB) and drops it afterwards, so tests run in parallel.
//! `bash scripts/test -p tasktrack-sql` starts a stopped server first; under `CI=true` an
//! unreachable server fails the run instead of skipping.

mod common;
pub mod mysql;
pub mod postgres;

pub use common::config::Config;
pub use mysql::MySqlStore;
pub use postgres::PgStore;

use std::sync::Arc;
use tasktrack_core::{Error, Result, Store};

/// Opens the store named by `url` (does not create tables; call [`Store::init`], as the facade's
/// `open` does). An unreachable server is [`Error::Unavailable`] naming host and port.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    match scheme {
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url).await?)),
        "mysql" | "mariadb" => Ok(Arc::new(MySqlStore::connect(url).await?)),
        other => Err(Error::invalid(format!(
            "tasktrack-sql opens postgres://, postgresql://, mysql:// and mariadb:// URLs, not {other:?}"
        ))),
    }
}
