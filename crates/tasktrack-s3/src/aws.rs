//! The standard AWS configuration, read by the AWS SDK's own loader (`aws-config`) and handed to
//! object_store.
//!
//! object_store reads only environment variables (and web identity, instance metadata). Teams
//! configure AWS with profiles — `~/.aws/config`, `~/.aws/credentials`, `AWS_PROFILE`, SSO,
//! `credential_process`, assumed roles — so region and credentials come from the SDK's loader,
//! which implements all of those exactly as the AWS CLI does. Its credentials provider caches
//! and refreshes credentials; [`SdkCredentials`] lends it to object_store, which asks before
//! signing each request.

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use std::sync::Arc;

/// What the AWS configuration says: region, endpoint and credentials (each may be missing).
#[derive(Debug, Clone)]
pub struct AwsConfig {
    sdk: SdkConfig,
    profile: Option<String>,
}

impl AwsConfig {
    /// Loads the standard configuration: environment, then the profile named by `profile`
    /// (`?profile=`), else `AWS_PROFILE`, else `default`, from `AWS_CONFIG_FILE` /
    /// `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/config` / `~/.aws/credentials`).
    pub async fn load(profile: Option<&str>) -> AwsConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(name) = profile {
            loader = loader.profile_name(name);
        }
        AwsConfig {
            sdk: loader.load().await,
            profile: profile.map(str::to_owned),
        }
    }

    /// The region (`AWS_REGION`, else the profile's `region`).
    pub fn region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.to_string())
    }

    /// The endpoint (`AWS_ENDPOINT_URL`, else the profile's `endpoint_url`).
    pub fn endpoint(&self) -> Option<String> {
        self.sdk.endpoint_url().map(str::to_owned)
    }

    /// The credentials provider for object_store, if the configuration names any source of
    /// credentials.
    pub fn credentials(&self) -> Option<Arc<SdkCredentials>> {
        let provider = self.sdk.credentials_provider()?;
        Some(Arc::new(SdkCredentials {
            provider,
            profile: self.profile.clone(),
        }))
    }
}

/// The SDK's credentials provider, as object_store's [`CredentialProvider`].
#[derive(Debug)]
pub struct SdkCredentials {
    provider: SharedCredentialsProvider,
    profile: Option<String>,
}

impl SdkCredentials {
    /// The credentials now (cached by the SDK until they are about to expire).
    pub async fn current(&self) -> object_store::Result<AwsCredential> {
        let creds = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(AwsCredential {
            key_id: creds.access_key_id().to_owned(),
            secret_key: creds.secret_access_key().to_owned(),
            token: creds.session_token().map(str::to_owned),
        })
    }

    /// Which sources were tried, for a message that says what to set.
    fn unavailable(
        &self,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> object_store::Error {
        let profile = self.profile.as_deref().map_or_else(
            || "AWS_PROFILE or `default`".to_owned(),
            |p| format!("profile {p:?}"),
        );
        let message = format!(
            "no AWS credentials (tried AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, {profile} in \
             ~/.aws/config and ~/.aws/credentials, SSO, web identity, container and instance \
             roles): {}",
            aws_error_chain(&err)
        );
        object_store::Error::Generic {
            store: "S3",
            source: message.into(),
        }
    }
}

/// An error and its sources, joined: the SDK's top-level message alone is often "an error
/// occurred while loading credentials".
fn aws_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.join(": ")
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.current().await.map(Arc::new)
    }
}
