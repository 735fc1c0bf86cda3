//! The store URL: `mongodb://[user:pass@]host[:port][,host…]/[database][?options][&prefix=P]`.
//!
//! Everything but `prefix` is the MongoDB driver's own connection string (replica set, TLS,
//! `directConnection`, timeouts…), passed through untouched. The path names the database
//! (default [`DEFAULT_DATABASE`]); `prefix` is put in front of the two collection names so that
//! several trackers can share one database.

use tasktrack_core::{Error, Result, redact_url, user_info_end};

/// The database used when the URL names none.
pub const DEFAULT_DATABASE: &str = "tasktrack";

/// What [`parse`] takes out of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The connection string handed to the driver (`prefix` removed).
    pub driver_url: String,
    /// The database.
    pub database: String,
    /// Put in front of `tasks` and `jobs`.
    pub prefix: String,
    /// `host:port[,host:port…]`, named in [`Error::Unavailable`] messages.
    pub hosts: String,
}

impl Config {
    /// The tasks collection's name.
    pub fn tasks_collection(&self) -> String {
        format!("{}tasks", self.prefix)
    }

    /// The jobs collection's name.
    pub fn jobs_collection(&self) -> String {
        format!("{}jobs", self.prefix)
    }
}

/// Splits a store URL into the driver's connection string, the database and the prefix.
pub fn parse(url: &str) -> Result<Config> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "bad mongodb store URL {:?}: {why}",
            redact_url(url)
        ))
    };
    let scheme_end = url
        .strip_prefix("mongodb://")
        .or_else(|| url.strip_prefix("mongodb+srv://"))
        .map(|rest| url.len() - rest.len())
        .ok_or_else(|| bad("expected mongodb://host[:port]/[database][?prefix=P]"))?;
    // Hosts may be a comma-separated list, which the `url` crate cannot parse: split by hand,
    // the user part first, so that no piece of a password lands in a host or database name.
    let (user, rest) = match user_info_end(url) {
        Some(at) => (&url[scheme_end..=at], &url[at + 1..]),
        None => ("", &url[scheme_end..]),
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    if hosts.is_empty() {
        return Err(bad("no host"));
    }
    let database = match path {
        "" => DEFAULT_DATABASE.to_string(),
        db => decode(db),
    };
    check_name("database", &database, &bad)?;

    let mut prefix = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", value)) => {
                if value.is_empty() || prefix.is_some() {
                    return Err(bad("prefix= is empty or given twice"));
                }
                prefix = Some(decode(value));
            }
            _ => kept.push(pair),
        }
    }
    let prefix = prefix.unwrap_or_default();
    if !prefix.is_empty() {
        check_name("prefix", &prefix, &bad)?;
    }

    let scheme = if url.starts_with("mongodb+srv://") {
        "mongodb+srv"
    } else {
        "mongodb"
    };
    let mut driver_url = format!("{scheme}://{user}{hosts}");
    if !path.is_empty() || !kept.is_empty() {
        driver_url.push('/');
        driver_url.push_str(path);
    }
    if !kept.is_empty() {
        driver_url.push('?');
        driver_url.push_str(&kept.join("&"));
    }
    Ok(Config {
        driver_url,
        database,
        prefix,
        hosts: hosts.to_string(),
    })
}

/// Database and collection names: letters, digits, `_` and `-` only, so that no prefix can
/// reach another namespace (`.`, `$`, `/`, NUL are all excluded).
fn check_name(what: &str, name: &str, bad: &dyn Fn(&str) -> Error) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(bad(&format!(
            "the {what} {name:?} must be 1 to 48 letters, digits, '_' or '-'"
        )))
    }
}

/// Percent-decodes a URL component (invalid UTF-8 becomes U+FFFD, which [`check_name`] rejects).
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map_or(String::new(), |(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_and_prefix_come_from_path_and_query() {
        let c = parse("mongodb://127.0.0.1:27017/ops?directConnection=true&prefix=tt_").unwrap();
        assert_eq!(c.database, "ops");
        assert_eq!(c.prefix, "tt_");
        assert_eq!(c.tasks_collection(), "tt_tasks");
        assert_eq!(c.hosts, "127.0.0.1:27017");
        assert_eq!(
            c.driver_url,
            "mongodb://127.0.0.1:27017/ops?directConnection=true"
        );
    }

    #[test]
    fn a_password_never_reaches_hosts_or_names() {
        // Unencoded `/`, `?` and `@` in a password: split at the user part's end all the same.
        for url in [
            "mongodb://u:pa/ss@h:1/db",
            "mongodb://u:pa?ss@h:1/db",
            "mongodb://u:p@ss@h:1/db",
        ] {
            let c = parse(url).unwrap();
            assert_eq!(
                (c.hosts.as_str(), c.database.as_str()),
                ("h:1", "db"),
                "{url}"
            );
            assert_eq!(c.driver_url, url);
        }
        let e = parse("mongodb://u:se/cret@h/bad.name")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("cret"), "{e}");
    }

    #[test]
    fn defaults_and_replica_sets() {
        let c = parse("mongodb://u:p@a:1,b:2").unwrap();
        assert_eq!(
            (c.database.as_str(), c.prefix.as_str(), c.hosts.as_str()),
            ("tasktrack", "", "a:1,b:2")
        );
        assert_eq!(c.driver_url, "mongodb://u:p@a:1,b:2");
        let c = parse("mongodb://h/?prefix=p").unwrap();
        assert_eq!(c.driver_url, "mongodb://h");
        let c = parse("mongodb://h/?directConnection=true&prefix=p").unwrap();
        assert_eq!(c.driver_url, "mongodb://h/?directConnection=true");
    }

    #[test]
    fn names_that_could_escape_are_rejected() {
        for url in [
            "mongodb://h/a.b",
            "mongodb://h/?prefix=x.y",
            "mongodb://h/?prefix=",
            "mongodb://h/?prefix=a&prefix=b",
            "mongodb://h/?prefix=%24x",
            "mongodb:///db",
            "http://h",
        ] {
            assert!(matches!(parse(url), Err(Error::InvalidInput(_))), "{url}");
        }
    }
}
