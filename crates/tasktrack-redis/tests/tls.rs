//! `rediss://`: the store over TLS, against the TLS-only Redis that `scripts/test` starts on a
//! free port (`scripts/services/redis_tls.sh`). The server requires a client certificate;
//! `TASKTRACK_TEST_REDISS_URL` names the test CA (`ca_file`) and the client's certificate and key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::time::Duration;
use tasktrack_core::*;

const HOW_TO_START: &str = "bash scripts/test -p tasktrack-redis starts a TLS Redis and sets it";

/// The TLS server's URL, or `None` (printed; a failure under `CI=true`).
fn rediss_url() -> Option<String> {
    match std::env::var("TASKTRACK_TEST_REDISS_URL") {
        Ok(url) => Some(url),
        Err(_) if testkit::in_ci() => {
            panic!("TASKTRACK_TEST_REDISS_URL is not set under CI=true; {HOW_TO_START}")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED redis TLS test: TASKTRACK_TEST_REDISS_URL is not set; {HOW_TO_START}"
            );
            None
        }
    }
}

#[tokio::test]
async fn a_task_lives_its_whole_life_over_tls() {
    let Some(base) = rediss_url() else {
        return;
    };
    let store = tasktrack_redis::open(&format!("{base}&prefix={}", common::fresh_prefix()))
        .await
        .unwrap();
    let job = JobName::new("over-tls").unwrap();
    let now = Timestamp::from_millis(1_000);
    let task = NewTask::new(TaskId::new("t1").unwrap());
    store
        .create(&job, &[task], CreateMode::SkipExisting, now)
        .await
        .unwrap();
    let req = ClaimNext::new("w", Duration::from_secs(30));
    let claimed = store.claim_next(&job, &req, now).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let done = store
        .succeed(&claimed[0].lease, serde_json::json!({"ok": true}), now)
        .await
        .unwrap();
    assert_eq!(done.status, Status::Succeeded);
    let counts = store.counts(&job).await.unwrap();
    assert_eq!((counts.known, counts.by_status.succeeded), (1, 1));
    store.remove_all().await.unwrap();
}

#[tokio::test]
async fn a_server_certificate_outside_the_trusted_roots_is_refused() {
    let Some(base) = rediss_url() else {
        return;
    };
    // The same server without `ca_file`: the system's roots do not vouch for its self-signed
    // certificate, so the handshake must fail, and say where and why.
    let (without_ca, _) = base.split_once('?').unwrap();
    let err = tasktrack_redis::open(without_ca).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(text.contains("127.0.0.1:"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_refuses_a_client_without_one() {
    let Some(base) = rediss_url() else {
        return;
    };
    let (address, query) = base.split_once('?').unwrap();
    let ca_only: Vec<&str> = query
        .split('&')
        .filter(|p| p.starts_with("ca_file="))
        .collect();
    let url = format!("{address}?{}", ca_only.join("&"));
    let err = tasktrack_redis::open(&url).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:"), "{err}");
}

#[tokio::test]
async fn an_unreadable_ca_file_is_named() {
    let err = tasktrack_redis::open("rediss://127.0.0.1:1/0?ca_file=/nonexistent/ca.pem")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
