//! `s3://bucket/prefix?endpoint=…&region=…&profile=…` plus the standard AWS configuration
//! (environment and profiles, read by the AWS SDK's loader: see [`crate::aws`]).

use crate::aws::AwsConfig;
use crate::layout::Layout;
use crate::objects::Objects;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::time::Duration;
use tasktrack_core::{Error, Result};
use url::Url;

/// What a store URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`), possibly empty.
    pub prefix: String,
    /// `?endpoint=`: an S3-compatible endpoint (moto, MinIO, ...); else `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// `?region=`: else `AWS_REGION`, the profile's region, `AWS_DEFAULT_REGION`, `us-east-1`.
    pub region: Option<String>,
    /// `?profile=`: the AWS profile to read; else `AWS_PROFILE`, else `default`.
    pub profile: Option<String>,
}

impl Config {
    /// Parses `s3://bucket[/prefix][?endpoint=URL][&region=NAME]`.
    pub fn parse(url: &str) -> Result<Config> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "bad S3 store URL {url:?}: {why} (expected s3://bucket/prefix?endpoint=…&region=…)"
            ))
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "s3" {
            return Err(bad("scheme must be s3"));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket"))?
            .to_owned();
        // An endpoint is `?endpoint=`: a port or user on the bucket would be ignored.
        if parsed.port().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "a port or user after s3:// means nothing (give the server as ?endpoint=)",
            ));
        }
        let decoded = percent_encoding::percent_decode_str(parsed.path())
            .decode_utf8()
            .map_err(|_| bad("prefix is not UTF-8"))?;
        // Only the slashes around the prefix go: `s3://b//x` names an empty segment.
        let raw_prefix = decoded.strip_prefix('/').unwrap_or(&decoded);
        let raw_prefix = raw_prefix
            .strip_suffix('/')
            .unwrap_or(raw_prefix)
            .to_owned();
        if !raw_prefix.is_empty() {
            // Reject `..`, `//`, control characters: the prefix must name one place.
            Path::parse(&raw_prefix).map_err(|e| bad(&format!("prefix: {e}")))?;
            if raw_prefix.starts_with('/') || raw_prefix.ends_with('/') {
                return Err(bad("prefix has an empty segment"));
            }
        }
        let mut config = Config {
            bucket,
            prefix: raw_prefix,
            endpoint: None,
            region: None,
            profile: None,
        };
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "endpoint" => config.endpoint = Some(v.into_owned()),
                "region" => config.region = Some(v.into_owned()),
                "profile" => config.profile = Some(v.into_owned()),
                other => {
                    return Err(bad(&format!(
                        "unknown parameter {other:?} (known: endpoint, region, profile)"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The endpoint requests go to: the URL's, else `AWS_ENDPOINT_URL_S3`, else the AWS
    /// configuration's (`AWS_ENDPOINT_URL`, the profile's `endpoint_url`), else AWS's.
    pub fn effective_endpoint(&self, aws: &AwsConfig, region: &str) -> String {
        self.endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| aws.endpoint())
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"))
    }

    /// The region: the URL's, else the AWS configuration's (`AWS_REGION`, the profile's
    /// `region`), else `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub fn effective_region(&self, aws: &AwsConfig) -> String {
        self.region
            .clone()
            .or_else(|| aws.region())
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned())
    }

    /// The AWS configuration this URL reads (its `?profile=`, else `AWS_PROFILE`).
    pub async fn aws(&self) -> AwsConfig {
        AwsConfig::load(self.profile.as_deref()).await
    }

    /// A client for this bucket, and the layout under the prefix.
    ///
    /// Region, endpoint and credentials come from the URL, then the AWS configuration as the
    /// AWS SDK reads it (environment, profiles, SSO, web identity, container and instance
    /// roles). Plain `http://` is allowed only when the endpoint says so (an emulator).
    pub async fn connect(&self) -> Result<(Objects, Layout)> {
        let aws = self.aws().await;
        let region = self.effective_region(&aws);
        let endpoint = self.effective_endpoint(&aws, &region);
        let timeouts = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30))
            .with_allow_http(endpoint.starts_with("http://"));
        // A few quick retries: enough for a reset connection, short enough that an unreachable
        // endpoint is reported within seconds instead of object_store's default three minutes.
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
        };
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_region(&region)
            .with_endpoint(&endpoint)
            .with_client_options(timeouts)
            .with_retry(retry);
        let s3 = match aws.credentials() {
            Some(credentials) => s3.with_credentials(credentials),
            None => s3,
        };
        let s3 = s3.build().map_err(|e| {
            Error::invalid(format!(
                "S3 store s3://{}/{}: {e}",
                self.bucket, self.prefix
            ))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::backend(format!("HTTP client: {e}")))?;
        let objects = Objects::new(s3, http, endpoint, self.bucket.clone(), region);
        Ok((objects, Layout::new(&self.prefix)))
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_prefix_and_parameters() {
        let c =
            Config::parse("s3://my-bucket/team/a?endpoint=http://127.0.0.1:5000&region=eu-west-1")
                .unwrap();
        assert_eq!(c.bucket, "my-bucket");
        assert_eq!(c.prefix, "team/a");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.profile, None);
        let p = Config::parse("s3://b/p?profile=ci").unwrap();
        assert_eq!(p.profile.as_deref(), Some("ci"));
        assert_eq!(Config::parse("s3://b").unwrap().prefix, "");
        assert_eq!(Config::parse("s3://b/").unwrap().prefix, "");
        assert_eq!(Config::parse("s3://b/p/").unwrap().prefix, "p");
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for url in [
            "s3:///prefix",
            "http://b/p",
            "s3://b/p?colour=red",
            "s3://b/a//c",
            "s3://b//x",
            "s3://b:9000/p",
            "s3://user@b/p",
        ] {
            assert!(
                matches!(Config::parse(url), Err(Error::InvalidInput(_))),
                "{url}"
            );
        }
    }
}
