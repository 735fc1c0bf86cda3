//! The store URL: `redis://[user:password@]host:port/db?prefix=tt`, and `rediss://…` for TLS
//! (`&ca_file=/path/ca.pem` to trust only that PEM file's certificates instead of the system's;
//! `&client_cert_file=…&client_key_file=…` to present a client certificate, for servers that
//! require one).

use std::path::PathBuf;
use tasktrack_core::{Error, Result};

/// The key prefix used when the URL names none.
pub const DEFAULT_PREFIX: &str = "tasktrack";

/// What `open` needs from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// The URL handed to the `redis` crate (our own parameters removed).
    pub connect: String,
    /// `host:port`, for error messages (never the password).
    pub address: String,
    /// The key prefix; every key of this store starts with `<prefix>:`.
    pub prefix: String,
    /// `rediss://`: the connection is TLS.
    pub tls: bool,
    /// With TLS: the PEM file of the certificates to trust (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// With TLS: the PEM files of the client certificate and its private key (both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// Parses and validates a store URL.
    pub fn parse(raw: &str) -> Result<Config> {
        let mut url =
            url::Url::parse(raw).map_err(|e| Error::invalid(format!("bad redis URL: {e}")))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(Error::invalid(format!(
                "not a redis URL (scheme {:?})",
                url.scheme()
            )));
        }
        let host = url.host_str().unwrap_or("127.0.0.1").to_string();
        let address = format!("{host}:{}", url.port().unwrap_or(6379));
        let tls = url.scheme() == "rediss";
        let mut prefix = DEFAULT_PREFIX.to_string();
        let (mut ca_file, mut cert_file, mut key_file) = (None, None, None);
        let mut kept = Vec::new();
        for (k, v) in url.query_pairs() {
            let path = || Some(PathBuf::from(v.as_ref()));
            match k.as_ref() {
                "prefix" => prefix = v.to_string(),
                "ca_file" => ca_file = path(),
                "client_cert_file" => cert_file = path(),
                "client_key_file" => key_file = path(),
                // The only option the `redis` crate reads from a TCP URL.
                "protocol" => kept.push((k.into_owned(), v.into_owned())),
                // The crate ignores what it does not know: a misspelt `prefx` would otherwise
                // run under the default prefix, sharing keys with another tracker.
                unknown => {
                    return Err(Error::invalid(format!(
                        "unknown redis URL option {unknown:?}; this store reads prefix, ca_file, \
                         client_cert_file, client_key_file and the driver's protocol"
                    )));
                }
            }
        }
        check_prefix(&prefix)?;
        let tls_files = ca_file.is_some() || cert_file.is_some() || key_file.is_some();
        if tls_files && !tls {
            return Err(Error::invalid(
                "ca_file, client_cert_file and client_key_file are for TLS connections: use a rediss:// URL",
            ));
        }
        let client_cert = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(Error::invalid(
                    "client_cert_file and client_key_file go together: give both or neither",
                ));
            }
        };
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok(Config {
            connect: url.to_string(),
            address,
            prefix,
            tls,
            ca_file,
            client_cert,
        })
    }
}

/// A prefix must not contain braces: they would move the Redis Cluster hash tag off the job.
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "redis key prefix {prefix:?} must be non-empty, without braces or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_parameter_is_taken_out_of_the_url() {
        let c = Config::parse("redis://127.0.0.1:6380/2?prefix=tt").unwrap();
        assert_eq!(c.prefix, "tt");
        assert_eq!(c.address, "127.0.0.1:6380");
        assert_eq!(c.connect, "redis://127.0.0.1:6380/2");
        let c = Config::parse("redis://localhost/0").unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.address, "localhost:6379");
    }

    #[test]
    fn bad_urls_and_prefixes_are_rejected() {
        assert!(Config::parse("http://x").is_err());
        assert!(Config::parse("redis://x/0?prefix=a{b}").is_err());
        assert!(Config::parse("redis://x/0?prefix=").is_err());
        assert!(Config::parse("redis://x/0?ca_file=/ca.pem").is_err());
        let err = Config::parse("redis://x/0?prefx=tt")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown redis URL option \"prefx\""), "{err}");
        let c = Config::parse("redis://x/0?protocol=resp3&prefix=tt").unwrap();
        assert_eq!(c.connect, "redis://x/0?protocol=resp3");
    }

    #[test]
    fn rediss_takes_a_ca_file_out_of_the_url() {
        let c = Config::parse("rediss://h:6390/0?ca_file=/etc/tt/ca.pem&prefix=p").unwrap();
        assert!(c.tls);
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/tt/ca.pem")));
        assert_eq!(c.connect, "rediss://h:6390/0");
        let c = Config::parse("rediss://h/0").unwrap();
        assert!(c.tls && c.ca_file.is_none() && c.client_cert.is_none());
    }

    #[test]
    fn a_client_certificate_needs_both_files_and_tls() {
        let c =
            Config::parse("rediss://h/0?client_cert_file=/c.pem&client_key_file=/k.pem").unwrap();
        assert_eq!(
            c.client_cert,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(c.connect, "rediss://h/0");
        assert!(Config::parse("rediss://h/0?client_cert_file=/c.pem").is_err());
        assert!(Config::parse("rediss://h/0?client_key_file=/k.pem").is_err());
        assert!(
            Config::parse("redis://h/0?client_cert_file=/c.pem&client_key_file=/k.pem").is_err()
        );
    }
}
