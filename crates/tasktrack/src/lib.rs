//! # tasktrack
//!
//! A task tracker: every task of a batch is done exactly once, crashed workers' leases expire and
//! their tasks are picked up again, failures keep their error and are retried a bounded number of
//! times, and anyone can see a job's progress at any moment.
//!
//! This crate is the facade: it re-exports [`tasktrack_core`] (model, lifecycle, [`Store`],
//! [`Tracker`]) and opens any backend by URL with [`open`]. Backends sit behind cargo features
//! (`sqlite` is the default; `all-backends` enables every one).
//!
//! | URL | backend | feature |
//! |---|---|---|
//! | `memory://` | in process | always |
//! | `sqlite://path` | SQLite (the embedded default) | `sqlite` |
//! | `file://dir` | JSON files | `file` |
//! | `postgres://…` | PostgreSQL | `postgres` |
//! | `mysql://…` | MySQL / MariaDB | `mysql` |
//! | `redis://…`, `rediss://…` | Redis | `redis` |
//! | `s3://bucket/prefix` | S3-compatible | `s3` |
//! | `dynamodb://table` | DynamoDB | `dynamodb` |
//! | `mongodb://…` | MongoDB | `mongodb` |

pub use tasktrack_core::*;

use std::sync::Arc;

/// The store used when none is given: `sqlite://./tasktrack.db`.
pub const DEFAULT_STORE_URL: &str = "sqlite://./tasktrack.db";

/// Opens the store a URL names, creating its schema if needed (`init`).
///
/// An unknown scheme, or one whose cargo feature is off, is [`Error::InvalidInput`] naming it.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    let scheme = url.split_once("://").map(|(s, _)| s).ok_or_else(|| {
        Error::invalid(format!(
            "store URL {url:?} has no scheme; expected e.g. {DEFAULT_STORE_URL}"
        ))
    })?;
    let store: Arc<dyn Store> = match scheme {
        "memory" => Arc::new(MemoryStore::in_memory()),
        #[cfg(feature = "sqlite")]
        "sqlite" => Arc::new(tasktrack_sqlite::open(url).await?),
        #[cfg(feature = "file")]
        "file" => Arc::new(tasktrack_file::open(url).await?),
        #[cfg(any(feature = "postgres", feature = "mysql"))]
        "postgres" | "postgresql" | "mysql" | "mariadb" => tasktrack_sql::open(url).await?,
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Arc::new(tasktrack_redis::open(url).await?),
        #[cfg(feature = "s3")]
        "s3" => Arc::new(tasktrack_s3::open(url).await?),
        #[cfg(feature = "dynamodb")]
        "dynamodb" => Arc::new(tasktrack_dynamodb::open(url).await?),
        #[cfg(feature = "mongodb")]
        "mongodb" | "mongodb+srv" => Arc::new(tasktrack_mongodb::open(url).await?),
        #[allow(unreachable_patterns)]
        known @ ("sqlite" | "file" | "postgres" | "postgresql" | "mysql" | "mariadb" | "redis"
        | "rediss" | "s3" | "dynamodb" | "mongodb" | "mongodb+srv") => {
            return Err(Error::invalid(format!(
                "the {known}:// backend is not compiled in; enable the tasktrack cargo feature for it"
            )));
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown store scheme {other:?}; known: memory, sqlite, file, postgres, mysql, redis, s3, dynamodb, mongodb"
            )));
        }
    };
    store.init().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_is_a_clear_error() {
        let err = open("ftp://x")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unknown store scheme \"ftp\""), "{err}");
        let err = open("no-scheme")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("has no scheme"), "{err}");
    }

    #[tokio::test]
    async fn memory_store_opens() {
        let store = open("memory://").await.map(|s| s.backend());
        assert_eq!(store.ok(), Some("memory"));
    }
}
