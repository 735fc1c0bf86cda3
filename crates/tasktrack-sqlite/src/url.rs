//! `sqlite://` URLs: where the file is and how it is opened.
//!
//! ```text
//! sqlite://tasktrack.db                     relative to the working directory
//! sqlite://./data/tasktrack.db              the same, explicit
//! sqlite:///var/lib/tasktrack.db            absolute (three slashes)
//! sqlite://:memory:                         in process, gone with the store (tests)
//! sqlite://t.db?busy_timeout=10s&synchronous=full
//! ```
//!
//! Query options: `busy_timeout` (how long a write waits for another process's write lock:
//! `500ms`, `5s`, or plain milliseconds; default 5 s), `synchronous` (`normal`, the default, or
//! `full` to fsync every commit).

use std::path::PathBuf;
use std::time::Duration;
use tasktrack_core::{Error, Result};

/// The default wait for another writer's lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file (created if missing).
    File(PathBuf),
    /// A private in-process database.
    Memory,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str(":memory:"),
        }
    }
}

/// How SQLite flushes commits (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL + NORMAL: a commit survives a process crash; an OS crash or power loss may lose the
    /// last few commits (never corrupts the file).
    Normal,
    /// Every commit is fsynced: survives power loss, costs a disk flush per transition.
    Full,
}

impl Synchronous {
    /// The value `PRAGMA synchronous` takes.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// A parsed `sqlite://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    /// The database file.
    pub location: Location,
    /// How long a write waits for the lock held by another connection or process.
    pub busy_timeout: Duration,
    /// Commit durability.
    pub synchronous: Synchronous,
}

impl SqliteUrl {
    /// Parses `sqlite://PATH[?options]`.
    pub fn parse(url: &str) -> Result<SqliteUrl> {
        let rest = url.strip_prefix("sqlite://").ok_or_else(|| {
            Error::invalid(format!(
                "{url:?} is not a sqlite:// URL (expected sqlite://path/to/file.db)"
            ))
        })?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() {
            return Err(Error::invalid(format!(
                "{url:?} names no file; expected e.g. sqlite://./tasktrack.db or sqlite://:memory:"
            )));
        }
        let location = if path == ":memory:" {
            Location::Memory
        } else {
            Location::File(PathBuf::from(path))
        };
        let mut parsed = SqliteUrl {
            location,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            synchronous: Synchronous::Normal,
        };
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "busy_timeout" => {
                    parsed.busy_timeout = parse_duration(value)
                        .filter(|d| *d <= MAX_BUSY_TIMEOUT)
                        .ok_or_else(|| {
                        Error::invalid(format!(
                            "{url:?}: busy_timeout {value:?} is not a duration like 500ms or \
                                 5s, of at most {} ms (what SQLite can wait)",
                            MAX_BUSY_TIMEOUT.as_millis()
                        ))
                    })?
                }
                "synchronous" => {
                    parsed.synchronous = match value.to_ascii_lowercase().as_str() {
                        "normal" => Synchronous::Normal,
                        "full" => Synchronous::Full,
                        _ => {
                            return Err(Error::invalid(format!(
                                "{url:?}: synchronous must be normal or full, not {value:?}"
                            )));
                        }
                    }
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "{url:?}: unknown option {key:?}; known: busy_timeout, synchronous"
                    )));
                }
            }
        }
        Ok(parsed)
    }
}

/// The longest busy timeout SQLite takes: `i32::MAX` milliseconds (about 24.8 days).
const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// `250ms`, `5s`, `2m`, or plain milliseconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let (digits, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = digits.parse().ok()?;
    match unit {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_options() {
        let u = SqliteUrl::parse("sqlite://./a/b.db").unwrap();
        assert_eq!(u.location, Location::File(PathBuf::from("./a/b.db")));
        assert_eq!(u.busy_timeout, DEFAULT_BUSY_TIMEOUT);
        let u = SqliteUrl::parse("sqlite:///abs/t.db?busy_timeout=250ms&synchronous=FULL").unwrap();
        assert_eq!(u.location, Location::File(PathBuf::from("/abs/t.db")));
        assert_eq!(u.busy_timeout, Duration::from_millis(250));
        assert_eq!(u.synchronous, Synchronous::Full);
        assert_eq!(
            SqliteUrl::parse("sqlite://:memory:").unwrap().location,
            Location::Memory
        );
        assert_eq!(
            SqliteUrl::parse("sqlite://x?busy_timeout=2s")
                .unwrap()
                .busy_timeout,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for bad in [
            "postgres://x",
            "sqlite://",
            "sqlite://x?busy_timeout=soon",
            "sqlite://x?busy_timeout=3000000s",
            "sqlite://x?color=red",
            "sqlite://x?synchronous=off",
        ] {
            let err = SqliteUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err}");
        }
    }
}
