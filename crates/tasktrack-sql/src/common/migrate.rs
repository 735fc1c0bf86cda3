//! Versioned schema migrations (`migrations/<dialect>/NNNN_name.sql`), applied in order by `init`
//! and recorded in `{prefix}schema_version`. How they are serialised between processes differs
//! (PostgreSQL: an advisory lock and one transaction; MySQL: a named lock), the rest is here.

use super::Dialect;
use sqlx::{AssertSqlSafe, Database, Decode, Encode, Executor, IntoArguments, Type};
use tasktrack_core::{Error, Result};

/// A migration: its version, name and SQL (with `{t}`-style table names not yet filled in).
pub(crate) type Migration = (i32, &'static str, &'static str);

/// On `conn` (under the caller's lock or in its transaction): runs `setup` (which creates
/// `{names}schema_version` if needed), then every migration not recorded there yet, in order,
/// each `render`ed and then recorded.
pub(crate) async fn apply<D, DB>(
    s: &D,
    conn: &mut DB::Connection,
    setup: String,
    migrations: &[Migration],
    render: impl Fn(&str) -> String,
) -> Result<()>
where
    D: Dialect,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'r> i32: Decode<'r, DB> + Type<DB> + Encode<'r, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let t = s.names();
    sqlx::raw_sql(AssertSqlSafe(setup))
        .execute(&mut *conn)
        .await
        .map_err(|e| s.err(&e))?;
    let applied: Vec<i32> = sqlx::query_scalar::<DB, i32>(AssertSqlSafe(format!(
        "SELECT version FROM {t}schema_version"
    )))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| s.err(&e))?;
    let record = if D::NUMBERED_PLACEHOLDERS {
        format!("INSERT INTO {t}schema_version (version, name) VALUES ($1, $2)")
    } else {
        format!("INSERT INTO {t}schema_version (version, name) VALUES (?, ?)")
    };
    for &(version, name, sql) in migrations {
        if applied.contains(&version) {
            continue;
        }
        sqlx::raw_sql(AssertSqlSafe(render(sql)))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                Error::backend(format!(
                    "{} migration {version} ({name}) failed: {}",
                    D::BACKEND,
                    s.err(&e)
                ))
            })?;
        sqlx::query::<DB>(AssertSqlSafe(record.clone()))
            .bind(version)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(|e| s.err(&e))?;
    }
    Ok(())
}
