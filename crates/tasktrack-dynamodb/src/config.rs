//! `dynamodb://table?endpoint=…&region=…&counter_shards=…&item_limit=…`: parsing, and the SDK
//! client.
//!
//! Anything the URL does not say comes from the standard AWS configuration chain: environment
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...),
//! profiles (`AWS_PROFILE`, `~/.aws/config`), SSO, container and instance roles.

use crate::fit::{MAX_ITEM_BYTES, MIN_ITEM_BYTES};
use aws_config::{BehaviorVersion, Region};
use tasktrack_core::{Error, Result};

/// The default number of counter shards per job (see the crate docs, `# Limits`).
pub const DEFAULT_COUNTER_SHARDS: u32 = 4;
/// The most counter shards a job may have (counts read them all in one Query page).
pub const MAX_COUNTER_SHARDS: u32 = 256;

/// What a `dynamodb://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The table.
    pub table: String,
    /// `?endpoint=`: overrides the AWS endpoint (an emulator, DynamoDB Local).
    pub endpoint: Option<String>,
    /// `?region=`: overrides the AWS region.
    pub region: Option<String>,
    /// `?profile=`: the AWS profile to read.
    pub profile: Option<String>,
    /// `?counter_shards=`: counter items per job, spreading the counter writes.
    pub counter_shards: u32,
    /// `?item_limit=`: the largest item the store writes, in bytes (DynamoDB's 400 KB by
    /// default; lower for a DynamoDB-compatible server with a lower limit, such as moto's
    /// 405,000 bytes).
    pub item_limit: usize,
}

impl Settings {
    /// Parses a `dynamodb://table[?endpoint=…&region=…&profile=…&counter_shards=…&item_limit=…]`
    /// URL.
    pub fn parse(raw: &str) -> Result<Settings> {
        let url = url::Url::parse(raw)
            .map_err(|e| Error::invalid(format!("bad DynamoDB URL {raw:?}: {e}")))?;
        if url.scheme() != "dynamodb" {
            return Err(Error::invalid(format!("not a dynamodb:// URL: {raw:?}")));
        }
        let table = url.host_str().unwrap_or_default().to_owned();
        if !valid_table_name(&table) {
            return Err(Error::invalid(format!(
                "bad DynamoDB table name {table:?} in {raw:?}: 3 to 246 characters (the counter table adds `.counters`) among a-z A-Z 0-9 _ - ."
            )));
        }
        if !matches!(url.path(), "" | "/") {
            return Err(Error::invalid(format!(
                "a dynamodb:// URL names a table only, not a path: {raw:?}"
            )));
        }
        if url.port().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(format!(
                "a port or user after dynamodb:// means nothing (give the server as \
                 ?endpoint=): {raw:?}"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (key, value) in url.query_pairs() {
            if value.is_empty() || !seen.insert(key.clone()) {
                return Err(Error::invalid(format!(
                    "dynamodb:// URL parameter {key:?} is empty or given twice: {raw:?}"
                )));
            }
        }
        let mut settings = Settings {
            table,
            endpoint: None,
            region: None,
            profile: None,
            counter_shards: DEFAULT_COUNTER_SHARDS,
            item_limit: MAX_ITEM_BYTES,
        };
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "endpoint" => settings.endpoint = Some(value.into_owned()),
                "region" => settings.region = Some(value.into_owned()),
                "profile" => settings.profile = Some(value.into_owned()),
                "counter_shards" => {
                    settings.counter_shards = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_COUNTER_SHARDS).contains(n))
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "counter_shards must be 1..={MAX_COUNTER_SHARDS}, got {value:?}"
                            ))
                        })?;
                }
                "item_limit" => {
                    settings.item_limit = value
                        .parse()
                        .ok()
                        .filter(|n| (MIN_ITEM_BYTES..=MAX_ITEM_BYTES).contains(n))
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "item_limit must be {MIN_ITEM_BYTES}..={MAX_ITEM_BYTES} bytes, got {value:?}"
                            ))
                        })?;
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown dynamodb:// URL parameter {other:?}; known: endpoint, region, profile, counter_shards, item_limit"
                    )));
                }
            }
        }
        Ok(settings)
    }

    /// The endpoint requests go to, for error messages.
    pub fn endpoint_for_errors(&self, region: Option<&str>) -> String {
        self.endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL_DYNAMODB").ok())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .unwrap_or_else(|| format!("dynamodb.{}.amazonaws.com:443", region.unwrap_or("?")))
    }

    /// Loads the AWS configuration (URL first, then the standard chain) and builds a client.
    pub async fn client(&self) -> Result<(aws_sdk_dynamodb::Client, String)> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let region = config.region().map(|r| r.to_string());
        let endpoint = self.endpoint_for_errors(region.as_deref());
        if region.is_none() {
            return Err(Error::invalid(format!(
                "no AWS region for dynamodb://{}: set AWS_REGION, a profile region, or ?region=",
                self.table
            )));
        }
        Ok((aws_sdk_dynamodb::Client::new(&config), endpoint))
    }
}

/// DynamoDB's table-name rule.
fn valid_table_name(name: &str) -> bool {
    (3..=246).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_and_parameters() {
        let s = Settings::parse(
            "dynamodb://tasks?endpoint=http://127.0.0.1:5000&region=eu-west-1&counter_shards=8&item_limit=400000",
        )
        .unwrap();
        assert_eq!(s.table, "tasks");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.counter_shards, 8);
        assert_eq!(s.item_limit, 400_000);
        let defaults = Settings::parse("dynamodb://my_table.v2/").unwrap();
        assert_eq!(
            (defaults.counter_shards, defaults.item_limit),
            (DEFAULT_COUNTER_SHARDS, 409_600)
        );
    }

    #[test]
    fn rejects_bad_urls_clearly() {
        for bad in [
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://t%2Fx",
            "dynamodb://tasks/extra",
            "dynamodb://tasks?bogus=1",
            "dynamodb://tasks?counter_shards=0",
            "dynamodb://tasks?item_limit=409601",
            "dynamodb://tasks?item_limit=1000",
            "dynamodb://tasks:8000",
            "dynamodb://user@tasks",
            "dynamodb://tasks?region=",
            "dynamodb://tasks?region=a&region=b",
            "s3://tasks",
        ] {
            let err = Settings::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err}");
        }
    }
}
