//! Shared by the integration tests: a store on the test server with a collection prefix of its own.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tasktrack_core::Store;
use tasktrack_mongodb::MongoStore;

/// How to get a server, printed when none answers.
pub const HOW_TO_START: &str = "bash -c 'source scripts/services/common.sh; source scripts/services/secantus.sh; \
     start_secantus; echo $TASKTRACK_TEST_MONGODB_URL' and export TASKTRACK_TEST_MONGODB_URL";

/// A collection prefix unique to this call (process id, time, counter), so tests never share
/// collections even when `purge` or `jobs` look at every job.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t{}_{}_{}_",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `base` (the server's URL) with `prefix` and a short server selection timeout added.
pub fn url_with_prefix(base: &str, prefix: &str) -> String {
    let sep = if base.contains('?') {
        "&"
    } else if base.trim_start_matches("mongodb://").contains('/') {
        "?"
    } else {
        "/?"
    };
    format!("{base}{sep}prefix={prefix}&serverSelectionTimeoutMS=3000")
}

/// A fresh, initialised store, or the reason there is none.
pub async fn connect(prefix: &str) -> tasktrack_core::Result<MongoStore> {
    let base = std::env::var("TASKTRACK_TEST_MONGODB_URL").map_err(|_| {
        tasktrack_core::Error::Unavailable(
            "TASKTRACK_TEST_MONGODB_URL is not set (SecantusDB is not started)".into(),
        )
    })?;
    let store = tasktrack_mongodb::open(&url_with_prefix(&base, prefix)).await?;
    store.init().await?;
    Ok(store)
}

/// The conformance factory: a store with its own prefix, or `None` (skip) / panic under CI.
///
/// Only an unreachable server (or no URL) skips; any other error — a bad URL, a refused index
/// — fails the test, so a broken setup never passes as "skipped".
pub async fn store() -> Option<Arc<dyn Store>> {
    let prefix = unique_prefix();
    tasktrack_core::testkit::connect_or_skip("mongodb", HOW_TO_START, async move {
        connect(&prefix)
            .await
            .map(|s| Arc::new(s) as Arc<dyn Store>)
    })
    .await
}
