//! The store URL: where the server is, and the options this crate reads from its query string.

use std::time::Duration;
use tasktrack_core::{Error, Result, redact_url};

/// Options taken from the URL's query string (and removed before the URL reaches the driver).
///
/// | parameter | default | meaning |
/// |---|---|---|
/// | `pool_size` | 10 | most connections the pool opens |
/// | `statement_timeout` | `30s` | a statement running longer is cancelled (`ms`, `s` or `m` suffix) |
/// | `connect_timeout` | `10s` | how long to wait for a pooled connection |
/// | `schema` | `public` (PostgreSQL only) | the schema holding the tables |
/// | `table_prefix` | `tasktrack_` | prefix of every table, view and trigger name |
/// | `vacuum_every` | 10000 (PostgreSQL only) | claims between two `VACUUM`s of the task table the store runs itself; `0`: never |
/// | `combine_handoffs` | `on` (PostgreSQL only) | send concurrent workers' hand-offs as one statement (`off`: one each) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The URL with this crate's parameters removed, as the driver expects it.
    pub driver_url: String,
    /// `host:port`, for error messages.
    pub endpoint: String,
    /// Pool size.
    pub pool_size: u32,
    /// Statement timeout.
    pub statement_timeout: Duration,
    /// Pool acquire timeout.
    pub connect_timeout: Duration,
    /// PostgreSQL schema.
    pub schema: Option<String>,
    /// Table name prefix.
    pub table_prefix: String,
    /// PostgreSQL: granted claims between two vacuums of the task table (0: never).
    pub vacuum_every: u64,
    /// PostgreSQL: combine concurrent hand-offs into one statement.
    pub combine_handoffs: bool,
}

impl Config {
    /// Parses a `postgres://`, `postgresql://`, `mysql://` or `mariadb://` URL.
    pub fn parse(url: &str, default_port: u16) -> Result<Config> {
        let bad_url = |e: url::ParseError| {
            Error::invalid(format!("bad store URL {:?}: {e}", redact_url(url)))
        };
        let mut parsed = url::Url::parse(url).map_err(bad_url)?;
        if parsed.scheme() == "mariadb" {
            // sqlx knows MariaDB by its protocol's name. Url::set_scheme refuses some changes
            // between special and non-special schemes, so rebuild the string instead.
            let rest = url.split_once("://").map_or("", |(_, r)| r);
            parsed = url::Url::parse(&format!("mysql://{rest}")).map_err(bad_url)?;
        }
        let postgres = parsed.scheme().starts_with("postgres");
        let host = parsed.host_str().unwrap_or("localhost").to_string();
        let endpoint = format!("{host}:{}", parsed.port().unwrap_or(default_port));
        let mut config = Config {
            driver_url: String::new(),
            endpoint,
            pool_size: 10,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            schema: None,
            table_prefix: "tasktrack_".to_string(),
            vacuum_every: 10_000,
            combine_handoffs: true,
        };
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            if !postgres && POSTGRES_ONLY.contains(&k.as_ref()) {
                return Err(Error::invalid(format!(
                    "{k} is a PostgreSQL-only option; a MySQL/MariaDB store keeps its tables in \
                     the database named in the URL's path"
                )));
            }
            match k.as_ref() {
                "pool_size" => {
                    config.pool_size = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::invalid(format!("pool_size must be a positive integer, got {v:?}"))
                    })?;
                }
                "statement_timeout" => {
                    config.statement_timeout = parse_duration("statement_timeout", &v)?
                }
                "connect_timeout" => {
                    config.connect_timeout = parse_duration("connect_timeout", &v)?
                }
                "schema" => config.schema = Some(identifier("schema", &v)?),
                "table_prefix" => config.table_prefix = identifier("table_prefix", &v)?,
                "vacuum_every" => {
                    config.vacuum_every = v.parse().map_err(|_| {
                        Error::invalid(format!(
                            "vacuum_every must be a number of claims, got {v:?}"
                        ))
                    })?;
                }
                "combine_handoffs" => {
                    config.combine_handoffs = match v.as_ref() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "combine_handoffs must be on or off, got {v:?}"
                            )));
                        }
                    };
                }
                driver if driver_option(postgres, driver) => {
                    kept.push((k.into_owned(), v.into_owned()))
                }
                unknown => return Err(unknown_option(postgres, unknown)),
            }
        }
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        config.driver_url = parsed.to_string();
        Ok(config)
    }
}

/// Options a MySQL/MariaDB URL refuses rather than silently ignores.
const POSTGRES_ONLY: [&str; 3] = ["schema", "vacuum_every", "combine_handoffs"];

/// This crate's own options, for error messages.
const OURS: [&str; 7] = [
    "pool_size",
    "statement_timeout",
    "connect_timeout",
    "schema",
    "table_prefix",
    "vacuum_every",
    "combine_handoffs",
];

