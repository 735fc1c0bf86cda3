//! Shared by the integration tests: a fresh store on moto, each under its own prefix.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tasktrack_core::{Error, Result, Store, testkit};
use tasktrack_s3::S3Store;

/// The one bucket the tests use (`init` creates it); isolation is by prefix.
pub const BUCKET: &str = "tasktrack-test";

pub const HOW_TO_START: &str = "source scripts/services/common.sh; source scripts/services/moto.sh; start_moto (exports TASKTRACK_TEST_MOTO_ENDPOINT)";

/// A prefix no other test (or run) uses.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{name}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The store URL for `prefix` on the moto endpoint, or why there is none.
pub fn url(prefix: &str) -> Result<String> {
    let endpoint = std::env::var("TASKTRACK_TEST_MOTO_ENDPOINT").map_err(|_| {
        Error::Unavailable("TASKTRACK_TEST_MOTO_ENDPOINT is not set (moto is not started)".into())
    })?;
    Ok(format!(
        "s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1"
    ))
}

/// Opens (and initializes) a store at `url`.
pub async fn open(url: &str) -> Result<S3Store> {
    let store = tasktrack_s3::open(url).await?;
    store.init().await?;
    Ok(store)
}

/// A fresh store under a new prefix, or `None` (printed; a failure under CI) without moto.
pub async fn fresh(name: &str) -> Option<Arc<S3Store>> {
    let prefix = unique_prefix(name);
    let connect = async move {
        let store = open(&url(&prefix)?).await?;
        Ok::<_, Error>(Arc::new(store))
    };
    let mut kept = None;
    let store = testkit::connect_or_skip("s3", HOW_TO_START, async {
        let s = connect.await?;
        kept = Some(s.clone());
        Ok::<Arc<dyn Store>, Error>(s)
    })
    .await;
    store.and(kept)
}
