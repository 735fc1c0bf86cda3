//! AWS profiles: region and credentials come from a named profile in `AWS_CONFIG_FILE` /
//! `AWS_SHARED_CREDENTIALS_FILE`, chosen by `AWS_PROFILE` or `?profile=`, with no `AWS_*`
//! credential variables set.
//!
//! The environment is per process (and this workspace forbids `unsafe`, so no `set_var`): each
//! test writes temporary files and runs this test binary again as a child, with exactly the
//! environment under test, running the ignored `resolve_in_child` test, which prints what it
//! resolved.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use tasktrack_core::{JobName, JobSpec, Store, Timestamp};

const CONFIG: &str = "\
[default]
region = ap-south-1

[profile team]
region = eu-west-3

[profile other]
region = sa-east-1
";

const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[team]
aws_access_key_id = AKIDTEAM
aws_secret_access_key = team-secret

[other]
aws_access_key_id = AKIDOTHER
aws_secret_access_key = other-secret
";

/// Prints the region and access key a store URL resolves to; on moto, also writes and reads a
/// job record with those credentials.
#[tokio::test]
#[ignore = "run by the tests below, in a child process with the environment under test"]
async fn resolve_in_child() {
    let Ok(url) = std::env::var("TT_S3_PROFILE_URL") else {
        return;
    };
    let config = tasktrack_s3::Config::parse(&url).unwrap();
    let aws = config.aws().await;
    println!("REGION {}", config.effective_region(&aws));
    let key = aws.credentials().unwrap().current().await.unwrap().key_id;
    println!("KEY {key}");
    if let Ok(endpoint) = std::env::var("TASKTRACK_TEST_MOTO_ENDPOINT") {
        let url = format!(
            "s3://tasktrack-test/profiles-{}?endpoint={endpoint}",
            std::process::id()
        );
        let store = tasktrack_s3::open(&url).await.unwrap();
        store.init().await.unwrap();
        let job = JobName::new("signed-with-a-profile").unwrap();
        store
            .put_job(&job, &JobSpec::default(), Timestamp::now())
            .await
            .unwrap();
        store.get_job(&job).await.unwrap();
        println!("MOTO ok");
    }
}

/// Runs `resolve_in_child` for `url` with the files in `dir` and `profile` as `AWS_PROFILE`;
/// returns its output.
fn child(dir: &Path, url: &str, profile: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "resolve_in_child", "--nocapture"])
        .env("TT_S3_PROFILE_URL", url)
        .env("AWS_CONFIG_FILE", dir.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
        // No instance-metadata lookups in the child: only the files may answer.
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        cmd.env_remove(var);
    }
    if let Some(profile) = profile {
        cmd.env("AWS_PROFILE", profile);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn profile_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), CONFIG).unwrap();
    std::fs::write(dir.path().join("credentials"), CREDENTIALS).unwrap();
    dir
}

#[test]
fn aws_profile_picks_region_and_credentials_from_the_files() {
    let dir = profile_files();
    let out = child(dir.path(), "s3://bucket/prefix", Some("team"));
    assert!(out.contains("REGION eu-west-3"), "{out}");
    assert!(out.contains("KEY AKIDTEAM"), "{out}");
    if std::env::var("TASKTRACK_TEST_MOTO_ENDPOINT").is_ok() {
        assert!(out.contains("MOTO ok"), "{out}");
    }
}

#[test]
fn without_aws_profile_the_default_profile_is_read() {
    let dir = profile_files();
    let out = child(dir.path(), "s3://bucket/prefix", None);
    assert!(out.contains("REGION ap-south-1"), "{out}");
    assert!(out.contains("KEY AKIDDEFAULT"), "{out}");
}

#[test]
fn the_url_profile_and_region_win_over_the_environment() {
    let dir = profile_files();
    let out = child(dir.path(), "s3://bucket/prefix?profile=other", Some("team"));
    assert!(out.contains("REGION sa-east-1"), "{out}");
    assert!(out.contains("KEY AKIDOTHER"), "{out}");
    let out = child(
        dir.path(),
        "s3://bucket/prefix?profile=other&region=us-west-2",
        Some("team"),
    );
    assert!(out.contains("REGION us-west-2"), "{out}");
}