/// The options sqlx 0.9 reads from a PostgreSQL URL (`sqlx-postgres`'s `options/parse.rs`),
/// besides `options[NAME]`.
const POSTGRES_DRIVER: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The options sqlx 0.9 reads from a MySQL URL (`sqlx-mysql`'s `options/parse.rs`).
const MYSQL_DRIVER: [&str; 14] = [
    "sslmode",
    "ssl-mode",
    "sslca",
    "ssl-ca",
    "charset",
    "collation",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "socket",
    "timezone",
    "time-zone",
];

/// Whether the driver reads `key`. Anything else is refused: sqlx ignores an option it does not
/// know (PostgreSQL's only logs it), so a misspelt `tabel_prefix` would otherwise run silently
/// against the default tables.
fn driver_option(postgres: bool, key: &str) -> bool {
    if postgres {
        POSTGRES_DRIVER.contains(&key) || (key.starts_with("options[") && key.ends_with(']'))
    } else {
        MYSQL_DRIVER.contains(&key)
    }
}

fn unknown_option(postgres: bool, key: &str) -> Error {
    let driver: &[&str] = if postgres {
        &POSTGRES_DRIVER
    } else {
        &MYSQL_DRIVER
    };
    let ours: Vec<&str> = OURS
        .into_iter()
        .filter(|o| postgres || !POSTGRES_ONLY.contains(o))
        .collect();
    Error::invalid(format!(
        "unknown store URL option {key:?}; this store reads {} and the driver's {}",
        ours.join(", "),
        driver.join(", ")
    ))
}

/// `250ms`, `30s`, `2m`, or a bare number of milliseconds.
fn parse_duration(what: &str, v: &str) -> Result<Duration> {
    let bad = || Error::invalid(format!("{what} must look like 500ms, 30s or 2m, got {v:?}"));
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "ms"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// Names go into SQL text (they cannot be bound), so only plain identifiers are accepted.
fn identifier(what: &str, v: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.len() <= 40
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !v.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(v.to_string())
    } else {
        Err(Error::invalid(format!(
            "{what} must be lowercase letters, digits and underscores (at most 40, not starting with a digit), got {v:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_our_parameters_and_keeps_the_drivers() {
        let c = Config::parse(
            "postgres://u@db.example:6543/app?sslmode=disable&pool_size=4&statement_timeout=2s&schema=jobs&table_prefix=tt_&vacuum_every=0&combine_handoffs=off",
            5432,
        )
        .unwrap();
        assert_eq!(c.endpoint, "db.example:6543");
        assert_eq!(c.pool_size, 4);
        assert_eq!(c.statement_timeout, Duration::from_secs(2));
        assert_eq!(c.schema.as_deref(), Some("jobs"));
        assert_eq!(c.table_prefix, "tt_");
        assert_eq!(c.vacuum_every, 0);
        assert!(!c.combine_handoffs);
        assert_eq!(
            c.driver_url,
            "postgres://u@db.example:6543/app?sslmode=disable"
        );
    }

    #[test]
    fn mariadb_scheme_becomes_mysql_with_the_default_port() {
        let c = Config::parse("mariadb://root@127.0.0.1/test", 3306).unwrap();
        assert_eq!(c.driver_url, "mysql://root@127.0.0.1/test");
        assert_eq!(c.endpoint, "127.0.0.1:3306");
    }

    #[test]
    fn rejects_names_that_could_inject_sql() {
        assert!(Config::parse("postgres://h/d?schema=a;drop", 5432).is_err());
        assert!(Config::parse("postgres://h/d?table_prefix=A", 5432).is_err());
        assert!(Config::parse("postgres://h/d?pool_size=0", 5432).is_err());
        assert!(Config::parse("postgres://h/d?statement_timeout=3h", 5432).is_err());
        assert!(Config::parse("postgres://h/d?vacuum_every=often", 5432).is_err());
        assert!(Config::parse("postgres://h/d?combine_handoffs=maybe", 5432).is_err());
    }

    /// sqlx ignores options it does not know, so a misspelt one would run silently against the
    /// defaults (other tables, another pool size): refused instead, naming what is read.
    #[test]
    fn unknown_options_are_refused_and_the_drivers_are_kept() {
        for url in [
            "postgres://h/d?tabel_prefix=x_",
            "postgres://h/d?pool-size=4",
            "mariadb://root@h/test?charsett=utf8mb4",
        ] {
            let err = Config::parse(url, 5432).unwrap_err().to_string();
            assert!(err.contains("unknown store URL option"), "{url}: {err}");
            assert!(err.contains("table_prefix"), "{url}: {err}");
        }
        let pg = Config::parse(
            "postgres://h/d?application_name=w1&options[search_path]=x&ssl-mode=disable",
            5432,
        )
        .unwrap();
        assert!(
            pg.driver_url.contains("application_name=w1"),
            "{}",
            pg.driver_url
        );
        let my = Config::parse(
            "mysql://root@h/test?charset=utf8mb4&timezone=%2B00:00",
            3306,
        )
        .unwrap();
        assert!(
            my.driver_url.contains("charset=utf8mb4"),
            "{}",
            my.driver_url
        );
        let err = Config::parse("mysql://root@h/test?application_name=w1", 3306)
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("schema"),
            "MySQL lists no PostgreSQL-only option: {err}"
        );
    }

    #[test]
    fn mysql_urls_refuse_postgres_only_options() {
        for option in POSTGRES_ONLY {
            let url = format!("mariadb://root@h/test?{option}=x");
            let err = Config::parse(&url, 3306).unwrap_err().to_string();
            assert!(err.contains("PostgreSQL-only"), "{url}: {err}");
        }
        assert!(Config::parse("mysql://root@h/test?table_prefix=tt_", 3306).is_ok());
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let err = Config::parse("postgres://u:secret@[::1/x", 5432)
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres://u:***@[::1/x"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
